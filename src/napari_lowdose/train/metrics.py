"""Pixel-wise segmentation metrics (Larsen et al. 2023, SPEC §5).

The F1 score of a binary mask against the truth is ``2 TP / (2 TP + FP + FN)``
over pixels. For a set of images the counts are pooled (summed over images)
before the ratio, so large and small particles weigh by their pixels.
Both numpy arrays and torch tensors are accepted.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BinaryCounts", "binary_counts", "f1_score"]


@dataclass(frozen=True)
class BinaryCounts:
    """True-positive, false-positive and false-negative pixel counts."""

    tp: int
    fp: int
    fn: int

    def __add__(self, other: "BinaryCounts") -> "BinaryCounts":
        return BinaryCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def f1(self) -> float:
        """``2 TP / (2 TP + FP + FN)``; 1.0 when both masks are empty (nothing to find)."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 1.0 if denominator == 0 else 2 * self.tp / denominator

    @property
    def precision(self) -> float:
        """``TP / (TP + FP)`` (1.0 with no predicted pixels)."""
        return 1.0 if self.tp + self.fp == 0 else self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        """``TP / (TP + FN)`` (1.0 with no true pixels)."""
        return 1.0 if self.tp + self.fn == 0 else self.tp / (self.tp + self.fn)


def _as_bool(values: Any) -> Any:
    if hasattr(values, "detach"):  # torch tensor
        return values.detach().bool()
    return np.asarray(values).astype(bool)


def binary_counts(predicted: Any, truth: Any) -> BinaryCounts:
    """Pixel counts of a predicted mask against the truth (same shape, any layout)."""
    p, t = _as_bool(predicted), _as_bool(truth)
    if tuple(p.shape) != tuple(t.shape):
        raise ValueError(f"mask shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    tp = int((p & t).sum())
    fp = int((p & ~t).sum())
    fn = int((~p & t).sum())
    return BinaryCounts(tp, fp, fn)


def f1_score(predicted: Any, truth: Any) -> float:
    """Pixel-wise F1 of ``predicted`` against ``truth`` (pooled over all pixels given)."""
    return binary_counts(predicted, truth).f1
