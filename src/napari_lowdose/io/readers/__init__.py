"""Readers for TEM image series: TIFF, Gatan DM3/DM4, FEI TIA SER/EMI, EMD, MRC.

Each reader opens a file lazily (memory map or dask: only headers are read),
finds the pixel size in Å and any dose information in the metadata, and
returns a :class:`~napari_lowdose.io.series.Series`. Anything that is not a
readable image file raises :class:`~napari_lowdose.errors.SeriesReadError`
with a one-line message.

One module per format: :mod:`.tiff` (TIFF, ImageJ, OME-TIFF, Gatan TIFF
tags), :mod:`.dm` (DigitalMicrograph .dm3/.dm4), :mod:`.tia` (FEI .ser/.emi),
:mod:`.emd` (Berkeley/NCEM and Velox EMD), :mod:`.mrc` (MRC, Direct Electron
info files). :func:`read_series` picks the reader by file suffix.
"""

from collections.abc import Callable
from pathlib import Path

from ...errors import SeriesReadError, UnsupportedFormatError, short_reason
from ..series import Series
from .dm import read_dm
from .emd import read_emd
from .mrc import read_mrc
from .tia import read_ser
from .tiff import read_tiff

__all__ = [
    "SUPPORTED_SUFFIXES",
    "read_dm",
    "read_emd",
    "read_mrc",
    "read_ser",
    "read_series",
    "read_tiff",
]

_READERS: dict[str, Callable[[Path], Series]] = {
    ".tif": read_tiff,
    ".tiff": read_tiff,
    ".dm3": read_dm,
    ".dm4": read_dm,
    ".ser": read_ser,
    ".emi": read_ser,
    ".emd": read_emd,
    ".mrc": read_mrc,
    ".mrcs": read_mrc,
}

#: File extensions napari-lowdose reads.
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_READERS)


def read_series(path: str | Path) -> Series:
    """Open any supported TEM file as a :class:`Series` (lazily).

    Parameters
    ----------
    path : str or Path
        A ``.tif/.tiff``, ``.dm3/.dm4``, ``.ser/.emi``, ``.emd`` or ``.mrc/.mrcs`` file.

    Returns
    -------
    Series

    Raises
    ------
    UnsupportedFormatError
        For a directory or an extension not in :data:`SUPPORTED_SUFFIXES`.
    SeriesReadError
        For a missing, empty, truncated or corrupt file.
    """
    path = Path(path)
    if path.is_dir():
        raise UnsupportedFormatError(f"{path}: is a directory, not an image file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(SUPPORTED_SUFFIXES)
        raise UnsupportedFormatError(f"{path.name}: unsupported file type (napari-lowdose reads "
                                     f"{known})")
    if not path.is_file():
        raise SeriesReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise SeriesReadError(f"{path.name}: file is empty")
    try:
        return reader(path)
    except SeriesReadError:
        raise
    except Exception as err:  # a reader library failed in a way we did not foresee
        why = short_reason(err)
        raise SeriesReadError(f"{path.name}: cannot be read as {path.suffix} ({why})") \
            from None
