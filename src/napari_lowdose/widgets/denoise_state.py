"""What the Denoise dock shares with its workers, and how it is all stopped when the dock goes.

The state lives apart from the dock object so that the ``destroyed`` handler never holds
the dock itself (:func:`shutdown_handler`).
"""

import threading
from types import SimpleNamespace

__all__ = ["new_state", "shutdown_handler", "stop_all"]


def new_state() -> SimpleNamespace:
    """Stop events and workers of a Denoise dock (none running, not closed)."""
    return SimpleNamespace(stop_event=threading.Event(), watch_stop=threading.Event(),
                           worker=None, watch_worker=None, quality_worker=None, closed=False)


#: The destroyed-signal handlers of live docks. PyQt keeps a slot alive only through the
#: Qt object's Python wrapper, so a dock that is garbage-collected (one made in a script and
#: never docked) would take its handler and state down with it, and the handler would then
#: run on cleared objects and abort the interpreter; held here, it outlives the dock.
_SHUTDOWN_HANDLERS: set = set()


def shutdown_handler(state: SimpleNamespace):
    """A slot for ``destroyed`` that stops the dock's workers, then lets itself go."""

    def handler(*_args) -> None:
        _SHUTDOWN_HANDLERS.discard(handler)
        stop_all(state)

    _SHUTDOWN_HANDLERS.add(handler)
    return handler


def stop_all(state: SimpleNamespace) -> None:
    """Stop every worker of a widget (called when its Qt widget is destroyed)."""
    state.closed = True
    state.stop_event.set()
    state.watch_stop.set()
    for name in ("worker", "watch_worker", "quality_worker"):
        worker = getattr(state, name, None)
        if worker is not None:
            try:
                worker.quit()
            except RuntimeError:  # its Qt side is already gone
                pass
