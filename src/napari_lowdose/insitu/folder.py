"""Folder rules of in-situ mode: which files are taken, when, and in what order.

:class:`FolderWatcher` finds the files an acquisition program writes into a
folder, each once it is complete, exactly once and in natural order; pure (no
Qt, no napari).

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
"""

import fnmatch
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import SeriesReadError, short_reason
from ..io.readers import SUPPORTED_SUFFIXES, read_series

__all__ = [
    "DEFAULT_PATTERNS",
    "DEFAULT_SETTLE_S",
    "TEMPORARY_SUFFIXES",
    "FolderWatcher",
    "check_complete",
    "is_temporary_name",
    "natural_key",
]

#: File name patterns watched by default: every format the readers open (a TIA ``.emi``
#: only describes its ``.ser``, which is the frame file), plus NumPy ``.npy``.
DEFAULT_PATTERNS: tuple[str, ...] = (
    *(f"*{suffix}" for suffix in SUPPORTED_SUFFIXES if suffix != ".emi"), "*.npy",
)

#: Seconds a file's size must stay the same before it is taken (longer than the longest
#: pause a camera makes while writing one file); ``watch --settle-s`` and the dock's default.
DEFAULT_SETTLE_S = 0.5

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
        return short_reason(err)
    except Exception as err:  # numpy / OS errors of a half-written or locked file
        return f"{path.name}: {short_reason(err)}"
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
        settle_s: float = DEFAULT_SETTLE_S,
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

    def n_changing(self, within_s: float) -> int:
        """Pending files that changed (appeared, grew) in the last ``within_s`` seconds.

        What an idle timeout waits for: a file still being written. An empty file left
        unchanged (a writer that gave up, a placeholder) is pending forever but is not
        activity, so it cannot keep an unattended watch running for ever.
        """
        now = self.clock()
        return sum(now - cand.stable_since < within_s for cand in self._pending.values())

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
            Idle timeout: end once no file has become ready, and none has changed, for
            this many seconds (an empty file left as it is does not hold the watch). None
            waits until ``should_stop``.

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
            if ready or (self._pending and timeout_s is not None
                          and self.n_changing(timeout_s)):
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
            self.last_error = f"{self.folder}: cannot list folder ({short_reason(err)})"
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
