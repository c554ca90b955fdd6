"""The series fit of the 'Detector noise' dock and the report of every finished fit.

:class:`NoiseFitRun` is a mixin of :class:`~.noise_fit.NoiseFitWidget`: "Fit whole
series" reads the spectra of the vacuum rectangle in chunks of frames in a worker
(with progress, the time left and Cancel), then fits the whole series at once
(:func:`napari_lowdose.noise.fitting.fit_spectra`) and checks it for vacuum
(:func:`napari_lowdose.noise.vacuum.vacuum_check`); :meth:`NoiseFitRun._report`
writes the result text, redraws the plots and sends at most one warning.
"""

import time

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import one_line
from ..io.series import BadPixelsError, check_finite_frames
from ..noise.fit_result import NoiseFitResult
from ..noise.fitting import fit_spectra
from ..noise.pairs import fit_noise_from_pairs
from ..noise.spectrum import RadialSpectrum, radial_spectrum
from ..noise.vacuum import VacuumCheck, no_fit_reason, vacuum_check
from ._layers import base_data
from ._workers import eta_text, run_task

__all__ = ["NoiseFitRun", "pair_fit"]


def pair_fit(inputs) -> tuple[NoiseFitResult, VacuumCheck]:
    """Fit the frame pairs ``inputs["pairs"]`` of the layer (and the pair layer), with the
    check that the differences hold noise only (the vacuum check's rule)."""
    data = base_data(inputs["layer"])
    other = data if inputs["pair_layer"] is None else base_data(inputs["pair_layer"])
    two_d = data.ndim == 2

    def frame(arr, i):
        return np.asarray(arr if two_d else arr[i], dtype=np.float64)

    pairs = [(frame(data, i), frame(other, j)) for i, j in inputs["pairs"]]
    for k, (a, b) in enumerate(pairs):
        check_finite_frames(np.stack([a, b]), inputs["pairs"][k])
    result, spectra = fit_noise_from_pairs(pairs, model=inputs["model"],
                                           spectrum_kind=inputs["kind"],
                                           counts_per_electron=inputs["gain"],
                                           sampling_A=inputs["sampling"])
    return result, vacuum_check(result, spectra.spectrum.counts)


class NoiseFitRun:
    """Mixin of :class:`~.noise_fit.NoiseFitWidget`: the series fit and the fit report.

    Reads and sets the widget's ``_worker``, ``_cancelled``, ``chunk_frames``,
    ``use_thread``, ``result``, ``check``, ``frame_result``, ``frame_check``, its
    buttons, ``progress_bar``, ``progress_text`` and ``status``; calls its
    ``_inputs()``, ``_has_result()``, ``_update_buttons()``, ``_update_plots()`` and
    ``spectrum_note()``.
    """

    def fit_series(self, _event=None):
        """Fit every frame: spectra in chunks (with progress and Cancel), then one batched fit.

        The first chunk is one frame, timed, so that the time left shows at once.
        """
        if self._worker is not None:
            show_info("A series fit is already running.")
            return
        inputs = self._inputs()
        if inputs is None:
            return
        self._cancelled = False
        self._series_what = inputs["what"]
        self.progress_bar.max = inputs["n_frames"] + 1
        self.progress_bar.value = 0
        self.progress_text.value = f"reading frame 0 of {inputs['n_frames']} …"
        if self.use_thread:
            self.fit_series_button.enabled = self.fit_frame_button.enabled = False
            self.add_roi_button.enabled = False
            self.cancel_button.enabled = True
        self._worker = run_task(
            self._series_gen(inputs), use_thread=self.use_thread,
            on_yield=self._on_series_yield, on_error=self._on_series_error,
            on_finish=self._on_worker_done,
        )

    def _chunks(self, n_frames: int) -> list[tuple[int, int]]:
        """(start, stop) of the chunks read: frame 0 alone (timed), then chunk_frames each."""
        edges = [0, 1] + list(range(1 + self.chunk_frames, n_frames, self.chunk_frames))
        edges = [e for e in edges if e < n_frames] + [n_frames]
        return list(zip(edges[:-1], edges[1:], strict=True))

    def _series_gen(self, inputs):
        """Generator: yields ("progress", done, total, elapsed_s) after each chunk of
        spectra, then ("result", NoiseFitResult, VacuumCheck)."""
        if inputs["source"] == "pairs":
            yield ("progress", 0, inputs["n_frames"], 0.0)
            result, check = pair_fit(inputs)
            yield ("progress", inputs["n_frames"], inputs["n_frames"], 0.0)
            yield ("result", result, check)
            return
        layer, (y0, y1, x0, x1) = inputs["layer"], inputs["roi"]
        data, n = base_data(layer), inputs["n_frames"]
        values, spec = [], None
        start_time = time.perf_counter()
        for start, stop in self._chunks(n):
            if layer.ndim == 3:
                block = np.asarray(data[start:stop, y0:y1, x0:x1])
            else:
                block = np.asarray(data[y0:y1, x0:x1])
            check_finite_frames(block, range(start, stop))
            spec = radial_spectrum(block, kind=inputs["kind"])
            values.append(spec.values)
            yield ("progress", stop, n, time.perf_counter() - start_time)
        full = RadialSpectrum(q_norm=spec.q_norm, values=np.concatenate(values),
                              counts=spec.counts, kind=spec.kind, frame_shape=spec.frame_shape)
        result = fit_spectra(full, model=inputs["model"], dose_e_per_A2=inputs["dose"],
                             sampling_A=inputs["sampling"])
        yield ("result", result, vacuum_check(result, full.counts))

    def _on_series_yield(self, item):
        if self._cancelled:
            return
        if item[0] == "progress":
            _, done, total, elapsed = item
            self.progress_bar.value = done
            text = eta_text(done, total, elapsed)
            self.progress_text.value = text if done < total else f"{text}; fitting the model …"
        else:
            self.progress_bar.value = self.progress_bar.max
            self._on_series_result(item[1], item[2])

    def _on_series_result(self, result: NoiseFitResult, check: VacuumCheck):
        rows = "pair spectra" if result.noise_source == "pairs" else "frames"
        self.progress_text.value = (f"done: {int(np.count_nonzero(result.ok))} of "
                                    f"{result.n_frames} {rows} fitted")
        self.result, self.check = result, check
        self.result_what = self._series_what
        self.frame_result = self.frame_check = None
        self._report(result, check, "series")

    def _on_series_error(self, err):
        self.progress_bar.value = 0
        self.progress_text.value = ""
        kept = "; the previous result is kept" if self._has_result() else ""
        show_error(f"{_failed(err, 'Series noise fit')}{kept}")

    def _on_worker_done(self):
        self._worker = None
        self.fit_series_button.enabled = self.fit_frame_button.enabled = True
        self.add_roi_button.enabled = True
        self.cancel_button.enabled = False
        if self._cancelled:
            self.progress_bar.value = 0
            self.progress_text.value = "cancelled"

    def on_closed(self) -> None:
        """The dock was closed: stop a running series fit."""
        self.cancel()

    def cancel(self, _event=None):
        """Stop a running series fit; the previous result is kept."""
        if self._worker is not None:
            self._cancelled = True
            self._worker.quit()
            show_info("Noise fit cancelled; the previous result is kept.")

    @property
    def busy(self) -> bool:
        """Whether a series fit is running."""
        return self._worker is not None

    def _report(self, result: NoiseFitResult, check: VacuumCheck, what: str) -> None:
        """Result text, plots, buttons and (at most) one warning for a finished fit."""
        self._describe(result, check, what)
        self._update_buttons()
        self._update_plots()
        warning = no_fit_reason(result) if not np.any(result.ok) else check.warning()
        if warning:
            show_warning(warning)

    def _describe(self, result: NoiseFitResult, check: VacuumCheck, what: str):
        ok = result.ok
        if not ok.any():
            verdict = "  ⚠ no model to save"
        elif check.passed:
            verdict = ""
        elif np.isfinite(check.scatter).any():
            verdict = "  ⚠ probably not pure vacuum: not saved as a model"
        else:
            verdict = "  ⚠ no model to save"
        lines = [f"{what}: {self.spectrum_note(result.model, result.spectrum_kind)}",
                 f"{check.summary()}{verdict}"]
        if result.noise_source == "pairs":
            lines[1] = (f"frame-pair differences: {check.summary().replace('vacuum', 'noise')}"
                        f"{verdict.replace('vacuum', 'noise')}")
        flagged = int(result.n_frames - ok.sum())
        if flagged:
            rest = "the medians use the others" if ok.any() else "none fitted"
            lines.append(f"{flagged} fit(s) flagged (e.g. {result.message[~ok][0]}); {rest}")
        if ok.any():
            lines.append(f"c0 {np.median(result.c0[ok]):.3g}, c3 {np.median(result.c3[ok]):.3g},"
                         f" C {np.median(result.floor_C[ok]):.3g}, "
                         f"R² {check.median_r2:.3g} (medians)")
        n0 = result.readout.n0_e_per_px
        if np.isfinite(n0):
            lines.append(f"N0 = {n0:.3g} e⁻/px (Eq. 2 R² {result.readout.r2:.3g})")
        elif not ok.any():
            lines.append("N0: no fitted frame to read it from")
        elif not np.isfinite(np.asarray(result.frame_dose_e_per_px, dtype=float)).any():
            lines.append("N0: needs dose and pixel size")
        else:
            lines.append("N0: not fitted (see the per-frame table)")
        self.status.value = "\n".join(lines)


def _failed(err: BaseException, what: str) -> str:
    """One line: "<what> refused: <bad frames>" or "<what> failed: <why>"."""
    verb = "refused" if isinstance(err, BadPixelsError) else "failed"
    return f"{what} {verb}: {one_line(err)}"
