"""'Dose calibration' dock widget: show and set the per-frame dose of an image layer.

Thin: it gathers inputs and calls :mod:`napari_lowdose.io.dose_calibration`; the
dose is stored in the layer's ``metadata["lowdose"]["dose"]`` (the image data
are never touched).

Only grey-level frames or (frames, y, x) series can be chosen (not RGB); the dock
opens on the active (else the only) such layer, and the canvas shows the shown
frame's dose (:func:`._dose_overlay.show_frame_dose`), updated after "Apply". The
mean counts of a long series are read in a worker, with a progress bar, the time
left and Cancel; any failure is one notification. The source, the dose table and
the detector gain are remembered between sessions.
"""

import time
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)
from napari.utils.notifications import show_error, show_info

from ..errors import LowdoseError, one_line
from ..io.dose import FrameDose, write_dose_table
from ..io.dose_calibration import calibrate_frame_dose, iter_frame_mean_counts
from ..io.layers import LOWDOSE_KEY, layer_frame_dose, with_frame_dose
from ..io.units import pixel_area_A2
from ._activity import ActivityBar
from ._common import DockContainer, rectangle_roi_px
from ._dose_overlay import show_frame_dose
from ._layers import base_data, layer_pixel_size_A, pick_image_layer
from ._settings import DockSettings
from ._workers import eta_text, run_task

SOURCE_CHOICES = [
    ("Automatic (metadata > table > rate × exposure > counts > file's calibration)", "auto"),
    ("File metadata", "metadata"),
    ("Dose table (CSV)", "table"),
    ("Dose rate × exposure time", "rate_x_exposure"),
    ("Mean counts ÷ counts-per-electron ÷ pixel area", "counts"),
    ("The file's intensity calibration (mean counts ÷ its stated gain)", "file_calibration"),
]
WHOLE_FRAME = "whole frame"


def _typed(box, stated: float | None) -> float | None:
    """What a spin box holds, or None when that is the file's ``stated`` value as the box
    shows it (rounded to its decimals): then the caller uses the stated value, unrounded.

    A spin box rounds what it is given; reading it back and using it would change a
    file's 0.001428 s exposure to 0.001 s, and the dose with it.
    """
    value = float(box.value)
    if not value:
        return None
    if stated is not None and abs(value - float(stated)) <= 0.5 * 10.0 ** -box.native.decimals():
        return None
    return value


class DoseCalibrationWidget(DockContainer):
    """Show the dose of every frame of an image layer, and set it from several sources."""

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__()
        self._viewer = viewer
        self.use_thread = use_thread
        self._worker = None
        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.status = Label(label="dose")
        self.frame_status = Label(label="this frame")
        self.source = ComboBox(label="source", choices=SOURCE_CHOICES, value="auto")
        self.table = FileEdit(label="dose table", mode="r", filter="*.csv", value="")
        self.dose_rate = FloatSpinBox(label="dose rate (e⁻/Å²/s)", min=0, max=1e9, step=0.1,
                                      value=0)
        self.exposure = FloatSpinBox(label="exposure / frame (s)", min=0, max=1e5, step=0.001,
                                     value=0)
        self.counts_per_electron = FloatSpinBox(label="counts per e⁻", min=0, max=1e6,
                                                step=0.1, value=0)
        self.roi_combo = ComboBox(label="vacuum region", choices=self._shapes_choices)
        self.pixel_size = FloatSpinBox(label="pixel size (Å/px)", min=0, max=1e7, step=0.001,
                                       value=0)
        # Enough decimals to show and type what files state (sub-ms exposures, rates of a
        # few e⁻/Å²/s); a box still holding the file's value (as shown) means the file's
        # own, unrounded value (:func:`_typed`).
        for box, decimals in ((self.dose_rate, 4), (self.exposure, 7),
                              (self.counts_per_electron, 4), (self.pixel_size, 5)):
            box.native.setDecimals(decimals)
        self.set_pixel_button = PushButton(text="Set pixel size")
        self.apply_button = PushButton(text="Apply dose")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(label="mean counts", min=0, max=1, value=0)
        self.time_left = Label(label="time left", value="")
        self.save_button = PushButton(text="Save dose table…")
        self.reset_button = PushButton(text="Reset to defaults")
        self.extend([
            self.layer_combo, self.status, self.frame_status, self.pixel_size,
            self.set_pixel_button, self.source, self.table, self.dose_rate, self.exposure,
            self.counts_per_electron, self.roi_combo, self.apply_button, self.cancel_button,
            self.progress_bar, self.time_left, self.save_button, self.reset_button,
        ])
        self._started = 0.0
        self.layer_combo.changed.connect(self._on_layer_changed)
        self.apply_button.changed.connect(self.apply)
        self.cancel_button.changed.connect(self.cancel)
        self.set_pixel_button.changed.connect(self.set_pixel_size)
        self.save_button.changed.connect(self._save_dialog)
        viewer.layers.events.inserted.connect(self._reset_choices)
        viewer.layers.events.removed.connect(self._reset_choices)
        viewer.dims.events.current_step.connect(self._update_frame_status)
        # a gain the file states wins over the remembered one (see _on_layer_changed)
        self.dock_settings = DockSettings("dose_calibration", {
            "source": self.source, "dose_table": self.table,
            "counts_per_electron": self.counts_per_electron,
        }).connect()
        self.reset_button.changed.connect(self.reset_settings)
        # The gain box shows the selected file's own gain when it states one; the user's
        # own gain (typed, remembered) comes back for a file that states none.
        self._user_gain = float(self.counts_per_electron.value)
        self.counts_per_electron.changed.connect(self._on_gain_edited)
        self._pick_layer()
        self._on_layer_changed()
        show_frame_dose(viewer)

    def reset_settings(self, _event=None) -> None:
        """Give the remembered inputs their defaults back (and forget the stored values)."""
        if self._worker is None:
            self.dock_settings.reset()
            self._user_gain = float(self.dock_settings.defaults["counts_per_electron"])
            self._on_layer_changed()  # the selected file's own gain, if it states one

    # -- choices --------------------------------------------------------------------------
    def _image_layers(self, _widget=None):
        return [layer for layer in self._viewer.layers if _suits(layer)]

    def _pick_layer(self) -> None:
        """Choose the active (else the only) suitable layer, e.g. the file just opened."""
        layer = pick_image_layer(self._viewer, suits=_suits)
        if layer is not None and layer is not self.layer_combo.value:
            self.layer_combo.value = layer

    def _shapes_choices(self, _widget=None):
        layers = self._viewer.layers
        shapes = [layer for layer in layers if isinstance(layer, napari.layers.Shapes)]
        return [(WHOLE_FRAME, None)] + [(layer.name, layer) for layer in shapes]

    def _reset_choices(self, _event=None):
        previous = self.layer_combo.value
        self.layer_combo.reset_choices()
        self.roi_combo.reset_choices()
        if previous is None or self.layer_combo.value is None:
            self._pick_layer()  # e.g. the series just opened (napari makes it active)

    # -- display --------------------------------------------------------------------------
    @property
    def layer(self):
        """The selected image layer, or None."""
        return self.layer_combo.value

    def _on_layer_changed(self, _value=None):
        layer = self.layer
        if layer is not None:
            hints = layer.metadata.get(LOWDOSE_KEY, {}).get("dose_hints", {}) or {}
            pixel = layer_pixel_size_A(layer)
            self.pixel_size.value = 0 if pixel is None else pixel[1]
            self.dose_rate.value = hints.get("dose_rate_e_per_A2_s") or 0
            self.exposure.value = hints.get("exposure_time_s") or 0
            self._show_gain(hints.get("counts_per_electron"))
        self._update_status()

    def _show_gain(self, stated: float | None) -> None:
        """The file's gain when it states one (shown, not remembered as the user's); else the
        user's own gain, never another file's."""
        with self.dock_settings.not_remembered():
            self.counts_per_electron.value = float(stated) if stated else self._user_gain

    def _on_gain_edited(self, _value=None) -> None:
        if not self.dock_settings.restoring:  # the user's own value
            self._user_gain = float(self.counts_per_electron.value)

    def _update_status(self):
        layer = self.layer
        if layer is None:
            self.status.value = "no image layer"
        else:
            try:
                dose = layer_frame_dose(layer.metadata)
            except LowdoseError as err:
                dose = None
                show_error(f"{layer.name}: {err}")
            self.status.value = "not set" if dose is None else _wrap(dose.summary())
        self._update_frame_status()

    def _update_frame_status(self, _event=None):
        layer = self.layer
        dose = None if layer is None else _safe_dose(layer)
        if dose is None:
            self.frame_status.value = "—"
            return
        frame = int(self._viewer.dims.current_step[0]) if layer.ndim == 3 else 0
        frame = min(max(frame, 0), dose.n_frames - 1)
        self.frame_status.value = (
            f"frame {frame}: {dose.dose_e_per_A2[frame]:.4g} e⁻/Å² "
            f"(cumulative {dose.cumulative_dose_e_per_A2[frame]:.4g})"
        )

    # -- actions --------------------------------------------------------------------------
    def set_pixel_size(self, _event=None):
        """Set the selected layer's (y, x) scale to the pixel size in Å."""
        layer = self.layer
        size = float(self.pixel_size.value)
        shown = None if layer is None else layer_pixel_size_A(layer)
        if shown is not None and _typed(self.pixel_size, shown[1]) is None:
            size = float(shown[1])  # the box still shows the layer's own: keep it unrounded
        if layer is None or size <= 0:
            show_error("Choose an image layer and a positive pixel size (Å/px).")
            return
        layer.scale = tuple(layer.scale[:-2]) + (size, size)
        layer.units = tuple(layer.units[:-2]) + ("angstrom", "angstrom")
        meta = dict(layer.metadata)
        lowdose = dict(meta.get(LOWDOSE_KEY, {}))
        lowdose.update(pixel_size_A=[size, size], pixel_size_source="set by user")
        meta[LOWDOSE_KEY] = lowdose
        layer.metadata = meta
        show_info(f"{layer.name}: pixel size set to {size:g} Å/px")

    def _inputs(self) -> dict:
        table = self.table.value
        layer = self.layer
        hints = {} if layer is None else (
            layer.metadata.get(LOWDOSE_KEY, {}).get("dose_hints", {}) or {})
        # The file's own gain, as shown: its intensity calibration.
        gain = _typed(self.counts_per_electron, hints.get("counts_per_electron"))
        return {
            "source": self.source.value,
            "dose_table": table if table and str(table) not in ("", ".") and Path(table).is_file()
            else None,
            "dose_rate_e_per_A2_s": _typed(self.dose_rate, hints.get("dose_rate_e_per_A2_s")),
            "exposure_time_s": _typed(self.exposure, hints.get("exposure_time_s")),
            "counts_per_electron": gain,
        }

    def apply(self, _event=None):
        """Compute the dose from the chosen source and store it on the layer."""
        layer = self.layer
        if layer is None:
            show_error("Choose an image layer first.")
            return
        if not _suits(layer):
            show_error(f"'{layer.name}' is not a grey-level frame or (frames, y, x) series: "
                       "its dose cannot be calibrated.")
            return
        if self._worker is not None:
            show_info("The mean counts are still being read.")
            return
        inputs = self._inputs()
        if inputs["source"] == "table" and inputs["dose_table"] is None:
            show_error("Choose a dose table (CSV with a dose_e_per_A2 column).")
            return
        try:
            roi = self._roi(layer)
        except ValueError as err:
            show_error(str(err))
            return
        needs_counts = inputs["source"] in ("counts", "file_calibration") or (
            inputs["source"] == "auto" and self._auto_falls_to_counts(layer, inputs))
        if not needs_counts:
            self._finish(layer, inputs, None, roi)
            return
        n = _n_frames(layer)
        self.apply_button.enabled, self.cancel_button.enabled = False, True
        self.progress_bar.max, self.progress_bar.value = n, 0
        self.time_left.value = "timing the first frame…"
        self._started = time.perf_counter()
        self._activity = ActivityBar(n, "Mean counts per frame")
        self._worker = run_task(
            self._count_frames(layer, roi), use_thread=self.use_thread,
            on_yield=self._on_frame_counted,
            on_return=lambda means: self._finish(layer, inputs, means, roi),
            on_error=self._on_counts_error, on_finish=self._on_worker_done,
        )

    def _auto_falls_to_counts(self, layer, inputs) -> bool:
        hints = layer.metadata.get(LOWDOSE_KEY, {}).get("dose_hints", {}) or {}
        has_rate = (inputs["dose_rate_e_per_A2_s"] or hints.get("dose_rate_e_per_A2_s")) and (
            inputs["exposure_time_s"] or hints.get("exposure_time_s"))
        return not (hints.get("frame_dose_e_per_A2") is not None or inputs["dose_table"]
                    or has_rate)

    def _count_frames(self, layer, roi):
        """Generator: yields (frames done, frames) after each frame; returns the means."""
        data = base_data(layer)
        n = _n_frames(layer)
        means = np.empty(n)
        for i, value in enumerate(iter_frame_mean_counts(data, roi)):
            means[i] = value
            yield i + 1, n
        return means

    def _on_frame_counted(self, item) -> None:
        done, total = item
        self.progress_bar.value = done
        self.time_left.value = eta_text(done, total, time.perf_counter() - self._started)
        # Last: napari's bar may process pending events (the next items, even the end of
        # the run) before it returns, and nothing here must overwrite what they set.
        if getattr(self, "_activity", None) is not None:
            self._activity.update_to(done)

    def _on_counts_error(self, err):
        self.progress_bar.value = 0
        self.time_left.value = ""
        show_error(f"Dose from counts failed: {one_line(err)}")

    def _on_worker_done(self):
        self.apply_button.enabled, self.cancel_button.enabled = True, False
        self._worker = None
        activity, self._activity = getattr(self, "_activity", None), None
        if activity is not None:
            activity.close()
        if self.progress_bar.value < self.progress_bar.max:  # failed or cancelled
            self.progress_bar.value = 0
            self.time_left.value = ""

    def on_closed(self) -> None:
        """The dock was closed: stop a running counts computation."""
        self.cancel()

    def cancel(self, _event=None):
        """Stop a running counts computation; the layer's dose stays as it was."""
        if self._worker is not None:
            self._worker.quit()
            show_info("Dose calibration cancelled; the previous dose is kept.")

    def _roi(self, layer):
        shapes = self.roi_combo.value
        return None if shapes is None else rectangle_roi_px(shapes, layer)

    def _finish(self, layer, inputs, mean_counts, roi):
        pixel = layer_pixel_size_A(layer)
        pixel_area = None if pixel is None else pixel_area_A2(pixel)
        hints = layer.metadata.get(LOWDOSE_KEY, {}).get("dose_hints", {}) or {}
        try:
            dose = calibrate_frame_dose(
                base_data(layer), pixel_area_A2=pixel_area, hints=hints,
                mean_counts=mean_counts, roi=roi, **inputs,
            )
        except Exception as err:  # noqa: BLE001 - one line, whatever the source did
            show_error(f"Dose not set: {one_line(err)}")
            return
        if dose is None:
            show_error("No dose source has what it needs: give a dose table, a dose rate and "
                       "exposure time, or counts per electron.")
            return
        layer.metadata = with_frame_dose(layer.metadata, dose)
        self._update_status()
        show_frame_dose(self._viewer)  # the canvas shows the new dose
        show_info(f"{layer.name}: {dose.summary()}")

    def save_dose_table(self, path: str | Path) -> Path:
        """Write the selected layer's dose as a CSV dose table and return its path."""
        dose = None if self.layer is None else _safe_dose(self.layer)
        if dose is None:
            raise LowdoseError("the selected layer has no dose to save")
        write_dose_table(path, dose.dose_e_per_A2)
        return Path(path)

    def _save_dialog(self, _event=None):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(None, "Save dose table", "dose.csv", "CSV (*.csv)")
        if path:
            try:
                show_info(f"Saved {self.save_dose_table(path)}")
            except (LowdoseError, OSError) as err:
                show_error(f"Dose table not saved: {err}")


def _suits(layer) -> bool:
    """Whether a layer's dose can be calibrated: a grey-level frame or (frames, y, x)."""
    return (isinstance(layer, napari.layers.Image) and not getattr(layer, "rgb", False)
            and len(base_data(layer).shape) in (2, 3))


def _n_frames(layer) -> int:
    shape = base_data(layer).shape
    return int(shape[0]) if len(shape) == 3 else 1


def _safe_dose(layer) -> FrameDose | None:
    try:
        return layer_frame_dose(layer.metadata)
    except LowdoseError:
        return None


def _wrap(text: str, width: int = 48) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))
