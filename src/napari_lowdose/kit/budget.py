"""Wall-clock budget of the kit and the stages that share it.

Every stage gets a :class:`Deadline` cut from the whole run's; a stage polls it, stops
early when it passes and still returns what it has. :func:`run_stage` records each
stage's outcome, so one failing stage is written down and the others go on.
"""

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["Deadline", "run_stage"]


class Deadline:
    """A point in time a piece of work must finish by.

    Parameters
    ----------
    seconds : float
        Seconds from now.
    clock : callable, optional
        Monotonic clock (tests pass a fake one).
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.start = clock()
        self.end = self.start + max(0.0, float(seconds))

    def left_s(self) -> float:
        """Seconds left (0 when passed)."""
        return max(0.0, self.end - self.clock())

    def elapsed_s(self) -> float:
        """Seconds since this deadline was set."""
        return self.clock() - self.start

    def expired(self, reserve_s: float = 0.0) -> bool:
        """Whether fewer than ``reserve_s`` seconds are left."""
        return self.left_s() <= reserve_s

    def share(self, fraction: float, *, of_s: float | None = None) -> "Deadline":
        """A child deadline: ``fraction`` of ``of_s`` (default: the time left), never later
        than this one."""
        base = self.left_s() if of_s is None else float(of_s)
        child = Deadline(min(self.left_s(), max(0.0, fraction * base)), clock=self.clock)
        return child


def run_stage(name: str, function: Callable[[], Any], log: logging.Logger,
              record: dict[str, Any]) -> Any:
    """Run one stage; record ``{status, seconds, error}`` under ``record[name]``.

    An exception is logged with its traceback and recorded (status ``"failed"``); the
    caller goes on with the next stage. Returns the stage's result (None if it failed).
    """
    start = time.monotonic()
    log.info("stage %s: start", name)
    try:
        result = function()
    except Exception as error:  # noqa: BLE001 - one failing stage must not stop the kit
        log.error("stage %s failed: %s\n%s", name, error, traceback.format_exc())
        record[name] = {"status": "failed", "seconds": round(time.monotonic() - start, 1),
                        "error": f"{type(error).__name__}: {error}"}
        return None
    record[name] = {"status": "ok", "seconds": round(time.monotonic() - start, 1)}
    log.info("stage %s: done in %.1f s", name, record[name]["seconds"])
    return result
