"""Low-dose HR-TEM denoiser: a compact residual U-net (Katsuno et al. 2021, SPEC §4).

Katsuno et al. (2021, *Microsc. Microanal.*, "Fast improvement of TEM images with
low-dose electrons by deep learning") train a CNN end-to-end from short exposures
(~5 e⁻/px) to long exposures (~1000 e⁻/px) of the same field, with an L1 loss,
Adam at 10⁻⁴ and inputs clipped to percentiles, and reach long-exposure-like
quality at ~8 ms per frame. This module holds the network and the input
normalisation shared by training (:mod:`napari_lowdose.train.denoise`) and
inference (:func:`denoise_frames`).

Normalisation (one model for a wide dose range)
-----------------------------------------------
A frame of ``counts`` is divided by the counts a vacuum pixel is expected to
receive, ``expected_e_per_px · counts_per_electron``, so that vacuum is ≈ 1 at
every dose::

    x = counts / (expected_e_per_px · counts_per_electron)

``expected_e_per_px = dose_e_per_A2 · sampling_A²`` when the frame dose is known
(:class:`napari_lowdose.io.dose.FrameDose`), otherwise the frame mean divided by
the gain. ``x`` is then clipped to its ``clip_percentiles`` (Katsuno et al.:
percentile clipping; 0.1 and 99.9 % by default, taken over the whole frame). A
second, constant input channel carries the noise level,
``(log10(expected_e_per_px) − lo) / (hi − lo)`` with ``(lo, hi) =
log10_e_per_px_range`` (−2…4, i.e. 0.01…10⁴ e⁻/px, mapped to 0…1). The network
predicts a correction to the clipped ``x`` (residual learning; the last layer
starts at zero, so an untrained network is the identity), and the estimate is
multiplied back by the same scale: the output is in the input's units (counts).

The normalisation parameters are part of the network's ``config``, so a
checkpoint carries them and inference cannot use others than training did.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .unet import pad_to_multiple

__all__ = [
    "DEFAULT_CLIP_PERCENTILES",
    "DEFAULT_LOG10_E_PER_PX_RANGE",
    "DenoiserUNet",
    "denoise_frame",
    "denoise_frames",
    "denoiser_normalisation",
    "expected_e_per_px_from_dose",
    "normalise_counts",
    "outside_training_range",
]

#: Katsuno-style percentile clipping of the normalised input (low, high), in %.
DEFAULT_CLIP_PERCENTILES: tuple[float, float] = (0.1, 99.9)
#: ``log10(expected e⁻/px)`` mapped to 0 and 1 in the noise-level channel.
DEFAULT_LOG10_E_PER_PX_RANGE: tuple[float, float] = (-2.0, 4.0)
#: Percentiles are estimated on at most this many (evenly strided) pixels per frame.
_MAX_QUANTILE_PX = 1 << 18

_DEFAULTS: dict[str, Any] = {
    "base_channels": 32,
    "levels": 3,
    "kernel_size": 3,
    "clip_percentiles": list(DEFAULT_CLIP_PERCENTILES),
    "log10_e_per_px_range": list(DEFAULT_LOG10_E_PER_PX_RANGE),
}


def expected_e_per_px_from_dose(dose_e_per_A2: Any, sampling_A: float) -> np.ndarray:
    """Expected electrons per vacuum pixel, ``N_D = dose · sampling_A²``.

    Parameters
    ----------
    dose_e_per_A2 : float or array-like
        Frame dose(s) in e⁻/Å².
    sampling_A : float
        Pixel size in Å/px.

    Returns
    -------
    ndarray of float64
        Electrons per pixel, the shape of ``dose_e_per_A2``.
    """
    return np.asarray(dose_e_per_A2, dtype=np.float64) * float(sampling_A) ** 2


def denoiser_normalisation(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The normalisation record stored in a denoiser checkpoint's metadata.

    Parameters
    ----------
    config : dict, optional
        A :class:`DenoiserUNet` ``config`` (default: the defaults).

    Returns
    -------
    dict
        ``method``, ``description``, ``clip_percentiles`` and ``log10_e_per_px_range``.
    """
    c = {**_DEFAULTS, **(config or {})}
    return {
        "method": "expected electrons per pixel",
        "description": (
            "x = counts / (expected_e_per_px * counts_per_electron), expected_e_per_px = "
            "dose_e_per_A2 * sampling_A**2 (or the frame mean / counts_per_electron when the "
            "dose is unknown); x clipped to its clip_percentiles over the frame; second "
            "channel (log10(expected_e_per_px) - lo) / (hi - lo); the network adds a "
            "correction to the clipped x; the output is multiplied back (input units)"
        ),
        "clip_percentiles": [float(v) for v in c["clip_percentiles"]],
        "log10_e_per_px_range": [float(v) for v in c["log10_e_per_px_range"]],
    }


def _percentile_bounds(
    x: torch.Tensor, percentiles: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame (low, high) percentiles of ``x`` (B, H, W), each of shape (B, 1, 1)."""
    flat = x.reshape(x.shape[0], -1)
    step = max(1, math.ceil(flat.shape[1] / _MAX_QUANTILE_PX))
    sample = flat[:, ::step].float()
    q = torch.tensor([p / 100.0 for p in percentiles], dtype=sample.dtype, device=x.device)
    bounds = torch.quantile(sample, q, dim=1)  # (2, B)
    return bounds[0].reshape(-1, 1, 1), bounds[1].reshape(-1, 1, 1)


def normalise_counts(
    frames: torch.Tensor,
    expected_e_per_px: torch.Tensor | None,
    *,
    counts_per_electron: float = 1.0,
    clip_percentiles: Sequence[float] = DEFAULT_CLIP_PERCENTILES,
    log10_e_per_px_range: Sequence[float] = DEFAULT_LOG10_E_PER_PX_RANGE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input of frames in counts, and the scale that maps it back to counts.

    Parameters
    ----------
    frames : torch.Tensor, shape (B, H, W)
        Frames in detector counts.
    expected_e_per_px : torch.Tensor of shape (B,), or None
        Expected electrons per vacuum pixel of each frame (``dose · s²``); None: the
        frame mean divided by ``counts_per_electron``.
    counts_per_electron : float, optional
        Detector gain (counts per electron).
    clip_percentiles : (float, float), optional
        Percentiles (in %) the normalised frame is clipped to; ``(0, 100)`` clips nothing.
    log10_e_per_px_range : (float, float), optional
        ``log10(e⁻/px)`` mapped to 0 and 1 in the noise-level channel.

    Returns
    -------
    inputs : torch.Tensor, shape (B, 2, H, W)
        Clipped normalised frame and the constant noise-level channel, float32.
    scale : torch.Tensor, shape (B, 1, 1, 1)
        Counts per unit of the normalised frame (``expected_e_per_px · gain``).

    Raises
    ------
    ValueError
        If ``frames`` is not 3-D, or an expected dose (given or from the frame mean)
        is not positive and finite.
    """
    if frames.ndim != 3:
        raise ValueError(f"expected frames of shape (B, H, W), got {tuple(frames.shape)}")
    frames = frames.to(torch.float32)
    gain = float(counts_per_electron)
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"counts_per_electron must be positive, got {counts_per_electron}")
    if expected_e_per_px is None:
        e_per_px = frames.mean(dim=(-2, -1)) / gain
    else:
        e_per_px = torch.as_tensor(expected_e_per_px, dtype=torch.float32,
                                   device=frames.device).reshape(-1)
        e_per_px = e_per_px.expand(frames.shape[0]) if e_per_px.numel() == 1 else e_per_px
        if e_per_px.shape[0] != frames.shape[0]:
            raise ValueError(f"{e_per_px.shape[0]} expected doses for {frames.shape[0]} frames")
    if not bool(torch.all(torch.isfinite(e_per_px) & (e_per_px > 0))):
        raise ValueError(
            "the expected electrons per pixel must be positive and finite (a frame with a "
            "mean of 0 or below needs its dose: give the dose per frame)"
        )
    scale = (e_per_px * gain).reshape(-1, 1, 1)
    x = frames / scale
    lo_pct, hi_pct = (float(v) for v in clip_percentiles)
    if lo_pct > 0 or hi_pct < 100:
        lo, hi = _percentile_bounds(x, (lo_pct, hi_pct))
        x = torch.maximum(torch.minimum(x, hi), lo)
    log_lo, log_hi = (float(v) for v in log10_e_per_px_range)
    level = (torch.log10(e_per_px) - log_lo) / (log_hi - log_lo)
    level = level.reshape(-1, 1, 1).expand_as(x)
    return torch.stack([x, level], dim=1), scale[:, None]


class _Block(nn.Sequential):
    """Two k×k convolutions, each followed by a leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        pad = kernel_size // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad),
            nn.LeakyReLU(0.1),
            nn.Conv2d(out_channels, out_channels, kernel_size, padding=pad),
            nn.LeakyReLU(0.1),
        )


class DenoiserUNet(nn.Module):
    """Compact residual U-net denoiser (Katsuno et al. 2021; SPEC §4).

    Input: ``(N, 2, H, W)`` from :func:`normalise_counts` (normalised frame and
    noise-level channel). Output: ``(N, 1, H, W)``, the normalised estimate =
    input channel 0 + the predicted correction (float32, also under autocast).
    Encoder blocks of two convolutions with 2×2 average pooling, channels ×2 per
    level; decoder with bilinear up-sampling, a 1×1 convolution halving the
    channels and concatenation with the encoder block of the same scale. Frames of
    any size are accepted (padded to a multiple of ``2**levels``, cropped back).

    Parameters
    ----------
    base_channels : int, optional
        Channels of the first block (32).
    levels : int, optional
        Number of down-sampling steps (3).
    kernel_size : int, optional
        Odd convolution kernel size (3).
    clip_percentiles : (float, float), optional
        Percentile clipping of the normalised input (in %), see :func:`normalise_counts`.
    log10_e_per_px_range : (float, float), optional
        Range of ``log10(e⁻/px)`` mapped to 0…1 in the noise-level channel.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        unknown = set(config) - set(_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown denoiser settings: {sorted(unknown)}")
        c = {**_DEFAULTS, **config}
        c["clip_percentiles"] = [float(v) for v in c["clip_percentiles"]]
        c["log10_e_per_px_range"] = [float(v) for v in c["log10_e_per_px_range"]]
        self.config = c
        k, base, levels = int(c["kernel_size"]), int(c["base_channels"]), int(c["levels"])
        if k < 1 or k % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {k}")
        if base < 1 or levels < 0:
            raise ValueError("base_channels must be >= 1 and levels >= 0")
        lo, hi = c["clip_percentiles"]
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"clip_percentiles must satisfy 0 <= low < high <= 100, got {lo, hi}")
        log_lo, log_hi = c["log10_e_per_px_range"]
        if not log_lo < log_hi:
            raise ValueError(f"log10_e_per_px_range must be increasing, got {log_lo, log_hi}")
        widths = [base * 2**level for level in range(levels + 1)]
        self.encoder = nn.ModuleList()
        channels = 2
        for width in widths:
            self.encoder.append(_Block(channels, width, k))
            channels = width
        self.reduce = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.reduce.append(nn.Conv2d(channels, width, 1))
            self.decoder.append(_Block(2 * width, width, k))
            channels = width
        self.head = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DenoiserUNet:
        """Build from :attr:`config` (e.g. read from a checkpoint)."""
        return cls(**{k: v for k, v in config.items() if k in _DEFAULTS})

    @property
    def size_multiple(self) -> int:
        """Tile starts must be multiples of this for shift equivariance (``2**levels``)."""
        return 2 ** int(self.config["levels"])

    def normalise(
        self,
        frames: torch.Tensor,
        expected_e_per_px: torch.Tensor | None,
        counts_per_electron: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`normalise_counts` with this network's clipping and noise-level range."""
        return normalise_counts(
            frames,
            expected_e_per_px,
            counts_per_electron=counts_per_electron,
            clip_percentiles=self.config["clip_percentiles"],
            log10_e_per_px_range=self.config["log10_e_per_px_range"],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised estimate ``(N, 1, H, W)`` for normalised input ``(N, 2, H, W)``."""
        if x.ndim != 4 or x.shape[1] != 2:
            raise ValueError(f"expected (N, 2, H, W), got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        identity = x[:, :1].float()
        x = pad_to_multiple(x, self.size_multiple)
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < len(self.encoder) - 1:
                skips.append(x)
                x = F.avg_pool2d(x, 2)
        for reduce, block, skip in zip(self.reduce, self.decoder, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([reduce(x), skip], dim=1))
        correction = self.head(x)[..., :height, :width]
        return identity + correction.float()

    def denoise_counts(
        self,
        frames: torch.Tensor,
        expected_e_per_px: torch.Tensor | None = None,
        counts_per_electron: float = 1.0,
    ) -> torch.Tensor:
        """Denoise ``(B, H, W)`` frames in counts; returns ``(B, H, W)`` float32 counts."""
        inputs, scale = self.normalise(frames, expected_e_per_px, counts_per_electron)
        return (self(inputs) * scale)[:, 0]


# ---------------------------------------------------------------------------
# Streaming inference
# ---------------------------------------------------------------------------


def _per_frame_doses(expected_e_per_px: Any, n: int) -> np.ndarray | None:
    """``None`` or a float64 array of ``n`` expected doses (validated)."""
    if expected_e_per_px is None:
        return None
    values = np.asarray(expected_e_per_px, dtype=np.float64).reshape(-1)
    if values.size == 1:
        values = np.full(n, float(values[0]))
    if values.size != n:
        raise ValueError(f"{values.size} expected doses given for {n} frame(s)")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError("expected_e_per_px must be positive and finite")
    return values


@torch.inference_mode()
def _denoise_batch(
    model: DenoiserUNet,
    batch: np.ndarray,
    e_per_px: np.ndarray | None,
    gain: float,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> np.ndarray:
    # A copy: frames may be read-only memory maps, which torch must not wrap.
    frames = torch.from_numpy(np.array(batch, dtype=np.float32)).to(device)
    doses = None if e_per_px is None else torch.from_numpy(e_per_px).float().to(device)
    inputs, scale = model.normalise(frames, doses, gain)
    with autocast():
        estimate = model(inputs)
    return (estimate.float() * scale)[:, 0].cpu().numpy()


@torch.inference_mode()
def _denoise_tiled(
    model: DenoiserUNet,
    frame: np.ndarray,
    e_per_px: np.ndarray | None,
    gain: float,
    tiles: list[tuple[slice, slice, np.ndarray]],
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager],
    should_stop: Callable[[], bool],
) -> np.ndarray | None:
    """Normalise the whole frame, denoise it tile by tile, blend; None if stopped."""
    frames = torch.from_numpy(np.array(frame, dtype=np.float32)[None]).to(device)
    doses = None if e_per_px is None else torch.from_numpy(e_per_px).float().to(device)
    inputs, scale = model.normalise(frames, doses, gain)
    total = torch.zeros(frames.shape[-2:], dtype=torch.float32, device=device)
    weights = torch.zeros_like(total)
    groups: dict[tuple[int, int], list] = {}
    for tile in tiles:
        rows, cols, _ = tile
        groups.setdefault((rows.stop - rows.start, cols.stop - cols.start), []).append(tile)
    for group in groups.values():
        for k in range(0, len(group), batch_size):
            if should_stop():
                return None
            chunk = group[k : k + batch_size]
            with autocast():
                out = model(torch.cat([inputs[:, :, r, c] for r, c, _ in chunk]))
            for (rows, cols, weight), estimate in zip(chunk, out[:, 0].float(), strict=True):
                w = torch.from_numpy(weight).to(device)
                total[rows, cols] += w * estimate
                weights[rows, cols] += w
    return (total / weights * scale[0, 0]).cpu().numpy()


def denoise_frames(
    model: DenoiserUNet,
    frames: Any,
    *,
    expected_e_per_px: float | Sequence[float] | np.ndarray | None = None,
    counts_per_electron: float = 1.0,
    device: str | torch.device = "auto",
    batch_size: int = 1,
    frame_indices: Sequence[int] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    tile_px: int | None = None,
    overlap_px: int = 48,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame index, denoised frame)`` for the frames of a series, one by one.

    Each frame is normalised by its expected counts per vacuum pixel
    (:func:`normalise_counts`), passed through the denoiser under
    :func:`torch.inference_mode` (autocast in bf16/fp16 on CUDA,
    :func:`napari_lowdose.device.autocast_dtype`; the residual sum is kept
    in float32) and scaled back to the input's units.

    Parameters
    ----------
    model : DenoiserUNet
        The denoiser (moved to ``device``; its training mode is restored afterwards).
    frames : array-like, shape (n, y, x) or (y, x)
        numpy, dask or zarr array in detector counts; only the requested frames
        are read, a batch at a time.
    expected_e_per_px : float or sequence of float, optional
        Expected electrons per vacuum pixel, ``dose_e_per_A2 · sampling_A²``: one value
        for all frames or one per frame of ``frames`` (indexed like ``frames``, not
        like ``frame_indices``). None: each frame's mean / ``counts_per_electron``.
    counts_per_electron : float, optional
        Detector gain (1 for frames in electrons).
    device : str or torch.device, optional
        ``"auto"`` (CUDA > MPS > CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    batch_size : int, optional
        Frames (or, when tiling, tiles) per forward pass.
    frame_indices : sequence of int, optional
        Frames to process, in this order; default all.
    should_stop : callable, optional
        Polled between batches and before each yield; True ends the stream.
    progress : callable, optional
        ``progress(done, total)`` after each yielded frame.
    tile_px : int, optional
        Process frames larger than this in overlapping tiles (normalised as whole
        frames first); None: whole frames.
    overlap_px : int, optional
        Overlap of the tiles on each inner side
        (:func:`napari_lowdose.models.inference.plan_tiles`).

    Yields
    ------
    index : int
        Frame index in ``frames`` (0 for a single frame).
    denoised : ndarray of float32, shape (y, x)
        The estimate, in the units of ``frames``.

    Raises
    ------
    ValueError
        If ``frames`` is not 2-D or 3-D, the doses do not match the frames, or the
        tiling is impossible.
    IndexError
        If a frame index is out of range.
    napari_lowdose.device.DeviceError
        If the device is not available.
    """
    from ..device import select_device
    from .inference import (
        _alignment,
        _as_stack,
        _autocast,
        _check_size,
        _indices,
        plan_tiles,
        stream_frames,
    )

    if not isinstance(model, DenoiserUNet):
        raise TypeError(f"expected a DenoiserUNet, got {type(model).__name__}")
    frames, single = _as_stack(frames)
    n = 1 if single else int(frames.shape[0])
    shape = (int(frames.shape[-2]), int(frames.shape[-1]))
    _check_size(model, shape, tile_px)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    doses = _per_frame_doses(expected_e_per_px, n)
    gain = float(counts_per_electron)
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"counts_per_electron must be positive, got {counts_per_electron}")
    indices = _indices(frame_indices, n)
    tiles = None
    if tile_px is not None and max(shape) > tile_px:
        tiles = plan_tiles(shape, tile_px, overlap_px, align=_alignment(model))
    target = select_device(device)
    stop = should_stop or (lambda: False)

    def autocast() -> contextlib.AbstractContextManager:
        return _autocast(target)

    def process(chunk: list[int], batch: np.ndarray) -> np.ndarray | None:
        e_per_px = None if doses is None else doses[chunk]
        if tiles is None:
            return _denoise_batch(model, batch, e_per_px, gain, target, autocast)
        one = _denoise_tiled(model, batch[0], e_per_px, gain, tiles, batch_size, target,
                             autocast, stop)
        return None if one is None else one[None]

    return stream_frames(model, frames, single, indices, 1 if tiles is not None else batch_size,
                         process, target, progress, stop)


def denoise_frame(model: DenoiserUNet, frame: Any, **kwargs: Any) -> np.ndarray:
    """Denoise one ``(y, x)`` frame (see :func:`denoise_frames`).

    Parameters
    ----------
    model : DenoiserUNet
        The denoiser.
    frame : array-like, shape (y, x)
        The frame, in counts.
    **kwargs
        ``expected_e_per_px`` (a scalar), ``counts_per_electron``, ``device``,
        ``tile_px``, ``overlap_px``, ``batch_size`` as for :func:`denoise_frames`.

    Returns
    -------
    ndarray of float32, shape (y, x)
        The denoised frame, in the units of ``frame``.
    """
    frame = np.asarray(frame) if not hasattr(frame, "shape") else frame
    if len(frame.shape) != 2:
        raise ValueError(f"expected one (y, x) frame, got shape {tuple(frame.shape)}")
    for _, denoised in denoise_frames(model, frame, **kwargs):
        return denoised
    raise RuntimeError("denoising was stopped before the frame was done")


def outside_training_range(metadata: dict[str, Any], e_per_px: Sequence[float] | None) -> str:
    """A warning when frames have doses outside those a denoiser was trained on.

    A denoiser is only as good as the noise levels it has seen: far above its
    training range the correction it learned for noisier frames makes a
    frame worse than the input.

    Parameters
    ----------
    metadata : dict
        The model's metadata (``source.trained_e_per_px_range`` is written by
        :func:`napari_lowdose.train.denoise.train_denoiser`).
    e_per_px : sequence of float or None
        Expected electrons per vacuum pixel of the frames to denoise (None:
        unknown, then nothing can be said).

    Returns
    -------
    str
        One sentence, or "" when every frame is inside the range (or the
        range or the doses are unknown).
    """
    trained = (metadata.get("source") or {}).get("trained_e_per_px_range")
    if e_per_px is None or not trained:
        return ""
    lo, hi = (float(v) for v in trained)
    values = [float(v) for v in e_per_px]
    n_out = sum(1 for v in values if not lo <= v <= hi)
    if not n_out:
        return ""
    return (f"{n_out} of {len(values)} frame(s) have doses ({min(values):.3g}…"
            f"{max(values):.3g} e⁻/px) outside the {lo:.3g}…{hi:.3g} e⁻/px the denoiser "
            "was trained on; their results may be worse than the input")
