"""``napari-lowdose fit-noise``: the detector noise model (Larsen et al. Eqs. 1–4) in a
vacuum region of every frame, or in the differences of frame pairs of one field
(``--source pairs``: consecutive frames of the series, or the series and ``--pair-with``;
no vacuum needed, :mod:`napari_lowdose.noise.pairs`)."""

import argparse
import sys
from pathlib import Path
from typing import Any

from ..io.outputs import check_output_folder, write_output_folder
from ..io.series import as_frame_stack
from ..io.units import pixel_area_A2
from ._common import PROG, CliError, add_dose_options, open_calibrated, roi_argument

__all__ = ["FIT_NOISE_FILES", "add_fit_noise_parser", "cmd_fit_noise"]

#: The files of a noise fit.
FIT_NOISE_FILES = ("noise_fits.csv", "noise_model.json", "noise_fit.png")


def add_fit_noise_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``fit-noise``."""
    fit = sub.add_parser("fit-noise", help="fit the detector MTF and readout noise in vacuum "
                                           "or in frame-pair differences")
    fit.add_argument("series", type=Path, metavar="SERIES")
    fit.add_argument("--roi", type=roi_argument, metavar="Y0:Y1,X0:X1",
                     help="vacuum region in pixels (end exclusive), at least 32×32; needed "
                          "for --source vacuum; with --source pairs the region of the field "
                          "used (default: whole frame)")
    fit.add_argument("--source", choices=["vacuum", "pairs"],
                     help="vacuum: a vacuum region (--roi) of every frame; pairs: the "
                          "registered differences of frame pairs of one field, frames (0, 1), "
                          "(2, 3), … of SERIES or SERIES with --pair-with (default: pairs "
                          "with --pair-with, else vacuum)")
    fit.add_argument("--pair-with", type=Path, metavar="FILE",
                     help="second exposure(s) of the same field: frame i of SERIES is "
                          "paired with frame i of FILE (implies --source pairs)")
    fit.add_argument("--spectrum", choices=["magnitude", "power"],
                     help="spectrum to fit (default: magnitude for paper, power for physical)")
    fit.add_argument("--model", choices=["paper", "physical"],
                     help="paper: Eq. 4 as in Larsen et al.; physical: Eq. 3, unbiased c0 "
                          "and per-frame N0 (default: paper for vacuum, physical for pairs)")
    fit.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="writes " + ", ".join(FIT_NOISE_FILES) + " here")
    fit.add_argument("--overwrite", action="store_true", help="replace files in an existing DIR")
    fit.add_argument("--allow-non-vacuum", action="store_true",
                     help="write the noise model even when the region fails the vacuum check "
                          "(recorded in the model; by default only the table and plot are "
                          "written and the exit status is 1)")
    add_dose_options(fit)
    fit.set_defaults(func=cmd_fit_noise)



MIN_ROI_PX = 32


def _roi_stack(data: Any, roi: tuple[int, int, int, int]):
    """Read the ROI of every frame (frame by frame, so a lazy series stays on disk)."""
    import numpy as np

    _check_roi(data.shape[-2:], roi)
    y0, y1, x0, x1 = roi
    frames = as_frame_stack(data)
    stack = np.empty((frames.shape[0], y1 - y0, x1 - x0), dtype=np.float32)
    for i in range(frames.shape[0]):
        stack[i] = np.asarray(frames[i, y0:y1, x0:x1])
    return stack


def _check_roi(shape: tuple[int, ...], roi: tuple[int, int, int, int]) -> None:
    """One-line errors for a region outside the frame or under MIN_ROI_PX."""
    y0, y1, x0, x1 = roi
    ny, nx = shape
    if y1 > ny or x1 > nx:
        raise CliError(f"region {y0}:{y1},{x0}:{x1} reaches outside the {ny}×{nx} px frame")
    if y1 - y0 < MIN_ROI_PX or x1 - x0 < MIN_ROI_PX:
        raise CliError(f"region is {y1 - y0}×{x1 - x0} px; the noise fit needs at least "
                       f"{MIN_ROI_PX}×{MIN_ROI_PX} px of vacuum")


def _pair_frames(args: argparse.Namespace, series) -> tuple[list[tuple[Any, Any]], str]:
    """The frame pairs (cut to --roi) and how they were formed."""
    import numpy as np

    from ..noise.pairs import series_pairs
    from ._common import open_series

    data = series.frames
    if args.pair_with is not None:
        other = open_series(args, args.pair_with, calibrated=False).data
        other = as_frame_stack(other)
        if other.shape != data.shape:
            raise CliError(f"--pair-with {args.pair_with.name} holds {other.shape} px frames, "
                           f"{args.series.name} {data.shape}: pairs need the same frames")
        index = [(i, i) for i in range(data.shape[0])]
        second, how = other, f"frame i of {args.series.name} with frame i of {args.pair_with.name}"
    else:
        try:
            index = series_pairs(data.shape[0])
        except ValueError:
            raise CliError(f"{args.series.name} has one frame: frame pairs need a series or "
                           "--pair-with FILE (a second exposure of the field)") from None
        second, how = data, f"consecutive frames of {args.series.name}"
    cut = (slice(None), slice(None))
    if args.roi is not None:
        _check_roi(data.shape[-2:], args.roi)
        y0, y1, x0, x1 = args.roi
        cut = (slice(y0, y1), slice(x0, x1))
        how += f", ROI {args.roi}"

    def frame(arr, i):
        return np.asarray(arr[(i, *cut)], dtype=np.float64)

    return [(frame(data, i), frame(second, j)) for i, j in index], how


def _fit_pairs(args: argparse.Namespace, series, spectrum: str, sampling: float | None):
    """Fit the frame-pair differences; (result, ring counts, description)."""
    from ..noise.pairs import DOSE_TOLERANCE, fit_noise_from_pairs

    gain = args.counts_per_electron or series.dose_hints.counts_per_electron
    if gain is not None and not gain > 0:
        raise CliError("--counts-per-electron must be positive")
    if gain is None:
        print(f"{PROG}: warning: no detector gain: c0 and c3 are fitted but N0 needs the "
              "frames' dose (mean counts ÷ gain): give --counts-per-electron", file=sys.stderr)
    pairs, how = _pair_frames(args, series)
    try:
        result, spectra = fit_noise_from_pairs(pairs, model=args.model, spectrum_kind=spectrum,
                                               counts_per_electron=gain, sampling_A=sampling)
    except ValueError as err:
        raise CliError(f"frame pairs: {err}") from None
    n_pairs = len(spectra.pairs)
    print(f"frame pairs: {n_pairs} ({how}); {spectra.shift_summary()}; "
          f"{len(spectra.groups)} spectrum row(s) (pairs within {DOSE_TOLERANCE:.0%} in dose "
          "averaged)")
    if gain is not None:
        print(f"dose from the mean counts ÷ {gain:.4g} counts/e⁻: N_eff "
              + ", ".join(f"{v:.3g}" for v in spectra.frame_dose_e_per_px) + " e⁻/px")
    return result, spectra.spectrum.counts, f"frame pairs: {how}"


def _no_fit_message(result: Any, out: Path) -> str:
    """One line: no row was fitted, why, and what was written instead of a model."""
    from ..noise import no_fit_reason

    reason = no_fit_reason(result)
    return (f"{reason[0].lower()}{reason[1:]}; no noise model written, the fit table and "
            f"plot are in {out}")


def cmd_fit_noise(args: argparse.Namespace) -> int:
    """Fit the detector noise model (Larsen Eqs. 1–4) in a vacuum ROI of every frame."""
    import numpy as np

    from ..noise import NoiseModel, fit_spectra, fit_table_csv, radial_spectrum
    from ..noise.fitted_model import fit_description, fitted_model_name
    from ..noise.model import NoFitError
    from ..noise.vacuum import vacuum_check
    from ..plots.noise import noise_fit_figure

    source = args.source or ("pairs" if args.pair_with is not None else "vacuum")
    if source == "vacuum" and args.pair_with is not None:
        raise CliError("--pair-with gives frame pairs: use --source pairs (or leave it out)")
    if source == "vacuum" and args.roi is None:
        raise CliError("the vacuum fit needs --roi Y0:Y1,X0:X1 over vacuum (or use "
                       "--source pairs with frame pairs of one field)")
    if args.model is None:
        args.model = "physical" if source == "pairs" else "paper"
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
    if dose is None and source == "vacuum":
        print(f"{PROG}: warning: no dose calibration; c0, c3 and C are fitted but N0 (Eq. 2) "
              "needs --dose, --dose-rate/--exposure-s or --counts-per-electron", file=sys.stderr)
    if sampling is None and dose is not None and source == "vacuum":
        raise CliError("the dose per pixel needs a pixel size: give --pixel-size-A")
    if source == "pairs":
        result, counts, what = _fit_pairs(args, series, spectrum, sampling)
    else:
        stack = _roi_stack(series.data, args.roi)
        spec = radial_spectrum(stack, kind=spectrum)
        result = fit_spectra(spec, model=args.model, dose_e_per_A2=dose, sampling_A=sampling)
        counts, what = spec.counts, f"ROI {args.roi}"
    check = vacuum_check(result, counts)  # the same rule as the Detector noise dock
    out = Path(args.out)
    files = {
        "noise_fits.csv": lambda p: p.write_text(fit_table_csv(result), encoding="utf-8"),
        "noise_fit.png": lambda p: noise_fit_figure(result).savefig(p, format="png", dpi=110),
    }
    description = fit_description(what, result)
    refused = source == "vacuum" and not check.passed
    if refused and args.allow_non_vacuum:
        description += f"; failed the vacuum check ({check.summary()}), saved anyway"
    try:
        model = NoiseModel.from_fit(result, name=fitted_model_name(series.path.name),
                                    description=description)
    except NoFitError:
        # The table and the plot say why; they are written, the model is not.
        write_output_folder(out, files, overwrite=args.overwrite)
        raise CliError(_no_fit_message(result, out)) from None
    if refused and not args.allow_non_vacuum:
        # The dock's rule: a fit biased by structure is not saved as a noise model.
        write_output_folder(out, files, overwrite=args.overwrite)
        raise CliError(f"the region is probably not pure vacuum ({check.summary()}); no "
                       f"noise model written, the fit table and plot are in {out} (choose a "
                       "--roi over vacuum, or pass --allow-non-vacuum)")
    write_output_folder(out, {**files, "noise_model.json": model.to_json},
                        overwrite=args.overwrite)
    summary = result.summary()
    rows = "spectra of frame pairs" if source == "pairs" else "frames"
    print(f"fitted {summary['n_ok']} of {summary['n_frames']} {rows} "
          f"({args.model} model, {spectrum} spectrum, noise source: {source})")
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
    if source == "pairs":
        print(f"noise check of the differences: {check.summary()}")
    else:
        print(f"vacuum check: {check.summary()}")
    if check.warning() is not None and source == "vacuum":
        print(f"{PROG}: warning: {check.warning()}", file=sys.stderr)
    if bad > len(nonfinite):
        print(f"{PROG}: warning: {bad - len(nonfinite)} frame(s) could not be fitted well "
              "(see the ok and message columns); is the region vacuum?", file=sys.stderr)
    print(f"wrote {out / 'noise_fits.csv'}, {out / 'noise_model.json'}, {out / 'noise_fit.png'}")
    return 0


