"""Training the low-dose denoiser (Katsuno et al. 2021).

Katsuno et al. train end-to-end from short to long exposures of the same field
with an L1 loss and Adam at 10⁻⁴. :func:`train_denoiser` trains a
:class:`~napari_lowdose.models.denoiser.DenoiserUNet` on any dataset of
``(noisy, target, expected_e_per_px)`` items: real exposure pairs or Noise2Noise
series (:mod:`.denoise_measured`), or simulated pairs (:mod:`.denoise_simulated`);
see :mod:`.denoise_sources`. It keeps the checkpoint with the best validation PSNR
(against the clean or long-exposure target; against the other noisy frame for
Noise2Noise, which ranks models the same way since the target noise is
independent), saved with :func:`napari_lowdose.models.checkpoint.save_checkpoint`
(architecture ``"denoiser"``). The epoch loop, with resuming from
``<out>.state.pt``, is the segmentation trainer's (:mod:`.loop`; the state's
``best_f1`` entry holds the best validation PSNR in dB).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..analysis.denoise_quality import (
    QualityReadout,
    interval_text,
    quality_readout,
    ratio_interval,
)
from ..analysis.denoise_quality_runs import average_readouts
from ..analysis.image_quality import psnr, ssim
from ..device import autocast_dtype, describe_device, select_device
from ..models.checkpoint import CheckpointError, save_checkpoint
from ..models.denoiser import DenoiserUNet
from ..models.normalisation import denoiser_normalisation
from ..models.registry import load_denoiser
from ..provenance import training_versions
from .loop import (
    RunContext,
    RunSettings,
    TrainingError,
    Validation,
    autocast,
    resume_or_start,
    train_epochs,
)

__all__ = [
    "DenoiserEpochResult",
    "DenoiserSettings",
    "DenoiserTrainingSummary",
    "readout_line",
    "train_denoiser",
]

LOSSES = ("l1", "l2")


@dataclass
class DenoiserSettings(RunSettings):
    """How a denoiser is trained (Katsuno et al. 2021: L1 loss, Adam 10⁻⁴).

    Parameters
    ----------
    model_config : dict
        :class:`~napari_lowdose.models.denoiser.DenoiserUNet` settings
        (``base_channels``, ``levels``, ``kernel_size``, normalisation); unset ones
        take the defaults.
    epochs : int
        Passes over the training items.
    batch_size : int
        Crops per step.
    learning_rate : float
        Adam learning rate.
    loss : {"l1", "l2"}
        L1 (Katsuno et al.; clean or long-exposure targets) or L2 (mean-preserving;
        Noise2Noise at low dose).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    mixed_precision : bool
        Autocast (bf16 / fp16 with a gradient scaler) on CUDA.
    steps_per_epoch : int or None
        Cap on the steps of one epoch (None: one pass over the items).
    max_val_images : int or None
        Validate on the first items of the validation set only.
    seed : int
        Seed of the weights and of the order of the items.
    num_workers : int
        DataLoader worker processes.
    grad_clip_norm : float or None
        Clip the gradient norm of each step (None: no clipping).
    source : str
        Kind of training pairs (``"pairs"``, ``"simulated"``, ``"series"``); set by
        :func:`train_denoiser` from the dataset when empty.
    noise_weighted : bool
        Weight each crop's loss by its shot-noise level: ``√(e⁻/px)`` for L1,
        ``e⁻/px`` for L2 (errors in units of the Poisson noise of the input).
        Without it, crops of a few e⁻/px, whose errors are largest in
        normalised units, dominate the loss and the network learns little for
        well-exposed frames, which it can then make worse than they were.
    init_from : str or None
        A trained denoiser (shipped name or file) whose weights start the run
        (fine-tuning); its settings must equal ``model_config``'s.
    """

    model_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-4
    loss: str = "l1"
    device: str = "auto"
    mixed_precision: bool = True
    steps_per_epoch: int | None = None
    max_val_images: int | None = None
    seed: int = 0
    num_workers: int = 0
    grad_clip_norm: float | None = 1.0
    source: str = ""
    noise_weighted: bool = False
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError("epochs and batch size must be at least 1")
        if not self.learning_rate > 0:
            raise TrainingError("the learning rate must be positive")
        if self.loss not in LOSSES:
            raise TrainingError(f"the loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise TrainingError("steps per epoch must be at least 1")
        if self.max_val_images is not None and self.max_val_images < 1:
            raise TrainingError("max_val_images must be at least 1")
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise TrainingError("the gradient clipping norm must be positive")
        if self.num_workers < 0:
            raise TrainingError("num_workers must be >= 0")


@dataclass(frozen=True)
class DenoiserEpochResult:
    """Losses and validation quality after one epoch (PSNR in dB, normalised units).

    ``readout``: the unbiased-MSE quality readout of the validation (raw, best Gaussian,
    denoiser; :meth:`~napari_lowdose.analysis.denoise_quality.QualityReadout.to_dict`)
    when its targets are independent exposures moved by whole pixels, else None.
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_psnr_db: float
    val_ssim: float
    input_psnr_db: float
    input_ssim: float
    seconds: float
    best: bool
    readout: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)

    def readout_line(self) -> str:
        """The validation's quality readout in one line ("" when it has none)."""
        return readout_line(self.readout)


def readout_line(readout: dict[str, Any] | None) -> str:
    """One line of a readout dictionary (:meth:`QualityReadout.to_dict`, normalised units)."""
    if not readout:
        return ""
    raw, gauss, den = readout["raw"], readout["gaussian"], readout["denoised"]
    ratio = readout.get("ratio_to_gaussian")
    # A best Gaussian at or below zero (within the readout's error) gives no ratio.
    ratio_text = "no ratio" if ratio is None else f"{ratio:.2f}× Gaussian"
    if ratio is not None:
        ratio_text += interval_text(ratio_interval(
            den["mse_normalised"], gauss["mse_normalised"],
            readout["standard_error"] / readout["peak"] ** 2))
    return (f"held-out unbiased MSE ×10³: raw {1e3 * raw['mse_normalised']:.3g}, best "
            f"Gaussian (σ {gauss['sigma_px']:g} px) {1e3 * gauss['mse_normalised']:.3g}, "
            f"denoiser {1e3 * den['mse_normalised']:.3g} "
            f"(±{1e3 * readout['standard_error'] / readout['peak'] ** 2:.2g} common offset) "
            f"= {ratio_text}")


@dataclass(frozen=True)
class DenoiserTrainingSummary:
    """What :func:`train_denoiser` did (``best_epoch`` 0: no epoch finished, no file)."""

    checkpoint: Path
    best_psnr_db: float
    best_epoch: int
    epochs_done: int
    stopped: bool
    history: list[dict[str, Any]]
    device: str
    start_validation: dict[str, Any] | None = None

    def readout_lines(self) -> list[str]:
        """The held-out quality readout of the best epoch and of the starting model, one
        line each (none without independent held-out frames)."""
        lines = []
        best = next((row for row in self.history if row.get("epoch") == self.best_epoch),
                    None)
        if best and best.get("readout"):
            lines.append(f"best epoch: {readout_line(best['readout'])}")
        start = self.start_validation or {}
        if start.get("readout"):
            lines.append(f"start: {readout_line(start['readout'])}")
        return lines


def _noise_weighted_loss(estimate: torch.Tensor, target: torch.Tensor,
                         e_per_px: torch.Tensor, name: str) -> torch.Tensor:
    """Mean of the per-crop losses weighted by the crops' shot-noise level."""
    error = estimate - target
    if name == "l1":
        per_crop, weight = error.abs().mean(dim=(1, 2, 3)), e_per_px.float().sqrt()
    else:
        per_crop, weight = error.square().mean(dim=(1, 2, 3)), e_per_px.float()
    weight = weight.to(per_crop.device).reshape(per_crop.shape)
    return (per_crop * weight).sum() / weight.sum()


def _initialise(model: DenoiserUNet, init_from: str) -> None:
    """Start from the weights of a trained denoiser (fine-tuning)."""

    try:
        source, _ = load_denoiser(init_from)
    except CheckpointError as error:
        raise TrainingError(f"cannot start from {init_from}: {error}") from None
    if source.config != model.config:
        raise TrainingError(f"{init_from} is a denoiser with other settings than this run; "
                            "leave out the network options to use its own")
    model.load_state_dict(source.state_dict())


def _loss_fn(name: str) -> torch.nn.Module:
    return torch.nn.L1Loss() if name == "l1" else torch.nn.MSELoss()


def train_denoiser(
    source_dataset: Dataset,
    val_dataset: Dataset,
    out: str | os.PathLike,
    settings: DenoiserSettings,
    *,
    resume: bool = True,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[DenoiserEpochResult], None] | None = None,
    metadata: dict[str, Any] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> DenoiserTrainingSummary:
    """Train a :class:`~napari_lowdose.models.denoiser.DenoiserUNet`; keep the best-PSNR one.

    The loss is taken in normalised units (target / the input's expected counts
    per vacuum pixel), so every dose weighs alike. After every epoch the
    validation PSNR and SSIM (:mod:`napari_lowdose.analysis.image_quality`) of the
    estimate and of the noisy input against the target are computed, in
    normalised units, per item and averaged.

    Parameters
    ----------
    source_dataset : Dataset
        Training items ``(noisy, target, expected_e_per_px)``:
        :class:`~.denoise_measured.PairedExposures`,
        :class:`~.denoise_simulated.SimulatedPairs` or
        :class:`~.denoise_measured.Noise2NoiseSeries` (or any dataset of
        such triples; ``set_epoch`` and ``describe`` are used when present).
    val_dataset : Dataset
        Validation items of the same form (fixed, not augmented).
    out : str or Path
        Checkpoint file (``.safetensors``); ``<out>.json`` and ``<out>.state.pt``
        are written beside it.
    settings : DenoiserSettings
        Network and schedule.
    resume : bool, optional
        Continue from ``<out>.state.pt`` if it exists (with matching settings).
    progress : callable, optional
        ``progress(step, total_steps)`` after every step.
    should_stop : callable, optional
        Polled between steps; True ends training (the best checkpoint so far stays).
    on_epoch : callable, optional
        Called with each :class:`DenoiserEpochResult`.
    metadata : dict, optional
        Extra provenance stored in the checkpoint (e.g. the command line).
    on_start : callable, optional
        A fine-tune (``settings.init_from``) starting afresh first validates the
        starting model; this is called with that validation (the dictionary of an
        epoch's: ``loss``, ``psnr_db``, ``ssim``, their inputs', ``n_images`` and
        ``readout``, the unbiased-MSE quality readout when the validation targets are
        independent exposures moved by whole pixels, else None), which the checkpoint's
        metadata stores as ``validation_start``.

    Returns
    -------
    DenoiserTrainingSummary

    Raises
    ------
    TrainingError
        Empty datasets, bad settings, or a state file of another run.
    """
    out = Path(out)
    if len(source_dataset) == 0 or len(val_dataset) == 0:
        raise TrainingError("the training and validation sets must not be empty")
    if not settings.source:
        settings.source = str(getattr(source_dataset, "kind", "") or "custom")
    stop = should_stop or (lambda: False)
    context = RunContext(select_device(settings.device), 0, 1)
    device = context.device
    torch.manual_seed(settings.seed)
    try:
        model = DenoiserUNet(**settings.model_config)
    except (TypeError, ValueError) as error:
        raise TrainingError(f"bad denoiser settings: {error}") from error
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    state_path, state = resume_or_start(out, settings, model, optimiser, resume, -math.inf,
                                        lambda: _initialise(model, settings.init_from))
    amp_dtype = autocast_dtype(device) if settings.mixed_precision else None
    start = None
    if settings.init_from and not state.history:
        start = _validate(model, val_dataset, settings, device, _loss_fn(settings.loss),
                          amp_dtype)
        model.train()
        if on_start is not None:
            on_start(start)
    hooks = _Hooks(out, model, settings, device, source_dataset, val_dataset, amp_dtype,
                   metadata, start)
    stopped = train_epochs(hooks, model, model, optimiser, source_dataset, settings, context,
                           state_path, state, amp_dtype, progress, stop, on_epoch)
    return DenoiserTrainingSummary(out, state.best_score, state.best_epoch, len(state.history),
                                   stopped, state.history, describe_device(device), start)


class _Hooks:
    """The denoiser trainer's part of the epoch loop (:func:`.loop.train_epochs`)."""

    def __init__(self, out: Path, model: DenoiserUNet, settings: DenoiserSettings,
                 device: torch.device, source_dataset: Dataset, val_dataset: Dataset,
                 amp_dtype: torch.dtype | None, metadata: dict[str, Any] | None,
                 start: dict[str, Any] | None = None) -> None:
        self.out, self.model, self.settings, self.device = out, model, settings, device
        self.source_dataset, self.val_dataset = source_dataset, val_dataset
        self.amp_dtype = amp_dtype
        self.metadata = dict(metadata or {})
        if start is not None:
            self.metadata["validation_start"] = start
        self.loss_fn = _loss_fn(settings.loss)

    def batch_loss(self, batch: Any) -> torch.Tensor:
        noisy, target, e_per_px = batch
        noisy, target = noisy.to(self.device), target.to(self.device)
        inputs, scale = self.model.normalise(noisy[:, 0], e_per_px.to(self.device))
        with autocast(self.device, self.amp_dtype):
            estimate = self.model(inputs)
        if self.settings.noise_weighted:
            return _noise_weighted_loss(estimate.float(), target / scale,
                                        e_per_px.to(self.device), self.settings.loss)
        return self.loss_fn(estimate.float(), target / scale)

    def validate(self) -> Validation:
        quality = _validate(self.model, self.val_dataset, self.settings, self.device,
                            self.loss_fn, self.amp_dtype)
        return Validation(quality["psnr_db"], quality)

    def epoch_result(self, epoch: int, train_loss: float, validation: Validation,
                     seconds: float, best: bool) -> DenoiserEpochResult:
        quality = validation.details
        return DenoiserEpochResult(
            epoch, train_loss, quality["loss"], quality["psnr_db"], quality["ssim"],
            quality["input_psnr_db"], quality["input_ssim"], seconds, best,
            quality.get("readout"))

    def save_best(self, result: DenoiserEpochResult, validation: Validation,
                  history: list[dict[str, Any]], elapsed_s: float) -> None:
        _save_best(self.out, self.model, self.settings, self.source_dataset,
                   self.val_dataset, result, validation.details, history, self.device,
                   elapsed_s, self.metadata)


@torch.no_grad()
def _validate(model: DenoiserUNet, val_dataset: Dataset, settings: DenoiserSettings,
              device: torch.device, loss_fn: torch.nn.Module,
              amp_dtype: torch.dtype | None) -> dict[str, Any]:
    model.eval()
    n = len(val_dataset)
    if settings.max_val_images is not None:
        n = min(n, settings.max_val_images)
    totals = {"loss": 0.0, "psnr_db": 0.0, "ssim": 0.0, "input_psnr_db": 0.0,
              "input_ssim": 0.0}
    readouts: list[QualityReadout] = []
    independent = bool(getattr(val_dataset, "independent_target", False))
    for index in range(n):
        noisy, target, e_per_px = val_dataset[index]
        noisy, target = noisy.to(device), target.to(device)
        inputs, scale = model.normalise(noisy, e_per_px.reshape(1).to(device))
        with autocast(device, amp_dtype):
            estimate = model(inputs).float()
        reference = target[None] / scale
        totals["loss"] += float(loss_fn(estimate, reference))
        ref = reference[0, 0].cpu().numpy()
        est = estimate[0, 0].cpu().numpy()
        raw = (noisy[None] / scale)[0, 0].cpu().numpy()
        span = float(ref.max() - ref.min()) or 1.0
        totals["psnr_db"] += psnr(est, ref, data_range=span)
        totals["input_psnr_db"] += psnr(raw, ref, data_range=span)
        if independent:
            # Normalised units: the peak (expected counts per vacuum pixel) is 1.
            readouts.append(quality_readout(raw, est, ref, register=False, peak=1.0))
        if min(ref.shape) >= 11:
            totals["ssim"] += ssim(est, ref, data_range=span)
            totals["input_ssim"] += ssim(raw, ref, data_range=span)
        else:
            totals["ssim"] = totals["input_ssim"] = math.nan
    quality = {key: value / n for key, value in totals.items()}
    quality["n_images"] = n
    quality["readout"] = average_readouts(readouts).to_dict() if readouts else None
    return quality


def _save_best(out: Path, model: DenoiserUNet, settings: DenoiserSettings,
               source_dataset: Dataset, val_dataset: Dataset, result: DenoiserEpochResult,
               quality: dict[str, Any], history: list[dict[str, Any]], device: torch.device,
               elapsed_s: float, extra: dict[str, Any] | None) -> None:
    source = source_dataset.describe() if hasattr(source_dataset, "describe") else {}
    validation = val_dataset.describe() if hasattr(val_dataset, "describe") else {}
    card = getattr(source_dataset, "card", None)
    metadata: dict[str, Any] = {
        "normalisation": denoiser_normalisation(model.config),
        "source": source,
        "dataset": ({"path": source.get("path"), "card": card} if card is not None else None),
        "noise_model": source.get("noise_model"),
        "validation": {
            "psnr_db": quality["psnr_db"],
            "ssim": quality["ssim"],
            "input_psnr_db": quality["input_psnr_db"],
            "input_ssim": quality["input_ssim"],
            "loss": quality["loss"],
            "epoch": result.epoch,
            "n_images": quality["n_images"],
            "readout": quality.get("readout"),
            "units": "normalised (divided by the input's expected counts per vacuum pixel); "
                     "data range = the reference's max - min per image",
            "set": validation,
        },
        "training": {
            "settings": settings.to_dict(),
            "epochs_done": result.epoch,
            "seconds": elapsed_s,
            "device": describe_device(device),
            **training_versions(),
            "loss": {"l1": "L1 (mean absolute error)", "l2": "L2 (mean squared error)"}[
                settings.loss] + " in normalised units",
            "optimiser": f"Adam, lr {settings.learning_rate}",
            "reference": "Katsuno et al. 2021 (L1, Adam 1e-4, percentile clipping)",
        },
        "history": history,
    }
    metadata.update(extra or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, arch="denoiser", metadata=metadata)
