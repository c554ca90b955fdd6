"""Measured training pairs of the denoiser: exposure pairs and Noise2Noise series.

:class:`PairedExposures`, short exposures paired with registered long exposures of
the same field (Katsuno et al. 2021), and :class:`Noise2NoiseSeries`, pairs of
independently noisy frames of one dose series (Lehtinen et al. 2018), with their
training / validation splits (:func:`pair_datasets`, :func:`series_datasets`).
Items and augmentation are those of :class:`.denoise_sources.PairSource`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..analysis.registration import register_translation, shift_image
from .denoise_sources import (
    PairSource,
    as_frames,
    border_px,
    frame_doses,
    positive_mean,
    shifted_window,
)
from .loop import TrainingError

__all__ = [
    "DEFAULT_CROPS_PER_PAIR",
    "Noise2NoiseSeries",
    "PairedExposures",
    "pair_datasets",
    "series_datasets",
]

# ---------------------------------------------------------------------------
# Real short / long exposure pairs
# ---------------------------------------------------------------------------


def _resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample to ``shape`` preserving values (anti-aliased when shrinking)."""
    if image.shape == shape:
        return image
    from skimage.transform import resize

    shrink = image.shape[0] > shape[0] or image.shape[1] > shape[1]
    return resize(image, shape, order=1, anti_aliasing=shrink, preserve_range=True,
                  mode="reflect").astype(np.float32)


class PairedExposures(PairSource):
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
        short = as_frames(short, "the short exposures")
        long = as_frames(long, "the long exposures")
        n = int(short.shape[0])
        if long.shape[0] not in (1, n):
            raise TrainingError(f"{n} short exposures but {long.shape[0]} long ones: give one "
                                "long exposure per short one, or a single long exposure")
        if not counts_per_electron > 0:
            raise TrainingError("counts_per_electron must be positive")
        if int(crops_per_pair) < 1:
            raise TrainingError("crops_per_pair must be at least 1")
        short_doses = frame_doses(short_e_per_px, n, "short_e_per_px")
        long_doses = frame_doses(long_e_per_px, int(long.shape[0]), "long_e_per_px")
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
            border = border_px([shift])
            if min(s.shape) <= 2 * border + 8:
                raise TrainingError(f"pair {i}: the exposures are shifted by {shift} px, too "
                                    f"much for {s.shape[0]}×{s.shape[1]} px frames")
            box = (border, s.shape[0] - border, border, s.shape[1] - border)
            moved = shift_image(ref, shift)
            inner = (slice(box[0], box[1]), slice(box[2], box[3]))
            e_short = (float(short_doses[i]) if short_doses is not None
                       else positive_mean(s, f"short exposure {i}"))
            if short_doses is not None and long_doses is not None:
                scale = float(short_doses[i]) / float(long_doses[j])
            else:
                scale = (positive_mean(s[inner], f"short exposure {i}")
                         / positive_mean(moved[inner], f"long exposure {j}"))
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
# Noise2Noise pairs from one dose series
# ---------------------------------------------------------------------------


class Noise2NoiseSeries(PairSource):
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
    whole_pixel : bool, optional
        Round the shifts to whole pixels: the target is moved, never interpolated, so its
        noise keeps its variance and independence (needed by the quality readout,
        :mod:`napari_lowdose.analysis.denoise_quality`); the sub-pixel remainder is left.
    rows : (int, int), optional
        Use only rows ``rows[0]…rows[1] − 1`` of the frames (e.g. a part of the field
        held out for validation); default all.
    """

    kind = "series"

    def __init__(self, frames: Any, *, expected_e_per_px: Any = None,
                 counts_per_electron: float = 1.0, frame_indices: Sequence[int] | None = None,
                 max_frame_gap: int = 1, crop_px: int | None = 128, crops_per_pair: int = 4,
                 augment: bool = True, seed: int = 0, upsample: int = 20,
                 register: bool = True, whole_pixel: bool = False,
                 rows: tuple[int, int] | None = None) -> None:
        super().__init__(crop_px, augment, seed)
        frames = as_frames(frames, "the series")
        n = int(frames.shape[0])
        if not counts_per_electron > 0:
            raise TrainingError("counts_per_electron must be positive")
        if int(max_frame_gap) < 1 or int(crops_per_pair) < 1:
            raise TrainingError("max_frame_gap and crops_per_pair must be at least 1")
        indices = list(range(n)) if frame_indices is None else [int(i) for i in frame_indices]
        if len(indices) < 2 or not all(0 <= i < n for i in indices):
            raise TrainingError(f"Noise2Noise needs at least 2 frames of 0…{n - 1}, got "
                                f"{len(indices)}")
        doses = frame_doses(expected_e_per_px, n, "expected_e_per_px")
        gain = float(counts_per_electron)
        self.counts_per_electron = gain
        self.frame_indices = indices
        self.frames = {i: np.asarray(frames[i], dtype=np.float32) / np.float32(gain)
                       for i in indices}
        self.e_per_px = {i: (float(doses[i]) if doses is not None
                             else positive_mean(self.frames[i], f"frame {i}"))
                         for i in indices}
        self.registered = bool(register)
        self.shifts = (self._register(upsample) if register
                       else {i: (0.0, 0.0) for i in indices})
        self.whole_pixel = bool(whole_pixel)
        if self.whole_pixel:
            self.shifts = {i: (float(round(dy)), float(round(dx)))
                           for i, (dy, dx) in self.shifts.items()}
        self.max_frame_gap = int(max_frame_gap)
        self.pairs = [(i, j) for i in indices for j in indices
                      if i != j and abs(i - j) <= self.max_frame_gap]
        if not self.pairs:
            raise TrainingError(f"no two of the frames are within {max_frame_gap} frame(s) of "
                                "each other")
        self.crops_per_pair = int(crops_per_pair)
        shape = next(iter(self.frames.values())).shape
        border = border_px([(self.shifts[j][0] - self.shifts[i][0],
                           self.shifts[j][1] - self.shifts[i][1]) for i, j in self.pairs])
        if min(shape) <= 2 * border + 8:
            raise TrainingError(f"the frames drift by up to {border} px, too much for "
                                f"{shape[0]}×{shape[1]} px frames")
        top, bottom = (0, shape[0]) if rows is None else (int(rows[0]), int(rows[1]))
        self.rows = None if rows is None else (top, bottom)
        self.box = (max(border, top), min(shape[0] - border, bottom), border,
                    shape[1] - border)
        if self.box[1] - self.box[0] < 8:
            raise TrainingError(f"rows {top}…{bottom} leave fewer than 8 usable rows")

    @property
    def independent_target(self) -> bool:
        """True when the target's noise is intact (moved by whole pixels only), as the
        quality readout needs."""
        return self.whole_pixel

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
        target = shifted_window(self.frames[j], shift, y0, x0, h, w)
        target *= np.float32(self.e_per_px[i] / self.e_per_px[j])
        noisy = self.frames[i][y0:y0 + h, x0:x0 + w]
        return self._item(noisy, target, self.e_per_px[i], rng)

    def describe(self) -> dict[str, Any]:
        """Frames, pairs, shifts and crops."""
        return {**self._common(), "frames": self.frame_indices, "n_pairs": len(self.pairs),
                "trained_e_per_px_range": [min(self.e_per_px.values()),
                                           max(self.e_per_px.values())],
                "max_frame_gap": self.max_frame_gap, "crops_per_pair": self.crops_per_pair,
                "registered": self.registered, "whole_pixel": self.whole_pixel,
                "rows": None if self.rows is None else list(self.rows),
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
    n = int(as_frames(short, "short").shape[0])
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
    n = int(as_frames(frames, "frames").shape[0])
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
                            crops_per_pair=1, augment=False, whole_pixel=True, **kwargs)
    return train, val
