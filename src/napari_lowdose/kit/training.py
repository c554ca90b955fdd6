"""Time-boxed training of one network on fresh images, keeping the best checkpoint.

The loop trains until its :class:`~.budget.Deadline` (less a reserve for the last
validation and save), validates on a fixed set every ``val_every_steps`` steps and at the
end, and saves the best network so far (segmentation: the best pooled F1 over the
calibration thresholds, which becomes the model's calibrated threshold; denoiser: the
lowest validation L1 in normalised units) with :func:`~napari_lowdose.models.checkpoint.
save_checkpoint` and the kit's metadata, so a returned file loads with the project's
loader and ``segment --threshold model`` works at once.

Speed options, each where it helps: bf16 autocast on CUDA (not for the MSD-net, whose
dense-block autograd function is float32, as in ``napari-lowdose train``), channels_last
memory format, and :func:`torch.compile` (a compile failure falls back to eager, logged).
"""

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..analysis.metrics import CALIBRATION_THRESHOLDS, best_threshold, counts_at_thresholds
from ..device import autocast_dtype, describe_device
from ..models.checkpoint import save_checkpoint
from ..provenance import training_versions
from .budget import Deadline

__all__ = ["TrainOptions", "train_network"]


@dataclass(frozen=True)
class TrainOptions:
    """How one network is trained.

    Parameters
    ----------
    batch_size, lr : int, float
        Crops per step and Adam learning rate.
    val_every_steps : int
        Steps between validations.
    loader_workers : int
        DataLoader processes drawing images (0: in this process).
    amp, channels_last, compile : bool
        bf16/fp16 autocast on CUDA, channels_last, torch.compile.
    reserve_s : float
        Seconds kept back from the deadline for the last validation and save.
    max_steps : int or None
        Stop after this many steps (tests).
    """

    batch_size: int = 16
    lr: float = 1e-3
    val_every_steps: int = 200
    loader_workers: int = 12
    amp: bool = True
    channels_last: bool = True
    compile: bool = True
    reserve_s: float = 10.0
    max_steps: int | None = None


def _loss(kind: str, net: torch.nn.Module, model: torch.nn.Module, batch: Any,
          device: torch.device) -> torch.Tensor:
    if kind == "denoise":
        noisy, target, e_per_px = (t.to(device, non_blocking=True) for t in batch)
        inputs, scale = model.normalise(noisy[:, 0], e_per_px)
        estimate = net(inputs)
        return torch.nn.functional.l1_loss(estimate.float(), target / scale)
    image, mask = (t.to(device, non_blocking=True) for t in batch)
    logits = net(image).float()
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, mask)


@torch.no_grad()
def _validate(kind: str, net: torch.nn.Module, model: torch.nn.Module, items: list,
              device: torch.device, amp_dtype: torch.dtype | None) -> dict[str, Any]:
    net.eval()
    if kind == "denoise":
        losses = []
        for i in range(0, len(items), 8):
            batch = [torch.stack(column) for column in zip(*items[i:i + 8], strict=True)]
            with _autocast(device, amp_dtype):
                losses.append(float(_loss(kind, net, model, batch, device)))
        net.train()
        value = float(np.mean(losses)) if losses else float("inf")
        return {"score": -value, "l1": value}
    grid = np.zeros((len(CALIBRATION_THRESHOLDS), 3), dtype=np.int64)
    for image, mask in items:
        with _autocast(device, amp_dtype):
            logits = net(image[None].to(device)).float()
        grid += counts_at_thresholds(torch.sigmoid(logits)[0, 0], mask[0].numpy() >= 0.5)
    net.train()
    threshold, f1, table = best_threshold(grid)
    return {"score": -1.0 if f1 is None else f1, "calibrated_threshold": threshold,
            "calibrated_f1": f1, "f1_by_threshold": table}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def train_network(kind: str, arch: str, model: torch.nn.Module, dataset: Any,
                  val_items: list, *, out: Path, options: TrainOptions, device: torch.device,
                  deadline: Deadline, metadata: dict[str, Any],
                  log: logging.Logger) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` until ``deadline``; save the best to ``out``.

    Parameters
    ----------
    kind : {"segment", "denoise"}
    arch : str
        Architecture name for the model file (``"msdnet"``, ``"unet"``, ``"denoiser"``).
    model : torch.nn.Module
    dataset : IterableDataset
        Endless fresh items (:class:`~.images.FreshImages`).
    val_items : list
        Fixed validation items (:func:`~.images.fixed_items`).
    out : Path
        Model file.
    options : TrainOptions
    device : torch.device
    deadline : Deadline
    metadata : dict
        Kit metadata merged into the model file (command, recipe, …).
    log : logging.Logger

    Returns
    -------
    dict
        Steps, seconds, steps/s, best validation, compile state and the file (None if no
        validation ran).
    """
    model = model.to(device)
    amp_dtype = autocast_dtype(device) if options.amp and arch != "msdnet" else None
    if options.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    net: torch.nn.Module = model
    compiled = False
    if options.compile:
        net, compiled = torch.compile(model), True
    loader = DataLoader(dataset, batch_size=options.batch_size,
                        num_workers=options.loader_workers, pin_memory=device.type == "cuda",
                        persistent_workers=options.loader_workers > 0)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.lr, amsgrad=True)
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    steps, start, losses = 0, time.monotonic(), []
    model.train()

    def checkpoint() -> None:
        nonlocal best
        result = _validate(kind, net, model, val_items, device, amp_dtype)
        result.update(step=steps, train_loss=float(np.mean(losses)) if losses else None,
                      seconds=round(time.monotonic() - start, 1))
        losses.clear()
        history.append(result)
        log.info("%s: step %d, validation %s", out.stem, steps,
                 {k: v for k, v in result.items() if k != "f1_by_threshold"})
        if best is None or result["score"] > best["score"]:
            best = result
            _save(out, model, arch, kind, result, history, metadata, options, device,
                  steps, time.monotonic() - start, compiled)

    for batch in loader:
        if deadline.expired(options.reserve_s) or (options.max_steps is not None
                                                   and steps >= options.max_steps):
            break
        try:
            with _autocast(device, amp_dtype):
                loss = _loss(kind, net, model, batch, device)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
        except Exception as error:  # noqa: BLE001 - torch.compile failures fall back
            if not compiled:
                raise
            log.warning("%s: torch.compile failed (%s); training eagerly", out.stem, error)
            net, compiled = model, False
            continue
        optimiser.step()
        losses.append(float(loss.detach()))
        steps += 1
        if steps % options.val_every_steps == 0:
            checkpoint()
    if not history or history[-1]["step"] != steps:
        checkpoint()
    seconds = time.monotonic() - start
    return {"file": str(out) if best is not None else None, "steps": steps,
            "seconds": round(seconds, 1), "steps_per_s": round(steps / max(seconds, 1e-9), 2),
            "crops_per_s": round(steps * options.batch_size / max(seconds, 1e-9), 1),
            "compiled": compiled, "amp": str(amp_dtype) if amp_dtype else None,
            "best": {k: v for k, v in (best or {}).items() if k != "f1_by_threshold"}}


def _save(out: Path, model: torch.nn.Module, arch: str, kind: str, result: dict[str, Any],
          history: list[dict[str, Any]], metadata: dict[str, Any], options: TrainOptions,
          device: torch.device, steps: int, seconds: float, compiled: bool) -> None:
    if kind == "segment":
        validation = {"f1": result["calibrated_f1"], "f1_defined": result["calibrated_f1"]
                      is not None, "threshold": result["calibrated_threshold"],
                      "calibrated_threshold": result["calibrated_threshold"],
                      "calibrated_f1": result["calibrated_f1"],
                      "f1_by_threshold": result["f1_by_threshold"],
                      "step": steps, "n_images": metadata.get("n_val_items")}
        loss = "binary cross-entropy"
    else:
        validation = {"loss": result["l1"], "step": steps, "n_images": metadata.get(
            "n_val_items")}
        loss = "L1 in normalised units"
    document = {
        **{k: v for k, v in metadata.items() if k != "n_val_items"},
        "validation": validation,
        "training": {"settings": asdict(options), "steps": steps, "seconds": round(seconds, 1),
                     "device": describe_device(device), "compiled": compiled, "loss": loss,
                     "optimiser": f"Adam (AMSGrad), lr {options.lr}", **training_versions()},
        "history": [{k: v for k, v in h.items() if k != "f1_by_threshold"} for h in history],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, arch=arch, metadata=document)
