"""Azimuthally averaged noise spectra of vacuum regions (Larsen et al. 2023, SOI Eq. 4).

The detector noise model of Larsen et al. (2023) is fitted to "the azimuthally
averaged centred Fourier transform of the vacuum region" of every frame: the
mean is subtracted, the 2-D FFT taken, and the result averaged over rings of
constant normalised frequency ``q̃ = q / q_N = 2 q s`` (Eq. 1). This module
computes that 1-D spectrum for a whole stack of frames with one batched FFT
and one sparse ring-averaging product.

Normalisation
-------------
For a mean-subtracted frame ``x`` of ``n = ny · nx`` pixels with 2-D DFT ``F``
(unnormalised, ``numpy.fft`` convention):

* ``kind="power"``: ``P(q̃) = ⟨|F|²⟩_ring / n``. White noise of variance σ²
  gives ``P = σ²`` at every ``q̃``; data following Eq. 3 give
  ``P(q̃) = N_D · MTF(q̃)² + N0`` (in counts², i.e. electrons² × gain²).
* ``kind="magnitude"`` (default; the curve Eq. 4 and Eq. 2 describe):
  ``M(q̃) = ⟨|F|⟩_ring / √n``. For Gaussian-like noise ``|F|`` is Rayleigh
  distributed, so white noise of variance σ² gives ``M = σ·√π/2 ≈ 0.886 σ``;
  Eq. 3 data give ``M ∝ √(N_D · MTF² + N0)``, whose floor ratio obeys Eq. 2,
  ``C² = N0 / (N0 + N_D)``.

The DC term (removed by the mean subtraction) is never part of the spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.fft
import scipy.sparse

from .mtf import normalised_frequency_grid

__all__ = ["RadialSpectrum", "SpectrumKind", "radial_spectrum"]

SpectrumKind = Literal["magnitude", "power"]
SPECTRUM_KINDS: tuple[str, ...] = ("magnitude", "power")


@dataclass(frozen=True, eq=False)
class RadialSpectrum:
    """Azimuthally averaged 1-D spectra of a stack of frames.

    Attributes
    ----------
    q_norm : ndarray, shape (n_bins,)
        Mean ``q̃ = q / q_N`` of the 2-D frequencies in each ring.
    values : ndarray of float64, shape (n_frames, n_bins)
        Ring averages, normalised as described in the module docstring.
    counts : ndarray of int64, shape (n_bins,)
        Number of 2-D frequencies (full plane) averaged in each ring.
    kind : {"magnitude", "power"}
        Which spectrum ``values`` holds.
    frame_shape : tuple of int
        ``(ny, nx)`` of the analysed region.
    """

    q_norm: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    kind: str
    frame_shape: tuple[int, int]

    @property
    def n_frames(self) -> int:
        """Number of frames (rows of ``values``)."""
        return int(self.values.shape[0])


@lru_cache(maxsize=16)
def _ring_operator(
    shape: tuple[int, int], q_max: float, n_bins: int | None
) -> tuple[scipy.sparse.csr_matrix, np.ndarray, np.ndarray]:
    """Sparse (n_half_pixels, n_bins) ring-averaging matrix for an rfft2 grid.

    The half plane of ``rfft2`` holds every Hermitian pair once, except the
    columns at ``kx = 0`` and (even ``nx``) ``kx = nx/2``, which are their own
    mirror; interior columns therefore get weight 2 so that the average equals
    the full-plane ring average.
    """
    ny, nx = shape
    q = normalised_frequency_grid(shape, rfft=True)
    n_col = q.shape[1]
    col_w = np.full(n_col, 2.0)
    col_w[0] = 1.0
    if nx % 2 == 0:
        col_w[-1] = 1.0
    w = np.broadcast_to(col_w, q.shape).ravel()
    q = q.ravel()
    if n_bins is None:
        dq = 2.0 / min(ny, nx)  # the coarser of the two axis frequency steps
    else:
        dq = q_max / n_bins
    k = np.rint(q / dq).astype(np.int64)  # ring k is centred on k·dq
    k_max = int(np.floor(q_max / dq + 1e-9))
    keep = (k >= 1) & (k <= k_max)
    rows = np.nonzero(keep)[0]
    cols = k[keep] - 1
    counts = np.bincount(cols, weights=w[keep], minlength=k_max)
    q_sum = np.bincount(cols, weights=w[keep] * q[keep], minlength=k_max)
    used = counts > 0
    remap = np.cumsum(used) - 1
    counts = counts[used]
    q_centre = q_sum[used] / counts
    cols = remap[cols]
    data = (w[keep] / counts[cols]).astype(np.float32)
    op = scipy.sparse.csr_matrix(
        (data, (rows, cols)), shape=(q.size, int(used.sum())), dtype=np.float32
    )
    return op, q_centre, np.rint(counts).astype(np.int64)


def radial_spectrum(
    stack: np.ndarray,
    *,
    kind: SpectrumKind = "magnitude",
    q_max: float = 1.0,
    n_bins: int | None = None,
    chunk_frames: int = 64,
    workers: int | None = -1,
) -> RadialSpectrum:
    """Mean-subtracted, azimuthally averaged FFT spectrum of every frame.

    Parameters
    ----------
    stack : ndarray, shape (ny, nx) or (n_frames, ny, nx)
        Vacuum region of one frame or of a series (a 2-D input is one frame).
    kind : {"magnitude", "power"}, optional
        ``|FFT| / √n`` (default, the curve the paper's Eq. 4 describes)
        or ``|FFT|² / n`` (the power spectrum; white noise of
        variance σ² gives σ²).
    q_max : float, optional
        Largest ring centre in units of Nyquist; 1 (default) keeps
        ``q̃ ≤ 1``, ``√2`` includes the corners of the 2-D spectrum.
    n_bins : int, optional
        Number of rings of width ``q_max / n_bins``. By default the width is
        one frequency step of the shorter axis, ``2 / min(ny, nx)``
        (128 rings up to Nyquist for a 256² region).
    chunk_frames : int, optional
        Frames transformed per FFT call (bounds the temporary memory).
    workers : int or None, optional
        Threads for ``scipy.fft`` (``-1``: all cores).

    Returns
    -------
    RadialSpectrum
        ``q_norm`` (ring centres), ``values`` of shape (n_frames, n_bins) and
        the ring ``counts``. A frame containing NaN/inf yields a NaN row; a
        constant frame yields a row of zeros.

    Notes
    -----
    Float32 input is transformed in single precision (after subtracting the
    per-frame mean in double precision); other input in double precision.
    """
    if kind not in SPECTRUM_KINDS:
        raise ValueError(f"kind must be one of {SPECTRUM_KINDS}, got {kind!r}")
    arr = np.asarray(stack)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"stack must have shape (ny, nx) or (frames, ny, nx), got {arr.shape}")
    n_frames, ny, nx = arr.shape
    if ny < 4 or nx < 4:
        raise ValueError(f"region too small for a spectrum: {ny}×{nx} (need at least 4×4)")
    if not q_max > 0:
        raise ValueError(f"q_max must be positive, got {q_max}")
    if n_bins is not None and n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    work_dtype = np.float32 if arr.dtype == np.float32 or arr.dtype.itemsize <= 2 else np.float64
    op, q_centre, counts = _ring_operator((ny, nx), float(q_max), n_bins)
    op = op.astype(work_dtype, copy=False)
    n_pix = ny * nx
    out = np.empty((n_frames, q_centre.size), dtype=np.float64)
    chunk_frames = max(1, int(chunk_frames))
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n_frames, chunk_frames):
            block = arr[start : start + chunk_frames]
            mean = block.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
            x = block.astype(work_dtype, copy=True)
            x -= mean.astype(work_dtype)
            # An exactly constant frame gives zeros, not rounding noise.
            flat_frames = block.max(axis=(1, 2)) == block.min(axis=(1, 2))
            x[flat_frames] = 0
            f = scipy.fft.rfft2(x, workers=workers)
            if kind == "power":
                mag = f.real * f.real
                mag += f.imag * f.imag
            else:
                mag = np.abs(f)
            flat = mag.reshape(mag.shape[0], -1)
            # (n_half, n_bins)^T @ (n_half, frames) → (n_bins, frames)
            out[start : start + flat.shape[0]] = (op.T @ flat.T).T
    if kind == "power":
        out /= n_pix
    else:
        out /= np.sqrt(n_pix)
    return RadialSpectrum(
        q_norm=q_centre, values=out, counts=counts, kind=kind, frame_shape=(ny, nx)
    )
