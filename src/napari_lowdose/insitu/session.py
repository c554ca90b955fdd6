"""The in-situ session: poll the folder, read each ready file, process every frame.

:class:`WatchSession` joins a :class:`~napari_lowdose.insitu.folder.FolderWatcher`,
:func:`~napari_lowdose.insitu.frames.read_frames` and a processing function;
the ``napari-lowdose watch DIR`` command and the widget's in-situ toggle both
drive it. Pure: no Qt, no napari.

Rules
-----
No frame is dropped
    :class:`WatchSession` reads each ready file with
    :func:`~napari_lowdose.insitu.frames.read_frames` (a file of several
    frames yields all of them) and hands every frame to the processing
    function. When processing is slower than acquisition the
    files wait in a queue and the backlog (files waiting plus frames of the
    current file still to process) is counted in
    :class:`~napari_lowdose.insitu.stats.WatchStats`; a frame whose file
    cannot be read, or whose processing raises, is recorded in
    :attr:`~napari_lowdose.insitu.stats.WatchStats.failures` with the reason.
"""

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import short_reason
from .folder import FolderWatcher
from .frames import frame_metadata, read_frames
from .stats import Failure, RateMeter, WatchStats

__all__ = ["WatchEvent", "WatchSession"]


class WatchEvent(NamedTuple):
    """What :meth:`WatchSession.run_iter` yields after each step.

    Attributes
    ----------
    path : Path or None
        The file; None for an idle heartbeat.
    frame_index : int or None
        Index of the frame in its file; None for a whole-file failure or a
        heartbeat.
    result : Any
        What the processing function returned, or a :class:`Failure`.
    stats : WatchStats
        A snapshot of the counters after this step.
    """

    path: Path | None
    frame_index: int | None
    result: Any
    stats: WatchStats

    @property
    def failed(self) -> bool:
        """True when this step is a failure (see :class:`Failure`)."""
        return isinstance(self.result, Failure)

    @property
    def idle(self) -> bool:
        """True for a heartbeat yielded while waiting for files."""
        return self.path is None


class WatchSession:
    """Poll → read → process → callback, frame by frame, never skipping one.

    Parameters
    ----------
    watcher : FolderWatcher
        Supplies the ready files.
    process_frame : callable
        ``process_frame(frame, metadata) -> result``; ``frame`` is a 2D array,
        ``metadata`` as :func:`frame_metadata` returns.
    on_result : callable or None
        ``on_result(result, metadata)``, called after each frame processed
        (append to a layer, write to the output folder …).
    should_stop : callable or None
        Checked before every step; the session ends when it returns True.
        :meth:`stop` does the same from another thread.
    rate_window_s : float
        Window of the sustained rate, in s.
    as_float32 : bool
        Hand frames to ``process_frame`` as float32 instead of the file's dtype.
    stop_on_error : bool
        Re-raise an exception of ``process_frame`` or ``on_result`` instead of
        recording it as a failure and going on.
    """

    def __init__(
        self,
        watcher: FolderWatcher,
        process_frame: Callable[[np.ndarray, dict], Any],
        on_result: Callable[[Any, dict], Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
        *,
        rate_window_s: float = 10.0,
        as_float32: bool = False,
        stop_on_error: bool = False,
    ) -> None:
        self.watcher = watcher
        self.process_frame = process_frame
        self.on_result = on_result
        self.should_stop = should_stop
        self.as_float32 = as_float32
        self.stop_on_error = stop_on_error
        self.clock = watcher.clock
        self.rate = RateMeter(rate_window_s, clock=self.clock)
        self._stats = WatchStats()
        self._queue: deque[Path] = deque()
        self._current: tuple[Path, np.ndarray, dict] | None = None
        self._next_index = 0
        self._process_total_s = 0.0
        self._started: float | None = None
        self._stop_requested = False

    def stop(self) -> None:
        """Ask the session to end before its next step (thread-safe)."""
        self._stop_requested = True

    @property
    def stats(self) -> WatchStats:
        """A snapshot of the counters."""
        s = self._stats
        s.backlog_files = len(self._queue)
        s.backlog_frames = (
            0 if self._current is None else self._current[1].shape[0] - self._next_index
        )
        s.pending_files = self.watcher.n_pending
        s.max_backlog = max(s.max_backlog, s.backlog)
        s.rate_per_s = self.rate.rate_per_s()
        s.mean_process_s = (
            self._process_total_s / s.frames_processed if s.frames_processed else None
        )
        s.elapsed_s = 0.0 if self._started is None else self.clock() - self._started
        return replace(s, failures=list(s.failures))

    def run(self, *, idle_timeout_s: float | None = None) -> WatchStats:
        """Run until stopped (or idle for ``idle_timeout_s``); return the counters.

        Parameters
        ----------
        idle_timeout_s : float or None
            End once there has been nothing to do, and no file has changed (been
            written to), for this many seconds; an empty file left as it is does not
            hold the watch. None runs until stopped.

        Returns
        -------
        WatchStats
        """
        for _ in self.run_iter(idle_timeout_s=idle_timeout_s):
            pass
        return self.stats

    def run_iter(
        self, *, idle_timeout_s: float | None = None, idle_yield_s: float | None = None
    ) -> Iterator[WatchEvent]:
        """Run the loop as a generator, yielding after every frame.

        Meant for a napari ``thread_worker``: each yield lets the worker check
        its quit flag and hand the event to the GUI thread.

        Parameters
        ----------
        idle_timeout_s : float or None
            End once there has been nothing to do, and no file has changed (been
            written to), for this many seconds; an empty file left as it is does not
            hold the watch. None runs until stopped.
        idle_yield_s : float or None
            While waiting for files, yield a heartbeat event (``path`` None)
            this often, so a GUI can refresh the counters and stop the worker.

        Yields
        ------
        WatchEvent
            ``(path, frame_index_in_file, result, stats)`` after every frame,
            after every unreadable file (``result`` a :class:`Failure`), and
            heartbeats.
        """
        poll_s = self.watcher.poll_s
        self._started = self.clock() if self._started is None else self._started
        next_poll = last_activity = last_yield = self.clock()
        while not self._stopped():
            now = self.clock()
            if now >= next_poll:
                new = self.watcher.poll()
                next_poll = now + poll_s
                self._queue.extend(new)
                self._stats.files_ready += len(new)
                if new or (idle_timeout_s is not None
                           and self.watcher.n_changing(idle_timeout_s)):
                    last_activity = now
                self._stats.max_backlog = max(self._stats.max_backlog, self._backlog())
            if self._current is None and self._queue:
                failure = self._open_next()
                last_activity = last_yield = self.clock()
                if failure is not None:
                    yield WatchEvent(failure.path, None, failure, self.stats)
                    continue
            if self._current is not None:
                path, index, result = self._process_next()
                last_activity = last_yield = self.clock()
                yield WatchEvent(path, index, result, self.stats)
                continue
            now = self.clock()
            if idle_timeout_s is not None and now - last_activity >= idle_timeout_s:
                return
            if idle_yield_s is not None and now - last_yield >= idle_yield_s:
                last_yield = now
                yield WatchEvent(None, None, None, self.stats)
            time.sleep(max(0.0, min(poll_s, next_poll - self.clock())))

    # -- internals -----------------------------------------------------------

    def _stopped(self) -> bool:
        return self._stop_requested or (self.should_stop is not None and self.should_stop())

    def _backlog(self) -> int:
        frames = 0 if self._current is None else self._current[1].shape[0] - self._next_index
        return len(self._queue) + frames

    def _open_next(self) -> Failure | None:
        path = self._queue.popleft()
        try:
            stack, meta = read_frames(path, as_float32=self.as_float32)
        except Exception as err:  # unreadable file: report it, go on with the next one
            reason = self.watcher.unreadable.get(path) or short_reason(err)
            failure = Failure(path, None, "read", reason)
            self._stats.failures.append(failure)
            return failure
        self._stats.files_read += 1
        self._stats.frames_read += int(stack.shape[0])
        self._current = (path, stack, meta)
        self._next_index = 0
        self._stats.max_backlog = max(self._stats.max_backlog, self._backlog())
        return None

    def _process_next(self) -> tuple[Path, int, Any]:
        assert self._current is not None
        path, stack, file_meta = self._current
        index = self._next_index
        meta = frame_metadata(file_meta, index)
        self._next_index += 1
        if self._next_index >= stack.shape[0]:
            self._current = None
        t0_s = self.clock()
        try:
            result = self.process_frame(stack[index], meta)
        except Exception as err:
            if self.stop_on_error:
                raise
            failure = Failure(path, index, "process", f"{type(err).__name__}: {short_reason(err)}")
            self._stats.failures.append(failure)
            return path, index, failure
        self._process_total_s += self.clock() - t0_s
        self._stats.frames_processed += 1
        self.rate.tick()
        if self.on_result is not None:
            try:
                self.on_result(result, meta)
            except Exception as err:
                if self.stop_on_error:
                    raise
                why = short_reason(err)
                failure = Failure(path, index, "output", f"{type(err).__name__}: {why}")
                self._stats.failures.append(failure)
                return path, index, failure
        return path, index, result
