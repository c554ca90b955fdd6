"""Readers and writers for TEM dose series (pure: no Qt, no napari).

Every reader returns a :class:`~napari_lowdose.io.series.Series`: a lazily
loaded array of frames, the pixel size in Å, the source metadata and any dose
information the file holds.
"""

from ..errors import SeriesReadError, UnsupportedFormatError
from .dose import FrameDose, read_dose_table, resolve_frame_dose
from .readers import SUPPORTED_SUFFIXES, read_series
from .series import DoseHints, Series

__all__ = [
    "SUPPORTED_SUFFIXES",
    "DoseHints",
    "FrameDose",
    "Series",
    "SeriesReadError",
    "UnsupportedFormatError",
    "read_dose_table",
    "read_series",
    "resolve_frame_dose",
]
