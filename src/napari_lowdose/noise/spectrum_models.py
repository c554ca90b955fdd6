"""The two spectrum models fitted to vacuum spectra (Larsen et al. 2023).

* :func:`paper_spectrum_model` — the raw MTF spectrum of the paper's SOI,
  Eq. 4::

      S(q̃) = (c1 − c2) / (1 + (q̃/c0)^c3) + c2,      C = c2 / c1

  fitted by default to the magnitude spectrum ``|FFT|``: only then does its
  floor obey Eq. 2, ``C² = N0 / (N0 + N_D)`` (white readout noise adds in
  power, so on the power spectrum the floor obeys ``C = N0 / (N0 + N_D)``).
* :func:`physical_spectrum_model` — the expected power spectrum of the noise
  model of Eq. 3 (blurred shot noise plus white readout noise)::

      P(q̃) = A / (1 + (q̃/c0)^c3)² + B,      N0 = N_D · B / A

  which recovers c0 and c3 without the low-dose bias of Eq. 4 and gives N0
  for every frame. Its floor is reported as ``C = √(B / (A + B))`` so that
  ``C² = N0 / (N0 + N_D)`` (Eq. 2) holds for it as well.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["MODEL_KINDS", "ModelKind", "paper_spectrum_model", "physical_spectrum_model"]

ModelKind = Literal["paper", "physical"]
MODEL_KINDS: tuple[str, ...] = ("paper", "physical")


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


