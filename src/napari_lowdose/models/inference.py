"""Streaming per-pixel probabilities of a segmentation network over a frame series.

Frames are read one at a time (or ``batch_size`` at a time) from a numpy, dask or
zarr array (:func:`.streaming.stream_frames`), standardised exactly as in training
(:func:`.normalisation.standardise`), run through the network and turned into
probabilities with a sigmoid (per-pixel probability, mask = probability ≥
threshold; Larsen et al. 2023). Each frame's probability map is yielded as soon as
it is ready. Large frames can be processed in overlapping, blended tiles
(:mod:`.tiling`) with the same result as whole-frame inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..device import select_device
from .normalisation import standardise
from .streaming import (
    as_stack,
    check_frame_size,
    inference_autocast,
    read_frames,
    resolve_indices,
    stream_frames,
)
from .tiling import Tile, blend_tiles, model_tile_plan

__all__ = ["predict_frame", "predict_probabilities"]


def _probabilities(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sigmoid of the logits for standardised ``x`` of shape (B, H, W); returns (B, H, W)."""
    with inference_autocast(device):
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
    tiles: list[Tile],
    batch_size: int,
    device: torch.device,
    should_stop: Callable[[], bool] | None,
) -> np.ndarray | None:
    """Blend the tiles' probabilities; ``None`` if stopped between tile batches."""
    x = standardise(torch.from_numpy(np.array(frame, dtype=np.float32))).to(device)

    def run(chunk: list[Tile]) -> torch.Tensor:
        return _probabilities(model, torch.stack([x[r, c] for r, c, _ in chunk]), device)

    blended = blend_tiles(tiles, tuple(x.shape), batch_size, run, device, should_stop)
    return None if blended is None else blended.cpu().numpy()


def predict_probabilities(
    model: nn.Module,
    frames: Any,
    *,
    device: str | torch.device = "auto",
    batch_size: int = 1,
    tile_px: int | str | None = None,
    overlap_px: int | None = None,
    frame_indices: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    zoom: float | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame index, probability map)`` for the frames of a series, one by one.

    Each frame is standardised (:func:`.normalisation.standardise`, as in training),
    passed through ``model`` under :func:`torch.inference_mode` (with autocast on
    CUDA, :func:`napari_lowdose.device.autocast_dtype`) and turned into
    per-pixel probabilities by a sigmoid (Larsen et al. 2023).

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
    tile_px : int, "auto" or None, optional
        Split frames larger than this into overlapping tiles (raised to the model's
        ``min_size`` if smaller); ``"auto"``: only frames too large to fit
        (:func:`.tiling.auto_tile_px`); ``None``: whole frames.
    overlap_px : int, optional
        Context of the tiles on each inner side (see :func:`.tiling.plan_tiles`); None:
        from the tile and the network's receptive field
        (:func:`.tiling.default_overlap_px`). Tiled and whole-frame results agree when
        the receptive-field radius is at most ``overlap_px // 2``.
    frame_indices : sequence of int, optional
        Frames to process (in this order); default all.
    progress : callable, optional
        ``progress(done, total)`` after each yielded frame.
    should_stop : callable, optional
        Polled between batches (and tiles batches) and before each yield; when it
        returns True nothing more is yielded.
    zoom : float, optional
        Resample each frame by this factor (bilinear) before the network, and its
        probabilities back to the frame's shape: a network sees lattice fringes at the
        pixel scale it was trained on (:func:`napari_lowdose.workflows.segmentation.
        inference_zoom` gives the factor). None or 1: the frames as they are. Frames are
        then processed one at a time (``batch_size`` applies to tiles).

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

    frames, single = as_stack(frames)
    if zoom is not None and not math.isclose(float(zoom), 1.0, rel_tol=1e-3):
        if not (math.isfinite(float(zoom)) and float(zoom) > 0):
            raise ValueError(f"zoom must be positive, got {zoom}")
        indices = resolve_indices(frame_indices, 1 if single else int(frames.shape[0]))
        options = {"device": device, "batch_size": batch_size, "tile_px": tile_px,
                   "overlap_px": overlap_px, "should_stop": should_stop}
        return _zoomed_stream(model, frames, single, indices, float(zoom), options,
                              progress, should_stop)
    shape = (int(frames.shape[-2]), int(frames.shape[-1]))
    check_frame_size(model, shape, None if isinstance(tile_px, str) else tile_px)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    indices = resolve_indices(frame_indices, 1 if single else int(frames.shape[0]))
    tiles = model_tile_plan(model, shape, tile_px, overlap_px).tiles
    target = select_device(device)

    def process(chunk: list[int], batch: np.ndarray) -> np.ndarray | None:
        if tiles is None:
            return _predict_batch(model, batch, target)
        prob = _predict_tiled(model, batch[0], tiles, batch_size, target, should_stop)
        return None if prob is None else prob[None]

    return stream_frames(model, frames, single, indices, 1 if tiles is not None else batch_size,
                         process, target, progress, should_stop)


def _zoomed_stream(model: nn.Module, frames: Any, single: bool, indices: list[int],
                   zoom: float, options: dict[str, Any],
                   progress: Callable[[int, int], None] | None,
                   should_stop: Callable[[], bool] | None) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`predict_probabilities` of each frame resampled by ``zoom``, mapped back."""
    for done, index in enumerate(indices, 1):
        if should_stop is not None and should_stop():
            return
        frame = read_frames(frames, single, [index])[0]  # read and checked as unresampled
        resampled = ndimage.zoom(frame, zoom, order=1)
        for _, probability in predict_probabilities(model, resampled, **options):
            factors = (frame.shape[0] / probability.shape[0],
                       frame.shape[1] / probability.shape[1])
            back = ndimage.zoom(probability, factors, order=1)[:frame.shape[0], :frame.shape[1]]
            if back.shape != frame.shape:  # rounding: pad with the edge values
                back = np.pad(back, [(0, frame.shape[0] - back.shape[0]),
                                     (0, frame.shape[1] - back.shape[1])], mode="edge")
            yield index, np.clip(back, 0.0, 1.0).astype(np.float32)
        if progress is not None:
            progress(done, len(indices))


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
    frame, single = as_stack(frame)
    if not single:
        raise ValueError(f"expected one (y, x) frame, got shape {tuple(frame.shape)}")
    for _, prob in predict_probabilities(model, frame, **kwargs):
        return prob
    raise RuntimeError("prediction was stopped before the frame was done")
