"""Models shipped inside the package, found by name (no download, ever).

The shipped weights are produced by the project's own ``simulate`` and
``train`` commands; ``docs/models.md`` records the exact commands, the
dataset card, the training time and machine, and the F1-against-dose curves.
A model is named on the command line and in the widgets either by its shipped
name (``msdnet-au-ceo2``) or by the path of a ``.safetensors`` checkpoint.

Segmentation models (MSD-net, U-net) and denoisers (Katsuno et al. 2021) are
listed apart (:data:`SHIPPED_MODELS`, :data:`SHIPPED_DENOISERS`); each loader
refuses a file of the other kind with a one-line :class:`CheckpointError`.
"""

import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (
    SEGMENTATION_ARCHITECTURES,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_metadata,
)

__all__ = [
    "DEFAULT_DENOISER",
    "DEFAULT_MODEL",
    "RECOMMENDED_MATCH_SAMPLING",
    "RECOMMENDED_MODEL",
    "RECOMMENDED_THRESHOLD",
    "SHIPPED_DENOISERS",
    "SHIPPED_MODELS",
    "available_denoisers",
    "available_models",
    "denoiser_score_text",
    "load_denoiser",
    "load_model",
    "resolve_denoiser",
    "resolve_model",
]

PRETRAINED_DIR = Path(__file__).with_name("pretrained")
#: Shipped name → file in ``models/pretrained``: trained on the "high" dose range
#: (10²–10⁶ e⁻/Å², Table 2), and fine-tuned from those on the "low" range (10¹–10⁴).
SHIPPED_MODELS: dict[str, str] = {
    "msdnet-au-ceo2": "msdnet_au_ceo2.safetensors",
    "unet-au-ceo2": "unet_au_ceo2.safetensors",
    "msdnet-au-ceo2-low": "msdnet_au_ceo2_low.safetensors",
    "unet-au-ceo2-low": "unet_au_ceo2_low.safetensors",
}
#: The recommended segmentation model for dose series and its threshold, decided once
#: here by the rule in docs/models.md ("Recommended model"), computed on the validation
#: battery (workflows.battery_runs.model_ranking: most conditions where F1 ≥ 0.9, then
#: ≥ 0.5, is reached; then the lowest doses of both levels; then the mean F1 at ≥ 200
#: e⁻/Å²), each model run as the defaults run it (frames resampled to its training
#: sampling, below); at its calibrated threshold ("model"). The command's and the Segment
#: dock's defaults and the demo read these.
RECOMMENDED_MODEL = "unet-au-ceo2-low"
RECOMMENDED_THRESHOLD = "model"
#: Resample each frame to the model's training pixel size by default (``segment
#: --no-match-sampling`` and the Segment dock's box turn it off): on the validation battery
#: it is what lets the shipped networks segment at 0.05 and 0.10 Å/px (docs/models.md,
#: "Recommended model" and "Frames as they are").
RECOMMENDED_MATCH_SAMPLING = True
DEFAULT_MODEL = RECOMMENDED_MODEL
#: Shipped denoiser name → file in ``models/pretrained`` (Katsuno et al. 2021).
SHIPPED_DENOISERS: dict[str, str] = {
    # denoiser-au-ceo2 fine-tuned on phantoms (aggregates, supports, lattice patches) with
    # wide detector and scintillator excess noise, mixed with HR-TEM exit waves (issue 16).
    "denoiser-broad": "denoiser_broad.safetensors",
    "denoiser-au-ceo2": "denoiser_au_ceo2.safetensors",
}
DEFAULT_DENOISER = "denoiser-broad"


def available_models() -> list[str]:
    """Shipped model names whose files are present in this installation."""
    return [name for name, file in SHIPPED_MODELS.items() if (PRETRAINED_DIR / file).is_file()]


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint file of a shipped model name or of a path.

    Raises
    ------
    CheckpointError
        Neither a shipped model nor an existing file.
    """
    text = str(name_or_path)
    if text in SHIPPED_MODELS:
        path = PRETRAINED_DIR / SHIPPED_MODELS[text]
        if not path.is_file():
            raise CheckpointError(f"the shipped model {text!r} is missing from this "
                                  f"installation ({path})")
        return path
    path = Path(text).expanduser()
    if path.is_file():
        return path
    shipped = ", ".join(available_models()) or "none installed"
    raise CheckpointError(f"{text!r} is neither a shipped model ({shipped}) nor a model file")


def load_model(
    name_or_path: str | os.PathLike,
    *,
    arch: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a shipped segmentation model by name or a checkpoint file.

    See :func:`.checkpoint.load_checkpoint`. Without ``arch``, any segmentation
    architecture is accepted and a denoiser is refused.

    Raises
    ------
    CheckpointError
        One line: unknown name, unreadable file, or a model of another kind.
    """
    path = resolve_model(name_or_path)
    if arch is None:
        found = read_checkpoint_metadata(path).get("arch")
        if found not in SEGMENTATION_ARCHITECTURES:
            raise CheckpointError(
                f"{path.name} holds a {found}, not a segmentation model (msdnet or unet)"
                + ("; use it with 'napari-lowdose denoise'" if found == "denoiser" else "")
            )
    return load_checkpoint(path, arch=arch, device=device)


def available_denoisers() -> list[str]:
    """Shipped denoiser names whose files are present in this installation."""
    return [name for name, file in SHIPPED_DENOISERS.items()
            if (PRETRAINED_DIR / file).is_file()]


def resolve_denoiser(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint file of a shipped denoiser name or of a path.

    Raises
    ------
    CheckpointError
        Neither a shipped denoiser that is installed nor an existing file.
    """
    text = str(name_or_path)
    if text in SHIPPED_DENOISERS:
        path = PRETRAINED_DIR / SHIPPED_DENOISERS[text]
        if not path.is_file():
            raise CheckpointError(
                f"the shipped denoiser {text!r} is not installed ({path} is missing); train "
                "one with 'napari-lowdose train-denoiser' and pass its file with --model"
            )
        return path
    path = Path(text).expanduser()
    if path.is_file():
        return path
    shipped = ", ".join(available_denoisers()) or "none installed"
    raise CheckpointError(f"{text!r} is neither a shipped denoiser ({shipped}) nor a model file")


def load_denoiser(
    name_or_path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a shipped denoiser by name or a denoiser checkpoint file.

    Parameters
    ----------
    name_or_path : str or PathLike
        A name of :data:`SHIPPED_DENOISERS` or a ``.safetensors`` file.
    device : str or torch.device, optional
        Where to put the network (``"auto"`` allowed).

    Returns
    -------
    model : DenoiserUNet
        In eval mode.
    metadata : dict
        The checkpoint's metadata (normalisation, training, validation PSNR/SSIM).

    Raises
    ------
    CheckpointError
        One line: unknown name, missing or unreadable file, or a segmentation model.
    """
    return load_checkpoint(resolve_denoiser(name_or_path), arch="denoiser", device=device)


def denoiser_score_text(metadata: dict[str, Any]) -> str:
    """How good a denoiser's checkpoint says it is, in words (the ``models`` command and the
    Denoise dock).

    A denoiser validated against clean or long-exposure targets has a meaningful PSNR. One
    fine-tuned on the user's own frames (Noise2Noise) was validated against a second noisy
    exposure: its PSNR is low whatever its quality, so its held-out quality readout (its
    unbiased MSE against the best Gaussian filter's) is what is shown first.
    """
    validation = metadata.get("validation") or {}
    psnr = validation.get("psnr_db")
    readout = validation.get("readout") or {}
    ratio = readout.get("ratio_to_gaussian")
    if isinstance(ratio, int | float):
        text = f"held-out {float(ratio):.2f}× the best Gaussian's unbiased MSE"
        interval = readout.get("ratio_interval")
        if isinstance(interval, list | tuple) and len(interval) == 2:
            text += f" ({float(interval[0]):.2f}–{float(interval[1]):.2f} within its error)"
        if isinstance(psnr, int | float):
            text += f" (PSNR {float(psnr):.2f} dB against a second noisy exposure)"
        return text
    if isinstance(psnr, int | float):
        return (f"validation PSNR {float(psnr):.2f} dB (input "
                f"{float(validation.get('input_psnr_db', 0.0)):.2f} dB)")
    return ""
