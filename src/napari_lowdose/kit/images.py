"""Training images drawn fresh from exit waves at every step (no image set on disk).

Each item draws, from the kit's ranges, Table 1 optics, a log-uniform dose and a detector
(one of the Table 3 presets, then its Eq. 3 parameters), images a random in-memory exit
wave (:func:`~napari_lowdose.simulate.imaging.clean_image`, then
:func:`~napari_lowdose.simulate.imaging.noisy_image` on a crop plus a margin), and
returns a crop with a random flip and rotation. The numpy imaging runs in DataLoader
worker processes (the machine's CPU cores) while the GPU trains; every worker has its own
random stream, so no two steps see the same noise.

Segmentation items are ``(standardised frame, mask)`` as :class:`~napari_lowdose.train.
data.SegmentationDataset` gives them; denoiser items are ``(noisy e⁻/px, ψ · N_D,
N_D)`` as the simulated pair source gives them.
"""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..models.normalisation import standardise
from ..noise.presets import preset
from ..simulate.imaging import clean_image, noisy_crop
from ..simulate.optics import TABLE1_OPTICS, OpticsRanges, draw_optics
from .waves import Wave

__all__ = ["ImageRanges", "FreshImages", "draw_item", "fixed_items"]


@dataclass(frozen=True)
class ImageRanges:
    """What each image draws from.

    Parameters
    ----------
    dose_range_e_per_A2 : (float, float)
        Log-uniform frame dose (segmentation).
    e_per_px_range : (float, float)
        Log-uniform expected electrons per pixel (denoiser).
    detectors : sequence of str
        Table 3 presets, one drawn per image.
    optics : OpticsRanges
        Table 1 by default.
    """

    dose_range_e_per_A2: tuple[float, float] = (10.0, 1e4)
    e_per_px_range: tuple[float, float] = (0.05, 100.0)
    detectors: tuple[str, ...] = ("MTF 1", "MTF 2", "MTF 3", "MTF 4", "MTF 5")
    optics: OpticsRanges = TABLE1_OPTICS


def _log_uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    lo, hi = (float(v) for v in bounds)
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def draw_item(wave: Wave, kind: str, crop_px: int, ranges: ImageRanges,
              rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """One training item of ``kind`` (``"segment"`` or ``"denoise"``) from ``wave``."""
    s = wave.geometry.sampling_A
    optics = draw_optics(rng, ranges.optics)
    clean = clean_image(wave.wave, s, optics, wave.geometry.crop, workers=1)
    if kind == "segment":
        dose = _log_uniform(rng, ranges.dose_range_e_per_A2)
    else:
        dose = _log_uniform(rng, ranges.e_per_px_range) / s**2
    noise = preset(ranges.detectors[int(rng.integers(len(ranges.detectors)))]).sample(rng)
    ny, nx = clean.shape
    c = min(int(crop_px), ny, nx)
    y0, x0 = int(rng.integers(ny - c + 1)), int(rng.integers(nx - c + 1))
    noisy = noisy_crop(clean, (y0, x0, c, c), dose, s, noise, rng)
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def orient(a: np.ndarray) -> torch.Tensor:
        a = np.rot90(a, k)
        return torch.from_numpy(np.ascontiguousarray(a[:, ::-1] if flip else a,
                                                     dtype=np.float32))[None]

    if kind == "segment":
        image = standardise(torch.from_numpy(np.ascontiguousarray(noisy, np.float32))).numpy()
        return orient(image), orient(wave.mask[y0:y0 + c, x0:x0 + c])
    e_per_px = dose * s**2
    target = clean[y0:y0 + c, x0:x0 + c] * np.float32(e_per_px)
    return orient(noisy), orient(target), torch.tensor(e_per_px, dtype=torch.float32)


class FreshImages(IterableDataset):
    """An endless stream of fresh items from in-memory waves (one stream per worker).

    Parameters
    ----------
    waves : list of Wave
        The training waves.
    kind : {"segment", "denoise"}
    crop_px : int
    ranges : ImageRanges
    seed : int
    """

    def __init__(self, waves: list[Wave], kind: str, crop_px: int, ranges: ImageRanges,
                 seed: int) -> None:
        super().__init__()
        if kind not in ("segment", "denoise"):
            raise ValueError(f"kind must be 'segment' or 'denoise', got {kind!r}")
        if not waves:
            raise ValueError("no exit waves to draw training images from")
        self.waves, self.kind, self.crop_px = waves, kind, int(crop_px)
        self.ranges, self.seed = ranges, int(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(worker,)))
        while True:
            wave = self.waves[int(rng.integers(len(self.waves)))]
            yield draw_item(wave, self.kind, self.crop_px, self.ranges, rng)


def fixed_items(waves: list[Wave], kind: str, crop_px: int, ranges: ImageRanges,
                n_items: int, seed: int) -> list[tuple[torch.Tensor, ...]]:
    """A fixed validation set: ``n_items`` items, the same for every evaluation."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(10**6,)))
    return [draw_item(waves[i % len(waves)], kind, crop_px, ranges, rng)
            for i in range(int(n_items))]
