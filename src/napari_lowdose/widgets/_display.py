"""Showing frames that arrive one by one: display limits of a frame and a growing stack."""

import numpy as np

__all__ = ["GrowingStack", "display_limits"]


def display_limits(frame: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """(contrast limits, contrast-limit range) for a frame: 0.5–99.5 % and min–max."""
    finite = np.asarray(frame, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (0.0, 1.0), (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, (0.5, 99.5)))
    if not hi > lo:
        hi = lo + 1.0
    full = (min(float(finite.min()), lo), max(float(finite.max()), hi))
    return (lo, hi), full


class GrowingStack:
    """A (n, y, x) float32 stack that grows by appending frames (capacity doubles).

    Parameters
    ----------
    frame_shape : tuple of int
        (y, x) of every frame.
    initial : ndarray, shape (n, y, x), optional
        Frames to start with (copied).
    capacity : int, optional
        Initial number of frames the buffer holds.
    """

    def __init__(self, frame_shape, initial=None, capacity: int = 16):
        self.frame_shape = tuple(int(v) for v in frame_shape)
        n = 0 if initial is None else int(initial.shape[0])
        self._buffer = np.empty((max(capacity, 2 * n, 1), *self.frame_shape), np.float32)
        if n:
            self._buffer[:n] = initial
        self.n = n

    @property
    def view(self) -> np.ndarray:
        """The filled part (a view of the buffer, no copy)."""
        return self._buffer[: self.n]

    def append(self, frame: np.ndarray) -> np.ndarray:
        """Append one frame and return the new :attr:`view`."""
        if self.n == self._buffer.shape[0]:
            bigger = np.empty((2 * self.n, *self.frame_shape), np.float32)
            bigger[: self.n] = self._buffer
            self._buffer = bigger
        self._buffer[self.n] = frame
        self.n += 1
        return self.view
