"""Segmented area against dose: the convergence dose and the dose at 50 % segmentation.

Larsen et al. (2023), Figs. 2–4 and SOI Fig. 9, read two doses off the curve of
segmented particle area against frame dose:

* the **convergence dose** — the lowest dose beyond which the area stays inside
  the band ``[min, max]`` of the areas found at the highest doses (the
  paper: ~200 e⁻/Å² for the MSD-net);
* the **dose at 50 % segmentation** — the first dose at which the area reaches
  half of the converged area (where the particle becomes visible to the
  network; the paper: 20–30 e⁻/Å², ~70 % lower for the MSD-net than the U-net).

"The highest doses" are the ``high_dose_fraction`` of frames with the highest
dose (at least ``min_high_dose_frames``); the converged area is the median of
their areas. Frames are analysed in order of increasing dose, whatever their
order in the series. Where an exact truth mask exists, :func:`f1_per_frame`
gives the pixel F1 of every frame (SOI Fig. 9).

Several particles in one field: the consensus of the highest-dose frames splits the field
into particles (:func:`~napari_lowdose.analysis.consensus.particle_readouts`);
:meth:`AreaAnalysis.particle` gives one particle's own curve and readouts,
:meth:`AreaAnalysis.particle_table` a block of rows per particle when there is more than
one, and :meth:`AreaAnalysis.export_table` (``area_vs_dose.csv``) puts them after the
whole-field rows (:func:`table_blocks` splits it again).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..io.units import pixel_area_A2, pixel_sides_A
from .consensus import ConsensusReadout, consensus_readout
from .metrics import binary_counts

__all__ = [
    "AREA_TABLE_COLUMNS",
    "PARTICLE_COLUMN",
    "WHOLE_FIELD",
    "AreaAnalysis",
    "analyse_area_vs_dose",
    "area_per_frame",
    "convergence_dose",
    "dose_at_fraction",
    "f1_per_frame",
    "readout_text",
    "table_blocks",
]

#: Columns of :meth:`AreaAnalysis.table`, units in the names.
AREA_TABLE_COLUMNS: tuple[str, ...] = (
    "frame",
    "dose_e_per_A2",
    "cumulative_dose_e_per_A2",
    "area_px",
    "area_nm2",
    "in_converged_band",
)

#: Last column of :meth:`AreaAnalysis.export_table` when the field holds more than one
#: particle: which particle a row is about.
PARTICLE_COLUMN = "particle"
#: Its value on the whole-field rows (the particles are "1", "2", … by size).
WHOLE_FIELD = "all"


def area_per_frame(masks: Any) -> np.ndarray:
    """Pixels inside the mask of every frame: ``(n, y, x)`` → ``(n,)`` (a 2-D mask → 1 value)."""
    array = np.asarray(masks)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"masks must be (frames, y, x) or (y, x), got shape {array.shape}")
    return np.count_nonzero(array.reshape(array.shape[0], -1), axis=1).astype(np.int64)


def convergence_dose(dose_e_per_A2: np.ndarray, area: np.ndarray,
                     band: tuple[float, float]) -> float:
    """Lowest dose from which every frame's area lies inside ``band`` (inf if none).

    Parameters
    ----------
    dose_e_per_A2, area : ndarray, shape (n,)
        Frame doses and areas, in any order.
    band : (float, float)
        ``[low, high]`` area band (inclusive).
    """
    doses, areas = np.asarray(dose_e_per_A2, dtype=np.float64), np.asarray(area)
    outside = (areas < band[0]) | (areas > band[1])
    if not outside.any():
        return float(doses.min())
    # Frames of equal dose (e.g. several particles) count together: all must be inside.
    later = doses[doses > doses[outside].max()]
    return float(later.min()) if later.size else math.inf


def dose_at_fraction(dose_e_per_A2: np.ndarray, area: np.ndarray, reference_area: float,
                     fraction: float = 0.5) -> float:
    """Lowest dose at which the area reaches ``fraction × reference_area`` (inf if never)."""
    if reference_area <= 0:
        return math.inf
    order = np.argsort(dose_e_per_A2, kind="stable")
    doses, areas = np.asarray(dose_e_per_A2)[order], np.asarray(area)[order]
    reached = np.flatnonzero(areas >= fraction * reference_area)
    return float(doses[reached[0]]) if reached.size else math.inf


def _area_readouts(area: np.ndarray, dose: np.ndarray, high: np.ndarray):
    """(band, converged area, convergence dose, dose at 50 %) of an area curve whose
    highest-dose frames are ``high`` (indices or a boolean mask)."""
    band = (float(area[high].min()), float(area[high].max()))
    converged = float(np.median(area[high]))
    return (band, converged, convergence_dose(dose, area, band),
            dose_at_fraction(dose, area, converged, 0.5))


@dataclass(frozen=True)
class AreaAnalysis:
    """Area-against-dose curve of one segmented series and the doses read off it.

    Attributes
    ----------
    frame : ndarray of int
        Frame numbers (series order).
    dose_e_per_A2, cumulative_dose_e_per_A2 : ndarray
        Frame dose and the dose received up to and including the frame (series order).
    area_px : ndarray of int
        Segmented pixels per frame.
    area_nm2 : ndarray of float
        Segmented area in nm² (NaN without a pixel size).
    band_px : (float, float)
        Converged band: ``[min, max]`` of the areas at the highest doses.
    converged_area_px : float
        Median area at the highest doses.
    convergence_dose_e_per_A2, dose_at_50pct_e_per_A2 : float
        The two doses (inf when not reached).
    high_dose_frames : ndarray of int
        Frames that define the band.
    pixel_area_nm2 : float
        Area of one pixel in nm² (NaN if unknown).
    consensus : ConsensusReadout or None
        Readouts against the consensus of the highest-dose frames
        (:mod:`~napari_lowdose.analysis.consensus`; None when only areas were given).
    paper_reason : str
        Why the two area-only doses are not given (too few frames), or ``""``.
    rose : dict or None
        The particle's contrast and Rose-criterion doses
        (:func:`~napari_lowdose.analysis.rose.rose_readouts`: the whole field, with a
        ``particles`` list; one particle's entry in :meth:`particle`); None when not
        measured (it needs the frames, not only the masks).
    """

    frame: np.ndarray
    dose_e_per_A2: np.ndarray
    cumulative_dose_e_per_A2: np.ndarray
    area_px: np.ndarray
    area_nm2: np.ndarray
    band_px: tuple[float, float]
    converged_area_px: float
    convergence_dose_e_per_A2: float
    dose_at_50pct_e_per_A2: float
    high_dose_frames: np.ndarray
    pixel_area_nm2: float
    consensus: ConsensusReadout | None = None
    rose: dict[str, Any] | None = None
    paper_reason: str = ""

    @property
    def converged_area_nm2(self) -> float:
        """Converged area in nm² (NaN without a pixel size)."""
        return self.converged_area_px * self.pixel_area_nm2

    @property
    def in_band(self) -> np.ndarray:
        """Whether each frame's area lies in the converged band."""
        low, high = self.band_px
        return (self.area_px >= low) & (self.area_px <= high)

    def table(self) -> dict[str, np.ndarray]:
        """Per-frame table (:data:`AREA_TABLE_COLUMNS`, then the consensus columns
        :data:`~napari_lowdose.analysis.consensus.CONSENSUS_COLUMNS` when there are
        masks), e.g. for a Labels layer's ``features``."""
        table = {
            "frame": self.frame,
            "dose_e_per_A2": self.dose_e_per_A2,
            "cumulative_dose_e_per_A2": self.cumulative_dose_e_per_A2,
            "area_px": self.area_px,
            "area_nm2": self.area_nm2,
            "in_converged_band": self.in_band,
        }
        if self.consensus is not None:
            table.update(self.consensus.table())
        return table

    @property
    def n_particles(self) -> int:
        """Particles of the consensus of the highest-dose frames (0 without a readout)."""
        return 0 if self.consensus is None else len(self.consensus.particles)

    def particle(self, number: int) -> "AreaAnalysis":
        """One particle's own analysis: its area per frame (the frame's mask pixels in that
        particle's surroundings), converged band and area-only doses from that curve, and
        its recall, precision, F1, over-segmented frames, visibility and convergence doses
        against its part of the consensus, and its own Rose readout. With one particle it
        equals the whole field.

        Parameters
        ----------
        number : int
            1, 2, … (the particles by size, as in ``summary()["particles"]``).

        Raises
        ------
        ValueError
            No such particle.
        """
        if not 1 <= number <= self.n_particles:
            raise ValueError(f"no particle {number}: the consensus has {self.n_particles}")
        whole = self.consensus
        own = whole.particles[number - 1]
        area = np.asarray(own["frame_area_px"], dtype=np.int64)
        band, converged, converged_from, half_at = _area_readouts(
            area, self.dose_e_per_A2, np.isin(self.frame, self.high_dose_frames))
        readout = replace(
            whole, recall=np.asarray(own["recall"], dtype=float),
            precision=np.asarray(own["precision"], dtype=float),
            f1=np.asarray(own["f1"], dtype=float),
            over_segmented=np.asarray(own["over_segmented"], dtype=bool), consensus=None,
            visibility_dose_e_per_A2=own["visibility_dose_e_per_A2"],
            convergence_dose_e_per_A2=own["convergence_dose_e_per_A2"], particles=[])
        rose = None
        for entry in (self.rose or {}).get("particles") or []:
            if entry.get("particle") == number:
                rose = {key: value for key, value in entry.items() if key != "particle"}
        return replace(self, area_px=area, area_nm2=area * self.pixel_area_nm2,
                       band_px=band, converged_area_px=converged,
                       convergence_dose_e_per_A2=converged_from,
                       dose_at_50pct_e_per_A2=half_at, consensus=readout, rose=rose)

    def particle_table(self) -> dict[str, np.ndarray]:
        """One block of rows per particle (:meth:`particle`'s :meth:`table`) when the
        consensus holds more than one, with a last column :data:`PARTICLE_COLUMN`
        (``"1"``, ``"2"``, …); empty otherwise."""
        if self.n_particles < 2:
            return {}
        numbers = range(1, self.n_particles + 1)
        blocks = [self.particle(k).table() for k in numbers]
        table = {key: np.concatenate([block[key] for block in blocks]) for key in blocks[0]}
        table[PARTICLE_COLUMN] = np.repeat(np.array([str(k) for k in numbers], dtype=object),
                                           self.frame.size)
        return table

    def export_table(self) -> dict[str, np.ndarray]:
        """The table of ``area_vs_dose.csv``: :meth:`table`, and when the consensus holds
        more than one particle, a last column :data:`PARTICLE_COLUMN`
        (:data:`WHOLE_FIELD` on these rows) and the rows of :meth:`particle_table` after
        them. One particle: :meth:`table` unchanged."""
        table, particles = self.table(), self.particle_table()
        if not particles:
            return table
        merged = {key: np.concatenate([values, particles[key]]) for key, values in table.items()}
        merged[PARTICLE_COLUMN] = np.concatenate([
            np.full(self.frame.size, WHOLE_FIELD, dtype=object), particles[PARTICLE_COLUMN]])
        return merged

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (inf and NaN become None)."""

        def finite(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        consensus = {} if self.consensus is None else self.consensus.summary()
        for key in ("consensus_frames", "over_segmented_frames"):
            if key in consensus:  # series frame indices, as high_dose_frames
                consensus[key] = [int(self.frame[i]) for i in consensus[key]]
        return {
            # Against the consensus of the highest-dose frames (None without a readout).
            "visibility_dose_e_per_A2": consensus.get("visibility_dose_e_per_A2"),
            "convergence_dose_e_per_A2": consensus.get("convergence_dose_e_per_A2"),
            **{k: v for k, v in consensus.items()
               if k not in ("visibility_dose_e_per_A2", "convergence_dose_e_per_A2")},
            # The paper's area-only readouts (Larsen et al. 2023), for comparison.
            "paper_readout": self.paper_reason or "ok",
            "paper_convergence_dose_e_per_A2": finite(self.convergence_dose_e_per_A2),
            "paper_dose_at_50pct_e_per_A2": finite(self.dose_at_50pct_e_per_A2),
            "dose_at_50pct_e_per_A2": finite(self.dose_at_50pct_e_per_A2),
            "converged_area_px": finite(self.converged_area_px),
            "converged_area_nm2": finite(self.converged_area_nm2),
            "converged_band_px": [float(v) for v in self.band_px],
            "high_dose_frames": [int(f) for f in self.high_dose_frames],
            "n_frames": int(self.frame.size),
            # Contrast and Rose-criterion doses (None when not measured).
            "rose": self.rose,
        }


def analyse_area_vs_dose(
    masks_or_area: Any,
    dose_e_per_A2: Any,
    pixel_size_A: float | tuple[float, float] | None = None,
    *,
    high_dose_fraction: float = 0.1,
    min_high_dose_frames: int = 3,
    shifts_px: Any = None,
    convergence_f1: float = 0.9,
    series_max_dose_e_per_A2: float | None = None,
    frames: Any = None,
    series_dose_e_per_A2: Any = None,
) -> AreaAnalysis:
    """Area per frame against dose, the converged band, and the two doses read off it.

    Parameters
    ----------
    masks_or_area : array
        Binary masks ``(n, y, x)``, or the areas in pixels ``(n,)``.
    dose_e_per_A2 : array, shape (n,)
        Frame doses in e⁻/Å² (any order; all positive).
    pixel_size_A : float or (float, float), optional
        Pixel size in Å (y, x), for areas in nm².
    high_dose_fraction : float
        Fraction of frames, by highest dose, that define the converged band.
    min_high_dose_frames : int
        At least this many frames define it (all frames if fewer).
    shifts_px, convergence_f1, series_max_dose_e_per_A2 : optional
        For the readouts against the consensus of the highest-dose frames
        (:func:`~napari_lowdose.analysis.consensus.consensus_readout`), made when masks
        are given.
    frames : array of int, optional
        The series index of each analysed frame (default ``0 … n − 1``), for part of a
        series (a frame range, a cancelled run): the table's ``frame`` column and
        ``high_dose_frames`` use them.
    series_dose_e_per_A2 : array, optional
        The dose of every frame of the whole series, so that the cumulative dose counts
        the frames before the analysed ones (default: the analysed frames only).

    Returns
    -------
    AreaAnalysis
    """
    values = np.asarray(masks_or_area)
    area = values.astype(np.int64) if values.ndim == 1 else area_per_frame(values)
    dose = np.asarray(dose_e_per_A2, dtype=np.float64).reshape(-1)
    if dose.shape != area.shape:
        raise ValueError(f"{area.size} frames but {dose.size} doses")
    if area.size == 0:
        raise ValueError("no frames to analyse")
    if not np.all(np.isfinite(dose)) or np.any(dose <= 0):
        raise ValueError("frame doses must be positive and finite")
    if not 0 < high_dose_fraction <= 1:
        raise ValueError("high_dose_fraction must be in (0, 1]")
    index = np.arange(area.size) if frames is None else np.asarray(frames, dtype=np.int64)
    if index.shape != area.shape:
        raise ValueError(f"{area.size} frames but {index.size} frame indices")
    if series_dose_e_per_A2 is None:
        cumulative = np.cumsum(dose)
    else:
        whole = np.asarray(series_dose_e_per_A2, dtype=np.float64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= whole.size):
            raise ValueError(f"frame indices beyond the series' {whole.size} doses")
        cumulative = np.cumsum(whole)[index]
    n_high = min(area.size, max(int(min_high_dose_frames),
                                int(math.ceil(high_dose_fraction * area.size))))
    high = np.argsort(dose, kind="stable")[-n_high:]
    band, converged, converged_from, half_at = _area_readouts(area, dose, high)
    paper_reason = ""
    if area.size < 2 * int(min_high_dose_frames):
        # The band is (nearly) every frame: no dose can be read "from" it (the consensus
        # readout's rule, consensus_readout).
        converged_from = half_at = math.nan
        paper_reason = (f"too few segmented frames ({area.size}; at least "
                        f"{2 * int(min_high_dose_frames)}) for a band of the highest doses")
    px_area_nm2 = pixel_area_nm2(pixel_size_A)
    return AreaAnalysis(
        frame=index,
        dose_e_per_A2=dose,
        cumulative_dose_e_per_A2=cumulative,
        area_px=area,
        area_nm2=area * px_area_nm2,
        band_px=band,
        converged_area_px=converged,
        convergence_dose_e_per_A2=converged_from,
        dose_at_50pct_e_per_A2=half_at,
        high_dose_frames=index[np.sort(high)],
        pixel_area_nm2=px_area_nm2,
        paper_reason=paper_reason,
        consensus=None if values.ndim == 1 else consensus_readout(
            values, dose, shifts_px=shifts_px, high_dose_fraction=high_dose_fraction,
            min_high_dose_frames=min_high_dose_frames, convergence_f1=convergence_f1,
            series_max_dose_e_per_A2=series_max_dose_e_per_A2),
    )


def readout_text(dose_e_per_A2: float | None, lowest_dose_e_per_A2: float | None = None
                 ) -> str:
    """A readout dose as the command and the docks print it.

    ``"not reached"`` for None (or not finite); ``"≤ 12 e⁻/Å² (the lowest dose
    segmented)"`` when it is the lowest dose of the frames analysed, from which on it
    held: the true dose may be lower (a frame range, or a series that starts too late).
    """
    if dose_e_per_A2 is None or not math.isfinite(dose_e_per_A2):
        return "not reached"
    text = f"{dose_e_per_A2:.3g} e⁻/Å²"
    if lowest_dose_e_per_A2 is not None and dose_e_per_A2 <= lowest_dose_e_per_A2:
        return f"≤ {text} (the lowest dose segmented)"
    return text


def pixel_area_nm2(pixel_size_A: float | tuple[float, float] | None) -> float:
    """Area of one pixel in nm² for a (y, x) or square pixel size in Å (NaN for None)."""
    if pixel_size_A is None:
        return math.nan
    if min(pixel_sides_A(pixel_size_A)) <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size_A}")
    return pixel_area_A2(pixel_size_A) / 100.0


def f1_per_frame(masks: Any, truth: Any) -> np.ndarray:
    """Pixel F1 of every frame's mask against a truth mask (one ``(y, x)`` or one per frame)."""
    predicted = np.asarray(masks).astype(bool)
    if predicted.ndim == 2:
        predicted = predicted[None]
    reference = np.asarray(truth).astype(bool)
    if reference.ndim == 2:
        reference = np.broadcast_to(reference, predicted.shape)
    if reference.shape != predicted.shape:
        raise ValueError(f"truth of shape {reference.shape} does not match masks "
                         f"of shape {predicted.shape}")
    return np.array([binary_counts(p, t).f1 for p, t in zip(predicted, reference, strict=True)])


def table_blocks(table: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, list]]:
    """Split a table of :meth:`AreaAnalysis.export_table` (or its CSV read back) by particle.

    Parameters
    ----------
    table : mapping of column → values
        With or without the :data:`PARTICLE_COLUMN` column (an
        :meth:`AreaAnalysis.particle_table` too).

    Returns
    -------
    dict
        :data:`WHOLE_FIELD` → the whole-field rows, ``"1"``, ``"2"``, … → each particle's
        rows, each as column → list (without the particle column); a table without that
        column is all whole-field rows.
    """
    columns = {key: list(values) for key, values in table.items() if key != PARTICLE_COLUMN}
    if PARTICLE_COLUMN not in table:
        return {WHOLE_FIELD: columns}
    names = [str(name) for name in table[PARTICLE_COLUMN]]
    blocks: dict[str, dict[str, list]] = {}
    for name in dict.fromkeys(names):
        rows = [i for i, value in enumerate(names) if value == name]
        blocks[name] = {key: [values[i] for i in rows] for key, values in columns.items()}
    return blocks
