"""Noise2Noise on the user's own field: exposures stacked, one part trained, the rest held out.

:func:`stack_exposures` joins exposures of one field from several files or layers;
:func:`field_datasets` splits the field by rows into training crops and a held-out part
validated whole (the :class:`.denoise_measured.Noise2NoiseSeries` source, whole-pixel
targets so that the validation can report the unbiased-MSE readout).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .denoise_measured import Noise2NoiseSeries
from .denoise_phantoms import MixedPairs, PhantomPairs
from .denoise_sources import as_frames
from .loop import TrainingError

__all__ = ["field_datasets", "stack_exposures"]


def field_datasets(
    frames: Any,
    *,
    crop_px: int,
    val_fraction: float = 0.25,
    crops_per_pair: int | None = None,
    phantom_share: float = 0.0,
    **kwargs: Any,
) -> tuple[Any, Noise2NoiseSeries]:
    """Noise2Noise on the user's own field: train on one part, validate on the rest.

    The frames (a dose series, or two or more independent exposures of the same field
    stacked) are split by rows: the bottom ``val_fraction`` of the field is held out
    and validated whole (every pair of frames within ``max_frame_gap``), the rest gives
    the random training crops. No training crop reaches a held-out pixel, so the
    validation judges the denoiser on noise (and signal) it never saw. Both parts move
    the target by whole pixels (:class:`Noise2NoiseSeries` ``whole_pixel``), so the
    validation can report the unbiased MSE readout
    (:mod:`napari_lowdose.analysis.denoise_quality`).

    Parameters
    ----------
    frames : array-like, shape (n, y, x)
        Two or more registered-or-not frames of one field, in counts.
    crop_px : int
        Side of the training crops (at most the training part's height).
    val_fraction : float, optional
        Share of the rows held out (0 < f < 1).
    crops_per_pair : int, optional
        Training crops per pair and epoch (default 4 × the crops that fit the part).
    phantom_share : float, optional
        Simulated phantom pairs (:class:`.denoise_phantoms.PhantomPairs`: clean targets,
        the ``WIDE`` detectors with excess noise, doses from half to twice the field's)
        mixed into each epoch, per item of the field: one field over-fits within a few
        epochs, the phantoms keep the denoiser general (0: the field alone). Validation is
        on the held-out part of the field only.
    **kwargs
        ``expected_e_per_px``, ``counts_per_electron``, ``max_frame_gap``, ``seed``.

    Returns
    -------
    train, val : Noise2NoiseSeries
    """
    stack = as_frames(frames, "the frames")
    n, height, width = (int(v) for v in stack.shape)
    if n < 2:
        raise TrainingError(f"the field has {n} frame; Noise2Noise needs at least 2 "
                            "exposures of it")
    if not 0 < float(val_fraction) < 1:
        raise TrainingError(f"val_fraction must lie between 0 and 1, got {val_fraction}")
    split = int(round(height * (1.0 - float(val_fraction))))
    if crop_px > split - 16 or crop_px > width - 16:
        raise TrainingError(f"a crop of {crop_px} px does not fit the {split}×{width} px "
                            "training part of the field (less a drift margin); use a smaller "
                            "crop or a smaller held-out share")
    if crops_per_pair is None:
        crops_per_pair = max(1, 4 * (split // crop_px) * (width // crop_px))
    train = Noise2NoiseSeries(stack, crop_px=crop_px, crops_per_pair=crops_per_pair,
                              whole_pixel=True, rows=(0, split), **kwargs)
    val = Noise2NoiseSeries(stack, crop_px=None, crops_per_pair=1, augment=False,
                            whole_pixel=True, rows=(split, height), **kwargs)
    if phantom_share < 0:
        raise TrainingError(f"the phantom share must be at least 0, got {phantom_share}")
    n_phantoms = int(round(phantom_share * len(train)))
    if n_phantoms:
        low, high = (float(v) for v in train.describe()["trained_e_per_px_range"])
        phantoms = PhantomPairs(n_phantoms, e_per_px_range=(low / 2, 2 * high),
                                crop_px=crop_px, seed=int(kwargs.get("seed", 0)) + 1)
        return MixedPairs([train, phantoms]), val
    return train, val


def stack_exposures(stacks: Sequence[Any], e_per_px: Sequence[Any]
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Exposures of one field from several files or layers, as one ``(n, y, x)`` stack.

    Parameters
    ----------
    stacks : sequence of array-like
        Each a ``(y, x)`` frame or a ``(frames, y, x)`` series, all of one frame size.
    e_per_px : sequence
        Each stack's expected electrons per vacuum pixel (one value, one per frame, or
        None when unknown).

    Returns
    -------
    frames : ndarray of float32, shape (n, y, x)
    expected_e_per_px : ndarray, shape (n,), or None
        None when any stack's dose is unknown (all frames are then normalised by their
        means).

    Raises
    ------
    TrainingError
        Frames of different sizes, or fewer than two frames in all.
    """
    frames = [np.asarray(as_frames(s, "an exposure"), dtype=np.float32) for s in stacks]
    sizes = sorted({f.shape[1:] for f in frames})
    if len(sizes) > 1:
        raise TrainingError(f"the exposures differ in frame size ({sizes}); they must be "
                            "exposures of the same field")
    stack = np.concatenate(frames) if frames else np.zeros((0, 1, 1), np.float32)
    if stack.shape[0] < 2:
        raise TrainingError("fine-tuning on your field needs two or more exposures of it (a "
                            "series, or several files or layers)")
    if any(e is None for e in e_per_px):
        return stack, None
    doses = np.concatenate([np.broadcast_to(np.asarray(e, dtype=float), (len(f),))
                            for f, e in zip(frames, e_per_px, strict=True)])
    return stack, doses
