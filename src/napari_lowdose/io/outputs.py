"""Output folders written all at once: every file or none (temp folder, then rename).

Exports of a run (masks, probabilities, tables, plots, run records) are written
into a staging folder beside the destination; only when every file is complete
are they moved into place. An error half-way leaves the destination as it was.
A destination that already holds files is refused unless ``overwrite`` is set
(the CLI's ``--overwrite``; the GUI asks first).
"""

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from .errors import LowdoseError

__all__ = ["OutputExistsError", "check_output_folder", "write_output_folder"]


class OutputExistsError(LowdoseError):
    """The output folder already holds files and overwriting was not asked for."""


def check_output_folder(out_dir: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse a destination that is a file, or a folder with files when not overwriting.

    Call it before long work, so that a refusal comes at once; :func:`write_output_folder`
    checks again before it writes.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} already exists and is not empty; "
                                "choose another folder or pass --overwrite")


def write_output_folder(
    out_dir: str | os.PathLike,
    files: Mapping[str, Callable[[Path], object]],
    *,
    overwrite: bool = False,
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
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
