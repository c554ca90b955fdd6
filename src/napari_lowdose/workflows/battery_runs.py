"""Running models on the validation battery: one rule for every runner.

:mod:`.battery` defines the conditions, the series and the scoring; this module is how a
runner (``benchmarks/eval_battery.py``, the device kit) segments a battery series with a
model, records the result as one JSON row, and turns rows into the table (one row per
model and condition, :func:`~.battery.summarise_condition`) in CSV and Markdown.
"""

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .battery import BatteryCondition, SeriesScore, score_series, summarise_condition

__all__ = [
    "READOUT_KEYS",
    "battery_row",
    "battery_table",
    "segment_series",
    "table_csv",
    "table_markdown",
]

#: The readouts of a :class:`~.battery.SeriesScore` that a row records.
READOUT_KEYS = (
    "truth_visibility_dose_e_per_A2", "truth_convergence_dose_e_per_A2",
    "visibility_dose_e_per_A2", "convergence_dose_e_per_A2",
    "paper_dose_at_50pct_e_per_A2", "paper_convergence_dose_e_per_A2", "reason",
)


def segment_series(model: Any, frames: Any, threshold: float, *,
                   device: str = "cpu", batch_size: int = 1) -> np.ndarray:
    """Masks of every frame: the same inference and thresholding as ``segment``.

    Parameters
    ----------
    model : torch.nn.Module
        Segmentation network.
    frames : array, shape (n, y, x)
        The series.
    threshold : float
        Probability threshold (:func:`~.segmentation.resolve_threshold`).
    device : str, optional
        Torch device.
    batch_size : int, optional
        Frames per forward pass.

    Returns
    -------
    ndarray of bool, shape (n, y, x)
    """
    from ..analysis.masks import probability_mask
    from ..models.inference import predict_probabilities

    masks = np.zeros(np.shape(frames), dtype=bool)
    for index, probability in predict_probabilities(model, frames, device=device,
                                                    batch_size=batch_size):
        masks[index] = probability_mask(probability, threshold)
    return masks


def battery_row(model_name: str, condition: BatteryCondition, particle: int,
                threshold: float, model: Any, frames: Any, truth: np.ndarray,
                dose_e_per_A2: Sequence[float], *, device: str = "cpu",
                batch_size: int = 1,
                on_masks: Callable[[np.ndarray], None] | None = None) -> dict[str, Any]:
    """Segment one battery series, score it, and return its JSON row.

    The row holds the model, condition, particle, threshold, per-frame doses and F1, the
    readouts (:data:`READOUT_KEYS`) and the seconds taken. ``on_masks``, if given, gets
    the masks (e.g. to keep them for studying the readouts).
    """
    start = time.perf_counter()
    masks = segment_series(model, frames, threshold, device=device, batch_size=batch_size)
    if on_masks is not None:
        on_masks(masks)
    score = score_series(masks, truth, dose_e_per_A2)
    return {"model": model_name, "condition": condition.name, "particle": int(particle),
            "threshold": float(threshold),
            "dose_e_per_A2": score.dose_e_per_A2.tolist(),
            "f1": score.f1_truth.tolist(),
            "readouts": {key: getattr(score, key) for key in READOUT_KEYS},
            "seconds": round(time.perf_counter() - start, 1)}


def _score(row: dict[str, Any]) -> SeriesScore:
    return SeriesScore(dose_e_per_A2=np.asarray(row["dose_e_per_A2"]),
                       f1_truth=np.asarray(row["f1"]), **row["readouts"])


def battery_table(rows: Iterable[dict[str, Any]], models: Sequence[str],
                  conditions: Sequence[BatteryCondition]) -> list[dict[str, Any]]:
    """One row per (model, condition) with rows: :func:`~.battery.summarise_condition`.

    Parameters
    ----------
    rows : iterable of dict
        Rows of :func:`battery_row` (any order; one per model, condition and particle).
    models, conditions : sequence
        The table's order.
    """
    rows = sorted(rows, key=lambda r: (r["model"], r["condition"], r["particle"]))
    table = []
    for model in models:
        for condition in conditions:
            mine = [r for r in rows if r["model"] == model and r["condition"] == condition.name]
            if mine:
                table.append({"model": model, "condition": condition.name,
                              "threshold": mine[0]["threshold"],
                              **summarise_condition(_score(r) for r in mine)})
    return table


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "not reached"
    return f"{value:.{digits}f}"


def table_markdown(table: Sequence[dict[str, Any]]) -> str:
    """The battery table in Markdown (for docs/models.md)."""
    lines = ["| model | condition | threshold | F1 ≥ 0.5 from (e⁻/Å²) | F1 ≥ 0.9 from (e⁻/Å²) "
             "| mean F1 ≥ 200 e⁻/Å² | visibility readout, worst factor | convergence readout, "
             "worst factor | readout misses |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        lines.append(
            f"| {row['model']} | {row['condition']} | {row['threshold']:.2f} "
            f"| {_fmt(row['f1_05_dose_e_per_A2'])} | {_fmt(row['f1_09_dose_e_per_A2'])} "
            f"| {_fmt(row['mean_f1_above_200'], 2)} "
            f"| {_fmt(row['worst_visibility_factor'], 2)} "
            f"| {_fmt(row['worst_convergence_factor'], 2)} "
            f"| {row['readout_misses']}/{2 * row['particles']} |")
    return "\n".join(lines) + "\n"


def table_csv(table: Sequence[dict[str, Any]]) -> str:
    """The table as CSV (empty cells for missing values)."""
    header = list(table[0]) if table else []
    lines = [",".join(header)]
    lines += [",".join("" if row[k] is None else str(row[k]) for k in header) for row in table]
    return "\n".join(lines) + "\n"
