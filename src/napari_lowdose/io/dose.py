"""Dose per frame: where it comes from and how it is computed.

The dose of every frame, in e⁻/Å², is what the analyses of Larsen et al.
(2023) are plotted against (frame dose ``N_D`` in e⁻/px enters Eq. 2 and
Eq. 3 as ``dose_e_per_A2 · sampling_A²``). It is taken from the first
available of these sources, in this order:

1. ``metadata``: a per-frame dose written in the file itself;
2. ``table``: a CSV dose table the user gives (header ``dose_e_per_A2``,
   one row per frame);
3. ``rate_x_exposure``: dose rate (e⁻/Å²/s) × exposure time per frame (s);
4. ``counts``: mean counts of the frame ÷ counts-per-electron ÷ pixel area
   (Å²), best measured in vacuum with dark-subtracted frames, with the gain the
   user gives;
5. ``file_calibration``: the same rule with the file's own intensity calibration
   (a DigitalMicrograph ``e-`` brightness calibration, a Direct Electron
   ``ADUs Per Electron`` …): (mean counts − stated offset) ÷ stated counts per
   electron ÷ pixel area. This is the dose a file that states its gain but no
   per-frame dose opens with.

The source chosen is recorded with the values (:class:`FrameDose`).
"""

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DoseCalibrationError
from .units import electrons_per_pixel
from .writers import atomic_write_text

__all__ = [
    "DOSE_SOURCES",
    "DOSE_SOURCE_LABELS",
    "FrameDose",
    "dose_from_counts",
    "dose_from_rate",
    "read_dose_table",
    "resolve_frame_dose",
    "write_dose_table",
]

DOSE_SOURCES = ("metadata", "table", "rate_x_exposure", "counts", "file_calibration")
DOSE_COLUMN = "dose_e_per_A2"

#: What each source means, in words (for ``info`` and the docks).
DOSE_SOURCE_LABELS = {
    "metadata": "per-frame dose stated in the file",
    "table": "dose table",
    "rate_x_exposure": "dose rate × exposure time",
    "counts": "mean counts ÷ the given gain",
    "file_calibration": "the file's intensity calibration",
}


@dataclass(frozen=True)
class FrameDose:
    """Per-frame dose with the source it was taken from.

    Attributes
    ----------
    dose_e_per_A2 : ndarray of float64, shape (n_frames,)
        Dose of each frame in e⁻/Å².
    source : str
        One of :data:`DOSE_SOURCES`.
    detail : str
        Human-readable provenance (file, metadata key, rate and exposure …).
    """

    dose_e_per_A2: np.ndarray
    source: str
    detail: str = ""

    def __post_init__(self) -> None:
        values = np.asarray(self.dose_e_per_A2, dtype=np.float64).reshape(-1)
        if self.source not in DOSE_SOURCES:
            raise DoseCalibrationError(f"unknown dose source {self.source!r}")
        _check_dose_values(values, what=f"dose from {self.source}")
        object.__setattr__(self, "dose_e_per_A2", values)

    @property
    def n_frames(self) -> int:
        """Number of frames the dose covers."""
        return int(self.dose_e_per_A2.size)

    @property
    def cumulative_dose_e_per_A2(self) -> np.ndarray:
        """Dose received up to and including each frame, in e⁻/Å²."""
        return np.cumsum(self.dose_e_per_A2)

    def dose_e_per_px(self, pixel_size_A: float | tuple[float, float]) -> np.ndarray:
        """Frame dose in electrons per pixel, ``N_D`` = dose × pixel height × pixel width."""
        return electrons_per_pixel(self.dose_e_per_A2, pixel_size_A)

    def summary(self) -> str:
        """One line: range, total and source."""
        d = self.dose_e_per_A2
        if d.size == 1:
            text = f"{d[0]:.4g} e⁻/Å²"
        else:
            text = f"{d.min():.4g} … {d.max():.4g} e⁻/Å² per frame over {d.size} frames"
        return f"{text}, total {d.sum():.4g} e⁻/Å² (source: {self.source}{self._detail()})"

    def _detail(self) -> str:
        return f", {self.detail}" if self.detail else ""

    def to_metadata(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (for layer metadata and run records)."""
        return {
            "dose_e_per_A2": [float(v) for v in self.dose_e_per_A2],
            "source": self.source,
            "detail": self.detail,
        }

    @classmethod
    def from_metadata(cls, record: dict[str, Any]) -> "FrameDose":
        """Inverse of :meth:`to_metadata`."""
        try:
            return cls(
                np.asarray(record["dose_e_per_A2"], dtype=np.float64),
                str(record["source"]),
                str(record.get("detail", "")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DoseCalibrationError(f"invalid dose record: {err}") from err


def _check_dose_values(values: np.ndarray, *, what: str) -> None:
    if values.size == 0:
        raise DoseCalibrationError(f"{what}: no values")
    if not np.all(np.isfinite(values)):
        raise DoseCalibrationError(f"{what}: values must be finite numbers")
    if np.any(values < 0):
        raise DoseCalibrationError(f"{what}: dose cannot be negative")


def _check_frames(values: np.ndarray, n_frames: int | None, *, what: str) -> None:
    if n_frames is not None and values.size != n_frames:
        raise DoseCalibrationError(
            f"{what} has {values.size} rows but the series has {n_frames} frames"
        )


def read_dose_table(path: str | Path, n_frames: int | None = None) -> np.ndarray:
    """Read a dose table: a CSV file with a ``dose_e_per_A2`` column.

    Parameters
    ----------
    path : str or Path
        CSV file with a header row that contains ``dose_e_per_A2``; other
        columns (e.g. ``frame``) are ignored. One row per frame, in order.
    n_frames : int, optional
        If given, the table must have exactly this many rows.

    Returns
    -------
    ndarray of float64
        Dose per frame in e⁻/Å².

    Raises
    ------
    DoseCalibrationError
        If the file is missing, has no ``dose_e_per_A2`` column, holds a value
        that is not a non-negative number, or has the wrong number of rows.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DoseCalibrationError(f"cannot read dose table {path}: {err}") from err
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if DOSE_COLUMN not in fields:
        raise DoseCalibrationError(
            f"dose table {path.name} needs a header row with a '{DOSE_COLUMN}' column"
        )
    reader.fieldnames = fields
    values = []
    for line_no, row in enumerate(reader, start=2):
        cell = (row.get(DOSE_COLUMN) or "").strip()
        try:
            values.append(float(cell))
        except ValueError:
            raise DoseCalibrationError(
                f"dose table {path.name}, line {line_no}: {cell!r} is not a number"
            ) from None
    dose = np.asarray(values, dtype=np.float64)
    _check_dose_values(dose, what=f"dose table {path.name}")
    _check_frames(dose, n_frames, what=f"dose table {path.name}")
    return dose


def write_dose_table(path: str | Path, dose_e_per_A2: Sequence[float]) -> None:
    """Write a dose table (``frame,dose_e_per_A2``) readable by :func:`read_dose_table`."""

    lines = ["frame," + DOSE_COLUMN]
    lines += [f"{i},{float(d)!r}" for i, d in enumerate(dose_e_per_A2)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def dose_from_rate(
    dose_rate_e_per_A2_s: float, exposure_time_s: float, n_frames: int
) -> np.ndarray:
    """Dose per frame from dose rate × exposure time (constant over frames)."""
    for name, value in (("dose rate", dose_rate_e_per_A2_s), ("exposure time", exposure_time_s)):
        if not np.isfinite(value) or value <= 0:
            raise DoseCalibrationError(f"{name} must be a positive number, got {value}")
    return np.full(int(n_frames), float(dose_rate_e_per_A2_s) * float(exposure_time_s))


def dose_from_counts(
    mean_counts_per_frame: Sequence[float] | np.ndarray,
    counts_per_electron: float,
    pixel_area_A2: float,
) -> np.ndarray:
    """Dose per frame from mean counts: counts ÷ counts-per-electron ÷ pixel area.

    Parameters
    ----------
    mean_counts_per_frame : array_like
        Mean detector counts per pixel of each frame (dark-subtracted; in
        vacuum, or the dose is that transmitted by the specimen).
    counts_per_electron : float
        Detector conversion factor.
    pixel_area_A2 : float
        Pixel area in Å².
    """
    if not np.isfinite(counts_per_electron) or counts_per_electron <= 0:
        raise DoseCalibrationError(
            f"counts per electron must be a positive number, got {counts_per_electron}"
        )
    if pixel_area_A2 is None or not np.isfinite(pixel_area_A2) or pixel_area_A2 <= 0:
        raise DoseCalibrationError(
            "the dose from counts needs a calibrated pixel size (set the pixel size first)"
        )
    counts = np.asarray(mean_counts_per_frame, dtype=np.float64).reshape(-1)
    if np.any(counts < 0):
        raise DoseCalibrationError(
            "mean counts are negative: subtract the dark level correctly, or use another source"
        )
    return counts / float(counts_per_electron) / float(pixel_area_A2)


def resolve_frame_dose(
    n_frames: int,
    *,
    metadata_dose_e_per_A2: Sequence[float] | np.ndarray | None = None,
    metadata_key: str = "",
    dose_table: str | Path | None = None,
    dose_rate_e_per_A2_s: float | None = None,
    exposure_time_s: float | None = None,
    counts_per_electron: float | None = None,
    pixel_area_A2: float | None = None,
    mean_counts: Callable[[], np.ndarray] | Sequence[float] | None = None,
    file_counts_per_electron: float | None = None,
    file_counts_offset: float | None = None,
    file_gain_key: str = "",
) -> FrameDose | None:
    """Pick the per-frame dose from the first available source, in priority order.

    Parameters
    ----------
    n_frames : int
        Number of frames in the series.
    metadata_dose_e_per_A2 : array_like, optional
        Per-frame dose found in the file's metadata.
    metadata_key : str
        Where in the metadata it was found (recorded as provenance).
    dose_table : path, optional
        CSV dose table given by the user.
    dose_rate_e_per_A2_s, exposure_time_s : float, optional
        Both needed for the rate × exposure source.
    counts_per_electron, pixel_area_A2 : float, optional
        Both needed, with ``mean_counts``, for the counts source.
    mean_counts : callable or array_like, optional
        Mean counts per frame, or a function computing them (called only if
        this source is the one used, since it reads every frame).
    file_counts_per_electron : float, optional
        The gain the file's intensity calibration states; with ``pixel_area_A2`` and
        ``mean_counts``, the ``file_calibration`` source (after ``counts``, which is
        the user's gain).
    file_counts_offset : float, optional
        The offset (counts) of that calibration, subtracted from the mean counts.
    file_gain_key : str
        Where the file states it (recorded as provenance).

    Returns
    -------
    FrameDose or None
        None if no source has the values it needs.
    """
    if metadata_dose_e_per_A2 is not None:
        values = np.asarray(metadata_dose_e_per_A2, dtype=np.float64).reshape(-1)
        _check_frames(values, n_frames, what=f"per-frame dose in metadata ({metadata_key})")
        return FrameDose(values, "metadata", metadata_key)
    if dose_table is not None:
        values = read_dose_table(dose_table, n_frames)
        return FrameDose(values, "table", Path(dose_table).name)
    if dose_rate_e_per_A2_s is not None and exposure_time_s is not None:
        values = dose_from_rate(dose_rate_e_per_A2_s, exposure_time_s, n_frames)
        detail = f"{dose_rate_e_per_A2_s:.4g} e⁻/Å²/s × {exposure_time_s:.4g} s"
        return FrameDose(values, "rate_x_exposure", detail)
    if counts_per_electron is not None and pixel_area_A2 is not None and mean_counts is not None:
        counts = mean_counts() if callable(mean_counts) else mean_counts
        values = dose_from_counts(counts, counts_per_electron, pixel_area_A2)
        _check_frames(values, n_frames, what="mean counts")
        detail = f"mean counts ÷ {counts_per_electron:.4g} counts/e⁻ ÷ {pixel_area_A2:.4g} Å²"
        return FrameDose(values, "counts", detail)
    if (file_counts_per_electron is not None and pixel_area_A2 is not None
            and mean_counts is not None):
        offset = float(file_counts_offset or 0.0)
        counts = np.asarray(mean_counts() if callable(mean_counts) else mean_counts,
                            dtype=np.float64) - offset
        values = dose_from_counts(counts, file_counts_per_electron, pixel_area_A2)
        _check_frames(values, n_frames, what="mean counts")
        mean = f"(mean counts − {offset:.4g})" if offset else "mean counts"
        where = f"; gain: {file_gain_key}" if file_gain_key else ""
        detail = (f"{mean} ÷ {file_counts_per_electron:.4g} counts/e⁻ ÷ "
                  f"{pixel_area_A2:.4g} Å²{where}")
        return FrameDose(values, "file_calibration", detail)
    return None
