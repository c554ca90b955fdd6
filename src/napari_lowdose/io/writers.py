"""Writers that never leave a half-written file: temp file, then rename."""

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LOWDOSE_TIFF_KEY",
    "atomic_path",
    "atomic_write_text",
    "write_series_tiff",
]

#: Prefix of the ImageJ ``Info`` line holding napari-lowdose's JSON metadata.
LOWDOSE_TIFF_KEY = "napari-lowdose="


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the permissions of a normal file.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_series_tiff(
    path: str | Path,
    data: np.ndarray,
    pixel_size_A: float | None,
    *,
    dose_e_per_A2: Sequence[float] | None = None,
    extra_metadata: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a calibrated ImageJ TIFF stack that ImageJ/Fiji and napari-lowdose open.

    The pixel size is stored as ImageJ resolution in nm (ImageJ's ``unit``),
    the per-frame dose and ``extra_metadata`` as JSON on an ImageJ ``Info``
    line that starts with ``napari-lowdose=``.

    Parameters
    ----------
    path : str or Path
        Output file; written to a temporary file first, then renamed.
    data : ndarray, shape (frames, y, x) or (y, x)
        Image data; float64 is stored as float32, int64 as int32 (ImageJ types).
    pixel_size_A : float or None
        Isotropic pixel size in Å.
    dose_e_per_A2 : sequence of float, optional
        One dose per frame.
    extra_metadata : dict, optional
        JSON-serialisable provenance stored with the dose.
    progress : callable, optional
        Called as ``progress(done, total)`` after each frame.

    Returns
    -------
    Path
        The written file.
    """
    import tifffile

    arr = np.asarray(data)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype in (np.int64, np.uint64):
        arr = arr.astype(np.int32)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a (frames, y, x) or (y, x) array, got shape {arr.shape}")
    record: dict[str, Any] = dict(extra_metadata or {})
    if dose_e_per_A2 is not None:
        record["dose_e_per_A2"] = [float(v) for v in dose_e_per_A2]
    if pixel_size_A is not None:
        record["pixel_size_A"] = float(pixel_size_A)
    metadata: dict[str, Any] = {"axes": "TYX" if arr.ndim == 3 else "YX"}
    metadata["Info"] = LOWDOSE_TIFF_KEY + json.dumps(record)
    kwargs: dict[str, Any] = {}
    if pixel_size_A is not None:
        px_per_nm = 10.0 / float(pixel_size_A)
        kwargs["resolution"] = (px_per_nm, px_per_nm)
        metadata["unit"] = "nm"
    frames = arr if arr.ndim == 3 else arr[None]
    path = Path(path)
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, imagej=True) as tif:
            # One contiguous ImageJ hyperstack, written frame by frame.
            tif.write(
                _iter_frames(frames, progress),
                shape=arr.shape,
                dtype=arr.dtype,
                metadata=metadata,
                contiguous=True,
                **kwargs,
            )
    return path


def _iter_frames(frames: np.ndarray, progress: Callable[[int, int], None] | None):
    total = len(frames)
    for i, frame in enumerate(frames):
        yield np.ascontiguousarray(frame)
        if progress is not None:
            progress(i + 1, total)
