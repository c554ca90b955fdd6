"""Apply the detector noise model of Larsen et al. (2023), Eq. 3, to clean images.

``image = MTF ⊛ Poisson(N_D · ψ) + Poisson(N0)``

Shot noise (Poisson in the number of electrons per pixel, ``N_D = dose · s²``)
is spread by the scintillator's point-spread function, whose Fourier transform
is the MTF of Eq. 1 with ``C = 0``; a readout term, also modelled as Poisson
with mean ``N0`` electrons per pixel, is added after the scintillator and is
therefore white. The MTF is applied with our own FFT on the ``q/q_N`` grid
(SPEC §3: abTEM's MTF works in 1/Å and has no readout term).
"""

import numpy as np

from .mtf import mtf_normalised, normalised_frequency_grid

__all__ = ["apply_detector_noise"]


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
        Random generator or seed.

    Returns
    -------
    counts : ndarray of float32, same shape as ``clean_intensity``
        Simulated detector counts.
    """
    rng = np.random.default_rng(rng)
    clean = np.asarray(clean_intensity, dtype=np.float64)
    if clean.ndim < 2:
        raise ValueError("clean_intensity must have at least 2 dimensions (y, x)")
    if np.any(clean < 0):
        raise ValueError("clean_intensity must be non-negative (it is an electron density)")
    if sampling_A <= 0:
        raise ValueError(f"sampling_A must be positive, got {sampling_A}")
    dose = np.asarray(dose_e_per_A2, dtype=np.float64)
    if np.any(dose < 0):
        raise ValueError("dose_e_per_A2 must be non-negative")
    if n0_e_per_px < 0:
        raise ValueError("n0_e_per_px must be non-negative")
    n_d_e_per_px = dose * sampling_A**2
    # One value per frame broadcast over (y, x).
    n_d = n_d_e_per_px.reshape(n_d_e_per_px.shape + (1, 1)) if dose.ndim else n_d_e_per_px
    electrons = rng.poisson(n_d * clean).astype(np.float64)
    mtf = mtf_normalised(normalised_frequency_grid(clean.shape[-2:], rfft=True), c0, c3)
    blurred = np.fft.irfft2(np.fft.rfft2(electrons) * mtf, s=clean.shape[-2:])
    readout = rng.poisson(n0_e_per_px, size=clean.shape)
    return ((blurred + readout) * counts_per_electron).astype(np.float32)
