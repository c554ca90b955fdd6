"""Denoisers on a real pair of independent low-dose frames (issue 16, item 4).

A minimal, local readout (to be replaced by the core's quality readout once merged):
two independent exposures A and B of one field (``shared/data/real-oneview``,
Gatan OneView, ~4.6 e⁻/px) judge each other. For an estimate ``f(A)`` of the clean
image, ``MSE(f(A), B) − σ²_B`` is an unbiased estimate of ``MSE(f(A), clean)`` when
the noise of B is independent of A; ``σ²_B`` is estimated as ``var(A − B) / 2``.
Reported both ways (A→B, B→A), in counts², for: the raw frame, the Gaussian filter
with the best σ for that frame (an oracle), and each model given.

Run::

    PYTHONPATH=src python benchmarks/eval_denoise_real_pair.py [MODEL ...]
        [--pair ../shared/data/real-oneview]
"""

import argparse
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

SIGMAS_PX = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
DEFAULT_PAIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-oneview"


def unbiased_mse(estimate: np.ndarray, other: np.ndarray, noise_var: float) -> float:
    """``MSE(estimate, other) − noise_var``: the MSE against the clean image, unbiased."""
    return float(np.mean((estimate.astype(np.float64) - other) ** 2) - noise_var)


def best_gaussian(frame: np.ndarray, other: np.ndarray, noise_var: float) -> tuple[float, float]:
    """(unbiased MSE, σ) of the Gaussian filter with the best σ (oracle)."""
    scores = [(unbiased_mse(ndimage.gaussian_filter(frame, s), other, noise_var), s)
              for s in SIGMAS_PX]
    return min(scores)


def paired_difference(first: np.ndarray, second: np.ndarray, other: np.ndarray,
                      block_px: int = 64) -> tuple[float, float]:
    """``MSE(first, other) − MSE(second, other)`` and its standard error over blocks.

    The noise of ``other`` is common to both, so the difference is far more precise than
    either MSE; its standard error is taken from the spread of the difference over
    ``block_px`` × ``block_px`` blocks (longer than the noise's correlation).
    """
    d = (first.astype(np.float64) - other) ** 2 - (second.astype(np.float64) - other) ** 2
    ny, nx = (n - n % block_px for n in d.shape)
    blocks = d[:ny, :nx].reshape(ny // block_px, block_px, nx // block_px, block_px)
    means = blocks.mean(axis=(1, 3)).ravel()
    return float(d.mean()), float(means.std(ddof=1) / np.sqrt(means.size))


def read_pair(folder: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Frames A, B (counts, float64) and the gain (counts per electron) the files state."""
    from napari_lowdose.io.readers import read_series

    a, b = (read_series(folder / name) for name in ("train_0001.tif", "train_0002.tif"))
    gain = float(a.dose_hints.counts_per_electron)
    return np.asarray(a.data, np.float64), np.asarray(b.data, np.float64), gain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*",
                        help="denoisers (shipped names or files; default: the shipped ones)")
    parser.add_argument("--pair", type=Path, default=DEFAULT_PAIR)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from napari_lowdose.models.denoising import denoise_frame
    from napari_lowdose.models.registry import available_denoisers, load_denoiser

    a, b, gain = read_pair(args.pair)
    noise_var = float(np.var(a - b) / 2)
    print(f"gain {gain:.2f} counts/e⁻, means {a.mean():.1f} / {b.mean():.1f} counts, "
          f"noise variance per frame {noise_var:.0f} counts²")
    rows = [("raw", unbiased_mse(a, b, noise_var), unbiased_mse(b, a, noise_var), "")]
    (g_ab, s_ab), (g_ba, s_ba) = (best_gaussian(a, b, noise_var),
                                  best_gaussian(b, a, noise_var))
    rows.append((f"Gaussian (best σ {s_ab:g} / {s_ba:g} px)", g_ab, g_ba, ""))
    gaussians = (ndimage.gaussian_filter(a, s_ab), ndimage.gaussian_filter(b, s_ba))
    for name in args.models or available_denoisers():
        model, _ = load_denoiser(name)
        model.eval()
        scores, versus = [], []
        for x, y, gauss in ((a, b, gaussians[0]), (b, a, gaussians[1])):
            estimate = denoise_frame(model, x.astype(np.float32), counts_per_electron=gain,
                                     device="cpu")
            scores.append(unbiased_mse(estimate, y, noise_var))
            versus.append("{:+.0f} ± {:.0f}".format(*paired_difference(estimate, gauss, y)))
        rows.append((name, *scores, " / ".join(versus)))
    print(f"{'method':<44} {'A→B':>8} {'B→A':>8}   minus the best Gaussian (± s.e.)")
    for name, ab, ba, diff in rows:
        print(f"{name:<44} {ab:8.0f} {ba:8.0f}   {diff}")
    print("(unbiased MSE against the clean image, counts²)")


if __name__ == "__main__":
    main()
