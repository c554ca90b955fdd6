"""Opening a large dose series must not read it: time and memory to open vs. to read.

Writes a synthetic series (default 1000 frames of 512² uint16, ~0.5 GB) as a
plain TIFF and as an MRC movie in a temporary folder, then measures for each:
the time and peak RSS growth of ``read_series`` (headers only), of reading one
frame, and of reading everything.

Run: ``.venv/bin/python benchmarks/bench_open.py [--frames N] [--size PX]``
"""

import argparse
import gc
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _write(folder: Path, frames: int, size: int) -> dict[str, Path]:
    import mrcfile
    import tifffile

    rng = np.random.default_rng(0)
    frame = rng.poisson(20, (size, size)).astype(np.uint16)
    tif, mrc = folder / "series.tif", folder / "series.mrc"
    with tifffile.TiffWriter(tif, bigtiff=True) as writer:
        for _ in range(frames):
            writer.write(frame, contiguous=True)
    with mrcfile.new_mmap(mrc, shape=(frames, size, size), mrc_mode=6) as m:
        for i in range(frames):
            m.data[i] = frame
        m.voxel_size = 0.5
    return {"TIFF": tif, "MRC": mrc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    from napari_lowdose.io import read_series

    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}")
    print(f"series: {args.frames} frames of {args.size}² uint16 "
          f"({args.frames * args.size**2 * 2 / 2**30:.2f} GiB)")
    print("| format | open (s) | RSS after open (MB) | one frame (s) | all frames (s) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, path in _write(Path(tmp), args.frames, args.size).items():
            rss0 = _rss_mb()
            t0 = time.perf_counter()
            series = read_series(path)
            t_open = time.perf_counter() - t0
            rss_open = _rss_mb() - rss0
            t0 = time.perf_counter()
            np.asarray(series.data[args.frames // 2])
            t_frame = time.perf_counter() - t0
            t0 = time.perf_counter()
            total = 0.0
            for i in range(args.frames):
                total += float(np.asarray(series.data[i]).sum())
            t_all = time.perf_counter() - t0
            print(f"| {kind} | {t_open:.4f} | {rss_open:.1f} | {t_frame:.5f} | {t_all:.2f} |")
            del series
            gc.collect()


if __name__ == "__main__":
    main()
