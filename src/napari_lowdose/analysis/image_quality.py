"""Denoising quality against a reference: PSNR and SSIM (Katsuno et al. 2021).

The reference is the long exposure (Katsuno et al. 2021) or the noise-free
simulated image. Both metrics take the data range from the reference
(``max − min``) unless it is given, so images in counts and in normalised
units compare alike. SSIM is the Gaussian-window SSIM of Wang et al. (2004)
(σ = 1.5 px, K1 = 0.01, K2 = 0.03, population covariances), as computed by
:func:`skimage.metrics.structural_similarity`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["psnr", "ssim"]


def _pair(estimate: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if est.shape != ref.shape:
        raise ValueError(f"shapes differ: {est.shape} vs {ref.shape}")
    if est.ndim != 2:
        raise ValueError(f"expected 2-D images, got shape {est.shape}")
    return est, ref


def _data_range(reference: np.ndarray, data_range: float | None) -> float:
    if data_range is None:
        data_range = float(reference.max() - reference.min())
    if not data_range > 0:
        raise ValueError("the data range must be positive (a constant reference needs "
                         "data_range)")
    return float(data_range)


def psnr(estimate: Any, reference: Any, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(range² / MSE)``.

    Parameters
    ----------
    estimate, reference : array-like, shape (y, x)
        The image to judge and the reference.
    data_range : float, optional
        Peak-to-peak range; default ``reference.max() − reference.min()``.

    Returns
    -------
    float
        PSNR in dB (``inf`` for identical images).
    """
    est, ref = _pair(estimate, reference)
    peak = _data_range(ref, data_range)
    mse = float(np.mean((est - ref) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(peak**2 / mse))


def ssim(estimate: Any, reference: Any, data_range: float | None = None) -> float:
    """Mean structural similarity (Wang et al. 2004), Gaussian window σ = 1.5 px.

    Parameters
    ----------
    estimate, reference : array-like, shape (y, x)
        The image to judge and the reference; at least 11 × 11 pixels.
    data_range : float, optional
        Peak-to-peak range; default ``reference.max() − reference.min()``.

    Returns
    -------
    float
        Mean SSIM in [−1, 1] (1 for identical images).
    """
    from skimage.metrics import structural_similarity

    est, ref = _pair(estimate, reference)
    if min(ref.shape) < 11:
        raise ValueError(f"SSIM needs images of at least 11×11 px, got {ref.shape}")
    return float(structural_similarity(
        ref, est, data_range=_data_range(ref, data_range), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    ))
