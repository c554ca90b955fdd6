"""Choose and compute the per-frame dose of a series from metadata and user input.

Wraps :func:`napari_lowdose.io.dose.resolve_frame_dose` for the CLI and the
"Dose calibration" widget: values the user gives override the same values
found in the metadata, and a source can be forced instead of the automatic
priority order (metadata → table → rate × exposure → counts).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DoseCalibrationError
from .dose import DOSE_SOURCES, FrameDose, resolve_frame_dose
from .series import check_finite_frames

__all__ = ["calibrate_frame_dose", "iter_frame_mean_counts"]


def iter_frame_mean_counts(
    data: Any, roi: tuple[int, int, int, int] | None = None
) -> Iterator[float]:
    """Yield the mean of each frame (inside ``roi = (y0, y1, x0, x1)``), one at a time.

    Reads one frame at a time, so a memory-mapped or dask series never has to
    fit in memory; a caller can stop between frames.
    """
    frames = data if data.ndim == 3 else data[None]
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
    source : {"auto", "metadata", "table", "rate_x_exposure", "counts"}
        "auto" uses the priority order; any other value uses only that source.
    dose_table, dose_rate_e_per_A2_s, exposure_time_s, counts_per_electron
        User-given values; each overrides the metadata's value.
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
    gain = counts_per_electron if counts_per_electron is not None else hints.get(
        "counts_per_electron")

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
    }
    if source == "auto":
        merged: dict[str, Any] = {}
        for values in inputs.values():
            merged.update(values)
        return resolve_frame_dose(n_frames, **merged)
    missing = [k for k, v in inputs[source].items() if v is None]
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
    "pixel_area_A2": "a calibrated pixel size",
}
