"""Starting a segmentation network's training as both faces do: from a trained model's
architecture (``train --init``, the Train dock's *start from*)."""

from typing import Any

__all__ = ["architecture_defaults", "init_config"]


def init_config(name_or_path: Any) -> dict:
    """Architecture settings of a trained model, as ``TrainSettings.model_config``.

    Parameters
    ----------
    name_or_path : str or Path
        A shipped model's name or a model file.

    Returns
    -------
    dict
        The model's ``config`` without its input/output channel counts.
    """
    from ..models.checkpoint import read_checkpoint_metadata
    from ..models.registry import resolve_model

    config = dict(read_checkpoint_metadata(resolve_model(name_or_path)).get("config") or {})
    for key in ("in_channels", "out_channels"):
        config.pop(key, None)
    return config


def architecture_defaults(arch: str) -> dict[str, Any]:
    """The settings a new network of ``arch`` gets when none is given.

    Parameters
    ----------
    arch : {"msdnet", "unet"}
        The architecture (Larsen et al.: the MSD-net of their Sec. 2, or a U-net).

    Returns
    -------
    dict
        ``depth``, ``width``, ``kernel_size`` (MSD-net) or ``base_channels``, ``levels``,
        ``kernel_size`` (U-net), as the network's own defaults.
    """
    if arch == "msdnet":
        from ..models.msdnet import MSDNet

        config = MSDNet().config
        return {name: config[name] for name in ("depth", "width", "kernel_size")}
    if arch == "unet":
        from ..models.unet import UNet

        config = UNet().config
        return {name: config[name] for name in ("base_channels", "levels", "kernel_size")}
    raise ValueError(f"arch must be 'msdnet' or 'unet', not {arch!r}")
