"""``napari-lowdose segment`` and ``evaluate``: masks, area against dose, F1 (Larsen Sec. 3).

``segment`` streams a series through a segmentation network frame by frame,
thresholds the probabilities, reads the convergence dose and the dose at 50 %
segmentation off the area-against-dose curve, and writes every output at once
(:func:`napari_lowdose.io.outputs.write_output_folder`): an error leaves no
partial folder, and an existing folder needs ``--overwrite``.
"""

import argparse
import sys
from pathlib import Path

from ..io.outputs import check_output_folder, result_array
from ..workflows.segmentation import (
    NO_DOSE_REASON,
    SEGMENT_FILES,
    SEGMENT_FILES_WITHOUT_DOSE,
    SegmentError,
    resolve_threshold,
    sampling_plan,
    segmentation_record,
    with_rose,
    write_segmentation,
)
from ._common import (
    PROG,
    TILE_HELP,
    add_dose_options,
    open_calibrated,
    parse_frames,
    progress_bar,
    tile_argument,
)

__all__ = ["add_segment_parser", "cmd_segment", "threshold_option"]

def add_segment_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``segment``."""
    from ..models.registry import DEFAULT_MODEL, RECOMMENDED_THRESHOLD

    seg = sub.add_parser("segment", help="segment a dose series; area against dose")
    seg.add_argument("series", type=Path, metavar="SERIES")
    seg.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                     help=f"shipped model name or .safetensors file (default {DEFAULT_MODEL})")
    seg.add_argument("--threshold", type=threshold_option, default=None, metavar="T|model",
                     help="mask = probability >= T; 'model': the model's calibrated "
                          "threshold (see 'napari-lowdose calibrate'); default "
                          f"'{RECOMMENDED_THRESHOLD}', or 0.9 (the paper's) for a model "
                          "without one")
    clean = seg.add_argument_group(
        "mask clean-up", "optional, after the threshold (off: the paper's plain threshold)")
    clean.add_argument("--keep-largest", action="store_true",
                       help="keep only the largest region of each mask (one particle in view)")
    clean.add_argument("--fill-holes", action="store_true",
                       help="fill holes enclosed by a region")
    clean.add_argument("--min-area-nm2", type=float, default=0.0, metavar="A",
                       help="drop regions smaller than A nm² (needs the pixel size)")
    seg.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, mps")
    seg.add_argument("--frames", metavar="A:B",
                     help="segment frames A…B-1 only (default all; the dose received before "
                          "frame A still counts in the cumulative dose)")
    seg.add_argument("--batch-size", type=int, default=1, help="frames per batch (default 1)")
    seg.add_argument("--match-sampling", action=argparse.BooleanOptionalAction, default=None,
                     help="resample each frame to the model's training pixel size for the "
                          "network and the probabilities back (default: whenever the pixel "
                          "size is known and within 4x of it; --match-sampling fails when "
                          "it cannot; much better away from 0.07-0.08 A/px on the "
                          "validation battery, docs/models.md)")
    seg.add_argument("--tile", type=tile_argument, default="auto", metavar="PX|auto|none",
                     help=TILE_HELP)
    seg.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="writes " + ", ".join(SEGMENT_FILES))
    seg.add_argument("--overwrite", action="store_true", help="replace files in an existing DIR")
    add_dose_options(seg)
    seg.set_defaults(func=cmd_segment)



def threshold_option(text: str) -> float | str:
    """``--threshold``: a probability in (0, 1), or ``"model"``."""
    if text.strip().lower() == "model":
        return "model"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'model', got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def cmd_segment(args: argparse.Namespace) -> int:
    """Segment a series and write masks, probabilities, the curve and the summary."""
    import contextlib

    import numpy as np

    from ..analysis.area_vs_dose import analyse_area_vs_dose
    from ..analysis.masks import MaskCleaning, probability_mask
    from ..device import describe_device, select_device
    from ..models.inference import predict_probabilities
    from ..models.registry import load_model, resolve_model

    if args.min_area_nm2 < 0:
        raise SegmentError("--min-area-nm2 must be at least 0")
    check_output_folder(args.out, overwrite=args.overwrite)
    series = open_calibrated(args)
    if args.min_area_nm2 > 0 and series.pixel_size_A is None:
        raise SegmentError("--min-area-nm2 needs the pixel size: give --pixel-size-A or a "
                           "calibrated file")
    cleaning = MaskCleaning.from_area_nm2(args.min_area_nm2, series.pixel_size_A,
                                          keep_largest=args.keep_largest,
                                          fill_holes=args.fill_holes)
    if series.frame_dose is None:
        print(f"{PROG}: warning: no per-frame dose: only "
              f"{', '.join(SEGMENT_FILES_WITHOUT_DOSE)} are written; {NO_DOSE_REASON}",
              file=sys.stderr)
    device = select_device(args.device)
    model_path = resolve_model(args.model)
    model, metadata = load_model(model_path, device="cpu")
    args.threshold = resolve_threshold(args.threshold, metadata, str(args.model))
    sampling = sampling_plan(series.pixel_size_A, metadata, match=args.match_sampling)
    zoom = sampling.zoom
    print(f"network input: {sampling.note}")
    frames = series.frames
    selected = (range(len(frames)) if args.frames is None
                else parse_frames(args.frames, len(frames)))
    shape = (len(selected), *frames.shape[-2:])
    with contextlib.ExitStack() as stack:
        # A large series keeps its results in scratch files, not in memory.
        probabilities = stack.enter_context(result_array(shape, np.float32, args.out))
        masks = stack.enter_context(result_array(shape, np.uint8, args.out))
        bar = progress_bar(len(selected), unit="frame", desc="segment")
        try:
            for index, probability in predict_probabilities(
                model, frames, device=device, batch_size=args.batch_size, tile_px=args.tile,
                zoom=zoom, frame_indices=list(selected),
            ):
                row = index - selected.start
                probabilities[row] = probability
                masks[row] = probability_mask(probability, args.threshold, cleaning)
                bar.update(1)
        finally:
            bar.close()
        pixel_size = None if series.pixel_size_A is None else series.pixel_size_A
        dose = series.frame_dose
        record = segmentation_record(
            input_name=str(Path(series.path).resolve()), file_format=series.format,
            pixel_size_A=series.pixel_size_A, pixel_size_source=series.pixel_size_source,
            dose_source="none" if dose is None else dose.source,
            dose_detail="" if dose is None else dose.detail, model_name=str(args.model),
            model_path=model_path, model_metadata=metadata, threshold=args.threshold,
            cleaning=cleaning, device=describe_device(device), sampling=sampling)
        record["frames"] = list(selected)
        if dose is None:
            area_px = [int(np.count_nonzero(masks[i])) for i in range(len(selected))]
            summary = {"area_vs_dose": NO_DOSE_REASON, "n_frames": len(selected),
                       "area_px": area_px, "run": record}
            written = write_segmentation(args.out, pixel_size_A=series.pixel_size_A,
                                         probabilities=probabilities, masks=masks,
                                         analysis=None, summary=summary, label="",
                                         overwrite=args.overwrite)
            print(f"{len(selected)} frames segmented; no area against dose ({NO_DOSE_REASON})")
            print(f"wrote {', '.join(SEGMENT_FILES_WITHOUT_DOSE)} to {written[0].parent}")
            return 0
        # Series frame numbers, and the dose received before the first frame segmented.
        analysis = analyse_area_vs_dose(masks, dose.dose_e_per_A2[selected.start:selected.stop],
                                        pixel_size, frames=np.asarray(selected),
                                        series_dose_e_per_A2=dose.dose_e_per_A2)
        # Contrast and Rose doses of the whole field and of each particle (the dock's rule).
        analysis = with_rose(frames, analysis, series.pixel_size_A)
        summary = {**analysis.summary(), "run": record}
        label = model_path.stem if Path(str(args.model)).suffix else str(args.model)
        written = write_segmentation(args.out, pixel_size_A=series.pixel_size_A,
                                     probabilities=probabilities, masks=masks,
                                     analysis=analysis, summary=summary, label=label,
                                     overwrite=args.overwrite)
    _print_summary(analysis, written[0].parent)
    return 0


def _print_summary(analysis, out: Path) -> None:
    import numpy as np

    from ..analysis.area_vs_dose import readout_text

    summary = analysis.summary()
    lowest = float(np.min(analysis.dose_e_per_A2))

    def dose(value):
        return readout_text(value)

    def since(value):  # a dose from which on something held: a bound at the lowest dose
        return readout_text(value, lowest)

    area = summary["converged_area_nm2"]
    area_text = f"{area:.3g} nm²" if area is not None else f"{summary['converged_area_px']} px"
    print(f"{summary['n_frames']} frames segmented; converged area {area_text}")
    if summary.get("consensus_readout", "ok") == "ok":
        over = summary.get("over_segmented_frames") or []
        print(f"against the consensus of the highest-dose frames: visible (F1 ≥ 0.5) "
              f"from {since(summary['visibility_dose_e_per_A2'])}; "
              f"F1 ≥ {summary.get('convergence_f1', 0.9):g} from "
              f"{since(summary['convergence_dose_e_per_A2'])}"
              + (f"; {len(over)} over-segmented frame(s)" if over else ""))
        particles = summary.get("particles") or []
        if len(particles) > 1:
            for particle in particles:
                print(f"  particle {particle['particle']} ({particle['area_px']} px at "
                      f"y {particle['centre_px'][0]:.0f}, x {particle['centre_px'][1]:.0f}): "
                      f"visible from {since(particle['visibility_dose_e_per_A2'])}, "
                      f"F1 ≥ {summary.get('convergence_f1', 0.9):g} from "
                      f"{since(particle['convergence_dose_e_per_A2'])}")
    else:
        print(f"no readout against a consensus: {summary['consensus_readout']}")
    _print_rose(summary.get("rose"), dose)
    if summary.get("paper_readout", "ok") != "ok":
        print(f"area only (the paper's method): no readout: {summary['paper_readout']}")
    else:
        print(f"area only (the paper's method): 50 % segmentation at "
              f"{dose(summary['paper_dose_at_50pct_e_per_A2'])}; area converged from "
              f"{dose(summary['paper_convergence_dose_e_per_A2'])}")
    print(f"wrote {', '.join(SEGMENT_FILES)} to {out}")


def _print_rose(rose: dict | None, dose) -> None:
    """The Rose criterion's doses: the whole field, then each particle when several."""
    if not rose or rose.get("particle_contrast") is None:
        return
    if rose.get("rose_dose_particle_e_per_A2") is None and rose.get("particle_area_nm2") is None:
        print(f"Rose criterion: contrast {rose['particle_contrast']:.3g} (the doses need the "
              "pixel size)")
        return

    def needs(entry: dict) -> str:
        return (f"(contrast {entry['particle_contrast']:.3g}, "
                f"{entry['particle_area_nm2']:.3g} nm²) needs "
                f"{dose(entry['rose_dose_particle_e_per_A2'])}, a 1 nm² patch of it "
                f"{dose(entry['rose_dose_1nm2_e_per_A2'])}")

    particles = rose.get("particles") or []
    what = "all particles together" if len(particles) > 1 else "the particle"
    print(f"Rose criterion (C·√(dose·A) = {rose['rose_k']:g}): {what} {needs(rose)}")
    if len(particles) > 1:
        for entry in particles:
            if entry.get("particle_area_nm2") is None:
                print(f"  particle {entry['particle']}: no contrast (no background ring)")
            else:
                print(f"  particle {entry['particle']} {needs(entry)}")
