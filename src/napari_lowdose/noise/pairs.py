"""Detector noise without vacuum: the noise model fitted to differences of frame pairs.

Two frames of the same field (consecutive frames of a series, or two files) hold the same
signal and independent noise. After registration their difference holds no signal, only
noise, wherever the field is: a particle may fill it. The noise model of Larsen et al.
(2023) is then fitted to the spectrum of the difference with the same spectrum
(:func:`~.spectrum.radial_spectrum`), models (Eq. 4, Eq. 3 of :mod:`.spectrum_models`) and
solver (:func:`~.fitting.fit_spectra`) as the vacuum fit.

Registration
------------
Frame b is registered to frame a (:func:`napari_lowdose.analysis.registration.
register_translation`) and moved by the nearest *whole* pixel shift; both frames are cut
to their overlap. No sub-pixel interpolation: it would low-pass the noise of b (a spline
is a filter) and bend the very MTF being fitted. The sub-pixel remainder (≤ 0.5 px) leaves
a little signal in the difference, ``∇signal · δ``, which matters only where the signal
varies strongly from pixel to pixel compared with the noise (not at low dose). The spectra
are taken without a window, as for vacuum: the difference has no signal, so its edges
cause no leakage.

Scaling, equal and unequal doses
--------------------------------
With mean counts ``m_a, m_b`` (``r = m_a / m_b``) the pair's difference
``d = (a − r·b) / √(1 + r²)`` has no signal, and under Eq. 3 (shot noise ``N`` e⁻/px
blurred by the MTF, white readout noise ``N0``, gain ``g``) its power spectrum is

    ``P(q̃) = g² · N_eff · MTF(q̃)² + g² · N0``,   ``N_eff = N_a (1 + r) / (1 + r²)``

— the spectrum of one frame of ``N_eff`` electrons per pixel. For equal doses (``r = 1``)
that is ``d = (a − b) / √2`` (the difference of two independent noisy frames has twice a
frame's noise power) and ``N_eff = N_a = N_b``. The dose of a frame is its mean counts ÷
the gain, as the vacuum fit gets it from counts; the counts are taken as dark-subtracted
(a readout noise of zero mean, as cameras record). (The Poisson readout term of the
synthesis, :func:`~.synthesis.apply_detector_noise`, adds ``N0`` to the mean, so there
``N_eff`` comes out ``N0`` too high.)

The pairs of a series are consecutive frames ``(0, 1), (2, 3), …`` (no frame in two pairs:
the pairs' noise is independent). Successive pairs whose ``N_eff`` agree within
:data:`DOSE_TOLERANCE` are averaged into one spectrum (one row of the fit); a pair whose
dose differs more starts a new row, with its own ``N_eff``. Every row is then fitted as
a frame of a vacuum series is, and Eq. 2 across the rows gives the series ``N0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .fit_result import NoiseFitResult
from .fitting import C0_BOUNDS, C3_BOUNDS, fit_spectra
from .spectrum import RadialSpectrum, SpectrumKind, radial_spectrum
from .spectrum_models import MODEL_KINDS, ModelKind

__all__ = [
    "DOSE_TOLERANCE",
    "MIN_PAIR_PX",
    "PairDifference",
    "PairSpectra",
    "difference_spectrum",
    "fit_noise_from_pairs",
    "pair_difference",
    "series_pairs",
]

#: Pairs whose effective doses agree within this fraction are averaged into one spectrum.
DOSE_TOLERANCE = 0.1
#: Least side of the overlap of a pair, in pixels (as the vacuum rectangle's).
MIN_PAIR_PX = 32


@dataclass(frozen=True, eq=False)
class PairDifference:
    """The registered, scaled difference of two frames of the same field.

    Attributes
    ----------
    difference : ndarray of float64, shape (ny, nx)
        ``(a − r·b) / √(1 + r²)`` over the overlap, ``r = mean(a) / mean(b)``: no signal,
        the noise of one frame of ``effective_e_per_px`` electrons per pixel.
    shift_px : (int, int)
        Whole-pixel shift ``(dy, dx)`` applied to b (the registration, rounded).
    registered_shift_px : (float, float)
        The sub-pixel registration; ``registered − shift`` is the remainder left.
    mean_counts : (float, float)
        Mean of a and of b over the overlap.
    effective_e_per_px : float
        ``N_eff = N_a (1 + r) / (1 + r²)`` with ``N_a = mean(a) / gain``; NaN without a gain.
    """

    difference: np.ndarray
    shift_px: tuple[int, int]
    registered_shift_px: tuple[float, float]
    mean_counts: tuple[float, float]
    effective_e_per_px: float


def pair_difference(
    frame_a: np.ndarray,
    frame_b: np.ndarray,
    *,
    counts_per_electron: float | None = None,
    register: bool = True,
    max_shift_fraction: float = 0.25,
) -> PairDifference:
    """Register ``frame_b`` to ``frame_a`` (whole pixels), cut the overlap, difference.

    Parameters
    ----------
    frame_a, frame_b : ndarray, shape (ny, nx)
        Two frames of the same field (counts, dark-subtracted).
    counts_per_electron : float, optional
        Detector gain; the dose of a frame is its mean counts ÷ the gain. Without it the
        effective dose is NaN (N0 cannot be given, c0 and c3 can).
    register : bool, optional
        Register b to a (default); False takes the frames as aligned.
    max_shift_fraction : float, optional
        Largest shift accepted, as a fraction of each side (a larger one is not the
        same field).

    Returns
    -------
    PairDifference

    Raises
    ------
    ValueError
        Frames of other shapes or dimensions, NaN/inf pixels, a non-positive mean, a
        shift beyond ``max_shift_fraction``, or an overlap under :data:`MIN_PAIR_PX`.
    """
    from ..analysis.registration import overlap, register_translation

    a = np.asarray(frame_a, dtype=np.float64)
    b = np.asarray(frame_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a frame pair must be two 2-D frames of one shape, got {a.shape} "
                         f"and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a frame of the pair holds NaN or infinite pixels")
    if counts_per_electron is not None and not counts_per_electron > 0:
        raise ValueError(f"counts_per_electron must be positive, got {counts_per_electron}")
    registered = register_translation(a, b) if register else (0.0, 0.0)
    dy, dx = (int(round(v)) for v in registered)
    ny, nx = a.shape
    if abs(dy) > max_shift_fraction * ny or abs(dx) > max_shift_fraction * nx:
        raise ValueError(f"the frames register {dy}, {dx} px apart (more than "
                         f"{max_shift_fraction:.0%} of the frame): not the same field?")
    a_cut, b_cut = overlap(a, b, (dy, dx))
    if min(a_cut.shape) < MIN_PAIR_PX:
        raise ValueError(f"the overlap of the pair is {a_cut.shape[0]}×{a_cut.shape[1]} px; "
                         f"the noise fit needs at least {MIN_PAIR_PX}×{MIN_PAIR_PX} px")
    m_a, m_b = float(a_cut.mean()), float(b_cut.mean())
    if not (m_a > 0 and m_b > 0):
        raise ValueError(f"the mean counts of the pair ({m_a:.4g}, {m_b:.4g}) must be "
                         "positive: the frames' dose is their mean counts")
    r = m_a / m_b
    difference = (a_cut - r * b_cut) / math.sqrt(1.0 + r * r)
    n_eff = math.nan
    if counts_per_electron is not None:
        n_eff = m_a / float(counts_per_electron) * (1.0 + r) / (1.0 + r * r)
    return PairDifference(difference=difference, shift_px=(dy, dx),
                          registered_shift_px=(float(registered[0]), float(registered[1])),
                          mean_counts=(m_a, m_b), effective_e_per_px=n_eff)


def series_pairs(n_frames: int) -> list[tuple[int, int]]:
    """Consecutive, disjoint frame pairs of a series: ``(0, 1), (2, 3), …``.

    An odd last frame is left out. Raises ValueError for fewer than two frames.
    """
    n = int(n_frames)
    if n < 2:
        raise ValueError(f"frame pairs need at least two frames, got {n}")
    return [(i, i + 1) for i in range(0, n - 1, 2)]


@dataclass(frozen=True, eq=False)
class PairSpectra:
    """Spectra of the pair differences, pairs of close dose averaged into one row.

    Attributes
    ----------
    spectrum : RadialSpectrum
        One row per group of pairs (the rows the fit sees).
    frame_dose_e_per_px : ndarray, shape (n_rows,)
        Effective dose ``N_eff`` of each row (mean over its pairs; NaN without a gain).
    groups : list of list of int
        Indices (into the pairs given) of the pairs averaged into each row.
    pairs : list of PairDifference
        Every pair's registration and means (differences dropped to save memory).
    """

    spectrum: RadialSpectrum
    frame_dose_e_per_px: np.ndarray
    groups: list[list[int]]
    pairs: list[PairDifference]

    def shift_summary(self) -> str:
        """``"shifts (dy, dx) 0, -1 px (registered -0.4, -0.9)"`` or the range over pairs."""
        shifts = np.array([p.shift_px for p in self.pairs])
        rest = np.array([np.subtract(p.registered_shift_px, p.shift_px) for p in self.pairs])
        worst = float(np.abs(rest).max()) if rest.size else 0.0
        if len(self.pairs) == 1:
            (dy, dx), (ry, rx) = self.pairs[0].shift_px, self.pairs[0].registered_shift_px
            return f"shift (dy, dx) {dy}, {dx} px (registered {ry:.2f}, {rx:.2f})"
        return (f"shifts dy {shifts[:, 0].min()}…{shifts[:, 0].max()}, dx "
                f"{shifts[:, 1].min()}…{shifts[:, 1].max()} px (sub-pixel remainder ≤ "
                f"{worst:.2f} px)")


def _group_by_dose(doses: np.ndarray, tolerance: float) -> list[list[int]]:
    """Runs of successive pairs whose dose is within ``tolerance`` of the run's first."""
    groups: list[list[int]] = []
    for i, dose in enumerate(doses):
        if groups:
            first = doses[groups[-1][0]]
            same = (not np.isfinite(first) and not np.isfinite(dose)) or (
                np.isfinite(first) and np.isfinite(dose)
                and abs(dose - first) <= tolerance * first)
            if same:
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def difference_spectrum(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    kind: SpectrumKind = "power",
    counts_per_electron: float | None = None,
    register: bool = True,
    dose_tolerance: float = DOSE_TOLERANCE,
) -> PairSpectra:
    """Spectra of the registered differences of frame pairs, close doses averaged.

    Parameters
    ----------
    pairs : iterable of (ndarray, ndarray)
        Frame pairs of the same field (read lazily: one pair at a time is in memory).
    kind : {"magnitude", "power"}, optional
        Spectrum (:func:`~.spectrum.radial_spectrum`).
    counts_per_electron : float, optional
        Detector gain (the dose of a frame is its mean counts ÷ the gain).
    register : bool, optional
        Register each pair (whole pixels); False takes them as aligned.
    dose_tolerance : float, optional
        Successive pairs whose effective doses agree within this fraction of the first
        of a run are averaged into one row (without a gain, all pairs are).

    Returns
    -------
    PairSpectra
        All differences are cut to the smallest overlap (centred) so that every row has
        the same frequency rings.
    """
    if not dose_tolerance >= 0:
        raise ValueError(f"dose_tolerance must be >= 0, got {dose_tolerance}")
    diffs = [pair_difference(a, b, counts_per_electron=counts_per_electron, register=register)
             for a, b in pairs]
    if not diffs:
        raise ValueError("no frame pair given")
    ny = min(d.difference.shape[0] for d in diffs)
    nx = min(d.difference.shape[1] for d in diffs)
    rows = []
    for d in diffs:
        y0 = (d.difference.shape[0] - ny) // 2
        x0 = (d.difference.shape[1] - nx) // 2
        rows.append(radial_spectrum(d.difference[y0:y0 + ny, x0:x0 + nx], kind=kind))
    doses = np.array([d.effective_e_per_px for d in diffs])
    groups = _group_by_dose(doses, dose_tolerance)
    values = np.stack([np.mean([rows[i].values[0] for i in g], axis=0) for g in groups])
    group_dose = np.array([np.mean(doses[g]) for g in groups])
    first = rows[0]
    spectrum = RadialSpectrum(q_norm=first.q_norm, values=values, counts=first.counts,
                              kind=kind, frame_shape=(ny, nx))
    kept = [replace(d, difference=np.empty((0, 0))) for d in diffs]
    return PairSpectra(spectrum=spectrum, frame_dose_e_per_px=group_dose, groups=groups,
                       pairs=kept)


def fit_noise_from_pairs(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]] | Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    model: ModelKind = "physical",
    spectrum_kind: SpectrumKind | None = None,
    counts_per_electron: float | None = None,
    sampling_A: float | None = None,
    register: bool = True,
    dose_tolerance: float = DOSE_TOLERANCE,
    c0_bounds: tuple[float, float] = C0_BOUNDS,
    c3_bounds: tuple[float, float] = C3_BOUNDS,
) -> tuple[NoiseFitResult, PairSpectra]:
    """Fit the noise model (Eq. 4 or Eq. 3) to the differences of frame pairs.

    Parameters
    ----------
    pairs : iterable of (ndarray, ndarray)
        Frame pairs of the same field (e.g. ``(series[i], series[j])`` for
        :func:`series_pairs`, or one frame of each of two files).
    model : {"paper", "physical"}, optional
        Eq. 4 or Eq. 3 (default: physical, which gives N0 for every row).
    spectrum_kind : {"magnitude", "power"}, optional
        Default: magnitude for the paper model, power for the physical one.
    counts_per_electron : float, optional
        Gain: the dose of a frame is its mean counts ÷ the gain; needed for N0.
    sampling_A : float, optional
        Pixel size in Å/px (the dose is then also given in e⁻/Å²).
    register, dose_tolerance
        See :func:`difference_spectrum`.
    c0_bounds, c3_bounds : tuple of float, optional
        Parameter bounds of :func:`~.fitting.fit_spectra`.

    Returns
    -------
    result : NoiseFitResult
        One row per group of pairs (``noise_source="pairs"``), fitted by
        :func:`~.fitting.fit_spectra` with ``frame_dose_e_per_px = N_eff``.
    spectra : PairSpectra
        The spectra, groups and registrations behind it.
    """
    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {model!r}")
    if spectrum_kind is None:
        spectrum_kind = "magnitude" if model == "paper" else "power"
    spectra = difference_spectrum(pairs, kind=spectrum_kind,
                                  counts_per_electron=counts_per_electron, register=register,
                                  dose_tolerance=dose_tolerance)
    n_d = spectra.frame_dose_e_per_px
    result = fit_spectra(spectra.spectrum, model=model, sampling_A=sampling_A,
                         frame_dose_e_per_px=None if np.all(np.isnan(n_d)) else n_d,
                         c0_bounds=c0_bounds, c3_bounds=c3_bounds)
    return replace(result, noise_source="pairs"), spectra
