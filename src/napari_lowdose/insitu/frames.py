"""Reading the frames of a ready file for in-situ mode, with per-frame metadata.

:func:`read_frames` reads every frame of a file delivered by
:class:`~napari_lowdose.insitu.folder.FolderWatcher` into memory (any format of
:func:`~napari_lowdose.io.readers.read_series`, or ``.npy``), so that a file
of several frames yields all of them; :func:`frame_metadata` gives each frame
its index and dose.
"""

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SeriesReadError, short_reason
from ..io.readers import SUPPORTED_SUFFIXES, read_series

__all__ = ["frame_metadata", "read_frame", "read_frames"]


def _as_stack(data: np.ndarray, name: str) -> np.ndarray:
    """``(frame, y, x)`` view of an image (2D), stack (3D) or more axes."""
    if data.ndim < 2:
        raise SeriesReadError(f"{name}: data has {data.ndim} dimension(s); an image needs 2")
    if data.ndim == 2:
        data = data[np.newaxis]
    elif data.ndim > 3:
        data = data.reshape((-1,) + tuple(data.shape[-2:]))
    if data.size == 0:
        raise SeriesReadError(f"{name}: data has an empty axis, shape {tuple(data.shape)}")
    return data


def read_frames(path: str | Path, *, as_float32: bool = False) -> tuple[np.ndarray, dict]:
    """Read every frame of a file into memory.

    Parameters
    ----------
    path : str or Path
        Any format of :func:`~napari_lowdose.io.readers.read_series`, or ``.npy``.
    as_float32 : bool
        Convert to float32; otherwise the file's own dtype is kept (raw counts).

    Returns
    -------
    stack : ndarray, shape (n_frames, ny, nx)
        All frames of the file, detached from the file (a copy).
    metadata : dict
        ``path``, ``name``, ``format``, ``pixel_size_A`` ((y, x) in Å or None),
        ``pixel_size_source``, ``n_frames_in_file``, ``frame_dose_e_per_A2``
        (list or None), ``dose_source``, ``counts_per_electron`` (the detector gain the
        file states, or None), ``warnings``, ``source_metadata``.

    Raises
    ------
    SeriesReadError
        When the file cannot be read.
    """
    path = Path(path)
    meta: dict[str, Any] = {"path": str(path), "name": path.name}
    if path.suffix.lower() == ".npy" and ".npy" not in SUPPORTED_SUFFIXES:
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as err:
            raise SeriesReadError(f"{path.name}: not a readable .npy file ({short_reason(err)})") \
                from None
        meta.update(format="NumPy .npy", pixel_size_A=None, pixel_size_source="",
                    frame_dose_e_per_A2=None, dose_source="", counts_per_electron=None,
                    warnings=[], source_metadata={})
    else:
        series = read_series(path)
        try:
            data = np.array(series.data)
        except Exception as err:  # lazily read pages that turn out to be damaged
            why = short_reason(err)
            raise SeriesReadError(f"{path.name}: image data cannot be read ({why})") \
                from None
        dose = series.frame_dose
        meta.update(
            format=series.format,
            pixel_size_A=series.pixel_size_A,
            pixel_size_source=series.pixel_size_source,
            frame_dose_e_per_A2=None if dose is None else [float(v) for v in dose.dose_e_per_A2],
            dose_source="" if dose is None else dose.source,
            counts_per_electron=series.dose_hints.counts_per_electron,
            warnings=list(series.warnings),
            source_metadata=series.source_metadata,
        )
    stack = _as_stack(data, path.name)
    if as_float32:
        stack = stack.astype(np.float32, copy=False)
    meta["n_frames_in_file"] = int(stack.shape[0])
    return stack, meta


def frame_metadata(file_metadata: dict, frame_index: int) -> dict:
    """Metadata of one frame: the file's, plus its index and dose.

    Parameters
    ----------
    file_metadata : dict
        As returned by :func:`read_frames`.
    frame_index : int
        Index of the frame in its file.

    Returns
    -------
    dict
        A new dict with ``frame_index_in_file`` and ``dose_e_per_A2`` (the
        frame's dose in e⁻/Å², or None) added.
    """
    meta = dict(file_metadata)
    doses = file_metadata.get("frame_dose_e_per_A2")
    meta["frame_index_in_file"] = int(frame_index)
    meta["dose_e_per_A2"] = (
        doses[frame_index] if doses is not None and frame_index < len(doses) else None
    )
    return meta


def read_frame(path: str | Path, *, as_float32: bool = False) -> tuple[np.ndarray, dict]:
    """Read a single-frame file.

    Parameters
    ----------
    path : str or Path
        A file holding one image; use :func:`read_frames` for stacks.
    as_float32 : bool
        Convert to float32; otherwise the file's own dtype is kept.

    Returns
    -------
    frame : ndarray, shape (ny, nx)
    metadata : dict
        See :func:`read_frames` and :func:`frame_metadata`.

    Raises
    ------
    SeriesReadError
        When the file cannot be read, or holds more than one frame (so that
        no frame is silently dropped).
    """
    stack, meta = read_frames(path, as_float32=as_float32)
    if stack.shape[0] != 1:
        raise SeriesReadError(f"{Path(path).name}: holds {stack.shape[0]} frames; "
                              "read it with read_frames")
    return stack[0], frame_metadata(meta, 0)
