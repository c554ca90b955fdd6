"""In-situ mode: process frames while an acquisition program writes them into a folder.

This module is pure (no Qt, no napari): the ``napari-lowdose watch DIR``
command and the widget's in-situ toggle both drive it.

Rules
-----
Which files are taken
    Regular files directly inside the folder (not in sub-folders) whose name
    matches one of ``patterns`` (case-insensitive, ``*.tif``, ``*.npy`` …).
    Hidden names (``.name``), editor and lock names (``~name``, ``name~``) and
    temporary names (any suffix ``.tmp``, ``.temp``, ``.part``, ``.partial``,
    ``.crdownload``, ``.download``, ``.swp``, ``.lock``, ``.lck``) are ignored,
    so a writer that writes ``frame_7.tif.part`` and renames it to
    ``frame_7.tif`` is handled naturally: only the final name is seen.
When a file is ready
    A file is *ready* once its size, modification time and inode have not
    changed for ``settle_s`` seconds of watching **and** it parses
    completely: ``.npy`` files through :func:`numpy.load` (header and data
    length), every other format through the project's own readers
    (:func:`napari_lowdose.io.readers.read_series`, which refuses truncated
    TIFF and MRC files). A writer may therefore write a file in several chunks
    as long as each pause is shorter than ``settle_s``; make ``settle_s``
    longer than the longest pause of the acquisition program. Empty files are
    never ready (a writer may create the file long before it writes to it).
Unreadable files
    A parse failure of a file that keeps changing means "wait". A file whose
    parse fails, and which then stays unchanged for another ``settle_s``, is
    delivered anyway and recorded in :attr:`FolderWatcher.unreadable` with the
    reason: it is reported as failed, never silently skipped, and never stops
    the watch.
Exactly once, in order
    Every file name is delivered at most once per watcher (a file deleted and
    written again under the same name is not delivered again). Files ready in
    the same poll are delivered in ``order``: ``"name"`` is a natural sort
    (``frame_2`` before ``frame_10``), ``"mtime"`` the modification time. A
    ready file is held back while a file sorting *before* it is still being
    written, for at most ``max_hold_s`` seconds, so a writer that finishes
    files out of order still yields them in order. A file that sorts before
    one already delivered (it appeared late) is delivered when ready; it is
    not dropped.
Files already there
    ``existing="process"`` treats files present when the watcher is created
    like new ones; ``existing="skip"`` ignores them (listed in
    :attr:`FolderWatcher.skipped`), even one that is still being written.
No frame is dropped
    :class:`WatchSession` reads each ready file with :func:`read_frames` (a
    file of several frames yields all of them) and hands every frame to the
    processing function. When processing is slower than acquisition the
    files wait in a queue and the backlog (files waiting plus frames of the
    current file still to process) is counted in :class:`WatchStats`;
    a frame whose file cannot be read, or whose processing raises, is
    recorded in :attr:`WatchStats.failures` with the reason.
"""

import fnmatch
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from ..errors import SeriesReadError
from .readers import SUPPORTED_SUFFIXES, read_series

__all__ = [
    "DEFAULT_PATTERNS",
    "TEMPORARY_SUFFIXES",
    "Failure",
    "FolderWatcher",
    "RateMeter",
    "WatchEvent",
    "WatchSession",
    "WatchStats",
    "check_complete",
    "frame_metadata",
    "is_temporary_name",
    "natural_key",
    "read_frame",
    "read_frames",
]

#: File name patterns watched by default.
DEFAULT_PATTERNS: tuple[str, ...] = (
    "*.tif", "*.tiff", "*.npy", "*.mrc", "*.dm4", "*.dm3", "*.ser",
)

#: Suffixes marking a file that is still being written under a temporary name.
TEMPORARY_SUFFIXES: frozenset[str] = frozenset(
    {".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", ".lock",
     ".lck"}
)

_DIGITS = re.compile(r"(\d+)")


# ---------------------------------------------------------------------------
# names and readiness


def natural_key(name: str) -> tuple[tuple[Any, ...], str]:
    """Sort key that orders numbers by value: ``frame_2`` before ``frame_10``.

    Parameters
    ----------
    name : str
        A file name.

    Returns
    -------
    tuple
        Text parts (lower case) and integers alternately, then the name itself
        to break ties (``frame_02`` and ``frame_2``).
    """
    parts = _DIGITS.split(name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def is_temporary_name(name: str) -> bool:
    """True for hidden, backup/lock and temporary file names.

    Parameters
    ----------
    name : str
        A file name (no folder).

    Returns
    -------
    bool
        True when the name starts with ``.`` or ``~``, ends with ``~``, or has
        any suffix in :data:`TEMPORARY_SUFFIXES` (``a.tmp``, ``a.tif.part``,
        ``a.part.tif``).
    """
    if not name or name.startswith((".", "~")) or name.endswith("~"):
        return True
    return any(s.lower() in TEMPORARY_SUFFIXES for s in Path(name).suffixes)


def _short(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:160]


@contextmanager
def _quiet_logger(name: str):
    """Keep a library's log records of a half-written file off the console.

    The readers still see them (their handler sits on the logger itself);
    only propagation to the root logger is paused.
    """
    logger = logging.getLogger(name)
    before = logger.propagate
    logger.propagate = False
    try:
        yield
    finally:
        logger.propagate = before


def check_complete(path: str | Path) -> str | None:
    """Try to parse a file completely; return why it cannot be, or None.

    ``.npy`` files are opened with :func:`numpy.load` (memory-mapped: header
    and data length are checked, nothing is read); other formats with the
    project's readers (:func:`~napari_lowdose.io.readers.read_series`), which
    read headers and refuse truncated data. What tifffile logs about a
    half-written file is not printed (the reason is returned instead).

    Parameters
    ----------
    path : str or Path
        The file to check.

    Returns
    -------
    str or None
        None when the file parses, else a one-line reason.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy" and ".npy" not in SUPPORTED_SUFFIXES:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            del array
        else:
            with _quiet_logger("tifffile"):
                series = read_series(path)
            del series
    except SeriesReadError as err:
        return _short(err)
    except Exception as err:  # numpy / OS errors of a half-written or locked file
        return f"{path.name}: {_short(err)}"
    return None


# ---------------------------------------------------------------------------
# the folder watcher


@dataclass
class _Candidate:
    """A watched file that has not been delivered yet."""

    path: Path
    signature: tuple[int, int, int]  # size in bytes, mtime in ns, inode
    stable_since: float  # watcher clock, s: first poll that saw this signature
    first_seen: float  # watcher clock, s
    check_failed_at: float | None = None
    checked_ok: bool = False  # parsed completely with this signature
    reason: str = ""

    @property
    def size_bytes(self) -> int:
        return self.signature[0]

    @property
    def mtime_ns(self) -> int:
        return self.signature[1]


class FolderWatcher:
    """Find files in a folder as they become complete (see the module rules).

    Parameters
    ----------
    folder : str or Path
        The folder the acquisition program writes into; it must exist.
    patterns : iterable of str
        Shell patterns of the file names to take (case-insensitive).
    settle_s : float
        Seconds a file's size and modification time must stay unchanged
        before it is parsed and delivered.
    poll_s : float
        Seconds between scans of the folder in :meth:`iter_ready` and
        :class:`WatchSession`.
    existing : {"process", "skip"}
        What to do with files already in the folder when the watcher starts.
    order : {"name", "mtime"}
        Delivery order: natural name order or modification time.
    max_hold_s : float
        Longest time a ready file waits for a file sorting before it that is
        still being written.
    clock : callable
        Monotonic clock in seconds (tests pass a fake one).

    Attributes
    ----------
    unreadable : dict of Path to str
        Files delivered although they do not parse, with the reason.
    skipped : list of Path
        Files ignored because they were there at start (``existing="skip"``).
    last_error : str or None
        Why the last scan of the folder failed, if it did.
    """

    def __init__(
        self,
        folder: str | Path,
        patterns: Iterable[str] = DEFAULT_PATTERNS,
        settle_s: float = 0.5,
        poll_s: float = 0.2,
        existing: Literal["process", "skip"] = "process",
        order: Literal["name", "mtime"] = "name",
        *,
        max_hold_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: no such folder to watch")
        self.patterns = tuple(p.lower() for p in patterns)
        if not self.patterns:
            raise ValueError("patterns is empty: no file would ever be taken")
        if settle_s < 0 or poll_s <= 0 or max_hold_s < 0:
            raise ValueError(
                f"settle_s ({settle_s}) and max_hold_s ({max_hold_s}) must be >= 0 "
                f"and poll_s ({poll_s}) > 0"
            )
        if existing not in ("process", "skip"):
            raise ValueError(f"existing must be 'process' or 'skip', not {existing!r}")
        if order not in ("name", "mtime"):
            raise ValueError(f"order must be 'name' or 'mtime', not {order!r}")
        self.settle_s = float(settle_s)
        self.poll_s = float(poll_s)
        self.existing = existing
        self.order = order
        self.max_hold_s = float(max_hold_s)
        self.clock = clock
        self.unreadable: dict[Path, str] = {}
        self.skipped: list[Path] = []
        self.last_error: str | None = None
        self.n_delivered = 0
        self._done: set[str] = set()
        self._pending: dict[str, _Candidate] = {}
        if existing == "skip":
            for entry in self._scan():
                self._done.add(entry.name)
                self.skipped.append(Path(entry.path))
            self.skipped.sort(key=lambda p: natural_key(p.name))

    # -- public --------------------------------------------------------------

    @property
    def pending(self) -> list[Path]:
        """Files seen but not ready yet (still being written, or being checked)."""
        return [c.path for c in self._sorted(self._pending.values())]

    @property
    def n_pending(self) -> int:
        """Number of files seen but not ready yet."""
        return len(self._pending)

    def wants(self, name: str) -> bool:
        """True when a file of this name would be watched.

        Parameters
        ----------
        name : str
            A file name (no folder).

        Returns
        -------
        bool
        """
        if is_temporary_name(name):
            return False
        lower = name.lower()
        return any(fnmatch.fnmatchcase(lower, p) for p in self.patterns)

    def poll(self) -> list[Path]:
        """Scan the folder once and return the files that became ready.

        Returns
        -------
        list of Path
            Files not delivered before, in delivery order. A file whose
            contents do not parse is included (once it has stayed unchanged)
            and listed in :attr:`unreadable`.
        """
        now = self.clock()
        seen: set[str] = set()
        for entry in self._scan():
            name = entry.name
            if name in self._done:
                continue
            try:
                st = entry.stat()
            except OSError:  # vanished (renamed or deleted) since the scan
                continue
            seen.add(name)
            signature = (int(st.st_size), int(st.st_mtime_ns), int(st.st_ino))
            old = self._pending.get(name)
            if old is None or old.signature != signature:
                first_seen = now if old is None else old.first_seen
                self._pending[name] = _Candidate(Path(entry.path), signature, now, first_seen)
        for name in [n for n in self._pending if n not in seen]:
            del self._pending[name]  # gone before it was complete: nothing to deliver

        ready = {name for name, cand in self._pending.items() if self._is_ready(cand, now)}
        out: list[Path] = []
        for cand in self._sorted(self._pending.values()):
            name = cand.path.name
            if name not in ready:
                if now - cand.first_seen < self.max_hold_s:
                    break  # an earlier file is still being written: keep the order
                continue
            out.append(cand.path)
        for path in out:
            cand = self._pending.pop(path.name)
            if cand.check_failed_at is not None:
                self.unreadable[path] = cand.reason
            self._done.add(path.name)
        self.n_delivered += len(out)
        return out

    def iter_ready(
        self,
        should_stop: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[Path]:
        """Yield ready files as they come, polling every :attr:`poll_s`.

        Parameters
        ----------
        should_stop : callable or None
            Checked before every poll; the generator ends when it returns True.
        timeout_s : float or None
            Idle timeout: end once no file has become ready, and none is being
            written, for this many seconds. None waits until ``should_stop``.

        Yields
        ------
        Path
            Each ready file, exactly once, in order.
        """
        last_activity = self.clock()
        while should_stop is None or not should_stop():
            ready = self.poll()
            now = self.clock()
            yield from ready
            if ready or self._pending:
                last_activity = now
            elif timeout_s is not None and now - last_activity >= timeout_s:
                return
            time.sleep(self.poll_s)

    # -- internals -----------------------------------------------------------

    def _scan(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.folder) as it:
                entries = [e for e in it if self.wants(e.name) and _is_file(e)]
        except OSError as err:
            self.last_error = f"{self.folder}: cannot list folder ({_short(err)})"
            return []
        self.last_error = None
        return entries

    def _sort_key(self, cand: _Candidate) -> Any:
        if self.order == "mtime":
            return cand.mtime_ns, natural_key(cand.path.name)
        return natural_key(cand.path.name)

    def _sorted(self, cands: Iterable[_Candidate]) -> list[_Candidate]:
        return sorted(cands, key=self._sort_key)

    def _is_ready(self, cand: _Candidate, now: float) -> bool:
        if cand.size_bytes == 0 or now - cand.stable_since < self.settle_s:
            return False
        if cand.checked_ok:  # held back behind an earlier file: no need to parse again
            return True
        if cand.check_failed_at is not None:  # failed once: unreadable if still unchanged
            return now - cand.check_failed_at >= self.settle_s
        reason = check_complete(cand.path)
        try:
            st = cand.path.stat()
        except OSError:
            return False  # vanished while being checked
        signature = (int(st.st_size), int(st.st_mtime_ns), int(st.st_ino))
        if signature != cand.signature:  # the writer resumed while we parsed
            cand.signature, cand.stable_since = signature, now
            return False
        if reason is None:
            cand.checked_ok = True
            return True
        cand.check_failed_at, cand.reason = now, reason
        return self.settle_s == 0


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


# ---------------------------------------------------------------------------
# reading frames


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
        (list or None), ``dose_source``, ``warnings``, ``source_metadata``.

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
            raise SeriesReadError(f"{path.name}: not a readable .npy file ({_short(err)})") \
                from None
        meta.update(format="NumPy .npy", pixel_size_A=None, pixel_size_source="",
                    frame_dose_e_per_A2=None, dose_source="", warnings=[],
                    source_metadata={})
    else:
        series = read_series(path)
        try:
            data = np.array(series.data)
        except Exception as err:  # lazily read pages that turn out to be damaged
            raise SeriesReadError(f"{path.name}: image data cannot be read ({_short(err)})") \
                from None
        dose = series.frame_dose
        meta.update(
            format=series.format,
            pixel_size_A=series.pixel_size_A,
            pixel_size_source=series.pixel_size_source,
            frame_dose_e_per_A2=None if dose is None else [float(v) for v in dose.dose_e_per_A2],
            dose_source="" if dose is None else dose.source,
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


# ---------------------------------------------------------------------------
# statistics


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


# ---------------------------------------------------------------------------
# the session


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
            End once there has been nothing to do, and no file being written,
            for this many seconds. None runs until stopped.

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
            End once there has been nothing to do, and no file being written,
            for this many seconds. None runs until stopped.
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
                if new or self.watcher.n_pending:
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
            reason = self.watcher.unreadable.get(path) or _short(err)
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
            failure = Failure(path, index, "process", f"{type(err).__name__}: {_short(err)}")
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
                failure = Failure(path, index, "output", f"{type(err).__name__}: {_short(err)}")
                self._stats.failures.append(failure)
                return path, index, failure
        return path, index, result
