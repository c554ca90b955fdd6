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
    "NOT_REACHED_FACTOR",
    "READOUT_KEYS",
    "battery_row",
    "battery_table",
    "model_ranking",
    "load_masks",
    "row_from_masks",
    "save_masks",
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
                   device: str = "cpu", batch_size: int = 1,
                   zoom: float | None = None) -> np.ndarray:
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
    zoom : float, optional
        Resample frames by this factor for the network
        (:func:`~.segmentation.sampling_plan`).

    Returns
    -------
    ndarray of bool, shape (n, y, x)
    """
    from ..analysis.masks import probability_mask
    from ..models.inference import predict_probabilities

    masks = np.zeros(np.shape(frames), dtype=bool)
    for index, probability in predict_probabilities(model, frames, device=device,
                                                    batch_size=batch_size, zoom=zoom):
        masks[index] = probability_mask(probability, threshold)
    return masks


def battery_row(model_name: str, condition: BatteryCondition, particle: int,
                threshold: float, model: Any, frames: Any, truth: np.ndarray,
                dose_e_per_A2: Sequence[float], *, device: str = "cpu",
                batch_size: int = 1,
                on_masks: Callable[[np.ndarray], None] | None = None,
                zoom: float | None = None) -> dict[str, Any]:
    """Segment one battery series, score it, and return its JSON row.

    The row holds the model, condition, particle, threshold, per-frame doses and F1, the
    readouts (:data:`READOUT_KEYS`) and the seconds taken. ``on_masks``, if given, gets
    the masks (e.g. to keep them for studying the readouts).
    """
    start = time.perf_counter()
    masks = segment_series(model, frames, threshold, device=device, batch_size=batch_size,
                           zoom=zoom)
    if on_masks is not None:
        on_masks(masks)
    row = row_from_masks(model_name, condition.name, particle, threshold, masks, truth,
                         dose_e_per_A2)
    return {**row, "seconds": round(time.perf_counter() - start, 1)}


def row_from_masks(model_name: str, condition_name: str, particle: int, threshold: float,
                   masks: np.ndarray, truth: np.ndarray,
                   dose_e_per_A2: Sequence[float]) -> dict[str, Any]:
    """The JSON row of a segmented battery series (:func:`battery_row` without the network):
    also how kept masks are scored again after a change to the readouts.

    Parameters
    ----------
    model_name, condition_name : str
        The row's labels.
    particle : int
        The particle's index in the condition.
    threshold : float
        The threshold the masks were made at.
    masks : ndarray of bool, shape (n, y, x)
        The series' masks.
    truth : ndarray of bool, shape (y, x)
        The exact particle mask.
    dose_e_per_A2 : sequence of float, shape (n,)
        Frame doses.

    Returns
    -------
    dict
        ``model``, ``condition``, ``particle``, ``threshold``, per-frame
        ``dose_e_per_A2`` and ``f1`` and the ``readouts`` (:data:`READOUT_KEYS`).
    """
    score = score_series(masks, truth, dose_e_per_A2)
    return {"model": model_name, "condition": condition_name, "particle": int(particle),
            "threshold": float(threshold),
            "dose_e_per_A2": score.dose_e_per_A2.tolist(),
            "f1": score.f1_truth.tolist(),
            "readouts": {key: getattr(score, key) for key in READOUT_KEYS}}


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


#: A level never reached counts as this multiple of the battery's highest dose.
NOT_REACHED_FACTOR = 2.0


def model_ranking(table: Sequence[dict[str, Any]]) -> list[tuple[str, tuple[float, ...]]]:
    """Rank models on the battery table: the rule that chooses the recommended model.

    Per model, over the battery's conditions: most conditions where every frame reaches
    F1 ≥ 0.9 from some dose; then most conditions reaching F1 ≥ 0.5; then the lowest
    geometric mean of the doses from which F1 ≥ 0.5 and F1 ≥ 0.9 hold, both levels of
    every condition together (a level never reached counts as twice the battery's highest
    dose), so finding a particle earlier does not outweigh segmenting it fully later;
    then the highest mean F1 at ≥ 200 e⁻/Å².

    Parameters
    ----------
    table : sequence of dict
        Rows of :func:`battery_table` (values may be None, or "" as read back from CSV).

    Returns
    -------
    list of (model, key)
        Best first; ``key`` is the tuple compared.
    """
    from .battery import BATTERY_DOSE_RANGE_E_PER_A2

    def value(row: dict[str, Any], name: str) -> float | None:
        cell = row.get(name)
        return None if cell in (None, "") else float(cell)

    penalty = NOT_REACHED_FACTOR * BATTERY_DOSE_RANGE_E_PER_A2[1]
    keys = {}
    for model in dict.fromkeys(row["model"] for row in table):
        rows = [row for row in table if row["model"] == model]
        f1_09 = [value(row, "f1_09_dose_e_per_A2") for row in rows]
        f1_05 = [value(row, "f1_05_dose_e_per_A2") for row in rows]
        high = [value(row, "mean_f1_above_200") for row in rows]
        log_mean = float(np.mean([np.log(penalty if d is None else d)
                                  for d in (*f1_05, *f1_09)]))
        keys[model] = (-sum(d is not None for d in f1_09), -sum(d is not None for d in f1_05),
                       round(float(np.exp(log_mean)), 6),
                       -float(np.mean([h for h in high if h is not None] or [0.0])))
    return sorted(keys.items(), key=lambda item: item[1])


def save_masks(path: Any, masks: np.ndarray) -> None:
    """Keep a series' masks bit-packed (``eval_battery.py --keep-masks``), atomically."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, bits=np.packbits(np.asarray(masks, dtype=bool), axis=-1),
                        shape=np.array(np.shape(masks)))
    tmp.replace(path)


def load_masks(path: Any) -> np.ndarray:
    """The masks :func:`save_masks` kept, as bool of their shape."""
    with np.load(path) as stored:
        shape = tuple(int(n) for n in stored["shape"])
        bits = np.unpackbits(stored["bits"], axis=-1)
    return bits[..., :shape[-1]].astype(bool).reshape(shape)
