"""How far candidate readout rules are from the truth, on battery masks kept by
``eval_battery.py --keep-masks`` (issue 15: the readouts against the consensus of the
highest-dose frames should be within 1.5× of the doses the exact truth gives).

For every kept series (one model, condition and particle) the frames' masks are compared
with the consensus of their highest-dose frames (``analysis.consensus``), and each rule's
dose is compared with the truth dose of its level (the lowest dose from which every frame
has F1 ≥ 0.5, or ≥ 0.9, against the exact mask):

* ``visibility, recall and precision >= 0.5`` — the first reading of "50 % of the particle";
* ``visibility, F1 >= 0.5`` — the rule ``segment`` uses;
* ``convergence, F1 >= L`` for a few levels L (``segment`` uses 0.9).

Run::

    PYTHONPATH=src python benchmarks/battery_readout_rules.py \
        /work/battery/masks_s:unet-au-ceo2-low@sampling [DIR:LABEL ...] \
        [--cache benchmarks/.battery-cache] [--frames 40]

Prints, per rule, how many series are within 1.5× of the truth, the misses (a dose given
where the truth level is never reached, or the reverse) and the worst and median factors.
"""

import argparse
from pathlib import Path

import numpy as np


def _factor(readout, truth):
    if readout is None and truth is None:
        return "both none"
    if (readout is None) != (truth is None):
        return "miss"
    return max(readout / truth, truth / readout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kept", nargs="+", metavar="DIR:LABEL",
                        help="a --keep-masks folder and the row label of its files")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.battery-cache"))
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()

    from napari_lowdose.analysis.area_vs_dose import analyse_area_vs_dose
    from napari_lowdose.analysis.consensus import lowest_dose_holding
    from napari_lowdose.analysis.metrics import binary_counts
    from napari_lowdose.workflows.battery_runs import load_masks

    levels = (0.85, 0.9, 0.92, 0.95)
    rules = {"visibility, recall and precision >= 0.5": "t05",
             "visibility, F1 >= 0.5": "t05",
             **{f"convergence, F1 >= {level:g}": "t09" for level in levels}}
    factors: dict[str, list] = {rule: [] for rule in rules}
    for spec in args.kept:
        folder, label = spec.rsplit(":", 1)
        for path in sorted(Path(folder).glob(f"{label}-*.npz")):
            condition, particle = path.stem[len(label) + 1:].rsplit("-", 1)
            with np.load(args.cache / f"{condition}-{particle}-{args.frames}.npz") as series:
                truth, dose = series["mask"].astype(bool), series["dose"]
            masks = load_masks(path)
            f1_truth = np.array([binary_counts(m, truth).f1 or 0.0 for m in masks])
            truth_dose = {"t05": lowest_dose_holding(dose, f1_truth >= 0.5),
                          "t09": lowest_dose_holding(dose, f1_truth >= 0.9)}
            readout = analyse_area_vs_dose(masks, dose).consensus
            doses = dict.fromkeys(rules)
            if readout.available:
                f1 = np.nan_to_num(readout.f1)
                both = (readout.recall >= 0.5) & (readout.precision >= 0.5)
                doses["visibility, recall and precision >= 0.5"] = lowest_dose_holding(dose,
                                                                                      both)
                doses["visibility, F1 >= 0.5"] = lowest_dose_holding(dose, f1 >= 0.5)
                for level in levels:
                    doses[f"convergence, F1 >= {level:g}"] = lowest_dose_holding(
                        dose, f1 >= level)
            for rule, key in rules.items():
                factors[rule].append(_factor(doses[rule], truth_dose[key]))
    print("| rule | within 1.5× of the truth | misses | worst factor | median factor |")
    print("|---|---:|---:|---:|---:|")
    for rule, found in factors.items():
        numbers = [f for f in found if isinstance(f, float)]
        worst = f"{max(numbers):.2f}" if numbers else "—"
        median = f"{np.median(numbers):.2f}" if numbers else "—"
        print(f"| {rule} | {sum(f <= 1.5 for f in numbers)}/{len(numbers)} | "
              f"{found.count('miss')} | {worst} | {median} |")


if __name__ == "__main__":
    main()
