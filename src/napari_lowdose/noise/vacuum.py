"""Is the fitted region vacuum? The check of a noise fit, and the most vacuum-like corner.

The noise model of Larsen et al. (2023) describes the spectrum of *vacuum*: shot noise
blurred by the MTF plus white readout noise. A region holding a particle edge, a support
or a lattice adds power the model has no term for, and the fitted c0, c3 and N0 are then
wrong without any error being raised.

R² does not tell the two apart: it compares the residuals with the spread of the
spectrum itself, and that spread is mostly the noise of the ring averages, which
depends on the region's size, the dose and the model. Measured on the synthetic demo
series (:func:`napari_lowdose.simulate.synthetic_series.make_synthetic_dose_series`,
50 frames of 10–10⁴ e⁻/Å², 64² px regions), median R² over the frames:

================  ==========  ==========  ===============  =====================
model, spectrum   vacuum      vacuum p10  particle/lattice  half on the particle
================  ==========  ==========  ===============  =====================
paper, magnitude  0.96        0.87        0.90             0.77
paper, power      0.87–0.89   0.73        0.71             0.75
physical, power   0.88–0.89   0.75        0.66             0.64
================  ==========  ==========  ===============  =====================

so the former single threshold (median R² ≥ 0.9) failed genuine vacuum with the
physical model and passed a lattice with the paper model.

The check here asks instead whether the residuals are as large as the noise of the ring
averages predicts (:func:`excess_scatter`). For vacuum each ring average of ``n``
frequencies (``n/2`` independent complex values) scatters about the model with a
relative variance ``CV² / (n/2)``: ``CV² = 1`` for the power spectrum (``|F|²`` is
exponential) and ``(4 − π) / π`` for the magnitude spectrum (``|F|`` is Rayleigh). The
mean squared residual in units of that variance is about 1 for vacuum whatever the
region's size, dose, gain and MTF, and grows with the structure in the region.

The most vacuum-like corner (:func:`vacuum_corner`) scores each corner square by the
same excess scatter (a lattice) times its low-frequency variance (block means) relative
to the flattest corner (a particle edge, a support, a thickness ramp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .fit_result import NoiseFitResult
from .fitting import NON_FINITE_MESSAGE, fit_spectra
from .spectrum import radial_spectrum

__all__ = [
    "MIN_VACUUM_FRACTION",
    "VACUUM_TOLERANCE",
    "VacuumCheck",
    "corner_squares",
    "corner_scores",
    "excess_scatter",
    "scatter_limit",
    "vacuum_check",
    "vacuum_corner",
]

#: Relative variance of one ``|F|²`` (exponential) and one ``|F|`` (Rayleigh) about its mean.
_CV2 = {"power": 1.0, "magnitude": (4.0 - math.pi) / math.pi}

#: Allowance for each model's misfit of genuine vacuum, per (model, spectrum):
#: ``(factor, misfit)``; the limit of :func:`scatter_limit` is ``factor`` × the 99.9 % point
#: of a reduced χ² with the frame's degrees of freedom, plus ``misfit`` × the mean number
#: of independent values per ring (a model that is not the exact vacuum spectrum, Eq. 4,
#: misses by a fixed fraction, which costs more the more precise the rings are).
#: Calibrated on synthetic vacuum (apply_detector_noise: 1–10⁴ e⁻/Å², N0 0.01 and
#: 0.5 e⁻/px, (c0, c3) = (0.27, 2.25), (0.5, 3), (0.15, 2); 32²–1024² px; 1 572 frames):
#: the largest excess scatter of a vacuum frame / the 99.9 % χ² point was 0.99 (physical,
#: power; the model is exact), 1.10 at ≤ 512² px and 1.54 at 1024² px (paper, magnitude)
#: and 1.72 at 512², 2.9 at 1024² px (paper, power); in excess scatter, max 2.30 / 1.84 /
#: 2.50 at 32²–64² px, where the χ² limit is 2.0–2.7. A particle or lattice: see
#: :data:`MIN_VACUUM_FRACTION`.
VACUUM_TOLERANCE: dict[tuple[str, str], tuple[float, float]] = {
    ("paper", "magnitude"): (1.1, 0.001),
    ("paper", "power"): (1.25, 0.004),
    ("physical", "power"): (1.1, 0.0),
}
#: The region passes when at least this fraction of its frames passes. Frames that pass
#: (synthetic demo series, seeds 0 and 1, 50 frames of 10–10⁴ e⁻/Å²; paper-magnitude /
#: paper-power / physical): vacuum corners 32²–96² px 50/50 for every model (also the
#: abTEM demo's vacuum corner, seed 0, 64² px: 50/50, median excess scatter 0.80–0.85,
#: where the physical model's median R² is 0.87); 64² px on the particle 28–30 / 20–24 /
#: 19–20 of 50; 96² px half on its edge 3–5 / 6 / 0–1 of 50; a lattice filling 64² px,
#: 30 frames, 18 / 13 / 12 of 30. Low-dose frames of a particle pass (its structure is
#: below the shot noise there), so a region fails when more than a fifth of its frames
#: do. A 32² px square with 60 % of it on the particle edge passed: too few rings to tell.
MIN_VACUUM_FRACTION = 0.8
#: χ² tail probability of the per-frame limit (before the model allowance).
_TAIL = 1e-3


def excess_scatter(result: NoiseFitResult, ring_counts: np.ndarray) -> np.ndarray:
    """Mean squared residual of each frame's fit in units of the expected ring-average noise.

    Parameters
    ----------
    result : NoiseFitResult
        A fit with its spectra and ring centres kept (``keep_spectra=True``).
    ring_counts : ndarray of int, shape (n_rings,)
        Frequencies averaged in each ring (:attr:`RadialSpectrum.counts`).

    Returns
    -------
    ndarray of float, shape (n_frames,)
        About 1 for vacuum; larger with structure in the region; NaN where the fit failed.
    """
    if result.spectra is None or result.q_norm is None:
        raise ValueError("the fit kept no spectra: fit with keep_spectra=True")
    counts = np.asarray(ring_counts, dtype=np.float64)
    if counts.shape != result.q_norm.shape:
        raise ValueError(f"{counts.size} ring counts for {result.q_norm.size} rings")
    cv2 = _CV2[result.spectrum_kind]
    out = np.full(result.n_frames, np.nan)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for i in range(result.n_frames):
            pred = result.predict(i)
            if not np.all(np.isfinite(pred) & (pred > 0)):
                continue
            variance = cv2 * pred**2 / np.maximum(counts / 2.0, 1.0)
            out[i] = float(np.mean((result.spectra[i] - pred) ** 2 / variance))
    return out


def scatter_limit(ring_counts: np.ndarray, model: str, spectrum_kind: str) -> float:
    """Largest excess scatter of a vacuum frame fitted on rings of ``ring_counts``.

    The 99.9 % point of a reduced χ² with ``n_rings − 4`` degrees of freedom (four fitted
    parameters), with the model's allowance (:data:`VACUUM_TOLERANCE`).

    Parameters
    ----------
    ring_counts : ndarray of int
        Frequencies averaged in each ring (:attr:`RadialSpectrum.counts`).
    model, spectrum_kind : str
        The fitted model and spectrum.
    """
    counts = np.asarray(ring_counts, dtype=np.float64)
    factor, misfit = VACUUM_TOLERANCE[(model, spectrum_kind)]
    dof = max(counts.size - 4, 1)
    chi2_point = 2.0 * float(special.gammainccinv(dof / 2.0, _TAIL)) / dof
    return factor * chi2_point + misfit * float(np.mean(counts / 2.0))


@dataclass(frozen=True)
class VacuumCheck:
    """Whether a noise fit looks like vacuum, frame by frame and as a whole.

    Attributes
    ----------
    scatter : ndarray of float
        Per-frame excess scatter (:func:`excess_scatter`).
    limit : float
        Largest excess scatter a vacuum frame passes with (:func:`scatter_limit`).
    frame_ok : ndarray of bool
        Frames whose fit gave a spectrum (finite scatter) within ``limit``. A fit flagged
        for another reason (c0 or c3 at a bound: no MTF fall-off visible, e.g. when the
        readout noise dominates) still looks like vacuum; that flag is the fit's ``ok``.
    median_r2 : float
        Median R² of the fitted frames (for the record; not used to decide).
    left_out : ndarray of bool, optional
        Frames not judged: their region holds NaN or infinite pixels (a damaged frame says
        nothing about what the region shows, and is left out of the fit too).
    """

    scatter: np.ndarray
    limit: float
    frame_ok: np.ndarray
    median_r2: float
    left_out: np.ndarray | None = None

    @property
    def _judged(self) -> np.ndarray:
        if self.left_out is None:
            return np.ones(self.frame_ok.shape, dtype=bool)
        return ~np.asarray(self.left_out, dtype=bool)

    @property
    def n_frames(self) -> int:
        """Number of frames checked (those with NaN/inf pixels left out)."""
        return int(np.count_nonzero(self._judged))

    @property
    def n_ok(self) -> int:
        """Frames that passed."""
        return int(np.count_nonzero(self.frame_ok & self._judged))

    @property
    def passed(self) -> bool:
        """At least :data:`MIN_VACUUM_FRACTION` of the frames passed."""
        return self.n_frames > 0 and self.n_ok >= MIN_VACUUM_FRACTION * self.n_frames

    def summary(self) -> str:
        """``"48/50 frames look like vacuum (median excess scatter 1.1, limit 2.0)"``."""
        noun = "frame" if self.n_frames == 1 else "frames"
        if not np.isfinite(self.scatter).any():
            return f"0/{self.n_frames} {noun} could be fitted"
        med = np.nanmedian(self.scatter)
        noun = "frame looks" if self.n_frames == 1 else "frames look"
        return (f"{self.n_ok}/{self.n_frames} {noun} like vacuum (median excess scatter "
                f"{med:.2g}, limit {self.limit:.2g})")

    def warning(self) -> str | None:
        """One line saying why the region is probably not vacuum, or None when it passed."""
        if self.passed:
            return None
        if not np.isfinite(self.scatter).any():
            return "No frame could be fitted: is the region over vacuum?"
        need = math.ceil(MIN_VACUUM_FRACTION * self.n_frames)
        return (f"Probably not pure vacuum: {self.summary()}; needs {need}. Structure in the "
                "rectangle (a particle, support or lattice) biases c0, c3 and N0: move it "
                "over vacuum.")


def no_fit_reason(result: NoiseFitResult) -> str:
    """One line for a fit in which no frame (or pair spectrum) was fitted: why, and what to do.

    The rows' own messages say why (e.g. ``c3 at its bound (0.5, 10.0)``). For a vacuum
    region the likely cause is structure in it; for frame pairs, whose difference is noise
    whatever the specimen, it is a detector whose spectrum Eq. 1's MTF does not describe
    (``docs/noise.md``: the real OneView pair).
    """
    reasons = sorted({str(m) for m in result.message if m})
    why = f" ({'; '.join(reasons[:3])}{' …' if len(reasons) > 3 else ''})" if reasons else ""
    if result.noise_source == "pairs":
        return (f"No spectrum of the frame pairs could be fitted{why}: the MTF of Eq. 1 does "
                "not describe these frames")
    return f"No frame could be fitted{why}: is the region over vacuum?"


def vacuum_check(result: NoiseFitResult, ring_counts: np.ndarray) -> VacuumCheck:
    """Check every frame of a noise fit against the scatter vacuum would give.

    Parameters
    ----------
    result : NoiseFitResult
        The fit (with its spectra).
    ring_counts : ndarray of int
        The ring counts of the fitted spectrum (:attr:`RadialSpectrum.counts`).

    Returns
    -------
    VacuumCheck
    """
    scatter = excess_scatter(result, ring_counts)
    limit = scatter_limit(ring_counts, result.model, result.spectrum_kind)
    frame_ok = np.isfinite(scatter) & (scatter <= limit)
    r2 = np.asarray(result.r2, dtype=np.float64)
    r2 = r2[np.isfinite(r2)]
    median_r2 = float(np.median(r2)) if r2.size else math.nan
    left_out = np.array([str(m).startswith(NON_FINITE_MESSAGE) for m in result.message],
                        dtype=bool)
    return VacuumCheck(scatter=scatter, limit=limit, frame_ok=frame_ok, median_r2=median_r2,
                       left_out=left_out)


# -- the most vacuum-like corner ------------------------------------------------------------
_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
#: Side in pixels of the blocks whose means measure the low-frequency variance.
_BLOCK_PX = 8


def corner_squares(shape: tuple[int, int], side_px: int) -> dict[str, tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` of the four corner squares of side ``side_px`` of a frame."""
    ny, nx = (int(v) for v in shape[-2:])
    side = int(side_px)
    if not 4 <= side <= min(ny, nx):
        raise ValueError(f"corner side {side} px does not fit a {ny}×{nx} frame (need ≥ 4)")
    return {
        "top-left": (0, side, 0, side),
        "top-right": (0, side, nx - side, nx),
        "bottom-left": (ny - side, ny, 0, side),
        "bottom-right": (ny - side, ny, nx - side, nx),
    }


def _low_frequency_variance(square: np.ndarray) -> float:
    """Variance of the means of ``_BLOCK_PX``² blocks, per unit of the square's noise level.

    The noise level is the mean for counts (shot noise: variance ∝ mean); for data whose
    mean is not positive (offset-subtracted) the variance of the pixels.
    """
    b = min(_BLOCK_PX, square.shape[0] // 2, square.shape[1] // 2)
    ny, nx = (square.shape[0] // b) * b, (square.shape[1] // b) * b
    blocks = square[:ny, :nx].reshape(ny // b, b, nx // b, b).mean(axis=(1, 3))
    mean = float(square.mean())
    level = mean if mean > 0 else float(square.var())
    return float(blocks.var()) * b * b / level if level > 0 else math.inf


def corner_scores(frame: np.ndarray, side_px: int) -> dict[str, float]:
    """How unlike vacuum each corner square of ``frame`` is (1 for the most vacuum-like).

    The score is the excess scatter of the physical model fitted to the square's power
    spectrum (a lattice, fine structure) times the square's low-frequency variance
    relative to the flattest corner's (an edge, a support, a thickness ramp). Vacuum
    scores about 1; a corner whose fit fails scores infinity.

    Parameters
    ----------
    frame : ndarray, shape (ny, nx)
        One frame (counts or electrons).
    side_px : int
        Side of the corner squares in pixels.

    Returns
    -------
    dict of str to float
        ``{"top-left": …, "top-right": …, "bottom-left": …, "bottom-right": …}``.
    """
    image = np.asarray(frame, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"frame must be 2-D, got shape {image.shape}")
    squares = corner_squares(image.shape, side_px)
    stack = np.stack([image[y0:y1, x0:x1] for y0, y1, x0, x1 in squares.values()])
    if not np.all(np.isfinite(stack)):
        raise ValueError("the frame has NaN/inf pixels in a corner")
    spectrum = radial_spectrum(stack, kind="power")
    fit = fit_spectra(spectrum, model="physical")
    scatter = excess_scatter(fit, spectrum.counts)
    low = np.array([_low_frequency_variance(square) for square in stack])
    flattest = np.min(low[np.isfinite(low)]) if np.isfinite(low).any() else math.nan
    relative = low / flattest if flattest > 0 else np.ones_like(low)
    score = np.where(np.isfinite(scatter), np.maximum(scatter, 1e-3) * relative, math.inf)
    return dict(zip(_CORNERS, (float(s) for s in score), strict=True))


def vacuum_corner(frame: np.ndarray, side_px: int) -> tuple[tuple[int, int, int, int], float]:
    """The most vacuum-like corner square of ``frame`` and its score.

    Parameters
    ----------
    frame : ndarray, shape (ny, nx)
        One frame.
    side_px : int
        Side of the square in pixels.

    Returns
    -------
    bounds : (int, int, int, int)
        ``(y0, y1, x0, x1)`` of the corner with the lowest :func:`corner_scores` score
        (the top-left one on a tie).
    score : float
        Its score (about 1 for vacuum).
    """
    scores = corner_scores(frame, side_px)
    best = min(scores, key=lambda name: (scores[name], _CORNERS.index(name)))
    return corner_squares(np.shape(frame), side_px)[best], scores[best]
