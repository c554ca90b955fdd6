"""The output folder of in-situ mode: denoised files and ``watch_log.csv``.

:class:`InSituOutput` writes one ``<name>_denoised.tif`` per input file, with
the input's pixel size and dose, atomically once the file's last frame is
done, and a ``watch_log.csv`` with one row per frame (or failed file): time,
dose, how long it took, the backlog and the sustained rate. Pure: no Qt.
"""

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io.writers import write_series_tiff
from .stats import Failure, WatchStats

__all__ = ["LOG_COLUMNS", "LOG_FILE", "InSituOutput", "output_name"]

#: Name of the per-frame log in the output folder.
LOG_FILE = "watch_log.csv"
#: Columns of :data:`LOG_FILE`.
LOG_COLUMNS = ("time", "file", "frame_in_file", "status", "dose_e_per_A2",
               "expected_e_per_px", "process_ms", "backlog_frames", "rate_frames_per_s",
               "output")


def output_name(path: str | Path) -> str:
    """File name of the denoised copy of ``path`` (``frame_7.mrc`` → ``frame_7_denoised.tif``)."""
    return f"{Path(path).stem}_denoised.tif"


class InSituOutput:
    """The output folder of an in-situ run: denoised files and ``watch_log.csv``.

    Parameters
    ----------
    folder : str or Path
        Created if missing. A ``watch_log.csv`` already there is appended to
        (a watch resumed after a stop); a denoised file of the same name is
        replaced only when ``overwrite`` is True, otherwise the new one gets a
        numbered name, so nothing is lost.
    overwrite : bool
        Replace denoised files of the same name.
    clock : callable
        Wall-clock time for the log (``time.time``).
    """

    def __init__(self, folder: str | Path, *, overwrite: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.overwrite = overwrite
        self.clock = clock
        self.log_path = self.folder / LOG_FILE
        self._path: Path | None = None
        self._frames: dict[int, np.ndarray] = {}
        self._doses: dict[int, float | None] = {}
        self._pixel_A: float | None = None
        self._written: list[Path] = []
        if not self.log_path.exists():
            with open(self.log_path, "w", newline="", encoding="utf-8") as log:
                csv.writer(log).writerow(LOG_COLUMNS)

    @property
    def written(self) -> list[Path]:
        """Denoised files written so far."""
        return list(self._written)

    def _target(self, source: Path) -> Path:
        target = self.folder / output_name(source)
        n = 1
        while target.exists() and not self.overwrite:
            target = self.folder / f"{Path(source).stem}_denoised_{n}.tif"
            n += 1
        return target

    def _log(self, row: dict[str, Any]) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.clock()))
        values = {"time": stamp, **row}
        with open(self.log_path, "a", newline="", encoding="utf-8") as log:
            csv.writer(log).writerow(["" if values.get(c) is None else values[c]
                                      for c in LOG_COLUMNS])

    def flush(self) -> Path | None:
        """Write the frames of the current input file (a frame that failed is NaN)."""

        path, frames = self._path, self._frames
        self._path, self._frames = None, {}
        if path is None or not frames:
            return None
        shape = next(iter(frames.values())).shape
        n = max(frames) + 1
        stack = np.stack([frames.get(i, np.full(shape, np.nan, np.float32)) for i in range(n)])
        doses = [self._doses.get(i) for i in range(n)]
        written = write_series_tiff(
            self._target(path), stack if n > 1 else stack[0], self._pixel_A,
            dose_e_per_A2=None if any(d is None for d in doses) else doses,
            extra_metadata={"denoised_from": str(path)})
        self._written.append(written)
        return written

    def close(self) -> None:
        """Write what is left (the last file of a run stopped in its middle)."""
        self.flush()

    def add_frame(self, path: str | Path, frame_in_file: int, denoised: np.ndarray,
                  metadata: dict[str, Any], stats: WatchStats) -> Path | None:
        """Record one denoised frame; write the file's output after its last frame.

        Returns
        -------
        Path or None
            The denoised file, when this was the last frame of its input file.
        """
        path = Path(path)
        if path != self._path:
            self.flush()
            self._path = path
        pixel = metadata.get("pixel_size_A")
        self._pixel_A = None if pixel is None else float(np.mean(pixel))
        self._frames[int(frame_in_file)] = np.asarray(denoised, dtype=np.float32)
        self._doses[int(frame_in_file)] = metadata.get("dose_e_per_A2")
        written = None
        if frame_in_file >= int(metadata.get("n_frames_in_file") or 1) - 1:
            written = self.flush()
        self._log({
            "file": path.name, "frame_in_file": frame_in_file, "status": "ok",
            "dose_e_per_A2": metadata.get("dose_e_per_A2"),
            "expected_e_per_px": metadata.get("expected_e_per_px"),
            "process_ms": metadata.get("process_ms"),
            "backlog_frames": stats.backlog,
            "rate_frames_per_s": round(stats.rate_per_s, 3),
            "output": None if written is None else written.name,
        })
        return written

    def add_failure(self, failure: Failure, stats: WatchStats) -> None:
        """Log a file or frame that could not be read, processed or written."""
        self._log({"file": Path(failure.path).name, "frame_in_file": failure.frame_index,
                   "status": f"failed ({failure.stage}): {failure.reason}",
                   "backlog_frames": stats.backlog,
                   "rate_frames_per_s": round(stats.rate_per_s, 3)})
