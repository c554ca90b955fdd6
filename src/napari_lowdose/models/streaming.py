"""Streaming frames of a series through a network, one chunk at a time.

Frames are read one at a time (or a few at a time) from a numpy, dask or zarr
array, handed to a processing function (segmentation:
:func:`napari_lowdose.models.inference.predict_probabilities`; denoising:
:func:`napari_lowdose.models.denoising.denoise_frames`), and each frame's result is
yielded as soon as it is ready, so a caller can show or write results while the
rest of the series is still being processed, and stop at any time.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..device import autocast_dtype
from ..io.series import check_finite_frames

__all__ = [
    "PRECISIONS",
    "as_stack",
    "check_frame_size",
    "forced_precision",
    "inference_autocast",
    "read_frames",
    "resolve_indices",
    "stream_frames",
]


def as_stack(frames: Any) -> tuple[Any, bool]:
    """Return ``(array, single)``: an indexable (n, y, x) or (y, x) array."""
    if not (hasattr(frames, "shape") and hasattr(frames, "__getitem__")):
        frames = np.asarray(frames)
    ndim = len(frames.shape)
    if ndim not in (2, 3):
        raise ValueError(
            f"expected frames of shape (n, y, x) or one (y, x) frame, got {tuple(frames.shape)}"
        )
    return frames, ndim == 2


def resolve_indices(frame_indices: Sequence[int] | None, n: int) -> list[int]:
    """Frame indices to process, in order (negative ones counted from the end)."""
    if frame_indices is None:
        return list(range(n))
    out = []
    for i in frame_indices:
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"frame index {i} is out of range for {n} frame(s)")
        out.append(i % n)
    return out


def check_frame_size(model: nn.Module, shape: tuple[int, int], tile_px: int | None) -> None:
    """Refuse empty frames, frames below ``model.min_size`` and a ``tile_px`` below 1."""
    if min(shape) < 1:
        raise ValueError(f"frames of shape {shape} are empty")
    min_size = getattr(model, "min_size", None)
    if min_size is not None and min(shape) < min_size:
        raise ValueError(
            f"frames of {shape[0]}×{shape[1]} pixels are smaller than this network's "
            f"minimum of {min_size}×{min_size} pixels (its reflection padding needs more)"
        )
    if tile_px is not None and tile_px < 1:
        raise ValueError(f"tile_px must be >= 1, got {tile_px}")


def read_frames(frames: Any, single: bool, indices: list[int]) -> np.ndarray:
    """Read frames ``indices`` (one slice when they are consecutive) as float32, refusing
    frames with NaN or infinite pixels (:func:`~napari_lowdose.io.series.check_finite_frames`).
    """
    if single:
        batch = np.asarray(frames, dtype=np.float32)[None]
    elif indices == list(range(indices[0], indices[-1] + 1)):
        batch = np.asarray(frames[indices[0] : indices[-1] + 1], dtype=np.float32)
    else:
        batch = np.stack([np.asarray(frames[i], dtype=np.float32) for i in indices])
    check_finite_frames(batch, indices)
    return batch


#: Precision forced on :func:`inference_autocast` by :func:`forced_precision` (None: the
#: device's own, :func:`..device.autocast_dtype`).
_FORCED_PRECISION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "napari_lowdose_forced_precision", default=None)
#: The precisions :func:`forced_precision` accepts and their autocast dtypes.
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def forced_precision(precision: str | None) -> Iterator[None]:
    """Run inference (segmentation, denoising) at ``precision`` inside this block.

    For measurements (the device kit's benchmark compares ``"fp32"``, ``"bf16"`` and
    ``"fp16"`` through the same functions the command line uses); ``None`` keeps the
    device's own choice.
    """
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    token = _FORCED_PRECISION.set(precision)
    try:
        yield
    finally:
        _FORCED_PRECISION.reset(token)


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for inference on ``device``, or none (:func:`..device.autocast_dtype`,
    unless :func:`forced_precision` says otherwise)."""

    forced = _FORCED_PRECISION.get()
    dtype = autocast_dtype(device) if forced is None else PRECISIONS[forced]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def stream_frames(
    model: nn.Module,
    frames: Any,
    single: bool,
    indices: list[int],
    frames_per_read: int,
    process: Callable[[list[int], np.ndarray], np.ndarray | None],
    device: torch.device,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Read frames a chunk at a time, run ``process`` on them, yield ``(index, result)``.

    The shared loop of segmentation
    (:func:`napari_lowdose.models.inference.predict_probabilities`) and denoising
    (:func:`napari_lowdose.models.denoising.denoise_frames`): the model is put on
    ``device`` in eval mode (its mode is restored afterwards), ``should_stop``
    is checked between frames, ``progress(done, total)`` is called after each.
    ``process(chunk, batch)`` returns one result per frame of ``batch``, or
    None when it was stopped part-way (tiles).
    """
    was_training = model.training
    model.to(device).eval()
    stop = should_stop or (lambda: False)
    done = 0
    try:
        for k in range(0, len(indices), frames_per_read):
            if stop():
                return
            chunk = indices[k : k + frames_per_read]
            results = process(chunk, read_frames(frames, single, chunk))
            if results is None:
                return
            for index, result in zip(chunk, results, strict=True):
                if stop():
                    return
                yield index, result
                done += 1
                if progress is not None:
                    progress(done, len(indices))
    finally:
        model.train(was_training)
