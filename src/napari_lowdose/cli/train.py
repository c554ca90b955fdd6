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

__all__ = ["add_calibrate_parser", "add_models_parser", "add_train_parser", "cmd_calibrate",
           "cmd_models", "cmd_train"]


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
                       help="checkpoint file (.safetensors; MODEL.json and MODEL.state.pt "
                            "are written beside it)")
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
                       help="start afresh instead of resuming from MODEL.state.pt")
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
    from ..train.segmentation import train_segmentation

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
        calibrated = ("" if result.calibrated_threshold is None else
                      f" ({result.calibrated_f1:.4f} at p ≥ {result.calibrated_threshold:.2f})")
        bar.write(f"epoch {result.epoch}: train loss {result.train_loss:.4f}, "
                   f"val loss {result.val_loss:.4f}, val F1 {result.val_f1:.4f}{calibrated}, "
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
        how = " at its calibrated threshold" if settings.select_by == "calibrated" else ""
        print(f"{args.out}: best validation F1{how} {summary.best_f1:.4f} at epoch "
              f"{summary.best_epoch} of {summary.epochs_done} ({summary.device})")
    return 0


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
    from ..train.segmentation import calibrate_threshold

    if args.max_val_images is not None and args.max_val_images < 1:
        raise TrainUsageError("--max-val-images must be at least 1")
    if args.val_crop is not None and args.val_crop < 0:
        raise TrainUsageError("--val-crop must be at least 0")
    if args.out is not None and args.out.suffix.lower() == ".json":
        raise TrainUsageError("--out is the model file (.safetensors), not its .json sidecar")
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
    return 0


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``models`` subcommand."""
    models = sub.add_parser("models", help="list the shipped models, or describe a model file")
    models.add_argument("model", nargs="?", metavar="NAME|PATH",
                        help="a shipped model name or a .safetensors file (default: list all)")
    models.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    models.set_defaults(func=cmd_models)


def _describe(name: str, metadata: dict) -> str:
    config = metadata.get("config", {})
    arch = metadata.get("arch", "?")
    validation = metadata.get("validation") or {}
    if arch == "msdnet":
        shape = (f"MSD-net depth {config.get('depth')}, width {config.get('width')}, "
                 f"{config.get('kernel_size')}×{config.get('kernel_size')}")
    elif arch == "denoiser":
        shape = (f"denoiser (residual U-net) {config.get('levels')} levels, "
                 f"{config.get('base_channels')} base channels")
    else:
        shape = (f"U-net {config.get('levels')} levels, {config.get('base_channels')} base "
                 "channels")
    f1, psnr = validation.get("f1"), validation.get("psnr_db")
    if f1 is not None:
        score = f"validation F1 {f1:.3f} (p ≥ {validation.get('threshold')})"
        if validation.get("calibrated_threshold") is not None:
            score += (f", {validation['calibrated_f1']:.3f} at its calibrated threshold "
                      f"{validation['calibrated_threshold']:.2f}")
    elif psnr is not None:
        score = (f"validation PSNR {psnr:.2f} dB (input {validation.get('input_psnr_db', 0):.2f}"
                 " dB)")
    else:
        score = "no validation record"
    recipe = (metadata.get("dataset") or {}).get("card", {}).get("recipe", {})
    data = ""
    trained = (metadata.get("source") or {}).get("trained_e_per_px_range")
    if arch == "denoiser" and trained:
        data = (f"; trained on {trained[0]:g}–{trained[1]:g} e⁻/px"
                + (f" ({recipe.get('n_structures')} simulated structures, "
                   f"{recipe.get('noise_model', {}).get('name')})" if recipe else ""))
    elif recipe:
        data = (f"; trained on {recipe.get('n_structures')} structures × "
                f"{recipe.get('image_epochs')} images, dose {recipe.get('dose_range_e_per_A2')}"
                f" e⁻/Å², {recipe.get('noise_model', {}).get('name')}")
    init = ((metadata.get("training") or {}).get("settings") or {}).get("init_from")
    tuned = f"; fine-tuned from {Path(str(init)).name}" if init else ""
    return f"{name}: {shape}; {score}{data}{tuned}"


def cmd_models(args: argparse.Namespace) -> int:
    """Print the shipped models, or one model's metadata."""
    import json

    from ..models.checkpoint import read_checkpoint_metadata
    from ..models.registry import (
        SHIPPED_DENOISERS,
        SHIPPED_MODELS,
        available_denoisers,
        available_models,
        resolve_denoiser,
        resolve_model,
    )

    if args.model is None:
        names = available_models()
        denoisers = available_denoisers()
        if not names and not denoisers:
            expected = ", ".join([*SHIPPED_MODELS, *SHIPPED_DENOISERS])
            print(f"no shipped models are installed (expected: {expected})")
            return 0
        for name in names:
            print(_describe(name, read_checkpoint_metadata(resolve_model(name))))
        for name in denoisers:
            print(_describe(name, read_checkpoint_metadata(resolve_denoiser(name))))
        return 0
    if str(args.model) in SHIPPED_DENOISERS:
        metadata = read_checkpoint_metadata(resolve_denoiser(args.model))
    else:
        metadata = read_checkpoint_metadata(resolve_model(args.model))
    if args.json:
        print(json.dumps(metadata, indent=2))
    else:
        print(_describe(str(args.model), metadata))
    return 0
