"""What every command shares: errors, regions, dose options, opening a calibrated series,
progress bars.

The commands are a thin face over the core (:mod:`napari_lowdose.workflows`,
:mod:`napari_lowdose.io` and the science packages): they parse arguments, call the
core with plain values, and print. Nothing here is imported by the napari widgets.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import LowdoseError
from ..io.dose import DOSE_SOURCES
from ..io.dose_calibration import calibrate_frame_dose
from ..models.tiling import AUTO_TILE_MAX_PIXELS, AUTO_TILE_PX
from ..workflows.policies import GainError, detector_gain, expected_e_per_px

__all__ = ["PROG", "CliError", "add_dose_options", "open_calibrated", "open_series",
           "parse_frames", "parse_roi", "progress_bar", "roi_argument",
           "series_expected_e_per_px", "series_gain", "tile_argument"]

PROG = "napari-lowdose"


class CliError(LowdoseError):
    """A usage error detected after argument parsing."""


def parse_frames(text: str, n_frames: int) -> range:
    """Frames ``"A:B"`` (end exclusive, either side may be empty, negatives from the end).

    Raises
    ------
    CliError
        Not of the form ``A:B``, a bound beyond the series, or an empty selection.
    """
    try:
        start_text, stop_text = text.split(":")
        start = int(start_text) if start_text.strip() else None
        stop = int(stop_text) if stop_text.strip() else None
    except ValueError:
        raise CliError(
            f"--frames {text!r} must look like A:B (e.g. 0:100, 10:, :-1)"
        ) from None
    for bound in (start, stop):
        if bound is not None and not -n_frames <= bound <= n_frames:
            raise CliError(f"--frames {text} reaches past the series' {n_frames} frame(s) "
                               f"(0…{n_frames - 1}; the end is exclusive)")
    frames = range(n_frames)[slice(start, stop)]
    if len(frames) == 0:
        raise CliError(f"--frames {text} selects no frame of the {n_frames} in the series")
    return frames


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


def roi_argument(text: str) -> tuple[int, int, int, int]:
    """argparse ``type=`` for a region: a bad value becomes a usage error."""
    try:
        return parse_roi(text)
    except CliError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


#: Smallest tile side ``--tile`` accepts, px.
MIN_TILE_PX = 16
#: ``--tile``'s words: tiles only for frames too large to fit (the default), or none.
TILE_WORDS = {"auto": "auto", "none": None}
TILE_HELP = ("tiles of PX with overlap (frames too large for memory); 'auto' (default): "
             f"only frames over {AUTO_TILE_MAX_PIXELS // (1024 * 1024)} Mpx, in tiles of "
             f"{AUTO_TILE_PX} px; 'none': whole frames always")


def tile_argument(text: str) -> int | str | None:
    """argparse ``type=`` of ``--tile``: ``auto``, ``none`` or a side in px (≥ 16)."""
    word = text.strip().lower()
    if word in TILE_WORDS:
        return TILE_WORDS[word]
    try:
        side = int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a tile side: give PX (≥ {MIN_TILE_PX}), 'auto' or 'none'") from None
    if side < MIN_TILE_PX:
        raise argparse.ArgumentTypeError(f"a tile must be at least {MIN_TILE_PX} px, got {side}")
    return side


def add_dose_options(parser: argparse.ArgumentParser) -> None:
    """The dose and pixel-size options of every command that opens a series."""
    group = parser.add_argument_group("dose per frame (overrides what the file states)")
    group.add_argument("--dose", metavar="CSV", type=Path,
                       help="dose table: CSV with a dose_e_per_A2 column, one row per frame")
    group.add_argument("--dose-source", default="auto",
                       choices=["auto", *DOSE_SOURCES],
                       help="force one source instead of the priority order metadata > "
                            "table > rate×exposure > counts (with --counts-per-electron) > "
                            "file_calibration (the file's own intensity calibration: mean "
                            "counts ÷ its stated gain) (default: auto)")
    group.add_argument("--dose-rate", type=float, metavar="E_PER_A2_S",
                       help="dose rate at the specimen in e⁻/Å²/s")
    group.add_argument("--exposure-s", type=float, metavar="S",
                       help="exposure time of one frame in s")
    group.add_argument("--counts-per-electron", type=float, metavar="G",
                       help="detector counts per electron (dose from mean counts; overrides "
                            "the gain the file states)")
    group.add_argument("--counts-roi", type=roi_argument, metavar="Y0:Y1,X0:X1",
                       help="vacuum region for the counts source (default: whole frame)")
    parser.add_argument("--pixel-size-A", type=float, metavar="S",
                        help="pixel size in Å/px (overrides the file's calibration)")


def open_calibrated(args: argparse.Namespace):
    """Open ``args.series`` with the pixel size and dose the options give (see
    :func:`napari_lowdose.io.dose_calibration.calibrate_frame_dose`)."""
    from ..io.readers import read_series

    series = read_series(args.series)
    if args.pixel_size_A is not None:
        if not args.pixel_size_A > 0:
            raise CliError("--pixel-size-A must be positive")
        series.pixel_size_A = (args.pixel_size_A, args.pixel_size_A)
        series.pixel_size_source = "command line --pixel-size-A"
    user_given = any(v is not None for v in (args.dose, args.dose_rate, args.exposure_s,
                                             args.counts_per_electron))
    # With nothing given, the dose is what the file gave at opening, or (a long series
    # that states its gain) the dose of its intensity calibration, computed now.
    if (user_given or args.dose_source != "auto" or args.pixel_size_A is not None
            or series.frame_dose is None):
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


def progress_bar(total: int | None, *, unit: str, desc: str, shown: bool = True):
    """A tqdm bar on stderr (hidden when stderr is not a terminal, or when not ``shown``).

    Its ``write`` prints a line above the bar (e.g. one per epoch).
    """
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr,
                disable=None if shown else True)


def open_series(args: argparse.Namespace, path: Path, *, calibrated: bool):
    """A series other than ``args.series`` opened with (``calibrated``) or without the
    command's dose options (e.g. the short and long exposures of ``train-denoiser``)."""
    from ..io.readers import read_series

    if not calibrated:
        return read_series(path)
    return open_calibrated(argparse.Namespace(**{**vars(args), "series": path}))


def series_gain(args: argparse.Namespace, series) -> float:
    """``--counts-per-electron``, else the gain the file states, else 1
    (:func:`~napari_lowdose.workflows.policies.detector_gain`)."""
    try:
        return detector_gain(args.counts_per_electron, series.dose_hints.counts_per_electron)
    except GainError:
        raise CliError("--counts-per-electron must be positive") from None


def series_expected_e_per_px(series) -> tuple[Any, str]:
    """Per-frame expected electrons per pixel of a series (or None) and how it was found
    (:func:`~napari_lowdose.workflows.policies.expected_e_per_px`)."""
    dose = series.frame_dose
    if dose is not None and series.pixel_size_A is None:
        print(f"{PROG}: warning: the series has a dose but no pixel size; normalising "
              "by the frame means (give --pixel-size-A)", file=sys.stderr)
    return expected_e_per_px(None if dose is None else dose.dose_e_per_A2,
                             series.pixel_size_A,
                             dose_source="" if dose is None else dose.source)
