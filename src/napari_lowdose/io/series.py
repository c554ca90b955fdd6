"""The in-memory description of an opened TEM image series."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LowdoseError
from .dose import FrameDose
from .units import pixel_area_A2

__all__ = ["BadPixelsError", "DoseHints", "Series", "as_frame_stack", "check_finite_frames"]


class BadPixelsError(LowdoseError):
    """Frames hold NaN or infinite pixels (a damaged read, a masked export …)."""


def check_finite_frames(frames: Any, indices: Any = None) -> None:
    """Refuse frames that hold NaN or infinite pixels, naming them.

    Every analysis (noise fit, segmentation, denoising, dose from counts) checks its
    frames with this before using them, so a damaged frame is never turned into an empty
    or NaN result that then silently drops out.

    Parameters
    ----------
    frames : array-like, shape (n, y, x) or (y, x)
        The frames (already read).
    indices : sequence of int, optional
        Their frame numbers in the series, for the message (default 0 … n-1).

    Raises
    ------
    BadPixelsError
        One line naming the frames and how many of their pixels are not finite.
    """
    stack = np.asarray(frames)
    if stack.ndim == 2:
        stack = stack[None]
    if np.issubdtype(stack.dtype, np.integer) or np.isfinite(stack).all():
        return
    numbers = list(range(stack.shape[0])) if indices is None else [int(i) for i in indices]
    bad = [(numbers[k], int(np.count_nonzero(~np.isfinite(frame))))
           for k, frame in enumerate(stack) if not np.isfinite(frame).all()]
    listed = ", ".join(f"{i} ({count} px)" for i, count in bad[:8])
    more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
    raise BadPixelsError(
        f"frame{'s' if len(bad) > 1 else ''} {listed}{more} "
        f"hold{'' if len(bad) > 1 else 's'} NaN or infinite pixels; "
        "replace or crop them (nothing was computed from them)")


@dataclass
class DoseHints:
    """Dose-related values found in a file's metadata, each optional.

    Attributes
    ----------
    frame_dose_e_per_A2 : ndarray or None
        Per-frame dose stated by the file (highest priority source).
    frame_dose_key : str
        Which metadata entry held the per-frame dose.
    dose_rate_e_per_A2_s : float or None
        Dose rate at the specimen in e⁻/Å²/s.
    exposure_time_s : float or None
        Exposure time of one frame in s.
    counts_per_electron : float or None
        Detector conversion factor (counts or ADU per electron) the file states.
    counts_per_electron_key : str
        Where the file states it (e.g. a DigitalMicrograph intensity calibration).
    counts_offset : float or None
        Offset (counts) of that calibration: electrons = (counts − offset) ÷ gain.
    notes : list of str
        Where each value came from and any assumption made converting it.
    """

    frame_dose_e_per_A2: np.ndarray | None = None
    frame_dose_key: str = ""
    dose_rate_e_per_A2_s: float | None = None
    exposure_time_s: float | None = None
    counts_per_electron: float | None = None
    counts_per_electron_key: str = ""
    counts_offset: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_metadata(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "frame_dose_e_per_A2": None
            if self.frame_dose_e_per_A2 is None
            else [float(v) for v in self.frame_dose_e_per_A2],
            "frame_dose_key": self.frame_dose_key,
            "dose_rate_e_per_A2_s": self.dose_rate_e_per_A2_s,
            "exposure_time_s": self.exposure_time_s,
            "counts_per_electron": self.counts_per_electron,
            "counts_per_electron_key": self.counts_per_electron_key,
            "counts_offset": self.counts_offset,
            "notes": list(self.notes),
        }


def as_frame_stack(data: Any) -> Any:
    """``data`` as ``(frames, y, x)``: 3-D data as it is (lazy arrays stay lazy), a 2-D image
    as one frame. An HDF5 dataset (EMD files) does not take ``[None]``: a single image is
    read instead (one frame fits in memory)."""
    if data.ndim == 3:
        return data
    try:
        return data[None]
    except (TypeError, ValueError, IndexError):
        return np.asarray(data)[None]


@dataclass
class Series:
    """A TEM image or image series opened from a file.

    Attributes
    ----------
    data : array-like
        ``(frame, y, x)`` for a series or ``(y, x)`` for a single image;
        a ``numpy.memmap`` or ``dask.array.Array`` so that opening a large file
        reads only its header.
    pixel_size_A : tuple of float or None
        ``(y, x)`` pixel size in Å, or None when the file is uncalibrated.
    format : str
        Human-readable name of the file format.
    path : Path
        The file that was opened.
    pixel_size_source : str
        The metadata entry the pixel size was read from.
    source_metadata : dict
        The file's own metadata (JSON-serialisable scalars and strings).
    dose_hints : DoseHints
        Dose information found in the metadata.
    frame_dose : FrameDose or None
        The per-frame dose resolved from the hints (see
        :func:`napari_lowdose.io.dose.resolve_frame_dose`).
    warnings : list of str
        Anything the user should know about how the file was interpreted.
    """

    data: Any
    pixel_size_A: tuple[float, float] | None
    format: str
    path: Path
    pixel_size_source: str = ""
    source_metadata: dict[str, Any] = field(default_factory=dict)
    dose_hints: DoseHints = field(default_factory=DoseHints)
    frame_dose: FrameDose | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        """Number of frames (1 for a single image)."""
        return int(self.data.shape[0]) if self.data.ndim == 3 else 1

    @property
    def frames(self) -> Any:
        """The data as ``(frames, y, x)``: a series as it is (lazy), a single image as one
        frame (read: not every lazy array, e.g. an HDF5 dataset, takes a new axis)."""
        return as_frame_stack(self.data)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of one frame."""
        return tuple(int(n) for n in self.data.shape[-2:])

    @property
    def axis_labels(self) -> tuple[str, ...]:
        """Labels of the data axes."""
        return ("frame", "y", "x") if self.data.ndim == 3 else ("y", "x")

    @property
    def pixel_area_A2(self) -> float | None:
        """Area of one pixel in Å², or None if uncalibrated."""
        if self.pixel_size_A is None:
            return None
        return pixel_area_A2(self.pixel_size_A)
