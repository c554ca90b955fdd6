"""Apply the detector noise model of Larsen et al. (2023), Eq. 3, to clean images.

``image = MTF ⊛ Poisson(N_D · ψ) + Poisson(N0)``

Shot noise (Poisson in the number of electrons per pixel, ``N_D = dose · s²``)
is spread by the scintillator's point-spread function, whose Fourier transform
is the MTF of Eq. 1 with ``C = 0``; a readout term, also modelled as Poisson
with mean ``N0`` electrons per pixel, is added after the scintillator and is
therefore white. The MTF is applied with our own FFT on the ``q/q_N`` grid
(abTEM's MTF works in 1/Å and has no readout term).

Beyond Eq. 3, two optional terms model the excess noise of scintillator cameras
(``gain_spread``, ``white_excess``; both 0 by default): a spread of each electron's
signal, before the MTF, and white noise proportional to the signal, after it. Eq. 3
alone gives a pixel variance well below ``N_D`` (the MTF spreads each electron's
signal over several pixels); real scintillator frames can show several times ``N_D``
at their stated gain (2.6 × for the OneView pair in ``shared/data/real-oneview``).

Speed
-----
Every draw is an exact Poisson draw; only the way it is made depends on the
mean, chosen so that the result depends on the generator's state alone (not
on the number of CPUs):

* dense (mean ≥ :data:`SPARSE_MAX_E_PER_PX` somewhere): numpy's Poisson
  sampler; arrays of at least ``2 · POISSON_BLOCK`` pixels are cut into equal
  blocks of at least :data:`POISSON_BLOCK` pixels drawn in threads, each block
  with its own generator seeded from ``rng`` (numpy releases the GIL there);
* sparse (all means below :data:`SPARSE_MAX_E_PER_PX`, e.g. the readout noise
  ``N0 ≈ 0.01`` or frames of a few e⁻/Å²): a Poisson process of rate ``λ_max``
  per pixel, ``K ~ Poisson(λ_max · n_px)`` events at uniformly random pixels,
  each kept with probability ``λ / λ_max`` (thinning) — the counts per pixel
  are then independent ``Poisson(λ)``, at a cost ∝ ``K`` instead of ``n_px``.

The MTF is applied in float32 with ``scipy.fft`` (real FFTs); electron
counts are exact in float32 up to 2²⁴ per pixel. ``workers`` sets the threads
of both (all CPUs by default) and does not change the result.
"""

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import scipy.fft

from ..io.units import electrons_per_pixel
from .mtf import normalised_frequency_grid

__all__ = ["POISSON_BLOCK", "SPARSE_MAX_E_PER_PX", "apply_detector_noise", "n_threads"]

#: Least number of pixels per independently seeded block of dense Poisson draws.
POISSON_BLOCK = 1 << 16
#: Largest mean (e⁻/px) for which Poisson counts are drawn by sparse thinning.
SPARSE_MAX_E_PER_PX = 0.25

_SEED_HIGH = np.iinfo(np.int64).max


def _n_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def n_threads(workers: int) -> int:
    """Threads for ``workers`` in the ``scipy.fft`` convention.

    ``n ≥ 1``: ``n`` threads; ``-1``: all usable CPUs; ``-k``: all but ``k − 1``.
    """
    workers = int(workers)
    if workers == 0:
        raise ValueError("workers must not be 0")
    if workers > 0:
        return workers
    return max(1, _n_cpus() + 1 + workers)


def _poisson_dense(
    rng: np.random.Generator, lam: np.ndarray, out: np.ndarray, threads: int
) -> None:
    """Add ``Poisson(lam)`` draws to the flat float32 ``out``.

    Arrays of fewer than ``2 · POISSON_BLOCK`` pixels are drawn by ``rng``
    itself; larger ones in equal blocks of at least ``POISSON_BLOCK`` pixels,
    in threads, each block with a generator seeded from ``rng``.
    """
    n_blocks = lam.size // POISSON_BLOCK
    if n_blocks <= 1:
        out += rng.poisson(lam)
        return
    seeds = rng.integers(0, _SEED_HIGH, size=n_blocks)
    edges = np.linspace(0, lam.size, n_blocks + 1).astype(np.int64)

    def draw(i: int) -> None:
        sl = slice(int(edges[i]), int(edges[i + 1]))
        out[sl] += np.random.Generator(np.random.PCG64(int(seeds[i]))).poisson(lam[sl])

    threads = min(n_blocks, threads)
    if threads == 1:
        for i in range(n_blocks):
            draw(i)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(draw, range(n_blocks)))


def _poisson_sparse(
    rng: np.random.Generator, lam: np.ndarray | float, lam_max: float, out: np.ndarray
) -> None:
    """Add ``Poisson(lam)`` draws to the flat ``out`` by thinning a rate-``lam_max`` process.

    ``lam`` is a flat array or a scalar (then no thinning is needed).
    """
    n_px = out.size
    n_events = int(rng.poisson(lam_max * n_px))
    if n_events == 0:
        return
    idx = rng.integers(0, n_px, size=n_events)
    if not np.isscalar(lam):
        keep = rng.random(n_events) * lam_max < lam[idx]
        idx = idx[keep]
    out += np.bincount(idx, minlength=n_px).astype(np.float32, copy=False)


def _add_poisson(
    rng: np.random.Generator, lam: np.ndarray | float, out: np.ndarray, threads: int
) -> None:
    """Add exact ``Poisson(lam)`` counts to the flat float32 array ``out``."""
    lam_max = float(np.max(lam)) if not np.isscalar(lam) else float(lam)
    if lam_max <= 0:
        return
    if lam_max < SPARSE_MAX_E_PER_PX:
        _poisson_sparse(rng, lam, lam_max, out)
    elif np.isscalar(lam):
        _poisson_dense(rng, np.full(out.size, lam_max), out, threads)
    else:
        _poisson_dense(rng, lam, out, threads)


@lru_cache(maxsize=16)
def _log_q_norm(shape: tuple[int, int]) -> np.ndarray:
    """``log q̃`` on the rfft2 grid of ``shape`` (float32, read-only; DC is ``-inf``)."""
    q = normalised_frequency_grid(shape, rfft=True)
    with np.errstate(divide="ignore"):
        log_q = np.log(q).astype(np.float32)
    log_q.setflags(write=False)
    return log_q


def _mtf_rfft(shape: tuple[int, int], c0: float, c3: float) -> np.ndarray:
    """Eq. 1 with ``C = 0`` on the rfft2 grid, float32: ``1 / (1 + (q̃/c0)^c3)``."""
    if c0 <= 0 or c3 <= 0:
        raise ValueError(f"c0 and c3 must be positive, got c0={c0}, c3={c3}")
    arg = np.float32(c3) * (_log_q_norm(shape) - np.float32(math.log(c0)))
    # exp(-inf) = 0 at DC gives MTF = 1; large arguments saturate to MTF = 0.
    with np.errstate(over="ignore"):
        mtf = np.exp(arg)
    mtf += 1.0
    np.reciprocal(mtf, out=mtf)
    return mtf


def apply_detector_noise(
    clean_intensity: np.ndarray,
    dose_e_per_A2: float | np.ndarray,
    sampling_A: float,
    *,
    c0: float,
    c3: float,
    n0_e_per_px: float,
    counts_per_electron: float = 1.0,
    rng: np.random.Generator | int | None = None,
    workers: int = -1,
    gain_spread: float = 0.0,
    white_excess: float = 0.0,
) -> np.ndarray:
    """Turn clean image intensity into a noisy detector frame (Eq. 3).

    Parameters
    ----------
    clean_intensity : ndarray, shape (..., ny, nx)
        Noise-free intensity normalised so that vacuum is 1 (a probability
        density of electrons, ``ψ``). Leading axes are frames.
    dose_e_per_A2 : float or ndarray
        Frame dose in e⁻/Å²; an array must broadcast against the leading axes
        (one value per frame).
    sampling_A : float
        Pixel size in Å/px; ``N_D = dose_e_per_A2 · sampling_A²`` electrons/px.
    c0, c3 : float
        MTF parameters of Eq. 1 (``C = 0`` for the detector's own MTF).
    n0_e_per_px : float
        Mean readout noise ``N0`` in electrons per pixel (Eq. 2, 3).
    counts_per_electron : float, optional
        Detector gain: recorded counts per electron.
    rng : numpy.random.Generator or int or None
        Random generator or seed. The result depends only on its state (the
        draws are exact Poisson draws; see the module notes on how they are
        made fast), not on ``workers``.
    workers : int, optional
        Threads for the FFTs and the Poisson draws, ``scipy.fft`` convention
        (``-1``: all CPUs; pass 1 in process pools with one thread each).
    gain_spread : float, optional
        Beyond Eq. 3: the variance ``γ`` of one electron's signal (its mean is 1). A
        pixel's ``n`` electrons then give ``Gamma(n/γ, γ)`` (mean ``n``, variance ``γ n``)
        before the MTF, so the shot noise's variance is ``(1 + γ) N_D ψ``
        (scintillator gain spread; still blurred by the MTF). 0: Eq. 3's Poisson counts.
    white_excess : float, optional
        Beyond Eq. 3: Gaussian noise of variance ``κ N_D ψ`` added after the MTF, so
        white (e.g. the light's own shot noise in a scintillator camera; it scales with
        the signal, unlike the readout ``N0``). 0: none. With either option the random
        stream differs from Eq. 3's only after its Poisson draws.

    Returns
    -------
    counts : ndarray of float32, same shape as ``clean_intensity``
        Simulated detector counts.
    """
    rng = np.random.default_rng(rng)
    clean = np.asarray(clean_intensity)
    if clean.ndim < 2:
        raise ValueError("clean_intensity must have at least 2 dimensions (y, x)")
    if not np.issubdtype(clean.dtype, np.floating):
        clean = clean.astype(np.float64)
    if clean.size and clean.min() < 0:
        raise ValueError("clean_intensity must be non-negative (it is an electron density)")
    if sampling_A <= 0:
        raise ValueError(f"sampling_A must be positive, got {sampling_A}")
    dose = np.asarray(dose_e_per_A2, dtype=np.float64)
    if np.any(dose < 0):
        raise ValueError("dose_e_per_A2 must be non-negative")
    if n0_e_per_px < 0:
        raise ValueError("n0_e_per_px must be non-negative")
    if not (gain_spread >= 0 and white_excess >= 0):
        raise ValueError("gain_spread and white_excess must be non-negative")
    n_d_e_per_px = electrons_per_pixel(dose, sampling_A)
    # One value per frame broadcast over (y, x).
    n_d = n_d_e_per_px.reshape(n_d_e_per_px.shape + (1, 1)) if dose.ndim else n_d_e_per_px
    lam = np.broadcast_to(np.multiply(n_d, clean, dtype=np.float64), clean.shape)
    lam = np.ascontiguousarray(lam).reshape(-1)

    threads = n_threads(workers)
    electrons = np.zeros(clean.shape, dtype=np.float32)
    _add_poisson(rng, lam, electrons.reshape(-1), threads)
    if gain_spread > 0:
        hit = electrons > 0
        electrons[hit] = rng.gamma(electrons[hit] / gain_spread, gain_spread)
    shape = clean.shape[-2:]
    spectrum = scipy.fft.rfft2(electrons, workers=threads, overwrite_x=True)
    spectrum *= _mtf_rfft(shape, c0, c3)
    counts = scipy.fft.irfft2(spectrum, s=shape, workers=threads, overwrite_x=True)
    if white_excess > 0:
        sd = np.sqrt(np.float32(white_excess) * lam.astype(np.float32)).reshape(counts.shape)
        counts += sd * rng.standard_normal(counts.shape, dtype=np.float32)
    _add_poisson(rng, float(n0_e_per_px), counts.reshape(-1), threads)
    if counts_per_electron != 1.0:
        counts *= np.float32(counts_per_electron)
    return counts.astype(np.float32, copy=False)
