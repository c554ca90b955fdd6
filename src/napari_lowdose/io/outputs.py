"""Output folders written all at once: every file or none (temp folder, then rename).

Exports of a run (masks, probabilities, tables, plots, run records) are written
into a staging folder beside the destination; only when every file is complete
are they moved into place. An error half-way leaves the destination as it was.
A destination that already holds files is refused unless ``overwrite`` is set
(the CLI's ``--overwrite``; the GUI asks first).
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LowdoseError

__all__ = [
    "IN_MEMORY_LIMIT_BYTES",
    "OutputExistsError",
    "OutputNotWritableError",
    "check_output_folder",
    "check_writable",
    "frames_array",
    "result_array",
    "write_output_folder",
]

#: Results larger than this are kept in a scratch file on disk instead of in memory.
IN_MEMORY_LIMIT_BYTES = 1 << 30


class OutputExistsError(LowdoseError):
    """The output folder already holds files and overwriting was not asked for."""


class OutputNotWritableError(LowdoseError):
    """The output folder (or the folder it would be made in) cannot be written."""


def check_writable(folder: str | os.PathLike) -> None:
    """Refuse at once a folder that cannot be written (read-only, no permission, not a
    folder), before hours of work whose results could not be saved.

    The folder need not exist: the nearest existing folder above it must let a file be
    made (and removed) in it.

    Raises
    ------
    OutputNotWritableError
        Naming the folder and the system's reason.
    """
    target = Path(folder).absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputNotWritableError(f"cannot write to {target}: {existing} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".napari-lowdose-write-test-", dir=existing)
        os.close(handle)
        os.remove(probe)
    except OSError as err:
        where = "" if existing == target else f" (made in {existing})"
        raise OutputNotWritableError(
            f"cannot write to {target}{where}: {err.strerror or err}") from None


def check_output_folder(out_dir: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse a destination that is a file, a folder with files when not overwriting, or a
    folder that cannot be written (:func:`check_writable`).

    Call it before long work, so that a refusal comes at once; :func:`write_output_folder`
    checks again before it writes.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} already exists and is not empty; "
                                "choose another folder or pass --overwrite")
    check_writable(out)


def write_output_folder(
    out_dir: str | os.PathLike,
    files: Mapping[str, Callable[[Path], object]],
    *,
    overwrite: bool = False,
    stale: Iterable[str] = (),
) -> list[Path]:
    """Write ``files`` into ``out_dir`` together.

    Parameters
    ----------
    out_dir : str or Path
        Destination folder (created if missing).
    files : mapping of str to callable
        File name → function that writes that file to the path it is given.
    overwrite : bool
        Replace files in a folder that is not empty (other files are kept).
    stale : iterable of str, optional
        Names of files an earlier run of the same kind wrote and this one does not (e.g. a
        table made from the previous masks): removed when replacing, so that nothing left
        in the folder describes other results.

    Returns
    -------
    list of Path
        The written files, in the order given.

    Raises
    ------
    OutputExistsError
        ``out_dir`` is not empty and ``overwrite`` is False (nothing is written).
    """
    out = Path(out_dir)
    check_output_folder(out, overwrite=overwrite)
    for name in files:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"output names must be plain file names, got {name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for name, write in files.items():
            write(staging / name)
            if not (staging / name).is_file():
                raise RuntimeError(f"the writer of {name} wrote no file")
        out.mkdir(exist_ok=True)
        written = []
        for name in files:
            os.replace(staging / name, out / name)
            written.append(out / name)
        for name in stale:
            if name not in files and Path(name).name == name:
                (out / name).unlink(missing_ok=True)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def frames_array(shape: tuple[int, ...], dtype: "np.typing.DTypeLike", fill: float | int, *,
                 in_memory_limit_bytes: int | None = None) -> Any:
    """An array of per-frame results that only takes memory for the frames written.

    Small (at most ``in_memory_limit_bytes``, default :data:`IN_MEMORY_LIMIT_BYTES`): a
    plain array filled with ``fill``. Larger (the results of a few frames of a long
    series): a zarr array in memory, one compressed chunk per frame, where a frame never
    written costs nothing and reads as ``fill``; napari shows it as any array, and
    ``a[i] = frame``, ``a[i]`` and ``a[list_of_frames]`` work as on numpy.

    Parameters
    ----------
    shape : tuple of int
        ``(frames, y, x)`` (or ``(y, x)``).
    dtype : dtype
        The results' type.
    fill : scalar
        The value of a frame not written (NaN for probabilities, 0 for masks).
    in_memory_limit_bytes : int, optional
        Largest plain array.

    Returns
    -------
    numpy.ndarray or zarr.Array
    """
    dtype = np.dtype(dtype)
    limit = IN_MEMORY_LIMIT_BYTES if in_memory_limit_bytes is None else in_memory_limit_bytes
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(shape) < 3 or n_bytes <= limit:
        return np.full(shape, fill, dtype=dtype)
    import zarr

    return zarr.create_array(store=zarr.storage.MemoryStore(), shape=tuple(shape),
                             chunks=(1,) * (len(shape) - 2) + tuple(shape[-2:]), dtype=dtype,
                             fill_value=fill)


@contextlib.contextmanager
def result_array(
    shape: tuple[int, ...],
    dtype: "np.typing.DTypeLike",
    near: str | os.PathLike,
    *,
    fill: float | int = 0,
    in_memory_limit_bytes: int | None = None,
) -> Iterator[np.ndarray]:
    """An array for the results of a long run: in memory when small, on disk when large.

    A 20 GB series opens lazily and is processed frame by frame; its results
    (probabilities, masks, denoised frames) must not need 20 GB of memory
    either. Above ``in_memory_limit_bytes`` the array is a memory map in a
    scratch folder beside ``near`` (the output folder's parent, so on the same
    disk as the output), removed when the block ends.

    Parameters
    ----------
    shape : tuple of int
        Shape of the results.
    dtype : dtype
        Their type.
    near : str or Path
        The output folder; the scratch folder goes beside it.
    fill : scalar
        Initial value of every element.
    in_memory_limit_bytes : int, optional
        Largest array kept in memory (default :data:`IN_MEMORY_LIMIT_BYTES`).

    Yields
    ------
    ndarray or numpy.memmap
    """
    dtype = np.dtype(dtype)
    if in_memory_limit_bytes is None:
        in_memory_limit_bytes = IN_MEMORY_LIMIT_BYTES
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if n_bytes <= in_memory_limit_bytes:
        yield np.full(shape, fill, dtype=dtype)
        return
    parent = Path(near).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".lowdose-scratch-", dir=parent))
    try:
        array = np.lib.format.open_memmap(scratch / "results.npy", mode="w+", dtype=dtype,
                                          shape=tuple(shape))
        if fill != 0:
            array[...] = fill
        yield array
        del array
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
