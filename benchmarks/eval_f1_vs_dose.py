"""F1 against dose of trained segmentation models on simulated validation series (issue 5).

The validation recipe of Larsen et al. (2023), SOI Fig. 9: one
particle never used in training (:func:`napari_lowdose.simulate.series.simulate_dose_series`
draws structures from seed streams disjoint from any training dataset's), frames
from 10 to 10⁴ e⁻/Å², SOI Fig. 9 optics, MTF 3 noise, exact truth mask. Every
model segments every frame (probability ≥ threshold) and the pixel F1 against
the truth is recorded per frame.

Run::

    PYTHONPATH=src python benchmarks/eval_f1_vs_dose.py MODEL [MODEL ...]
        [--particles 3] [--frames 40] [--size 384] [--thresholds 0.9,0.5]
        [--clean] [--out docs/images/f1_vs_dose]

Writes ``OUT.csv`` (model, particle, frame, dose_e_per_A2, f1) and ``OUT.png``,
and prints per model the lowest dose from which every frame reaches F1 ≥ 0.9,
and the lowest dose with F1 ≥ 0.5 (the targets: ≥ 0.9 for every frame at
≥ 200 e⁻/Å², ≥ 0.5 from ≤ 30 e⁻/Å²).

``--clean`` also scores the masks after the clean-up for a one-particle field
(:class:`napari_lowdose.analysis.masks.MaskCleaning`: keep the largest region,
fill holes), from the same network pass, into ``OUT_clean.*`` (``OUT_p05_clean.*``).
"""

import argparse
from pathlib import Path

import numpy as np


def lowest_dose_from_which(doses: np.ndarray, f1: np.ndarray, level: float) -> float:
    """Lowest dose such that every frame at or above it has F1 ≥ ``level`` (inf if none).

    The convergence dose (Larsen et al. 2023) with the band ``[level, ∞)``.
    """
    from napari_lowdose.analysis import convergence_dose

    return convergence_dose(doses, f1, (level, np.inf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--particles", type=int, default=3)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--thresholds", default="0.9",
                        help="probability thresholds, e.g. 0.9,0.5,model (one network pass for "
                             "all; 'model': each model's calibrated threshold); 0.9 writes "
                             "OUT.*, 0.5 writes OUT_p05.*, model OUT_pmodel.*")
    parser.add_argument("--clean", action="store_true",
                        help="also score masks with keep-largest + fill-holes (OUT_clean.*)")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("docs/images/f1_vs_dose"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")

    from napari_lowdose.analysis.metrics import binary_counts
    from napari_lowdose.models.checkpoint import load_checkpoint
    from napari_lowdose.models.inference import predict_probabilities
    from napari_lowdose.simulate.series import series_recipe, simulate_dose_series
    from napari_lowdose.workflows.segmentation import model_threshold

    loaded = {path.stem: load_checkpoint(path) for path in args.models}
    models = {name: model for name, (model, _) in loaded.items()}
    calibrated = {name: model_threshold(meta, name) for name, (_, meta) in loaded.items()
                  if "model" in args.thresholds}
    from napari_lowdose.analysis.masks import MaskCleaning, probability_mask

    thresholds = [v if v == "model" else float(v) for v in args.thresholds.split(",")]
    cleanings = {"": None}
    if args.clean:
        cleanings["_clean"] = MaskCleaning(keep_largest=True, fill_holes=True)
    rows: dict[tuple[float, str], list] = {(t, c): [] for t in thresholds for c in cleanings}
    for particle in range(args.particles):
        seed = args.first_seed + particle
        series = simulate_dose_series(seed, n_frames=args.frames, size_px=args.size,
                                      recipe=series_recipe(args.size))
        for name, model in models.items():
            for frame, probability in predict_probabilities(model, series.frames, device="cpu"):
                for (threshold, suffix), found in rows.items():
                    value = calibrated[name] if threshold == "model" else threshold
                    mask = probability_mask(probability, value, cleanings[suffix])
                    counts = binary_counts(mask, series.mask)
                    found.append((name, particle, frame,
                                  float(series.dose_e_per_A2[frame]), counts.f1))
        print(f"particle {particle} (seed {seed}): mask {series.mask.mean():.1%} of the field",
              flush=True)
    for (threshold, suffix), found in rows.items():
        tag = threshold if threshold == "model" else f"{threshold:g}".replace(".", "")
        out = args.out if threshold == 0.9 else args.out.with_name(
            f"{args.out.name}_p{tag}")  # 0.5 → _p05, model → _pmodel
        out = out.with_name(out.name + suffix)
        shown = (threshold if threshold != "model" else "calibrated (" + ", ".join(
            f"{name} {value:g}" for name, value in calibrated.items()) + ")")
        print(f"\nprobability ≥ {shown}{' + keep largest, fill holes' if suffix else ''}:")
        _report(found, list(models), shown, out, args)


def _report(rows: list, names: list[str], threshold: float, out: Path, args) -> None:
    """Write OUT.csv and OUT.png and print the targets for one threshold."""
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["model,particle,frame,dose_e_per_A2,f1"]
    lines += [f"{m},{p},{f},{d!r},{v!r}" for m, p, f, d, v in rows]
    out.with_suffix(".csv").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for index, name in enumerate(names):
        mine = [r for r in rows if r[0] == name]
        doses = np.array([r[3] for r in mine])
        f1 = np.array([r[4] for r in mine])
        unique = np.unique(doses)
        mean = np.array([f1[doses == d].mean() for d in unique])
        low = np.array([f1[doses == d].min() for d in unique])
        colour = f"C{index}"
        ax.plot(unique, mean, "-", color=colour, label=f"{name} (mean)")
        ax.plot(unique, low, ":", color=colour, label=f"{name} (worst particle)")
        in_band = [((doses >= lo) & (doses < hi), f"{lo:g}–{hi:g}")
                   for lo, hi in ((10, 30), (30, 200), (200, 1000), (1000, 1e4 + 1))]
        bands = "; ".join(f"{label}: {f1[keep].mean():.2f} (worst {f1[keep].min():.2f})"
                          for keep, label in in_band if keep.any())
        print(f"{name}: every frame F1 ≥ 0.9 from {lowest_dose_from_which(doses, f1, 0.9):.0f}"
              f" e⁻/Å²; F1 ≥ 0.5 from {lowest_dose_from_which(doses, f1, 0.5):.0f} e⁻/Å²; "
              f"mean F1 at ≥ 200 e⁻/Å²: {f1[doses >= 200].mean():.3f}; by band: {bands}")
    ax.axhline(0.9, color="0.6", lw=0.8)
    ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
    ax.axvline(200, color="0.6", lw=0.8)
    ax.axvline(30, color="0.6", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("frame dose (e⁻/Å²)")
    ax.set_ylabel(f"F1 (probability ≥ {threshold})")
    ax.set_ylim(0, 1)
    ax.set_title(f"{args.particles} unseen particles, SOI Fig. 9 recipe, {args.size}²")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
