"""Readers and writers for TEM dose series (pure: no Qt, no napari).

Every reader returns a :class:`~napari_lowdose.io.series.Series`: a lazily
loaded array of frames, the pixel size in Å, the source metadata and any dose
information the file holds.
"""

from importlib import import_module
from typing import Any

from ..errors import SeriesReadError, UnsupportedFormatError
from .dose import FrameDose, read_dose_table, resolve_frame_dose
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

# The readers (and the dask and HDF5 libraries they use) load on first use, so that the
# light modules of this package (units, tables, dose) import without them.
_LAZY = {"SUPPORTED_SUFFIXES": ".readers", "read_series": ".readers"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
