"""Model files: safetensors weights with their provenance, never pickles.

A napari-lowdose model file is a `safetensors <https://huggingface.co/docs/safetensors>`_
file holding the network's ``state_dict``; its header metadata holds, under the key
``"napari_lowdose"``, one JSON document::

    {"format": "napari-lowdose/model", "format_version": 1,
     "arch": "msdnet", "config": {...}, "package_version": "0.1.0",
     "normalisation": {...}, ...caller's metadata (dataset card, noise model,
     validation metrics, training settings)...}

The same JSON is written beside the weights as ``<stem>.json`` for people to read.
Loading parses the header without touching the weights (:func:`read_checkpoint_metadata`),
rebuilds the network from ``arch`` and ``config`` (MSD-net of Pelt & Sethian 2018 /
Larsen et al. 2023, U-net of Madsen et al. 2018, denoiser of Katsuno et al. 2021) and
checks every tensor name and shape before loading; :func:`torch.load` (which
unpickles, i.e. may run code) is never used.

The ``normalisation`` record comes from :mod:`.normalisation`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..device import select_device
from ..errors import LowdoseError
from ..io.writers import atomic_path, atomic_write_text
from .denoiser import DenoiserUNet
from .msdnet import MSDNet
from .normalisation import NORMALISATION, denoiser_normalisation
from .unet import UNet

__all__ = [
    "ARCHITECTURES",
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "MODEL_SUFFIX",
    "RESERVED_KEYS",
    "SEGMENTATION_ARCHITECTURES",
    "CheckpointError",
    "build_model",
    "load_checkpoint",
    "model_output_path",
    "read_checkpoint_metadata",
    "save_checkpoint",
    "sidecar_path",
]

#: Network classes by architecture name: segmentation (MSD-net, U-net) and
#: the low-dose denoiser (Katsuno et al. 2021).
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "msdnet": MSDNet,
    "unet": UNet,
    "denoiser": DenoiserUNet,
}
#: The architectures that segment (per-pixel particle logits).
SEGMENTATION_ARCHITECTURES: tuple[str, ...] = ("msdnet", "unet")

#: Value of ``"format"`` in a model file's metadata.
FORMAT = "napari-lowdose/model"
#: Version of the metadata layout this version of napari-lowdose reads and writes.
FORMAT_VERSION = 1
#: Key of the JSON document in the safetensors header metadata.
METADATA_KEY = "napari_lowdose"

#: Keys of the model document set by :func:`save_checkpoint` itself, not by callers.
RESERVED_KEYS = ("format", "format_version", "arch", "config", "package_version")


class CheckpointError(LowdoseError):
    """A model file cannot be written or read as a napari-lowdose model."""


#: The ending of every model file (the loaders and file dialogs look for it).
MODEL_SUFFIX = ".safetensors"


def model_output_path(path: str | Path) -> Path:
    """The model file a training run writes: ``path``, with :data:`MODEL_SUFFIX` added when it
    has no ending; the one rule of the ``train``/``train-denoiser`` commands and the docks.

    Raises
    ------
    CheckpointError
        Another ending (``x.txt``, or the ``.json`` sidecar given by mistake): the segment
        and denoise commands and the docks only open ``*.safetensors`` files.
    """
    out = Path(path)
    if out.suffix == "":
        return out.with_suffix(MODEL_SUFFIX)
    if out.suffix.lower() != MODEL_SUFFIX:
        hint = ", not its .json sidecar" if out.suffix.lower() == ".json" else ""
        raise CheckpointError(f"the model file must end in {MODEL_SUFFIX}{hint}: {out.name} "
                              f"(MODEL.json and MODEL{MODEL_SUFFIX}.state.pt go beside it)")
    return out


def build_model(arch: str, config: Mapping[str, Any]) -> nn.Module:
    """Build a freshly initialised network of architecture ``arch`` from ``config``.

    Parameters
    ----------
    arch : str
        A key of :data:`ARCHITECTURES` (``"msdnet"``, ``"unet"`` or ``"denoiser"``).
    config : mapping
        The network's ``config`` dictionary (hyper-parameters).

    Returns
    -------
    torch.nn.Module
        The network, in training mode, on the CPU.

    Raises
    ------
    ValueError
        If ``arch`` is unknown (or ``config`` is invalid for it).
    """
    try:
        cls = ARCHITECTURES[arch]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; known: {known}") from None
    return cls.from_config(dict(config))


def sidecar_path(path: str | Path) -> Path:
    """Path of the human-readable JSON written beside a model file (``<stem>.json``)."""
    return Path(path).with_suffix(".json")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def _compare_shapes(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]
) -> str | None:
    """One-line description of how ``found`` differs from ``expected``, or ``None``."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) (e.g. {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s) (e.g. {extra[0]})")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} tensor(s) of the wrong shape (e.g. {k}: "
            f"{list(found[k])} instead of {list(expected[k])})"
        )
    return "; ".join(problems) or None


def _tensors_to_save(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors of ``model.state_dict()``, none sharing storage."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, str]] = set()
    for key, value in model.state_dict().items():
        tensor = value.detach().to("cpu").contiguous()
        storage = (tensor.untyped_storage().data_ptr(), str(tensor.device))
        if storage in seen or tensor.untyped_storage().nbytes() != tensor.nbytes:
            tensor = tensor.clone()
        seen.add((tensor.untyped_storage().data_ptr(), str(tensor.device)))
        tensors[key] = tensor
    return tensors


def _metadata_document(model: nn.Module, arch: str, metadata: Mapping[str, Any]) -> dict:
    clash = sorted(set(metadata) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"metadata may not set the reserved key(s) {', '.join(clash)}")
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping):
        raise ValueError(f"{type(model).__name__} has no config dictionary to save")
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "config": dict(config),
        "package_version": __version__,
        "normalisation": (
            denoiser_normalisation(dict(config)) if arch == "denoiser" else NORMALISATION
        ),
    }
    document.update(metadata)
    # Round trip through JSON so the caller gets exactly what a reader will see.
    return json.loads(json.dumps(document, default=_json_default))


def save_checkpoint(
    path: str | Path, model: nn.Module, *, arch: str, metadata: Mapping[str, Any]
) -> Path:
    """Save a network's weights and provenance as a safetensors model file.

    The file and the ``<stem>.json`` sidecar are each written to a temporary file
    first and renamed into place, so an interrupted save never leaves a partial
    model file.

    Parameters
    ----------
    path : str or Path
        Output file, conventionally ``*.safetensors``.
    model : torch.nn.Module
        A network of :data:`ARCHITECTURES` with a ``config`` dictionary.
    arch : str
        Its architecture name (``"msdnet"``, ``"unet"`` or ``"denoiser"``).
    metadata : mapping
        JSON-serialisable provenance merged into the document (e.g. ``normalisation``,
        ``dataset``, ``noise_model``, ``validation``, ``training``); numpy scalars and
        arrays are converted. ``normalisation`` defaults to
        :data:`.normalisation.NORMALISATION` (for a denoiser:
        :func:`.normalisation.denoiser_normalisation` of its config).

    Returns
    -------
    Path
        The written model file.

    Raises
    ------
    ValueError
        If ``arch`` is unknown, the metadata sets a reserved key or is not
        serialisable, or ``path`` ends in ``.json``.
    CheckpointError
        If the model's tensors do not match a network rebuilt from its config.
    """
    from safetensors.torch import save_file


    path = Path(path)
    if path.suffix.lower() == ".json":
        raise ValueError(f"{path.name}: a model file may not end in .json (its sidecar does)")
    tensors = _tensors_to_save(model)
    mismatch = _compare_shapes(
        _shapes(build_model(arch, model.config).state_dict()), _shapes(tensors)
    )
    if mismatch:
        raise CheckpointError(f"the model's tensors do not match its {arch} config: {mismatch}")
    document = _metadata_document(model, arch, metadata)
    text = json.dumps(document)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: text})
    atomic_write_text(sidecar_path(path), json.dumps(document, indent=2) + "\n")
    return path


def _a(arch: str) -> str:
    """Indefinite article as the name is read out ("an msdnet", "a unet")."""
    return "an" if arch[:1].lower() in "aefhilmnorsx" else "a"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _header(path: Path) -> tuple[dict[str, str] | None, dict[str, tuple[int, ...]]]:
    """Header metadata and tensor shapes of a safetensors file (weights not read)."""
    from safetensors import safe_open

    if not path.is_file():
        what = "is a folder, not a model file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"{path}: {what}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own (Rust) error types
        raise CheckpointError(
            f"{path.name} is not a readable safetensors file (corrupt or truncated?): "
            f"{_one_line(error)}"
        ) from error
    return metadata, shapes


def _parse_document(path: Path, metadata: Mapping[str, str] | None) -> dict[str, Any]:
    if not metadata or METADATA_KEY not in metadata:
        raise CheckpointError(
            f"{path.name} is a safetensors file but not a napari-lowdose model "
            f"(no {METADATA_KEY!r} metadata)"
        )
    try:
        document = json.loads(metadata[METADATA_KEY])
    except ValueError as error:
        raise CheckpointError(
            f"{path.name}: the napari-lowdose metadata is not valid JSON ({_one_line(error)})"
        ) from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(
            f"{path.name} is not a napari-lowdose model (format is not {FORMAT})"
        )
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name} has model format version {version!r}; napari-lowdose "
            f"{__version__} reads version {FORMAT_VERSION} (written by package version "
            f"{document.get('package_version', 'unknown')})"
        )
    if document.get("arch") not in ARCHITECTURES or not isinstance(document.get("config"), dict):
        raise CheckpointError(
            f"{path.name}: unknown architecture {document.get('arch')!r} or missing config"
        )
    return document


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """Read a model file's metadata without loading its weights.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save_checkpoint`.

    Returns
    -------
    dict
        The JSON document (``format``, ``format_version``, ``arch``, ``config``,
        ``package_version``, ``normalisation`` and the caller's metadata).

    Raises
    ------
    CheckpointError
        If the file is missing, not a safetensors file, not a napari-lowdose model
        or of another format version.
    """
    path = Path(path)
    metadata, _ = _header(path)
    return _parse_document(path, metadata)


def _resolve_device(device: str | torch.device) -> torch.device:
    return select_device(device)


def load_checkpoint(
    path: str | Path, *, arch: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model file written by :func:`save_checkpoint`, without unpickling.

    Parameters
    ----------
    path : str or Path
        The model file.
    arch : str, optional
        Expected architecture; a file holding another one is refused.
    device : str or torch.device, optional
        Device to put the network on (``"auto"`` allowed, see
        :func:`napari_lowdose.device.select_device`).

    Returns
    -------
    model : torch.nn.Module
        The network, in eval mode, on ``device``.
    metadata : dict
        As :func:`read_checkpoint_metadata`.

    Raises
    ------
    CheckpointError
        With a one-line message if the file is missing, corrupt or truncated, not a
        napari-lowdose model, of another format version or architecture, or its
        tensors do not match its config.
    """
    from safetensors.torch import load_file

    path = Path(path)
    target = _resolve_device(device)
    metadata, shapes = _header(path)
    document = _parse_document(path, metadata)
    found = document["arch"]
    if arch is not None and arch != found:
        raise CheckpointError(
            f"{path.name}: this file holds {_a(found)} {found}, not {_a(arch)} {arch}"
        )
    try:
        model = build_model(found, document["config"])
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"{path.name}: cannot build a {found} from its config ({_one_line(error)})"
        ) from error
    mismatch = _compare_shapes(_shapes(model.state_dict()), shapes)
    if mismatch:
        raise CheckpointError(f"{path.name}: weights do not match the {found} config: {mismatch}")
    try:
        state = load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own (Rust) error types
        raise CheckpointError(
            f"{path.name}: the weights cannot be read (corrupt or truncated?): {_one_line(error)}"
        ) from error
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise CheckpointError(f"{path.name}: {len(bad)} tensor(s) hold NaN or inf (e.g. {bad[0]})")
    model.load_state_dict(state, strict=True)
    return model.to(target).eval(), document
