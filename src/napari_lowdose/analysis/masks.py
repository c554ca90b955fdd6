"""From per-pixel probabilities to particle masks: threshold, then optional clean-up.

Larsen et al. (2023) take the mask as the pixels whose probability reaches a
threshold (0.9 in Larsen et al. 2023). At low and intermediate dose the networks
also fire on isolated patches of the support or the vacuum, and a frame's F1
then depends on such blobs rather than on the particle's outline. When the user
knows what the field holds, three optional rules (applied in this order) remove
them without touching the particle's boundary:

* ``min_area_px``: drop connected regions smaller than this (8-connected);
* ``keep_largest``: keep only the largest connected region (a series of one
  particle, as in the paper's experiment and its SOI Fig. 9 validation series);
* ``fill_holes``: fill holes enclosed by a region (the label of the paper is
  the convex hull of the projected Au atoms, Larsen et al. 2023 Sec. 2, so it has none).

These are this project's additions, not part of the paper's method; with all of
them off, :func:`probability_mask` is exactly ``probability ≥ threshold``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .area_vs_dose import pixel_area_nm2

__all__ = ["MaskCleaning", "clean_mask", "probability_mask"]

#: 8-connectivity: diagonal neighbours belong to the same region.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class MaskCleaning:
    """Clean-up rules applied to a thresholded mask (all off by default).

    Attributes
    ----------
    keep_largest : bool
        Keep only the largest 8-connected region.
    fill_holes : bool
        Fill the holes enclosed by a region.
    min_area_px : int
        Drop regions of fewer pixels than this (0: keep all).
    """

    keep_largest: bool = False
    fill_holes: bool = False
    min_area_px: int = 0

    def __post_init__(self) -> None:
        if int(self.min_area_px) < 0:
            raise ValueError(f"min_area_px must be >= 0, got {self.min_area_px}")

    @property
    def active(self) -> bool:
        """Whether any rule changes a mask."""
        return self.keep_largest or self.fill_holes or self.min_area_px > 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (for run records and layer metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> MaskCleaning:
        """Inverse of :meth:`to_dict` (``None`` or ``{}``: no clean-up)."""
        values = values or {}
        return cls(keep_largest=bool(values.get("keep_largest", False)),
                   fill_holes=bool(values.get("fill_holes", False)),
                   min_area_px=int(values.get("min_area_px", 0)))

    @classmethod
    def from_area_nm2(cls, min_area_nm2: float,
                      pixel_size_A: float | tuple[float, float] | None,
                      **rules: bool) -> MaskCleaning:
        """Rules with the minimum region area given in nm² for pixels of ``pixel_size_A``.

        Parameters
        ----------
        min_area_nm2 : float
            Smallest region kept (0: all).
        pixel_size_A : float or (float, float) or None
            Pixel size (y, x) in Å; needed when ``min_area_nm2 > 0``.
        **rules : bool
            ``keep_largest``, ``fill_holes``.

        Raises
        ------
        ValueError
            If ``min_area_nm2`` is negative, or positive with no pixel size.
        """

        if min_area_nm2 < 0:
            raise ValueError(f"the minimum area must be >= 0 nm², got {min_area_nm2}")
        if min_area_nm2 == 0:
            return cls(min_area_px=0, **rules)
        if pixel_size_A is None:
            raise ValueError("a minimum area in nm² needs the pixel size of the series")
        return cls(min_area_px=int(np.ceil(min_area_nm2 / pixel_area_nm2(pixel_size_A))),
                   **rules)


def clean_mask(mask: np.ndarray, cleaning: MaskCleaning) -> np.ndarray:
    """Apply the clean-up rules to one binary ``(y, x)`` mask; returns a new bool array.

    Parameters
    ----------
    mask : ndarray, shape (y, x)
        Binary mask (not modified).
    cleaning : MaskCleaning
        The rules.

    Returns
    -------
    ndarray of bool, shape (y, x)
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected one (y, x) mask, got shape {mask.shape}")
    if not cleaning.active:
        return mask.copy()
    out = mask.copy()
    if cleaning.min_area_px > 1 or cleaning.keep_largest:
        labels, n = ndi.label(out, structure=_EIGHT_CONNECTED)
        if n:
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            sizes[0] = 0
            keep = sizes >= max(cleaning.min_area_px, 1)
            if cleaning.keep_largest:
                largest = np.zeros_like(keep)
                largest[int(np.argmax(sizes))] = True  # first of equal sizes
                keep &= largest
            out = keep[labels]
    if cleaning.fill_holes:
        out = ndi.binary_fill_holes(out)
    return out


def probability_mask(probability: np.ndarray, threshold: float,
                     cleaning: MaskCleaning | None = None) -> np.ndarray:
    """Mask of one frame: ``probability ≥ threshold`` (Larsen et al.), then the clean-up rules.

    Parameters
    ----------
    probability : ndarray, shape (y, x)
        Per-pixel probability of "particle".
    threshold : float
        Probability threshold (the paper uses 0.9).
    cleaning : MaskCleaning, optional
        Clean-up rules (default none).

    Returns
    -------
    ndarray of bool, shape (y, x)
    """
    mask = np.asarray(probability) >= threshold
    if cleaning is None or not cleaning.active:
        return mask
    return clean_mask(mask, cleaning)
