"""The validation battery: simulated dose series with exact truth over the paper's ranges.

Larsen et al. (2023) validate on one kind of series (SOI Fig. 9: Au on CeO2, ~1.5–2 nm,
0.075 Å/px, the MTF 3 detector of Table 3). A network, its threshold and the readouts
of :mod:`napari_lowdose.analysis.consensus` are trustworthy only if they hold across the
particles and microscopes a user brings, so the battery spans the paper's own ranges:
particle sizes ~1–4 nm, sampling 0.05–0.10 Å/px, the detectors MTF 1–5 of Table 3 plus a
direct-detector-like MTF (c0 ≥ 0.7, N0 ≈ 0.001 e⁻/px), and defocus −100…100 Å; every
condition is a dose series of 40 frames from 5 to 5·10³ e⁻/Å² of several particles.

Every series comes from :func:`napari_lowdose.simulate.series.simulate_dose_series`,
whose seed streams are disjoint from those of every training dataset; the battery's
seeds (:data:`BATTERY_FIRST_SEED` onwards) are also disjoint from the validation series
used to choose and calibrate models (seeds 1000–1099).

For one segmented series :func:`score_series` gives, per frame, F1 against the truth and
the readouts a user would see (the same :func:`~napari_lowdose.analysis.area_vs_dose.
analyse_area_vs_dose` as ``segment``), and compares them: the *truth* doses are the lowest
doses from which every frame has F1 ≥ 0.5 and ≥ 0.9; the *readouts* are the visibility
and convergence doses against the consensus of the highest-dose frames.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..analysis.consensus import lowest_dose_holding
from ..analysis.metrics import binary_counts
from ..noise.model import NoiseModel
from ..noise.presets import preset
from ..simulate.optics import SERIES_OPTICS, OpticsRanges
from ..simulate.structures import StructureRecipe

__all__ = [
    "BATTERY",
    "BATTERY_DOSE_RANGE_E_PER_A2",
    "BATTERY_FIRST_SEED",
    "BATTERY_FRAMES",
    "BATTERY_PARTICLES",
    "DIRECT_DETECTOR",
    "BatteryCondition",
    "SeriesScore",
    "battery_condition",
    "battery_seed",
    "battery_series",
    "readout_factor",
    "score_series",
    "summarise_condition",
]

#: First seed of the battery's series (condition i, particle j: seed + 100 i + j).
BATTERY_FIRST_SEED = 5000
#: Frames per series and their dose range (log-spaced), and particles per condition.
BATTERY_FRAMES = 40
BATTERY_DOSE_RANGE_E_PER_A2 = (5.0, 5e3)
BATTERY_PARTICLES = 3

#: The direct-detector-like MTF of the battery (c0 ≥ 0.7, N0 ≈ 0.001 e⁻/px).
DIRECT_DETECTOR = preset("direct")


@dataclass(frozen=True)
class BatteryCondition:
    """One microscope-and-particle condition of the battery.

    Parameters
    ----------
    name : str
        Short label (tables, file names).
    description : str
        What the condition probes.
    diameter_range_A : (float, float)
        Au particle diameter before truncation, Å (drawn uniformly per particle).
    sampling_A : float
        Pixel size, Å/px.
    size_px : int
        Side of the field, px (the particle fits inside 80 % of it).
    detector : str
        A Table 3 preset (``"MTF 1"`` … ``"MTF 5"``) or ``"direct"``.
    defocus_A : (float, float)
        Defocus range of the frames, Å (abTEM sign: positive = underfocus); the other
        optics are those of SOI Fig. 9 (:data:`~napari_lowdose.simulate.optics.SERIES_OPTICS`).
    """

    name: str
    description: str
    diameter_range_A: tuple[float, float]
    sampling_A: float
    size_px: int
    detector: str
    defocus_A: tuple[float, float]

    def __post_init__(self) -> None:
        low, high = self.diameter_range_A
        if not 0 < low <= high <= 0.8 * self.size_px * self.sampling_A:
            raise ValueError(f"{self.name}: particles of {low}–{high} Å do not fit in 80 % of "
                             f"a {self.size_px} px field at {self.sampling_A} Å/px")

    @property
    def noise_model(self) -> NoiseModel:
        """The detector the frames are drawn with."""
        return DIRECT_DETECTOR if self.detector == "direct" else preset(self.detector)

    @property
    def recipe(self) -> StructureRecipe:
        """The structure ranges: this sampling and these diameters."""
        return StructureRecipe(size_px=int(self.size_px),
                               sampling_range_A=(self.sampling_A, self.sampling_A),
                               diameter_range_A=tuple(self.diameter_range_A))

    @property
    def optics_ranges(self) -> OpticsRanges:
        """SOI Fig. 9 optics with this condition's defocus."""
        return OpticsRanges(defocus_A=tuple(self.defocus_A), cs_A=SERIES_OPTICS.cs_A,
                            focal_spread_A=SERIES_OPTICS.focal_spread_A,
                            blur_A=SERIES_OPTICS.blur_A)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}


#: The conditions, SOI Fig. 9 first. Fields are sized so the particle fills 60–80 % of it.
BATTERY: tuple[BatteryCondition, ...] = (
    BatteryCondition("soi-fig9", "the paper's validation series: ~2 nm, 0.075 Å/px, MTF 3",
                     (18.0, 23.0), 0.075, 384, "MTF 3", (48.0, 50.0)),
    BatteryCondition("small-fine", "~1.2 nm particle finely sampled, MTF 4, overfocus",
                     (10.0, 14.0), 0.06, 320, "MTF 4", (-100.0, -50.0)),
    BatteryCondition("large-coarse", "~4 nm particle coarsely sampled, MTF 2, underfocus",
                     (34.0, 40.0), 0.10, 512, "MTF 2", (50.0, 100.0)),
    BatteryCondition("mtf1-coarse", "~2.4 nm particle at 0.09 Å/px, blurry MTF 1, near focus",
                     (21.0, 27.0), 0.09, 384, "MTF 1", (-20.0, 20.0)),
    BatteryCondition("fine-mtf5", "~1.6 nm particle at 0.05 Å/px, sharp MTF 5, underfocus",
                     (14.0, 17.5), 0.05, 448, "MTF 5", (80.0, 100.0)),
    BatteryCondition("direct", "~2.8 nm particle at 0.08 Å/px, direct-detector-like MTF",
                     (25.0, 30.0), 0.08, 480, "direct", (-100.0, -80.0)),
)


def battery_condition(name: str) -> BatteryCondition:
    """The battery condition called ``name``."""
    for condition in BATTERY:
        if condition.name == name:
            return condition
    raise ValueError(f"unknown battery condition {name!r}; choose from "
                     f"{[c.name for c in BATTERY]}")


def battery_seed(condition: BatteryCondition, particle: int) -> int:
    """Seed of one particle's series under one condition."""
    return BATTERY_FIRST_SEED + 100 * BATTERY.index(condition) + int(particle)


def battery_series(condition: BatteryCondition, particle: int, *,
                   n_frames: int = BATTERY_FRAMES,
                   dose_range_e_per_A2: tuple[float, float] = BATTERY_DOSE_RANGE_E_PER_A2,
                   size_px: int | None = None):
    """Simulate one battery series (abTEM multislice, SOI Fig. 9 imaging).

    Parameters
    ----------
    condition : BatteryCondition
        The condition.
    particle : int
        Which particle (0, 1, …): its own seed, so its own structure.
    n_frames, dose_range_e_per_A2 : optional
        Frames and dose range (the battery: 40 frames over 5…5·10³ e⁻/Å²).
    size_px : int, optional
        A smaller field for quick checks (the particle is scaled with it); default the
        condition's.

    Returns
    -------
    napari_lowdose.simulate.series.SimulatedDoseSeries
    """
    from ..simulate.series import simulate_dose_series

    recipe = condition.recipe
    if size_px is not None and int(size_px) != condition.size_px:
        scale = int(size_px) / condition.size_px
        recipe = StructureRecipe(size_px=int(size_px),
                                 sampling_range_A=recipe.sampling_range_A,
                                 diameter_range_A=tuple(d * scale
                                                        for d in condition.diameter_range_A))
    return simulate_dose_series(battery_seed(condition, particle), n_frames=n_frames,
                                dose_range_e_per_A2=dose_range_e_per_A2, recipe=recipe,
                                noise_model=condition.noise_model,
                                optics_ranges=condition.optics_ranges)


@dataclass
class SeriesScore:
    """One segmented battery series: per-frame truth F1 and the readouts against it.

    Attributes
    ----------
    dose_e_per_A2, f1_truth : ndarray, shape (n,)
        Frame doses and F1 of each frame's mask against the exact truth.
    truth_visibility_dose_e_per_A2, truth_convergence_dose_e_per_A2 : float or None
        Lowest doses from which every frame has F1 ≥ 0.5 / ≥ 0.9 (None: not reached).
    visibility_dose_e_per_A2, convergence_dose_e_per_A2 : float or None
        The readouts against the consensus (what ``segment`` reports).
    paper_dose_at_50pct_e_per_A2, paper_convergence_dose_e_per_A2 : float or None
        The area-only readouts of the paper's method.
    reason : str
        Why there is no consensus readout ("" when there is one).
    """

    dose_e_per_A2: np.ndarray
    f1_truth: np.ndarray
    truth_visibility_dose_e_per_A2: float | None
    truth_convergence_dose_e_per_A2: float | None
    visibility_dose_e_per_A2: float | None
    convergence_dose_e_per_A2: float | None
    paper_dose_at_50pct_e_per_A2: float | None
    paper_convergence_dose_e_per_A2: float | None
    reason: str = ""

    def summary(self) -> dict[str, Any]:
        """Doses and readout factors (JSON-ready)."""
        return {
            "truth_visibility_dose_e_per_A2": self.truth_visibility_dose_e_per_A2,
            "truth_convergence_dose_e_per_A2": self.truth_convergence_dose_e_per_A2,
            "visibility_dose_e_per_A2": self.visibility_dose_e_per_A2,
            "convergence_dose_e_per_A2": self.convergence_dose_e_per_A2,
            "visibility_factor": readout_factor(self.visibility_dose_e_per_A2,
                                                self.truth_visibility_dose_e_per_A2),
            "convergence_factor": readout_factor(self.convergence_dose_e_per_A2,
                                                 self.truth_convergence_dose_e_per_A2),
            "paper_dose_at_50pct_e_per_A2": self.paper_dose_at_50pct_e_per_A2,
            "paper_convergence_dose_e_per_A2": self.paper_convergence_dose_e_per_A2,
            "reason": self.reason,
        }


def readout_factor(readout: float | None, truth: float | None) -> float | None:
    """How far a readout is from the truth, as a factor ≥ 1 (None if either is missing)."""
    if readout is None or truth is None:
        return None
    if not (readout > 0 and truth > 0):
        return None
    return float(max(readout / truth, truth / readout))


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def score_series(masks: Any, truth: np.ndarray, dose_e_per_A2: Sequence[float]) -> SeriesScore:
    """Score one segmented series against its truth, and its readouts against the truth.

    Parameters
    ----------
    masks : array, shape (n, y, x)
        The network's masks, frame by frame.
    truth : ndarray, shape (y, x)
        The exact particle mask.
    dose_e_per_A2 : sequence of float, shape (n,)
        Frame doses.

    Returns
    -------
    SeriesScore
    """
    from ..analysis.area_vs_dose import analyse_area_vs_dose

    stack = np.asarray(masks).astype(bool)
    dose = np.asarray(dose_e_per_A2, dtype=np.float64)
    truth = np.asarray(truth).astype(bool)
    f1 = np.array([binary_counts(mask, truth).f1 or 0.0 for mask in stack])
    analysis = analyse_area_vs_dose(stack, dose)
    summary = analysis.summary()
    consensus = analysis.consensus
    return SeriesScore(
        dose_e_per_A2=dose,
        f1_truth=f1,
        truth_visibility_dose_e_per_A2=lowest_dose_holding(dose, f1 >= 0.5),
        truth_convergence_dose_e_per_A2=lowest_dose_holding(dose, f1 >= 0.9),
        visibility_dose_e_per_A2=_finite(summary.get("visibility_dose_e_per_A2")),
        convergence_dose_e_per_A2=_finite(summary.get("convergence_dose_e_per_A2")),
        paper_dose_at_50pct_e_per_A2=_finite(summary.get("paper_dose_at_50pct_e_per_A2")),
        paper_convergence_dose_e_per_A2=_finite(summary.get("paper_convergence_dose_e_per_A2")),
        reason="" if consensus is None or consensus.available else str(consensus.reason),
    )


def summarise_condition(scores: Iterable[SeriesScore]) -> dict[str, Any]:
    """One table row for a model under one condition, from its particles' scores.

    The truth doses are over all frames of all particles (the dose from which *every*
    particle's every frame holds the level); the readout factors are the worst particle's
    among those where both the readout and the truth exist; a readout given where the
    truth is "not reached" (or the reverse) counts as a miss.

    Parameters
    ----------
    scores : iterable of SeriesScore

    Returns
    -------
    dict
        ``f1_05_dose_e_per_A2``, ``f1_09_dose_e_per_A2`` (None: not reached),
        ``mean_f1_above_200``, ``worst_visibility_factor``, ``worst_convergence_factor``,
        ``readout_misses`` (readouts given for a level not reached, or missing for one
        reached), ``particles``.
    """
    scores = list(scores)
    dose = np.concatenate([s.dose_e_per_A2 for s in scores])
    f1 = np.concatenate([s.f1_truth for s in scores])
    vis = [s.summary()["visibility_factor"] for s in scores]
    conv = [s.summary()["convergence_factor"] for s in scores]
    misses = sum(
        (readout is None) != (truth is None)
        for s in scores
        for readout, truth in ((s.visibility_dose_e_per_A2, s.truth_visibility_dose_e_per_A2),
                               (s.convergence_dose_e_per_A2,
                                s.truth_convergence_dose_e_per_A2)))
    high = dose >= 200
    return {
        "f1_05_dose_e_per_A2": _lowest_dose_all_holding(dose, f1 >= 0.5),
        "f1_09_dose_e_per_A2": _lowest_dose_all_holding(dose, f1 >= 0.9),
        "mean_f1_above_200": float(f1[high].mean()) if high.any() else None,
        "worst_visibility_factor": max((v for v in vis if v is not None), default=None),
        "worst_convergence_factor": max((v for v in conv if v is not None), default=None),
        "readout_misses": int(misses),
        "particles": len(scores),
    }


def _lowest_dose_all_holding(dose: np.ndarray, holds: np.ndarray) -> float | None:
    """:func:`lowest_dose_holding` over frames of several series that share doses: a dose
    holds only if every frame at that dose holds."""
    unique, inverse = np.unique(dose, return_inverse=True)
    all_hold = np.ones(unique.size, dtype=bool)
    np.logical_and.at(all_hold, inverse, np.asarray(holds, dtype=bool))
    return lowest_dose_holding(unique, all_hold)
