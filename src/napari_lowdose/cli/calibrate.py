"""``napari-lowdose calibrate``: record a segmentation model's best probability threshold.

Not the dose calibration (that is :mod:`napari_lowdose.io.dose_calibration`): the pooled
pixel F1 of a dataset's validation images at thresholds 0.05…0.99 (Larsen et al. 2023
threshold at 0.9; the CPU-trained networks are less confident), stored in the model's
metadata for ``segment --threshold model``.
"""

import argparse
import sys
from pathlib import Path

from ._common import progress_bar
from .train import TrainUsageError

__all__ = ["add_calibrate_parser", "cmd_calibrate"]


def add_calibrate_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``calibrate`` subcommand."""
    cal = sub.add_parser(
        "calibrate",
        help="record a segmentation model's best probability threshold on a dataset",
        description="Pooled pixel F1 of the dataset's validation images at thresholds "
                    "0.05…0.99; the best is stored in the model's metadata and used by "
                    "'segment --threshold model'. The weights are not changed.",
    )
    cal.add_argument("model", type=Path, metavar="MODEL", help="a .safetensors model file")
    cal.add_argument("--data", type=Path, required=True, metavar="DATASET",
                     help="dataset folder made by 'napari-lowdose simulate'")
    cal.add_argument("--out", type=Path, metavar="MODEL_OUT",
                     help="write the calibrated model here (default: replace MODEL)")
    cal.add_argument("--overwrite", action="store_true",
                     help="replace an existing MODEL_OUT (MODEL itself is replaced when no "
                          "--out is given)")
    cal.add_argument("--device", default="auto",
                     help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    cal.add_argument("--val-crop", type=int, metavar="PX",
                     help="side of the central crops (default: the model's validation crop; "
                          "0 = whole images)")
    cal.add_argument("--max-val-images", type=int, metavar="N",
                     help="use the first N validation images only")
    cal.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Calibrate a model's threshold and print the F1 at each threshold."""
    from ..train.calibration import calibrate_threshold

    if args.max_val_images is not None and args.max_val_images < 1:
        raise TrainUsageError("--max-val-images must be at least 1")
    if args.val_crop is not None and args.val_crop < 0:
        raise TrainUsageError("--val-crop must be at least 0")
    if args.out is not None and args.out.suffix.lower() == ".json":
        raise TrainUsageError("--out is the model file (.safetensors), not its .json sidecar")
    if not args.model.exists():
        from ..models.registry import SHIPPED_MODELS, resolve_model

        if str(args.model) in SHIPPED_MODELS:
            raise TrainUsageError(
                f"calibrate writes into a model file; {args.model} is a shipped model: copy "
                f"its file ({resolve_model(str(args.model))}) and calibrate the copy")
    if (args.out is not None and args.out.exists() and not args.overwrite
            and args.out.resolve() != args.model.resolve()):
        raise TrainUsageError(f"{args.out} exists; pass --overwrite to replace it")
    crop = None if args.val_crop is None else (args.val_crop or None)
    bar = progress_bar(None, unit="image", desc="calibrate")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        record = calibrate_threshold(args.model, args.data, out=args.out, device=args.device,
                                     val_crop_px="model" if args.val_crop is None else crop,
                                     max_val_images=args.max_val_images, progress=progress)
    finally:
        bar.close()
    table = "  ".join(f"{t}: {f1:.3f}" for t, f1 in record["f1_by_threshold"].items())
    print(f"F1 by threshold ({record['n_images']} validation images): {table}")
    print(f"{args.out or args.model}: calibrated threshold {record['threshold']:.2f} "
          f"(validation F1 {record['f1']:.4f})")
    previous = record.get("previous")
    if previous:
        f1 = previous.get("f1")
        f1_text = "" if f1 is None else f" (F1 {f1:.4f}"
        f1_text += (f" on {previous['n_images']} images)" if previous.get("n_images")
                    else ")" if f1_text else "")
        print(f"replaced: threshold {previous['threshold']:.2f}{f1_text} from "
              f"{previous.get('dataset')} (kept in the model's calibration record)")
    for warning in record.get("warnings") or []:
        print(f"napari-lowdose: warning: {warning}", file=sys.stderr)
    return 0
