"""Training the low-dose denoiser (Katsuno et al. 2021, SPEC §4).

Katsuno et al. train end-to-end from short to long exposures of the same field
with an L1 loss and Adam at 10⁻⁴. Training pairs come from three sources, each a
:class:`torch.utils.data.Dataset` of ``(noisy, target, expected_e_per_px)``:
``noisy`` and ``target`` are ``(1, crop, crop)`` float32 crops in electrons per
pixel (detector counts divided by the gain), the target on the noisy crop's grid
and dose scale, and ``expected_e_per_px`` the noisy frame's expected electrons
per vacuum pixel (its normalisation, :func:`napari_lowdose.models.normalisation.normalise_counts`).
Training crops get a random position, flip and 90° rotation, drawn from
``SeedSequence(seed, spawn_key=(epoch, index))`` (the same batches whatever the
number of loader workers); validation items are central crops (or whole frames).

* :class:`PairedExposures` — real short/long exposure pairs (Katsuno et al.): the
  long exposure is resampled to the short one's size (it may have been binned),
  registered to it with subpixel precision
  (:func:`napari_lowdose.analysis.registration.register_translation`), shifted
  onto its grid and scaled to its dose.
* :class:`SimulatedPairs` — from the cached exit waves of a simulated dataset
  (``napari-lowdose simulate``): Table 1 optics drawn per wave and image, a
  log-uniform dose, the detector noise of Eq. 3 with the dataset's noise model
  for the input, and the noise-free image ``ψ · N_D`` (infinite dose, no MTF, no
  readout noise) as the target.
* :class:`Noise2NoiseSeries` — self-supervised, from a dose series alone
  (Lehtinen et al. 2018): the frames are registered to their mean, and a frame
  is paired with a neighbouring, independently noisy frame shifted onto its grid
  and scaled to its dose. With no clean target, the L2 loss (mean-preserving) is
  the better choice at low dose: L1 would converge to the median of the Poisson
  noise, which is biased low at a few electrons per pixel.

:func:`train_denoiser` keeps the checkpoint with the best validation PSNR
(against the clean or long-exposure target; against the other noisy frame for
Noise2Noise, which ranks models the same way since the target noise is
independent), saved with :func:`napari_lowdose.models.checkpoint.save_checkpoint`
(architecture ``"denoiser"``). It resumes from ``<out>.state.pt`` like the
segmentation trainer (:mod:`.segmentation`, whose state-file helpers are reused;
the state's ``best_f1`` entry holds the best validation PSNR in dB).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..analysis.image_quality import psnr, ssim
from ..analysis.registration import register_translation, shift_image
from ..device import autocast_dtype, describe_device, select_device
from ..models.checkpoint import save_checkpoint
from ..models.denoiser import DenoiserUNet
from ..models.normalisation import denoiser_normalisation
from ..provenance import training_versions
from .segmentation import (
    STATE_SUFFIX,
    TrainingError,
    _Context,
    _load_state,
    _save_state,
    _ShardSampler,
    _steps_per_epoch,
)

__all__ = [
    "DEFAULT_E_PER_PX_RANGE",
    "DenoiserEpochResult",
    "DenoiserSettings",
    "DenoiserTrainingSummary",
    "Noise2NoiseSeries",
    "PairedExposures",
    "SimulatedPairs",
    "pair_datasets",
    "series_datasets",
    "train_denoiser",
]

#: Default range of the simulated frame doses, electrons per pixel (log-uniform):
#: from far below Katsuno et al.'s ~5 e⁻/px to where shot noise is small. The range
#: the shipped denoiser was trained on (``docs/models.md``).
DEFAULT_E_PER_PX_RANGE: tuple[float, float] = (0.05, 100.0)
#: Margin (px) kept around a shifted window for the cubic spline's support.
_SPLINE_MARGIN_PX = 4
#: Margin (px) around a simulated crop given detector noise (MTF point-spread function).
_NOISE_MARGIN_PX = 16


# ---------------------------------------------------------------------------
# Common pieces of the three pair sources
# ---------------------------------------------------------------------------


def _as_frames(data: Any, name: str) -> Any:
    """An indexable ``(n, y, x)`` view of a stack or a single frame."""
    if not (hasattr(data, "shape") and hasattr(data, "__getitem__")):
        data = np.asarray(data)
    if len(data.shape) == 2:
        data = data[None]
    if len(data.shape) != 3 or min(data.shape) < 1:
        raise TrainingError(f"{name} must be a (frames, y, x) stack or one (y, x) frame, "
                            f"got shape {tuple(data.shape)}")
    return data


def _doses(values: Any, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.full(n, float(arr[0]))
    if arr.size != n:
        raise TrainingError(f"{name}: {arr.size} values for {n} frame(s)")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise TrainingError(f"{name} must be positive and finite")
    return arr


def _positive_mean(frame: np.ndarray, what: str) -> float:
    mean = float(np.mean(frame))
    if not (math.isfinite(mean) and mean > 0):
        raise TrainingError(f"{what} has a mean of {mean:.4g}; a frame normalised by its mean "
                            "needs a positive mean (give its dose)")
    return mean


class _PairSource(Dataset):
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


def _shifted_window(image: np.ndarray, shift_px: tuple[float, float], y0: int, x0: int,
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


def _border(shifts: Sequence[tuple[float, float]]) -> int:
    """Pixels to keep clear of the frame edges for windows shifted by ``shifts``."""
    largest = max((max(abs(dy), abs(dx)) for dy, dx in shifts), default=0.0)
    return int(math.ceil(largest)) + _SPLINE_MARGIN_PX + 2


# ---------------------------------------------------------------------------
# (a) real short / long exposure pairs
# ---------------------------------------------------------------------------


def _resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample to ``shape`` preserving values (anti-aliased when shrinking)."""
    if image.shape == shape:
        return image
    from skimage.transform import resize

    shrink = image.shape[0] > shape[0] or image.shape[1] > shape[1]
    return resize(image, shape, order=1, anti_aliasing=shrink, preserve_range=True,
                  mode="reflect").astype(np.float32)


class PairedExposures(_PairSource):
    """Short exposures paired with registered long exposures of the same field.

    Pair ``i`` is ``short[i]`` with ``long[i]`` (or with the one long exposure, if
    ``long`` has a single frame). The long exposure is resampled to the short one's
    size (values preserved; binned long exposures are common, Katsuno et al.
    bin to 512²), registered to it (subpixel cross-correlation), shifted onto its
    grid (cubic spline) and scaled to its dose: by ``short_e_per_px /
    long_e_per_px`` when both doses are given, else by the ratio of their means.
    Crops avoid the border that the shift extrapolated.

    Parameters
    ----------
    short, long : array-like, shape (n, y, x) or (y, x)
        Short and long exposures in detector counts (the same detector gain).
    short_e_per_px, long_e_per_px : float or sequence, optional
        Expected electrons per vacuum pixel of each frame (``dose · s²``, of the
        frame's own pixels); None: the frame mean / ``counts_per_electron``.
    counts_per_electron : float, optional
        Detector gain; frames are divided by it.
    crop_px : int or None, optional
        Side of the square crops (None: the whole usable frame); without
        ``augment``, the central crop of at most this side.
    crops_per_pair : int, optional
        Items per pair and epoch.
    augment : bool, optional
        Random crop position, flips and 90° rotations; otherwise the central crop.
    seed : int, optional
        Seed of the crops and augmentation.
    upsample : int, optional
        Registration precision ``1 / upsample`` px.
    pairs : sequence of int, optional
        Use only these pairs (e.g. a validation split).
    register : bool, optional
        Register the exposures (default); False: they are known to be aligned.
    """

    kind = "pairs"

    def __init__(self, short: Any, long: Any, *, short_e_per_px: Any = None,
                 long_e_per_px: Any = None, counts_per_electron: float = 1.0,
                 crop_px: int | None = 128, crops_per_pair: int = 16, augment: bool = True,
                 seed: int = 0, upsample: int = 20, pairs: Sequence[int] | None = None,
                 register: bool = True) -> None:
        super().__init__(crop_px, augment, seed)
        short = _as_frames(short, "the short exposures")
        long = _as_frames(long, "the long exposures")
        n = int(short.shape[0])
        if long.shape[0] not in (1, n):
            raise TrainingError(f"{n} short exposures but {long.shape[0]} long ones: give one "
                                "long exposure per short one, or a single long exposure")
        if not counts_per_electron > 0:
            raise TrainingError("counts_per_electron must be positive")
        if int(crops_per_pair) < 1:
            raise TrainingError("crops_per_pair must be at least 1")
        short_doses = _doses(short_e_per_px, n, "short_e_per_px")
        long_doses = _doses(long_e_per_px, int(long.shape[0]), "long_e_per_px")
        self.crops_per_pair = int(crops_per_pair)
        self.pair_indices = list(range(n)) if pairs is None else [int(i) for i in pairs]
        if not self.pair_indices or not all(0 <= i < n for i in self.pair_indices):
            raise TrainingError(f"pairs must be a non-empty subset of 0…{n - 1}")
        gain = float(counts_per_electron)
        self.counts_per_electron = gain
        self.registered = bool(register)
        self.noisy: list[np.ndarray] = []
        self.target: list[np.ndarray] = []
        self.e_per_px: list[float] = []
        self.shifts: list[tuple[float, float]] = []
        self.scales: list[float] = []
        self.boxes: list[tuple[int, int, int, int]] = []
        resampled: dict[int, np.ndarray] = {}
        for i in self.pair_indices:
            j = i if long.shape[0] == n else 0
            s = np.asarray(short[i], dtype=np.float32) / gain
            if j not in resampled:
                resampled[j] = _resample(np.asarray(long[j], dtype=np.float32) / gain, s.shape)
            ref = resampled[j]
            if ref.shape != s.shape:
                raise TrainingError(f"pair {i}: the frames differ in shape")
            shift = register_translation(s, ref, upsample=upsample) if register else (0.0, 0.0)
            border = _border([shift])
            if min(s.shape) <= 2 * border + 8:
                raise TrainingError(f"pair {i}: the exposures are shifted by {shift} px, too "
                                    f"much for {s.shape[0]}×{s.shape[1]} px frames")
            box = (border, s.shape[0] - border, border, s.shape[1] - border)
            moved = shift_image(ref, shift)
            inner = (slice(box[0], box[1]), slice(box[2], box[3]))
            e_short = (float(short_doses[i]) if short_doses is not None
                       else _positive_mean(s, f"short exposure {i}"))
            if short_doses is not None and long_doses is not None:
                scale = float(short_doses[i]) / float(long_doses[j])
            else:
                scale = (_positive_mean(s[inner], f"short exposure {i}")
                         / _positive_mean(moved[inner], f"long exposure {j}"))
            self.noisy.append(s)
            self.target.append(moved * np.float32(scale))
            self.e_per_px.append(e_short)
            self.shifts.append(shift)
            self.scales.append(scale)
            self.boxes.append(box)
        self.dose_scaling = ("doses" if short_doses is not None and long_doses is not None
                             else "means")

    def __len__(self) -> int:
        return len(self.pair_indices) * self.crops_per_pair

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = int(index) // self.crops_per_pair
        rng = self._rng(index)
        y0, x0, h, w = self._window(self.boxes[k], rng)
        crop = (slice(y0, y0 + h), slice(x0, x0 + w))
        return self._item(self.noisy[k][crop], self.target[k][crop], self.e_per_px[k], rng)

    def describe(self) -> dict[str, Any]:
        """Pairs, shifts, dose scaling and crops."""
        return {**self._common(), "pairs": self.pair_indices,
                "trained_e_per_px_range": [min(self.e_per_px), max(self.e_per_px)],
                "crops_per_pair": self.crops_per_pair,
                "shifts_px": [list(s) for s in self.shifts],
                "registered": self.registered,
                "target_scale": self.scales, "dose_scaling": self.dose_scaling,
                "counts_per_electron": self.counts_per_electron,
                "reference": "long exposure, registered and scaled to the short one's dose"}


# ---------------------------------------------------------------------------
# (b) simulated pairs from cached exit waves
# ---------------------------------------------------------------------------


class SimulatedPairs(_PairSource):
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
        from ..noise.model import NoiseModel
        from ..simulate.dataset import DatasetRecipe, read_card
        from ..simulate.exitwaves import ExitWaveCache
        from ..simulate.imaging import OpticsRanges

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
        from ..simulate.imaging import clean_image, draw_optics

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
        from ..simulate.imaging import noisy_image

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
        # Noise only the crop and a margin: the MTF acts by a periodic FFT, and its
        # point-spread function (a few px) must not wrap round into the crop.
        ny, nx = clean.shape
        m = _NOISE_MARGIN_PX
        top, left = max(0, y0 - m), max(0, x0 - m)
        region = clean[top:min(ny, y0 + h + m), left:min(nx, x0 + wd + m)]
        noisy = noisy_image(region, dose, sampling, noise, rng, workers=1)
        crop = (slice(y0 - top, y0 - top + h), slice(x0 - left, x0 - left + wd))
        target = clean[y0:y0 + h, x0:x0 + wd] * np.float32(e_per_px)
        return self._item(noisy[crop], target, e_per_px, rng)

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


# ---------------------------------------------------------------------------
# (c) Noise2Noise pairs from one dose series
# ---------------------------------------------------------------------------


class Noise2NoiseSeries(_PairSource):
    """Pairs of independently noisy frames of one registered dose series (Noise2Noise).

    Every frame of ``frame_indices`` is registered to the one with the most counts,
    then to the sum of the others once aligned. Pair ``(i, j)``, ``i ≠ j``,
    ``|i − j| ≤ max_frame_gap``: input frame ``i`` on its own grid, target frame
    ``j`` shifted onto it and scaled by ``e_i / e_j`` (expected electrons per pixel,
    from the doses or the frame means), so that both have the same expectation.

    Parameters
    ----------
    frames : array-like, shape (n, y, x)
        The series in detector counts.
    expected_e_per_px : float or sequence, optional
        Expected electrons per vacuum pixel of every frame of ``frames``; None: the
        frame means / ``counts_per_electron``.
    counts_per_electron : float, optional
        Detector gain; frames are divided by it.
    frame_indices : sequence of int, optional
        Frames to use (default all); e.g. a training or validation split.
    max_frame_gap : int, optional
        Largest ``|i − j|`` of a pair (frames close in time: the specimen changes).
    crop_px : int or None, optional
        Crop side (None: the whole usable frame); without ``augment``, the central
        crop of at most this side.
    crops_per_pair : int, optional
        Items per pair and epoch.
    augment : bool, optional
        Random crops, flips and rotations; otherwise central crops.
    seed : int, optional
        Seed of the crops and augmentation.
    upsample : int, optional
        Registration precision ``1 / upsample`` px.
    register : bool, optional
        Register the frames (default); False: they are known to be aligned.
    """

    kind = "series"

    def __init__(self, frames: Any, *, expected_e_per_px: Any = None,
                 counts_per_electron: float = 1.0, frame_indices: Sequence[int] | None = None,
                 max_frame_gap: int = 1, crop_px: int | None = 128, crops_per_pair: int = 4,
                 augment: bool = True, seed: int = 0, upsample: int = 20,
                 register: bool = True) -> None:
        super().__init__(crop_px, augment, seed)
        frames = _as_frames(frames, "the series")
        n = int(frames.shape[0])
        if not counts_per_electron > 0:
            raise TrainingError("counts_per_electron must be positive")
        if int(max_frame_gap) < 1 or int(crops_per_pair) < 1:
            raise TrainingError("max_frame_gap and crops_per_pair must be at least 1")
        indices = list(range(n)) if frame_indices is None else [int(i) for i in frame_indices]
        if len(indices) < 2 or not all(0 <= i < n for i in indices):
            raise TrainingError(f"Noise2Noise needs at least 2 frames of 0…{n - 1}, got "
                                f"{len(indices)}")
        doses = _doses(expected_e_per_px, n, "expected_e_per_px")
        gain = float(counts_per_electron)
        self.counts_per_electron = gain
        self.frame_indices = indices
        self.frames = {i: np.asarray(frames[i], dtype=np.float32) / np.float32(gain)
                       for i in indices}
        self.e_per_px = {i: (float(doses[i]) if doses is not None
                             else _positive_mean(self.frames[i], f"frame {i}"))
                         for i in indices}
        self.registered = bool(register)
        self.shifts = (self._register(upsample) if register
                       else {i: (0.0, 0.0) for i in indices})
        self.max_frame_gap = int(max_frame_gap)
        self.pairs = [(i, j) for i in indices for j in indices
                      if i != j and abs(i - j) <= self.max_frame_gap]
        if not self.pairs:
            raise TrainingError(f"no two of the frames are within {max_frame_gap} frame(s) of "
                                "each other")
        self.crops_per_pair = int(crops_per_pair)
        shape = next(iter(self.frames.values())).shape
        border = _border([(self.shifts[j][0] - self.shifts[i][0],
                           self.shifts[j][1] - self.shifts[i][1]) for i, j in self.pairs])
        if min(shape) <= 2 * border + 8:
            raise TrainingError(f"the frames drift by up to {border} px, too much for "
                                f"{shape[0]}×{shape[1]} px frames")
        self.box = (border, shape[0] - border, border, shape[1] - border)

    def _register(self, upsample: int) -> dict[int, tuple[float, float]]:
        """Shift of every frame onto a common grid.

        First onto the frame with the most counts (the least noisy), then once more
        onto the sum of the other frames aligned (leave-one-out: a frame's own noise,
        which peaks at its unaligned position, must not pull its shift to zero).
        """
        order = self.frame_indices
        anchor = max(order, key=lambda i: float(self.frames[i].sum()))
        shifts = {i: (0.0, 0.0) if i == anchor
                  else register_translation(self.frames[anchor], self.frames[i],
                                            upsample=upsample)
                  for i in order}
        aligned = {i: shift_image(self.frames[i], shifts[i]) for i in order}
        total = np.sum([aligned[i] for i in order], axis=0, dtype=np.float64)
        return {i: register_translation(total - aligned[i], self.frames[i], upsample=upsample)
                for i in order}

    def __len__(self) -> int:
        return len(self.pairs) * self.crops_per_pair

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i, j = self.pairs[int(index) // self.crops_per_pair]
        rng = self._rng(index)
        y0, x0, h, w = self._window(self.box, rng)
        # shift_j brings j onto the reference, −shift_i the reference onto i.
        shift = (self.shifts[j][0] - self.shifts[i][0], self.shifts[j][1] - self.shifts[i][1])
        target = _shifted_window(self.frames[j], shift, y0, x0, h, w)
        target *= np.float32(self.e_per_px[i] / self.e_per_px[j])
        noisy = self.frames[i][y0:y0 + h, x0:x0 + w]
        return self._item(noisy, target, self.e_per_px[i], rng)

    def describe(self) -> dict[str, Any]:
        """Frames, pairs, shifts and crops."""
        return {**self._common(), "frames": self.frame_indices, "n_pairs": len(self.pairs),
                "trained_e_per_px_range": [min(self.e_per_px.values()),
                                           max(self.e_per_px.values())],
                "max_frame_gap": self.max_frame_gap, "crops_per_pair": self.crops_per_pair,
                "registered": self.registered,
                "shifts_px": {str(i): list(s) for i, s in self.shifts.items()},
                "counts_per_electron": self.counts_per_electron,
                "reference": "another noisy frame of the series (Noise2Noise), registered "
                             "and scaled to the input's dose"}


# ---------------------------------------------------------------------------
# Training and validation splits (the command's and the widget's)
# ---------------------------------------------------------------------------

#: Training crops per pair and epoch when none is given, by source.
DEFAULT_CROPS_PER_PAIR = {"pairs": 16, "series": 4}


def pair_datasets(
    short: Any,
    long: Any,
    *,
    crop_px: int,
    val_crop_px: int | None,
    crops_per_pair: int | None = None,
    notes: list[str] | None = None,
    **kwargs: Any,
) -> tuple[PairedExposures, PairedExposures]:
    """Training and validation :class:`PairedExposures` of a set of exposure pairs.

    The last 10 % of the pairs (at least one, when there are two or more) are held
    out for validation; a single pair is validated on its central crop.

    Parameters
    ----------
    short, long : array-like
        As for :class:`PairedExposures`.
    crop_px, val_crop_px : int or None
        Training and validation crop sides (``None``: whole frames for validation).
    crops_per_pair : int, optional
        Training crops per pair and epoch (default 16).
    notes : list of str, optional
        Receives a line when the validation pair is not held out.
    **kwargs
        ``short_e_per_px``, ``long_e_per_px``, ``counts_per_electron``, ``seed``.

    Returns
    -------
    train, val : PairedExposures
    """
    n = int(_as_frames(short, "short").shape[0])
    n_val = max(1, round(0.1 * n)) if n >= 2 else 0
    train_pairs = list(range(n - n_val))
    val_pairs = list(range(n - n_val, n)) if n_val else train_pairs
    if not n_val and notes is not None:
        notes.append("one pair only: validating on its central crop (not held out)")
    train = PairedExposures(short, long, crop_px=crop_px, pairs=train_pairs,
                            crops_per_pair=crops_per_pair or DEFAULT_CROPS_PER_PAIR["pairs"],
                            **kwargs)
    val = PairedExposures(short, long, crop_px=val_crop_px, crops_per_pair=1, augment=False,
                          pairs=val_pairs, **kwargs)
    return train, val


def series_datasets(
    frames: Any,
    *,
    crop_px: int,
    val_crop_px: int | None,
    crops_per_pair: int | None = None,
    notes: list[str] | None = None,
    **kwargs: Any,
) -> tuple[Noise2NoiseSeries, Noise2NoiseSeries]:
    """Training and validation :class:`Noise2NoiseSeries` of one dose series.

    Frames 8 and 9 of every ten are held out for validation; a series of fewer
    than ten frames is validated on pairs of its training frames.

    Parameters
    ----------
    frames : array-like, shape (n, y, x)
        The series (n ≥ 2).
    crop_px, val_crop_px : int or None
        Training and validation crop sides (``None``: whole frames for validation).
    crops_per_pair : int, optional
        Training crops per pair and epoch (default 4).
    notes : list of str, optional
        Receives a line when validation frames are not held out.
    **kwargs
        ``expected_e_per_px``, ``counts_per_electron``, ``max_frame_gap``, ``seed``.

    Returns
    -------
    train, val : Noise2NoiseSeries
    """
    n = int(_as_frames(frames, "frames").shape[0])
    index = np.arange(n)
    if n >= 10:
        held_out = index % 10 >= 8
        train_frames, val_frames = index[~held_out].tolist(), index[held_out].tolist()
    else:
        train_frames = val_frames = index.tolist()
        if notes is not None:
            notes.append(f"{n} frames only: validating on pairs of the training frames")
    train = Noise2NoiseSeries(frames, frame_indices=train_frames, crop_px=crop_px,
                              crops_per_pair=crops_per_pair or DEFAULT_CROPS_PER_PAIR["series"],
                              **kwargs)
    val = Noise2NoiseSeries(frames, frame_indices=val_frames, crop_px=val_crop_px,
                            crops_per_pair=1, augment=False, **kwargs)
    return train, val


# ---------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------


LOSSES = ("l1", "l2")


@dataclass
class DenoiserSettings:
    """How a denoiser is trained (Katsuno et al. 2021: L1 loss, Adam 10⁻⁴).

    Parameters
    ----------
    model_config : dict
        :class:`~napari_lowdose.models.denoiser.DenoiserUNet` settings
        (``base_channels``, ``levels``, ``kernel_size``, normalisation); unset ones
        take the defaults.
    epochs : int
        Passes over the training items.
    batch_size : int
        Crops per step.
    learning_rate : float
        Adam learning rate.
    loss : {"l1", "l2"}
        L1 (Katsuno et al.; clean or long-exposure targets) or L2 (mean-preserving;
        Noise2Noise at low dose).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    mixed_precision : bool
        Autocast (bf16 / fp16 with a gradient scaler) on CUDA.
    steps_per_epoch : int or None
        Cap on the steps of one epoch (None: one pass over the items).
    max_val_images : int or None
        Validate on the first items of the validation set only.
    seed : int
        Seed of the weights and of the order of the items.
    num_workers : int
        DataLoader worker processes.
    grad_clip_norm : float or None
        Clip the gradient norm of each step (None: no clipping).
    source : str
        Kind of training pairs (``"pairs"``, ``"simulated"``, ``"series"``); set by
        :func:`train_denoiser` from the dataset when empty.
    noise_weighted : bool
        Weight each crop's loss by its shot-noise level: ``√(e⁻/px)`` for L1,
        ``e⁻/px`` for L2 (errors in units of the Poisson noise of the input).
        Without it, crops of a few e⁻/px, whose errors are largest in
        normalised units, dominate the loss and the network learns little for
        well-exposed frames, which it can then make worse than they were.
    init_from : str or None
        A trained denoiser (shipped name or file) whose weights start the run
        (fine-tuning); its settings must equal ``model_config``'s.
    """

    model_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-4
    loss: str = "l1"
    device: str = "auto"
    mixed_precision: bool = True
    steps_per_epoch: int | None = None
    max_val_images: int | None = None
    seed: int = 0
    num_workers: int = 0
    grad_clip_norm: float | None = 1.0
    source: str = ""
    noise_weighted: bool = False
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError("epochs and batch size must be at least 1")
        if not self.learning_rate > 0:
            raise TrainingError("the learning rate must be positive")
        if self.loss not in LOSSES:
            raise TrainingError(f"the loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise TrainingError("steps per epoch must be at least 1")
        if self.max_val_images is not None and self.max_val_images < 1:
            raise TrainingError("max_val_images must be at least 1")
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise TrainingError("the gradient clipping norm must be positive")
        if self.num_workers < 0:
            raise TrainingError("num_workers must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)

    def same_run_as(self, other: dict[str, Any]) -> bool:
        """Whether a saved run can be continued with these settings (epochs may grow)."""
        mine = self.to_dict()
        theirs = {**DenoiserSettings().to_dict(), **dict(other)}
        for key in ("epochs", "device", "num_workers"):
            mine.pop(key, None)
            theirs.pop(key, None)
        return mine == theirs


@dataclass(frozen=True)
class DenoiserEpochResult:
    """Losses and validation quality after one epoch (PSNR in dB, normalised units)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_psnr_db: float
    val_ssim: float
    input_psnr_db: float
    input_ssim: float
    seconds: float
    best: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


@dataclass(frozen=True)
class DenoiserTrainingSummary:
    """What :func:`train_denoiser` did (``best_epoch`` 0: no epoch finished, no file)."""

    checkpoint: Path
    best_psnr_db: float
    best_epoch: int
    epochs_done: int
    stopped: bool
    history: list[dict[str, Any]]
    device: str


def _noise_weighted_loss(estimate: torch.Tensor, target: torch.Tensor,
                         e_per_px: torch.Tensor, name: str) -> torch.Tensor:
    """Mean of the per-crop losses weighted by the crops' shot-noise level."""
    error = estimate - target
    if name == "l1":
        per_crop, weight = error.abs().mean(dim=(1, 2, 3)), e_per_px.float().sqrt()
    else:
        per_crop, weight = error.square().mean(dim=(1, 2, 3)), e_per_px.float()
    weight = weight.to(per_crop.device).reshape(per_crop.shape)
    return (per_crop * weight).sum() / weight.sum()


def _initialise(model: DenoiserUNet, init_from: str) -> None:
    """Start from the weights of a trained denoiser (fine-tuning)."""
    from ..models.checkpoint import CheckpointError
    from ..models.registry import load_denoiser

    try:
        source, _ = load_denoiser(init_from)
    except CheckpointError as error:
        raise TrainingError(f"cannot start from {init_from}: {error}") from None
    if source.config != model.config:
        raise TrainingError(f"{init_from} is a denoiser with other settings than this run; "
                            "leave out the network options to use its own")
    model.load_state_dict(source.state_dict())


def _loss_fn(name: str) -> torch.nn.Module:
    return torch.nn.L1Loss() if name == "l1" else torch.nn.MSELoss()


def train_denoiser(
    source_dataset: Dataset,
    val_dataset: Dataset,
    out: str | os.PathLike,
    settings: DenoiserSettings,
    *,
    resume: bool = True,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[DenoiserEpochResult], None] | None = None,
    metadata: dict[str, Any] | None = None,
) -> DenoiserTrainingSummary:
    """Train a :class:`~napari_lowdose.models.denoiser.DenoiserUNet`; keep the best-PSNR one.

    The loss is taken in normalised units (target / the input's expected counts
    per vacuum pixel), so every dose weighs alike. After every epoch the
    validation PSNR and SSIM (:mod:`napari_lowdose.analysis.image_quality`) of the
    estimate and of the noisy input against the target are computed, in
    normalised units, per item and averaged.

    Parameters
    ----------
    source_dataset : Dataset
        Training items ``(noisy, target, expected_e_per_px)``: :class:`PairedExposures`,
        :class:`SimulatedPairs` or :class:`Noise2NoiseSeries` (or any dataset of
        such triples; ``set_epoch`` and ``describe`` are used when present).
    val_dataset : Dataset
        Validation items of the same form (fixed, not augmented).
    out : str or Path
        Checkpoint file (``.safetensors``); ``<out>.json`` and ``<out>.state.pt``
        are written beside it.
    settings : DenoiserSettings
        Network and schedule.
    resume : bool, optional
        Continue from ``<out>.state.pt`` if it exists (with matching settings).
    progress : callable, optional
        ``progress(step, total_steps)`` after every step.
    should_stop : callable, optional
        Polled between steps; True ends training (the best checkpoint so far stays).
    on_epoch : callable, optional
        Called with each :class:`DenoiserEpochResult`.
    metadata : dict, optional
        Extra provenance stored in the checkpoint (e.g. the command line).

    Returns
    -------
    DenoiserTrainingSummary

    Raises
    ------
    TrainingError
        Empty datasets, bad settings, or a state file of another run.
    """
    out = Path(out)
    if len(source_dataset) == 0 or len(val_dataset) == 0:
        raise TrainingError("the training and validation sets must not be empty")
    if not settings.source:
        settings.source = str(getattr(source_dataset, "kind", "") or "custom")
    stop = should_stop or (lambda: False)
    context = _Context(select_device(settings.device), 0, 1)
    device = context.device
    torch.manual_seed(settings.seed)
    try:
        model = DenoiserUNet(**settings.model_config)
    except (TypeError, ValueError) as error:
        raise TrainingError(f"bad denoiser settings: {error}") from error
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    state_path = out.with_name(out.name + STATE_SUFFIX)
    start_epoch, best_psnr, best_epoch, history = 0, -math.inf, 0, []
    if resume and state_path.is_file():
        start_epoch, best_psnr, best_epoch, history = _load_state(state_path, settings, model,
                                                                  optimiser, context)
    elif settings.init_from is not None:
        _initialise(model, settings.init_from)
    amp_dtype = autocast_dtype(device) if settings.mixed_precision else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loss_fn = _loss_fn(settings.loss)
    steps = _steps_per_epoch(len(source_dataset), settings, context)
    total_steps = steps * settings.epochs
    done_steps = steps * start_epoch
    stopped = False
    started = time.perf_counter()
    for epoch in range(start_epoch, settings.epochs):
        t0 = time.perf_counter()
        if hasattr(source_dataset, "set_epoch"):
            source_dataset.set_epoch(epoch)
        sampler = _ShardSampler(len(source_dataset), context, settings.seed, epoch,
                                steps * settings.batch_size)
        loader = DataLoader(source_dataset, batch_size=settings.batch_size, sampler=sampler,
                            num_workers=settings.num_workers, drop_last=False)
        model.train()
        loss_sum, n_batches = 0.0, 0
        for noisy, target, e_per_px in loader:
            if stop():
                stopped = True
                break
            noisy, target = noisy.to(device), target.to(device)
            inputs, scale = model.normalise(noisy[:, 0], e_per_px.to(device))
            optimiser.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                estimate = model(inputs)
            if settings.noise_weighted:
                loss = _noise_weighted_loss(estimate.float(), target / scale,
                                            e_per_px.to(device), settings.loss)
            else:
                loss = loss_fn(estimate.float(), target / scale)
            scaler.scale(loss).backward()
            if settings.grad_clip_norm is not None:
                scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip_norm)
            scaler.step(optimiser)
            scaler.update()
            loss_sum += float(loss.detach())
            n_batches += 1
            done_steps += 1
            if progress is not None:
                progress(done_steps, total_steps)
        if stopped:
            break
        quality = _validate(model, val_dataset, settings, device, loss_fn, amp_dtype)
        is_best = quality["psnr_db"] > best_psnr
        if is_best:
            best_psnr, best_epoch = quality["psnr_db"], epoch + 1
        result = DenoiserEpochResult(
            epoch + 1, loss_sum / max(n_batches, 1), quality["loss"], quality["psnr_db"],
            quality["ssim"], quality["input_psnr_db"], quality["input_ssim"],
            time.perf_counter() - t0, is_best)
        history.append(result.to_dict())
        if is_best:
            _save_best(out, model, settings, source_dataset, val_dataset, result, quality,
                       history, device, time.perf_counter() - started, metadata)
        _save_state(state_path, epoch + 1, model, optimiser, best_psnr, best_epoch, history,
                    settings)
        if on_epoch is not None:
            on_epoch(result)
    return DenoiserTrainingSummary(out, best_psnr, best_epoch, len(history), stopped, history,
                                   describe_device(device))


@torch.no_grad()
def _validate(model: DenoiserUNet, val_dataset: Dataset, settings: DenoiserSettings,
              device: torch.device, loss_fn: torch.nn.Module,
              amp_dtype: torch.dtype | None) -> dict[str, Any]:
    model.eval()
    n = len(val_dataset)
    if settings.max_val_images is not None:
        n = min(n, settings.max_val_images)
    totals = {"loss": 0.0, "psnr_db": 0.0, "ssim": 0.0, "input_psnr_db": 0.0,
              "input_ssim": 0.0}
    for index in range(n):
        noisy, target, e_per_px = val_dataset[index]
        noisy, target = noisy.to(device), target.to(device)
        inputs, scale = model.normalise(noisy, e_per_px.reshape(1).to(device))
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            estimate = model(inputs).float()
        reference = target[None] / scale
        totals["loss"] += float(loss_fn(estimate, reference))
        ref = reference[0, 0].cpu().numpy()
        est = estimate[0, 0].cpu().numpy()
        raw = (noisy[None] / scale)[0, 0].cpu().numpy()
        span = float(ref.max() - ref.min()) or 1.0
        totals["psnr_db"] += psnr(est, ref, data_range=span)
        totals["input_psnr_db"] += psnr(raw, ref, data_range=span)
        if min(ref.shape) >= 11:
            totals["ssim"] += ssim(est, ref, data_range=span)
            totals["input_ssim"] += ssim(raw, ref, data_range=span)
        else:
            totals["ssim"] = totals["input_ssim"] = math.nan
    quality = {key: value / n for key, value in totals.items()}
    quality["n_images"] = n
    return quality


def _save_best(out: Path, model: DenoiserUNet, settings: DenoiserSettings,
               source_dataset: Dataset, val_dataset: Dataset, result: DenoiserEpochResult,
               quality: dict[str, Any], history: list[dict[str, Any]], device: torch.device,
               elapsed_s: float, extra: dict[str, Any] | None) -> None:
    source = source_dataset.describe() if hasattr(source_dataset, "describe") else {}
    validation = val_dataset.describe() if hasattr(val_dataset, "describe") else {}
    card = getattr(source_dataset, "card", None)
    metadata: dict[str, Any] = {
        "normalisation": denoiser_normalisation(model.config),
        "source": source,
        "dataset": ({"path": source.get("path"), "card": card} if card is not None else None),
        "noise_model": source.get("noise_model"),
        "validation": {
            "psnr_db": quality["psnr_db"],
            "ssim": quality["ssim"],
            "input_psnr_db": quality["input_psnr_db"],
            "input_ssim": quality["input_ssim"],
            "loss": quality["loss"],
            "epoch": result.epoch,
            "n_images": quality["n_images"],
            "units": "normalised (divided by the input's expected counts per vacuum pixel); "
                     "data range = the reference's max - min per image",
            "set": validation,
        },
        "training": {
            "settings": settings.to_dict(),
            "epochs_done": result.epoch,
            "seconds": elapsed_s,
            "device": describe_device(device),
            **training_versions(),
            "loss": {"l1": "L1 (mean absolute error)", "l2": "L2 (mean squared error)"}[
                settings.loss] + " in normalised units",
            "optimiser": f"Adam, lr {settings.learning_rate}",
            "reference": "Katsuno et al. 2021 (L1, Adam 1e-4, percentile clipping)",
        },
        "history": history,
    }
    metadata.update(extra or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, arch="denoiser", metadata=metadata)
