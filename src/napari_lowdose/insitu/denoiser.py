"""The frame denoiser of in-situ mode: one frame in, one denoised frame out.

Katsuno et al. (2021) denoise at video rate so that beam-sensitive specimens
can be watched at low dose while they are acquired. :class:`FrameDenoiser`
is the ``process_frame`` of a :class:`~napari_lowdose.insitu.session.WatchSession`:
it normalises each frame by its expected electrons per vacuum pixel and runs
the denoiser on it. Pure: no Qt; the device and model modules are imported
only when a frame denoiser is made and used.
"""

import time
from typing import Any

import numpy as np

from ..io.units import electrons_per_pixel
from ..workflows.policies import detector_gain

__all__ = ["FrameDenoiser"]


class FrameDenoiser:
    """The ``process_frame`` of a watch session: one frame in, one denoised frame out.

    The frame is normalised by its expected electrons per vacuum pixel, dose × pixel
    height × pixel width (:func:`napari_lowdose.workflows.policies.electrons_per_pixel`):
    the dose and pixel size come from the file (napari-lowdose metadata, MRC
    headers …) unless given here; without a dose the frame mean is used. The detector
    gain is the one given here, else the one the file states, else 1
    (:func:`~napari_lowdose.workflows.policies.detector_gain`), as ``napari-lowdose
    denoise`` chooses it.

    Parameters
    ----------
    model : torch.nn.Module
        A loaded denoiser (:func:`napari_lowdose.models.registry.load_denoiser`).
    device : str or torch.device
        Where to run it.
    dose_e_per_A2 : float, optional
        Dose of every frame, overriding the files' (e.g. a fixed exposure).
    pixel_size_A : float, optional
        Pixel size, overriding the files'.
    counts_per_electron : float, optional
        Detector gain, overriding the files' (None: the file's, else 1).
    """

    def __init__(self, model: Any, device: Any = "cpu", *, dose_e_per_A2: float | None = None,
                 pixel_size_A: float | None = None,
                 counts_per_electron: float | None = None) -> None:
        from ..device import select_device

        self.model = model
        self.device = select_device(device)
        self.model.to(self.device)
        self.dose_e_per_A2 = dose_e_per_A2
        self.pixel_size_A = pixel_size_A
        self.counts_per_electron = counts_per_electron

    def expected_e_per_px(self, metadata: dict[str, Any]) -> float | None:
        """Expected electrons per vacuum pixel of a frame, or None (use its mean)."""
        dose = self.dose_e_per_A2 if self.dose_e_per_A2 is not None else metadata.get(
            "dose_e_per_A2")
        pixel = self.pixel_size_A if self.pixel_size_A is not None else metadata.get(
            "pixel_size_A")
        if dose is None or pixel is None or not dose > 0:
            return None
        return float(electrons_per_pixel(dose, pixel))

    def gain(self, metadata: dict[str, Any]) -> float:
        """Counts per electron of a frame: the one given, else the file's, else 1."""
        return detector_gain(self.counts_per_electron, metadata.get("counts_per_electron"))

    def __call__(self, frame: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
        """Denoise one frame (float32, the frame's units)."""
        from ..models.denoising import denoise_frame

        started_s = time.perf_counter()
        expected = self.expected_e_per_px(metadata)
        gain = self.gain(metadata)
        metadata["expected_e_per_px"] = expected
        metadata["counts_per_electron"] = gain
        denoised = denoise_frame(self.model, np.asarray(frame, dtype=np.float32),
                                 expected_e_per_px=expected,
                                 counts_per_electron=gain,
                                 device=self.device)
        metadata["process_ms"] = round(1e3 * (time.perf_counter() - started_s), 2)
        return denoised
