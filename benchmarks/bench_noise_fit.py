"""Benchmark: noise-model fits of a 1000-frame vacuum series (issue 3).

Compares, in one run and on the same synthetic data (Eq. 3: c0 = 0.27,
c3 = 2.25, N0 = 0.01 e⁻/px, dose 10–1300 e⁻/Å², 0.1 Å/px):

* ``batched`` — :func:`napari_lowdose.noise.fit_noise`: one batched FFT,
  sparse ring averaging, batched Levenberg–Marquardt over all frames;
* ``loop`` — a plain per-frame loop: ``np.fft.fft2`` + radial average with
  ``np.bincount`` + ``scipy.optimize.curve_fit`` of the same model with the
  same (log-space, √count-weighted, bias-corrected) objective and bounds.

Run::

    PYTHONPATH=src python benchmarks/bench_noise_fit.py [--frames 1000] [--size 256]

Prints a Markdown table (seconds, frames/s, agreement of the fitted c0).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import scipy
import scipy.optimize

from napari_lowdose.noise import (
    C0_BOUNDS,
    C3_BOUNDS,
    apply_detector_noise,
    fit_noise,
    normalised_frequency_grid,
    paper_spectrum_model,
    physical_spectrum_model,
)
from napari_lowdose.noise.solver import log_bias as _log_bias

C0, C3, N0, SAMPLING_A = 0.27, 2.25, 0.01, 0.1


def make_series(n_frames: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic vacuum series following Eq. 3."""
    rng = np.random.default_rng(seed)
    dose = np.geomspace(10.0, 1300.0, n_frames)
    out = np.empty((n_frames, size, size), dtype=np.float32)
    for i in range(0, n_frames, 100):
        sl = slice(i, min(i + 100, n_frames))
        out[sl] = apply_detector_noise(
            np.ones((out[sl].shape[0], size, size)),
            dose[sl],
            SAMPLING_A,
            c0=C0,
            c3=C3,
            n0_e_per_px=N0,
            rng=rng,
        )
    return out, dose


def loop_fit(stack: np.ndarray, model: str) -> np.ndarray:
    """Plain per-frame reference; returns fitted c0 per frame (NaN on failure)."""
    kind = "power" if model == "physical" else "magnitude"
    ny, nx = stack.shape[1:]
    q = normalised_frequency_grid((ny, nx))
    dq = 2.0 / min(ny, nx)
    k = np.rint(q / dq).astype(np.int64)
    k_max = int(np.floor(1.0 / dq + 1e-9))
    sel = (k >= 1) & (k <= k_max)
    kk = k[sel] - 1
    counts = np.bincount(kk, minlength=k_max)
    q_ring = np.bincount(kk, weights=q[sel], minlength=k_max) / counts
    sigma = 1.0 / np.sqrt(counts / counts.mean())
    bias = _log_bias(counts, kind)
    lo = [C0_BOUNDS[0], C3_BOUNDS[0], 0.0, 0.0]
    hi = [C0_BOUNDS[1], C3_BOUNDS[1], np.inf, np.inf]
    c0 = np.full(stack.shape[0], np.nan)
    for i, frame in enumerate(stack):
        f = np.fft.fft2(frame - frame.mean())
        vals = np.abs(f) ** 2 / f.size if kind == "power" else np.abs(f) / np.sqrt(f.size)
        y = np.bincount(kk, weights=vals[sel], minlength=k_max) / counts
        plateau, tail = y[:3].mean(), np.median(y[-12:])
        if model == "physical":

            def f_log(qq, c0_, c3_, a, b):
                return np.log(physical_spectrum_model(qq, c0_, c3_, a, b))

            p0 = [0.3, 2.5, max(plateau - tail, 1e-9), tail]
        else:

            def f_log(qq, c0_, c3_, a, b):
                return np.log(paper_spectrum_model(qq, c0_, a + b, b, c3_))

            p0 = [0.3, 2.5, max(plateau - tail, 1e-9), tail]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                popt, _ = scipy.optimize.curve_fit(
                    f_log, q_ring, np.log(y) - bias, p0=p0, sigma=sigma, bounds=(lo, hi)
                )
            c0[i] = popt[0]
        except (RuntimeError, ValueError):
            pass
    return c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--models", default="physical,paper")
    args = ap.parse_args()

    t = time.perf_counter()
    stack, dose = make_series(args.frames, args.size)
    t_make = time.perf_counter() - t
    print(
        f"# {args.frames} frames of {args.size}² (float32), synthesised in {t_make:.1f} s; "
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    fit_noise(stack[:8], dose[:8], SAMPLING_A)  # warm caches/imports

    rows = []
    for model in args.models.split(","):
        t = time.perf_counter()
        res = fit_noise(stack, dose, SAMPLING_A, model=model, keep_spectra=False)
        t_batch = time.perf_counter() - t
        t = time.perf_counter()
        c0_loop = loop_fit(stack, model)
        t_loop = time.perf_counter() - t
        both = res.ok & np.isfinite(c0_loop)
        diff = np.abs(res.c0[both] - c0_loop[both])
        for name, secs, c0 in (("batched", t_batch, res.c0[res.ok]), ("loop", t_loop, c0_loop)):
            n_fit = int(np.isfinite(c0).sum())
            rows.append((model, name, secs, args.frames / secs, np.nanmedian(c0), n_fit))
        n0 = res.readout.n0_e_per_px
        rows.append((model, "agreement", diff, both.sum(), n0, t_loop / t_batch))

    print()
    print("| model | pipeline | seconds | frames/s | median c0 (truth 0.27) | frames fitted |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        if row[1] == "agreement":
            continue
        model, name, secs, fps, c0_med, n_ok = row
        print(f"| {model} | {name} | {secs:.2f} | {fps:.0f} | {c0_med:.4f} | {n_ok} |")
    print()
    print("| model | frames compared | median abs. Δc0 | max abs. Δc0 | speed-up | series N0 |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        if row[1] != "agreement":
            continue
        model, _, diff, n_both, n0, speedup = row
        print(
            f"| {model} | {n_both} | {np.median(diff):.2e} | {diff.max():.2e} | "
            f"{speedup:.0f}× | {n0:.4f} |"
        )


if __name__ == "__main__":
    main()
