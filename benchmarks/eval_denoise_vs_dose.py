"""PSNR and SSIM against dose: raw frames, a Gaussian filter and the denoiser (issue 7).

Katsuno et al. (2021) make ~5 e⁻/px frames look like long exposures. The issue's
target: at 5 e⁻/px the denoised frame reaches the PSNR that raw frames reach only
at ≥ 200 e⁻/px. Here, on simulated dose series with their noise-free reference
(:func:`napari_lowdose.simulate.series.simulate_dose_series`: particles never
used in training, SOI Fig. 9 optics, MTF 3 noise by default), every frame is
judged three ways against the clean intensity (all images divided by the
frame's expected e⁻/px, so vacuum is 1 at every dose):

* **raw**: the detector frame;
* **Gaussian**: the frame filtered with the σ (of 0.5–4 px) that gives the best
  PSNR *for that frame*, an oracle no user has, so an upper bound for the filter;
* **denoiser**: each model given on the command line.

PSNR uses the reference's peak-to-peak range; SSIM is Wang et al. (2004) with a
Gaussian window (:mod:`napari_lowdose.analysis.image_quality`).

Run::

    PYTHONPATH=src python benchmarks/eval_denoise_vs_dose.py MODEL [MODEL ...]
        [--particles 2] [--frames 24] [--size 384] [--e-per-px 0.1,1000]
        [--out docs/images/denoise_vs_dose]

Writes ``OUT.csv`` (method, particle, frame, e_per_px, dose_e_per_A2, psnr_dB,
ssim) and ``OUT.png``, and prints the target check.
"""

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

GAUSSIAN_SIGMAS_PX = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def best_gaussian(frame: np.ndarray, reference: np.ndarray, data_range: float) -> np.ndarray:
    """The Gaussian-filtered frame with the best PSNR (oracle σ)."""
    from napari_lowdose.analysis.image_quality import psnr

    candidates = [ndimage.gaussian_filter(frame, sigma) for sigma in GAUSSIAN_SIGMAS_PX]
    scores = [psnr(c, reference, data_range) for c in candidates]
    return candidates[int(np.argmax(scores))]


def interpolate_log(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """``y`` at ``at`` by linear interpolation in ``log10 x`` (x sorted)."""
    order = np.argsort(x)
    return float(np.interp(np.log10(at), np.log10(x[order]), y[order]))


def raw_e_per_px_for(x: np.ndarray, y: np.ndarray, level: float) -> float:
    """The lowest e⁻/px at which the (log-interpolated, increasing) raw PSNR reaches ``level``."""
    order = np.argsort(x)
    xs, ys = np.log10(x[order]), np.maximum.accumulate(y[order])
    if level <= ys[0]:
        return float(10 ** xs[0])
    if level > ys[-1]:
        return float("inf")
    return float(10 ** np.interp(level, ys, xs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--particles", type=int, default=2)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--e-per-px", default="0.1,1000", help="range of the series, e⁻/px")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("docs/images/denoise_vs_dose"))
    args = parser.parse_args()

    from napari_lowdose.analysis.image_quality import psnr, ssim
    from napari_lowdose.io.tables import table_to_csv
    from napari_lowdose.models.denoising import denoise_frame
    from napari_lowdose.models.registry import load_denoiser
    from napari_lowdose.simulate.series import SERIES_SAMPLING_A, simulate_dose_series

    lo, hi = (float(v) for v in args.e_per_px.split(","))
    pixel_area_A2 = SERIES_SAMPLING_A**2
    models = {Path(str(m)).stem if str(m).endswith(".safetensors") else str(m):
              load_denoiser(m, device="cpu")[0] for m in args.models}
    rows: dict[str, list] = {k: [] for k in ("method", "particle", "frame", "e_per_px",
                                             "dose_e_per_A2", "psnr_dB", "ssim")}

    def record(method, particle, frame, e_px, image, reference, data_range):
        rows["method"].append(method)
        rows["particle"].append(particle)
        rows["frame"].append(frame)
        rows["e_per_px"].append(e_px)
        rows["dose_e_per_A2"].append(e_px / pixel_area_A2)
        rows["psnr_dB"].append(psnr(image, reference, data_range))
        rows["ssim"].append(ssim(image, reference, data_range))

    for particle in range(args.particles):
        series = simulate_dose_series(100 + particle, n_frames=args.frames, size_px=args.size,
                                      dose_range_e_per_A2=(lo / pixel_area_A2,
                                                           hi / pixel_area_A2))
        for i in range(series.n_frames):
            e_px = float(series.dose_e_per_A2[i]) * series.sampling_A**2
            reference = series.clean[i].astype(np.float64)
            data_range = float(reference.max() - reference.min())
            raw = series.frames[i] / e_px
            record("raw", particle, i, e_px, raw, reference, data_range)
            record("Gaussian (best σ)", particle, i, e_px,
                   best_gaussian(raw, reference, data_range), reference, data_range)
            for name, model in models.items():
                denoised = denoise_frame(model, series.frames[i], expected_e_per_px=e_px,
                                         device=args.device) / e_px
                record(name, particle, i, e_px, denoised, reference, data_range)
        print(f"particle {particle} done", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".csv").write_text(table_to_csv(rows), encoding="utf-8")
    method = np.array(rows["method"])
    e_px = np.array(rows["e_per_px"])
    value = np.array(rows["psnr_dB"])
    value_ssim = np.array(rows["ssim"])

    def mean_curve(name, values):
        keep = method == name
        levels = np.unique(np.round(e_px[keep], 6))
        return levels, np.array([values[keep][np.isclose(e_px[keep], v, rtol=1e-5)].mean()
                                 for v in levels])

    raw_x, raw_y = mean_curve("raw", value)
    target_level = interpolate_log(raw_x, raw_y, 200.0)
    print(f"\nraw PSNR at 200 e⁻/px: {target_level:.2f} dB (mean over particles)")
    print("| method | PSNR at 5 e⁻/px (dB) | SSIM at 5 e⁻/px | raw frames reach it at "
          "| target (≥ 200 e⁻/px) |")
    print("|---|---:|---:|---:|---|")
    for name in ["raw", "Gaussian (best σ)", *models]:
        x, y = mean_curve(name, value)
        _, s = mean_curve(name, value_ssim)
        at5 = interpolate_log(x, y, 5.0)
        reach = raw_e_per_px_for(raw_x, raw_y, at5)
        met = "met" if reach >= 200.0 else "not met"
        print(f"| {name} | {at5:.2f} | {interpolate_log(x, s, 5.0):.3f} | {reach:.3g} e⁻/px "
              f"| {met} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for name in ["raw", "Gaussian (best σ)", *models]:
        for ax, values in zip(axes, (value, value_ssim), strict=True):
            x, y = mean_curve(name, values)
            ax.plot(x, y, marker=".", label=name)
    for ax, label in zip(axes, ("PSNR (dB)", "SSIM"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("electrons per pixel")
        ax.set_ylabel(label)
        ax.axvline(5.0, color="grey", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    axes[0].axhline(target_level, color="grey", lw=0.8, ls="--",
                    label="raw at 200 e⁻/px")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{args.particles} simulated particles × {args.frames} frames, "
                 f"{args.size}² px, MTF 3; mean over particles")
    fig.savefig(args.out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
