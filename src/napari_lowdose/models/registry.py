"""Models shipped inside the package, found by name (no download, ever).

The shipped weights are produced by the project's own ``simulate`` and
``train`` commands; ``docs/models.md`` records the exact commands, the
dataset card, the training time and machine, and the F1-against-dose curves.
A model is named on the command line and in the widgets either by its shipped
name (``msdnet-au-ceo2``) or by the path of a ``.safetensors`` checkpoint.
"""

import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["DEFAULT_MODEL", "SHIPPED_MODELS", "available_models", "load_model", "resolve_model"]

PRETRAINED_DIR = Path(__file__).with_name("pretrained")
#: Shipped name → file in ``models/pretrained``.
SHIPPED_MODELS: dict[str, str] = {
    "msdnet-au-ceo2": "msdnet_au_ceo2.safetensors",
    "unet-au-ceo2": "unet_au_ceo2.safetensors",
}
DEFAULT_MODEL = "msdnet-au-ceo2"


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
    """Load a shipped model by name or a checkpoint file (:func:`.checkpoint.load_checkpoint`)."""
    return load_checkpoint(resolve_model(name_or_path), arch=arch, device=device)
