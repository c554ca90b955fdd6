"""Batched Levenberg–Marquardt fit of the spectrum models in log space.

The solver behind :func:`napari_lowdose.noise.fitting.fit_spectra`: the Eq. 4
("paper") or Eq. 3 ("physical") spectrum model of
:mod:`.spectrum_models` is fitted to every frame of a series at once.

Fitting method
--------------
All frames are fitted at once by a batched Levenberg–Marquardt in numpy with a
damping factor per frame. Residuals are taken in log space and weighted by
√(ring count): a ring average of ``n`` periodogram values has a relative
standard deviation ∝ 1/√n, so this is (close to) the maximum-likelihood
weighting and lets the weak high-q floor count as much as the strong low-q
plateau; the known small-sample bias of the log of a ring average (sparse
low-q rings, :func:`log_bias`) is subtracted from the data first. c0 and c3
are kept inside their bounds by a logistic transform, amplitudes are positive
by construction (log parametrisation). Starting values come from the data
(plateau, tail, half-maximum crossing, :func:`initial_guess`).

Both models share one form, ``a · L^m + b`` with ``L = 1 / (1 + (q̃/c0)^c3)``:
``m = 1`` for Eq. 4 (``a = c1 − c2``, ``b = c2``) and ``m = 2`` for Eq. 3
(``a = A``, ``b = B``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special

__all__ = ["SpectrumProblem", "batched_lm", "initial_guess", "log_bias"]


# ---------------------------------------------------------------------------
# Batched Levenberg–Marquardt
# ---------------------------------------------------------------------------


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def _logit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    s = np.clip((x - lo) / (hi - lo), 1e-6, 1 - 1e-6)
    return np.log(s / (1.0 - s))


@dataclass
class SpectrumProblem:
    """Log-space residuals of ``a · L^m + b`` for a batch of frames, and their Jacobian.

    Parameters per frame: ``(logit c0, logit c3, log a, log b)``.
    """

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


def batched_lm(
    prob: SpectrumProblem, p0: np.ndarray, *, max_iter: int = 100, rtol: float = 1e-9
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


def initial_guess(
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


def log_bias(counts: np.ndarray, kind: str) -> np.ndarray:
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
