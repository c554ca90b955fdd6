"""Rules that every face applies the same way: the detector gain and the expected electrons
per pixel a denoiser normalises by (electrons per pixel themselves are
:func:`napari_lowdose.io.units.electrons_per_pixel`).

Written once here so that the command line, the napari docks and the in-situ watcher
cannot drift apart (they once computed the pixel area from the *mean* of the two pixel
sides in some places and from their product in others).
"""

import math
from typing import Any

import numpy as np

from ..errors import LowdoseError
from ..io.units import electrons_per_pixel, pixel_sides_A

__all__ = ["GainError", "detector_gain", "expected_e_per_px"]


class GainError(LowdoseError):
    """A detector gain (counts per electron) that is not a positive number."""


def detector_gain(user_counts_per_electron: float | None,
                  stated_counts_per_electron: float | None) -> float:
    """Counts per electron to convert frames with: the user's, else the file's, else 1.

    Parameters
    ----------
    user_counts_per_electron : float or None
        Given by the user (``--counts-per-electron``, a dock's gain field); None or 0
        means "not given".
    stated_counts_per_electron : float or None
        What the file states (``Series.dose_hints.counts_per_electron``).

    Returns
    -------
    float
        The gain; 1 for frames already in electrons.

    Raises
    ------
    GainError
        The chosen gain is not a positive finite number.
    """
    gain = user_counts_per_electron or stated_counts_per_electron or 1.0
    if not (math.isfinite(float(gain)) and float(gain) > 0):
        raise GainError(f"the detector gain must be a positive number of counts per "
                        f"electron, not {gain!r}")
    return float(gain)


def expected_e_per_px(dose_e_per_A2: Any | None, pixel_size_A: tuple[float, float] | None,
                      *, dose_source: str = "") -> tuple[np.ndarray | None, str]:
    """Per-frame expected electrons per vacuum pixel for a denoiser, and how it was found.

    Parameters
    ----------
    dose_e_per_A2 : array-like or None
        The dose of every frame, or None when the series has no dose calibration.
    pixel_size_A : (float, float) or None
        (y, x) pixel size in Å, or None when uncalibrated.
    dose_source : str
        Where the dose came from, for the record.

    Returns
    -------
    values : ndarray or None
        :func:`electrons_per_pixel` of every frame, or None: the denoiser then
        normalises each frame by its mean counts ÷ gain.
    how : str
        One sentence for the run record.
    """
    if dose_e_per_A2 is None:
        return None, "frame mean / counts_per_electron (no dose calibration)"
    if pixel_size_A is None:
        return None, "frame mean / counts_per_electron (no pixel size)"
    height, width = pixel_sides_A(pixel_size_A)
    area = f"{height:.6g}²" if height == width else f"{height:.6g} × {width:.6g}"
    return (electrons_per_pixel(dose_e_per_A2, (height, width)),
            f"dose_e_per_A2 × {area} Å² (dose source: {dose_source})")
