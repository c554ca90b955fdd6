"""The epoch loop shared by the segmentation and denoiser trainers.

Both trainers (:mod:`.segmentation`, Larsen et al. 2023; :mod:`.denoise`,
Katsuno et al. 2021) run the same loop around their own loss and validation:

* every epoch is one seeded pass (or ``steps_per_epoch`` steps) over the training
  items (:class:`ShardSampler`), each step an optimiser step with optional
  autocast, a gradient scaler for fp16 and gradient-norm clipping;
* after every epoch the trainer validates; the epoch with the best validation
  score so far is saved as the checkpoint, and the model, optimiser and history
  are saved beside it (``<checkpoint>.state.pt``, tensors and numbers only, read
  back with ``torch.load(weights_only=True)``), so that running the same command
  again continues after the last finished epoch (:func:`resume_or_start`);
* ``should_stop()`` is polled between steps, ``progress(step, total_steps)`` is
  called after every step and ``on_epoch(result)`` after every epoch;
* under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1,
  :func:`start_context`) every process trains on its share of the items, losses
  and validation counts are summed over processes and process 0 writes the files.

The trainer's part is an :class:`EpochHooks` object.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from ..device import select_device
from ..errors import LowdoseError
from ..io.outputs import check_writable

__all__ = [
    "STATE_SUFFIX",
    "EpochHooks",
    "LoopState",
    "RunContext",
    "RunSettings",
    "ShardSampler",
    "TrainingError",
    "Validation",
    "any_rank",
    "autocast",
    "end_context",
    "load_state",
    "mean_over_ranks",
    "resume_or_start",
    "save_state",
    "start_context",
    "steps_per_epoch",
    "sum_over_ranks",
    "train_epochs",
    "wrap_model",
]

#: Suffix of the resumable state file written beside a checkpoint.
STATE_SUFFIX = ".state.pt"


class TrainingError(LowdoseError):
    """Training cannot start or continue as asked."""


class RunSettings:
    """Methods shared by the settings dataclasses of the trainers."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)

    def same_run_as(self, other: dict[str, Any]) -> bool:
        """Whether a saved run can be continued with these settings (epochs may grow)."""
        mine = self.to_dict()
        # Settings added since the run started count as their defaults.
        theirs = {**type(self)().to_dict(), **dict(other)}
        for key in ("epochs", "device", "num_workers"):
            mine.pop(key, None)
            theirs.pop(key, None)
        return mine == theirs


# ---------------------------------------------------------------------------
# Processes (DistributedDataParallel)
# ---------------------------------------------------------------------------


@dataclass
class RunContext:
    """Device and place of this process among the training processes."""

    device: torch.device
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Whether this process writes the files (rank 0)."""
        return self.rank == 0


def start_context(device: str) -> RunContext:
    """The context of this process; joins the process group under ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return RunContext(select_device(device), 0, 1)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = select_device(device)
    if target.type == "cuda":
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return RunContext(target, dist.get_rank(), dist.get_world_size())


def end_context(context: RunContext) -> None:
    """Leave the process group joined by :func:`start_context`."""
    if context.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, context: RunContext) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when there are several processes."""
    if context.world_size <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def sum_over_ranks(totals: torch.Tensor, context: RunContext) -> torch.Tensor:
    """``totals`` summed over the processes (on the CPU)."""
    if context.world_size <= 1:
        return totals
    totals = totals.to(context.device) if context.device.type == "cuda" else totals
    dist.all_reduce(totals)
    return totals.cpu()


def mean_over_ranks(loss_sum: float, n_batches: int, context: RunContext) -> float:
    """Mean loss per batch over all processes."""
    if context.world_size > 1:
        totals = torch.tensor([loss_sum, float(n_batches)], dtype=torch.float64)
        loss_sum, n_batches = sum_over_ranks(totals, context).tolist()
    return loss_sum / max(n_batches, 1)


def any_rank(flag: bool, context: RunContext) -> bool:
    """Whether ``flag`` is set in any process."""
    if context.world_size <= 1:
        return flag
    value = sum_over_ranks(torch.tensor([1.0 if flag else 0.0]), context)
    return bool(value.item() > 0)


def steps_per_epoch(n_items: int, settings: Any, context: RunContext) -> int:
    """Steps of one epoch: one pass over this process's items, capped by the settings."""
    per_rank = math.ceil(n_items / context.world_size)
    steps = math.ceil(per_rank / settings.batch_size)
    if settings.steps_per_epoch is not None:
        steps = min(steps, settings.steps_per_epoch)
    return max(1, steps)


class ShardSampler(Sampler[int]):
    """Seeded shuffle of all items, this process's share, cut to ``n_samples``."""

    def __init__(self, n_items: int, context: RunContext, seed: int, epoch: int,
                 n_samples: int) -> None:
        order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch, 7)))
        permutation = order.permutation(n_items)
        self.indices = [int(i) for i in permutation[context.rank::context.world_size]]
        self.indices = self.indices[:n_samples]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to ``amp_dtype`` on ``device``, or a disabled one when it is None."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                          enabled=amp_dtype is not None)


# ---------------------------------------------------------------------------
# Resumable state
# ---------------------------------------------------------------------------


@dataclass
class LoopState:
    """Where a run stands: epochs done, best validation score and epoch, history.

    ``best_score`` is stored under the state file's ``best_f1`` key for both
    trainers (the denoiser's is a PSNR in dB); ``best_tiebreak`` is the best epoch's
    :attr:`Validation.tiebreak`.
    """

    epoch: int
    best_score: float
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_tiebreak: float = -math.inf

    def improved_by(self, validation: Validation) -> bool:
        """Whether ``validation`` beats the best epoch: a higher score, or the same score
        and a higher tiebreak (e.g. two epochs of F1 0 early on: the lower loss wins)."""
        if validation.score != self.best_score:
            return validation.score > self.best_score
        return validation.tiebreak > self.best_tiebreak


def save_state(path: Path, model: torch.nn.Module, optimiser: torch.optim.Optimizer,
               state: LoopState, settings: RunSettings) -> None:
    """Write the resumable state (tensors and numbers only) atomically."""
    record = {
        "epoch": state.epoch,
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "best_f1": state.best_score,
        "best_epoch": state.best_epoch,
        "best_tiebreak": state.best_tiebreak,
        "history": state.history,
        "settings": settings.to_dict(),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(record, tmp)
    os.replace(tmp, path)


def load_state(path: Path, settings: RunSettings, model: torch.nn.Module,
               optimiser: torch.optim.Optimizer) -> LoopState:
    """Read a state file (``weights_only``) into ``model`` and ``optimiser``."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
        saved_settings = record["settings"]
    except Exception as error:  # noqa: BLE001 - any unreadable state is reported in one line
        raise TrainingError(f"cannot resume from {path}: {error}") from error
    if not settings.same_run_as(saved_settings):
        raise TrainingError(
            f"{path} belongs to a run with other settings; choose another --out or delete it"
        )
    model.load_state_dict(record["model"])
    optimiser.load_state_dict(record["optimiser"])
    return LoopState(int(record["epoch"]), float(record["best_f1"]),
                     int(record["best_epoch"]), list(record["history"]),
                     float(record.get("best_tiebreak", -math.inf)))


def resume_or_start(out: Path, settings: Any, model: torch.nn.Module,
                    optimiser: torch.optim.Optimizer, resume: bool, initial_score: float,
                    initialise: Callable[[], None]) -> tuple[Path, LoopState]:
    """The state file of ``out`` and the state to start from.

    Continues from ``<out>.state.pt`` when ``resume`` and it exists; otherwise a
    fresh start, calling ``initialise()`` first when ``settings.init_from`` is set
    (fine-tuning).
    """
    state_path = out.with_name(out.name + STATE_SUFFIX)
    check_writable(out.parent)  # before the first epoch, not after it
    if resume and state_path.is_file():
        return state_path, load_state(state_path, settings, model, optimiser)
    if settings.init_from is not None:
        initialise()
    return state_path, LoopState(0, initial_score)


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    """What a trainer's validation found: the score that picks the best epoch, and more."""

    score: float
    details: Any = None
    #: Decides between epochs of the same score (higher wins); e.g. minus the loss.
    tiebreak: float = -math.inf


class EpochHooks(Protocol):
    """The trainer's part of :func:`train_epochs`."""

    def batch_loss(self, batch: Any) -> torch.Tensor:
        """Loss of one training batch (forward pass included)."""

    def validate(self) -> Validation:
        """Validate the model after an epoch."""

    def epoch_result(self, epoch: int, train_loss: float, validation: Validation,
                     seconds: float, best: bool) -> Any:
        """The epoch's result (with ``to_dict``), passed to ``on_epoch``."""

    def save_best(self, result: Any, validation: Validation, history: list[dict[str, Any]],
                  elapsed_s: float) -> None:
        """Save the checkpoint of a new best epoch."""


def train_epochs(
    hooks: EpochHooks,
    model: torch.nn.Module,
    net: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    train_set: Dataset,
    settings: Any,
    context: RunContext,
    state_path: Path,
    state: LoopState,
    amp_dtype: torch.dtype | None,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool],
    on_epoch: Callable[[Any], None] | None,
) -> bool:
    """Train from ``state.epoch`` to ``settings.epochs``; return whether it was stopped.

    ``net`` is ``model`` or its DistributedDataParallel wrapper. ``state`` is updated
    in place (best score and epoch, history). ``settings`` provides ``epochs``,
    ``batch_size``, ``seed``, ``num_workers``, ``steps_per_epoch`` and
    ``grad_clip_norm``.
    """
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    steps = steps_per_epoch(len(train_set), settings, context)
    total_steps = steps * settings.epochs
    done_steps = steps * state.epoch
    stopped = False
    started = time.perf_counter()
    for epoch in range(state.epoch, settings.epochs):
        t0 = time.perf_counter()
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        loader = DataLoader(train_set, batch_size=settings.batch_size,
                            sampler=ShardSampler(len(train_set), context, settings.seed, epoch,
                                                 steps * settings.batch_size),
                            num_workers=settings.num_workers, drop_last=False)
        net.train()
        loss_sum, n_batches = 0.0, 0
        for batch in loader:
            if should_stop():
                stopped = True
                break
            optimiser.zero_grad(set_to_none=True)
            loss = hooks.batch_loss(batch)
            scaler.scale(loss).backward()
            if settings.grad_clip_norm is not None:
                scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip_norm)
            scaler.step(optimiser)
            scaler.update()
            loss_sum += float(loss.detach())
            n_batches += 1
            done_steps += 1
            if progress is not None and context.is_main:
                progress(done_steps, total_steps)
        stopped = any_rank(stopped, context)
        if stopped:
            break
        validation = hooks.validate()
        train_loss = mean_over_ranks(loss_sum, n_batches, context)
        is_best = state.improved_by(validation)
        if is_best:
            state.best_score, state.best_epoch = validation.score, epoch + 1
            state.best_tiebreak = validation.tiebreak
        result = hooks.epoch_result(epoch + 1, train_loss, validation,
                                    time.perf_counter() - t0, is_best)
        state.history.append(result.to_dict())
        state.epoch = epoch + 1
        if context.is_main:
            if is_best:
                hooks.save_best(result, validation, state.history,
                                time.perf_counter() - started)
            save_state(state_path, model, optimiser, state, settings)
            if on_epoch is not None:
                on_epoch(result)
        if context.world_size > 1:
            dist.barrier()
    return stopped
