"""Streaming per-pixel probabilities of a segmentation network over a frame series.

Frames are read one at a time (or ``batch_size`` at a time) from a numpy, dask or
zarr array, standardised exactly as in training (:func:`.checkpoint.standardise`),
run through the network and turned into probabilities with a sigmoid (SPEC §4:
per-pixel probability, mask = probability ≥ threshold; Larsen et al. 2023). Each
frame's probability map is yielded as soon as it is ready, so a caller can show or
write results while the rest of the series is still being processed, and stop at
any time.

Large frames can be processed in overlapping tiles (:func:`plan_tiles`): each tile
reaches ``overlap_px`` beyond the part of the frame it is responsible for, and
tiles are blended with a weight that is zero within ``overlap_px // 2`` of a tile's
inner edge and rises along a raised-cosine ramp to one at ``overlap_px``. For a
network whose receptive-field radius is at most ``overlap_px // 2`` the stitched
result therefore equals whole-frame inference (up to rounding), with no seams.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import standardise
from .unet import UNet

__all__ = ["plan_tiles", "predict_frame", "predict_probabilities"]

Span = tuple[int, int]


def _ramp(length: int, overlap_px: int) -> np.ndarray:
    """Blending weight by distance ``0 … length-1`` from a tile's inner edge."""
    margin = overlap_px // 2
    distance = np.arange(length, dtype=np.float64)
    t = np.clip((distance - margin + 1) / (overlap_px - margin + 1), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _axis_spans(length: int, tile: int, step: int, align: int) -> list[Span]:
    """Start/stop of the tiles along one axis (starts are multiples of ``align``)."""
    if length <= tile:
        return [(0, length)]
    starts = list(range(0, length - tile, step))
    last = (length - tile) // align * align
    if starts and starts[-1] == last:
        starts.pop()
    spans = [(s, s + tile) for s in starts]
    spans.append((last, length))
    return spans


def _axis_weight(span: Span, length: int, overlap_px: int) -> np.ndarray:
    start, stop = span
    size = stop - start
    weight = np.ones(size)
    if start > 0:
        weight *= _ramp(size, overlap_px)
    if stop < length:
        weight *= _ramp(size, overlap_px)[::-1]
    return weight


def _alignment(model: nn.Module) -> int:
    """Tile-start multiple that keeps a down-sampling network shift-equivariant."""
    if isinstance(model, UNet):
        return int(2 ** int(model.config["levels"]))
    return int(getattr(model, "size_multiple", 1) or 1)


def plan_tiles(
    shape: tuple[int, int], tile_px: int, overlap_px: int = 32, *, align: int = 1
) -> list[tuple[slice, slice, np.ndarray]]:
    """Overlapping tiles covering a frame, with their blending weights.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(y, x)``.
    tile_px : int
        Tile side; an axis not longer than this is not split.
    overlap_px : int, optional
        How far each tile reaches beyond the part of the frame it is responsible for,
        on each inner side; the tile step is ``tile_px − 2·overlap_px`` (rounded down
        to a multiple of ``align``).
    align : int, optional
        Tile starts are multiples of this (``2**levels`` for a U-net, whose max-pooling
        is only equivariant to such shifts).

    Returns
    -------
    list of (slice, slice, ndarray)
        ``(rows, cols, weight)`` per tile; ``weight`` has the tile's shape, is zero
        within ``overlap_px // 2`` of inner edges and one from ``overlap_px`` on. Every
        pixel has a total weight > 0.

    Raises
    ------
    ValueError
        If ``tile_px`` is too small for ``overlap_px`` and ``align``.
    """
    if tile_px < 1 or overlap_px < 0 or align < 1:
        raise ValueError(
            f"need tile_px >= 1, overlap_px >= 0, align >= 1 "
            f"(got {tile_px}, {overlap_px}, {align})"
        )
    step = (tile_px - 2 * overlap_px) // align * align
    if step < 1 and max(shape) > tile_px:
        raise ValueError(
            f"tile_px={tile_px} is too small for overlap_px={overlap_px}: tiles must be "
            f"larger than 2·overlap_px + {align - 1} pixels ({2 * overlap_px + align} or more)"
        )
    rows = _axis_spans(shape[0], tile_px, step, align)
    cols = _axis_spans(shape[1], tile_px, step, align)
    tiles = []
    for row in rows:
        wy = _axis_weight(row, shape[0], overlap_px)
        for col in cols:
            wx = _axis_weight(col, shape[1], overlap_px)
            tiles.append((slice(*row), slice(*col), np.outer(wy, wx).astype(np.float32)))
    return tiles


def _as_stack(frames: Any) -> tuple[Any, bool]:
    """Return ``(array, single)``: an indexable (n, y, x) or (y, x) array."""
    if not (hasattr(frames, "shape") and hasattr(frames, "__getitem__")):
        frames = np.asarray(frames)
    ndim = len(frames.shape)
    if ndim not in (2, 3):
        raise ValueError(
            f"expected frames of shape (n, y, x) or one (y, x) frame, got {tuple(frames.shape)}"
        )
    return frames, ndim == 2


def _indices(frame_indices: Sequence[int] | None, n: int) -> list[int]:
    if frame_indices is None:
        return list(range(n))
    out = []
    for i in frame_indices:
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"frame index {i} is out of range for {n} frame(s)")
        out.append(i % n)
    return out


def _check_size(model: nn.Module, shape: tuple[int, int], tile_px: int | None) -> None:
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


def _read(frames: Any, single: bool, indices: list[int]) -> np.ndarray:
    """Read frames ``indices`` (one slice when they are consecutive) as float32."""
    if single:
        return np.asarray(frames, dtype=np.float32)[None]
    first, last = indices[0], indices[-1]
    if indices == list(range(first, last + 1)):
        return np.asarray(frames[first : last + 1], dtype=np.float32)
    return np.stack([np.asarray(frames[i], dtype=np.float32) for i in indices])


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    from ..device import autocast_dtype

    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _probabilities(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sigmoid of the logits for standardised ``x`` of shape (B, H, W); returns (B, H, W)."""
    with _autocast(device):
        logits = model(x[:, None])
    if logits.shape[1] != 1:
        raise ValueError(f"expected a network with 1 output channel, got {logits.shape[1]}")
    return torch.sigmoid(logits[:, 0].float())


@torch.inference_mode()
def _predict_batch(model: nn.Module, batch: np.ndarray, device: torch.device) -> np.ndarray:
    # A copy: frames may be read-only memory maps, which torch must not wrap.
    x = standardise(torch.from_numpy(np.array(batch, dtype=np.float32))).to(device)
    return _probabilities(model, x, device).cpu().numpy()


@torch.inference_mode()
def _predict_tiled(
    model: nn.Module,
    frame: np.ndarray,
    tiles: list[tuple[slice, slice, np.ndarray]],
    batch_size: int,
    device: torch.device,
    should_stop: Callable[[], bool] | None,
) -> np.ndarray | None:
    """Blend the tiles' probabilities; ``None`` if stopped between tile batches."""
    x = standardise(torch.from_numpy(np.array(frame, dtype=np.float32))).to(device)
    total = torch.zeros(x.shape, dtype=torch.float32, device=device)
    weights = torch.zeros_like(total)
    groups: dict[tuple[int, int], list] = {}
    for tile in tiles:
        rows, cols, _ = tile
        groups.setdefault((rows.stop - rows.start, cols.stop - cols.start), []).append(tile)
    for group in groups.values():
        for k in range(0, len(group), batch_size):
            if should_stop is not None and should_stop():
                return None
            chunk = group[k : k + batch_size]
            probs = _probabilities(model, torch.stack([x[r, c] for r, c, _ in chunk]), device)
            for (rows, cols, weight), prob in zip(chunk, probs, strict=True):
                w = torch.from_numpy(weight).to(device)
                total[rows, cols] += w * prob
                weights[rows, cols] += w
    return (total / weights).cpu().numpy()


def predict_probabilities(
    model: nn.Module,
    frames: Any,
    *,
    device: str | torch.device = "auto",
    batch_size: int = 1,
    tile_px: int | None = None,
    overlap_px: int = 32,
    frame_indices: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame index, probability map)`` for the frames of a series, one by one.

    Each frame is standardised (:func:`.checkpoint.standardise`, as in training),
    passed through ``model`` under :func:`torch.inference_mode` (with autocast on
    CUDA, :func:`napari_lowdose.device.autocast_dtype`) and turned into
    per-pixel probabilities by a sigmoid (SPEC §4; Larsen et al. 2023).

    Parameters
    ----------
    model : torch.nn.Module
        Network mapping ``(N, 1, H, W)`` to ``(N, 1, H, W)`` logits; it is moved to
        ``device`` and used in eval mode (its training mode is restored afterwards).
    frames : array-like, shape (n, y, x) or (y, x)
        numpy, dask or zarr array (anything indexable with a ``shape``); only the
        requested frames are read, a batch at a time.
    device : str or torch.device, optional
        ``"auto"`` (CUDA > MPS > CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    batch_size : int, optional
        Frames (or, when tiling, tiles) per forward pass.
    tile_px : int, optional
        Split frames larger than this into overlapping tiles (raised to the model's
        ``min_size`` if smaller); ``None``: whole frames.
    overlap_px : int, optional
        Overlap of the tiles on each inner side (see :func:`plan_tiles`). Tiled and
        whole-frame results agree when the receptive-field radius is at most
        ``overlap_px // 2``.
    frame_indices : sequence of int, optional
        Frames to process (in this order); default all.
    progress : callable, optional
        ``progress(done, total)`` after each yielded frame.
    should_stop : callable, optional
        Polled between batches (and tiles batches) and before each yield; when it
        returns True nothing more is yielded.

    Yields
    ------
    index : int
        Frame index in ``frames`` (0 for a single frame).
    probability : ndarray of float32, shape (y, x)
        Probabilities in ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``frames`` is not 2-D or 3-D, frames are smaller than ``model.min_size``,
        the tiling is impossible or the network has more than one output channel.
    IndexError
        If a frame index is out of range.
    napari_lowdose.device.DeviceError
        If the device is not available.
    """
    from ..device import select_device

    frames, single = _as_stack(frames)
    shape = (int(frames.shape[-2]), int(frames.shape[-1]))
    _check_size(model, shape, tile_px)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    indices = _indices(frame_indices, 1 if single else int(frames.shape[0]))
    tiles = None
    if tile_px is not None and max(shape) > max(tile_px, getattr(model, "min_size", 1)):
        tile = max(tile_px, getattr(model, "min_size", 1))
        tiles = plan_tiles(shape, tile, overlap_px, align=_alignment(model))
    target = select_device(device)

    def process(chunk: list[int], batch: np.ndarray) -> np.ndarray | None:
        if tiles is None:
            return _predict_batch(model, batch, target)
        prob = _predict_tiled(model, batch[0], tiles, batch_size, target, should_stop)
        return None if prob is None else prob[None]

    return stream_frames(model, frames, single, indices, 1 if tiles is not None else batch_size,
                         process, target, progress, should_stop)


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

    The shared loop of segmentation (:func:`predict_probabilities`) and denoising
    (:func:`napari_lowdose.models.denoiser.denoise_frames`): the model is put on
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
            results = process(chunk, _read(frames, single, chunk))
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


def predict_frame(model: nn.Module, frame: Any, **kwargs: Any) -> np.ndarray:
    """Probability map of one ``(y, x)`` frame (see :func:`predict_probabilities`).

    Parameters
    ----------
    model : torch.nn.Module
        Segmentation network.
    frame : array-like, shape (y, x)
        The frame.
    **kwargs
        ``device``, ``tile_px``, ``overlap_px``, ``batch_size`` as for
        :func:`predict_probabilities`.

    Returns
    -------
    ndarray of float32, shape (y, x)
        Probabilities in ``[0, 1]``.
    """
    frame, single = _as_stack(frame)
    if not single:
        raise ValueError(f"expected one (y, x) frame, got shape {tuple(frame.shape)}")
    for _, prob in predict_probabilities(model, frame, **kwargs):
        return prob
    raise RuntimeError("prediction was stopped before the frame was done")
