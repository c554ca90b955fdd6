"""npe2 reader contribution: returns None for anything it cannot read."""

from pathlib import Path

from .errors import SeriesReadError
from .io.layers import AREA_RECORD_KEY, LOWDOSE_KEY, series_to_layer_data
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
        return [_with_features(layer) for layer in series_to_layer_data(series)]

    return read


def _with_features(layer_data):
    """A reopened mask layer gets its run's features row back (as the Segment dock sets it);
    a record that cannot be read back is left out of the features, never fatal."""
    from .analysis.area_record import features_from_record

    data, kwargs, kind = layer_data
    record = kwargs["metadata"][LOWDOSE_KEY].get(AREA_RECORD_KEY)
    if kind == "labels" and record is not None:
        try:
            kwargs = {**kwargs, "features": features_from_record(record)}
        except (KeyError, TypeError, ValueError):
            pass
    return data, kwargs, kind
