"""Low-dose HR-TEM denoiser network: a compact residual U-net (Katsuno et al. 2021).

Katsuno et al. (2021, *Microsc. Microanal.*, "Fast improvement of TEM images with
low-dose electrons by deep learning") train a CNN end-to-end from short exposures
(~5 e⁻/px) to long exposures (~1000 e⁻/px) of the same field, with an L1 loss,
Adam at 10⁻⁴ and inputs clipped to percentiles, and reach long-exposure-like
quality at ~8 ms per frame. This module holds the network; its input
normalisation (expected electrons per pixel, percentile clipping, a noise-level
channel) is :func:`napari_lowdose.models.normalisation.normalise_counts`, shared by
training (:mod:`napari_lowdose.train.denoiser`) and inference
(:func:`napari_lowdose.models.denoising.denoise_frames`).

The normalisation parameters are part of the network's ``config``, so a
checkpoint carries them and inference cannot use others than training did.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .normalisation import (
    DEFAULT_CLIP_PERCENTILES,
    DEFAULT_LOG10_E_PER_PX_RANGE,
    normalise_counts,
)
from .unet import pad_to_multiple

__all__ = ["DenoiserUNet"]

_DEFAULTS: dict[str, Any] = {
    "base_channels": 32,
    "levels": 3,
    "kernel_size": 3,
    "clip_percentiles": list(DEFAULT_CLIP_PERCENTILES),
    "log10_e_per_px_range": list(DEFAULT_LOG10_E_PER_PX_RANGE),
}



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
    """Compact residual U-net denoiser (Katsuno et al. 2021).

    Input: ``(N, 2, H, W)`` from :func:`.normalisation.normalise_counts` (normalised frame and
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
        Percentile clipping of the normalised input (in %), see
        :func:`.normalisation.normalise_counts`.
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
        """:func:`.normalisation.normalise_counts` with this network's clipping and range."""
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
