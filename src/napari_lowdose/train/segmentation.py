"""Training the segmentation networks on simulated data (Larsen et al. 2023).

The recipe of Larsen et al.: binary cross-entropy on the per-pixel logits,
Adam with AMSGrad at a learning rate of 10⁻³, the F1 score on a validation set
after every epoch, and each training epoch one pass over the image epochs of
the dataset (random crops, flips and 90° rotations: :mod:`.data`). The
checkpoint kept is the one with the best validation F1.

* Device: ``"auto"`` picks CUDA > MPS > CPU (:func:`.device.select_device`);
  on CUDA the U-net runs under autocast (bf16 where supported, else fp16
  with a gradient scaler). The MSD-net's dense block is a custom autograd
  function written for fp32 and is trained in fp32.
* Resumable, stoppable and scalable with the epoch loop of :mod:`.loop`: after
  every epoch the model, optimiser and history are saved beside the checkpoint
  (``<checkpoint>.state.pt``) and running the same command again continues;
  ``should_stop()`` is polled between steps; under ``torchrun --nproc_per_node
  N`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel (NCCL
  on CUDA, gloo on CPU), every process trains on its share of the images,
  validation counts are summed over processes, and process 0 writes the files.
* A validation set without particle pixels cannot rate a segmentation: its F1 is
  reported as undefined (None, ``f1_defined`` False, :data:`.metrics.NO_TRUTH_PIXELS`),
  never as 0 or 1, and the checkpoint kept is then the epoch of lowest validation loss.
"""

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.metrics import (
    CALIBRATION_THRESHOLDS,
    NO_TRUTH_PIXELS,
    BinaryCounts,
    best_threshold,
    binary_counts,
    counts_at_thresholds,
)
from ..device import autocast_dtype, describe_device
from ..models.checkpoint import (
    CheckpointError,
    build_model,
    save_checkpoint,
)
from ..models.normalisation import NORMALISATION
from ..models.registry import load_model
from ..provenance import training_versions
from .data import SegmentationDataset
from .loop import (
    RunContext,
    RunSettings,
    TrainingError,
    Validation,
    autocast,
    end_context,
    resume_or_start,
    start_context,
    sum_over_ranks,
    train_epochs,
    wrap_model,
)

__all__ = [
    "EpochResult",
    "TrainSettings",
    "TrainingSummary",
    "train_segmentation",
]

#: How the best checkpoint is chosen (see :class:`TrainSettings`).
SELECT_BY = ("threshold", "calibrated")


@dataclass
class TrainSettings(RunSettings):
    """How a segmentation network is trained.

    Parameters
    ----------
    arch : {"msdnet", "unet"}
        Architecture.
    model_config : dict
        Architecture settings (e.g. ``depth``, ``width``, ``kernel_size`` for
        the MSD-net; ``base_channels``, ``levels`` for the U-net); unset ones
        take the architecture's defaults.
    epochs : int
        Passes over the training images.
    crop_px : int or None
        Side of the random training crops (None: whole frames).
    batch_size : int
        Crops per step (per process under DDP).
    learning_rate : float
        Adam (AMSGrad) learning rate (Larsen et al.: 10⁻³).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    mixed_precision : bool
        Autocast on CUDA (U-net only).
    val_crop_px : int or None
        Side of the central validation crops (None: whole frames).
    max_val_images : int or None
        Validate on the first images only.
    steps_per_epoch : int or None
        Cap on the steps of one epoch (None: one full pass).
    threshold : float
        Probability threshold of the validation masks (0.9 as at inference).
    select_by : {"threshold", "calibrated"}
        Which validation F1 picks the best checkpoint: at ``threshold``, or at the
        epoch's own best threshold (:data:`.metrics.CALIBRATION_THRESHOLDS`; then use
        the model with ``segment --threshold model``). A briefly trained network's F1
        at 0.9 jumps between epochs as its confidence shifts; the calibrated F1 does not.
    seed : int
        Seed of the weights (``init_seed`` where the architecture has one),
        the shuffling and the augmentation.
    num_workers : int
        DataLoader worker processes.
    grad_clip_norm : float or None
        Clip the gradient norm of each step to this value (None: no clipping);
        guards against the occasional spike of a high-dose, low-noise batch.
    init_from : str or None
        A trained model (shipped name or file) whose weights start the run:
        fine-tuning, e.g. the shipped high-dose network on a low-dose or
        detector-matched dataset. Its architecture and settings must be those
        of ``arch`` and ``model_config``.
    """

    arch: str = "msdnet"
    model_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    crop_px: int | None = 128
    batch_size: int = 4
    learning_rate: float = 1e-3
    device: str = "auto"
    mixed_precision: bool = True
    val_crop_px: int | None = None
    max_val_images: int | None = None
    steps_per_epoch: int | None = None
    threshold: float = 0.9
    select_by: str = "threshold"
    seed: int = 0
    num_workers: int = 0
    grad_clip_norm: float | None = 1.0
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError("epochs and batch size must be at least 1")
        if self.learning_rate <= 0:
            raise TrainingError("the learning rate must be positive")
        if not 0 < self.threshold < 1:
            raise TrainingError("the threshold must be between 0 and 1")
        if self.select_by not in SELECT_BY:
            raise TrainingError(f"select_by must be one of {', '.join(SELECT_BY)}, "
                                f"not {self.select_by!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise TrainingError("steps per epoch must be at least 1")
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise TrainingError("the gradient clipping norm must be positive")

@dataclass(frozen=True)
class EpochResult:
    """Losses and validation F1 after one epoch.

    ``val_f1`` (and the calibrated threshold and F1) are None when ``f1_defined`` is
    False: the validation images hold no particle pixels (:data:`.metrics.NO_TRUTH_PIXELS`).
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_f1: float | None
    seconds: float
    best: bool
    #: Threshold of highest validation F1 (of :data:`.metrics.CALIBRATION_THRESHOLDS`)
    #: and that F1.
    calibrated_threshold: float | None = None
    calibrated_f1: float | None = None
    #: Whether the validation truth holds particle pixels (else F1 is undefined).
    f1_defined: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


@dataclass(frozen=True)
class TrainingSummary:
    """What :func:`train_segmentation` did.

    ``best_epoch`` is 0 (and no checkpoint exists) when training was stopped
    before its first epoch finished. ``best_f1`` is None when F1 is undefined
    (``f1_defined`` False; ``warning`` says why and the best epoch is that of the
    lowest validation loss).
    """

    checkpoint: Path
    best_f1: float | None
    best_epoch: int
    epochs_done: int
    stopped: bool
    history: list[dict[str, Any]]
    device: str
    f1_defined: bool = True
    warning: str | None = None


def train_segmentation(
    data: str | os.PathLike,
    out: str | os.PathLike,
    settings: TrainSettings,
    *,
    resume: bool = True,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> TrainingSummary:
    """Train a segmentation network on a simulated dataset; keep the best-F1 checkpoint.

    Parameters
    ----------
    data : str or Path
        Dataset folder made by ``napari-lowdose simulate``.
    out : str or Path
        Checkpoint file (``.safetensors``); its state file sits beside it.
    settings : TrainSettings
        Architecture and schedule.
    resume : bool
        Continue from ``<out>.state.pt`` if it exists (with matching settings).
    progress : callable, optional
        ``progress(step, total_steps)`` after every step (process 0).
    should_stop : callable, optional
        Polled between steps; True ends training after saving what is done.
    on_epoch : callable, optional
        Called with each :class:`EpochResult` (process 0).

    Returns
    -------
    TrainingSummary
    """
    out = Path(out)
    context = start_context(settings.device)
    try:
        return _train(Path(data), out, settings, context, resume, progress,
                      should_stop or (lambda: False), on_epoch)
    finally:
        end_context(context)


def _train(data: Path, out: Path, settings: TrainSettings, context: RunContext, resume: bool,
           progress: Callable[[int, int], None] | None, should_stop: Callable[[], bool],
           on_epoch: Callable[[EpochResult], None] | None) -> TrainingSummary:
    train_set = SegmentationDataset(data, "train", crop_px=settings.crop_px, augment=True,
                                    seed=settings.seed)
    val_crop = settings.val_crop_px if settings.val_crop_px is not None else settings.crop_px
    val_set = SegmentationDataset(data, "val", crop_px=val_crop, augment=False,
                                  max_items=settings.max_val_images)
    if len(val_set) == 0:
        raise TrainingError(f"{data} has no validation images; simulate it with "
                            "--val-fraction > 0 and at least 2 structures")
    model = _build(settings).to(context.device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, amsgrad=True)
    state_path, state = resume_or_start(out, settings, model, optimiser, resume, -math.inf,
                                        lambda: _initialise(model, settings))
    net = wrap_model(model, context)
    amp_dtype = _amp_dtype(settings, context.device)
    hooks = _Hooks(out, data, model, net, settings, context, train_set, val_set, amp_dtype)
    stopped = train_epochs(hooks, model, net, optimiser, train_set, settings, context,
                           state_path, state, amp_dtype, progress, should_stop, on_epoch)
    defined = all(row.get("f1_defined", True) for row in state.history)
    best_f1 = state.best_score if defined and state.best_epoch > 0 else None
    return TrainingSummary(out, best_f1, state.best_epoch, len(state.history), stopped,
                           state.history, describe_device(context.device), defined,
                           None if defined else f"{NO_TRUTH_PIXELS}; the checkpoint kept is "
                           "the epoch of lowest validation loss")


class _Hooks:
    """The segmentation trainer's part of the epoch loop (:func:`.loop.train_epochs`)."""

    def __init__(self, out: Path, data: Path, model: torch.nn.Module, net: torch.nn.Module,
                 settings: TrainSettings, context: RunContext, train_set: SegmentationDataset,
                 val_set: SegmentationDataset, amp_dtype: torch.dtype | None) -> None:
        self.out, self.data, self.model, self.net = out, data, model, net
        self.settings, self.context = settings, context
        self.train_set, self.val_set = train_set, val_set
        self.amp_dtype = amp_dtype
        self.loss_fn = torch.nn.BCEWithLogitsLoss()

    def batch_loss(self, batch: Any) -> torch.Tensor:
        images, masks = (t.to(self.context.device) for t in batch)
        with autocast(self.context.device, self.amp_dtype):
            return self.loss_fn(self.net(images), masks)

    def validate(self) -> Validation:
        val_loss, counts, grid = _validate(self.model, self.val_set, self.settings,
                                           self.context, self.loss_fn, self.amp_dtype)
        threshold, threshold_f1, f1_by_threshold = best_threshold(grid)
        if not counts.has_truth:  # F1 rates nothing: keep the lowest validation loss
            score = -val_loss
        else:
            score = threshold_f1 if self.settings.select_by == "calibrated" else counts.f1
        return Validation(score, (val_loss, counts, threshold, threshold_f1, f1_by_threshold),
                          tiebreak=-val_loss)

    def epoch_result(self, epoch: int, train_loss: float, validation: Validation,
                     seconds: float, best: bool) -> EpochResult:
        val_loss, counts, threshold, threshold_f1, _ = validation.details
        defined = counts.has_truth
        return EpochResult(epoch, train_loss, val_loss, counts.f1 if defined else None,
                           seconds, best, threshold, threshold_f1, defined)

    def save_best(self, result: EpochResult, validation: Validation,
                  history: list[dict[str, Any]], elapsed_s: float) -> None:
        _save_best(self.out, self.model, self.settings, self.data, self.train_set,
                   self.val_set, result, history, self.context, elapsed_s,
                   validation.details[-1])


def _build(settings: TrainSettings) -> torch.nn.Module:
    config = dict(settings.model_config)
    if settings.arch == "msdnet":
        config.setdefault("init_seed", settings.seed)
    else:
        torch.manual_seed(settings.seed)
    try:
        return build_model(settings.arch, config)
    except (TypeError, ValueError) as error:
        raise TrainingError(f"bad {settings.arch} settings: {error}") from error


def _initialise(model: torch.nn.Module, settings: TrainSettings) -> None:
    """Start from the weights of ``settings.init_from`` (fine-tuning)."""

    try:
        source, _ = load_model(settings.init_from, arch=settings.arch)
        model.load_state_dict(source.state_dict())
    except CheckpointError as error:
        raise TrainingError(f"cannot start from {settings.init_from}: {error}") from None
    except RuntimeError:
        raise TrainingError(f"{settings.init_from} is a {settings.arch} with other settings "
                            "than this run; leave out the architecture options to use its "
                            "own") from None


def _amp_dtype(settings: TrainSettings, device: torch.device) -> torch.dtype | None:
    if not settings.mixed_precision or settings.arch == "msdnet":
        return None
    return autocast_dtype(device)


@torch.no_grad()
def _validate(model: torch.nn.Module, val_set: SegmentationDataset, settings: TrainSettings,
              context: RunContext, loss_fn: torch.nn.Module, amp_dtype: torch.dtype | None
              ) -> tuple[float, BinaryCounts, np.ndarray]:
    """Validation loss, pooled counts at the threshold, and counts at every calibration one."""
    model.eval()
    n_t = len(CALIBRATION_THRESHOLDS)
    totals = torch.zeros(5 + 3 * n_t, dtype=torch.float64)  # tp, fp, fn, loss, images, grid
    for index in range(context.rank, len(val_set), context.world_size):
        image, mask = val_set[index]
        image, mask = image[None].to(context.device), mask[None].to(context.device)
        with autocast(context.device, amp_dtype):
            logits = model(image).float()
        probability = torch.sigmoid(logits)
        truth = mask >= 0.5
        counts = binary_counts(probability >= settings.threshold, truth)
        grid = counts_at_thresholds(probability, truth.cpu().numpy())
        totals += torch.tensor([counts.tp, counts.fp, counts.fn, float(loss_fn(logits, mask)),
                                1.0, *grid.ravel().tolist()], dtype=torch.float64)
    totals = sum_over_ranks(totals, context)
    tp, fp, fn, loss_sum, n = totals[:5].tolist()
    grid = totals[5:].numpy().astype(np.int64).reshape(n_t, 3)
    return loss_sum / max(n, 1.0), BinaryCounts(int(tp), int(fp), int(fn)), grid


def _save_best(out: Path, model: torch.nn.Module, settings: TrainSettings, data: Path,
               train_set: SegmentationDataset, val_set: SegmentationDataset,
               result: EpochResult, history: list[dict[str, Any]], context: RunContext,
               elapsed_s: float, f1_by_threshold: dict[str, float]) -> None:
    card = train_set.card
    metadata = {
        "normalisation": NORMALISATION,
        "dataset": {"path": str(data.resolve()), "card": card},
        "noise_model": card.get("recipe", {}).get("noise_model"),
        "validation": {
            "f1": result.val_f1,
            "f1_defined": result.f1_defined,
            "loss": result.val_loss,
            "epoch": result.epoch,
            "threshold": settings.threshold,
            "n_images": len(val_set),
            "crop_px": val_set.crop_px,
            "f1_by_threshold": f1_by_threshold,
            "calibrated_threshold": result.calibrated_threshold,
            "calibrated_f1": result.calibrated_f1,
        },
        "training": {
            "settings": settings.to_dict(),
            "epochs_done": result.epoch,
            "seconds": elapsed_s,
            "device": describe_device(context.device),
            "world_size": context.world_size,
            **training_versions(),
            "loss": "binary cross-entropy",
            "optimiser": f"Adam (AMSGrad), lr {settings.learning_rate}",
        },
        "history": history,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, arch=settings.arch, metadata=metadata)
