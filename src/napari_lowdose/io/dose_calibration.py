"""Choose and compute the per-frame dose of a series from metadata and user input.

Wraps :func:`napari_lowdose.io.dose.resolve_frame_dose` for the CLI and the
"Dose calibration" widget: values the user gives override the same values
found in the metadata, and a source can be forced instead of the automatic
priority order (metadata → table → rate × exposure → counts with the user's gain →
counts with the file's own intensity calibration).

:func:`open_time_dose` is the one rule by which an opened file gets the dose of its own
intensity calibration without the user asking: computed at once when reading every frame
is cheap (:data:`OPEN_READ_LIMIT_PX`), otherwise when an analysis asks for it.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DoseCalibrationError
from .dose import DOSE_SOURCES, FrameDose, resolve_frame_dose
from .series import as_frame_stack, check_finite_frames

__all__ = ["OPEN_READ_LIMIT_PX", "calibrate_frame_dose", "iter_frame_mean_counts",
           "open_time_dose"]

#: A series of at most this many pixels in all (64 Mpx: 128 MB of 16-bit counts, e.g. four
#: 4k² frames or 256 frames of 512²) gets the dose of its file's intensity calibration when
#: it is opened; a larger one when an analysis reads its frames (the command line) or from
#: the Dose calibration dock (a cancellable worker).
OPEN_READ_LIMIT_PX = 64 * 2**20


def iter_frame_mean_counts(
    data: Any, roi: tuple[int, int, int, int] | None = None
) -> Iterator[float]:
    """Yield the mean of each frame (inside ``roi = (y0, y1, x0, x1)``), one at a time.

    Reads one frame at a time, so a memory-mapped or dask series never has to
    fit in memory; a caller can stop between frames.
    """
    frames = as_frame_stack(data)
    y0, y1, x0, x1 = roi if roi is not None else (0, frames.shape[-2], 0, frames.shape[-1])
    if not (0 <= y0 < y1 <= frames.shape[-2] and 0 <= x0 < x1 <= frames.shape[-1]):
        raise DoseCalibrationError(
            f"region {y0}:{y1},{x0}:{x1} is not inside the {frames.shape[-2]}×"
            f"{frames.shape[-1]} px frame"
        )
    for i in range(frames.shape[0]):
        region = np.asarray(frames[i, y0:y1, x0:x1], dtype=np.float64)
        check_finite_frames(region, [i])
        yield float(region.mean())


def calibrate_frame_dose(
    data: Any,
    *,
    pixel_area_A2: float | None,
    hints: dict[str, Any] | None = None,
    source: str = "auto",
    dose_table: str | Path | None = None,
    dose_rate_e_per_A2_s: float | None = None,
    exposure_time_s: float | None = None,
    counts_per_electron: float | None = None,
    mean_counts: np.ndarray | None = None,
    roi: tuple[int, int, int, int] | None = None,
) -> FrameDose | None:
    """Per-frame dose of ``data`` from the metadata ``hints`` and user-given values.

    Parameters
    ----------
    data : array-like, shape (frames, y, x) or (y, x)
        The series (read only if the counts source is used and
        ``mean_counts`` is not given).
    pixel_area_A2 : float or None
        Pixel area in Å² (needed by the counts source).
    hints : dict, optional
        ``DoseHints.to_metadata()`` of the file.
    source : {"auto", "metadata", "table", "rate_x_exposure", "counts", "file_calibration"}
        "auto" uses the priority order; any other value uses only that source.
        ``counts`` uses the user's gain, or the file's when forced without one;
        ``file_calibration`` the file's intensity calibration (gain and offset).
    dose_table, dose_rate_e_per_A2_s, exposure_time_s, counts_per_electron
        User-given values; each overrides the metadata's value (a user-given gain
        makes "auto" use ``counts`` rather than ``file_calibration``).
    mean_counts : ndarray, optional
        Precomputed mean counts per frame (e.g. from a cancellable worker).
    roi : (y0, y1, x0, x1), optional
        Region (vacuum) whose mean counts are used by the counts source.

    Returns
    -------
    FrameDose or None
        None when ``source="auto"`` and no source has what it needs.

    Raises
    ------
    DoseCalibrationError
        When a forced source lacks an input, or values are invalid.
    """
    hints = hints or {}
    if source != "auto" and source not in DOSE_SOURCES:
        raise DoseCalibrationError(
            f"unknown dose source {source!r}; choose auto or one of {', '.join(DOSE_SOURCES)}"
        )
    n_frames = int(data.shape[0]) if data.ndim == 3 else 1
    metadata_dose = hints.get("frame_dose_e_per_A2")
    rate = dose_rate_e_per_A2_s if dose_rate_e_per_A2_s is not None else hints.get(
        "dose_rate_e_per_A2_s")
    exposure = exposure_time_s if exposure_time_s is not None else hints.get("exposure_time_s")
    stated_gain = hints.get("counts_per_electron")
    gain = counts_per_electron
    if gain is None and source == "counts":
        gain = stated_gain

    def counts() -> np.ndarray:
        if mean_counts is not None:
            return np.asarray(mean_counts, dtype=np.float64)
        return np.fromiter(iter_frame_mean_counts(data, roi), dtype=np.float64, count=n_frames)

    inputs = {
        "metadata": {"metadata_dose_e_per_A2": metadata_dose,
                     "metadata_key": hints.get("frame_dose_key", "")},
        "table": {"dose_table": dose_table},
        "rate_x_exposure": {"dose_rate_e_per_A2_s": rate, "exposure_time_s": exposure},
        "counts": {"counts_per_electron": gain, "pixel_area_A2": pixel_area_A2,
                   "mean_counts": counts},
        "file_calibration": {"file_counts_per_electron": stated_gain,
                             "pixel_area_A2": pixel_area_A2, "mean_counts": counts,
                             "file_counts_offset": hints.get("counts_offset"),
                             "file_gain_key": hints.get("counts_per_electron_key", "")},
    }
    if source == "auto":
        merged: dict[str, Any] = {}
        for values in inputs.values():
            merged.update(values)
        return resolve_frame_dose(n_frames, **merged)
    optional = ("file_counts_offset", "metadata_key", "file_gain_key")
    missing = [k for k, v in inputs[source].items() if v is None and k not in optional]
    if missing:
        raise DoseCalibrationError(
            f"dose source '{source}' needs: {', '.join(_NEEDS.get(k, k) for k in missing)}"
        )
    return resolve_frame_dose(n_frames, **inputs[source])


_NEEDS = {
    "metadata_dose_e_per_A2": "a per-frame dose in the file's metadata (none found)",
    "dose_table": "a dose table (CSV with a dose_e_per_A2 column)",
    "dose_rate_e_per_A2_s": "a dose rate (e⁻/Å²/s)",
    "exposure_time_s": "an exposure time per frame (s)",
    "counts_per_electron": "counts per electron",
    "file_counts_per_electron": "a gain stated by the file (an intensity calibration in "
                                "electrons; none found)",
    "pixel_area_A2": "a calibrated pixel size",
}


def open_time_dose(data: Any, *, pixel_area_A2: float | None, hints: dict[str, Any],
                   max_pixels: int | None = None) -> FrameDose | None:
    """The dose a file opens with when it states its gain but no per-frame dose.

    Parameters
    ----------
    data : array-like, shape (frames, y, x) or (y, x)
        The series (memory-mapped or dask: read frame by frame).
    pixel_area_A2 : float or None
        Pixel area in Å².
    hints : dict
        ``DoseHints.to_metadata()`` of the file.
    max_pixels : int, optional
        Compute only when the series holds at most this many pixels (default
        :data:`OPEN_READ_LIMIT_PX`).

    Returns
    -------
    FrameDose or None
        The ``file_calibration`` dose, or None when the file states no gain, the series
        is uncalibrated, or larger than ``max_pixels``.

    Raises
    ------
    DoseCalibrationError, BadPixelsError
        Negative mean counts after the offset, or frames with NaN pixels.
    """
    if not hints.get("counts_per_electron") or not pixel_area_A2:
        return None
    limit = OPEN_READ_LIMIT_PX if max_pixels is None else max_pixels
    if int(np.prod(data.shape)) > limit:
        return None
    return calibrate_frame_dose(data, pixel_area_A2=pixel_area_A2, hints=hints,
                                source="file_calibration")
