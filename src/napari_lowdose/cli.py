"""Command-line interface: ``napari-lowdose SUBCOMMAND ...``.

The same steps as the napari widgets, headless (for batch work on a cluster
node). Errors are printed as one line on stderr with a non-zero exit status.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import LowdoseError

__all__ = ["main", "parse_roi"]

PROG = "napari-lowdose"


class CliError(LowdoseError):
    """A usage error detected after argument parsing."""


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """Parse ``"Y0:Y1,X0:X1"`` (pixels, end exclusive) into ``(y0, y1, x0, x1)``."""
    try:
        rows, cols = text.split(",")
        y0, y1 = (int(v) for v in rows.split(":"))
        x0, x1 = (int(v) for v in cols.split(":"))
    except ValueError:
        raise CliError(f"region {text!r} must look like Y0:Y1,X0:X1 (pixels)") from None
    if y1 <= y0 or x1 <= x0 or min(y0, x0) < 0:
        raise CliError(f"region {text!r} is empty or negative")
    return y0, y1, x0, x1


def _roi_argument(text: str) -> tuple[int, int, int, int]:
    """argparse ``type=`` for a region: a bad value becomes a usage error."""
    try:
        return parse_roi(text)
    except CliError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_dose_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dose per frame (overrides what the file states)")
    group.add_argument("--dose", metavar="CSV", type=Path,
                       help="dose table: CSV with a dose_e_per_A2 column, one row per frame")
    group.add_argument("--dose-source", default="auto",
                       choices=["auto", "metadata", "table", "rate_x_exposure", "counts"],
                       help="force one source instead of the priority order "
                            "metadata > table > rate×exposure > counts (default: auto)")
    group.add_argument("--dose-rate", type=float, metavar="E_PER_A2_S",
                       help="dose rate at the specimen in e⁻/Å²/s")
    group.add_argument("--exposure-s", type=float, metavar="S",
                       help="exposure time of one frame in s")
    group.add_argument("--counts-per-electron", type=float, metavar="G",
                       help="detector counts per electron (dose from mean counts)")
    group.add_argument("--counts-roi", type=_roi_argument, metavar="Y0:Y1,X0:X1",
                       help="vacuum region for the counts source (default: whole frame)")
    parser.add_argument("--pixel-size-A", type=float, metavar="S",
                        help="pixel size in Å/px (overrides the file's calibration)")


def _open_calibrated(args: argparse.Namespace):
    from .io.calibrate import calibrate_frame_dose
    from .io.readers import read_series

    series = read_series(args.series)
    if args.pixel_size_A is not None:
        if not args.pixel_size_A > 0:
            raise CliError("--pixel-size-A must be positive")
        series.pixel_size_A = (args.pixel_size_A, args.pixel_size_A)
        series.pixel_size_source = "command line --pixel-size-A"
    user_given = any(v is not None for v in (args.dose, args.dose_rate, args.exposure_s,
                                             args.counts_per_electron))
    if user_given or args.dose_source != "auto" or args.pixel_size_A is not None:
        series.frame_dose = calibrate_frame_dose(
            series.data,
            pixel_area_A2=series.pixel_area_A2,
            hints=series.dose_hints.to_metadata(),
            source=args.dose_source,
            dose_table=args.dose,
            dose_rate_e_per_A2_s=args.dose_rate,
            exposure_time_s=args.exposure_s,
            counts_per_electron=args.counts_per_electron,
            roi=args.counts_roi,
        )
    return series


def series_info(series) -> dict[str, Any]:
    """A JSON-serialisable summary of an opened series."""
    dose = series.frame_dose
    info: dict[str, Any] = {
        "file": str(series.path),
        "format": series.format,
        "shape": list(series.data.shape),
        "axes": list(series.axis_labels),
        "dtype": str(series.data.dtype),
        "pixel_size_A": None if series.pixel_size_A is None else list(series.pixel_size_A),
        "pixel_size_source": series.pixel_size_source,
        "n_frames": series.n_frames,
        "dose": None,
        "dose_hints": series.dose_hints.to_metadata(),
        "warnings": list(series.warnings),
    }
    if dose is not None:
        d = dose.dose_e_per_A2
        info["dose"] = {
            "source": dose.source,
            "detail": dose.detail,
            "min_e_per_A2": float(d.min()),
            "max_e_per_A2": float(d.max()),
            "total_e_per_A2": float(d.sum()),
            "dose_e_per_A2": [float(v) for v in d],
        }
    return info


def _format_info(info: dict[str, Any]) -> str:
    shape = " × ".join(str(n) for n in info["shape"])
    lines = [
        f"file:        {info['file']}",
        f"format:      {info['format']}",
        f"shape:       {shape} ({', '.join(info['axes'])})",
        f"dtype:       {info['dtype']}",
    ]
    px = info["pixel_size_A"]
    if px is None:
        lines.append("pixel size:  uncalibrated (the file states no length calibration)")
    else:
        size = f"{px[0]:.6g} Å/px" if px[0] == px[1] else f"{px[0]:.6g} × {px[1]:.6g} Å/px (y × x)"
        lines.append(f"pixel size:  {size}  [{info['pixel_size_source']}]")
    dose = info["dose"]
    if dose is None:
        lines.append("dose:        unknown (give --dose CSV, --dose-rate with --exposure-s, "
                     "or --counts-per-electron)")
    else:
        per_px = ""
        if px is not None:
            area = px[0] * px[1]
            per_px = (f"; {dose['min_e_per_A2'] * area:.4g} … {dose['max_e_per_A2'] * area:.4g}"
                      " e⁻/px")
        lines.append(f"dose:        {dose['min_e_per_A2']:.4g} … {dose['max_e_per_A2']:.4g} "
                     f"e⁻/Å² per frame{per_px}, total {dose['total_e_per_A2']:.4g} e⁻/Å²")
        detail = f" ({dose['detail']})" if dose["detail"] else ""
        lines.append(f"dose source: {dose['source']}{detail}")
    for note in info["dose_hints"].get("notes", []):
        lines.append(f"note:        {note}")
    for warning in info["warnings"]:
        lines.append(f"warning:     {warning}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    """Print format, shape, dtype, pixel size and dose summary of a series."""
    info = series_info(_open_calibrated(args))
    print(json.dumps(info, indent=2) if args.json else _format_info(info))
    return 0


MIN_ROI_PX = 32


def _roi_stack(data: Any, roi: tuple[int, int, int, int]):
    """Read the ROI of every frame (frame by frame, so a lazy series stays on disk)."""
    import numpy as np

    y0, y1, x0, x1 = roi
    ny, nx = data.shape[-2:]
    if y1 > ny or x1 > nx:
        raise CliError(f"region {y0}:{y1},{x0}:{x1} reaches outside the {ny}×{nx} px frame")
    if y1 - y0 < MIN_ROI_PX or x1 - x0 < MIN_ROI_PX:
        raise CliError(f"region is {y1 - y0}×{x1 - x0} px; the noise fit needs at least "
                       f"{MIN_ROI_PX}×{MIN_ROI_PX} px of vacuum")
    frames = data if data.ndim == 3 else data[None]
    stack = np.empty((frames.shape[0], y1 - y0, x1 - x0), dtype=np.float32)
    for i in range(frames.shape[0]):
        stack[i] = np.asarray(frames[i, y0:y1, x0:x1])
    return stack


def cmd_fit_noise(args: argparse.Namespace) -> int:
    """Fit the detector noise model (Larsen Eqs. 1–4) in a vacuum ROI of every frame."""
    import numpy as np

    from .io.writers import atomic_path, atomic_write_text
    from .noise import NoiseModel, fit_noise, fit_table_csv
    from .plots.noise import noise_fit_figure

    if args.model == "physical" and args.spectrum == "magnitude":
        raise CliError("the physical model (Eq. 3) is fitted to the power spectrum; "
                       "use --spectrum power or leave it out")
    spectrum = args.spectrum or ("magnitude" if args.model == "paper" else "power")
    series = _open_calibrated(args)
    sampling = None if series.pixel_size_A is None else float(np.mean(series.pixel_size_A))
    dose = None if series.frame_dose is None else series.frame_dose.dose_e_per_A2
    if dose is None:
        print(f"{PROG}: warning: no dose calibration; c0, c3 and C are fitted but N0 (Eq. 2) "
              "needs --dose, --dose-rate/--exposure-s or --counts-per-electron", file=sys.stderr)
    if sampling is None and dose is not None:
        raise CliError("the dose per pixel needs a pixel size: give --pixel-size-A")
    stack = _roi_stack(series.data, args.roi)
    result = fit_noise(stack, dose, sampling, model=args.model, spectrum_kind=spectrum)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "noise_fits.csv", fit_table_csv(result))
    NoiseModel.from_fit(result, name=f"fit of {series.path.name}",
                        description=f"ROI {args.roi}, {args.model} model, {spectrum} spectrum"
                        ).to_json(out / "noise_model.json")
    with atomic_path(out / "noise_fit.png") as tmp:
        noise_fit_figure(result).savefig(tmp, format="png", dpi=110)
    summary = result.summary()
    print(f"fitted {summary['n_ok']} of {summary['n_frames']} frames "
          f"({args.model} model, {spectrum} spectrum)")
    ok = result.ok
    print(f"c0 median {np.median(result.c0[ok]):.3g} q_N (range {summary['c0_range'][0]:.3g} … "
          f"{summary['c0_range'][1]:.3g}), c3 median {np.median(result.c3[ok]):.3g} "
          f"(range {summary['c3_range'][0]:.3g} … {summary['c3_range'][1]:.3g})")
    if np.isfinite(summary["n0_e_per_px"]):
        print(f"readout noise N0 = {summary['n0_e_per_px']:.4g} e⁻/px "
              f"(Eq. 2, R² = {summary['n0_r2']:.3f})")
    bad = int(np.sum(~result.ok))
    if bad:
        print(f"{PROG}: warning: {bad} frame(s) could not be fitted well (see the ok and "
              "message columns); is the region vacuum?", file=sys.stderr)
    print(f"wrote {out / 'noise_fits.csv'}, {out / 'noise_model.json'}, {out / 'noise_fit.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-lowdose`` command."""
    parser = argparse.ArgumentParser(prog=PROG, description="Low-dose HR-TEM analysis, headless.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="format, shape, pixel size and dose of a series")
    info.add_argument("series", type=Path, metavar="SERIES")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_dose_options(info)
    info.set_defaults(func=cmd_info)

    fit = sub.add_parser("fit-noise", help="fit the detector MTF and readout noise in vacuum")
    fit.add_argument("series", type=Path, metavar="SERIES")
    fit.add_argument("--roi", type=_roi_argument, required=True, metavar="Y0:Y1,X0:X1",
                     help="vacuum region in pixels (end exclusive), at least 32×32")
    fit.add_argument("--spectrum", choices=["magnitude", "power"],
                     help="spectrum to fit (default: magnitude for paper, power for physical)")
    fit.add_argument("--model", choices=["paper", "physical"], default="paper",
                     help="paper: Eq. 4 as in Larsen et al.; physical: Eq. 3, unbiased c0 "
                          "and per-frame N0 (default: paper)")
    fit.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="writes noise_fits.csv, noise_model.json and noise_fit.png here")
    _add_dose_options(fit)
    fit.set_defaults(func=cmd_fit_noise)

    from .cli_demo import add_demo_parser

    add_demo_parser(sub)

    from .cli_simulate import add_simulate_parser

    add_simulate_parser(sub)

    from .cli_train import add_calibrate_parser, add_models_parser, add_train_parser

    add_train_parser(sub)
    add_calibrate_parser(sub)
    add_models_parser(sub)

    from .cli_segment import add_segment_parsers

    add_segment_parsers(sub)
    from .cli_denoise import add_denoise_parsers

    add_denoise_parsers(sub)

    from .cli_watch import add_watch_parser

    add_watch_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-lowdose`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LowdoseError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(err).__name__}: {err} "
              "(rerun with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
