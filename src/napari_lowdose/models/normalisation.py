"""Input normalisation of the networks, shared by training and inference.

Segmentation (MSD-net, U-net): per-frame standardisation
(:data:`NORMALISATION`, :func:`standardise`), each frame minus its mean divided
by its standard deviation, as Larsen et al. (2023) normalise every image before
segmentation.

Denoiser (Katsuno et al. 2021): expected electrons per pixel
(:func:`normalise_counts`, recorded in a checkpoint by
:func:`denoiser_normalisation`). A frame of ``counts`` is divided by the counts a
vacuum pixel is expected to receive, ``expected_e_per_px · counts_per_electron``,
so that vacuum is ≈ 1 at every dose::

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

The denoiser's normalisation parameters are part of its ``config``
(:class:`napari_lowdose.models.denoiser.DenoiserUNet`), so a checkpoint carries
them and inference cannot use others than training did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_CLIP_PERCENTILES",
    "DEFAULT_LOG10_E_PER_PX_RANGE",
    "NORMALISATION",
    "denoiser_normalisation",
    "normalise_counts",
    "per_frame_e_per_px",
    "standardise",
]

#: Input normalisation used by training and inference (see :func:`standardise`).
NORMALISATION: dict[str, Any] = {
    "method": "per-frame standardisation",
    "description": (
        "each frame minus its mean, divided by its standard deviation (+1e-6); "
        "population standard deviation over the frame's pixels, float32"
    ),
    "epsilon": 1e-6,
}

#: Katsuno-style percentile clipping of the normalised input (low, high), in %.
DEFAULT_CLIP_PERCENTILES: tuple[float, float] = (0.1, 99.9)
#: ``log10(expected e⁻/px)`` mapped to 0 and 1 in the noise-level channel.
DEFAULT_LOG10_E_PER_PX_RANGE: tuple[float, float] = (-2.0, 4.0)
#: Percentiles are estimated on at most this many (evenly strided) pixels per frame.
_MAX_QUANTILE_PX = 1 << 18


def standardise(frames: torch.Tensor) -> torch.Tensor:
    """Standardise each frame: minus its mean, divided by its standard deviation + 1e-6.

    The normalisation of :data:`NORMALISATION`, applied identically in training and
    inference (Larsen et al. 2023 normalise every image before segmentation).

    Parameters
    ----------
    frames : torch.Tensor, shape (..., H, W)
        One frame or a stack; statistics are taken over the last two dimensions
        (population standard deviation).

    Returns
    -------
    torch.Tensor
        float32 tensor of the same shape; the input is not modified.
    """
    if frames.ndim < 2:
        raise ValueError(f"expected frames of shape (..., H, W), got {tuple(frames.shape)}")
    frames = frames.to(torch.float32)
    std, mean = torch.std_mean(frames, dim=(-2, -1), keepdim=True, correction=0)
    return (frames - mean) / (std + NORMALISATION["epsilon"])


def denoiser_normalisation(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The normalisation record stored in a denoiser checkpoint's metadata.

    Parameters
    ----------
    config : dict, optional
        A :class:`~napari_lowdose.models.denoiser.DenoiserUNet` ``config`` (default:
        the defaults).

    Returns
    -------
    dict
        ``method``, ``description``, ``clip_percentiles`` and ``log10_e_per_px_range``.
    """
    c = {
        "clip_percentiles": DEFAULT_CLIP_PERCENTILES,
        "log10_e_per_px_range": DEFAULT_LOG10_E_PER_PX_RANGE,
        **(config or {}),
    }
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


def per_frame_e_per_px(values: Any, n: int, *, name: str = "expected_e_per_px"
                       ) -> np.ndarray | None:
    """``None``, or ``n`` expected electrons per pixel, positive and finite (one is repeated).

    The check every denoiser input and training pair goes through.

    Parameters
    ----------
    values : float, array-like or None
        One value for every frame, or one per frame.
    n : int
        Number of frames.
    name : str
        What the values are, for the message.

    Returns
    -------
    ndarray of float64 or None

    Raises
    ------
    ValueError
        Not ``n`` values, or a value that is not positive and finite.
    """
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.full(n, float(arr[0]))
    if arr.size != n:
        what = "expected doses" if name == "expected_e_per_px" else f"values of {name}"
        raise ValueError(f"{arr.size} {what} given for {n} frame(s)")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name} must be positive and finite")
    return arr
