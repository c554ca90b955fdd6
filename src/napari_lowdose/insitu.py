"""In-situ denoising: frames from a watched folder → denoised frames and a log.

Katsuno et al. (2021) denoise at video rate so that beam-sensitive specimens can
be watched at low dose while they are acquired. :mod:`napari_lowdose.io.watch`
hands over every frame an acquisition program writes, exactly once and in
order; this module turns each frame into a denoised one
(:class:`FrameDenoiser`) and keeps the output folder (:class:`InSituOutput`):
one ``<name>_denoised.tif`` per input file, with the input's pixel size and
dose, written atomically once the file's last frame is done, and a
``watch_log.csv`` with one row per frame (or failed file): time, dose, how long
it took, the backlog and the sustained rate. The ``napari-lowdose watch``
command and the Denoise widget's live-folder mode both use it. Pure: no Qt.
"""

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .io.watch import Failure, WatchStats

__all__ = ["LOG_COLUMNS", "LOG_FILE", "FrameDenoiser", "InSituOutput", "output_name"]

#: Name of the per-frame log in the output folder.
LOG_FILE = "watch_log.csv"
#: Columns of :data:`LOG_FILE`.
LOG_COLUMNS = ("time", "file", "frame_in_file", "status", "dose_e_per_A2",
               "expected_e_per_px", "process_ms", "backlog_frames", "rate_frames_per_s",
               "output")


def output_name(path: str | Path) -> str:
    """File name of the denoised copy of ``path`` (``frame_7.mrc`` → ``frame_7_denoised.tif``)."""
    return f"{Path(path).stem}_denoised.tif"


class FrameDenoiser:
    """The ``process_frame`` of a watch session: one frame in, one denoised frame out.

    The frame is normalised by its expected electrons per vacuum pixel,
    ``dose_e_per_A2 · sampling_A²`` (:mod:`napari_lowdose.models.normalisation`):
    the dose and pixel size come from the file (napari-lowdose metadata, MRC
    headers …) unless given here; without a dose the frame mean is used.

    Parameters
    ----------
    model : torch.nn.Module
        A loaded denoiser (:func:`napari_lowdose.models.registry.load_denoiser`).
    device : str or torch.device
        Where to run it.
    dose_e_per_A2 : float, optional
        Dose of every frame, overriding the files' (e.g. a fixed exposure).
    pixel_size_A : float, optional
        Pixel size, overriding the files'.
    counts_per_electron : float
        Detector gain (1 for frames in electrons).
    """

    def __init__(self, model: Any, device: Any = "cpu", *, dose_e_per_A2: float | None = None,
                 pixel_size_A: float | None = None, counts_per_electron: float = 1.0) -> None:
        from .device import select_device

        self.model = model
        self.device = select_device(device)
        self.model.to(self.device)
        self.dose_e_per_A2 = dose_e_per_A2
        self.pixel_size_A = pixel_size_A
        self.counts_per_electron = float(counts_per_electron)

    def expected_e_per_px(self, metadata: dict[str, Any]) -> float | None:
        """Expected electrons per vacuum pixel of a frame, or None (use its mean)."""
        dose = self.dose_e_per_A2 if self.dose_e_per_A2 is not None else metadata.get(
            "dose_e_per_A2")
        pixel = self.pixel_size_A
        if pixel is None and metadata.get("pixel_size_A") is not None:
            pixel = float(np.mean(metadata["pixel_size_A"]))
        if dose is None or pixel is None or not dose > 0:
            return None
        return float(dose) * pixel**2

    def __call__(self, frame: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
        """Denoise one frame (float32, the frame's units)."""
        from .models.denoising import denoise_frame

        started_s = time.perf_counter()
        expected = self.expected_e_per_px(metadata)
        metadata["expected_e_per_px"] = expected
        denoised = denoise_frame(self.model, np.asarray(frame, dtype=np.float32),
                                 expected_e_per_px=expected,
                                 counts_per_electron=self.counts_per_electron,
                                 device=self.device)
        metadata["process_ms"] = round(1e3 * (time.perf_counter() - started_s), 2)
        return denoised


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
        from .io.writers import write_series_tiff

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
