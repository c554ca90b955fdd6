"""The plots of the 'Detector noise' dock (Larsen et al. 2023, Figs. 5 and 6).

Three tabs: the radial spectrum of the frame shown with its fit (Eq. 4 or Eq. 3),
c0, c3 and C against dose, and C² against the frame dose ``N_D`` with the Eq. 2
curve and N0.
"""

import warnings

import numpy as np

from ..noise.readout import eq2_plot_data
from ._plotting import new_canvas, style_axes, theme_colors

__all__ = ["GOOD_R2", "NoiseFitPlots"]

GOOD_R2 = 0.98  # the paper keeps fits with R² ≥ 0.98


class NoiseFitPlots:
    """Mixin of :class:`~.noise_fit.NoiseFitWidget`: its plot tabs.

    Reads the widget's ``result`` (series fit), ``frame_result`` (single-frame
    fit), ``_frame_result_index``, ``current_frame()`` and ``_viewer``.
    """

    # -- building ----------------------------------------------------------------------------
    def _build_plots(self):
        from qtpy.QtWidgets import QTabWidget

        self._colors = theme_colors(self._viewer)
        self.tabs = QTabWidget()
        self.figures, self.canvases = {}, {}
        for key, title, n_axes in (("spectrum", "Spectrum", 1), ("params", "c0, c3, C", 3),
                                   ("readout", "Readout N0", 1)):
            fig, canvas = new_canvas(self._colors, 260 if n_axes == 1 else 380,
                                     figsize=(4, 3.2 if n_axes == 1 else 4.5))
            self.figures[key], self.canvases[key] = fig, canvas
            self.tabs.addTab(canvas, title)
        fig = self.figures["spectrum"]
        self.ax_spectrum = fig.add_subplot()
        (self.spectrum_line,) = self.ax_spectrum.plot([], [], ".", ms=3, color="#8ab4f8",
                                                      label="data")
        (self.fit_line,) = self.ax_spectrum.plot([], [], "-", color="#ff9e40", label="fit")
        self.ax_spectrum.set_yscale("log")
        self.ax_spectrum.set_xlabel("q / q_N")
        self.ax_spectrum.legend(loc="upper right", fontsize="small")
        axes = self.figures["params"].subplots(3, 1, sharex=True)
        self.ax_c0, self.ax_c3, self.ax_C = axes
        self.param_lines, self.param_good_lines = {}, {}
        for ax, name, label in ((self.ax_c0, "c0", "c0"), (self.ax_c3, "c3", "c3"),
                                (self.ax_C, "floor_C", "C")):
            (self.param_lines[name],) = ax.plot([], [], "o", mfc="none", ms=4, color="#8ab4f8",
                                                label="all fits")
            (self.param_good_lines[name],) = ax.plot([], [], "o", ms=4, color="#ff9e40",
                                                     label=f"R² ≥ {GOOD_R2}")
            ax.set_ylabel(label)
        self.ax_c0.legend(loc="best", fontsize="x-small")
        self.ax_readout = self.figures["readout"].add_subplot()
        (self.c2_line,) = self.ax_readout.plot([], [], "o", ms=4, color="#8ab4f8",
                                               label="frames")
        (self.eq2_line,) = self.ax_readout.plot([], [], "-", color="#ff9e40", label="Eq. 2")
        self.ax_readout.set_xlabel("N_D (e⁻/px)")
        self.ax_readout.set_ylabel("C²")
        self.ax_readout.legend(loc="upper right", fontsize="small")
        for fig in self.figures.values():
            for ax in fig.axes:
                style_axes(ax, self._colors)
        self.content.layout().addWidget(self.tabs)

    def _shown(self):
        """(result, row) whose spectrum the spectrum plot shows, or (None, 0)."""
        if self.result is not None:
            index = self.current_frame() if self.result.n_frames > 1 else 0
            return self.result, min(index, self.result.n_frames - 1)
        if self.frame_result is not None:
            return self.frame_result, 0
        return None, 0

    def _on_step(self, _event=None):
        if self.result is not None and self.result.n_frames > 1:
            self._update_spectrum_plot()

    def _update_plots(self):
        self._update_spectrum_plot()
        self._update_series_plots()

    def _update_spectrum_plot(self):
        result, row = self._shown()
        ax = self.ax_spectrum
        if result is None or result.spectra is None:
            self.spectrum_line.set_data([], [])
            self.fit_line.set_data([], [])
            ax.set_title("")
        else:
            q = result.q_norm
            self.spectrum_line.set_data(q, result.spectra[row])
            self.fit_line.set_data(q, result.predict(row))  # NaN where the fit failed
            frame = row if result is self.result else self._frame_result_index
            dose = result.dose_e_per_A2[row]
            dose_txt = f", {dose:.3g} e⁻/Å²" if np.isfinite(dose) else ""
            flag = "" if result.ok[row] else f" — flagged: {result.message[row]}"
            ax.set_title(f"frame {frame}{dose_txt}: R² {result.r2[row]:.3f}{flag}",
                         fontsize="small", color=self._colors["fg"], wrap=True)
            ax.set_ylabel("⟨|FFT|⟩" if result.spectrum_kind == "magnitude" else "⟨|FFT|²⟩")
            ax.relim()
            with warnings.catch_warnings():  # a flat region: nothing positive to log-scale
                warnings.simplefilter("ignore", UserWarning)
                ax.autoscale_view()
        self.canvases["spectrum"].draw_idle()

    def _series_x(self, result):
        """x values and label of the parameter plot: dose if known, else frame index."""
        if np.isfinite(result.dose_e_per_A2).any():
            return result.dose_e_per_A2, "dose (e⁻/Å²)", True
        return result.frame.astype(float), "frame", False

    def _update_series_plots(self):
        result = self.result
        if result is None:
            for name in self.param_lines:
                self.param_lines[name].set_data([], [])
                self.param_good_lines[name].set_data([], [])
            self.c2_line.set_data([], [])
            self.eq2_line.set_data([], [])
            self.ax_readout.set_title("")
        else:
            x, xlabel, log_x = self._series_x(result)
            good = result.ok & (result.r2 >= GOOD_R2)
            for name in self.param_lines:
                y = np.asarray(getattr(result, name), dtype=float)
                self.param_lines[name].set_data(x, y)
                self.param_good_lines[name].set_data(x[good], y[good])
            for ax in (self.ax_c0, self.ax_c3, self.ax_C):
                ax.set_xscale("log" if log_x else "linear")
                ax.relim()
                ax.autoscale_view()
            self.ax_C.set_xlabel(xlabel)
            self._update_readout_plot(result)
        for key in ("params", "readout"):
            self.canvases[key].draw_idle()

    def _update_readout_plot(self, result):
        ax = self.ax_readout
        eq2 = eq2_plot_data(result)
        ax.set_ylabel(eq2.quantity)
        use = eq2.used
        if not use.any():
            self.c2_line.set_data([], [])
            self.eq2_line.set_data([], [])
            ax.set_title("N0 needs dose and pixel size", fontsize="small",
                         color=self._colors["fg"])
            return
        self.c2_line.set_data(eq2.n_d[use], eq2.y[use])
        if eq2.curve.size:
            self.eq2_line.set_data(eq2.grid, eq2.curve)
            ax.set_title(f"N0 = {eq2.n0_e_per_px:.3g} e⁻/px, R² {eq2.r2:.2f}", fontsize="small",
                         color=self._colors["fg"])
        else:
            self.eq2_line.set_data([], [])
            ax.set_title("")
        ax.set_xscale("log")
        ax.relim()
        ax.autoscale_view()

    def plotted_data(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The (x, y) data of every curve now plotted (for checks and export)."""
        out = {"spectrum": self.spectrum_line.get_data(), "fit": self.fit_line.get_data(),
               "C2": self.c2_line.get_data(), "eq2": self.eq2_line.get_data()}
        for name, line in self.param_lines.items():
            out[name] = line.get_data()
            out[f"{name}_good"] = self.param_good_lines[name].get_data()
        return {k: (np.asarray(x, dtype=float), np.asarray(y, dtype=float))
                for k, (x, y) in out.items()}
