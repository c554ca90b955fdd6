"""``napari-lowdose models``: list the shipped models, or describe a model file."""

import argparse
from pathlib import Path

__all__ = ["add_models_parser", "cmd_models"]


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``models`` subcommand."""
    models = sub.add_parser("models", help="list the shipped models, or describe a model file")
    models.add_argument("model", nargs="?", metavar="NAME|PATH",
                        help="a shipped model name or a .safetensors file (default: list all)")
    models.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    models.set_defaults(func=cmd_models)


def _describe(name: str, metadata: dict) -> str:
    from ..models.registry import denoiser_score_text

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
        score = denoiser_score_text(metadata)
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
        shipped = {**{name: read_checkpoint_metadata(resolve_model(name)) for name in names},
                   **{name: read_checkpoint_metadata(resolve_denoiser(name))
                      for name in denoisers}}
        if args.json:  # every shipped model's full record, by name
            print(json.dumps(shipped, indent=2))
            return 0
        for name, metadata in shipped.items():
            print(_describe(name, metadata))
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
