"""``napari-lowdose train-denoiser`` and ``denoise`` (Katsuno et al. 2021).

``train-denoiser`` trains a :class:`~napari_lowdose.models.denoiser.DenoiserUNet`
from real short/long exposure pairs, from the exit waves of a simulated dataset,
or self-supervised from one dose series (Noise2Noise); see
:mod:`napari_lowdose.train.denoiser`. ``denoise`` streams a series through a
denoiser and writes ``denoised.tif`` (float32, the input's units, pixel size and
per-frame dose) and ``denoise.json`` (the run record) together
(:func:`napari_lowdose.io.outputs.write_output_folder`): an error leaves no
partial folder, and an existing folder needs ``--overwrite``.
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import LowdoseError
from ..workflows.policies import GainError, detector_gain, expected_e_per_px
from ._common import add_dose_options, open_calibrated, progress_bar

__all__ = ["DENOISE_FILES", "add_denoise_parsers", "cmd_denoise", "cmd_train_denoiser",
           "parse_frames"]

DENOISE_FILES = ("denoised.tif", "denoise.json")


class DenoiseError(LowdoseError):
    """Denoising or denoiser training cannot run as asked."""


def parse_frames(text: str, n_frames: int) -> range:
    """Frames ``"A:B"`` (end exclusive, either side may be empty, negatives from the end).

    Raises
    ------
    DenoiseError
        Not of the form ``A:B``, or an empty selection.
    """
    try:
        start_text, stop_text = text.split(":")
        start = int(start_text) if start_text.strip() else None
        stop = int(stop_text) if stop_text.strip() else None
    except ValueError:
        raise DenoiseError(
            f"--frames {text!r} must look like A:B (e.g. 0:100, 10:, :-1)"
        ) from None
    frames = range(n_frames)[slice(start, stop)]
    if len(frames) == 0:
        raise DenoiseError(f"--frames {text} selects no frame of the {n_frames} in the series")
    return frames


def _pair_of_floats(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must look like LOW,HIGH") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"{text!r} must satisfy 0 < LOW <= HIGH")
    return low, high


def add_denoise_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``train-denoiser`` and ``denoise``."""
    from ..models.registry import DEFAULT_DENOISER
    from ..train.denoise_simulated import DEFAULT_E_PER_PX_RANGE
    from ..workflows.denoiser_training import DENOISER_TRAINING_DEFAULTS as defaults

    train = sub.add_parser(
        "train-denoiser",
        help="train a low-dose denoiser (real pairs, simulated data or a series)",
        description="Residual U-net denoiser after Katsuno et al. (2021): L1 loss, Adam "
                    "lr 1e-4, best-PSNR checkpoint. Sources: 'pairs' (short and long "
                    "exposures of the same field), 'simulated' (exit waves of a dataset made "
                    "by 'napari-lowdose simulate', noise-free target) or 'series' "
                    "(Noise2Noise on one dose series). Rerun the same command to resume.",
    )
    train.add_argument("--source", choices=["pairs", "simulated", "series"], required=True)
    train.add_argument("--out", type=Path, required=True, metavar="MODEL",
                       help="checkpoint file (.safetensors; MODEL.json and MODEL.state.pt "
                            "are written beside it)")
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
    series = train.add_argument_group("--source series")
    series.add_argument("--series", type=Path, metavar="SERIES",
                        help="dose series (frames of the same field)")
    series.add_argument("--max-frame-gap", type=int, default=defaults.max_frame_gap,
                        metavar="N",
                        help="pair frames at most N apart (default %(default)s)")
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
                            "network settings are used")
    train.add_argument("--loader-workers", type=int, default=0, metavar="N",
                       help="DataLoader worker processes (default 0)")
    train.add_argument("--restart", action="store_true",
                       help="start afresh instead of resuming from MODEL.state.pt")
    add_dose_options(train)
    train.set_defaults(func=cmd_train_denoiser)

    den = sub.add_parser("denoise", help="denoise a series with a trained denoiser")
    den.add_argument("series", type=Path, metavar="SERIES")
    den.add_argument("--model", default=DEFAULT_DENOISER, metavar="NAME|PATH",
                     help=f"shipped denoiser or .safetensors file (default {DEFAULT_DENOISER})")
    den.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, mps")
    den.add_argument("--frames", metavar="A:B", help="denoise frames A…B-1 only (default all)")
    den.add_argument("--batch-size", type=int, default=1, help="frames per batch (default 1)")
    den.add_argument("--tile", type=int, metavar="PX",
                     help="denoise in overlapping tiles of PX (frames too large for memory)")
    den.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="writes " + " and ".join(DENOISE_FILES))
    den.add_argument("--overwrite", action="store_true", help="replace files in an existing DIR")
    add_dose_options(den)
    den.set_defaults(func=cmd_denoise)


# ---------------------------------------------------------------------------
# Shared: series → frames, expected electrons per pixel, gain
# ---------------------------------------------------------------------------


def _gain(args: argparse.Namespace, series) -> float:
    try:
        return detector_gain(args.counts_per_electron, series.dose_hints.counts_per_electron)
    except GainError:
        raise DenoiseError("--counts-per-electron must be positive") from None


def _expected_e_per_px(series) -> tuple[Any, str]:
    """Per-frame expected electrons per pixel (or None) and how it was found."""
    dose = series.frame_dose
    if dose is not None and series.pixel_size_A is None:
        print("napari-lowdose: warning: the series has a dose but no pixel size; normalising "
              "by the frame means (give --pixel-size-A)", file=sys.stderr)
    return expected_e_per_px(None if dose is None else dose.dose_e_per_A2,
                             series.pixel_size_A,
                             dose_source="" if dose is None else dose.source)


def _open(args: argparse.Namespace, path: Path, *, calibrated: bool):
    """A series opened with (``calibrated``) or without the command's dose options."""
    from ..io.readers import read_series

    if not calibrated:
        return read_series(path)
    return open_calibrated(argparse.Namespace(**{**vars(args), "series": path}))


# ---------------------------------------------------------------------------
# train-denoiser
# ---------------------------------------------------------------------------


def _check_source_options(args: argparse.Namespace) -> None:
    needed = {"pairs": ("short", "long"), "simulated": ("data",), "series": ("series",)}
    for name in needed[args.source]:
        if getattr(args, name) is None:
            raise DenoiseError(f"--source {args.source} needs --{name}")
    for source, names in needed.items():
        if source != args.source:
            for name in names:
                if getattr(args, name) is not None:
                    raise DenoiseError(f"--{name} does not apply to --source {args.source}")
    only_simulated = ("dose_range", "e_per_px_range", "max_waves")
    if args.clean_cache < 0:
        raise DenoiseError("--clean-cache must be >= 0")
    if args.source != "simulated":
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


def _datasets(args: argparse.Namespace, notes: list[str]):
    """Training and validation datasets of the chosen source."""
    from ..train.denoise_measured import pair_datasets, series_datasets
    from ..workflows.denoiser_training import simulated_datasets, validation_crop_px

    crop = args.crop
    val_crop = validation_crop_px(crop, args.val_crop)
    seed = args.seed
    if args.source == "simulated":
        return simulated_datasets(
            args.data, crop_px=crop, val_crop_px=val_crop, seed=seed,
            dose_range_e_per_A2=args.dose_range, e_per_px_range=args.e_per_px_range,
            images_per_wave=args.images_per_wave, clean_cache=args.clean_cache,
            max_waves=args.max_waves, notes=notes)
    if args.source == "pairs":
        short = _open(args, args.short, calibrated=True)
        long = _open(args, args.long, calibrated=False)
        return pair_datasets(short.data, long.data, crop_px=crop, val_crop_px=val_crop,
                             crops_per_pair=args.crops_per_pair, notes=notes,
                             short_e_per_px=_expected_e_per_px(short)[0],
                             long_e_per_px=_expected_e_per_px(long)[0],
                             counts_per_electron=_gain(args, short), seed=seed)
    opened = _open(args, args.series, calibrated=True)
    frames = opened.data if opened.data.ndim == 3 else opened.data[None]
    if frames.shape[0] < 2:
        raise DenoiseError(f"{args.series} has {frames.shape[0]} frame; Noise2Noise needs "
                           "at least 2")
    return series_datasets(frames, crop_px=crop, val_crop_px=val_crop,
                           crops_per_pair=args.crops_per_pair, notes=notes,
                           expected_e_per_px=_expected_e_per_px(opened)[0],
                           counts_per_electron=_gain(args, opened),
                           max_frame_gap=args.max_frame_gap, seed=seed)


def cmd_train_denoiser(args: argparse.Namespace) -> int:
    """Train a denoiser with a progress bar and a line per epoch."""
    from ..train.denoiser import DenoiserSettings, train_denoiser

    _check_source_options(args)
    if args.out.suffix.lower() == ".json":
        raise DenoiseError("--out must be the model file (.safetensors), not its .json sidecar")
    notes: list[str] = []
    train, val = _datasets(args, notes)
    for note in notes:
        print(f"napari-lowdose: note: {note}", file=sys.stderr)
    config = {name: getattr(args, name) for name in ("base_channels", "levels")
              if getattr(args, name) is not None}
    if args.init is not None:
        from ..models.checkpoint import read_checkpoint_metadata
        from ..models.registry import resolve_denoiser

        init = read_checkpoint_metadata(resolve_denoiser(args.init))
        if init.get("arch") != "denoiser":
            raise DenoiseError(f"--init {args.init} holds a {init.get('arch')}, not a denoiser")
        config = {**init.get("config", {}), **config}
    settings = DenoiserSettings(
        model_config=config, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, loss=args.loss or ("l2" if args.source == "series" else "l1"),
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

    metadata = {"command": shlex.join(["napari-lowdose", *sys.argv[1:]]) if sys.argv else None,
                "notes": notes}
    try:
        summary = train_denoiser(train, val, args.out, settings, resume=not args.restart,
                                 progress=progress, on_epoch=on_epoch, metadata=metadata)
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


def cmd_denoise(args: argparse.Namespace) -> int:
    """Denoise a series; write denoised.tif and denoise.json together."""
    import numpy as np

    from ..device import describe_device, select_device
    from ..io.outputs import check_output_folder, result_array, write_output_folder
    from ..io.writers import write_series_tiff
    from ..models.denoising import denoise_frames, outside_training_range
    from ..models.registry import load_denoiser, resolve_denoiser

    if args.batch_size < 1:
        raise DenoiseError("--batch-size must be at least 1")
    if args.tile is not None and args.tile < 16:
        raise DenoiseError("--tile must be at least 16 px")
    check_output_folder(args.out, overwrite=args.overwrite)
    device = select_device(args.device)
    model_path = resolve_denoiser(args.model)
    model, metadata = load_denoiser(model_path, device="cpu")
    series = _open(args, args.series, calibrated=True)
    single = series.data.ndim == 2
    n = 1 if single else int(series.data.shape[0])
    selected = range(n) if args.frames is None else parse_frames(args.frames, n)
    if single and args.frames is not None and len(selected) != 1:
        raise DenoiseError("the input is a single image; --frames can only select 0:1")
    e_per_px, how = _expected_e_per_px(series)
    gain = _gain(args, series)
    frames = series.data if not single else series.data[None]
    outside = outside_training_range(
        metadata, None if e_per_px is None else [e_per_px[i] for i in selected])
    if outside:
        print(f"napari-lowdose: warning: {outside}", file=sys.stderr)
    shape = (len(selected), *frames.shape[-2:])
    # A large series keeps its results in a scratch file, not in memory.
    with result_array(shape, np.float32, args.out) as denoised:
        bar = progress_bar(len(selected), unit="frame", desc="denoise")
        started = time.perf_counter()
        try:
            stream = denoise_frames(model, frames, expected_e_per_px=e_per_px,
                                    counts_per_electron=gain, device=device,
                                    batch_size=args.batch_size, frame_indices=list(selected),
                                    tile_px=args.tile)
            position = {index: k for k, index in enumerate(selected)}
            for index, frame in stream:
                denoised[position[index]] = frame
                bar.update(1)
        except ValueError as error:
            raise DenoiseError(str(error)) from error
        finally:
            bar.close()
        seconds = time.perf_counter() - started
        doses = (None if series.frame_dose is None
                 else series.frame_dose.dose_e_per_A2[list(selected)])
        record = _run_record(args, series, model_path, metadata, describe_device(device), selected,
                             doses, e_per_px, how, gain, seconds)
        record["warnings"] = [outside] if outside else []
        pixel = None if series.pixel_size_A is None else float(np.mean(series.pixel_size_A))
        out_data = denoised[0] if single else denoised
        provenance = {"denoised": {"model": str(args.model), "input": str(series.path),
                                   "frames": [selected.start, selected.stop]}}
        write_output_folder(args.out, {
            "denoised.tif": lambda p: write_series_tiff(p, out_data, pixel, dose_e_per_A2=doses,
                                                        extra_metadata=provenance),
            "denoise.json": lambda p: p.write_text(json.dumps(record, indent=2, default=str)),
        }, overwrite=args.overwrite)
    rate = len(selected) / seconds if seconds > 0 else float("inf")
    print(f"{len(selected)} frame(s) denoised in {seconds:.2f} s ({rate:.1f} frames/s, "
          f"{describe_device(device)}); wrote {', '.join(DENOISE_FILES)} to {args.out}")
    return 0


def _run_record(args: argparse.Namespace, series, model_path: Path, metadata: dict[str, Any],
                device: str, selected: range, doses, e_per_px, how: str, gain: float,
                seconds: float) -> dict[str, Any]:
    """What a denoising run was made with: model, device, versions, input, dose, frames."""
    from ..provenance import package_versions

    dose = series.frame_dose
    indices = list(selected)
    return {
        "input": str(Path(series.path).resolve()),
        "format": series.format,
        "shape": list(series.data.shape),
        "pixel_size_A": None if series.pixel_size_A is None else list(series.pixel_size_A),
        "pixel_size_source": series.pixel_size_source,
        "frames": {"start": selected.start, "stop": selected.stop, "count": len(indices)},
        "dose": None if dose is None else {
            "source": dose.source, "detail": dose.detail,
            "dose_e_per_A2": [float(v) for v in doses]},
        "normalisation": {
            "expected_e_per_px": (None if e_per_px is None
                                  else [float(e_per_px[i]) for i in indices]),
            "from": how,
            "counts_per_electron": gain,
        },
        "model": {"name": str(args.model), "file": str(model_path.resolve()),
                  "metadata": metadata},
        "device": device,
        "batch_size": args.batch_size,
        "tile_px": args.tile,
        "seconds": seconds,
        "versions": package_versions(),
    }
