"""The quality readout of a denoising run (:mod:`.denoise_quality` for one pair): each frame
against a reference exposure of the field, or a series' frames each against the next of
similar dose, averaged in normalised units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .denoise_quality import QualityReadout, Score, _image, _score, quality_readout

__all__ = ["NOT_JUDGED", "average_readouts", "run_quality", "series_quality"]


def series_quality(raw_frames: Any, denoised_frames: Any | None, *,
                   peaks: Sequence[float] | None = None, max_pairs: int = 8,
                   dose_tolerance: float = 0.25, register: bool = True
                   ) -> QualityReadout | None:
    """The readout of a series: each frame judged against the next, averaged.

    Consecutive frames whose doses (means) agree within ``dose_tolerance`` make the
    pairs (frame ``i`` against frame ``i + 1``); at most ``max_pairs``, spread over the
    series. MSEs are averaged in normalised units (each pair divided by its own
    ``peak²``) and reported in those of the first pair's peak.

    Parameters
    ----------
    raw_frames : array-like, shape (n, y, x)
        The noisy frames.
    denoised_frames : array-like, shape (n, y, x), or None
        Their denoised estimates, in the same units.
    peaks : sequence of float, optional
        Expected counts per vacuum pixel of every frame (default their means).
    max_pairs : int, optional
        Pairs scored at most.
    dose_tolerance : float, optional
        Largest relative dose difference of a pair.
    register : bool, optional
        Register the frames of each pair (whole pixels).

    Returns
    -------
    QualityReadout or None
        None when no two consecutive frames have similar doses.
    """
    n = len(raw_frames)
    means = [float(np.mean(raw_frames[i])) for i in range(n)]
    usable = [i for i in range(n - 1)
              if means[i] > 0 and means[i + 1] > 0
              and abs(means[i] - means[i + 1]) <= dose_tolerance * max(means[i], means[i + 1])]
    if not usable:
        return None
    if len(usable) > max_pairs:
        usable = [usable[k] for k in np.linspace(0, len(usable) - 1, max_pairs).round()
                  .astype(int)]
    readouts = [quality_readout(raw_frames[i],
                                None if denoised_frames is None else denoised_frames[i],
                                raw_frames[i + 1], register=register,
                                peak=None if peaks is None else float(peaks[i]))
                for i in usable]
    return average_readouts(readouts)


def average_readouts(readouts: Sequence[QualityReadout]) -> QualityReadout:
    """Readouts of several pairs averaged in normalised units (reported at the first
    one's peak; the Gaussian σ is their median)."""
    first = readouts[0]
    top = first.peak

    def mean_score(scores: list[Score], sigma: float | None = None) -> Score:
        normalised = float(np.mean([s.mse_normalised for s in scores]))
        return _score(normalised * top**2, top, sigma)

    sigmas = [r.gaussian.sigma_px for r in readouts]
    gaussian = mean_score([r.gaussian for r in readouts], float(np.median(sigmas)))
    den = (None if first.denoised is None
           else mean_score([r.denoised for r in readouts if r.denoised is not None]))
    ratio = None if den is None or gaussian.mse <= 0 else den.mse / gaussian.mse
    errors = [r.standard_error / r.peak**2 for r in readouts]
    error = float(np.sqrt(np.sum(np.square(errors)))) / len(readouts) * top**2
    return QualityReadout(mean_score([r.raw for r in readouts]), gaussian, den, ratio,
                          float(np.mean([r.noise_variance / r.peak**2 for r in readouts]))
                          * top**2, top, first.shift_px,
                          float(np.mean([r.dose_ratio for r in readouts])),
                          int(sum(r.n_px for r in readouts)),
                          int(sum(r.n_pairs for r in readouts)), standard_error=error)


#: Why a run has no quality readout (no second frame to judge it against).
NOT_JUDGED = ("not judged: no second exposure of the field (a reference frame) and no two "
              "consecutive frames of similar dose")


def run_quality(raw_frames: Any, denoised_frames: Any, *, reference: Any | None = None,
                peaks: Sequence[float] | None = None, max_pairs: int = 4
                ) -> tuple[QualityReadout | None, str]:
    """The readout of a denoising run, wherever a second independent frame exists.

    With ``reference`` (an independent exposure of the same field), up to ``max_pairs``
    frames spread over the run are each judged against it; without, consecutive frames
    of similar dose are judged against each other (:func:`series_quality`).

    Parameters
    ----------
    raw_frames, denoised_frames : array-like, shape (n, y, x)
        The frames denoised and the results, same units.
    reference : array-like, shape (y, x), optional
        An independent exposure of the field (same detector and units).
    peaks : sequence of float, optional
        Expected counts per vacuum pixel of every frame (default their means).
    max_pairs : int, optional
        Frames judged at most.

    Returns
    -------
    (QualityReadout or None, str)
        The readout (None when no second frame exists) and against what it was made.
    """
    n = len(raw_frames)
    if reference is None:
        if n < 2:
            return None, ""
        return (series_quality(raw_frames, denoised_frames, peaks=peaks, max_pairs=max_pairs),
                "the next frame of the series (consecutive frames of similar dose)")
    ref = _image(np.asarray(reference), "reference")
    chosen = sorted(set(np.linspace(0, n - 1, min(n, max_pairs)).round().astype(int).tolist()))
    readouts = [quality_readout(raw_frames[i], denoised_frames[i], ref,
                                peak=None if peaks is None else float(peaks[i]))
                for i in chosen]
    return average_readouts(readouts), "the reference exposure"
