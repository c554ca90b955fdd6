"""Readouts of a segmented dose series against a pseudo ground truth: the consensus of its
converged high-dose frames (Larsen et al. 2023, Figs. 2b and 3b compare each frame with
the segmentation of the final frames).

The area-only doses of :mod:`.area_vs_dose` can be fooled: noise-triggered detections at
the lowest doses reach "half the converged area" without finding the particle. Here each
frame is compared pixel by pixel with the consensus mask, so a false detection lowers the
precision instead of counting as found area:

* **visibility dose** — the lowest dose from which F1 against the consensus stays ≥ 0.5
  for every frame of that dose and above (the paper's "50 % of the nanoparticle", found
  without being outweighed by false detections);
* **convergence dose** — the lowest dose from which F1 against the consensus stays ≥ 0.9
  (the level is an option);

Both are levels of one curve, F1 against the consensus, as the truth doses of the
validation battery are levels of F1 against the exact mask. Requiring recall ≥ 0.5 *and*
precision ≥ 0.5 instead (the first reading of "50 % of the particle") was measured and
dropped: on the battery it was within 1.5× of the truth's F1 ≥ 0.5 dose for 12 of 25
particles against 21 of 25 for F1 (docs/models.md, "How far the readouts are from the
truth").
* frames with precision < 0.5 are flagged as **over-segmented**.

The consensus is the pixel-wise majority of the highest-dose frames (the same frames that
define the converged band of :mod:`.area_vs_dose`), each moved onto the highest-dose frame
by the drift given (see :func:`estimate_drift`). When those frames disagree, or too few
frames are segmented, no readout is given and :attr:`ConsensusReadout.reason` says why.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from .metrics import binary_counts

__all__ = [
    "CONSENSUS_COLUMNS",
    "PARTICLE_FRAME_KEYS",
    "ConsensusReadout",
    "consensus_readout",
    "estimate_drift",
    "lowest_dose_holding",
    "particle_labels",
    "readout_doses",
    "particle_readouts",
]

#: Per-frame columns of :meth:`ConsensusReadout.table`.
CONSENSUS_COLUMNS: tuple[str, ...] = ("recall", "precision", "f1_consensus", "over_segmented")

#: Per-frame entries of each particle of :func:`particle_readouts` (left out of the summary).
PARTICLE_FRAME_KEYS: tuple[str, ...] = ("frame_area_px", "recall", "precision", "f1",
                                        "over_segmented")

#: The highest-dose frames must agree at least this well (mean F1 against their consensus).
MIN_REFERENCE_AGREEMENT = 0.8


def readout_doses(dose_e_per_A2: np.ndarray, f1: np.ndarray, *, visibility_level: float,
                  convergence_f1: float) -> tuple[float | None, float | None]:
    """The visibility and convergence doses of one F1-against-consensus curve.

    Parameters
    ----------
    dose_e_per_A2, f1 : ndarray, shape (n,)
        Frame doses and each frame's F1 against the consensus.
    visibility_level, convergence_f1 : float
        The two F1 levels.

    Returns
    -------
    (float or None, float or None)
        The lowest doses from which F1 stays at or above each level (None: not reached).
    """
    f1 = np.nan_to_num(np.asarray(f1, dtype=np.float64), nan=0.0)
    return (lowest_dose_holding(dose_e_per_A2, f1 >= visibility_level),
            lowest_dose_holding(dose_e_per_A2, f1 >= convergence_f1))


def lowest_dose_holding(dose_e_per_A2: np.ndarray, holds: np.ndarray) -> float | None:
    """The lowest dose from which ``holds`` is true for every frame of that dose and above.

    Parameters
    ----------
    dose_e_per_A2 : ndarray, shape (n,)
        Frame doses (any order).
    holds : ndarray of bool, shape (n,)
        Whether the condition holds for each frame.

    Returns
    -------
    float or None
        None when the highest-dose frame itself fails.
    """
    order = np.argsort(dose_e_per_A2, kind="stable")
    ok = np.asarray(holds, dtype=bool)[order]
    failing = np.flatnonzero(~ok)
    if failing.size == 0:
        return float(dose_e_per_A2[order[0]])
    if failing[-1] == ok.size - 1:
        return None
    return float(dose_e_per_A2[order[failing[-1] + 1]])


@dataclass
class ConsensusReadout:
    """Per-frame agreement with the consensus mask and the doses read off it.

    Attributes
    ----------
    recall, precision, f1 : ndarray, shape (n,)
        Of each frame's mask against the consensus (NaN without a readout).
    over_segmented : ndarray of bool
        Frames with precision < 0.5.
    consensus : ndarray of bool, shape (y, x) or None
        The consensus mask, in the coordinates of the highest-dose frame.
    reference_frames : ndarray of int
        The frames it was voted from.
    visibility_dose_e_per_A2, convergence_dose_e_per_A2 : float or None
        None when not reached or when there is no readout.
    convergence_f1 : float
        The F1 level of the convergence dose.
    reason : str
        Why there is no readout ("" when there is one).
    """

    recall: np.ndarray
    precision: np.ndarray
    f1: np.ndarray
    over_segmented: np.ndarray
    consensus: np.ndarray | None
    reference_frames: np.ndarray
    visibility_dose_e_per_A2: float | None
    convergence_dose_e_per_A2: float | None
    convergence_f1: float
    reason: str = ""
    reference_agreement_f1: float = math.nan
    shifts_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    particles: list = field(default_factory=list)

    @property
    def available(self) -> bool:
        """Whether the readout exists (else see :attr:`reason`)."""
        return not self.reason

    def table(self) -> dict[str, np.ndarray]:
        """Per-frame columns (:data:`CONSENSUS_COLUMNS`)."""
        return {"recall": self.recall, "precision": self.precision,
                "f1_consensus": self.f1, "over_segmented": self.over_segmented}

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "visibility_dose_e_per_A2": self.visibility_dose_e_per_A2,
            "convergence_dose_e_per_A2": self.convergence_dose_e_per_A2,
            "convergence_f1": self.convergence_f1,
            "consensus_frames": [int(f) for f in self.reference_frames],
            "consensus_agreement_f1": (None if not math.isfinite(self.reference_agreement_f1)
                                       else float(self.reference_agreement_f1)),
            "over_segmented_frames": [int(f) for f in np.flatnonzero(self.over_segmented)],
            "consensus_readout": "ok" if self.available else self.reason,
            "particles": [{key: value for key, value in particle.items()
                           if key not in PARTICLE_FRAME_KEYS}
                          for particle in self.particles],
        }


def _empty(n: int, reason: str, level: float, reference=()) -> ConsensusReadout:
    nan = np.full(n, np.nan)
    return ConsensusReadout(nan, nan.copy(), nan.copy(), np.zeros(n, dtype=bool), None,
                            np.asarray(reference, dtype=int), None, None, level, reason)


def _moved(mask: np.ndarray, shift: np.ndarray, mode: str = "constant") -> np.ndarray:
    """``mask`` moved by ``shift`` (px); ``mode="nearest"`` for a map that extends beyond
    the field (a particle's surroundings)."""
    if not np.any(shift):
        return mask.astype(bool)
    return ndimage.shift(mask.astype(np.float32), shift, order=1, mode=mode) >= 0.5


def consensus_readout(
    masks: Any,
    dose_e_per_A2: Any,
    *,
    shifts_px: Any = None,
    high_dose_fraction: float = 0.1,
    min_high_dose_frames: int = 3,
    convergence_f1: float = 0.9,
    visibility_level: float = 0.5,
    series_max_dose_e_per_A2: float | None = None,
) -> ConsensusReadout:
    """Compare every frame's mask with the consensus of the highest-dose frames.

    Parameters
    ----------
    masks : array, shape (n, y, x)
        Binary masks of the segmented frames.
    dose_e_per_A2 : array, shape (n,)
        Their doses (positive).
    shifts_px : array, shape (n, 2), optional
        Drift of each frame: the (dy, dx) that moves the highest-dose frame's content onto
        that frame (:func:`estimate_drift`); default none.
    high_dose_fraction, min_high_dose_frames : optional
        Which frames vote for the consensus (as the converged band of
        :func:`~napari_lowdose.analysis.area_vs_dose.analyse_area_vs_dose`).
    convergence_f1 : float
        F1 level of the convergence dose.
    visibility_level : float
        F1 level of the visibility dose (and the precision below which a frame is
        over-segmented).
    series_max_dose_e_per_A2 : float, optional
        The highest dose of the whole series: when the segmented frames do not reach it
        (a cancelled run), no readout is given.

    Returns
    -------
    ConsensusReadout
    """
    stack = np.asarray(masks).astype(bool)
    if stack.ndim != 3:
        raise ValueError(f"masks must be (n, y, x), got shape {stack.shape}")
    dose = np.asarray(dose_e_per_A2, dtype=np.float64).reshape(-1)
    n = stack.shape[0]
    if dose.size != n:
        raise ValueError(f"{n} masks but {dose.size} doses")
    shifts = np.zeros((n, 2)) if shifts_px is None else np.asarray(shifts_px, float).reshape(n, 2)
    n_ref = min(n, max(int(min_high_dose_frames), int(math.ceil(high_dose_fraction * n))))
    order = np.argsort(dose, kind="stable")
    reference = np.sort(order[-n_ref:])
    if n < 2 * int(min_high_dose_frames):
        return _empty(n, f"too few segmented frames ({n}) for a consensus of the highest "
                         "doses", convergence_f1)
    if series_max_dose_e_per_A2 is not None and dose.max() < 0.999 * series_max_dose_e_per_A2:
        return _empty(n, "the highest-dose frames of the series are not segmented yet",
                      convergence_f1)
    top = order[-1]
    # Each reference mask moved onto the highest-dose frame, then a pixel-wise majority.
    aligned = [_moved(stack[i], shifts[top] - shifts[i]) for i in reference]
    consensus = np.mean(aligned, axis=0) >= 0.5
    if not consensus.any():
        return _empty(n, "nothing is segmented at the highest doses", convergence_f1, reference)
    agreement = float(np.mean([binary_counts(a, consensus).f1 for a in aligned]))
    if agreement < MIN_REFERENCE_AGREEMENT:
        readout = _empty(n, f"the highest-dose frames disagree (F1 {agreement:.2f} against "
                            "their consensus): the series has not converged", convergence_f1,
                         reference)
        readout.reference_agreement_f1 = agreement
        return readout
    recall, precision, f1 = (np.empty(n) for _ in range(3))
    for i in range(n):
        counts = binary_counts(stack[i], _moved(consensus, shifts[i] - shifts[top]))
        recall[i], precision[i], f1[i] = counts.recall, counts.precision, counts.f1
    visibility, convergence = readout_doses(dose, f1, visibility_level=visibility_level,
                                            convergence_f1=convergence_f1)
    readout = ConsensusReadout(
        recall=recall, precision=precision, f1=f1,
        over_segmented=precision < visibility_level,
        consensus=consensus, reference_frames=reference,
        visibility_dose_e_per_A2=visibility, convergence_dose_e_per_A2=convergence,
        convergence_f1=float(convergence_f1),
        reference_agreement_f1=agreement, shifts_px=shifts,
    )
    readout.particles = particle_readouts(readout, stack, dose,
                                          visibility_level=visibility_level)
    return readout


def estimate_drift(frames: Any, dose_e_per_A2: Any, *, sigma_px: float = 2.0,
                   degree: int = 1) -> np.ndarray:
    """Smooth drift of each frame relative to the highest-dose frame, in pixels.

    Each frame is registered to the highest-dose frame by cross-correlation
    (:func:`~napari_lowdose.analysis.registration.register_translation`); a low-dose
    frame's own estimate is noisy, so the shifts are replaced by a polynomial in the frame
    index (``degree``) fitted with weights ∝ √dose: specimen drift is smooth in time.

    Parameters
    ----------
    frames : array, shape (n, y, x)
        The images (any units).
    dose_e_per_A2 : array, shape (n,)
        Their doses.
    sigma_px : float
        Low-pass before registration.
    degree : int
        Degree of the drift polynomial (1, a steady drift, by default; 0: a constant
        offset; 2 follows an accelerating drift but lets the noisy low-dose frames pull
        the ends).

    Returns
    -------
    ndarray, shape (n, 2)
        (dy, dx) per frame, zero for the highest-dose frame: the shift that moves the
        highest-dose frame's content onto each frame.
    """
    from .registration import register_translation

    dose = np.asarray(dose_e_per_A2, dtype=np.float64).reshape(-1)
    n = dose.size
    top = int(np.argmax(dose))
    reference = np.asarray(frames[top], dtype=np.float64)
    raw = np.zeros((n, 2))
    for i in range(n):
        if i != top:
            # register_translation gives the shift bringing frame i onto the reference;
            # the content of the reference sits at minus that shift in frame i.
            dy, dx = register_translation(reference, np.asarray(frames[i], dtype=np.float64),
                                          sigma_px=sigma_px)
            raw[i] = (-dy, -dx)
    index = np.arange(n, dtype=np.float64)
    weights = np.sqrt(dose / dose.max())
    deg = int(min(max(degree, 0), max(n - 1, 0)))
    smooth = np.column_stack([np.polyval(np.polyfit(index, raw[:, k], deg, w=weights), index)
                              for k in range(2)])
    return smooth - smooth[top]


#: A connected component of the consensus is a particle only if it holds at least this
#: fraction of the largest one's pixels, and at least MIN_PARTICLE_PX pixels; smaller
#: specks (a few pixels the high-dose frames happen to agree on) belong to the nearest
#: particle's surroundings instead.
MIN_PARTICLE_FRACTION = 0.02
MIN_PARTICLE_PX = 9


def particle_labels(consensus: Any) -> tuple[np.ndarray, int]:
    """The particles of a consensus mask: its connected components (8-connected) of at least
    :data:`MIN_PARTICLE_FRACTION` of the largest's size (and :data:`MIN_PARTICLE_PX`),
    numbered 1, 2, … by decreasing size (ties in scan order).

    Parameters
    ----------
    consensus : array of bool, shape (y, x)
        The consensus mask.

    Returns
    -------
    (ndarray of int, int)
        The label image (0 outside every particle, and on specks) and the number of
        particles.
    """
    labels, n = ndimage.label(np.asarray(consensus, dtype=bool), structure=np.ones((3, 3)))
    if n == 0:
        return labels, 0
    sizes = np.asarray(ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, n + 1)))
    keep = sizes >= max(MIN_PARTICLE_PX, MIN_PARTICLE_FRACTION * sizes.max())
    if not keep.any():  # only specks: the largest stands for the particle
        keep = sizes == sizes.max()
    order = np.argsort(-sizes, kind="stable")
    order = order[keep[order]] + 1
    rank = np.zeros(n + 1, dtype=labels.dtype)
    rank[order] = np.arange(1, order.size + 1)
    return rank[labels], int(order.size)


def particle_readouts(readout: ConsensusReadout, masks: Any, dose_e_per_A2: Any, *,
                      visibility_level: float = 0.5) -> list[dict[str, Any]]:
    """Readouts of each particle of the consensus: its connected components.

    Every pixel of the field belongs to the particle nearest to it, so a frame's detections
    are judged against the particle whose surroundings they fall in: recall, precision and
    F1 per particle and frame, the particle's own area in each frame (the frame's mask
    pixels in its surroundings), the frames over-segmented around it (precision below the
    visibility level), and each particle's visibility and convergence doses (as
    :func:`consensus_readout` gives them for the whole field). A field with one particle
    gives the whole-field numbers.

    Parameters
    ----------
    readout : ConsensusReadout
        The whole-field readout (with its consensus mask).
    masks : array, shape (n, y, x)
        The frames' masks.
    dose_e_per_A2 : array, shape (n,)
        Their doses.
    visibility_level : float
        F1 level of the visibility dose (and the over-segmentation precision).

    Returns
    -------
    list of dict
        One per particle: ``particle`` (1, 2, … by size), ``area_px`` (in the consensus),
        ``centre_px``, ``visibility_dose_e_per_A2``, ``convergence_dose_e_per_A2``, and
        per frame (:data:`PARTICLE_FRAME_KEYS`) ``frame_area_px``, ``recall``,
        ``precision``, ``f1`` and ``over_segmented``. Empty without a readout.
    """
    if not readout.available or readout.consensus is None:
        return []
    stack = np.asarray(masks).astype(bool)
    dose = np.asarray(dose_e_per_A2, dtype=np.float64).reshape(-1)
    labels, n = particle_labels(readout.consensus)
    if n == 0:
        return []
    # The nearest particle of every pixel (in the highest-dose frame's coordinates).
    _, nearest = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    region = labels[nearest[0], nearest[1]]
    top = int(np.argmax(dose))
    shifts = readout.shifts_px if readout.shifts_px.size else np.zeros((stack.shape[0], 2))
    particles = []
    for rank in range(1, n + 1):
        truth_k = labels == rank
        region_k = region == rank
        recall, precision, f1 = (np.empty(stack.shape[0]) for _ in range(3))
        frame_area = np.empty(stack.shape[0], dtype=np.int64)
        for i in range(stack.shape[0]):
            move = shifts[i] - shifts[top]
            found = stack[i] & _moved(region_k, move, mode="nearest")
            counts = binary_counts(found, _moved(truth_k, move))
            recall[i], precision[i], f1[i] = counts.recall, counts.precision, counts.f1
            frame_area[i] = np.count_nonzero(found)
        visibility, convergence = readout_doses(dose, f1, visibility_level=visibility_level,
                                                convergence_f1=readout.convergence_f1)
        cy, cx = ndimage.center_of_mass(truth_k)
        particles.append({
            "particle": rank,
            "area_px": int(truth_k.sum()),
            "centre_px": [float(cy), float(cx)],
            "visibility_dose_e_per_A2": visibility,
            "convergence_dose_e_per_A2": convergence,
            "frame_area_px": frame_area, "recall": recall, "precision": precision, "f1": f1,
            "over_segmented": precision < visibility_level,
        })
    return particles
