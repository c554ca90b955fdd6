"""The quality readout of the 'Denoise' dock: the unbiased MSE with no clean image.

After a layer run, the frames denoised are judged against a second, independent
exposure of the same field (:mod:`napari_lowdose.analysis.denoise_quality`): the
"independent frame" layer when one is chosen (its frame shown), else, for a series,
the next frame of similar dose. The "quality" line shows the unbiased MSE of the raw
frame, of the best Gaussian filter and of the denoiser (×10³ in normalised units, and
the PSNR each implies); the output layer's ``"denoised"`` record keeps the full
readout, as ``denoise.json`` does for ``napari-lowdose denoise --reference``.
"""

import numpy as np
from magicgui.widgets import ComboBox, Label

from ..analysis.denoise_quality_runs import NOT_JUDGED
from ..errors import one_line
from ..io.layers import LOWDOSE_KEY
from ..io.series import as_frame_stack
from ._layers import base_data
from ._workers import run_task
from .denoise_output import DENOISED_KEY, stack

__all__ = ["QualityRows"]

NO_QUALITY = "needs a second exposure: choose an independent frame, or denoise a series"


class QualityRows:
    """Mixin of :class:`~.denoise.DenoiseWidget`: the independent-frame choice and the
    quality line, filled after each whole run (its worker is kept in the dock's shared
    state, ``quality_worker``, so that closing the dock stops it)."""

    def _build_quality_rows(self) -> list:
        self.reference_combo = ComboBox(
            label="independent frame", choices=self._reference_layers, nullable=True,
            tooltip="Another exposure of the same field with independent noise (same "
            "detector): the quality readout judges the denoised frames against it "
            "(its frame shown). None: a series is judged frame against next frame. As "
            "--reference of 'napari-lowdose denoise'.")
        self.reference_combo.value = None
        self.quality = Label(label="quality", value="")
        return [self.reference_combo, self.quality]

    def _reference_layers(self, _widget=None):
        chosen = self.layer_combo.value if hasattr(self, "layer_combo") else None
        return [layer for layer in self._viewer.layers
                if self._suits(layer) and layer is not chosen]

    def _reference_frame(self):
        """The chosen independent frame (its frame shown), or None."""
        layer = self.reference_combo.value
        if layer is None or layer not in self._viewer.layers:
            return None
        data = base_data(layer)
        frame = data[self.current_frame(layer)] if data.ndim == 3 else data
        return np.asarray(frame, dtype=np.float64)

    def _start_quality(self, run, request) -> None:
        """Judge the frames of a finished run (worker thread) and show the readout."""
        done = [i for i in run.indices if i in run.done]
        reference = self._reference_frame()
        if reference is None and len(done) < 2:
            self.quality.value = NO_QUALITY
            return
        if reference is not None and reference.shape != tuple(request.data.shape[-2:]):
            self.quality.value = (f"not possible: the independent frame is {reference.shape}, "
                                  f"the frames {tuple(request.data.shape[-2:])}")
            return
        data = as_frame_stack(request.data)
        raw = [data[i] for i in done]
        denoised = [np.array(stack(run)[i]) for i in done]
        peaks = (None if request.expected is None
                 else [float(request.expected[i]) * float(request.gain) for i in done])
        self.quality.value = "judging…"

        def task():
            from ..analysis.denoise_quality_runs import run_quality

            return run_quality(raw, denoised, reference=reference, peaks=peaks)

        self._state.quality_worker = run_task(
            task, use_thread=self.use_thread,
            on_return=lambda result: self._show_quality(run, result),
            on_error=self._quality_failed, on_finish=self._quality_done)

    def _show_quality(self, run, result) -> None:
        if self._state.closed:  # the dock is gone
            return
        readout, against = result
        if readout is None:
            self.quality.value = NOT_JUDGED
            return
        self.quality.value = f"against {against}: {readout.summary()}"
        if run.layer in self._viewer.layers:
            lowdose = dict(run.layer.metadata.get(LOWDOSE_KEY) or {})
            record = dict(lowdose.get(DENOISED_KEY) or {},
                          quality={**readout.to_dict(), "against": against})
            run.layer.metadata = {**run.layer.metadata,
                                  LOWDOSE_KEY: {**lowdose, DENOISED_KEY: record}}

    def _quality_failed(self, err) -> None:
        if not self._state.closed:
            self.quality.value = f"not possible: {one_line(err)}"

    def _quality_done(self) -> None:
        self._state.quality_worker = None
