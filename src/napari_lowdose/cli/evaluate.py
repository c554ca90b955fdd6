"""``napari-lowdose evaluate``: F1 of every frame of a ``segment`` output against a truth mask
(Larsen et al. 2023, Fig. 3)."""

import argparse
from pathlib import Path

from ..io.tables import table_to_csv
from ..io.writers import atomic_write_text
from ..workflows.segmentation import SegmentError

__all__ = ["add_evaluate_parser", "cmd_evaluate"]


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``evaluate``."""
    ev = sub.add_parser("evaluate", help="F1 per frame of a segment output against a truth mask")
    ev.add_argument("folder", type=Path, metavar="DIR", help="output folder of 'segment'")
    ev.add_argument("--truth", type=Path, required=True, metavar="MASK.tif",
                    help="truth mask: one (y, x) image or one per frame")
    ev.add_argument("--overwrite", action="store_true", help="replace DIR/f1_vs_dose.csv")
    ev.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """F1 of every frame of a segment output against a truth mask → f1_vs_dose.csv."""
    import numpy as np

    from ..analysis.area_vs_dose import f1_per_frame
    from ..analysis.metrics import truth_mask
    from ..io.readers import read_series

    masks_path = args.folder / "masks.tif"
    if not masks_path.is_file():
        raise SegmentError(f"{args.folder} holds no masks.tif; run 'napari-lowdose segment' "
                           "first")
    target = args.folder / "f1_vs_dose.csv"
    try:  # the truth first: a wrong file is said so, whatever the folder holds
        truth = truth_mask(read_series(args.truth).data, f"--truth {args.truth.name}")
    except ValueError as err:
        raise SegmentError(str(err)) from None
    if target.exists() and not args.overwrite:
        raise SegmentError(f"{target} exists; pass --overwrite to replace it")
    masks_series = read_series(masks_path)
    masks = np.asarray(masks_series.data)
    if masks.ndim == 2:
        masks = masks[None]
    if truth.shape[-2:] != masks.shape[-2:]:
        raise SegmentError(f"the truth mask is {truth.shape[-2]}×{truth.shape[-1]} px but the "
                           f"masks are {masks.shape[-2]}×{masks.shape[-1]} px")
    if truth.ndim == 3 and truth.shape[0] == 1:
        truth = truth[0]
    if truth.ndim == 3 and truth.shape[0] != masks.shape[0]:
        raise SegmentError(f"the truth has {truth.shape[0]} frames but the masks have "
                           f"{masks.shape[0]}")
    f1 = f1_per_frame(masks, truth)
    dose = masks_series.frame_dose
    doses = (dose.dose_e_per_A2 if dose is not None
             else np.full(masks.shape[0], np.nan))
    atomic_write_text(target, table_to_csv({"frame": _series_frames(args.folder, masks.shape[0]),
                                            "dose_e_per_A2": doses, "f1": f1}))
    print(f"F1 {np.nanmin(f1):.3f}–{np.nanmax(f1):.3f} over {len(f1)} frames; wrote {target}")
    return 0


def _series_frames(folder: Path, n: int):
    """The series frame numbers of the ``n`` masks (``segment --frames`` records them in
    summary.json); 0…n-1 when not recorded."""
    import json

    import numpy as np

    try:
        frames = json.loads((folder / "summary.json").read_text(encoding="utf-8"))["run"]["frames"]
    except (OSError, ValueError, KeyError, TypeError):
        return np.arange(n)
    return np.asarray(frames) if isinstance(frames, list) and len(frames) == n else np.arange(n)
