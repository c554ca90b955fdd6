"""'Area vs dose' dock: the area-against-dose curves of every segmented mask layer.

A mask Labels layer made by the 'Segment' widget carries its per-frame table in
``layer.metadata["lowdose"]["area_vs_dose"]``
(:func:`~napari_lowdose.analysis.area_record.area_record`): the columns
of :meth:`AreaAnalysis.table` as lists (plus ``f1`` where a truth mask exists)
and the values read off the curve (converged band, convergence dose, dose at
50 % segmentation). This dock draws every such layer with
:func:`napari_lowdose.plots.area.draw_area_vs_dose` (area against frame dose on a
log axis, Larsen et al. 2023, Figs. 2–4), F1 against dose in a second panel when
available (SOI Fig. 9), a ring on the viewer's current frame, and moves the
viewer to the frame of a point clicked on.

When the consensus of the highest-dose frames holds several particles, a choice
"All particles" / "Particle 1" / … (shown only then) draws one particle of the selected
mask layer's run instead (:meth:`AreaAnalysis.particle`): its own area, readout lines,
Rose doses, legend and status.

The Rose-criterion doses (:mod:`napari_lowdose.analysis.rose`: the dose from which a
particle of this size and contrast reaches C·√(dose·A) = 5, and that of a 1 nm² patch of
it) are drawn as dotted and dash-dotted vertical lines beside the visibility (dashed) and
convergence (solid) doses, and named in the status line: how close the network comes to
the physics. The choice is kept while the same layer stays selected with the same
number of particles.

Legible in a narrow dock: constrained layout, short axis labels aligned across the two
panels, the legend under the axes (never over the curves) and the doses read off each
curve in the status line. One dock per viewer: the 'Segment' dock docks it under the
name the Plugins menu uses (:data:`AREA_DOCK_NAME`), so the menu finds that dock
instead of adding a second one, and :func:`show_area_dock` brings it forward.
"""

import math
import weakref
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label

from ..analysis.area_record import analysis_from_record, area_record
from ..analysis.area_vs_dose import AreaAnalysis, readout_text
from ..io.layers import AREA_RECORD_KEY, LOWDOSE_KEY
from ..plots.area import ROSE_STYLES, draw_area_vs_dose, rose_doses
from ._dose_overlay import show_frame_dose
from ._plotting import new_canvas, style_axes, theme_colors

__all__ = [
    "AREA_DOCK_NAME",
    "AREA_KEY",
    "ALL_PARTICLES",
    "AreaPlotWidget",
    "analysis_from_record",
    "area_record",
    "show_area_dock",
]

#: Key of the area-against-dose record in ``metadata["lowdose"]`` of a mask layer.
AREA_KEY = AREA_RECORD_KEY
CLICK_RADIUS_PX = 12.0
#: The particle choice that draws the whole field.
ALL_PARTICLES = "All particles"
#: The dock's title in the Plugins menu (napari: "<widget> (<plugin display name>)").
AREA_DOCK_NAME = "Area vs dose (Low-dose HR-TEM)"
#: Screens lower than this (px available) get the plot as a tab beside 'Segment'.
SMALL_SCREEN_HEIGHT_PX = 900
#: Smallest height of the plot, px (two panels stay readable; fits 1366×768 screens).
PLOT_MIN_HEIGHT_PX = 260

_INSTANCES: "weakref.WeakSet[AreaPlotWidget]" = weakref.WeakSet()


def layer_area_record(layer) -> dict[str, Any] | None:
    """The area-against-dose record of a layer, or None."""
    if not isinstance(layer, napari.layers.Labels):
        return None
    record = (layer.metadata or {}).get(LOWDOSE_KEY, {}).get(AREA_KEY)
    return record if isinstance(record, dict) and "table" in record else None


def refresh_area_plots(viewer) -> list["AreaPlotWidget"]:
    """Redraw every Area-vs-dose dock of ``viewer``; return them."""
    widgets = [w for w in list(_INSTANCES) if w._viewer is viewer]
    for widget in widgets:
        widget.refresh()
    return widgets


def _docked_area_plot(window):
    """(dock, AreaPlotWidget) docked in a napari window, or (None, None)."""
    for dock in list(getattr(window, "_wrapped_dock_widgets", {}).values()):
        try:
            inner = dock.inner_widget()
        except Exception:  # noqa: BLE001 - a dock being torn down
            continue
        if isinstance(inner, AreaPlotWidget):
            return dock, inner
    return None, None


def _small_screen(window) -> bool:
    try:
        screen = window._qt_window.screen()
        return screen.availableGeometry().height() < SMALL_SCREEN_HEIGHT_PX
    except Exception:  # noqa: BLE001 - no screen information: dock below
        return False


def show_area_dock(viewer) -> "AreaPlotWidget | None":
    """Show and raise the viewer's Area-vs-dose dock, docking one if there is none.

    Returns the dock's widget, or None when the viewer has no window. The dock is
    added under :data:`AREA_DOCK_NAME` (so napari's Plugins menu finds it and does
    not add a second one), on the right, as a tab on screens lower than
    :data:`SMALL_SCREEN_HEIGHT_PX`.
    """
    window = getattr(viewer, "window", None)
    if window is None or not hasattr(window, "add_dock_widget"):
        return None
    dock, widget = _docked_area_plot(window)
    if dock is None:
        widget = AreaPlotWidget(viewer)
        try:
            dock = window.add_dock_widget(widget, name=AREA_DOCK_NAME, area="right",
                                          tabify=_small_screen(window))
        except Exception:  # noqa: BLE001 - a window that cannot dock: keep the widget
            return widget
    dock.show()
    dock.raise_()
    return widget


class AreaPlotWidget(Container):
    """Area (and F1) against frame dose of every mask layer that carries a table."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = viewer
        self.runs: dict[str, AreaAnalysis] = {}
        self.f1: dict[str, np.ndarray] = {}
        self.drawn: dict[str, AreaAnalysis] = {}
        self._layers: dict[str, Any] = {}
        self._points: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = []
        # (run label, number of particles) the particle choice was offered for.
        self._particle_key: tuple[str | None, int] = (None, 0)
        self._offering = False
        # Choices from a callable: napari's reset_choices() keeps them.
        self.particle_combo = ComboBox(choices=self._particle_choices, value=ALL_PARTICLES,
                                       tooltip="the whole field, or one particle of the "
                                               "selected mask layer's run")
        self.particle_combo.changed.connect(self._on_particle_chosen)
        self.particle_combo.native.setHidden(True)
        self.append(self.particle_combo)
        self.status = Label(value="no segmented mask layer yet: run 'Segment'")
        self.status.native.setWordWrap(True)
        self.append(self.status)
        self._build_plot()
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.selection.events.active.connect(self.refresh)
        viewer.dims.events.current_step.connect(self._update_marker)
        _INSTANCES.add(self)
        self.refresh()
        show_frame_dose(viewer)

    # -- data -----------------------------------------------------------------------------
    def _collect(self):
        runs, f1, layers = {}, {}, {}
        records = [(layer, layer_area_record(layer)) for layer in self._viewer.layers]
        records = [(layer, rec) for layer, rec in records if rec is not None]
        labels = [rec.get("label") or layer.name for layer, rec in records]
        for (layer, rec), label in zip(records, labels, strict=True):
            if labels.count(label) > 1:
                label = layer.name
            try:
                runs[label] = analysis_from_record(rec)
            except (KeyError, TypeError, ValueError):
                continue
            layers[label] = layer
            values = rec["table"].get("f1")
            if values is not None:
                f1[label] = np.array([np.nan if v is None else v for v in values], dtype=float)
        return runs, f1, layers

    def plotted_runs(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Label → (frame dose in e⁻/Å², area as plotted: nm² if calibrated, else px)."""
        nm2 = self._nm2()
        return {
            label: (run.dose_e_per_A2.copy(), run.area_px * (run.pixel_area_nm2 if nm2 else 1.0))
            for label, run in self.drawn.items()
        }

    def _nm2(self) -> bool:
        return bool(self.drawn) and all(math.isfinite(r.pixel_area_nm2)
                                        for r in self.drawn.values())

    # -- particles ------------------------------------------------------------------------
    def _particle_run(self) -> str | None:
        """The run the particle choice is about: the selected mask layer's, else the first
        run with several particles."""
        active = self._viewer.layers.selection.active
        for label, layer in self._layers.items():
            if layer is active:
                return label
        several = [label for label, run in self.runs.items() if run.n_particles > 1]
        return several[0] if several else None

    def _particle_choices(self, _widget=None) -> list[str]:
        n = self._particle_key[1]
        return [ALL_PARTICLES, *(f"Particle {k}" for k in range(1, n + 1))]

    def _offer_particles(self) -> None:
        """Offer "All particles", "Particle 1", … for the particle run (shown only with
        more than one particle); back to all particles when the run or its count changes."""
        label = self._particle_run()
        n = self.runs[label].n_particles if label is not None else 0
        if (label, n) != self._particle_key:
            self._particle_key = (label, n)
            self._offering = True
            try:
                self.particle_combo.reset_choices()
                self.particle_combo.value = ALL_PARTICLES
            finally:
                self._offering = False
        self.particle_combo.native.setHidden(n < 2)

    def particle_number(self) -> int:
        """The particle drawn (1, 2, …), or 0 for the whole field."""
        value = self.particle_combo.value
        return 0 if value in (None, ALL_PARTICLES) else int(str(value).split()[-1])

    def _on_particle_chosen(self, _value=None) -> None:
        if not self._offering:
            self._draw()

    # -- plot -----------------------------------------------------------------------------
    def _build_plot(self):
        self._colors = theme_colors(self._viewer)
        self.figure, self.canvas = new_canvas(self._colors, PLOT_MIN_HEIGHT_PX,
                                              figsize=(4.0, 4.2))
        from qtpy.QtWidgets import QSizePolicy

        self.status.native.setSizePolicy(QSizePolicy.Policy.Expanding,
                                         QSizePolicy.Policy.Preferred)
        self.canvas.mpl_connect("button_press_event", self._on_press)
        self.ax_area, self.ax_f1 = None, None
        self._markers = []
        self.native.layout().addWidget(self.canvas)

    def refresh(self, _event=None):
        """Re-read the tables of the mask layers and redraw."""
        self.runs, self.f1, self._layers = self._collect()
        self._offer_particles()
        self._draw()

    def _drawn_runs(self) -> tuple[dict[str, AreaAnalysis], dict[str, np.ndarray]]:
        """(label → analysis, label → F1 against the truth) to draw: every run, or the one
        particle chosen (no truth F1: the truth is of the whole field)."""
        number, label = self.particle_number(), self._particle_key[0]
        if number and label in self.runs and number <= self.runs[label].n_particles:
            return {f"{label} · particle {number}": self.runs[label].particle(number)}, {}
        return dict(self.runs), dict(self.f1)

    def _draw(self) -> None:
        self.drawn, f1 = self._drawn_runs()
        self.figure.clear()
        self._markers, self._points = [], []
        if f1:
            self.ax_area, self.ax_f1 = self.figure.subplots(2, 1, sharex=True)
        else:
            self.ax_area, self.ax_f1 = self.figure.add_subplot(), None
        if self.drawn:
            draw_area_vs_dose(self.ax_area, self.drawn)
            scale = self._nm2()
            self.ax_area.set_ylabel("area (nm²)" if scale else "area (px)")
            for run in self.drawn.values():
                area = run.area_px * (run.pixel_area_nm2 if scale else 1.0)
                self._points.append((self.ax_area, run.frame, run.dose_e_per_A2, area))
        else:
            self.ax_area.set_xscale("log")
            self.ax_area.set_xlabel("frame dose (e⁻/Å²)")
            self.ax_area.set_ylabel("area")
        if self.ax_f1 is not None:
            for index, (label, run) in enumerate(self.drawn.items()):
                if label not in f1:
                    continue
                order = np.argsort(run.dose_e_per_A2, kind="stable")
                self.ax_f1.plot(run.dose_e_per_A2[order], f1[label][order], ".-", ms=3,
                                lw=0.8, color=f"C{index}", label=label)
                self._points.append((self.ax_f1, run.frame, run.dose_e_per_A2, f1[label]))
            self.ax_f1.set_ylim(0, 1.02)
            self.ax_f1.set_xlabel("frame dose (e⁻/Å²)")
            self.ax_f1.set_ylabel("F1 (truth)")
            self.ax_area.set_xlabel("")
        self._legend_below()
        for ax in self.figure.axes:
            style_axes(ax, self._colors)
        self.figure.align_ylabels()
        if self.drawn:
            self.status.value = "; ".join(
                [*(self._doses_text(label, run) for label, run in self.drawn.items()),
                 "click a point to show its frame"])
        else:
            self.status.value = "no segmented mask layer yet: run 'Segment'"
        self._update_marker()

    def _legend_below(self) -> None:
        """One legend under the panels: the runs, then what the two line styles mark."""
        from matplotlib.lines import Line2D

        legend = self.ax_area.get_legend()
        if legend is not None:
            legend.remove()
        if not self.drawn:
            return
        handles = [Line2D([], [], color=f"C{index}", marker=".", ms=3, lw=0.8, label=label)
                   for index, label in enumerate(self.drawn)]
        fg = self._colors["fg"]
        consensus = any(run.consensus is not None and run.consensus.available
                        for run in self.drawn.values())
        if consensus:  # against the consensus of the highest-dose frames
            handles += [
                Line2D([], [], color=fg, lw=1, label="converged (F1 ≥ 0.9, consensus)"),
                Line2D([], [], color=fg, lw=1, ls="--", label="visible (F1 ≥ 0.5)"),
                Line2D([], [], color=fg, ls="", marker="x", ms=4, label="over-segmented")]
        else:  # the paper's area-only doses
            handles += [Line2D([], [], color=fg, lw=1, label="area converged"),
                        Line2D([], [], color=fg, lw=1, ls="--", label="50 % area")]
        drawn_rose = {key for run in self.drawn.values() if run.consensus is not None
                      and run.consensus.available for key in rose_doses(run)}
        handles += [Line2D([], [], color=fg, lw=1.2, ls=ROSE_STYLES[key][0],
                           label=f"Rose, {ROSE_STYLES[key][1]}")
                    for key in ROSE_STYLES if key in drawn_rose]
        legend = self.figure.legend(handles=handles, loc="outside lower center", ncols=2,
                                    fontsize=7, frameon=False)
        for text in legend.get_texts():
            text.set_color(fg)

    @staticmethod
    def _doses_text(label: str, run: AreaAnalysis) -> str:
        def dose(value: float) -> str:
            return f"{value:.3g} e⁻/Å²" if math.isfinite(value) else "not reached"

        paper = (f"area only: no readout ({run.paper_reason})" if run.paper_reason else
                 f"area only: 50 % at {dose(run.dose_at_50pct_e_per_A2)}, converged from "
                 f"{dose(run.convergence_dose_e_per_A2)}")
        readout = run.consensus
        if readout is None:
            return f"{label}: {paper}"
        if not readout.available:
            return f"{label}: no readout against a consensus ({readout.reason}); {paper}"

        lowest = float(np.min(run.dose_e_per_A2)) if run.dose_e_per_A2.size else None

        def since(value) -> str:
            return readout_text(value, lowest)

        rose = rose_doses(run)
        rose_text = ""
        if rose:
            rose_text = ("; Rose: particle "
                         f"{readout_text(rose.get('particle'))}, 1 nm² "
                         f"{readout_text(rose.get('1nm2'))}")
        return (f"{label}: visible from {since(readout.visibility_dose_e_per_A2)}, converged "
                f"from {since(readout.convergence_dose_e_per_A2)}{rose_text}; {paper}")

    def current_frame(self) -> int:
        """The viewer's current frame (its first dimension)."""
        step = self._viewer.dims.current_step
        return int(step[0]) if len(step) >= 3 else 0

    def _update_marker(self, _event=None):
        for marker in self._markers:
            marker.remove()
        self._markers = []
        frame = self.current_frame()
        for ax, frames, doses, values in self._points:
            hit = np.flatnonzero(frames == frame)
            if hit.size and np.isfinite(values[hit[0]]):
                (marker,) = ax.plot(
                    [doses[hit[0]]],
                    [values[hit[0]]],
                    "o",
                    ms=9,
                    mfc="none",
                    mec=self._colors["fg"],
                    mew=1.5,
                    zorder=5,
                )
                self._markers.append(marker)
        self.canvas.draw_idle()

    def marker_positions(self) -> list[tuple[float, float]]:
        """(dose, value) of the current-frame markers (for tests)."""
        return [(float(m.get_xdata()[0]), float(m.get_ydata()[0])) for m in self._markers]

    # -- clicks ---------------------------------------------------------------------------
    def _on_press(self, event):
        if event.inaxes is None or event.x is None:
            return
        self._select_nearest(event.inaxes, event.x, event.y)

    def _select_nearest(self, ax, x_px: float, y_px: float) -> int | None:
        best, best_frame = CLICK_RADIUS_PX, None
        for axis, frames, doses, values in self._points:
            if axis is not ax or frames.size == 0:
                continue
            ok = np.isfinite(values)
            xy = axis.transData.transform(np.column_stack([doses[ok], values[ok]]))
            distance = np.hypot(xy[:, 0] - x_px, xy[:, 1] - y_px)
            if distance.size and distance.min() <= best:
                best = float(distance.min())
                best_frame = int(frames[ok][int(np.argmin(distance))])
        if best_frame is not None and self._viewer.dims.ndim >= 3:
            self._viewer.dims.set_current_step(0, best_frame)
        return best_frame

    def click_at(self, dose: float, value: float, *, panel: str = "area") -> int | None:
        """Simulate a click at data coordinates (dose, area or F1); return the frame chosen."""
        ax = self.ax_area if panel == "area" else self.ax_f1
        if ax is None:
            return None
        self.canvas.draw()
        x_px, y_px = ax.transData.transform((dose, value))
        return self._select_nearest(ax, float(x_px), float(y_px))
