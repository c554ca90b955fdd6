"""The coherent transfer function of the objective lens (Larsen et al. 2023, Table 1).

Objective lens as in abTEM 1.0 (``abtem.transfer``; Kirkland 2010, Eq. 2.22
and Ch. 3.2): ``C10 = −defocus`` (positive defocus = underfocus),
``C30 = Cs``, ``α = λ k``,

``χ(k) = 2π/λ · (½ C10 α² + ¼ C30 α⁴)``,
``E_t(k) = exp(−(½ π/λ · Δ · α²)²)`` with the focal spread ``Δ`` a 1/e width,

and ``CTF(k) = E_t(k) · exp(−i χ(k))`` multiplies ``FFT(ψ)`` — the
quasi-coherent approximation, exactly what ``abtem.Waves.apply_ctf`` with
``abtem.CTF(defocus=…, Cs=…, focal_spread=…)`` does. No objective aperture.

Speed: the CTF is evaluated in float32/complex64 on one quadrant of the
frequency grid (it is even in ``k_x`` and ``k_y``) and mirrored; ``k²`` grids
are cached per (shape, sampling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .optics import Optics

__all__ = ["apply_ctf", "check_sampling", "ctf_array", "k2_grid"]


def check_sampling(sampling_A: float) -> float:
    s = float(sampling_A)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"sampling_A must be positive, got {sampling_A}")
    return s


@lru_cache(maxsize=8)
def k2_grid(shape: tuple[int, int], sampling_A: float, rfft: bool) -> np.ndarray:
    """``k²`` (1/Å²) on the FFT grid of ``shape`` (rfft: last axis halved), read-only."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny, d=sampling_A)
    kx = np.fft.rfftfreq(nx, d=sampling_A) if rfft else np.fft.fftfreq(nx, d=sampling_A)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    k2.setflags(write=False)
    return k2


@lru_cache(maxsize=8)
def _k2_quadrant(shape: tuple[int, int], sampling_A: float) -> np.ndarray:
    """``k²`` (1/Å²) for the non-negative ``|k_y|, |k_x|`` of the FFT grid, read-only.

    Shape ``(ny // 2 + 1, nx // 2 + 1)``; row ``i`` holds ``|k_y| = i / (ny s)``.
    """
    ny, nx = shape
    ky = np.arange(ny // 2 + 1) / (ny * sampling_A)
    kx = np.arange(nx // 2 + 1) / (nx * sampling_A)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    k2.setflags(write=False)
    return k2


def _mirror_slices(n: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(FFT-grid slice, quadrant slice) pairs covering an axis of length ``n``.

    FFT index ``j`` has ``|frequency|`` index ``min(j, n − j)``: the first
    ``n // 2 + 1`` entries are the quadrant itself, the rest are its rows
    ``n − n // 2 − 1 … 1`` in reverse.
    """
    h = n // 2 + 1
    return ((slice(0, h), slice(0, h)), (slice(h, n), slice(n - h, 0, -1)))


def _ctf_quadrant(shape: tuple[int, int], sampling_A: float, optics: Optics) -> np.ndarray:
    """The CTF of :func:`ctf_array` on the ``|k_y|, |k_x|`` quadrant (it is even in both)."""
    k2 = _k2_quadrant(shape, sampling_A)
    lam = optics.wavelength_A
    # χ = π λ C10 k² + ½ π λ³ C30 k⁴ in float64, wrapped to [−π, π] before float32 trig.
    chi = k2 * (-math.pi * lam * optics.defocus_A + 0.5 * math.pi * lam**3 * optics.cs_A * k2)
    chi -= (2 * math.pi) * np.rint(chi * (1 / (2 * math.pi)))
    chi = chi.astype(np.float32)
    ctf = np.empty(k2.shape, dtype=np.complex64)
    ctf.real = np.cos(chi)
    ctf.imag = np.sin(chi)
    ctf.imag *= -1
    if optics.focal_spread_A > 0:
        arg = (k2 * (0.5 * math.pi * lam * optics.focal_spread_A)).astype(np.float32)
        arg *= arg
        ctf *= np.exp(-arg)
    return ctf


def _shape2(shape: Sequence[int]) -> tuple[int, int]:
    ny, nx = (int(n) for n in shape)
    if ny < 1 or nx < 1:
        raise ValueError(f"shape must be positive, got {tuple(shape)}")
    return (ny, nx)


def ctf_array(shape: tuple[int, int], sampling_A: float, optics: Optics) -> np.ndarray:
    """Coherent transfer function of the objective lens on the FFT grid.

    ``CTF(k) = E_t(k) · exp(−i χ(k))`` with (abTEM 1.0 conventions, Kirkland
    2010 Eq. 2.22 and Ch. 3.2)::

        χ(k)   = 2π/λ (½ C10 α² + ¼ C30 α⁴),   α = λ k,  C10 = −defocus,  C30 = Cs
        E_t(k) = exp(−(½ π/λ · focal_spread · α²)²)

    The temporal envelope multiplies the wave (quasi-coherent approximation),
    as in ``abtem.CTF``; no aperture is applied.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` of the wave.
    sampling_A : float
        Pixel size in Å.
    optics : Optics
        Lens parameters (``blur_A`` is not used here).

    Returns
    -------
    ndarray of complex64, shape ``(ny, nx)``
        In numpy FFT order (zero frequency at ``[0, 0]``); multiply
        ``fft2(ψ)`` by it.
    """
    shape = _shape2(shape)
    quadrant = _ctf_quadrant(shape, check_sampling(sampling_A), optics)
    out = np.empty(shape, dtype=np.complex64)
    for dy, sy in _mirror_slices(shape[0]):
        for dx, sx in _mirror_slices(shape[1]):
            out[dy, dx] = quadrant[sy, sx]
    return out


def apply_ctf(spectrum: np.ndarray, sampling_A: float, optics: Optics) -> np.ndarray:
    """``spectrum × ctf_array(...)`` into a new array, without building the full CTF."""
    quadrant = _ctf_quadrant(spectrum.shape, sampling_A, optics)
    out = np.empty_like(spectrum)
    for dy, sy in _mirror_slices(spectrum.shape[0]):
        for dx, sx in _mirror_slices(spectrum.shape[1]):
            np.multiply(spectrum[dy, dx], quadrant[sy, sx], out=out[dy, dx])
    return out
