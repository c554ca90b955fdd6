"""Fits of the detector noise model of Larsen et al. (2023) to vacuum spectra.

The per-frame fit pipeline: vacuum region → spectra
(:func:`napari_lowdose.noise.spectrum.radial_spectrum`) → one of the two
spectrum models of :mod:`.spectrum_models` per frame →
:class:`~.fit_result.NoiseFitResult`:

* ``model="paper"`` — the raw MTF fit of the paper's SOI, Eq. 4, by default on
  the magnitude spectrum ``|FFT|`` (only then does its floor obey Eq. 2,
  ``C² = N0 / (N0 + N_D)``; on the power spectrum it obeys
  ``C = N0 / (N0 + N_D)``).
* ``model="physical"`` — the expected power spectrum of the noise model of
  Eq. 3, unbiased c0 and c3 and N0 for every frame.

Across a series, Eq. 2 is fitted to the per-frame floors to give one readout
noise ``N0`` (electrons per pixel) with its R² (:mod:`.readout`).

All frames are fitted at once by the batched Levenberg–Marquardt of
:mod:`.solver`; a second pass restarts every frame from the series' median
shape (a warm start from the other frames) and keeps whichever solution is
better. R² is reported in linear space, ``1 − Σ(y − ŷ)² / Σ(y − ȳ)²`` over the
fitted rings, as in the paper (which keeps fits with R² ≥ 0.98).

A frame that cannot be fitted (NaN/inf pixels, a constant frame, a failed
fit) gets NaN parameters, ``ok = False`` and a ``message``; no exception.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fit_result import NoiseFitResult
from .readout import ReadoutFit, eq2_quantity, fit_readout_noise
from .solver import SpectrumProblem, batched_lm, initial_guess, log_bias
from .spectrum import RadialSpectrum, SpectrumKind, radial_spectrum
from .spectrum_models import MODEL_KINDS, ModelKind

__all__ = [
    "C0_BOUNDS",
    "C3_BOUNDS",
    "NON_FINITE_MESSAGE",
    "fit_noise",
    "fit_noise_frame",
    "fit_spectra",
]

C0_BOUNDS: tuple[float, float] = (0.01, 1.5)
C3_BOUNDS: tuple[float, float] = (0.5, 10.0)
#: The message of a frame whose region holds NaN/inf pixels (left out of the fit and of the
#: vacuum check).
NON_FINITE_MESSAGE = "non-finite spectrum (NaN/inf pixels in the region)"


def _frame_dose(
    dose_e_per_A2: float | np.ndarray | None,
    sampling_A: float | None,
    n_frames: int,
    frame_dose_e_per_px: float | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    if frame_dose_e_per_px is not None:
        if dose_e_per_A2 is not None:
            raise ValueError("give dose_e_per_A2 or frame_dose_e_per_px, not both")
        n_d = np.asarray(frame_dose_e_per_px, dtype=np.float64).ravel()
        if n_d.size == 1:
            n_d = np.full(n_frames, n_d.item())
        if n_d.size != n_frames:
            raise ValueError(f"frame_dose_e_per_px has {n_d.size} values for {n_frames} frames")
        if sampling_A is not None and not sampling_A > 0:
            raise ValueError(f"sampling_A must be positive, got {sampling_A}")
        dose = (n_d / float(sampling_A) ** 2 if sampling_A is not None
                else np.full(n_frames, np.nan))
        return dose, n_d
    if dose_e_per_A2 is None:
        dose = np.full(n_frames, np.nan)
    else:
        dose = np.asarray(dose_e_per_A2, dtype=np.float64).ravel()
        if dose.size == 1:
            dose = np.full(n_frames, dose.item())
        if dose.size != n_frames:
            raise ValueError(f"dose_e_per_A2 has {dose.size} values for {n_frames} frames")
    if sampling_A is None:
        n_d = np.full(n_frames, np.nan)
    else:
        if not sampling_A > 0:
            raise ValueError(f"sampling_A must be positive, got {sampling_A}")
        n_d = dose * float(sampling_A) ** 2
    return dose, n_d


def fit_spectra(
    spectrum: RadialSpectrum,
    *,
    model: ModelKind = "paper",
    dose_e_per_A2: float | np.ndarray | None = None,
    sampling_A: float | None = None,
    c0_bounds: tuple[float, float] = C0_BOUNDS,
    c3_bounds: tuple[float, float] = C3_BOUNDS,
    c3_start: float = 2.5,
    max_iter: int = 100,
    keep_spectra: bool = True,
    frame_dose_e_per_px: float | np.ndarray | None = None,
) -> NoiseFitResult:
    """Fit Eq. 4 (``model="paper"``) or Eq. 3 (``"physical"``) to every spectrum.

    Parameters
    ----------
    spectrum : RadialSpectrum
        Output of :func:`radial_spectrum`. The physical model needs
        ``kind="power"``.
    model : {"paper", "physical"}, optional
        Model to fit (see the module docstring).
    dose_e_per_A2 : float or ndarray, optional
        Frame dose (one value, or one per frame) in e⁻/Å²; needed for N0.
    sampling_A : float, optional
        Pixel size in Å/px; ``N_D = dose_e_per_A2 · sampling_A²``.
    c0_bounds, c3_bounds : tuple of float, optional
        Open intervals the fitted c0 and c3 are kept in.
    c3_start : float, optional
        Starting curvature (the paper finds ≈ 2–2.6).
    max_iter : int, optional
        Levenberg–Marquardt iterations per pass.
    keep_spectra : bool, optional
        Store ``q_norm`` and the spectra in the result (for plotting).
    frame_dose_e_per_px : float or ndarray, optional
        ``N_D`` itself (electrons per pixel, one value or one per spectrum) instead of
        ``dose_e_per_A2`` (e.g. from the frames' mean counts, as the frame-pair fit of
        :mod:`.pairs` gets it); the dose in e⁻/Å² is then ``N_D / sampling_A²``.

    Returns
    -------
    NoiseFitResult
        Per-frame parameters, R², flags and the series N0 of Eq. 2: for the
        paper model a least-squares fit of Eq. 2 to the per-frame floors
        (``C²``, or ``C`` on the power spectrum); for the physical model a
        least-squares fit of Eq. 2 to the per-frame ``C² = B / (A + B)``.
    """
    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {model!r}")
    if model == "physical" and spectrum.kind != "power":
        raise ValueError("the physical model (Eq. 3) is fitted to the power spectrum")
    if not (0 < c0_bounds[0] < c0_bounds[1]) or not (0 < c3_bounds[0] < c3_bounds[1]):
        raise ValueError("bounds must be positive, increasing pairs")
    q = np.asarray(spectrum.q_norm, dtype=np.float64)
    y = np.asarray(spectrum.values, dtype=np.float64)
    counts = np.asarray(spectrum.counts, dtype=np.float64)
    n_frames, n_k = y.shape
    dose, n_d = _frame_dose(dose_e_per_A2, sampling_A, n_frames, frame_dose_e_per_px)
    power = 1 if model == "paper" else 2

    nan = np.full(n_frames, np.nan)
    c0, c3, amp, bg = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    c0_std, c3_std, r2 = nan.copy(), nan.copy(), nan.copy()
    lognr_var = nan.copy()
    ok = np.zeros(n_frames, dtype=bool)
    message = np.full(n_frames, "ok", dtype=object)

    finite = np.all(np.isfinite(y), axis=1)
    positive = finite & np.all(y > 0, axis=1)
    message[~finite] = NON_FINITE_MESSAGE
    message[finite & ~positive] = "spectrum not positive (constant or empty region)"
    if n_k < 6:
        message[:] = f"too few frequency rings to fit ({n_k} < 6)"
        positive[:] = False
    idx = np.nonzero(positive)[0]

    if idx.size:
        yv = y[idx]
        log_y = np.log(yv) - log_bias(counts, spectrum.kind)[None, :]
        la_hi = log_y.max(axis=1) + 3.0
        lo = log_y.min(axis=1)
        prob = SpectrumProblem(
            log_q=np.log(q),
            log_y=log_y,
            sw=np.sqrt(counts / counts.mean()),
            power=power,
            c0_bounds=c0_bounds,
            c3_bounds=c3_bounds,
            la_bounds=np.stack([lo - 12.0, la_hi], axis=1),
            lb_bounds=np.stack([lo - 25.0, la_hi], axis=1),
        )
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            p0 = initial_guess(q, yv, counts, power, c3_start, c0_bounds, c3_bounds)
            p, cost, conv = batched_lm(prob, p0, max_iter=max_iter)
            # Warm start from the rest of the series: median shape, own amplitudes.
            good = conv & np.isfinite(cost)
            if good.any():
                p1 = p0.copy()
                p1[:, 0] = np.median(p[good, 0])
                p1[:, 1] = np.median(p[good, 1])
                p_w, cost_w, conv_w = batched_lm(prob, p1, max_iter=max_iter)
                take = np.isfinite(cost_w) & (~np.isfinite(cost) | (cost_w < cost * (1 - 1e-9)))
                p[take], cost[take], conv[take] = p_w[take], cost_w[take], conv_w[take]
            r_fin, J_fin = prob.residuals(p, np.arange(idx.size), jac=True)
            H = np.matmul(J_fin.transpose(0, 2, 1), J_fin)
            s2 = 2.0 * cost / max(n_k - 4, 1)
            try:
                cov = np.linalg.pinv(H) * s2[:, None, None]
            except np.linalg.LinAlgError:
                cov = np.full_like(H, np.nan)
            pc0, pc3, pa, pb, dc0, dc3 = prob.unpack(p)
            shape = 1.0 / (1.0 + (q[None, :] / pc0[:, None]) ** pc3[:, None])
            pred = pa[:, None] * shape**power + pb[:, None]
            ss_res = np.sum((yv - pred) ** 2, axis=1)
            ss_tot = np.sum((yv - yv.mean(axis=1, keepdims=True)) ** 2, axis=1)
            fr2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
        fin = np.isfinite(cost) & np.all(np.isfinite(p), axis=1)
        c0[idx] = np.where(fin, pc0, np.nan)
        c3[idx] = np.where(fin, pc3, np.nan)
        amp[idx] = np.where(fin, pa, np.nan)
        bg[idx] = np.where(fin, pb, np.nan)
        r2[idx] = np.where(fin, fr2, np.nan)
        c0_std[idx] = np.sqrt(np.abs(cov[:, 0, 0])) * dc0
        c3_std[idx] = np.sqrt(np.abs(cov[:, 1, 1])) * dc3
        lognr_var[idx] = cov[:, 3, 3] + cov[:, 2, 2] - 2 * cov[:, 2, 3]
        sub_ok = fin & conv
        sub_msg = np.full(idx.size, "ok", dtype=object)
        sub_msg[~conv] = f"not converged in {max_iter} iterations"
        tol0 = 1e-3 * (c0_bounds[1] - c0_bounds[0])
        tol3 = 1e-3 * (c3_bounds[1] - c3_bounds[0])
        at0 = (pc0 - c0_bounds[0] < tol0) | (c0_bounds[1] - pc0 < tol0)
        at3 = (pc3 - c3_bounds[0] < tol3) | (c3_bounds[1] - pc3 < tol3)
        sub_msg[at0] = f"c0 at its bound {c0_bounds}: no MTF fall-off in range"
        sub_msg[at3 & ~at0] = f"c3 at its bound {c3_bounds}"
        sub_ok &= ~(at0 | at3)
        sub_msg[~fin] = "fit failed (non-finite result)"
        ok[idx] = sub_ok
        message[idx] = sub_msg
        # A failed fit gives a NaN row.
        bad = idx[~fin]
        for arr in (c0, c3, amp, bg, r2, c0_std, c3_std):
            arr[bad] = np.nan

    if model == "paper":
        c1 = amp + bg
        c2 = bg.copy()
        floor_c = c2 / c1
        amplitude_A, background_B = nan.copy(), nan.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = floor_c**2 if eq2_quantity(model, spectrum.kind) == "C²" else floor_c
            n0 = n_d * frac / (1.0 - frac)
        readout = fit_readout_noise(
            n_d[ok],
            floor_c[ok],
            spectrum_kind=spectrum.kind,  # type: ignore[arg-type]
        )
    else:
        c1, c2 = nan.copy(), nan.copy()
        amplitude_A, background_B = amp, bg
        with np.errstate(divide="ignore", invalid="ignore"):
            floor_c = np.sqrt(bg / (amp + bg))
            n0 = n_d * bg / amp
        # Series N0: Eq. 2 fitted to the per-frame C² = B / (A + B). A weighted median
        # of per-frame N0 was tried first, but at high dose B sits at its bound (N0 ≈ 0
        # with a tiny apparent variance) and dragged the series value to zero.
        readout = fit_readout_noise(n_d[ok], floor_c[ok], spectrum_kind="magnitude")
        readout = ReadoutFit(readout.n0_e_per_px, readout.r2, readout.n_frames,
                             "least squares of Eq. 2 on per-frame C² = B/(A+B)")

    return NoiseFitResult(
        model=model,
        spectrum_kind=spectrum.kind,
        frame=np.arange(n_frames),
        dose_e_per_A2=dose,
        frame_dose_e_per_px=n_d,
        c0=c0,
        c1=c1,
        c2=c2,
        c3=c3,
        amplitude_A=amplitude_A,
        background_B=background_B,
        floor_C=floor_c,
        n0_e_per_px=n0,
        r2=r2,
        c0_std=c0_std,
        c3_std=c3_std,
        ok=ok,
        message=message.astype(str),
        sampling_A=None if sampling_A is None else float(sampling_A),
        readout=readout,
        q_norm=q if keep_spectra else None,
        spectra=y if keep_spectra else None,
    )


def fit_noise(
    stack: np.ndarray,
    dose_e_per_A2: float | np.ndarray | None = None,
    sampling_A: float | None = None,
    *,
    model: ModelKind = "paper",
    spectrum_kind: SpectrumKind | None = None,
    q_max: float = 1.0,
    n_bins: int | None = None,
    c0_bounds: tuple[float, float] = C0_BOUNDS,
    c3_bounds: tuple[float, float] = C3_BOUNDS,
    workers: int | None = -1,
    keep_spectra: bool = True,
) -> NoiseFitResult:
    """Spectra and noise-model fits of a vacuum region, one frame or a series.

    Parameters
    ----------
    stack : ndarray, shape (ny, nx) or (n_frames, ny, nx)
        Vacuum region (a 2-D array is one frame).
    dose_e_per_A2 : float or ndarray, optional
        Frame dose in e⁻/Å², one value or one per frame.
    sampling_A : float, optional
        Pixel size in Å/px.
    model : {"paper", "physical"}, optional
        ``"paper"`` (Eq. 4, reproduces the paper) or ``"physical"`` (Eq. 3 on
        the power spectrum, unbiased c0/c3 and per-frame N0).
    spectrum_kind : {"magnitude", "power"}, optional
        Defaults to ``"magnitude"`` for the paper model and ``"power"`` for the
        physical model (which requires it).
    q_max, n_bins : optional
        Passed to :func:`radial_spectrum`.
    c0_bounds, c3_bounds : tuple of float, optional
        Parameter bounds.
    workers : int or None, optional
        FFT threads.
    keep_spectra : bool, optional
        Keep the spectra in the result.

    Returns
    -------
    NoiseFitResult
        See :func:`fit_spectra`.
    """
    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {model!r}")
    if spectrum_kind is None:
        spectrum_kind = "magnitude" if model == "paper" else "power"
    spec = radial_spectrum(stack, kind=spectrum_kind, q_max=q_max, n_bins=n_bins, workers=workers)
    return fit_spectra(
        spec,
        model=model,
        dose_e_per_A2=dose_e_per_A2,
        sampling_A=sampling_A,
        c0_bounds=c0_bounds,
        c3_bounds=c3_bounds,
        keep_spectra=keep_spectra,
    )


def fit_noise_frame(
    image: np.ndarray,
    dose_e_per_A2: float | None = None,
    sampling_A: float | None = None,
    **kwargs: Any,
) -> NoiseFitResult:
    """Fit one 2-D frame; a :class:`NoiseFitResult` with one row.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Vacuum region of one frame.
    dose_e_per_A2 : float, optional
        Frame dose in e⁻/Å².
    sampling_A : float, optional
        Pixel size in Å/px.
    **kwargs
        Passed to :func:`fit_noise` (``model``, ``spectrum_kind`` …).

    Returns
    -------
    NoiseFitResult
        One-row result.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    return fit_noise(img[None], dose_e_per_A2, sampling_A, **kwargs)
