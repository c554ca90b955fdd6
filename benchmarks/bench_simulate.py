"""Benchmark: simulated training data at 640² (issue 4).

Measures, on this machine, with the default recipe (Table 1 optics,
0.07–0.08 Å/px, Au particles 15–40 Å on CeO2, MTF 4 noise):

* **exit waves per hour**: :func:`napari_lowdose.simulate.exitwaves.simulate_structure`
  (ASE structure + abTEM multislice at 300 keV + mask), one process, after a
  warm-up structure (numba compiles abTEM's kernels on first use);
* **images per second** from a cached wave: :func:`napari_lowdose.simulate.imaging.make_image`
  (Table 1 optics, dose, Eq. 3 noise), one thread;
* **dataset wall time** of :func:`napari_lowdose.simulate.dataset.generate_dataset`
  with 1 and with 2 local worker processes (dask.distributed), each for a
  small and a larger set: the difference gives the marginal cost per
  structure (start-up, abTEM import and numba compilation cancel out), and
  the ratio of the marginal costs the scaling;
* the **paper-size set** (1000 structures × 10 image epochs) predicted as
  start-up + 1000 × marginal cost with 2 workers (or measured with ``--paper``).

Run::

    PYTHONPATH=src python benchmarks/bench_simulate.py [--structures 8] [--epochs 10]
    PYTHONPATH=src python benchmarks/bench_simulate.py --paper   # the full 1000 × 10 set

Prints a Markdown table.
"""

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.fft


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def time_exit_waves(n: int, size_px: int, planning: str) -> tuple[float, list[int]]:
    """Seconds per structure (structure + exit wave + mask), one process.

    ``planning="measure"`` first plans FFTW for the recipe's cell sizes, as a
    dataset does (the planning time is not counted).
    """
    from napari_lowdose.simulate.exitwaves import cell_sizes, plan_fftw_wisdom, simulate_structure
    from napari_lowdose.simulate.structures import StructureRecipe

    recipe = StructureRecipe(size_px=size_px)
    if planning == "measure":
        with tempfile.TemporaryDirectory() as folder:
            plan_fftw_wisdom(Path(folder) / "wisdom.json", cell_sizes(recipe))
    simulate_structure(10_000, 0, recipe, fftw_planning=planning)  # warm-up: numba
    start = time.perf_counter()
    cells = []
    for index in range(n):
        cells.append(simulate_structure(index, 0, recipe, fftw_planning=planning).geometry.cell_px)
    return (time.perf_counter() - start) / n, cells


def time_images(n: int, size_px: int) -> float:
    """Seconds per image epoch from a cached wave, one thread."""
    from napari_lowdose.noise.presets import preset
    from napari_lowdose.simulate.exitwaves import simulate_structure
    from napari_lowdose.simulate.imaging import make_image
    from napari_lowdose.simulate.structures import StructureRecipe

    cached = simulate_structure(0, 0, StructureRecipe(size_px=size_px))
    geometry = cached.geometry
    model = preset("MTF 4")
    rng = np.random.default_rng(0)
    with scipy.fft.set_workers(1):
        make_image(cached.exit_wave, geometry.sampling_A, geometry.crop, rng, noise_model=model)
        start = time.perf_counter()
        for _ in range(n):
            make_image(cached.exit_wave, geometry.sampling_A, geometry.crop, rng,
                       noise_model=model)
    return (time.perf_counter() - start) / n


def time_dataset(n_structures: int, epochs: int, size_px: int, workers: int) -> float:
    """Wall seconds of generate_dataset into a fresh folder."""
    from napari_lowdose.simulate.dataset import generate_dataset
    from napari_lowdose.simulate.recipe import DatasetRecipe
    from napari_lowdose.simulate.structures import StructureRecipe

    recipe = DatasetRecipe(n_structures=n_structures, image_epochs=epochs, seed=1,
                           structure=StructureRecipe(size_px=size_px))
    folder = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    try:
        start = time.perf_counter()
        summary = generate_dataset(folder / "ds", recipe, workers=workers)
        elapsed = time.perf_counter() - start
        assert summary.complete
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--waves", type=int, default=4, help="structures timed one by one")
    parser.add_argument("--images", type=int, default=50, help="image epochs timed")
    parser.add_argument("--structures", type=int, default=16,
                        help="larger dataset run (the smaller one is a quarter of it)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--paper", action="store_true",
                        help="also run the full 1000 × 10 set with 2 workers")
    args = parser.parse_args()

    import abtem

    print(f"Machine: {os.cpu_count()} cores, {_cpu_name()}; Python {platform.python_version()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}, abTEM {abtem.__version__}\n")
    image_s = time_images(args.images, args.size)
    print("| step | value |\n|---|---:|")
    for planning in ("estimate", "measure"):
        wave_s, cells = time_exit_waves(args.waves, args.size, planning)
        print(f"| exit wave (structure + multislice + mask), FFTW_{planning.upper()}, cells "
              f"{min(cells)}–{max(cells)} px | {wave_s:.2f} s → {3600 / wave_s:.0f} waves/h "
              "(1 process) |")
    print(f"| image epoch from a cached wave ({args.size}²) | {1000 * image_s:.0f} ms → "
          f"{1 / image_s:.1f} images/s (1 thread) |")
    small = max(2, args.structures // 4)
    marginal = {}
    for workers in (1, 2):
        t_small = time_dataset(small, args.epochs, args.size, workers)
        t_large = time_dataset(args.structures, args.epochs, args.size, workers)
        marginal[workers] = (t_large - t_small) / (args.structures - small)
        print(f"| dataset {small} / {args.structures} structures × {args.epochs}, "
              f"{workers} worker(s): wall | {t_small:.1f} s / {t_large:.1f} s |")
        print(f"| … marginal cost per structure ({args.epochs} images), {workers} worker(s) | "
              f"{marginal[workers]:.2f} s |")
        if workers == 2:
            overhead = t_small - small * marginal[2]
    print(f"| speed-up 2 vs 1 workers (marginal) | {marginal[1] / marginal[2]:.2f}× |")
    predicted_min = (overhead + 1000 * marginal[2]) / 60
    print(f"| paper set 1000 × {args.epochs}, 2 workers, predicted (start-up + 1000 × marginal) "
          f"| {predicted_min:.1f} min |")
    if args.paper:
        wall = time_dataset(1000, args.epochs, args.size, 2)
        print(f"| paper set 1000 × {args.epochs}, 2 workers, measured | {wall / 60:.1f} min |")


if __name__ == "__main__":
    main()
