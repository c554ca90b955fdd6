"""``napari-lowdose demo``: the whole analysis on the built-in simulated dose series.

The demo does, on data it makes itself (nothing is downloaded), what a
microscopist does with a real series:

1. simulate one CeO2-supported Au particle imaged as a dose series after
   Larsen et al. (2023), SOI Fig. 9 (:func:`~.simulate.series.simulate_dose_series`,
   MTF 3 detector, 10¹…10⁴ e⁻/Å²) and save it as a calibrated ImageJ TIFF with
   its dose table and exact truth mask;
2. fit the detector noise (Eqs. 1–4, physical model Eq. 3) in a vacuum corner
   with ``fit-noise`` and compare it with the noise the series was made with;
3. segment every frame with a shipped network (``segment``; by default the
   recommended model at its calibrated threshold);
4. score the masks against the truth (``evaluate``, F1 per frame, SOI Fig. 9);
5. denoise every frame with the shipped denoiser (``denoise``; Katsuno et al.
   2021) and judge it against the noise-free reference (PSNR);
6. print a short summary: the convergence dose, the dose at 50 % segmentation
   and the converged area (Larsen et al. 2023, Fig. 3), against the truth, and the denoising gain.

``--gui`` then opens napari with the series, the truth, the probability and
mask layers and the Segment and Area vs dose docks filled in.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import LowdoseError
from ..io.dose import write_dose_table
from ..io.writers import atomic_write_text, write_series_tiff
from ..workflows.demo import (
    DEMO_RECORD,
    denoising_gain,
    f1_summary,
    truth_area_nm2,
)
from .segment import threshold_option

__all__ = ["add_demo_parser", "cmd_demo"]

#: Side of the vacuum square for the noise fit (px), and the smallest one tried.
VACUUM_SIDE_PX = (96, 64, 32)


class DemoError(LowdoseError):
    """The demo cannot run with these options."""


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``napari-lowdose demo``.

    It segments with the recommended model and threshold
    (:data:`napari_lowdose.models.registry.RECOMMENDED_MODEL`, decided once; see
    docs/models.md); ``--model`` and ``--threshold`` choose others.
    """
    from ..models.registry import RECOMMENDED_MODEL, RECOMMENDED_THRESHOLD

    demo = sub.add_parser(
        "demo", help="the whole analysis on the built-in simulated Au/CeO2 dose series",
        description="Simulate a dose series of a supported Au particle (SOI Fig. 9), fit the "
                    "detector noise in vacuum, segment every frame with a shipped network, "
                    "score it against the truth and print the area-against-dose summary.")
    demo.add_argument("--out", type=Path, metavar="DIR",
                      help="output folder (default: a new temporary folder); a previous demo "
                           "folder is replaced")
    demo.add_argument("--seed", type=int, default=0, help="seed of the series (default 0)")
    demo.add_argument("--frames", type=int, default=40, metavar="N",
                      help="frames in the series (default 40; the paper's series has 1000)")
    demo.add_argument("--size", type=int, default=384, metavar="PX",
                      help="field side in pixels at 0.075 Å/px (default 384)")
    demo.add_argument("--model", default=RECOMMENDED_MODEL, metavar="NAME|PATH",
                      help=f"segmentation model (default {RECOMMENDED_MODEL}; see 'napari-lowdose "
                           "models')")
    demo.add_argument("--threshold", type=threshold_option, default=RECOMMENDED_THRESHOLD,
                      metavar="T|model",
                      help="probability threshold of the masks (default: the model's "
                           "calibrated threshold)")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    demo.add_argument("--overwrite", action="store_true",
                      help="write into a folder that holds other files")
    demo.add_argument("--gui", action="store_true",
                      help="then open napari with the layers and widgets filled in")
    demo.set_defaults(func=cmd_demo)


def _check_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DemoError(f"{out} exists and is not a folder")
    if (out.is_dir() and any(out.iterdir()) and not (out / DEMO_RECORD).is_file()
            and not overwrite):
        raise DemoError(f"{out} holds files that are not a napari-lowdose demo; choose another "
                        "folder or pass --overwrite")


def _run(argv: list[str]) -> None:
    """Run one ``napari-lowdose`` command as a user would type it."""
    from . import build_parser

    print(f"\n$ napari-lowdose {' '.join(argv)}")
    args = build_parser().parse_args(argv)
    status = args.func(args)
    if status:
        raise DemoError(f"'napari-lowdose {argv[0]}' failed (exit status {status})")


def _write_series(series, out: Path) -> dict[str, Path]:
    paths = {"series": out / "series.tif", "truth": out / "truth_mask.tif",
             "dose": out / "dose.csv"}
    write_series_tiff(paths["series"], series.frames, series.sampling_A,
                      dose_e_per_A2=series.dose_e_per_A2,
                      extra_metadata={"simulated": series.metadata()})
    write_series_tiff(paths["truth"], series.mask, series.sampling_A)
    write_dose_table(paths["dose"], series.dose_e_per_A2)
    return paths


def _fit_noise(series, series_path: Path, out: Path) -> dict[str, Any]:
    for side in VACUUM_SIDE_PX:
        roi = series.vacuum_corner(side)
        if roi is not None:
            break
    else:
        raise DemoError("no corner of this series is vacuum; try another --seed or a larger "
                        "--size")
    y0, y1, x0, x1 = roi
    _run(["fit-noise", str(series_path), "--roi", f"{y0}:{y1},{x0}:{x1}",
          "--model", "physical", "--overwrite", "--out", str(out / "noise_fit")])
    truth = {key: float(series.records[0][key]) for key in ("c0", "c3", "n0_e_per_px")}
    print(f"the series was made with c0 = {truth['c0']:.3g} q_N, c3 = {truth['c3']:.3g}, "
          f"N0 = {truth['n0_e_per_px']:.3g} e⁻/px ({series.noise_model.name})")
    return {"roi_px": [y0, y1, x0, x1], "truth": truth}


def _print_summary(record: dict[str, Any]) -> None:
    def dose(value):
        return "not reached" if value is None else f"{value:.3g} e⁻/Å²"

    seg, f1 = record["segmentation"], record["f1"]
    area = seg["converged_area_nm2"]
    print("\nSummary")
    print(f"  series:            {record['series']['frames']} frames of "
          f"{record['series']['size_px']}² px at {record['series']['sampling_A']} Å/px, "
          f"{record['series']['dose_range_e_per_A2'][0]:.3g}–"
          f"{record['series']['dose_range_e_per_A2'][1]:.3g} e⁻/Å²")
    print(f"  model:             {record['model']} (threshold {record['threshold']})")
    def since(value):
        return "not reached" if value is None else f"from {value:.3g} e⁻/Å²"

    print(f"  visible:           {since(seg['visibility_dose_e_per_A2'])} (F1 ≥ 0.5 "
          f"against the high-dose consensus; against the truth, F1 ≥ 0.5 "
          f"{since(f1['f1_at_least_half_from_e_per_A2'])})")
    print(f"  converged:         {since(seg['convergence_dose_e_per_A2'])} (F1 ≥ 0.9 against "
          f"the consensus; against the truth "
          f"{since(f1['f1_at_least_0.9_from_e_per_A2'])})")
    if seg.get("consensus_readout", "ok") != "ok":
        print(f"                     no consensus readout: {seg['consensus_readout']}")
    print(f"  area only (paper): 50 % segmentation at "
          f"{dose(seg['paper_dose_at_50pct_e_per_A2'])}, area converged from "
          f"{dose(seg['paper_convergence_dose_e_per_A2'])}")
    area_text = "—" if area is None else f"{area:.3g} nm²"
    print(f"  converged area:    {area_text} (truth {record['truth_area_nm2']:.3g} nm²)")
    median = f1["median_f1_at_200_e_per_A2_and_above"]
    if median is not None:
        print(f"  F1 at ≥ 200 e⁻/Å²: median {median:.2f}, worst "
              f"{f1['worst_f1_at_200_e_per_A2_and_above']:.2f} (against the truth)")
    den = record.get("denoising")
    if den:
        print(f"  denoising:         frame {den['frame']} ({den['e_per_px']:.2g} e⁻/px): PSNR "
              f"{den['raw_psnr_dB']:.1f} dB raw → {den['denoised_psnr_dB']:.1f} dB denoised")
    print(f"  files:             {record['out']}")


#: Fewer particle pixels than this and the demo has nothing to score (F1 of an empty truth).
MIN_PARTICLE_PX = 64


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate, fit the noise, segment, score and summarise (see the module docstring)."""
    import numpy as np

    from .. import __version__
    from ..io.readers import read_series
    from ..simulate.series import simulate_dose_series

    if args.frames < 2:
        raise DemoError("--frames must be at least 2 (the curve needs several doses)")
    if args.size < 128:
        raise DemoError("--size must be at least 128 px")
    if args.out:
        _check_folder(Path(args.out), args.overwrite)
    if args.gui and not _has_display():
        raise DemoError("--gui needs a display and there is none here (no DISPLAY); "
                        "leave out --gui, or run under xvfb-run")
    started = time.perf_counter()

    print(f"1. simulating {args.frames} frames of {args.size}² px (seed {args.seed}) …")
    series = simulate_dose_series(args.seed, n_frames=args.frames, size_px=args.size)
    if np.count_nonzero(series.mask) < MIN_PARTICLE_PX:
        raise DemoError(f"the simulated {args.size}² px field holds no particle worth "
                        f"scoring ({np.count_nonzero(series.mask)} px; too small for the "
                        "demo's particle and support): use a larger --size (256 px or more)")
    # The folder is made only once there is something to write into it.
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lowdose-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    paths = _write_series(series, out)
    print(f"wrote {paths['series']}, {paths['truth']} and {paths['dose']}")

    print("\n2. fitting the detector noise in a vacuum corner (Eq. 3)")
    noise = _fit_noise(series, paths["series"], out)

    print("\n3. segmenting every frame")
    segment_dir = out / "segment"
    _run(["segment", str(paths["series"]), "--model", str(args.model), "--threshold",
          str(args.threshold), "--device", str(args.device), "--overwrite",
          "--out", str(segment_dir)])

    print("\n4. scoring the masks against the truth")
    _run(["evaluate", str(segment_dir), "--truth", str(paths["truth"]), "--overwrite"])

    print("\n5. denoising every frame")
    _run(["denoise", str(paths["series"]), "--device", str(args.device), "--overwrite",
          "--out", str(out / "denoise")])
    denoising = denoising_gain(series, read_series(out / "denoise" / "denoised.tif").data)

    summary = json.loads((segment_dir / "summary.json").read_text(encoding="utf-8"))
    record = {
        "format": "napari-lowdose/demo",
        "package_version": __version__,
        "out": str(out.resolve()),
        "series": {"seed": args.seed, "frames": args.frames, "size_px": args.size,
                   "sampling_A": float(series.sampling_A),
                   "dose_range_e_per_A2": [float(series.dose_e_per_A2[0]),
                                           float(series.dose_e_per_A2[-1])],
                   "files": {key: path.name for key, path in paths.items()}},
        "noise_fit": noise,
        "model": str(args.model),
        "threshold": float(summary["run"]["threshold"]),
        "segmentation": {key: summary.get(key) for key in (
            "visibility_dose_e_per_A2", "convergence_dose_e_per_A2", "consensus_readout",
            "over_segmented_frames", "paper_dose_at_50pct_e_per_A2",
            "paper_convergence_dose_e_per_A2", "dose_at_50pct_e_per_A2", "converged_area_px",
            "converged_area_nm2")},
        "truth_area_nm2": truth_area_nm2(series),
        "f1": f1_summary(segment_dir / "f1_vs_dose.csv"),
        "denoising": denoising,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    atomic_write_text(out / DEMO_RECORD, json.dumps(record, indent=2))
    _print_summary(record)
    if args.gui:
        return _open_gui(out)
    return 0


def _has_display() -> bool:
    """Whether Qt can open a window here (no X/Wayland display on a headless Linux box)."""
    import os

    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open_gui(out: Path) -> int:
    """Hand the finished folder to the viewer (``python -m napari_lowdose.widgets.demo``).

    The viewer runs in its own process: the command line never imports the docks.
    """
    import importlib.util
    import subprocess

    missing = [name for name in ("napari", "qtpy") if importlib.util.find_spec(name) is None]
    if missing:
        raise DemoError(f"--gui needs napari with a Qt binding ({', '.join(missing)} not "
                        "installed); pip install 'napari-lowdose[all]'")
    print("\nopening napari; close its window to finish.", file=sys.stderr)
    return subprocess.call([sys.executable, "-m", "napari_lowdose.widgets.demo", str(out)])
