"""The parametric MTF of Larsen et al. (2023), Eq. 1, on a q/q_N grid.

Spatial frequency is normalised to Nyquist, ``q̃ = q / q_N = 2 q s`` with ``s``
the sampling in Å/px, so ``q̃`` runs from 0 to 1 along the axes of the 2-D
spectrum and to √2 in its corners. On that scale the MTF does not depend on
the sampling.
"""

import numpy as np

__all__ = ["mtf_normalised", "normalised_frequency_grid"]


def normalised_frequency_grid(shape: tuple[int, int], *, rfft: bool = False) -> np.ndarray:
    """Return ``q̃ = q / q_N`` for every element of a 2-D FFT of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the real-space image.
    rfft : bool, optional
        If True, the grid matches ``numpy.fft.rfft2`` output (last axis halved).

    Returns
    -------
    q_norm : ndarray of float64
        Radial normalised frequency, 0 at DC, 1 at Nyquist along an axis.
    """
    ny, nx = shape
    fy = np.fft.fftfreq(ny)
    fx = np.fft.rfftfreq(nx) if rfft else np.fft.fftfreq(nx)
    # Frequencies in cycles/px span [-0.5, 0.5); Nyquist is 0.5 cycles/px.
    return 2.0 * np.hypot(fy[:, None], fx[None, :])


def mtf_normalised(
    q_norm: np.ndarray | float, c0: float, c3: float, floor_C: float = 0.0
) -> np.ndarray:
    """Normalised MTF of Larsen et al. (2023), Eq. 1.

    ``MTF(q̃) = (1 − C) / (1 + (q̃ / c0)^c3) + C``

    Parameters
    ----------
    q_norm : array_like
        Spatial frequency in units of Nyquist (``q / q_N``).
    c0 : float
        ``q̃`` at half maximum (of the blurred part).
    c3 : float
        Curvature; 2 is Lorentzian-like, large values approach a step.
    floor_C : float, optional
        The ``q̃ → ∞`` floor ``C``. The detector's own MTF, applied to shot
        noise in Eq. 3, has ``C = 0``; a non-zero ``C`` appears in fits because
        of readout noise (Eq. 2).

    Returns
    -------
    ndarray
        MTF values, 1 at ``q̃ = 0``.
    """
    if c0 <= 0:
        raise ValueError(f"c0 must be positive, got {c0}")
    q = np.asarray(q_norm, dtype=np.float64)
    return (1.0 - floor_C) / (1.0 + (q / c0) ** c3) + floor_C
