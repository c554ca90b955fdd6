"""Issue 15's goals for networks that generalise, checked on the validation battery.

Per battery condition the goal is F1 ≥ 0.5 on every frame from ≤ 30 e⁻/Å² (or half the
whole-particle Rose dose, where that is higher) and F1 ≥ 0.9 on every frame from ≤ 200
e⁻/Å² (or the 1 nm² Rose dose, where higher). The Rose doses (C·√(dose·A) = 5,
``analysis.rose``) are measured here on the exact particle: its contrast in the mean of the
four highest-dose frames against a ring around the true mask. Each particle is held to its
own goals; a condition meets a goal when all its particles do.

Run (after ``eval_battery.py``, whose rows hold each particle's per-frame F1)::

    PYTHONPATH=src python benchmarks/battery_goals.py [docs/images/battery.jsonl ...] \
        [--cache benchmarks/.battery-cache] [--frames 40]

Prints a Markdown table: per model and condition, the doses reached and the goals.
"""

import argparse
import json
from pathlib import Path

import numpy as np


def _goals(condition_name: str, particle: int, cache: Path, frames_n: int) -> dict:
    from napari_lowdose.analysis.rose import rose_readouts

    with np.load(cache / f"{condition_name}-{particle}-{frames_n}.npz") as series:
        frames, truth, dose = series["frames"], series["mask"].astype(bool), series["dose"]
    from napari_lowdose.workflows.battery import battery_condition

    sampling = battery_condition(condition_name).sampling_A
    top = np.argsort(dose)[-4:]
    rose = rose_readouts(frames[top].astype(np.float64).mean(axis=0), truth,
                         (sampling, sampling))
    particle_dose = rose["rose_dose_particle_e_per_A2"]
    patch_dose = rose["rose_dose_1nm2_e_per_A2"]
    return {"rose_particle": particle_dose, "rose_1nm2": patch_dose,
            "goal_05": max(30.0, 0.5 * particle_dose), "goal_09": max(200.0, patch_dose)}


def _reached(dose: np.ndarray, f1: np.ndarray, level: float) -> float | None:
    from napari_lowdose.analysis.consensus import lowest_dose_holding

    return lowest_dose_holding(dose, f1 >= level)


def _fmt(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", type=Path,
                        default=[Path("docs/images/battery.jsonl")])
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.battery-cache"))
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()

    rows = [json.loads(line) for path in args.rows for line in path.read_text().splitlines()
            if line.strip()]
    goals: dict[tuple[str, int], dict] = {}
    print("| model | condition | Rose dose, whole particle (e⁻/Å²) | Rose dose, 1 nm² | "
          "F1 ≥ 0.5 from / goal (e⁻/Å², worst particle) | met | "
          "F1 ≥ 0.9 from / goal | met |")
    print("|---|---|---|---|---|---|---|---|")
    for model in dict.fromkeys(r["model"] for r in rows):
        for condition in dict.fromkeys(r["condition"] for r in rows if r["model"] == model):
            mine = [r for r in rows if r["model"] == model and r["condition"] == condition]
            cells = []
            for row in mine:
                key = (condition, int(row["particle"]))
                if key not in goals:
                    goals[key] = _goals(condition, key[1], args.cache, args.frames)
                dose, f1 = np.asarray(row["dose_e_per_A2"]), np.asarray(row["f1"])
                cells.append((goals[key], _reached(dose, f1, 0.5), _reached(dose, f1, 0.9)))
            met_05 = all(r05 is not None and r05 <= g["goal_05"] for g, r05, _ in cells)
            met_09 = all(r09 is not None and r09 <= g["goal_09"] for g, _, r09 in cells)
            worst_05 = max(cells, key=lambda c: np.inf if c[1] is None else c[1] / c[0]["goal_05"])
            worst_09 = max(cells, key=lambda c: np.inf if c[2] is None else c[2] / c[0]["goal_09"])
            rose_p = [g["rose_particle"] for g, _, _ in cells]
            rose_n = [g["rose_1nm2"] for g, _, _ in cells]
            print(f"| {model} | {condition} | {min(rose_p):.0f}–{max(rose_p):.0f} | "
                  f"{min(rose_n):.0f}–{max(rose_n):.0f} | "
                  f"{_fmt(worst_05[1])} / {worst_05[0]['goal_05']:.0f} | "
                  f"{'yes' if met_05 else 'no'} | "
                  f"{_fmt(worst_09[2])} / {worst_09[0]['goal_09']:.0f} | "
                  f"{'yes' if met_09 else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
