"""Fits of the detector noise model of Larsen et al. (2023) to vacuum spectra.

Two per-frame models are fitted to the 1-D spectra of
:func:`napari_lowdose.noise.spectrum.radial_spectrum`:

* ``model="paper"`` — the raw MTF fit of the paper's SOI, Eq. 4::

      S(q̃) = (c1 − c2) / (1 + (q̃/c0)^c3) + c2,      C = c2 / c1

  by default on the magnitude spectrum ``|FFT|`` (SPEC §2: only then does the
  floor obey Eq. 2, ``C² = N0 / (N0 + N_D)``; on the power spectrum it obeys
  ``C = N0 / (N0 + N_D)``).
* ``model="physical"`` — the expected power spectrum of the noise model of
  Eq. 3 (blurred shot noise plus white readout noise)::

      P(q̃) = A / (1 + (q̃/c0)^c3)² + B,      N0 = N_D · B / A

  which recovers c0 and c3 without the low-dose bias of Eq. 4 and gives N0
  for every frame. Its floor is reported as ``C = √(B / (A + B))`` so that
  ``C² = N0 / (N0 + N_D)`` (Eq. 2) holds for it as well.

Across a series, Eq. 2 is fitted to the per-frame floors to give one readout
noise ``N0`` (electrons per pixel) with its R² (paper: N0 ≈ 0.01, R² = 0.94).

Fitting method
--------------
All frames are fitted at once by a batched Levenberg–Marquardt in numpy with a
damping factor per frame. Residuals are taken in log space and weighted by
√(ring count): a ring average of ``n`` periodogram values has a relative
standard deviation ∝ 1/√n, so this is (close to) the maximum-likelihood
weighting and lets the weak high-q floor count as much as the strong low-q
plateau; the known small-sample bias of the log of a ring average (sparse
low-q rings) is subtracted from the data first. c0 and c3 are kept inside
their bounds by a logistic transform, amplitudes are positive by
construction (log parametrisation). Starting values come from the data
(plateau, tail, half-maximum crossing); a second
pass restarts every frame from the series' median shape (a warm start from
the other frames) and keeps whichever solution is better. R² is reported in
linear space, ``1 − Σ(y − ŷ)² / Σ(y − ȳ)²`` over the fitted rings, as in the
paper (which keeps fits with R² ≥ 0.98).

A frame that cannot be fitted (NaN/inf pixels, a constant frame, a failed
fit) gets NaN parameters, ``ok = False`` and a ``message``; no exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.optimize
import scipy.special

from ..io.tables import csv_cell
from .spectrum import SPECTRUM_KINDS, RadialSpectrum, SpectrumKind, radial_spectrum

__all__ = [
    "C0_BOUNDS",
    "C3_BOUNDS",
    "ModelKind",
    "NoiseFitResult",
    "ReadoutFit",
    "fit_noise",
    "fit_noise_frame",
    "fit_readout_noise",
    "fit_spectra",
    "paper_spectrum_model",
    "physical_spectrum_model",
]

ModelKind = Literal["paper", "physical"]
MODEL_KINDS: tuple[str, ...] = ("paper", "physical")
C0_BOUNDS: tuple[float, float] = (0.01, 1.5)
C3_BOUNDS: tuple[float, float] = (0.5, 10.0)

#: Floor of the Eq. 2 curve fitted to the per-frame floors.
_LOG_N0_BOUNDS = (np.log(1e-8), np.log(1e6))


# ---------------------------------------------------------------------------
# Model functions
# ---------------------------------------------------------------------------


def paper_spectrum_model(
    q_norm: np.ndarray | float, c0: float, c1: float, c2: float, c3: float
) -> np.ndarray:
    """Raw MTF spectrum of Larsen et al. (2023), SOI Eq. 4.

    ``S(q̃) = (c1 − c2) / (1 + (q̃/c0)^c3) + c2``

    Parameters
    ----------
    q_norm : array_like
        Normalised frequency ``q / q_N``.
    c0, c3 : float
        Half-maximum frequency and curvature (as in Eq. 1).
    c1, c2 : float
        ``q̃ → 0`` and ``q̃ → ∞`` limits; ``C = c2 / c1``.

    Returns
    -------
    ndarray
        Spectrum values.
    """
    q = np.asarray(q_norm, dtype=np.float64)
    return (c1 - c2) / (1.0 + (q / c0) ** c3) + c2


def physical_spectrum_model(
    q_norm: np.ndarray | float,
    c0: float,
    c3: float,
    amplitude_A: float,
    background_B: float,
) -> np.ndarray:
    """Expected power spectrum of the noise model of Eq. 3.

    ``P(q̃) = A / (1 + (q̃/c0)^c3)² + B`` with ``A = N_D · g²`` (blurred shot
    noise, ``g`` counts per electron) and ``B = N0 · g²`` (white readout noise).

    Parameters
    ----------
    q_norm : array_like
        Normalised frequency ``q / q_N``.
    c0, c3 : float
        MTF parameters of Eq. 1 (``C = 0``).
    amplitude_A, background_B : float
        Shot-noise and readout-noise power.

    Returns
    -------
    ndarray
        Power spectrum values.
    """
    q = np.asarray(q_norm, dtype=np.float64)
    return amplitude_A / (1.0 + (q / c0) ** c3) ** 2 + background_B


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadoutFit:
    """Series readout noise from Eq. 2.

    Attributes
    ----------
    n0_e_per_px : float
        Readout noise ``N0`` in electrons per pixel (NaN if not determinable).
    r2 : float
        R² of ``C² = N0 / (N0 + N_D)`` (``C`` for a paper fit of a power
        spectrum) against the per-frame values.
    n_frames : int
        Frames used.
    method : str
        How ``n0_e_per_px`` was obtained.
    """

    n0_e_per_px: float
    r2: float
    n_frames: int
    method: str


_COLUMNS: tuple[str, ...] = (
    "frame",
    "dose_e_per_A2",
    "frame_dose_e_per_px",
    "c0",
    "c1",
    "c2",
    "c3",
    "amplitude_A",
    "background_B",
    "floor_C",
    "n0_e_per_px",
    "r2",
    "c0_std",
    "c3_std",
    "ok",
    "message",
)


@dataclass(frozen=True, eq=False)
class NoiseFitResult:
    """Per-frame noise-model fits of one frame or a series, plus the Eq. 2 summary.

    Every per-frame attribute is an array of shape ``(n_frames,)``; a frame
    that could not be fitted holds NaN and ``ok = False``.

    Attributes
    ----------
    model : {"paper", "physical"}
        Which model was fitted (Eq. 4 or Eq. 3).
    spectrum_kind : {"magnitude", "power"}
        Which spectrum was fitted.
    frame : ndarray of int
        Frame indices.
    dose_e_per_A2, frame_dose_e_per_px : ndarray
        Frame dose in e⁻/Å² and ``N_D`` in e⁻/px (NaN when unknown).
    c0, c3 : ndarray
        MTF half-maximum frequency (``q / q_N``) and curvature.
    c1, c2 : ndarray
        Eq. 4 plateau and floor (paper model; NaN for the physical model).
    amplitude_A, background_B : ndarray
        Eq. 3 shot- and readout-noise power (physical model; NaN for paper).
    floor_C : ndarray
        Eq. 1 floor: ``c2 / c1`` (paper) or ``√(B / (A + B))`` (physical).
    n0_e_per_px : ndarray
        Per-frame readout noise: ``N_D · B / A`` (physical) or Eq. 2 inverted
        for the frame's ``C`` (paper).
    r2 : ndarray
        Coefficient of determination of the frame's fit (linear space).
    c0_std, c3_std : ndarray
        Standard errors from the fit's covariance.
    ok : ndarray of bool
        Whether the fit succeeded with parameters inside their bounds.
    message : ndarray of str
        ``"ok"`` or why not.
    sampling_A : float or None
        Pixel size in Å/px.
    readout : ReadoutFit
        Series readout noise (Eq. 2).
    q_norm, spectra : ndarray or None
        The fitted spectrum (kept for plotting the fit against the data).
    """

    model: str
    spectrum_kind: str
    frame: np.ndarray
    dose_e_per_A2: np.ndarray
    frame_dose_e_per_px: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    c3: np.ndarray
    amplitude_A: np.ndarray
    background_B: np.ndarray
    floor_C: np.ndarray
    n0_e_per_px: np.ndarray
    r2: np.ndarray
    c0_std: np.ndarray
    c3_std: np.ndarray
    ok: np.ndarray
    message: np.ndarray
    sampling_A: float | None
    readout: ReadoutFit
    q_norm: np.ndarray | None = field(default=None, repr=False)
    spectra: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frame.size)

    def to_columns(self) -> dict[str, np.ndarray]:
        """Per-frame table as a dict of equal-length columns (CSV/DataFrame ready)."""
        return {name: getattr(self, name) for name in _COLUMNS}

    def to_rows(self) -> list[dict[str, Any]]:
        """Per-frame table as a list of ``{column: python scalar}`` dicts."""
        cols = self.to_columns()
        return [{k: v[i].item() for k, v in cols.items()} for i in range(self.n_frames)]

    def summary(self) -> dict[str, Any]:
        """Series summary: model, spectrum kind, N0 (Eq. 2), parameter ranges."""
        ok = self.ok
        return {
            "model": self.model,
            "spectrum_kind": self.spectrum_kind,
            "sampling_A": self.sampling_A,
            "n_frames": self.n_frames,
            "n_ok": int(ok.sum()),
            "n0_e_per_px": self.readout.n0_e_per_px,
            "n0_r2": self.readout.r2,
            "n0_method": self.readout.method,
            "c0_range": _nan_range(self.c0[ok]),
            "c3_range": _nan_range(self.c3[ok]),
            "dose_range_e_per_A2": _nan_range(self.dose_e_per_A2),
        }

    def predict(self, index: int = 0, q_norm: np.ndarray | None = None) -> np.ndarray:
        """Fitted spectrum of frame ``index`` on ``q_norm`` (default: fitted rings)."""
        if q_norm is None:
            if self.q_norm is None:
                raise ValueError("no q_norm stored with this result; pass q_norm")
            q_norm = self.q_norm
        if self.model == "paper":
            return paper_spectrum_model(
                q_norm, self.c0[index], self.c1[index], self.c2[index], self.c3[index]
            )
        return physical_spectrum_model(
            q_norm,
            self.c0[index],
            self.c3[index],
            self.amplitude_A[index],
            self.background_B[index],
        )


def _nan_range(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (float("nan"), float("nan"))
    return (float(x.min()), float(x.max()))


# ---------------------------------------------------------------------------
# Batched Levenberg–Marquardt
# ---------------------------------------------------------------------------


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def _logit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    s = np.clip((x - lo) / (hi - lo), 1e-6, 1 - 1e-6)
    return np.log(s / (1.0 - s))


@dataclass
class _Problem:
    log_q: np.ndarray  # (K,)
    log_y: np.ndarray  # (F, K)
    sw: np.ndarray  # (K,) residual weights
    power: int  # 1: Eq. 4, 2: Eq. 3
    c0_bounds: tuple[float, float]
    c3_bounds: tuple[float, float]
    la_bounds: np.ndarray  # (F, 2) bounds of the log amplitudes
    lb_bounds: np.ndarray

    def unpack(self, p: np.ndarray) -> tuple[np.ndarray, ...]:
        lo0, hi0 = self.c0_bounds
        lo3, hi3 = self.c3_bounds
        s0 = _sigmoid(p[:, 0])
        s3 = _sigmoid(p[:, 1])
        c0 = lo0 + (hi0 - lo0) * s0
        c3 = lo3 + (hi3 - lo3) * s3
        dc0 = (hi0 - lo0) * s0 * (1.0 - s0)
        dc3 = (hi3 - lo3) * s3 * (1.0 - s3)
        return c0, c3, np.exp(p[:, 2]), np.exp(p[:, 3]), dc0, dc3

    def residuals(self, p: np.ndarray, idx: np.ndarray, jac: bool):
        c0, c3, a, b, dc0, dc3 = self.unpack(p)
        lx = self.log_q[None, :] - np.log(c0)[:, None]
        t = np.exp(np.minimum(c3[:, None] * lx, 700.0))
        L = 1.0 / (1.0 + t)
        Lm = L if self.power == 1 else L * L
        aLm = a[:, None] * Lm
        S = aLm + b[:, None]
        r = self.sw * (np.log(S) - self.log_y[idx])
        if not jac:
            return r, None
        inv_S = self.sw / S
        common = self.power * aLm * L * t * inv_S  # ∂(a L^m)/∂(log t) · sw / S, up to sign
        J = np.empty(r.shape + (4,))
        J[..., 0] = common * (c3 / c0 * dc0)[:, None]
        J[..., 1] = -common * lx * dc3[:, None]
        J[..., 2] = aLm * inv_S
        J[..., 3] = b[:, None] * inv_S
        return r, J

    def clip(self, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
        p[:, 0] = np.clip(p[:, 0], -30.0, 30.0)
        p[:, 1] = np.clip(p[:, 1], -30.0, 30.0)
        p[:, 2] = np.clip(p[:, 2], self.la_bounds[idx, 0], self.la_bounds[idx, 1])
        p[:, 3] = np.clip(p[:, 3], self.lb_bounds[idx, 0], self.lb_bounds[idx, 1])
        return p


def _solve_batched(A: np.ndarray, g: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(A, g[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.empty_like(g)
        for i in range(A.shape[0]):
            out[i] = np.linalg.lstsq(A[i], g[i], rcond=None)[0]
        return out


def _batched_lm(
    prob: _Problem, p0: np.ndarray, *, max_iter: int = 100, rtol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise ½‖r‖² for every frame; returns (p, cost, converged)."""
    n = p0.shape[0]
    all_idx = np.arange(n)
    p = prob.clip(p0.copy(), all_idx)
    r, J = prob.residuals(p, all_idx, jac=True)
    cost = 0.5 * np.einsum("fk,fk->f", r, r)
    lam = np.full(n, 1e-3)
    converged = np.zeros(n, dtype=bool)
    eye = np.eye(p.shape[1])
    active = np.isfinite(cost)
    for _ in range(max_iter):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        Ji, ri = J[idx], r[idx]
        H = np.matmul(Ji.transpose(0, 2, 1), Ji)
        g = np.einsum("fkp,fk->fp", Ji, ri)
        d = np.diagonal(H, axis1=1, axis2=2)
        d = d + 1e-12 * d.max(axis=1, keepdims=True) + 1e-300
        A = H + lam[idx, None, None] * d[:, :, None] * eye
        step = _solve_batched(A, -g)
        p_new = prob.clip(p[idx] + step, idx)
        r_new, J_new = prob.residuals(p_new, idx, jac=True)
        cost_new = 0.5 * np.einsum("fk,fk->f", r_new, r_new)
        better = np.isfinite(cost_new) & (cost_new < cost[idx])
        gain = np.where(better, cost[idx] - cost_new, 0.0)
        b_idx = idx[better]
        p[b_idx] = p_new[better]
        r[b_idx] = r_new[better]
        J[b_idx] = J_new[better]
        small = better & (gain <= rtol * np.maximum(cost[idx], 1e-300))
        cost[b_idx] = cost_new[better]
        lam[idx] = np.where(better, np.maximum(lam[idx] * 0.2, 1e-10), lam[idx] * 8.0)
        stuck = lam[idx] > 1e10
        done = small | stuck | (np.abs(step).max(axis=1) < 1e-10)
        converged[idx[done]] = True
        active[idx[done]] = False
    return p, cost, converged


# ---------------------------------------------------------------------------
# Starting values
# ---------------------------------------------------------------------------


def _moving_average(y: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return y
    c = np.cumsum(np.pad(y, ((0, 0), (width // 2, width - 1 - width // 2)), mode="edge"), axis=1)
    c = np.concatenate([np.zeros((y.shape[0], 1)), c], axis=1)
    return (c[:, width:] - c[:, :-width]) / width


def _initial_guess(
    q: np.ndarray,
    y: np.ndarray,
    counts: np.ndarray,
    power: int,
    c3_start: float,
    c0_bounds: tuple[float, float],
    c3_bounds: tuple[float, float],
) -> np.ndarray:
    """Data-driven start: plateau, tail, half-maximum crossing."""
    n_k = q.size
    n_lo = max(3, n_k // 40)
    n_hi = max(3, n_k // 10)
    w = counts[:n_lo].astype(np.float64)
    plateau = (y[:, :n_lo] * w).sum(axis=1) / w.sum()
    tail = np.median(y[:, -n_hi:], axis=1)
    tail = np.minimum(tail, 0.9 * plateau)
    amp = np.maximum(plateau - tail, 1e-3 * plateau)
    smooth = _moving_average(y, max(1, n_k // 32))
    level = tail + 0.5 * amp
    below = smooth < level[:, None]
    has = below.any(axis=1)
    q_half = np.where(has, q[np.argmax(below, axis=1)], q[-1])
    # Half maximum of L (paper, m = 1) is at q̃ = c0; of L² at L = 1/√2.
    t_half = 1.0 if power == 1 else np.sqrt(2.0) - 1.0
    c0 = q_half / t_half ** (1.0 / c3_start)
    c0 = np.clip(c0, c0_bounds[0], c0_bounds[1])
    p = np.empty((y.shape[0], 4))
    p[:, 0] = _logit(c0, *c0_bounds)
    p[:, 1] = _logit(np.full(y.shape[0], c3_start), *c3_bounds)
    p[:, 2] = np.log(amp)
    p[:, 3] = np.log(tail)
    return p


# ---------------------------------------------------------------------------
# Public fitting API
# ---------------------------------------------------------------------------


def _frame_dose(
    dose_e_per_A2: float | np.ndarray | None, sampling_A: float | None, n_frames: int
) -> tuple[np.ndarray, np.ndarray]:
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


def fit_readout_noise(
    frame_dose_e_per_px: np.ndarray,
    floor_C: np.ndarray,
    *,
    spectrum_kind: SpectrumKind = "magnitude",
) -> ReadoutFit:
    """Fit Eq. 2, ``C² = N0 / (N0 + N_D)``, to the floors of a series.

    Parameters
    ----------
    frame_dose_e_per_px : ndarray
        ``N_D`` per frame (electrons per pixel).
    floor_C : ndarray
        Fitted floor ``C`` per frame (Eq. 1). Non-finite entries are ignored.
    spectrum_kind : {"magnitude", "power"}, optional
        Spectrum the floors come from. For ``"power"`` the floor of Eq. 4
        obeys ``C = N0 / (N0 + N_D)`` (SPEC §2), so that form is fitted.

    Returns
    -------
    ReadoutFit
        ``N0`` from an unweighted least-squares fit of the curve to the
        per-frame ``C²`` (or ``C``), with its R².
    """
    if spectrum_kind not in SPECTRUM_KINDS:
        raise ValueError(f"spectrum_kind must be one of {SPECTRUM_KINDS}")
    n_d = np.asarray(frame_dose_e_per_px, dtype=np.float64).ravel()
    c = np.asarray(floor_C, dtype=np.float64).ravel()
    if n_d.shape != c.shape:
        raise ValueError("frame_dose_e_per_px and floor_C must have the same length")
    y = c**2 if spectrum_kind == "magnitude" else c
    good = np.isfinite(n_d) & np.isfinite(y) & (n_d > 0)
    quantity = "C²" if spectrum_kind == "magnitude" else "C"
    method = f"least squares of Eq. 2 on per-frame {quantity}"
    n_good = int(good.sum())
    if n_good == 0:
        return ReadoutFit(float("nan"), float("nan"), 0, method)
    n_d, y = n_d[good], y[good]

    def resid(x: np.ndarray) -> np.ndarray:
        n0 = np.exp(x[0])
        return n0 / (n0 + n_d) - y

    y_c = np.clip(y, 1e-6, 1 - 1e-6)
    x0 = np.log(np.median(n_d * y_c / (1.0 - y_c)))
    x0 = float(np.clip(x0, _LOG_N0_BOUNDS[0] + 1, _LOG_N0_BOUNDS[1] - 1))
    sol = scipy.optimize.least_squares(resid, [x0], bounds=_LOG_N0_BOUNDS, method="trf")
    n0 = float(np.exp(sol.x[0]))
    r2 = _r2(y, y + sol.fun)
    return ReadoutFit(n0, r2, n_good, method)


def _r2(y: np.ndarray, y_fit: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if y.size < 2 or ss_tot <= 0:
        return float("nan")
    return 1.0 - float(np.sum((y - y_fit) ** 2)) / ss_tot


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x)
    x, w = x[order], w[order]
    cw = np.cumsum(w)
    return float(x[np.searchsorted(cw, 0.5 * cw[-1])])


def _log_bias(counts: np.ndarray, kind: str) -> np.ndarray:
    """Expected ``E[log ring average] − log(true value)`` per ring.

    A ring of ``counts`` frequencies holds ``n ≈ counts / 2`` independent
    complex coefficients (Hermitian pairs). Their mean power is Gamma
    distributed, ``E log = log P + ψ(n) − log n``; the mean magnitude
    (Rayleigh, relative variance ``4/π − 1``) has ``≈ −(4/π − 1) / (2n)``.
    Removing this makes the log-space fit unbiased for sparse low-q rings.
    """
    n = np.maximum(np.asarray(counts, dtype=np.float64) / 2.0, 1.0)
    if kind == "power":
        return scipy.special.digamma(n) - np.log(n)
    return -(4.0 / np.pi - 1.0) / (2.0 * n)


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

    Returns
    -------
    NoiseFitResult
        Per-frame parameters, R², flags and the series N0 of Eq. 2: for the
        paper model a least-squares fit of Eq. 2 to the per-frame floors; for
        the physical model the inverse-variance weighted median of the
        per-frame ``log N0 = log(N_D · B / A)`` (robust to the high-dose
        frames whose floor is barely resolved), with the R² of Eq. 2 against
        the per-frame ``C² = B / (A + B)``.
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
    dose, n_d = _frame_dose(dose_e_per_A2, sampling_A, n_frames)
    power = 1 if model == "paper" else 2

    nan = np.full(n_frames, np.nan)
    c0, c3, amp, bg = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    c0_std, c3_std, r2 = nan.copy(), nan.copy(), nan.copy()
    lognr_var = nan.copy()
    ok = np.zeros(n_frames, dtype=bool)
    message = np.full(n_frames, "ok", dtype=object)

    finite = np.all(np.isfinite(y), axis=1)
    positive = finite & np.all(y > 0, axis=1)
    message[~finite] = "non-finite spectrum (NaN/inf pixels in the region)"
    message[finite & ~positive] = "spectrum not positive (constant or empty region)"
    if n_k < 6:
        message[:] = f"too few frequency rings to fit ({n_k} < 6)"
        positive[:] = False
    idx = np.nonzero(positive)[0]

    if idx.size:
        yv = y[idx]
        log_y = np.log(yv) - _log_bias(counts, spectrum.kind)[None, :]
        la_hi = log_y.max(axis=1) + 3.0
        lo = log_y.min(axis=1)
        prob = _Problem(
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
            p0 = _initial_guess(q, yv, counts, power, c3_start, c0_bounds, c3_bounds)
            p, cost, conv = _batched_lm(prob, p0, max_iter=max_iter)
            # Warm start from the rest of the series: median shape, own amplitudes.
            good = conv & np.isfinite(cost)
            if good.any():
                p1 = p0.copy()
                p1[:, 0] = np.median(p[good, 0])
                p1[:, 1] = np.median(p[good, 1])
                p_w, cost_w, conv_w = _batched_lm(prob, p1, max_iter=max_iter)
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
            frac = floor_c**2 if spectrum.kind == "magnitude" else floor_c
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


#: Per-frame CSV columns after ``frame, dose_e_per_A2, dose_e_per_px`` for each model.
FIT_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "paper": ("c0", "c1", "c2", "c3", "floor_C", "n0_e_per_px", "r2", "ok", "message"),
    "physical": ("c0", "c3", "amplitude_A", "background_B", "floor_C", "n0_e_per_px", "r2",
                 "ok", "message"),
}


def fit_table_csv(result: NoiseFitResult) -> str:
    """The per-frame fit table as CSV text (one row per frame).

    Columns: ``frame, dose_e_per_A2, dose_e_per_px``, the parameters of the
    fitted model (Eq. 4 or Eq. 3), ``r2, ok, message``, then ``model``,
    ``spectrum_kind`` and the series ``series_n0_e_per_px`` (Eq. 2), so that
    every row says what produced it.
    """
    import csv
    import io

    columns = result.to_columns()
    columns["dose_e_per_px"] = columns["frame_dose_e_per_px"]
    names = ("frame", "dose_e_per_A2", "dose_e_per_px") + FIT_TABLE_COLUMNS[result.model]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names + ("model", "spectrum_kind", "series_n0_e_per_px"))
    for i in range(result.n_frames):
        cells = [csv_cell(columns[name][i]) for name in names]
        writer.writerow(cells + [result.model, result.spectrum_kind,
                                 repr(float(result.readout.n0_e_per_px))])
    return buf.getvalue()
