"""Segmentation models on the validation battery (issue 15): F1 against dose per condition,
and how far the readouts a user sees are from the doses the truth gives.

Every model segments every frame of every battery series
(:data:`napari_lowdose.workflows.battery.BATTERY`: 6 conditions × 3 particles × 40 frames
from 5 to 5·10³ e⁻/Å²) at the threshold ``segment`` would use (its calibrated one, else
0.9), with the same inference and area-against-dose analysis as ``segment``. Per
(model, condition) it reports the doses from which every frame has F1 ≥ 0.5 and ≥ 0.9,
the mean F1 at ≥ 200 e⁻/Å², and the worst factor between the readouts (visibility,
convergence) and those truth doses.

Run (resumable: finished series are kept in ``OUT.jsonl`` and skipped)::

    PYTHONPATH=src python benchmarks/eval_battery.py [MODEL ...]
        [--conditions soi-fig9,direct] [--particles 3] [--frames 40]
        [--cache benchmarks/.battery-cache] [--out docs/images/battery]

MODEL: shipped names or ``.safetensors`` paths (default: every shipped segmentation
model). Writes ``OUT.jsonl`` (one line per model, condition, particle: per-frame doses
and F1, readouts), ``OUT.csv`` (the table) and ``OUT.md`` (the table for docs/models.md),
and prints the table.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _series(condition, particle: int, frames: int, cache: Path):
    """The battery series, simulated once and kept in ``cache``."""
    from napari_lowdose.workflows.battery import battery_series

    path = cache / f"{condition.name}-{particle}-{frames}.npz"
    if path.exists():
        with np.load(path) as stored:
            return stored["frames"], stored["mask"], stored["dose"]
    series = battery_series(condition, particle, n_frames=frames)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, frames=series.frames, mask=series.mask, dose=series.dose_e_per_A2)
    tmp.replace(path)
    return series.frames, series.mask, series.dose_e_per_A2


def _done(jsonl: Path) -> dict[tuple[str, str, int], dict]:
    if not jsonl.exists():
        return {}
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return {(r["model"], r["condition"], r["particle"]): r for r in rows}


def _fmt(value, digits: int = 0) -> str:
    if value is None:
        return "not reached"
    return f"{value:.{digits}f}"


def _table(rows: dict, models: list[str], conditions) -> list[dict]:
    from napari_lowdose.workflows.battery import SeriesScore, summarise_condition

    table = []
    for model in models:
        for condition in conditions:
            mine = [r for (m, c, _), r in sorted(rows.items()) if m == model
                    and c == condition.name]
            if not mine:
                continue
            scores = [SeriesScore(dose_e_per_A2=np.asarray(r["dose_e_per_A2"]),
                                  f1_truth=np.asarray(r["f1"]), **r["readouts"])
                      for r in mine]
            table.append({"model": model, "condition": condition.name,
                          "threshold": mine[0]["threshold"], **summarise_condition(scores)})
    return table


def _markdown(table: list[dict]) -> str:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--conditions", default="",
                        help="comma-separated condition names (default: all)")
    parser.add_argument("--particles", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.battery-cache"))
    parser.add_argument("--out", type=Path, default=Path("docs/images/battery"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()

    import torch

    from napari_lowdose.analysis.masks import probability_mask
    from napari_lowdose.models.inference import predict_probabilities
    from napari_lowdose.models.registry import available_models, load_model, resolve_model
    from napari_lowdose.workflows.battery import (
        BATTERY,
        BATTERY_FRAMES,
        BATTERY_PARTICLES,
        battery_condition,
        score_series,
    )
    from napari_lowdose.workflows.segmentation import resolve_threshold

    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models or available_models()
    conditions = ([battery_condition(n) for n in args.conditions.split(",")]
                  if args.conditions else list(BATTERY))
    particles = args.particles or BATTERY_PARTICLES
    frames_n = args.frames or BATTERY_FRAMES
    jsonl = args.out.with_suffix(".jsonl")
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    rows = _done(jsonl)
    for model_name in models:
        model, metadata = load_model(resolve_model(model_name), device="cpu")
        threshold = resolve_threshold(None, metadata, model_name)
        for condition in conditions:
            for particle in range(particles):
                if (model_name, condition.name, particle) in rows:
                    continue
                frames, truth, dose = _series(condition, particle, frames_n, args.cache)
                start = time.perf_counter()
                masks = np.zeros(frames.shape, dtype=bool)
                for index, probability in predict_probabilities(model, frames, device="cpu"):
                    masks[index] = probability_mask(probability, threshold)
                score = score_series(masks, truth, dose)
                row = {"model": model_name, "condition": condition.name,
                       "particle": particle, "threshold": threshold,
                       "dose_e_per_A2": score.dose_e_per_A2.tolist(),
                       "f1": score.f1_truth.tolist(),
                       "readouts": {k: getattr(score, k) for k in (
                           "truth_visibility_dose_e_per_A2", "truth_convergence_dose_e_per_A2",
                           "visibility_dose_e_per_A2", "convergence_dose_e_per_A2",
                           "paper_dose_at_50pct_e_per_A2", "paper_convergence_dose_e_per_A2",
                           "reason")},
                       "seconds": round(time.perf_counter() - start, 1)}
                with jsonl.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                rows[(model_name, condition.name, particle)] = row
                print(f"{model_name} {condition.name} particle {particle}: "
                      f"{json.dumps(score.summary())} ({row['seconds']} s)", flush=True)
    table = _table(rows, models, conditions)
    header = list(table[0]) if table else []
    csv = [",".join(header)] + [",".join("" if row[k] is None else str(row[k]) for k in header)
                                for row in table]
    args.out.with_suffix(".csv").write_text("\n".join(csv) + "\n")
    markdown = _markdown(table)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
