"""Overlapping tiles of a frame, how many and how much extra work, and their blending.

One rule for every network (segmentation,
:func:`napari_lowdose.models.inference.predict_probabilities`; denoising,
:func:`napari_lowdose.models.denoising.denoise_frames`; the commands' ``--tile``; the
docks):

* **Whole frames unless they do not fit.** ``tile_px=None`` processes whole frames;
  ``tile_px="auto"`` (:func:`auto_tile_px`) tiles only frames of more than
  :data:`AUTO_TILE_MAX_PIXELS` pixels, in tiles of :data:`AUTO_TILE_PX`.
* **As few tiles as cover the frame.** Each axis is cut into the fewest equal parts
  whose tiles — a part plus ``overlap_px`` of context on each inner side, starting on
  the network's pooling grid — are at most ``tile_px`` long (:func:`plan_tiles`); the
  tiles shrink to fit rather than overlap more than asked.
* **Overlap from the network and the tile.** By default (:func:`default_overlap_px`) a
  tile reaches twice the network's receptive-field radius beyond its part, but never
  more than :data:`MAX_OVERLAP_FRACTION` of the tile, so that the tiles' total area
  stays under about 1.5× the frame's (:class:`TilePlan.work`).
* **Blending without seams.** A tile's weight is zero within a quarter of the overlap
  it shares with a neighbour from its inner edge and rises along a raised cosine to
  one at half of it (:func:`blend_tiles` divides by the summed weights). Where the
  receptive-field radius is at most ``overlap_px // 2`` the stitched result equals
  whole-frame inference (up to rounding); with the capped default overlap of a deep
  network it agrees to well under the noise (the tests bound the difference).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "AUTO_TILE_MAX_PIXELS",
    "AUTO_TILE_PX",
    "MAX_OVERLAP_FRACTION",
    "Tile",
    "TilePlan",
    "auto_tile_px",
    "blend_tiles",
    "default_overlap_px",
    "plan_tiles",
    "receptive_radius_px",
    "tile_alignment",
    "model_tile_plan",
    "tile_plan",
]

Span = tuple[int, int]
#: ``(rows, cols, weight)`` of one tile (see :func:`plan_tiles`).
Tile = tuple[slice, slice, np.ndarray]

#: ``tile_px="auto"`` tiles only frames of more pixels than this (2048 × 2048: a few GB of
#: activations for the shipped networks on the CPU).
AUTO_TILE_MAX_PIXELS = 2048 * 2048
#: Tile side ``tile_px="auto"`` uses for frames that do not fit.
AUTO_TILE_PX = 1024
#: Most context a tile takes on each inner side by default, as a fraction of its side:
#: 8 % a side keeps the tiles' total area under ~1.5× the frame's.
MAX_OVERLAP_FRACTION = 0.08


def tile_alignment(model: nn.Module) -> int:
    """Tile-start multiple that keeps a down-sampling network shift-equivariant."""
    levels = (getattr(model, "config", None) or {}).get("levels")
    if levels is not None and hasattr(model, "encoder"):
        return int(2 ** int(levels))
    return int(getattr(model, "size_multiple", 1) or 1)


def receptive_radius_px(model: nn.Module) -> int | None:
    """Receptive-field radius (px) of a U-net or an MSD-net; None for another network.

    U-net (two k×k convolutions per block, 2× pooling, bilinear up-sampling): the
    convolutions add ``2·(k//2)·2**l`` at level ``l`` on the way down and up, each
    pooling and up-sampling step ``2**l``. MSD-net: ``Σ dilation · (k − 1) / 2``.
    """
    config = getattr(model, "config", None) or {}
    k = config.get("kernel_size")
    if k is None:
        return None
    r = int(k) // 2
    dilations = getattr(model, "dilations", None)
    if dilations is not None:
        return int(sum(int(d) for d in dilations) * r)
    levels = config.get("levels")
    if levels is None:
        return None
    levels = int(levels)
    down = sum(2 * r * 2**level for level in range(levels + 1))
    up = sum(2 * r * 2**level + 2 * 2**level for level in range(levels))
    return int(down + up)


def default_overlap_px(tile_px: int, radius_px: int | None) -> int:
    """Context (px) a tile of ``tile_px`` takes on each inner side by default.

    Twice the receptive-field radius (the stitched result is then exact), at most
    :data:`MAX_OVERLAP_FRACTION` of the tile; that cap when the radius is unknown.

    Examples
    --------
    >>> default_overlap_px(128, 58), default_overlap_px(2048, 58)
    (10, 116)
    """
    cap = int(MAX_OVERLAP_FRACTION * int(tile_px))
    return cap if radius_px is None else max(0, min(cap, 2 * int(radius_px)))


def auto_tile_px(shape: tuple[int, int]) -> int | None:
    """Tile side for ``tile_px="auto"``: None (whole frames) unless a frame is too large."""
    return None if int(shape[0]) * int(shape[1]) <= AUTO_TILE_MAX_PIXELS else AUTO_TILE_PX


def _ramp(length: int, reach: int) -> np.ndarray:
    """Blending weight by distance ``0 … length-1`` from a tile's inner edge."""
    margin = reach // 2
    distance = np.arange(length, dtype=np.float64)
    t = np.clip((distance - margin + 1) / (reach - margin + 1), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _spans_for(length: int, parts: int, overlap_px: int, align: int) -> list[Span]:
    """``parts`` tiles: equal parts of the axis, each with ``overlap_px`` of context."""
    edges = [round(k * length / parts) for k in range(parts + 1)]
    spans = []
    for k in range(parts):
        start = 0 if k == 0 else max(0, (edges[k] - overlap_px) // align * align)
        stop = length if k == parts - 1 else min(length, edges[k + 1] + overlap_px)
        spans.append((start, stop))
    return spans


def _at_least(span: Span, length: int, min_px: int, align: int) -> Span:
    """``span`` grown to ``min_px`` (a network's minimum input), within the axis."""
    start, stop = span
    if stop - start >= min_px:
        return span
    stop = min(length, start + min_px)
    if stop - start < min_px:
        start = max(0, (stop - min_px) // align * align)
    return start, stop


def _axis_spans(length: int, tile_px: int, overlap_px: int, align: int,
                min_px: int = 1) -> list[Span]:
    """The fewest tiles of at most ``tile_px`` covering an axis with the overlap asked."""
    if length <= tile_px:
        return [(0, length)]
    for parts in range(math.ceil(length / tile_px), length + 1):
        spans = _spans_for(length, parts, overlap_px, align)
        if max(stop - start for start, stop in spans) <= tile_px:
            return [_at_least(span, length, min_px, align) for span in spans]
    raise ValueError(f"no tiling of {length} px in tiles of {tile_px} px")  # not reached


def _axis_weights(spans: list[Span]) -> list[np.ndarray]:
    """Each span's weight: ramps over half of what it shares with each neighbour."""
    weights = []
    for k, (start, stop) in enumerate(spans):
        weight = np.ones(stop - start)
        if k > 0:
            weight *= _ramp(stop - start, max(1, (spans[k - 1][1] - start) // 2))
        if k < len(spans) - 1:
            weight *= _ramp(stop - start, max(1, (stop - spans[k + 1][0]) // 2))[::-1]
        weights.append(weight)
    return weights


def plan_tiles(
    shape: tuple[int, int], tile_px: int, overlap_px: int, *, align: int = 1, min_px: int = 1
) -> list[Tile]:
    """Overlapping tiles covering a frame, with their blending weights.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(y, x)``.
    tile_px : int
        Largest tile side; an axis not longer than this is not split.
    overlap_px : int
        Context each tile takes beyond its part of the frame, on each inner side (at
        least; neighbours share at least ``2·overlap_px``).
    align : int, optional
        Tile starts are multiples of this (``2**levels`` for a U-net, whose pooling
        is only equivariant to such shifts).

    Returns
    -------
    list of (slice, slice, ndarray)
        ``(rows, cols, weight)`` per tile; ``weight`` has the tile's shape, is zero
        within a quarter of a shared overlap from an inner edge and one from half of it
        on. Every pixel has a total weight > 0.

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
    if tile_px - 2 * overlap_px - (align - 1) < 1 and max(shape) > tile_px:
        raise ValueError(
            f"tile_px={tile_px} is too small for overlap_px={overlap_px}: tiles must be "
            f"larger than 2·overlap_px + {align - 1} pixels ({2 * overlap_px + align} or more)"
        )
    rows = _axis_spans(int(shape[0]), tile_px, overlap_px, align, min_px)
    cols = _axis_spans(int(shape[1]), tile_px, overlap_px, align, min_px)
    tiles = []
    for row, wy in zip(rows, _axis_weights(rows), strict=True):
        for col, wx in zip(cols, _axis_weights(cols), strict=True):
            tiles.append((slice(*row), slice(*col), np.outer(wy, wx).astype(np.float32)))
    return tiles


@dataclass(frozen=True)
class TilePlan:
    """How a frame is processed: whole, or in which tiles, and at what cost.

    Attributes
    ----------
    shape : (int, int)
        Frame shape.
    tile_px : int or None
        Largest tile side asked for (None: whole frames).
    overlap_px : int
        Context each tile takes on each inner side (0 for whole frames).
    tiles : list of Tile or None
        The tiles (:func:`plan_tiles`); None for whole frames.
    """

    shape: tuple[int, int]
    tile_px: int | None
    overlap_px: int
    tiles: list[Tile] | None

    @property
    def n_tiles(self) -> int:
        """Tiles per frame (1 for whole frames)."""
        return 1 if self.tiles is None else len(self.tiles)

    @property
    def largest_tile_px(self) -> int:
        """Side of the largest tile (the frame's larger side for whole frames)."""
        if self.tiles is None:
            return max(self.shape)
        return max(max(r.stop - r.start, c.stop - c.start) for r, c, _ in self.tiles)

    @property
    def work(self) -> float:
        """The tiles' total area over the frame's: the work relative to one pass."""
        if self.tiles is None:
            return 1.0
        area = sum((r.stop - r.start) * (c.stop - c.start) for r, c, _ in self.tiles)
        return area / float(self.shape[0] * self.shape[1])

    def describe(self) -> str:
        """E.g. ``"16 tiles of ≤ 122 px (10 px overlap), 1.45× the work of one pass"``."""
        if self.tiles is None:
            return f"whole frames ({self.shape[0]}×{self.shape[1]} px), one pass each"
        return (f"{self.n_tiles} tiles of ≤ {self.largest_tile_px} px ({self.overlap_px} px "
                f"overlap), {self.work:.2f}× the work of one pass")


def tile_plan(
    shape: tuple[int, int],
    tile_px: int | str | None,
    overlap_px: int | None = None,
    *,
    align: int = 1,
    radius_px: int | None = None,
    min_tile_px: int = 1,
) -> TilePlan:
    """The one tiling rule: whole frames, or the tiles of :func:`plan_tiles`.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(y, x)``.
    tile_px : int, "auto" or None
        Largest tile side; ``"auto"``: :func:`auto_tile_px`; None: whole frames.
    overlap_px : int, optional
        Context per inner side; None: :func:`default_overlap_px`.
    align : int, optional
        Tile starts are multiples of this (:func:`tile_alignment`).
    radius_px : int, optional
        The network's receptive-field radius (:func:`receptive_radius_px`).
    min_tile_px : int, optional
        Tiles are at least this large (a network's ``min_size``).

    Raises
    ------
    ValueError
        A ``tile_px`` below 1 or not "auto", or one too small for the overlap.
    """
    shape = (int(shape[0]), int(shape[1]))
    if tile_px == "auto":
        tile_px = auto_tile_px(shape)
    elif isinstance(tile_px, str):
        raise ValueError(f"tile_px must be a number of pixels, 'auto' or None, not {tile_px!r}")
    if tile_px is not None and int(tile_px) < 1:
        raise ValueError(f"tile_px must be >= 1, got {tile_px}")
    if tile_px is None or max(shape) <= max(int(tile_px), min_tile_px):
        return TilePlan(shape, None if tile_px is None else int(tile_px), 0, None)
    tile = max(int(tile_px), min_tile_px)
    overlap = default_overlap_px(tile, radius_px) if overlap_px is None else int(overlap_px)
    tiles = plan_tiles(shape, tile, overlap, align=align, min_px=min_tile_px)
    return TilePlan(shape, tile, overlap, tiles)


def model_tile_plan(model: nn.Module, shape: tuple[int, int], tile_px: int | str | None,
                    overlap_px: int | None = None) -> TilePlan:
    """:func:`tile_plan` for ``model``: its pooling grid, receptive field and minimum size."""
    return tile_plan(shape, tile_px, overlap_px, align=tile_alignment(model),
                     radius_px=receptive_radius_px(model),
                     min_tile_px=int(getattr(model, "min_size", 1) or 1))


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
