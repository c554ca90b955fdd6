"""Counters of an in-situ run: sustained frame rate, backlog and failures.

:class:`RateMeter` measures the sustained processing rate,
:class:`WatchStats` counts files, frames and the backlog of a
:class:`~napari_lowdose.insitu.session.WatchSession`, and :class:`Failure`
records a file or frame that could not be handled.
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

__all__ = ["Failure", "RateMeter", "WatchStats"]


class RateMeter:
    """Sustained frame rate over a sliding time window.

    The rate is ``(k - 1) / (t_k - t_1)`` for the ``k`` frames completed
    within the last ``window_s`` seconds: the rate while frames flow, not
    diluted by the wait for the first frame. It falls to 0 once fewer than
    two frames are in the window.

    Parameters
    ----------
    window_s : float
        Length of the window in seconds.
    clock : callable
        Monotonic clock in seconds.
    """

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, not {window_s}")
        self.window_s = float(window_s)
        self.clock = clock
        self.count = 0
        self._times: deque[float] = deque()

    def tick(self, n: int = 1) -> None:
        """Record ``n`` frames completed now.

        Parameters
        ----------
        n : int
            Number of frames.
        """
        now = self.clock()
        self.count += n
        self._times.extend([now] * n)
        self._trim(now)

    def rate_per_s(self) -> float:
        """Frames per second over the window (0.0 with fewer than two frames).

        Returns
        -------
        float
        """
        self._trim(self.clock())
        if len(self._times) < 2:
            return 0.0
        span_s = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span_s if span_s > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()


class Failure(NamedTuple):
    """A file or frame that could not be handled.

    Attributes
    ----------
    path : Path
        The file.
    frame_index : int or None
        Index of the frame in its file; None when the whole file failed.
    stage : str
        ``"read"`` (the file is unreadable), ``"process"`` (the processing
        function raised) or ``"output"`` (the result callback raised).
    reason : str
        One-line reason.
    """

    path: Path
    frame_index: int | None
    stage: str
    reason: str


@dataclass
class WatchStats:
    """Counters of a watch session (a snapshot; see :meth:`summary`).

    Attributes
    ----------
    files_ready : int
        Files the watcher delivered as ready.
    files_read : int
        Files read successfully.
    frames_read : int
        Frames in the files read.
    frames_processed : int
        Frames whose processing function returned.
    failures : list of Failure
        Unreadable files and frames whose processing or output failed.
    backlog_files : int
        Ready files waiting to be read.
    backlog_frames : int
        Frames of the file being worked on that are still to be processed.
    pending_files : int
        Files seen but still being written.
    max_backlog : int
        Largest backlog seen so far.
    rate_per_s : float
        Sustained processing rate in frames/s (:class:`RateMeter`).
    mean_process_s : float or None
        Mean time per frame spent in the processing function, in s.
    elapsed_s : float
        Time since the session started, in s.
    """

    files_ready: int = 0
    files_read: int = 0
    frames_read: int = 0
    frames_processed: int = 0
    failures: list[Failure] = field(default_factory=list)
    backlog_files: int = 0
    backlog_frames: int = 0
    pending_files: int = 0
    max_backlog: int = 0
    rate_per_s: float = 0.0
    mean_process_s: float | None = None
    elapsed_s: float = 0.0

    @property
    def backlog(self) -> int:
        """Files waiting plus frames of the current file still to process."""
        return self.backlog_files + self.backlog_frames

    @property
    def n_unreadable(self) -> int:
        """Number of files that could not be read."""
        return sum(f.stage == "read" for f in self.failures)

    @property
    def n_failed_frames(self) -> int:
        """Number of frames whose processing or output failed."""
        return sum(f.stage != "read" for f in self.failures)

    def summary(self) -> str:
        """One line for a status bar or the command line.

        Returns
        -------
        str
            For example ``"processed 120 frames, 7.9 frames/s sustained,
            backlog 0, 1 unreadable"``.
        """
        frames = "frame" if self.frames_processed == 1 else "frames"
        parts = [
            f"processed {self.frames_processed} {frames}",
            f"{self.rate_per_s:.1f} frames/s sustained",
        ]
        backlog = f"backlog {self.backlog}"
        if self.backlog_files and self.backlog_frames:
            backlog += f" ({self.backlog_files} files, {self.backlog_frames} frames)"
        parts.append(backlog)
        if self.n_unreadable:
            parts.append(f"{self.n_unreadable} unreadable")
        if self.n_failed_frames:
            parts.append(f"{self.n_failed_frames} failed")
        if self.pending_files:
            being = "file" if self.pending_files == 1 else "files"
            parts.append(f"{self.pending_files} {being} being written")
        return ", ".join(parts)
