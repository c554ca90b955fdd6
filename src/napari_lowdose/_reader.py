"""npe2 reader contribution: returns None for anything it cannot read."""

from pathlib import Path

from .errors import SeriesReadError
from .io.layers import series_to_layer_data
from .io.readers import SUPPORTED_SUFFIXES, read_series


def napari_get_reader(path):
    """Return a reader function for ``path``, or None (npe2 contract).

    The file is opened here (headers only; data stay on disk) so that a
    truncated, empty or corrupt file is refused before napari tries it.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if path.is_dir() or path.suffix.lower() not in SUPPORTED_SUFFIXES:
        return None
    try:
        series = read_series(path)
    except SeriesReadError:
        return None

    def read(_path):
        return series_to_layer_data(series)

    return read
