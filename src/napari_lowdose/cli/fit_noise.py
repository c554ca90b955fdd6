"""``napari-lowdose fit-noise``: the detector noise model (Larsen et al. Eqs. 1–4) in a
vacuum region of every frame."""

import argparse
import sys
from pathlib import Path
from typing import Any

from ..io.outputs import check_output_folder, write_output_folder
from ..io.units import pixel_area_A2
from ._common import PROG, CliError, add_dose_options, open_calibrated, roi_argument

__all__ = ["FIT_NOISE_FILES", "add_fit_noise_parser", "cmd_fit_noise"]

#: The files of a noise fit.
FIT_NOISE_FILES = ("noise_fits.csv", "noise_model.json", "noise_fit.png")


def add_fit_noise_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``fit-noise``."""
    fit = sub.add_parser("fit-noise", help="fit the detector MTF and readout noise in vacuum")
    fit.add_argument("series", type=Path, metavar="SERIES")
    fit.add_argument("--roi", type=roi_argument, required=True, metavar="Y0:Y1,X0:X1",
                     help="vacuum region in pixels (end exclusive), at least 32×32")
    fit.add_argument("--spectrum", choices=["magnitude", "power"],
                     help="spectrum to fit (default: magnitude for paper, power for physical)")
    fit.add_argument("--model", choices=["paper", "physical"], default="paper",
                     help="paper: Eq. 4 as in Larsen et al.; physical: Eq. 3, unbiased c0 "
                          "and per-frame N0 (default: paper)")
    fit.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="writes " + ", ".join(FIT_NOISE_FILES) + " here")
    fit.add_argument("--overwrite", action="store_true", help="replace files in an existing DIR")
    add_dose_options(fit)
    fit.set_defaults(func=cmd_fit_noise)



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

    from ..noise import NoiseModel, fit_spectra, fit_table_csv, radial_spectrum
    from ..noise.vacuum import vacuum_check
    from ..plots.noise import noise_fit_figure

    if args.model == "physical" and args.spectrum == "magnitude":
        raise CliError("the physical model (Eq. 3) is fitted to the power spectrum; "
                       "use --spectrum power or leave it out")
    spectrum = args.spectrum or ("magnitude" if args.model == "paper" else "power")
    check_output_folder(args.out, overwrite=args.overwrite)
    series = open_calibrated(args)
    # The side of a square pixel of the same area: N_D = dose × sampling² (Eq. 2) is then
    # dose × pixel height × pixel width for any pixel.
    sampling = (None if series.pixel_size_A is None
                else float(np.sqrt(pixel_area_A2(series.pixel_size_A))))
    dose = None if series.frame_dose is None else series.frame_dose.dose_e_per_A2
    if dose is None:
        print(f"{PROG}: warning: no dose calibration; c0, c3 and C are fitted but N0 (Eq. 2) "
              "needs --dose, --dose-rate/--exposure-s or --counts-per-electron", file=sys.stderr)
    if sampling is None and dose is not None:
        raise CliError("the dose per pixel needs a pixel size: give --pixel-size-A")
    stack = _roi_stack(series.data, args.roi)
    spec = radial_spectrum(stack, kind=spectrum)
    result = fit_spectra(spec, model=args.model, dose_e_per_A2=dose, sampling_A=sampling)
    check = vacuum_check(result, spec.counts)  # the same rule as the Detector noise dock
    model = NoiseModel.from_fit(result, name=f"fit of {series.path.name}",
                                description=f"ROI {args.roi}, {args.model} model, "
                                            f"{spectrum} spectrum")
    out = Path(args.out)
    write_output_folder(out, {
        "noise_fits.csv": lambda p: p.write_text(fit_table_csv(result), encoding="utf-8"),
        "noise_model.json": model.to_json,
        "noise_fit.png": lambda p: noise_fit_figure(result).savefig(p, format="png", dpi=110),
    }, overwrite=args.overwrite)
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
    nonfinite = [i for i, m in enumerate(result.message) if "non-finite" in str(m)]
    if nonfinite:
        listed = ", ".join(str(i) for i in nonfinite[:8]) + (" …" if len(nonfinite) > 8 else "")
        print(f"{PROG}: warning: frame(s) {listed} hold NaN or infinite pixels in the region "
              "and were left out of the fit (ok = false)", file=sys.stderr)
    print(f"vacuum check: {check.summary()}")
    if check.warning() is not None:
        print(f"{PROG}: warning: {check.warning()}", file=sys.stderr)
    if bad > len(nonfinite):
        print(f"{PROG}: warning: {bad - len(nonfinite)} frame(s) could not be fitted well "
              "(see the ok and message columns); is the region vacuum?", file=sys.stderr)
    print(f"wrote {out / 'noise_fits.csv'}, {out / 'noise_model.json'}, {out / 'noise_fit.png'}")
    return 0


