"""Training pairs of the low-dose denoiser: what the three sources share.

Katsuno et al. (2021) train end-to-end from short to long exposures of the same
field. Training pairs come from three sources, each a
:class:`torch.utils.data.Dataset` of ``(noisy, target, expected_e_per_px)``:
``noisy`` and ``target`` are ``(1, crop, crop)`` float32 crops in electrons per
pixel (detector counts divided by the gain), the target on the noisy crop's grid
and dose scale, and ``expected_e_per_px`` the noisy frame's expected electrons
per vacuum pixel (its normalisation,
:func:`napari_lowdose.models.normalisation.normalise_counts`). Training crops get a
random position, flip and 90° rotation, drawn from ``SeedSequence(seed,
spawn_key=(epoch, index))`` (the same batches whatever the number of loader
workers); validation items are central crops (or whole frames).

* :class:`~.denoise_measured.PairedExposures` — real short/long exposure pairs
  (Katsuno et al.): the long exposure is resampled to the short one's size (it
  may have been binned), registered to it with subpixel precision
  (:func:`napari_lowdose.analysis.registration.register_translation`), shifted
  onto its grid and scaled to its dose.
* :class:`~.denoise_simulated.SimulatedPairs` — from the cached exit waves of a
  simulated dataset (``napari-lowdose simulate``): Table 1 optics drawn per wave
  and image, a log-uniform dose, the detector noise of Eq. 3 with the dataset's
  noise model for the input, and the noise-free image ``ψ · N_D`` (infinite
  dose, no MTF, no readout noise) as the target.
* :class:`~.denoise_measured.Noise2NoiseSeries` — self-supervised, from a dose
  series alone (Lehtinen et al. 2018): the frames are registered to their mean,
  and a frame is paired with a neighbouring, independently noisy frame shifted
  onto its grid and scaled to its dose. With no clean target, the L2 loss
  (mean-preserving) is the better choice at low dose: L1 would converge to the
  median of the Poisson noise, which is biased low at a few electrons per pixel.

This module holds their common base (:class:`PairSource`: crops, augmentation,
seeding) and helpers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..analysis.registration import shift_image
from ..io.series import as_frame_stack
from ..models.normalisation import per_frame_e_per_px
from .loop import TrainingError

__all__ = [
    "PairSource",
    "as_frames",
    "border_px",
    "frame_doses",
    "positive_mean",
    "shifted_window",
]

#: Margin (px) kept around a shifted window for the cubic spline's support.
_SPLINE_MARGIN_PX = 4


def as_frames(data: Any, name: str) -> Any:
    """An indexable ``(n, y, x)`` view of a stack or a single frame."""
    if not (hasattr(data, "shape") and hasattr(data, "__getitem__")):
        data = np.asarray(data)
    if len(data.shape) == 2:
        data = as_frame_stack(data)
    if len(data.shape) != 3 or min(data.shape) < 1:
        raise TrainingError(f"{name} must be a (frames, y, x) stack or one (y, x) frame, "
                            f"got shape {tuple(data.shape)}")
    return data


def frame_doses(values: Any, n: int, name: str) -> np.ndarray | None:
    """``None``, or ``n`` positive, finite doses (one value is repeated); see
    :func:`~napari_lowdose.models.normalisation.per_frame_e_per_px`."""
    try:
        return per_frame_e_per_px(values, n, name=name)
    except ValueError as err:
        raise TrainingError(str(err)) from None

def positive_mean(frame: np.ndarray, what: str) -> float:
    """The frame mean, refused unless positive (a frame normalised by its mean)."""
    mean = float(np.mean(frame))
    if not (math.isfinite(mean) and mean > 0):
        raise TrainingError(f"{what} has a mean of {mean:.4g}; a frame normalised by its mean "
                            "needs a positive mean (give its dose)")
    return mean


class PairSource(Dataset):
    """Crops, augmentation and seeding shared by the pair sources."""

    kind = ""

    def __init__(self, crop_px: int | None, augment: bool, seed: int) -> None:
        if crop_px is not None and int(crop_px) < 8:
            raise TrainingError(f"crops must be at least 8 px, got {crop_px}")
        self.crop_px = None if crop_px is None else int(crop_px)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the random draws of ``epoch``."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        epoch = self.epoch if self.augment else 0
        return np.random.default_rng(np.random.SeedSequence(self.seed,
                                                            spawn_key=(epoch, int(index))))

    def _window(self, box: tuple[int, int, int, int],
                rng: np.random.Generator) -> tuple[int, int, int, int]:
        """``(y0, x0, h, w)`` of the crop inside the valid ``box = (y0, y1, x0, x1)``."""
        by0, by1, bx0, bx1 = box
        height, width = by1 - by0, bx1 - bx0
        if self.crop_px is None:
            return by0, bx0, height, width
        c = self.crop_px
        if not self.augment and c > min(height, width):
            # Validation: the central crop of at most crop_px.
            h, w = min(c, height), min(c, width)
            return by0 + (height - h) // 2, bx0 + (width - w) // 2, h, w
        if c > min(height, width):
            raise TrainingError(f"a crop of {c} px does not fit the usable {height}×{width} px "
                                f"of the frames ({self.kind} pairs); use a smaller crop")
        if self.augment:
            return (by0 + int(rng.integers(height - c + 1)),
                    bx0 + int(rng.integers(width - c + 1)), c, c)
        return by0 + (height - c) // 2, bx0 + (width - c) // 2, c, c

    def _item(self, noisy: np.ndarray, target: np.ndarray, e_per_px: float,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.augment:
            k = int(rng.integers(4))
            flip = bool(rng.integers(2))
            noisy, target = np.rot90(noisy, k), np.rot90(target, k)
            if flip:
                noisy, target = noisy[:, ::-1], target[:, ::-1]
        return (torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32))[None],
                torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))[None],
                torch.tensor(float(e_per_px), dtype=torch.float32))

    def _common(self) -> dict[str, Any]:
        return {"kind": self.kind, "crop_px": self.crop_px, "augment": self.augment,
                "seed": self.seed, "n_items": len(self)}

    def describe(self) -> dict[str, Any]:
        """JSON-ready description of the source (stored in the checkpoint metadata)."""
        return self._common()


def shifted_window(image: np.ndarray, shift_px: tuple[float, float], y0: int, x0: int,
                    height: int, width: int) -> np.ndarray:
    """``shift_image(image, shift_px)[y0:y0+h, x0:x0+w]``, computed on a small window.

    The window reaches ``|shift| + margin`` beyond the crop, which must lie inside
    ``image`` (the caller's valid box guarantees it).
    """
    dy, dx = shift_px
    iy, ix = int(math.floor(dy)), int(math.floor(dx))
    m = _SPLINE_MARGIN_PX
    top, left = y0 - iy - m, x0 - ix - m
    window = np.asarray(image[top:top + height + 2 * m + 1, left:left + width + 2 * m + 1],
                        dtype=np.float32)
    moved = shift_image(window, (dy - iy, dx - ix))
    return moved[m:m + height, m:m + width]


def border_px(shifts: Sequence[tuple[float, float]]) -> int:
    """Pixels to keep clear of the frame edges for windows shifted by ``shifts``."""
    largest = max((max(abs(dy), abs(dx)) for dy, dx in shifts), default=0.0)
    return int(math.ceil(largest)) + _SPLINE_MARGIN_PX + 2
