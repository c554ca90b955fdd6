"""A segmented run's area against dose as a JSON-ready record (a mask layer's metadata)
and back: the whole-field table, each particle's rows and the summary
(:class:`~napari_lowdose.analysis.area_vs_dose.AreaAnalysis`)."""

import math
from typing import Any

import numpy as np

from .area_vs_dose import AreaAnalysis, table_blocks

__all__ = ["ROSE_FEATURES", "analysis_from_record", "area_record", "consensus_from_record",
           "features_from_record", "summary_features"]

#: The Rose readout's columns of a mask layer's features (each particle's as
#: ``particle_<k>_contrast``, ``particle_<k>_rose_dose_…``).
ROSE_FEATURES = ("particle_contrast", "rose_dose_particle_e_per_A2", "rose_dose_1nm2_e_per_A2")


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def area_record(
    analysis: AreaAnalysis, *, label: str, f1: Any = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """JSON-ready record of an analysis for a mask layer's metadata.

    ``table`` holds the per-frame columns of the whole field (``frame`` is the frame
    index in the series; ``f1`` is added when given), ``particle_table`` (with several
    particles) each particle's rows (:meth:`AreaAnalysis.particle_table`: together the
    rows of ``area_vs_dose.csv``), ``summary`` the doses read off the curve.
    """

    def lists(columns):
        columns = {key: np.asarray(value).tolist() for key, value in columns.items()}
        if "area_nm2" in columns:
            columns["area_nm2"] = [_finite(v) for v in columns["area_nm2"]]
        return columns

    table = lists(analysis.table())
    if f1 is not None:
        table["f1"] = [_finite(v) for v in np.asarray(f1, dtype=float)]
    particles = analysis.particle_table()
    return {
        "label": label,
        "table": table,
        **({"particle_table": lists(particles)} if particles else {}),
        "summary": analysis.summary(),
        "pixel_area_nm2": _finite(analysis.pixel_area_nm2),
        **(extra or {}),
    }


def analysis_from_record(record: dict[str, Any]) -> AreaAnalysis:
    """Rebuild the :class:`AreaAnalysis` of a record written by :func:`area_record`
    (with its particles)."""
    table, summary = record["table"], record["summary"]
    blocks = table_blocks(record.get("particle_table") or {})

    def dose(key):
        value = summary.get(key)
        return math.inf if value is None else float(value)

    pixel_area = record.get("pixel_area_nm2")
    pixel_area = math.nan if pixel_area is None else float(pixel_area)
    area_px = np.asarray(table["area_px"], dtype=np.int64)
    return AreaAnalysis(
        frame=np.asarray(table["frame"], dtype=np.int64),
        dose_e_per_A2=np.asarray(table["dose_e_per_A2"], dtype=float),
        cumulative_dose_e_per_A2=np.asarray(table["cumulative_dose_e_per_A2"], dtype=float),
        area_px=area_px,
        area_nm2=area_px * pixel_area,
        band_px=tuple(float(v) for v in summary["converged_band_px"]),
        converged_area_px=float(summary.get("converged_area_px") or 0.0),
        # The area-only doses (older records kept them under the plain names).
        convergence_dose_e_per_A2=dose("paper_convergence_dose_e_per_A2"
                                       if "paper_convergence_dose_e_per_A2" in summary
                                       else "convergence_dose_e_per_A2"),
        dose_at_50pct_e_per_A2=dose("dose_at_50pct_e_per_A2"),
        high_dose_frames=np.asarray(summary.get("high_dose_frames", []), dtype=np.int64),
        pixel_area_nm2=pixel_area,
        consensus=consensus_from_record(table, summary, blocks),
        paper_reason="" if summary.get("paper_readout", "ok") == "ok"
        else str(summary["paper_readout"]),
        rose=summary.get("rose"),
    )


def _column(rows: dict[str, list], key: str) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in rows[key]], dtype=float)


def _positions(table: dict[str, Any], frames: list[int]) -> np.ndarray:
    """Rows of the table holding these series frames (a record names frames by their
    index in the series; a readout refers to its rows)."""
    column = np.asarray(table.get("frame", []), dtype=np.int64)
    return np.asarray([int(np.flatnonzero(column == f)[0]) for f in frames
                       if np.any(column == f)], dtype=int)


def consensus_from_record(table: dict[str, Any], summary: dict[str, Any],
                          blocks: dict[str, dict[str, list]] | None = None):
    """The consensus readout stored in a record's (whole-field) table and summary, with
    the particles' rows of ``blocks`` (:func:`~napari_lowdose.analysis.area_vs_dose.
    table_blocks`; None if absent)."""
    from .consensus import ConsensusReadout

    if "consensus_readout" not in summary or "f1_consensus" not in table:
        return None
    status = summary["consensus_readout"]
    particles = summary.get("particles") or []
    blocks = dict(blocks or {})
    if len(particles) == 1:  # one particle: its rows are the whole field's
        blocks.setdefault(str(particles[0]["particle"]), table)
    readout = ConsensusReadout(
        recall=_column(table, "recall"), precision=_column(table, "precision"),
        f1=_column(table, "f1_consensus"),
        over_segmented=np.asarray(table["over_segmented"], dtype=bool), consensus=None,
        reference_frames=_positions(table, summary.get("consensus_frames", [])),
        visibility_dose_e_per_A2=summary.get("visibility_dose_e_per_A2"),
        convergence_dose_e_per_A2=summary.get("convergence_dose_e_per_A2"),
        convergence_f1=float(summary.get("convergence_f1", 0.9)),
        reason="" if status == "ok" else str(status),
    )
    readout.particles = [
        {**particle, "frame_area_px": np.asarray(rows["area_px"], dtype=np.int64),
         "recall": _column(rows, "recall"), "precision": _column(rows, "precision"),
         "f1": _column(rows, "f1_consensus"),
         "over_segmented": np.asarray(rows["over_segmented"], dtype=bool)}
        for particle in particles
        if (rows := blocks.get(str(particle["particle"]))) is not None]
    return readout


def summary_features(analysis: AreaAnalysis, f1: Any, label: str) -> dict[str, list]:
    """The one-row ``features`` table (label 1) of a mask layer: the area summary, the
    contrast and Rose doses (:data:`ROSE_FEATURES`) when measured, with each particle's
    visibility, convergence and Rose doses when the consensus holds several
    (``particle_<k>_…``; their per-frame rows are in the layer's area record)."""
    summary = analysis.summary()

    def value(key):
        v = summary[key]
        return np.nan if v is None else float(v)

    features = {
        "index": [1],
        "run": [label],
        "frames_analysed": [int(analysis.frame.size)],
        "convergence_dose_e_per_A2": [value("convergence_dose_e_per_A2")],
        "dose_at_50pct_e_per_A2": [value("dose_at_50pct_e_per_A2")],
        "converged_area_px": [value("converged_area_px")],
        "converged_area_nm2": [value("converged_area_nm2")],
    }
    if f1 is not None:
        features["median_f1"] = [float(np.nanmedian(f1))]
    rose = summary.get("rose") or {}
    if rose:  # the whole field's contrast and Rose doses (summary.json's "rose")
        for key in ROSE_FEATURES:
            features[key] = [_number(rose.get(key))]
    particles = summary.get("particles") or []
    rose_particles = {entry["particle"]: entry for entry in rose.get("particles") or []}
    if len(particles) > 1:  # each particle's doses (summary.json's "particles")
        features["particles"] = [len(particles)]
        for particle in particles:
            number = particle["particle"]
            for key in ("visibility_dose_e_per_A2", "convergence_dose_e_per_A2"):
                features[f"particle_{number}_{key}"] = [_number(particle[key])]
            if number in rose_particles:
                for key in ROSE_FEATURES:
                    name = key.removeprefix("particle_")
                    features[f"particle_{number}_{name}"] = [
                        _number(rose_particles[number].get(key))]
    return features


def _number(value) -> float:
    return np.nan if value is None else float(value)


def _number(value) -> float:
    return np.nan if value is None else float(value)


def features_from_record(record: dict[str, Any]) -> dict[str, list]:
    """The mask layer's ``features`` row (:func:`summary_features`) of a stored record."""
    f1 = record["table"].get("f1")
    if f1 is not None:
        f1 = np.array([np.nan if v is None else v for v in f1], dtype=float)
    return summary_features(analysis_from_record(record), f1, str(record.get("label", "")))
