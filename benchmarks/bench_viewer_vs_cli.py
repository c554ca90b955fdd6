"""Benchmark: a whole-series run in the napari docks against the command line (issue 14).

The same simulated dose series goes through

* ``napari-lowdose segment`` and ``napari-lowdose denoise`` (called in this process,
  reading the series from a temporary folder and writing their files there), and
* the 'Segment' and 'Denoise' docks in a napari viewer (the series opened with the
  plugin's reader, "whole series", the worker thread started by the dock and the Qt
  event loop processed until the dock is idle again, the final analysis included).

It prints one row per path with the seconds and the dock/CLI ratio (the issue's bar:
the dock within 1.3× of the CLI). The docks need a display: run under Xvfb::

    PYTHONPATH=src xvfb-run -a python benchmarks/bench_viewer_vs_cli.py
    PYTHONPATH=src xvfb-run -a python benchmarks/bench_viewer_vs_cli.py \\
        --frames 40 --size 384 --model unet-au-ceo2-low          # the issue's case

Small by default (12 frames of 256² px). Timings only: nothing is asserted.
"""

import argparse
import contextlib
import io
import platform
import sys
import tempfile
import time
from pathlib import Path


def make_series(folder: Path, n_frames: int, size_px: int) -> Path:
    """Write a synthetic dose series (10 → 10⁴ e⁻/Å², with its dose) as a TIFF."""
    from napari_lowdose.io.writers import write_series_tiff
    from napari_lowdose.simulate.synthetic_series import make_synthetic_dose_series

    series = make_synthetic_dose_series(n_frames=n_frames, shape=(size_px, size_px))
    return write_series_tiff(folder / "series.tif", series.counts,
                             series.parameters.sampling_A,
                             dose_e_per_A2=series.dose_e_per_A2)


def warm_up(model_name: str, size_px: int, device: str) -> None:
    """Load torch and run the model once, so that neither timed path pays for it."""
    import numpy as np

    from napari_lowdose.models.inference import predict_frame
    from napari_lowdose.models.registry import load_model

    model, _ = load_model(model_name, device="cpu")
    predict_frame(model, np.ones((size_px, size_px), np.float32), device=device)


def time_cli(argv: list[str]) -> float:
    """Seconds of one ``napari-lowdose`` command run in this process (its output hidden)."""
    from napari_lowdose.cli import main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main(argv)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"napari-lowdose {' '.join(argv)} failed with status {status}")
    return elapsed


def time_dock(app, dock, timeout_s: float) -> float:
    """Seconds from ``dock.run()`` until the dock is idle, in a running Qt event loop.

    The loop idles between events, as napari's own does (``napari.run()``); a loop that
    polls ``processEvents()`` without pause would fight the worker thread for the GIL and
    make the dock look twice as slow as it is in a real session.
    """
    from qtpy.QtCore import QEventLoop, QTimer

    loop, timer = QEventLoop(), QTimer()
    timer.setInterval(50)
    start = time.perf_counter()

    def check() -> None:
        if not dock.busy or time.perf_counter() - start > timeout_s:
            loop.quit()

    timer.timeout.connect(check)
    dock.run()
    timer.start()
    loop.exec()
    timer.stop()
    if dock.busy:
        raise SystemExit(f"{type(dock).__name__} did not finish in {timeout_s:.0f} s")
    app.processEvents()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """(what, CLI seconds, dock seconds) of segment (and denoise)."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_lowdose.widgets.segment import SegmentWidget

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = make_series(folder, args.frames, args.size)
        common = ["--device", args.device]
        warm_up(args.model, args.size, args.device)
        cli_seg = time_cli(["segment", str(path), "--model", args.model, "--out",
                            str(folder / "segment"), *common])
        viewer = napari.Viewer(show=True)
        app = QApplication.instance()
        viewer.window._qt_window.resize(1600, 1000)
        (layer,) = viewer.open(str(path), plugin="napari-lowdose")
        app.processEvents()
        seg = SegmentWidget(viewer)
        viewer.window.add_dock_widget(seg, name="Segment")
        seg.layer_combo.value = layer
        seg.model.value = args.model
        seg.device.value = args.device
        seg.scope.value = "all"
        dock_seg = time_dock(app, seg, args.timeout_s)
        rows.append((f"segment ({args.model})", cli_seg, dock_seg))
        if not args.skip_denoise:
            from napari_lowdose.widgets.denoise import DenoiseWidget

            cli_den = time_cli(["denoise", str(path), "--out", str(folder / "denoise"),
                                *common])
            den = DenoiseWidget(viewer)
            viewer.window.add_dock_widget(den, name="Denoise")
            den.layer_combo.value = layer
            den.device.value = args.device
            den.scope.value = "all"
            dock_den = time_dock(app, den, args.timeout_s)
            rows.append((f"denoise ({den.model.value})", cli_den, dock_den))
        viewer.close()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="frames (default 12)")
    parser.add_argument("--size", type=int, default=256, help="frame side in px (default 256)")
    parser.add_argument("--model", default="unet-au-ceo2-low",
                        help="segmentation model (default unet-au-ceo2-low)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--threads", type=int, help="torch threads (default torch's)")
    parser.add_argument("--skip-denoise", action="store_true", help="segment only")
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args)
    machine = platform.processor() or platform.machine()
    print(f"\n{args.frames} frames of {args.size}² px on {args.device} "
          f"({torch.get_num_threads()} torch threads; {machine}, "
          f"Python {sys.version.split()[0]})\n")
    print("| run | CLI (s) | dock (s) | dock / CLI |")
    print("|---|---:|---:|---:|")
    for what, cli_s, dock_s in rows:
        print(f"| {what} | {cli_s:.1f} | {dock_s:.1f} | {dock_s / cli_s:.2f}× |")


if __name__ == "__main__":
    main()
