"""Overlapping tiles of a frame and their seamless blending.

Large frames can be processed in overlapping tiles (:func:`plan_tiles`): each tile
reaches ``overlap_px`` beyond the part of the frame it is responsible for, and
tiles are blended (:func:`blend_tiles`) with a weight that is zero within
``overlap_px // 2`` of a tile's inner edge and rises along a raised-cosine ramp to
one at ``overlap_px``. For a network whose receptive-field radius is at most
``overlap_px // 2`` the stitched result therefore equals whole-frame inference (up
to rounding), with no seams. Segmentation
(:func:`napari_lowdose.models.inference.predict_probabilities`) and denoising
(:func:`napari_lowdose.models.denoising.denoise_frames`) share this.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .unet import UNet

__all__ = ["Tile", "blend_tiles", "plan_tiles", "tile_alignment"]

Span = tuple[int, int]
#: ``(rows, cols, weight)`` of one tile (see :func:`plan_tiles`).
Tile = tuple[slice, slice, np.ndarray]


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


def tile_alignment(model: nn.Module) -> int:
    """Tile-start multiple that keeps a down-sampling network shift-equivariant."""
    if isinstance(model, UNet):
        return int(2 ** int(model.config["levels"]))
    return int(getattr(model, "size_multiple", 1) or 1)


def plan_tiles(
    shape: tuple[int, int], tile_px: int, overlap_px: int = 32, *, align: int = 1
) -> list[Tile]:
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


def blend_tiles(
    tiles: list[Tile],
    shape: tuple[int, int],
    batch_size: int,
    run: Callable[[list[Tile]], torch.Tensor],
    device: torch.device,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor | None:
    """Run tiles through a network a batch at a time and blend the results.

    Tiles of the same size are batched together (at most ``batch_size`` per call of
    ``run``); each result is accumulated with its tile's weight, and the sum is
    divided by the summed weights.

    Parameters
    ----------
    tiles : list of (slice, slice, ndarray)
        From :func:`plan_tiles`.
    shape : tuple of int
        Frame shape ``(y, x)``.
    batch_size : int
        Most tiles per call of ``run``.
    run : callable
        ``run(chunk)`` returns the ``(len(chunk), h, w)`` float32 results of a list
        of tiles of the same ``h × w`` size, on ``device``.
    device : torch.device
        Where the blended result is accumulated.
    should_stop : callable, optional
        Polled before each batch; True ends the blending.

    Returns
    -------
    torch.Tensor or None
        The blended ``(y, x)`` float32 result on ``device``; None if stopped.
    """
    total = torch.zeros(shape, dtype=torch.float32, device=device)
    weights = torch.zeros_like(total)
    groups: dict[tuple[int, int], list[Tile]] = {}
    for tile in tiles:
        rows, cols, _ = tile
        groups.setdefault((rows.stop - rows.start, cols.stop - cols.start), []).append(tile)
    for group in groups.values():
        for k in range(0, len(group), batch_size):
            if should_stop is not None and should_stop():
                return None
            chunk = group[k : k + batch_size]
            for (rows, cols, weight), result in zip(chunk, run(chunk), strict=True):
                w = torch.from_numpy(weight).to(device)
                total[rows, cols] += w * result
                weights[rows, cols] += w
    return total / weights
