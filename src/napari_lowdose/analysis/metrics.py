"""Pixel-wise segmentation metrics (Larsen et al. 2023).

The F1 score of a binary mask against the truth is ``2 TP / (2 TP + FP + FN)``
over pixels. For a set of images the counts are pooled (summed over images)
before the ratio, so large and small particles weigh by their pixels.
Both numpy arrays and torch tensors are accepted.

The paper thresholds probabilities at 0.9. A network trained briefly
(on CPU) is often less confident than that, so the F1 of the validation set is
also pooled at a grid of thresholds (:data:`CALIBRATION_THRESHOLDS`,
:func:`counts_at_thresholds`) and the best one is recorded with the model
(:func:`best_threshold`), for ``segment --threshold model``.

A validation set whose truth holds no particle pixel cannot rate a segmentation:
every threshold's F1 is then 1 (nothing predicted) or 0 (anything predicted), which
says nothing. :func:`best_threshold` reports it as undefined (None) instead.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MAX_TRUTH_LABELS",
    "truth_mask",
    "CALIBRATION_THRESHOLDS",
    "NO_TRUTH_PIXELS",
    "BinaryCounts",
    "best_threshold",
    "binary_counts",
    "counts_at_thresholds",
    "f1_score",
]

#: Thresholds at which validation F1 is recorded: 0.05, 0.10, …, 0.95, 0.97, 0.99.
CALIBRATION_THRESHOLDS: tuple[float, ...] = (
    *(round(0.05 * k, 2) for k in range(1, 20)), 0.97, 0.99)

#: Why a validation F1 is undefined (the words the command and the docks show).
NO_TRUTH_PIXELS = "the validation images hold no particle pixels: F1 is undefined"


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
    def has_truth(self) -> bool:
        """Whether the truth holds any positive pixel (else F1 rates nothing)."""
        return self.tp + self.fn > 0

    @property
    def precision(self) -> float:
        """``TP / (TP + FP)`` (1.0 with no predicted pixels)."""
        return 1.0 if self.tp + self.fp == 0 else self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        """``TP / (TP + FN)`` (1.0 with no true pixels)."""
        return 1.0 if self.tp + self.fn == 0 else self.tp / (self.tp + self.fn)


#: A truth mask with more distinct values than this is an image, not a mask or labels.
MAX_TRUTH_LABELS = 256


def truth_mask(values: Any, name: str = "the truth") -> np.ndarray:
    """A truth mask as booleans (> 0 inside), refusing what is an image and not a mask.

    A mask is boolean, or whole numbers ≥ 0 (0 outside; 1, or one label per particle,
    inside) with at most :data:`MAX_TRUTH_LABELS` distinct values. A micrograph given by
    mistake (fractional or negative values, or thousands of grey levels) would give
    plausible-looking F1 values; it is refused instead.

    Raises
    ------
    ValueError
        Naming what makes ``values`` not a mask.
    """
    array = np.asarray(values)
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} is not a mask (values of type {array.dtype})")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{name} is not a mask: it has negative or NaN values")
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise ValueError(f"{name} is not a mask: it has fractional values (an image?); give "
                         "a mask with 0 outside and 1 (or a label per particle) inside")
    distinct = np.unique(array).size
    if distinct > MAX_TRUTH_LABELS:
        raise ValueError(f"{name} is not a mask: it has {distinct} distinct values (an "
                         f"image?); a mask has 0 outside and 1 (or at most "
                         f"{MAX_TRUTH_LABELS - 1} labels) inside")
    return array > 0


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


def counts_at_thresholds(probability: Any, truth: Any,
                         thresholds: tuple[float, ...] = CALIBRATION_THRESHOLDS) -> np.ndarray:
    """``(tp, fp, fn)`` pixel counts of ``probability ≥ t`` against ``truth`` for every ``t``.

    Parameters
    ----------
    probability : array or tensor
        Per-pixel probabilities.
    truth : array or tensor
        Truth mask of the same shape.
    thresholds : tuple of float, optional
        Probability thresholds.

    Returns
    -------
    ndarray of int64, shape (len(thresholds), 3)
    """
    if hasattr(probability, "detach"):
        probability = probability.detach().float().cpu().numpy()
    counts = [binary_counts(np.asarray(probability) >= t, truth) for t in thresholds]
    return np.array([(c.tp, c.fp, c.fn) for c in counts], dtype=np.int64)


def best_threshold(counts: np.ndarray,
                   thresholds: tuple[float, ...] = CALIBRATION_THRESHOLDS
                   ) -> tuple[float | None, float | None, dict[str, float]]:
    """The threshold of highest pooled F1 (None when the truth has no positive pixel).

    Parameters
    ----------
    counts : ndarray, shape (len(thresholds), 3)
        Pooled ``(tp, fp, fn)`` per threshold (:func:`counts_at_thresholds`, summed).
    thresholds : tuple of float, optional
        The thresholds of the rows.

    Returns
    -------
    threshold : float or None
        The best threshold (of equal F1, the one nearest 0.5); None when the truth
        holds no positive pixel (:data:`NO_TRUTH_PIXELS`): no threshold is better.
    f1 : float or None
        Its F1; None when undefined.
    f1_by_threshold : dict
        ``{"0.05": f1, …}`` for every threshold (for the model's metadata); empty
        when F1 is undefined.
    """
    counts = np.asarray(counts)
    if counts.shape != (len(thresholds), 3):
        raise ValueError(f"expected counts of shape ({len(thresholds)}, 3), got {counts.shape}")
    if not any(BinaryCounts(*(int(v) for v in row)).has_truth for row in counts):
        return None, None, {}
    f1 = [BinaryCounts(*(int(v) for v in row)).f1 for row in counts]
    order = sorted(range(len(thresholds)), key=lambda i: (-f1[i], abs(thresholds[i] - 0.5)))
    best = order[0]
    table = {f"{t:.2f}": float(v) for t, v in zip(thresholds, f1, strict=True)}
    return float(thresholds[best]), float(f1[best]), table
