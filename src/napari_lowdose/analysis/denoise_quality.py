"""How good a denoised frame is, with no clean reference: the unbiased MSE from a pair.

Two exposures ``A`` and ``B`` of the same field hold the same signal ``s`` and
independent noise. An estimate ``x`` of the signal made from ``A`` alone (a denoised
``A``, a filtered ``A``, or ``A`` itself) has noise independent of ``B``'s, so

    ``E[mean((x − B)²)] = mean((x − s)²) + var(n_B)``

and ``mean((x − B)²) − var(n_B)`` is an unbiased estimate of the MSE of ``x`` against
the clean signal (Lehtinen et al. 2018, the Noise2Noise argument; Katsuno et al. 2021
judge against a long exposure instead). The noise variance of ``B`` comes from the pair
itself: with ``B`` scaled to ``A``'s dose (``B' = r·B``, ``r = mean(A) / mean(B)``) and
shot noise whose variance is proportional to the dose (any detector excess factor
included, the same for both frames),

    ``var(n_B') = var(A − B') · r / (1 + r)``

(``var(A − B') / 2`` for equal doses). Everything here is in ``A``'s units and at
``A``'s dose, the denoiser's output units (:func:`napari_lowdose.models.denoising.
denoise_frames` returns the input's units).

A run's frames (each against the next, or against a reference exposure) are judged by
:mod:`.denoise_quality_runs`.

Registration: ``B`` is moved onto ``A`` by whole pixels
(:func:`~.registration.register_whole_pixels`, the rule of the noise fit from
pairs), never interpolated, which would shrink its noise and bias the readout.
The sub-pixel remainder leaves a little signal in ``A − B'``, which the variance then
counts as noise: the same small amount is subtracted from every score (raw,
Gaussian, denoiser), so their ranking holds.

PSNR: ``10 log10(peak² / MSE)`` with ``peak`` the expected counts per vacuum pixel of
``A`` (its dose × the gain; by default its mean), so ``MSE / peak²`` is the MSE in the
denoiser's normalised units (:func:`napari_lowdose.models.normalisation.
normalise_counts`) and the PSNR is ``−10 log10`` of it. A negative unbiased MSE (an
estimate closer to the signal than the noise of the readout can tell) gives
``inf`` dB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .registration import overlap, register_whole_pixels

__all__ = [
    "GAUSSIAN_SIGMAS_PX",
    "interval_text",
    "check_independent",
    "QualityReadout",
    "Score",
    "best_gaussian",
    "noise_variance_from_pair",
    "psnr_from_mse",
    "quality_readout",
    "ratio_interval",
    "unbiased_mse",
]

#: Gaussian filter widths (σ, px) searched for the best Gaussian filter.
GAUSSIAN_SIGMAS_PX = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


def _image(data: Any, name: str) -> np.ndarray:
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be one 2-D image, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or infinite pixels")
    return arr


def noise_variance_from_pair(frame: Any, independent: Any, *,
                             dose_ratio: float | None = None) -> float:
    """Noise variance of ``independent`` scaled to ``frame``'s dose, from the pair.

    Parameters
    ----------
    frame, independent : array-like, shape (y, x)
        Two registered exposures of the same field, same units (e.g. counts).
    dose_ratio : float, optional
        ``r``, the dose of ``frame`` over that of ``independent``; default the ratio of
        their means.

    Returns
    -------
    float
        ``var(frame − r·independent) · r / (1 + r)``: the variance of the noise of
        ``r·independent`` when the noise variance of each frame is proportional to its
        dose.
    """
    a, b = _image(frame, "frame"), _image(independent, "independent frame")
    if a.shape != b.shape:
        raise ValueError(f"the frames differ in shape: {a.shape} vs {b.shape}")
    r = _ratio(a, b) if dose_ratio is None else float(dose_ratio)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"the dose ratio must be positive, got {r}")
    return float(np.var(a - r * b) * r / (1.0 + r))


def check_independent(frame: Any, other: Any, *, variance: float | None = None) -> None:
    """Refuse a "second exposure" that is the same frame (or a scaled copy of it).

    The readout needs independent noise in the two frames; a copy has none in their
    difference, and every score would come out as if the noise were signal.

    Parameters
    ----------
    frame, other : array-like, shape (y, x)
        The frame and its supposed second exposure (registered or not).
    variance : float, optional
        Their :func:`noise_variance_from_pair`, when already computed.

    Raises
    ------
    ValueError
        Their difference holds no noise.
    """
    a, b = _image(frame, "frame"), _image(other, "independent frame")
    if variance is None:
        if a.shape != b.shape:
            raise ValueError(f"the frames differ in shape: {a.shape} vs {b.shape}")
        variance = noise_variance_from_pair(a, b)
    if not variance > 1e-6 * float(np.var(a)):
        raise ValueError("the second frame is not an independent exposure of the first "
                         "(their difference holds no noise: the same frame, or a copy of it)")


def _ratio(a: np.ndarray, b: np.ndarray) -> float:
    m_a, m_b = float(a.mean()), float(b.mean())
    if not (m_a > 0 and m_b > 0):
        raise ValueError(f"the frames' means ({m_a:.4g}, {m_b:.4g}) must be positive: their "
                         "dose ratio is the ratio of their means")
    return m_a / m_b


def unbiased_mse(estimate: Any, independent_frame: Any, noise_variance: float) -> float:
    """``mean((estimate − independent)²) − noise_variance``: the MSE against the signal.

    Unbiased when the estimate's noise is independent of the independent frame's and
    ``noise_variance`` is that frame's noise variance (same units, same dose, same
    grid as the estimate).
    """
    est, ref = _image(estimate, "estimate"), _image(independent_frame, "independent frame")
    if est.shape != ref.shape:
        raise ValueError(f"shapes differ: {est.shape} vs {ref.shape}")
    return float(np.mean((est - ref) ** 2) - float(noise_variance))


def psnr_from_mse(mse: float, peak: float) -> float:
    """``10 log10(peak² / mse)`` in dB; ``inf`` for ``mse ≤ 0``."""
    if not peak > 0:
        raise ValueError(f"the PSNR peak must be positive, got {peak}")
    return float("inf") if mse <= 0 else float(10.0 * math.log10(peak**2 / mse))


@dataclass(frozen=True)
class Score:
    """One estimate's unbiased MSE (input units², and ÷ peak²) and the PSNR it implies."""

    mse: float
    mse_normalised: float
    psnr_db: float
    sigma_px: float | None = None


def _score(mse: float, peak: float, sigma_px: float | None = None) -> Score:
    return Score(mse, mse / peak**2, psnr_from_mse(mse, peak), sigma_px)


def best_gaussian(frame: Any, independent_frame: Any, noise_variance: float, *,
                  sigmas_px: Sequence[float] = GAUSSIAN_SIGMAS_PX,
                  box: tuple[slice, slice] | None = None) -> tuple[float, float]:
    """The Gaussian filter of ``frame`` with the least unbiased MSE.

    Parameters
    ----------
    frame : array-like, shape (y, x)
        The noisy frame (filtered whole, edges reflected, then cut to ``box``).
    independent_frame : array-like
        The independent frame on ``frame``'s grid and dose, shape of ``frame[box]``.
    noise_variance : float
        Its noise variance (:func:`noise_variance_from_pair`).
    sigmas_px : sequence of float, optional
        Filter widths searched (σ in px).
    box : (slice, slice), optional
        The part of ``frame`` that is judged (default all).

    Returns
    -------
    (sigma_px, mse) : tuple of float
        The best width and its unbiased MSE.
    """
    a = _image(frame, "frame")
    cut = box or (slice(None), slice(None))
    if not len(sigmas_px):
        raise ValueError("no Gaussian width to search")
    results = [(unbiased_mse(ndimage.gaussian_filter(a, float(s), mode="reflect")[cut],
                             independent_frame, noise_variance), float(s))
               for s in sigmas_px]
    mse, sigma = min(results)
    return sigma, mse


def ratio_interval(denoised_mse: float, gaussian_mse: float, standard_error: float
                   ) -> tuple[float, float] | None:
    """The denoiser-to-Gaussian ratio over the readout's error on the common offset.

    Both unbiased MSEs carry the same error ``c`` from the noise variance subtracted
    (:attr:`QualityReadout.standard_error`): the ratio ``(d + c) / (g + c)`` for
    ``c`` within ±1 standard error. On a small or nearly flat field that range can be
    much wider than the difference ``d − g`` (which the offset does not affect), e.g. on
    the real OneView pair's held-out half 0.61× reads as 0.35–0.73.

    Parameters
    ----------
    denoised_mse, gaussian_mse : float
        The unbiased MSEs (same units).
    standard_error : float
        The readout's standard error on their common offset (same units).

    Returns
    -------
    (float, float) or None
        Lowest and highest ratio (the lowest can be negative: a denoiser's score within
        the error of zero); None when the error is not finite or the best Gaussian's MSE
        is not above it (no ratio can be read).

    Examples
    --------
    >>> [round(v, 2) for v in ratio_interval(143.0, 233.0, 95.0)]
    [0.35, 0.73]
    """
    d, g, e = float(denoised_mse), float(gaussian_mse), float(standard_error)
    if not (math.isfinite(d) and math.isfinite(g) and math.isfinite(e)) or g <= e:
        return None
    low, high = sorted(((d - e) / (g - e), (d + e) / (g + e)))
    return low, high


@dataclass(frozen=True)
class QualityReadout:
    """Unbiased MSE of the raw frame, the best Gaussian filter and the denoiser.

    MSEs are in the frame's units² at its dose (``mse``) and divided by ``peak²``
    (``mse_normalised``, the denoiser's normalised units); ``ratio_to_gaussian`` is the
    denoiser's unbiased MSE over the best Gaussian's (< 1: the denoiser is better).
    ``standard_error`` (units²) is the statistical error of the noise variance
    subtracted, ``var · √(2 Σρ² / n_px)`` with ρ the autocorrelation of the pair's
    difference (spatially correlated noise counts fewer independent pixels): a
    common offset of all three scores, so their differences are more precise than
    that.
    """

    raw: Score
    gaussian: Score
    denoised: Score | None
    ratio_to_gaussian: float | None
    noise_variance: float
    peak: float
    shift_px: tuple[int, int]
    dose_ratio: float
    n_px: int
    n_pairs: int = 1
    standard_error: float = math.nan

    @property
    def ratio_interval(self) -> tuple[float, float] | None:
        """:attr:`ratio_to_gaussian` over ±1 standard error of the common offset
        (:func:`ratio_interval`; None without a denoiser or a readable ratio)."""
        if self.denoised is None or self.ratio_to_gaussian is None:
            return None
        return ratio_interval(self.denoised.mse, self.gaussian.mse, self.standard_error)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary, with how the numbers were made."""
        out = asdict(self)
        out["shift_px"] = list(self.shift_px)
        interval = self.ratio_interval
        out["ratio_interval"] = None if interval is None else list(interval)
        out["method"] = (
            "unbiased MSE = mean((estimate - B')^2) - var(noise of B'), B' = the independent "
            "frame moved onto the frame by whole pixels and scaled to its dose (r = ratio of "
            "means); var(noise of B') = var(A - B') r / (1 + r); PSNR = 10 log10(peak^2 / "
            "MSE), peak = the frame's expected counts per vacuum pixel; mse in the frame's "
            "units^2, mse_normalised = mse / peak^2")
        return out

    def summary(self) -> str:
        """One line: raw, best Gaussian and denoiser MSE ×10³ (normalised) and PSNR; a score
        within the readout's precision of zero (or below it) is said to be unresolved."""
        error = (1e3 * self.standard_error / self.peak**2
                 if math.isfinite(self.standard_error) else math.nan)

        def show(score: Score) -> str:
            value = 1e3 * score.mse_normalised
            if math.isfinite(error) and value <= error:
                return f"{value:.3g} (not resolved: within ±{error:.2g} of zero)"
            return f"{value:.3g} ({score.psnr_db:.1f} dB)"

        text = (f"unbiased MSE ×10³ (normalised): raw {show(self.raw)}, best Gaussian "
                f"σ={self.gaussian.sigma_px:g} px {show(self.gaussian)}")
        if self.denoised is not None:
            text += f", denoised {show(self.denoised)}"
            if self.ratio_to_gaussian is not None:
                text += f" = {self.ratio_to_gaussian:.2f}× Gaussian"
                text += interval_text(self.ratio_interval)
        pairs = f"; {self.n_pairs} frame pairs" if self.n_pairs > 1 else ""
        offset = f" (±{error:.2g} common offset)" if math.isfinite(error) else ""
        return f"{text}{offset}{pairs}"


def interval_text(interval: tuple[float, float] | None) -> str:
    """`` (0.35–0.73 within the offset's error)``, or "" without an interval."""
    if interval is None:
        return ""
    return f" ({interval[0]:.2f}–{interval[1]:.2f} within the offset's error)"


def _cut_box(shape: tuple[int, int], shift: tuple[int, int],
             box: tuple[int, int, int, int] | None) -> tuple[slice, slice]:
    """Slices of the frame's pixels judged: the overlap with the moved frame ∩ ``box``."""
    ny, nx = shape
    dy, dx = shift
    y0, y1, x0, x1 = max(dy, 0), ny + min(dy, 0), max(dx, 0), nx + min(dx, 0)
    if box is not None:
        by0, by1, bx0, bx1 = box
        y0, y1, x0, x1 = max(y0, by0), min(y1, by1), max(x0, bx0), min(x1, bx1)
    if y1 - y0 < 8 or x1 - x0 < 8:
        raise ValueError("the pair overlaps on fewer than 8×8 px of the judged region")
    return slice(y0, y1), slice(x0, x1)


def quality_readout(raw: Any, denoised: Any | None, independent: Any, *,
                    peak: float | None = None, register: bool = True,
                    box: tuple[int, int, int, int] | None = None,
                    sigmas_px: Sequence[float] = GAUSSIAN_SIGMAS_PX) -> QualityReadout:
    """Score the raw frame, its best Gaussian filter and a denoised frame against a second one.

    Parameters
    ----------
    raw : array-like, shape (y, x)
        The noisy frame ``A`` that was denoised.
    denoised : array-like or None
        The denoiser's estimate of ``A``'s signal, in ``A``'s units (None: raw and
        Gaussian only).
    independent : array-like, shape (y, x)
        An independent exposure ``B`` of the same field (any dose, same detector and
        units as ``A``).
    peak : float, optional
        ``A``'s expected counts per vacuum pixel for the PSNR and the normalised MSE
        (default: the mean of ``A`` over the judged pixels).
    register : bool, optional
        Register ``B`` onto ``A`` (whole pixels); False: they are aligned.
    box : (y0, y1, x0, x1), optional
        Judge only these pixels of ``A`` (e.g. a part held out from training).
    sigmas_px : sequence of float, optional
        Gaussian widths searched.

    Returns
    -------
    QualityReadout

    Raises
    ------
    ValueError
        Images of other shapes or dimensions, NaN/inf, non-positive means, or too small
        an overlap.
    """
    a = _image(raw, "raw frame")
    b = _image(independent, "independent frame")
    if a.shape != b.shape:
        raise ValueError(f"the frame and the independent frame differ in shape: {a.shape} "
                         f"vs {b.shape}")
    est = None if denoised is None else _image(denoised, "denoised frame")
    if est is not None and est.shape != a.shape:
        raise ValueError(f"the denoised frame's shape {est.shape} is not the frame's {a.shape}")
    shift = register_whole_pixels(a, b, register=register)
    cut = _cut_box(a.shape, shift, box)
    _, b_moved = overlap(a, b, shift)
    # b_moved[i, j] pairs with a[i + max(dy, 0), j + max(dx, 0)].
    offset = (max(shift[0], 0), max(shift[1], 0))
    b_cut = b_moved[cut[0].start - offset[0]:cut[0].stop - offset[0],
                    cut[1].start - offset[1]:cut[1].stop - offset[1]]
    a_cut = a[cut]
    r = _ratio(a_cut, b_cut)
    b_scaled = r * b_cut
    variance = noise_variance_from_pair(a_cut, b_cut, dose_ratio=r)
    check_independent(a_cut, b_cut, variance=variance)
    error = variance * math.sqrt(2.0 * _sum_rho2(a_cut - b_scaled) / a_cut.size)
    top = float(a_cut.mean()) if peak is None else float(peak)
    if not top > 0:
        raise ValueError(f"the PSNR peak must be positive, got {top}")
    raw_score = _score(unbiased_mse(a_cut, b_scaled, variance), top)
    sigma, g_mse = best_gaussian(a, b_scaled, variance, sigmas_px=sigmas_px, box=cut)
    gaussian = _score(g_mse, top, sigma)
    den = None if est is None else _score(unbiased_mse(est[cut], b_scaled, variance), top)
    ratio = None if den is None or g_mse <= 0 else den.mse / g_mse
    return QualityReadout(raw_score, gaussian, den, ratio, variance, top, shift, r,
                          int(a_cut.size), standard_error=error)


def _sum_rho2(difference: np.ndarray, max_lag_px: int = 8) -> float:
    """Σ ρ(k)² over lags |k| ≤ max_lag_px of the difference's autocorrelation (1 if white)."""
    d = difference - difference.mean()
    spectrum = np.abs(np.fft.rfft2(d)) ** 2
    corr = np.fft.irfft2(spectrum, s=d.shape)
    if not corr[0, 0] > 0:
        return 1.0
    rho = corr / corr[0, 0]
    lags = np.r_[0:max_lag_px + 1, -max_lag_px:0]
    window = rho[np.ix_(lags % d.shape[0], lags % d.shape[1])]
    return float(max(1.0, np.sum(window**2)))
