"""Simulated training pairs of the denoiser, imaged on the fly from cached exit waves.

Input: the noisy frame of Eq. 3 (:func:`napari_lowdose.simulate.imaging.noisy_image`)
with a dataset's detector noise model; target: the noise-free image ``ψ · N_D`` at
the same dose (infinite dose, no MTF, no readout noise), for training the denoiser
of Katsuno et al. (2021) on data with a known clean image. Items and augmentation are those of
:class:`.denoise_sources.PairSource`.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..noise.model import NoiseModel
from ..simulate.imaging import OpticsRanges, clean_image, draw_optics, noisy_crop
from .denoise_sources import PairSource
from .loop import TrainingError

__all__ = ["DEFAULT_E_PER_PX_RANGE", "SimulatedPairs"]

#: Default range of the simulated frame doses, electrons per pixel (log-uniform):
#: from far below Katsuno et al.'s ~5 e⁻/px to where shot noise is small. The range
#: the shipped denoiser was trained on (``docs/models.md``).
DEFAULT_E_PER_PX_RANGE: tuple[float, float] = (0.05, 100.0)


class SimulatedPairs(PairSource):
    """Noisy/noise-free pairs imaged on the fly from a simulated dataset's exit waves.

    Item ``k`` of wave ``w`` (``images_per_wave`` per wave) draws Table 1 optics
    from ``SeedSequence(seed, spawn_key=(w, k))`` — the same in every epoch, so the
    clean image is computed once per wave and optics and kept in a cache of
    ``clean_cache`` images — and, per epoch, a log-uniform dose, a detector-noise
    draw of the noise model and the crop. Input: the noisy frame of Eq. 3
    (:func:`napari_lowdose.simulate.imaging.noisy_image`), electrons per pixel.
    Target: ``ψ · N_D``, the noise-free image at the same expected electrons per
    pixel ``N_D = dose · s²``.

    Parameters
    ----------
    path : str or Path
        Dataset folder made by ``napari-lowdose simulate`` (its card and
        ``cache/s000000/`` exit waves; the zarr images are not used).
    split : {"train", "val"}, optional
        Waves of the dataset's training or validation structures.
    dose_range_e_per_A2 : (float, float), optional
        Log-uniform frame-dose range in e⁻/Å²; default: ``e_per_px_range``.
    e_per_px_range : (float, float), optional
        Log-uniform range of electrons per pixel, used when no dose range is given.
    images_per_wave : int, optional
        Optics draws (items) per wave and epoch.
    noise_model : NoiseModel, optional
        Detector noise ranges; default the dataset's.
    optics_ranges : OpticsRanges, optional
        Default the dataset's (Table 1).
    crop_px : int or None, optional
        Crop side (None: whole frames); without ``augment``, the central crop of at
        most this side.
    augment : bool, optional
        Random draws per epoch, random crops, flips and rotations; otherwise epoch 0's
        draws and central crops (validation).
    seed : int, optional
        Seed of all draws.
    max_waves : int, optional
        Use only the first waves of the split.
    clean_cache : int, optional
        Clean images kept in memory.
    """

    kind = "simulated"

    def __init__(self, path: str | os.PathLike, split: str = "train", *,
                 dose_range_e_per_A2: Sequence[float] | None = None,
                 e_per_px_range: Sequence[float] = DEFAULT_E_PER_PX_RANGE,
                 images_per_wave: int = 4, noise_model: Any = None, optics_ranges: Any = None,
                 crop_px: int | None = 128, augment: bool = True, seed: int = 0,
                 max_waves: int | None = None, clean_cache: int = 256) -> None:
        from ..simulate.dataset import DatasetRecipe, read_card
        from ..simulate.exitwaves import ExitWaveCache

        super().__init__(crop_px, augment, seed)
        self.path = Path(path)
        self.card = read_card(self.path)
        try:
            recipe = DatasetRecipe.from_dict(self.card["recipe"])
        except KeyError as error:
            raise TrainingError(f"{self.path}: the dataset card has no recipe") from error
        n_total, n_val = recipe.n_structures, recipe.n_val_structures
        if split == "train":
            indices = list(range(n_total - n_val))
        elif split == "val":
            indices = list(range(n_total - n_val, n_total))
        else:
            raise TrainingError(f"split must be 'train' or 'val', got {split!r}")
        if max_waves is not None:
            indices = indices[:max(0, int(max_waves))]
        self.cache = ExitWaveCache(self.path / "cache")
        missing = [i for i in indices if not self.cache.has(i)]
        if missing:
            raise TrainingError(f"{self.path}: {len(missing)} of the {len(indices)} {split} exit "
                                f"waves are not cached (e.g. structure {missing[0]}); finish the "
                                "dataset with 'napari-lowdose simulate' first")
        self.split = split
        self.indices = indices
        self.geometry = [self._geometry(i) for i in indices]
        self.noise_model = noise_model if noise_model is not None else recipe.noise_model
        if not isinstance(self.noise_model, NoiseModel):
            raise TrainingError("noise_model must be a NoiseModel")
        self.optics_ranges = optics_ranges if optics_ranges is not None else recipe.optics
        if not isinstance(self.optics_ranges, OpticsRanges):
            raise TrainingError("optics_ranges must be OpticsRanges")
        self.dose_range_e_per_A2 = self._range(dose_range_e_per_A2, "dose range")
        self.e_per_px_range = self._range(e_per_px_range, "e⁻/px range")
        if int(images_per_wave) < 1:
            raise TrainingError("images_per_wave must be at least 1")
        self.images_per_wave = int(images_per_wave)
        self.clean_cache = max(0, int(clean_cache))
        self._clean: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    @staticmethod
    def _range(values: Sequence[float] | None, what: str) -> tuple[float, float] | None:
        if values is None:
            return None
        try:
            lo, hi = (float(v) for v in values)
        except (TypeError, ValueError):
            raise TrainingError(f"the {what} must be two numbers, got {values!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise TrainingError(f"the {what} must satisfy 0 < low <= high, got {lo:g}, {hi:g}")
        return lo, hi

    def _geometry(self, index: int):
        from ..simulate.structures import StructureGeometry

        record_path = self.cache.entry_path(index) / "structure.json"
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            return StructureGeometry(**record["geometry"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TrainingError(f"cannot read {record_path}: {error}") from error

    def __len__(self) -> int:
        return len(self.indices) * self.images_per_wave

    def _clean_image(self, w: int, k: int) -> np.ndarray:
        key = (w, k)
        if key in self._clean:
            self._clean.move_to_end(key)
            return self._clean[key]
        structure = self.indices[w]
        geometry = self.geometry[w]
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(structure, k)))
        optics = draw_optics(rng, self.optics_ranges)
        wave = np.load(self.cache.entry_path(structure) / "exit_wave.npy", allow_pickle=False)
        clean = clean_image(wave, geometry.sampling_A, optics, geometry.crop, workers=1)
        if self.clean_cache:
            self._clean[key] = clean
            while len(self._clean) > self.clean_cache:
                self._clean.popitem(last=False)
        return clean

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w, k = divmod(int(index), self.images_per_wave)
        sampling = self.geometry[w].sampling_A
        clean = self._clean_image(w, k)
        rng = self._rng(index)
        if self.dose_range_e_per_A2 is not None:
            lo, hi = self.dose_range_e_per_A2
            dose = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        else:
            lo, hi = self.e_per_px_range
            dose = math.exp(rng.uniform(math.log(lo), math.log(hi))) / sampling**2
        e_per_px = dose * sampling**2
        noise = self.noise_model.sample(rng)
        y0, x0, h, wd = self._window((0, clean.shape[0], 0, clean.shape[1]), rng)
        noisy = noisy_crop(clean, (y0, x0, h, wd), dose, sampling, noise, rng)
        target = clean[y0:y0 + h, x0:x0 + wd] * np.float32(e_per_px)
        return self._item(noisy, target, e_per_px, rng)

    def trained_e_per_px_range(self) -> list[float]:
        """Lowest and highest expected electrons per pixel the items can have."""
        if self.dose_range_e_per_A2 is None:
            return list(self.e_per_px_range)
        samplings = [g.sampling_A for g in self.geometry] or [1.0]
        lo, hi = self.dose_range_e_per_A2
        return [lo * min(samplings) ** 2, hi * max(samplings) ** 2]

    def describe(self) -> dict[str, Any]:
        """Dataset, split, waves, dose range, noise model and crops."""
        return {**self._common(), "path": str(self.path.resolve()), "split": self.split,
                "trained_e_per_px_range": self.trained_e_per_px_range(),
                "n_waves": len(self.indices), "images_per_wave": self.images_per_wave,
                "dose_range_e_per_A2": (None if self.dose_range_e_per_A2 is None
                                        else list(self.dose_range_e_per_A2)),
                "e_per_px_range": (None if self.dose_range_e_per_A2 is not None
                                   else list(self.e_per_px_range)),
                "noise_model": self.noise_model.to_dict(),
                "optics_ranges": self.optics_ranges.to_dict(),
                "reference": "noise-free image psi * N_D (infinite dose; no MTF, no readout)"}
