"""``napari-lowdose train-denoiser`` (Katsuno et al. 2021).

Trains a :class:`~napari_lowdose.models.denoiser.DenoiserUNet` from real short/long
exposure pairs, from the exit waves of a simulated dataset, or self-supervised from one
dose series (Noise2Noise); see :mod:`napari_lowdose.train.denoiser`. The defaults are
:data:`napari_lowdose.workflows.denoiser_training.DENOISER_TRAINING_DEFAULTS`, which the
Train-denoiser dock reads too.
"""

import argparse
import shlex
import sys
from pathlib import Path

from ..models.denoising import TRAINED_ON_FILES_KEY
from ..workflows.denoiser_training import DENOISER_TRAINING_DEFAULTS as defaults
from ..workflows.denoiser_training import (
    phantom_datasets,
    simulated_datasets,
    validation_crop_px,
)
from ._common import (
    add_dose_options,
    open_series,
    progress_bar,
    series_expected_e_per_px,
    series_gain,
)
from .denoise import DenoiseError

__all__ = ["add_train_denoiser_parser", "cmd_train_denoiser"]


def _pair_of_floats(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must look like LOW,HIGH") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"{text!r} must satisfy 0 < LOW <= HIGH")
    return low, high


def add_train_denoiser_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``train-denoiser``."""
    from ..train.denoise_simulated import DEFAULT_E_PER_PX_RANGE

    train = sub.add_parser(
        "train-denoiser",
        help="train a low-dose denoiser (real pairs, simulated data or a series)",
        description="Residual U-net denoiser after Katsuno et al. (2021): L1 loss, Adam "
                    "lr 1e-4, best-PSNR checkpoint. Sources: 'pairs' (short and long "
                    "exposures of the same field), 'simulated' (exit waves of a dataset made "
                    "by 'napari-lowdose simulate', noise-free target) or 'series' "
                    "(Noise2Noise on one dose series), 'own' (fine-tune the shipped "
                    "denoiser on your own field: a dose series or two or more independent "
                    "exposures of it, Noise2Noise, validated on a held-out strip with the "
                    "unbiased-MSE quality readout) or 'phantoms' (aggregates, supports and "
                    "lattice patches drawn on the fly, with wide detector and scintillator "
                    "excess noise; mixed with a dataset's exit waves when --data is given). "
                    "Rerun the same command to resume.",
    )
    train.add_argument("--source", choices=["pairs", "simulated", "series", "own", "phantoms"],
                       required=True)
    train.add_argument("--out", type=Path, required=True, metavar="MODEL",
                       help="checkpoint file (.safetensors added if no ending; MODEL.json and "
                            "MODEL.safetensors.state.pt are written beside it)")
    pairs = train.add_argument_group("--source pairs")
    pairs.add_argument("--short", type=Path, metavar="SERIES",
                       help="short exposures (the dose options below apply to this file)")
    pairs.add_argument("--long", type=Path, metavar="SERIES",
                       help="long exposures of the same field: one per short exposure, or one")
    pairs.add_argument("--crops-per-pair", type=int, metavar="N",
                       help="training crops per pair and epoch (default 16 pairs, 4 series)")
    sim = train.add_argument_group("--source simulated")
    sim.add_argument("--data", type=Path, metavar="DATASET",
                     help="dataset folder made by 'napari-lowdose simulate' (only its cached "
                          "exit waves and detector model are used)")
    sim.add_argument("--dose-range", type=_pair_of_floats, metavar="LO,HI",
                     help="frame dose drawn log-uniformly in LO…HI e⁻/Å² (default: "
                          f"{DEFAULT_E_PER_PX_RANGE[0]:g}…{DEFAULT_E_PER_PX_RANGE[1]:g} e⁻/px)")
    sim.add_argument("--e-per-px-range", type=_pair_of_floats, metavar="LO,HI",
                     help="frame dose drawn log-uniformly in LO…HI electrons per pixel")
    sim.add_argument("--images-per-wave", type=int, default=defaults.images_per_wave,
                     metavar="N",
                     help="optics draws per exit wave and epoch (default %(default)s)")
    sim.add_argument("--max-waves", type=int, metavar="N",
                     help="use only the first N training exit waves")
    sim.add_argument("--clean-cache", type=int, default=defaults.clean_cache, metavar="N",
                     help="noise-free images kept in memory (default %(default)s; one per "
                          "exit wave and optics draw is enough to compute each only once)")
    phantoms = train.add_argument_group("--source phantoms")
    phantoms.add_argument("--phantoms", type=int, default=defaults.phantoms, metavar="N",
                          help="phantom items per epoch (default %(default)s); --data, "
                               "--e-per-px-range, --images-per-wave, --max-waves and "
                               "--clean-cache apply too")
    series = train.add_argument_group("--source series")
    series.add_argument("--series", type=Path, metavar="SERIES",
                        help="dose series (frames of the same field)")
    series.add_argument("--max-frame-gap", type=int, default=defaults.max_frame_gap,
                        metavar="N",
                        help="pair frames at most N apart (default %(default)s)")
    own = train.add_argument_group("--source own")
    own.add_argument("--frames", type=Path, nargs="+", metavar="FILE",
                     help="a dose series, or two or more files of the same field (one frame "
                          "or series each, same size)")
    own.add_argument("--phantom-share", type=float, default=defaults.own_phantom_share,
                     metavar="F",
                     help="simulated phantom pairs mixed into each epoch per pair crop of "
                          "the field (keeps one field from over-fitting; 0: the field "
                          "alone; default %(default)s)")
    own.add_argument("--val-fraction", type=float, default=defaults.own_val_fraction,
                     metavar="F",
                     help="share of the field's rows (the bottom ones) held out for "
                          "validation (default %(default)s)")
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--crop", type=int, default=defaults.crop_px, metavar="PX",
                       help="side of the random training crops (default %(default)s)")
    train.add_argument("--val-crop", type=int, metavar="PX",
                       help="side of the central validation crops (default 2 × --crop; "
                            "0 = whole frames)")
    train.add_argument("--max-val-images", type=int, default=defaults.max_val_images,
                       metavar="N",
                       help="validation items (default %(default)s)")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.learning_rate,
                       help="Adam learning rate (default %(default)s)")
    train.add_argument("--loss", choices=["l1", "l2"],
                       help="default l1 (Katsuno et al.); l2 for --source series, where the "
                            "noisy target makes L1 biased at low dose")
    train.add_argument("--steps-per-epoch", type=int, metavar="N",
                       help="cap the steps of an epoch (default: one pass over the items)")
    train.add_argument("--device", default="auto",
                       help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--base-channels", type=int, help="channels of the first block (32)")
    train.add_argument("--levels", type=int, help="down-sampling steps (3)")
    train.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    train.add_argument("--noise-weighted-loss", action="store_true",
                       help="weight each crop's loss by its shot-noise level, so that "
                            "well-exposed crops count as much as the noisiest")
    train.add_argument("--init", metavar="NAME|PATH",
                       help="start from the weights of a trained denoiser (fine-tuning); its "
                            "network settings are used (--source own: default the shipped "
                            "denoiser; 'none' starts from scratch)")
    train.add_argument("--loader-workers", type=int, default=0, metavar="N",
                       help="DataLoader worker processes (default 0)")
    train.add_argument("--restart", action="store_true",
                       help="start afresh instead of resuming from MODEL.safetensors.state.pt")
    add_dose_options(train)
    train.set_defaults(func=cmd_train_denoiser)


def _check_source_options(args: argparse.Namespace) -> None:
    needed = {"pairs": ("short", "long"), "simulated": ("data",), "series": ("series",),
              "own": ("frames",), "phantoms": ()}
    if args.source == "phantoms":
        for name in ("short", "long", "series", "dose_range", "frames"):
            if getattr(args, name) is not None:
                raise DenoiseError(f"--{name.replace('_', '-')} does not apply to --source "
                                   "phantoms")
        if args.phantoms < 1:
            raise DenoiseError("--phantoms must be at least 1")
    for name in needed[args.source]:
        if getattr(args, name) is None:
            raise DenoiseError(f"--source {args.source} needs --{name}")
    for source, names in needed.items():
        if source != args.source and args.source != "phantoms":
            for name in names:
                if getattr(args, name) is not None:
                    raise DenoiseError(f"--{name} does not apply to --source {args.source}")
    only_simulated = ("dose_range", "e_per_px_range", "max_waves")
    if args.clean_cache < 0:
        raise DenoiseError("--clean-cache must be >= 0")
    if args.source not in ("simulated", "phantoms"):
        for name in only_simulated:
            if getattr(args, name) is not None:
                raise DenoiseError(f"--{name.replace('_', '-')} applies to --source simulated")
    if args.dose_range is not None and args.e_per_px_range is not None:
        raise DenoiseError("give --dose-range or --e-per-px-range, not both")
    for name in ("epochs", "batch_size", "crop", "max_val_images", "images_per_wave",
                 "max_frame_gap"):
        if getattr(args, name) < 1:
            raise DenoiseError(f"--{name.replace('_', '-')} must be at least 1")
    if args.crops_per_pair is not None and args.crops_per_pair < 1:
        raise DenoiseError("--crops-per-pair must be at least 1")
    if args.source == "own" and not 0 < args.val_fraction < 1:
        raise DenoiseError("--val-fraction must lie between 0 and 1")


def _datasets(args: argparse.Namespace, notes: list[str]):
    """Training and validation datasets of the chosen source."""
    from ..train.denoise_measured import pair_datasets, series_datasets

    crop = args.crop
    val_crop = validation_crop_px(crop, args.val_crop)
    seed = args.seed
    if args.source == "simulated":
        return simulated_datasets(
            args.data, crop_px=crop, val_crop_px=val_crop, seed=seed,
            dose_range_e_per_A2=args.dose_range, e_per_px_range=args.e_per_px_range,
            images_per_wave=args.images_per_wave, clean_cache=args.clean_cache,
            max_waves=args.max_waves, notes=notes)
    if args.source == "phantoms":
        return phantom_datasets(
            n_phantoms=args.phantoms, crop_px=crop, val_crop_px=val_crop, seed=seed,
            e_per_px_range=args.e_per_px_range, max_val_images=args.max_val_images,
            data=args.data, images_per_wave=args.images_per_wave,
            clean_cache=args.clean_cache, max_waves=args.max_waves, notes=notes)
    if args.source == "pairs":
        short = open_series(args, args.short, calibrated=True)
        long = open_series(args, args.long, calibrated=False)
        return pair_datasets(short.data, long.data, crop_px=crop, val_crop_px=val_crop,
                             crops_per_pair=args.crops_per_pair, notes=notes,
                             short_e_per_px=series_expected_e_per_px(short)[0],
                             long_e_per_px=series_expected_e_per_px(long)[0],
                             counts_per_electron=series_gain(args, short), seed=seed)
    if args.source == "own":
        return _own_datasets(args, crop, notes)
    opened = open_series(args, args.series, calibrated=True)
    frames = opened.frames
    if frames.shape[0] < 2:
        raise DenoiseError(f"{args.series} has {frames.shape[0]} frame; Noise2Noise needs "
                           "at least 2")
    return series_datasets(frames, crop_px=crop, val_crop_px=val_crop,
                           crops_per_pair=args.crops_per_pair, notes=notes,
                           expected_e_per_px=series_expected_e_per_px(opened)[0],
                           counts_per_electron=series_gain(args, opened),
                           max_frame_gap=args.max_frame_gap, seed=seed)


def _trained_on_files(args: argparse.Namespace) -> list[str]:
    """The files whose frames (or part of them) trained the denoiser, resolved: a quality
    readout judged against them later is not independent (``denoise`` warns)."""
    files = list(args.frames or []) if args.source == "own" else []
    if args.source == "series" and getattr(args, "series", None) is not None:
        files.append(args.series)
    return [str(Path(f).resolve()) for f in files]


def _own_datasets(args: argparse.Namespace, crop: int, notes: list[str]):
    """The user's field: the frames of every ``--frames`` file, stacked; a strip held out."""
    from ..train.denoise_own import field_datasets, stack_exposures

    stacks, doses, gains = [], [], []
    for path in args.frames:
        opened = open_series(args, path, calibrated=True)
        stacks.append(opened.data)
        doses.append(series_expected_e_per_px(opened)[0])
        gains.append(series_gain(args, opened))
    if len({round(g, 6) for g in gains}) > 1:
        raise DenoiseError(f"the --frames files have different gains ({gains} counts/e⁻)")
    stack, e_per_px = stack_exposures(stacks, doses)
    train, val = field_datasets(stack, crop_px=crop, val_fraction=args.val_fraction,
                                crops_per_pair=args.crops_per_pair, expected_e_per_px=e_per_px,
                                counts_per_electron=gains[0], phantom_share=args.phantom_share,
                                max_frame_gap=args.max_frame_gap, seed=args.seed)
    notes.append(f"{stack.shape[0]} exposures of the field; rows {val.box[0]}…{val.box[1] - 1} "
                 "held out for validation")
    return train, val


def cmd_train_denoiser(args: argparse.Namespace) -> int:
    """Train a denoiser with a progress bar and a line per epoch."""
    from ..models.checkpoint import model_output_path
    from ..train.denoiser import DenoiserSettings, readout_line, train_denoiser

    _check_source_options(args)
    args.out = model_output_path(args.out)
    notes: list[str] = []
    train, val = _datasets(args, notes)
    for note in notes:
        print(f"napari-lowdose: note: {note}", file=sys.stderr)
    config = {name: getattr(args, name) for name in ("base_channels", "levels")
              if getattr(args, name) is not None}
    if args.source == "own" and args.init is None:
        from ..models.registry import DEFAULT_DENOISER

        args.init = DEFAULT_DENOISER
    if args.init is not None and args.init.lower() == "none":
        args.init = None
    if args.init is not None:
        from ..models.checkpoint import read_checkpoint_metadata
        from ..models.registry import resolve_denoiser

        init = read_checkpoint_metadata(resolve_denoiser(args.init))
        if init.get("arch") != "denoiser":
            raise DenoiseError(f"--init {args.init} holds a {init.get('arch')}, not a denoiser")
        config = {**init.get("config", {}), **config}
    settings = DenoiserSettings(
        model_config=config, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr,
        loss=args.loss or ("l2" if args.source in ("series", "own") else "l1"),
        device=args.device, mixed_precision=not args.no_amp,
        steps_per_epoch=args.steps_per_epoch, max_val_images=args.max_val_images,
        seed=args.seed, num_workers=args.loader_workers, source=args.source,
        noise_weighted=args.noise_weighted_loss,
        init_from=None if args.init is None else str(args.init))
    bar = progress_bar(None, unit="step", desc="train-denoiser")

    def progress(step: int, total: int) -> None:
        bar.total = total
        bar.update(step - bar.n)

    def on_epoch(result) -> None:
        marker = " (best, saved)" if result.best else ""
        bar.write(f"epoch {result.epoch}: train loss {result.train_loss:.4f}, val PSNR "
                   f"{result.val_psnr_db:.2f} dB (input {result.input_psnr_db:.2f} dB), "
                   f"SSIM {result.val_ssim:.3f} (input {result.input_ssim:.3f}), "
                   f"{result.seconds:.1f} s{marker}", file=sys.stdout)
        if result.readout:
            bar.write(f"  {result.readout_line()}", file=sys.stdout)

    def on_start(quality) -> None:
        if quality.get("readout"):
            bar.write(f"start ({settings.init_from}): {readout_line(quality['readout'])}",
                      file=sys.stdout)

    metadata = {"command": shlex.join(["napari-lowdose", *sys.argv[1:]]) if sys.argv else None,
                "notes": notes, TRAINED_ON_FILES_KEY: _trained_on_files(args)}
    try:
        summary = train_denoiser(train, val, args.out, settings, resume=not args.restart,
                                 progress=progress, on_epoch=on_epoch, metadata=metadata,
                                 on_start=on_start)
    finally:
        bar.close()
    if summary.best_epoch == 0:
        print(f"no epoch finished; nothing written to {args.out}", file=sys.stderr)
        return 1
    print(f"{args.out}: best validation PSNR {summary.best_psnr_db:.2f} dB at epoch "
          f"{summary.best_epoch} of {summary.epochs_done} ({summary.device})")
    return 0


# ---------------------------------------------------------------------------
# denoise
# ---------------------------------------------------------------------------


