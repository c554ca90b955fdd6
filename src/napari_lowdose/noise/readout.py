"""Series readout noise N0 from Eq. 2 of Larsen et al. (2023).

Eq. 2 links the floor ``C`` of the fitted MTF spectrum to the frame dose
``N_D`` (electrons per pixel) and the readout noise ``N0``::

    C² = N0 / (N0 + N_D)

It holds for ``C`` of a paper (Eq. 4) fit of the magnitude spectrum and for
the floor ``√(B / (A + B))`` of a physical (Eq. 3) fit. A paper fit of the
*power* spectrum has its fitted amplitudes already squared, so there the
floor itself obeys ``C = N0 / (N0 + N_D)``.

* :func:`fit_readout_noise` — N0 and R² from the per-frame floors of a series
  (paper: N0 ≈ 0.01, R² = 0.94).
* :func:`eq2_plot_data` — the points and the Eq. 2 curve of a fit result, in
  the quantity that was fitted (``C²`` or ``C``), as both the CLI figure and
  the napari dock draw them (cf. the paper's Fig. 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.optimize

from .spectrum import SPECTRUM_KINDS, SpectrumKind

if TYPE_CHECKING:
    from .fit_result import NoiseFitResult

__all__ = ["Eq2PlotData", "ReadoutFit", "eq2_plot_data", "eq2_quantity", "fit_readout_noise"]

#: Floor of the Eq. 2 curve fitted to the per-frame floors.
_LOG_N0_BOUNDS = (np.log(1e-8), np.log(1e6))


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
        obeys ``C = N0 / (N0 + N_D)`` (its fitted amplitudes are powers
        already), so that form is fitted.

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


def eq2_quantity(model: str, spectrum_kind: str) -> str:
    """Which power of the floor ``C`` obeys Eq. 2 for a fit: ``"C²"`` or ``"C"``.

    Parameters
    ----------
    model : {"paper", "physical"}
        Fitted spectrum model (Eq. 4 or Eq. 3).
    spectrum_kind : {"magnitude", "power"}
        Fitted spectrum.

    Returns
    -------
    str
        ``"C"`` for a paper (Eq. 4) fit of the power spectrum, whose floor is
        a ratio of powers already; ``"C²"`` otherwise (Eq. 2 as printed).
    """
    return "C" if model == "paper" and spectrum_kind == "power" else "C²"


@dataclass(frozen=True)
class Eq2PlotData:
    """What the Eq. 2 panel of a noise fit shows (cf. the paper's Fig. 6).

    Attributes
    ----------
    n_d : ndarray
        Frame dose ``N_D`` in e⁻/px, one per frame (NaN when unknown).
    y : ndarray
        Per-frame ``C²`` or ``C`` (see ``quantity``), one per frame.
    used : ndarray of bool
        Frames that enter the Eq. 2 fit: fitted successfully, with a positive
        finite ``N_D``.
    quantity : {"C²", "C"}
        What ``y`` and ``curve`` are (:func:`eq2_quantity`).
    grid, curve : ndarray
        Eq. 2, ``N0 / (N0 + N_D)``, on a log grid of ``N_D`` over the used
        frames; empty when the series N0 is not finite.
    n0_e_per_px, r2 : float
        Series readout noise and the R² of Eq. 2.
    """

    n_d: np.ndarray
    y: np.ndarray
    used: np.ndarray
    quantity: str
    grid: np.ndarray
    curve: np.ndarray
    n0_e_per_px: float
    r2: float


def eq2_plot_data(result: NoiseFitResult, n_points: int = 200) -> Eq2PlotData:
    """The measured points and the Eq. 2 curve of a noise fit, ready to plot.

    ``y`` is the quantity the series N0 was fitted to (:func:`eq2_quantity`):
    ``C²`` for a paper fit of the magnitude spectrum and for a physical fit,
    ``C`` for a paper fit of the power spectrum. The curve is Eq. 2 with the
    series ``N0``, so the points scatter about it with the R² of the fit.

    Parameters
    ----------
    result : NoiseFitResult
        Output of :func:`~.fitting.fit_noise` or :func:`~.fitting.fit_spectra`.
    n_points : int, optional
        Points of the curve.

    Returns
    -------
    Eq2PlotData
        Per-frame ``N_D`` and ``y``, the mask of frames used and the curve.
    """
    n_d = np.asarray(result.frame_dose_e_per_px, dtype=float)
    floor_c = np.asarray(result.floor_C, dtype=float)
    quantity = eq2_quantity(result.model, result.spectrum_kind)
    y = floor_c**2 if quantity == "C²" else floor_c
    used = np.asarray(result.ok, dtype=bool) & np.isfinite(n_d) & (n_d > 0)
    n0 = float(result.readout.n0_e_per_px)
    if used.any() and np.isfinite(n0):
        grid = np.geomspace(n_d[used].min(), n_d[used].max(), n_points)
        curve = n0 / (n0 + grid)
    else:
        grid = curve = np.empty(0)
    return Eq2PlotData(n_d=n_d, y=y, used=used, quantity=quantity, grid=grid, curve=curve,
                       n0_e_per_px=n0, r2=float(result.readout.r2))
