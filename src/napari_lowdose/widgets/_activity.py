"""napari's activity progress bar for work done in a worker thread.

A :class:`napari.utils.progress` made in a worker thread makes its Qt widgets there
("QObject::setParent: Cannot set parent, new parent is in a different thread",
"Timers cannot be started from another thread" on every run, and Qt objects owned by
the wrong thread). :class:`ActivityBar` is made in the GUI thread, before the worker
starts; the worker moves it through a Qt signal, so the bar is only ever touched in the
GUI thread, and never inside a dock's own handler (see :class:`ActivityBar`).
"""

from napari.utils import progress
from qtpy.QtCore import QObject, Qt, Signal

__all__ = ["ActivityBar"]


class ActivityBar(QObject):
    """A napari progress bar made here (GUI thread) and moved from any thread.

    Parameters
    ----------
    total : int or None
        Steps in all (None: not known yet; :meth:`update_to` may give it).
    desc : str
        What the bar measures, as napari's activity dock shows it.
    """

    _moved = Signal(int, int)
    _described = Signal(str)

    def __init__(self, total: int | None, desc: str) -> None:
        super().__init__()
        self._bar = progress(total=total, desc=desc)
        self._closed = False
        # Always queued, even from the GUI thread: napari's bar processes pending events when
        # it moves, which inside a dock's handler would run the next handlers (even the
        # end of the run) before this one returns.
        queued = Qt.ConnectionType.QueuedConnection
        self._moved.connect(self._move, queued)
        self._described.connect(self._describe, queued)

    def update_to(self, done: int, total: int | None = None) -> None:
        """``done`` steps of ``total`` (unchanged when None); safe from any thread."""
        self._moved.emit(int(done), -1 if total is None else int(total))

    def set_description(self, text: str) -> None:
        """A new description; safe from any thread."""
        self._described.emit(str(text))

    def close(self) -> None:
        """Remove the bar (GUI thread); moves still queued are dropped."""
        self._closed = True
        self._bar.close()

    @property
    def n(self) -> int:
        """Steps done so far."""
        return int(self._bar.n)

    def _move(self, done: int, total: int) -> None:
        if self._closed:
            return
        if total >= 0 and self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def _describe(self, text: str) -> None:
        if not self._closed:
            self._bar.set_description(text)
