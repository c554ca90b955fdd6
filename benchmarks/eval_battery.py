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
        [--cache benchmarks/.battery-cache] [--out docs/images/battery] [--keep-masks DIR]

MODEL: shipped names or ``.safetensors`` paths (default: every shipped segmentation
model). Writes ``OUT.jsonl`` (one line per model, condition, particle: per-frame doses
and F1, readouts), ``OUT.csv`` (the table) and ``OUT.md`` (the table for docs/models.md),
and prints the table.
"""

import argparse
import functools
import json
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


def _rescore(rows: dict, masks_dir: Path, cache: Path, frames_n: int, jsonl: Path) -> None:
    """Score every row with kept masks again (same doses, truth and masks); rewrite jsonl."""
    from napari_lowdose.workflows.battery import battery_condition
    from napari_lowdose.workflows.battery_runs import load_masks, row_from_masks

    left = []
    for key, row in rows.items():
        label, condition_name, particle = key
        path = masks_dir / f"{Path(label).stem}-{condition_name}-{particle}.npz"
        if not path.exists():
            left.append(f"{label} {condition_name} {particle}")
            continue
        _, truth, dose = _series(battery_condition(condition_name), particle, frames_n, cache)
        again = row_from_masks(label, condition_name, particle, row["threshold"],
                               load_masks(path), truth, dose)
        rows[key] = {**again, "seconds": row.get("seconds")}
    tmp = jsonl.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    tmp.replace(jsonl)
    print(f"rescored {len(rows) - len(left)} rows; without kept masks: "
          f"{', '.join(left) or 'none'}", flush=True)


def _done(jsonl: Path) -> dict[tuple[str, str, int], dict]:
    if not jsonl.exists():
        return {}
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return {(r["model"], r["condition"], r["particle"]): r for r in rows}


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
    parser.add_argument("--match-sampling", action="store_true",
                        help="resample frames to each model's training pixel size "
                             "(segment --match-sampling); rows are named MODEL@sampling")
    parser.add_argument("--keep-masks", type=Path, default=None, metavar="DIR",
                        help="also save every series' masks (bit-packed .npz) in DIR")
    parser.add_argument("--rescore", action="store_true",
                        help="first score the rows already in OUT.jsonl again from their "
                             "masks kept in --keep-masks DIR (after a change to the "
                             "readouts); rows without kept masks are left as they are")
    args = parser.parse_args()

    import torch

    from napari_lowdose.models.registry import available_models, load_model, resolve_model
    from napari_lowdose.workflows.battery import (
        BATTERY,
        BATTERY_FRAMES,
        BATTERY_PARTICLES,
        battery_condition,
    )
    from napari_lowdose.workflows.battery_runs import (
        battery_row,
        battery_table,
        save_masks,
        table_csv,
        table_markdown,
    )
    from napari_lowdose.workflows.segmentation import resolve_threshold, sampling_plan

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
    if args.rescore:
        if args.keep_masks is None:
            parser.error("--rescore needs --keep-masks DIR")
        _rescore(rows, args.keep_masks, args.cache, frames_n, jsonl)
    labels = {name: f"{name}@sampling" if args.match_sampling else name for name in models}
    for model_name in models:
        model, metadata = load_model(resolve_model(model_name), device="cpu")
        threshold = resolve_threshold(None, metadata, model_name)
        label = labels[model_name]
        for condition in conditions:
            # segment's rule (sampling_plan), resampling forced or off.
            zoom = sampling_plan(condition.sampling_A, metadata,
                                 match=bool(args.match_sampling)).zoom
            for particle in range(particles):
                if (label, condition.name, particle) in rows:
                    continue
                frames, truth, dose = _series(condition, particle, frames_n, args.cache)
                keep = None
                if args.keep_masks is not None:
                    name = f"{Path(label).stem}-{condition.name}-{particle}.npz"
                    keep = functools.partial(save_masks, args.keep_masks / name)
                row = battery_row(label, condition, particle, threshold, model, frames,
                                  truth, dose, on_masks=keep, zoom=zoom)
                with jsonl.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                rows[(label, condition.name, particle)] = row
                print(f"{label} {condition.name} particle {particle}: "
                      f"{json.dumps(row['readouts'])} ({row['seconds']} s)", flush=True)
    table = battery_table(rows.values(), list(labels.values()), conditions)
    args.out.with_suffix(".csv").write_text(table_csv(table))
    markdown = table_markdown(table)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
