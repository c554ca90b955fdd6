"""``napari-lowdose train``: a segmentation network from a simulated dataset (Larsen Sec. 2).

Runs as is on one device, or under ``torchrun --nproc_per_node N`` with
DistributedDataParallel (see :mod:`napari_lowdose.train.segmentation`).
"""

import argparse
import os
import sys
from pathlib import Path

from ..errors import LowdoseError
from ._common import progress_bar

__all__ = ["TrainUsageError", "add_train_parser", "cmd_train", "settings_from_args"]


class TrainUsageError(LowdoseError):
    """A train option has a bad value."""


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``train`` subcommand."""
    from ..train.segmentation import TrainSettings as DEFAULTS

    train = sub.add_parser(
        "train",
        help="train an MSD-net or U-net on a simulated dataset",
        description="Binary cross-entropy, Adam (AMSGrad) lr 1e-3, validation F1 after every "
                    "epoch, best-F1 checkpoint (Larsen et al. 2023). Rerun the same command to "
                    "resume; under torchrun it trains with DistributedDataParallel.",
    )
    train.add_argument("--data", type=Path, required=True, metavar="DATASET",
                       help="dataset folder made by 'napari-lowdose simulate'")
    train.add_argument("--arch", choices=["msdnet", "unet"], default=None,
                       help="architecture (default msdnet, or that of --init)")
    train.add_argument("--init", metavar="NAME|PATH",
                       help="start from the weights of a trained model (fine-tuning, e.g. "
                            "the shipped one on data matched to your detector); its "
                            "architecture settings are used")
    train.add_argument("--out", type=Path, required=True, metavar="MODEL",
                       help="checkpoint file (.safetensors added if no ending; MODEL.json and "
                            "MODEL.safetensors.state.pt are written beside it)")
    train.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    train.add_argument("--crop", type=int, default=DEFAULTS.crop_px, metavar="PX",
                       help="side of the random training crops (default %(default)s; "
                            "0 = whole frames)")
    train.add_argument("--device", default=DEFAULTS.device,
                       help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    train.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    train.add_argument("--lr", type=float, default=DEFAULTS.learning_rate,
                       help="learning rate (default %(default)s)")
    train.add_argument("--steps-per-epoch", type=int, metavar="N",
                       help="cap the steps of an epoch (default: one pass over the images)")
    train.add_argument("--val-crop", type=int, metavar="PX",
                       help="side of the central validation crops (default: --crop; "
                            "0 = whole frames)")
    train.add_argument("--max-val-images", type=int, metavar="N",
                       help="validate on the first N validation images only")
    train.add_argument("--threshold", type=float, default=DEFAULTS.threshold,
                       help="probability threshold of the validation masks (default "
                            "%(default)s)")
    train.add_argument("--select-by", choices=["threshold", "calibrated"],
                       default=DEFAULTS.select_by,
                       help="keep the checkpoint of best F1 at --threshold (default), or at "
                            "each epoch's own best threshold (then segment --threshold model)")
    train.add_argument("--seed", type=int, default=DEFAULTS.seed)
    train.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    train.add_argument("--loader-workers", type=int, default=0, metavar="N",
                       help="DataLoader worker processes (default 0)")
    train.add_argument("--restart", action="store_true",
                       help="start afresh instead of resuming from MODEL.safetensors.state.pt")
    msd = train.add_argument_group("MSD-net")
    msd.add_argument("--depth", type=int, help="layers (default 50)")
    msd.add_argument("--width", type=int, help="channels per layer (default 1)")
    msd.add_argument("--kernel-size", type=int, help="kernel size (default 9; U-net 5)")
    msd.add_argument("--dilation-seed", type=int, help="seed of the dilations (default 0)")
    unet = train.add_argument_group("U-net")
    unet.add_argument("--base-channels", type=int, help="channels of the first block (16)")
    unet.add_argument("--levels", type=int, help="max-pool steps (default 3)")
    train.set_defaults(func=cmd_train)


def settings_from_args(args: argparse.Namespace):
    """The :class:`~.train.segmentation.TrainSettings` that the options describe."""
    from ..train.segmentation import TrainSettings

    if args.init is not None:
        _architecture_of_init(args)
    elif args.arch is None:
        args.arch = "msdnet"
    names = {"msdnet": ("depth", "width", "kernel_size", "dilation_seed"),
             "unet": ("base_channels", "levels", "kernel_size")}[args.arch]
    model_config = {name: getattr(args, name) for name in names
                    if getattr(args, name) is not None}
    if args.init is not None:
        # All of the model's settings (e.g. its dilations), then what the options change.
        from ..workflows.training import init_config

        model_config = {**init_config(args.init), **model_config}
    other = [name for name in ("depth", "width", "dilation_seed", "base_channels", "levels")
             if name not in names and getattr(args, name) is not None]
    if other:
        raise TrainUsageError(f"--{other[0].replace('_', '-')} does not apply to {args.arch}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise TrainUsageError(f"--{name.replace('_', '-')} must be at least 1")
    return TrainSettings(
        arch=args.arch,
        model_config=model_config,
        epochs=args.epochs,
        crop_px=args.crop or None,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        device=args.device,
        mixed_precision=not args.no_amp,
        val_crop_px=None if args.val_crop is None else (args.val_crop or None),
        max_val_images=args.max_val_images,
        steps_per_epoch=args.steps_per_epoch,
        threshold=args.threshold,
        select_by=args.select_by,
        seed=args.seed,
        num_workers=args.loader_workers,
        init_from=None if args.init is None else str(args.init),
    )


def _architecture_of_init(args: argparse.Namespace) -> None:
    """Take ``--arch`` and the architecture options from the ``--init`` model."""
    from ..models.checkpoint import read_checkpoint_metadata
    from ..models.registry import resolve_model

    metadata = read_checkpoint_metadata(resolve_model(args.init))
    arch = metadata.get("arch")
    if args.arch is not None and args.arch != arch:
        raise TrainUsageError(f"--init {args.init} is a {arch}, not a {args.arch}")
    args.arch = arch
    config = metadata.get("config") or {}
    for name in ("depth", "width", "kernel_size", "dilation_seed", "base_channels", "levels"):
        if name in config and getattr(args, name, None) is None:
            setattr(args, name, config[name])


def cmd_train(args: argparse.Namespace) -> int:
    """Train with a progress bar (process 0) and a line per epoch."""
    from ..models.checkpoint import model_output_path
    from ..train.segmentation import train_segmentation

    args.out = model_output_path(args.out)
    if args.val_crop == 0 and args.crop == 0:
        args.val_crop = None
    settings = settings_from_args(args)
    main_process = int(os.environ.get("RANK", "0")) == 0
    bar = progress_bar(None, unit="step", desc="train", shown=main_process)

    def progress(step: int, total: int) -> None:
        bar.total = total
        bar.update(step - bar.n)

    def on_epoch(result) -> None:
        marker = " (best, saved)" if result.best else ""
        if not result.f1_defined:
            f1 = "undefined (no particle pixels)"
        elif result.calibrated_threshold is None:
            f1 = f"{result.val_f1:.4f}"
        else:
            f1 = (f"{result.val_f1:.4f} ({result.calibrated_f1:.4f} at p ≥ "
                  f"{result.calibrated_threshold:.2f})")
        bar.write(f"epoch {result.epoch}: train loss {result.train_loss:.4f}, "
                   f"val loss {result.val_loss:.4f}, val F1 {f1}, "
                   f"{result.seconds:.1f} s{marker}", file=sys.stdout)

    try:
        summary = train_segmentation(args.data, args.out, settings, resume=not args.restart,
                                     progress=progress, on_epoch=on_epoch)
    finally:
        bar.close()
    if main_process:
        if summary.best_epoch == 0:
            print(f"no epoch finished; nothing written to {args.out}", file=sys.stderr)
            return 1
        if not summary.f1_defined:
            print(f"warning: {summary.warning}", file=sys.stderr)
            print(f"{args.out}: lowest validation loss at epoch {summary.best_epoch} of "
                  f"{summary.epochs_done} ({summary.device})")
            return 0
        how = " at its calibrated threshold" if settings.select_by == "calibrated" else ""
        print(f"{args.out}: best validation F1{how} {summary.best_f1:.4f} at epoch "
              f"{summary.best_epoch} of {summary.epochs_done} ({summary.device})")
    return 0
