"""One way for the docks to run a long task: in a Qt worker thread, or here (tests, scripts).

Every dock's failure ends as exactly one notification, its own one-line message.
Two things of :mod:`napari.qt.threading` get in the way of that, so the worker is made
with :func:`superqt.utils.create_worker` (which napari's wraps):

* ``create_worker`` connects a *re-raise* handler to ``errored`` whenever its
  ``_connect`` argument holds no ``errored`` handler — even when ``errored`` is
  connected later, before ``start()``. Raised in a Qt slot, the exception goes to
  ``sys.excepthook``; outside napari's own event loop (a ``napari.Viewer()`` in a
  script or in Jupyter) PyQt then aborts the process. Here ``errored`` (and every
  other handler) is passed in ``_connect`` and the worker is started only after.
* napari's worker classes are made to also relay every error to napari's
  notification manager (a second notification, with a traceback). superqt's
  classes do not; warnings raised in the thread are relayed to it as napari's do.
* superqt's generator worker takes a ``RuntimeError`` raised by the generator for
  "the worker was deleted": a warning, then neither ``errored`` nor ``finished``
  (the dock would stay busy, silently). torch's out-of-memory errors are
  RuntimeErrors, so the task's errors travel wrapped in :class:`_TaskFailed`.
"""

import inspect
import logging
import os
import traceback
from collections.abc import Callable, Generator
from functools import wraps
from typing import Any

__all__ = ["DEBUG_ENV", "eta_text", "format_duration", "run_task"]

#: Set to print the full traceback of a failed task on stderr (the dock shows one line).
DEBUG_ENV = "NAPARI_LOWDOSE_DEBUG"

logger = logging.getLogger("napari_lowdose")


def _log_failure(err: BaseException) -> None:
    """The traceback goes to the log (and to stderr with ``NAPARI_LOWDOSE_DEBUG=1``)."""
    logger.debug("background task failed", exc_info=(type(err), err, err.__traceback__))
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(type(err), err, err.__traceback__)


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 20 s"``, ``"1 h 05 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def eta_text(done: int, total: int, elapsed_s: float, *, unit: str = "frame") -> str:
    """Progress with the time left at the measured rate, e.g. ``"3/40 frames, ~1 min 10 s
    left (2.0 s/frame)"``; just ``"3/40 frames"`` until one item is done."""
    text = f"{done}/{total} {unit}s"
    if done <= 0 or elapsed_s <= 0 or total <= done:
        return text
    per_item = elapsed_s / done
    return (f"{text}, ~{format_duration(per_item * (total - done))} left "
            f"({format_duration(per_item)}/{unit})")


class _TaskFailed(Exception):  # noqa: N818 - not an error of its own: a carrier
    """Carries the task's exception out of the worker (never a RuntimeError)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _carried(task: Callable) -> Callable:
    """``task`` with its exceptions wrapped in :class:`_TaskFailed`."""
    if inspect.isgeneratorfunction(task):

        @wraps(task)
        def generator(*args):
            try:
                return (yield from task(*args))
            except Exception as err:
                raise _TaskFailed(err) from err

        return generator

    @wraps(task)
    def function(*args):
        try:
            return task(*args)
        except Exception as err:
            raise _TaskFailed(err) from err

    return function


def _relay_warning(args: tuple) -> None:
    from napari.utils.notifications import notification_manager

    notification_manager.receive_warning(*args)


def run_task(
    task: Callable | Generator,
    *args,
    use_thread: bool = True,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_error: Callable[[Exception], None],
    on_finish: Callable[[], None] | None = None,
):
    """Run ``task(*args)`` (or drain the generator ``task``) and report through callbacks.

    Parameters
    ----------
    task : callable or generator
        A function, a generator function, or a generator already made (then no ``args``).
        Each yielded item goes to ``on_yield``; the return value to ``on_return``.
    use_thread : bool, optional
        True: in a worker thread, callbacks in the GUI thread as the worker's signals
        arrive. False: here, before returning (the callbacks run in this thread).
    on_error : callable
        Called with the exception the task raised: the dock's one notification. The
        exception is never raised further (no second notification, no abort).
    on_finish : callable, optional
        Called last, whether the task returned, failed or was quit.

    Returns
    -------
    superqt.utils.WorkerBase or None
        The started worker (``quit()`` stops a generator between two items), or None
        when ``use_thread`` is False.
    """
    if inspect.isgenerator(task):
        if args:
            raise TypeError("a generator takes no arguments")
        gen = task

        def task():
            return (yield from gen)

    if not use_thread:
        _run_here(task, args, on_yield, on_return, on_error, on_finish)
        return None

    from superqt.utils import create_worker

    def errored(err: Exception) -> None:
        err = err.error if isinstance(err, _TaskFailed) else err
        _log_failure(err)
        on_error(err)

    connect = {"errored": errored, "warned": _relay_warning}
    for signal, handler in (("yielded", on_yield), ("returned", on_return),
                            ("finished", on_finish)):
        if signal == "yielded" and not inspect.isgeneratorfunction(task):
            continue  # a function worker has no "yielded"
        if handler is not None:
            connect[signal] = handler
    worker = create_worker(_carried(task), *args, _start_thread=False, _connect=connect)
    worker.start()
    return worker


def _run_here(task, args, on_yield, on_return, on_error, on_finish) -> None:
    try:
        if inspect.isgeneratorfunction(task):
            gen = task(*args)
            while True:
                try:
                    item = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                if on_yield is not None:
                    on_yield(item)
        else:
            result = task(*args)
        if on_return is not None:
            on_return(result)
    except Exception as err:  # noqa: BLE001 - one notification, never raise to the user
        _log_failure(err)
        on_error(err)
    finally:
        if on_finish is not None:
            on_finish()
