"""Threshold calibration of a trained segmentation network: the probability threshold of
best pooled pixel F1 on a dataset's validation images (Larsen et al. 2023 threshold at 0.9;
networks trained briefly are less confident, so their best threshold is recorded), written
into the model's metadata for ``segment --threshold model``.

Not the dose calibration (:mod:`napari_lowdose.io.dose_calibration`).
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.metrics import (
    CALIBRATION_THRESHOLDS,
    NO_TRUTH_PIXELS,
    best_threshold,
    counts_at_thresholds,
)
from ..device import describe_device, select_device
from ..models.checkpoint import (
    RESERVED_KEYS,
    SEGMENTATION_ARCHITECTURES,
    load_checkpoint,
    save_checkpoint,
)
from ..models.streaming import inference_autocast
from ..provenance import training_versions
from .data import SegmentationDataset
from .loop import TrainingError

__all__ = ["calibrate_threshold"]


def calibrate_threshold(
    model_file: str | os.PathLike,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    val_crop_px: int | str | None = "model",
    max_val_images: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Record a trained model's best probability threshold on a dataset's validation split.

    The validation images of ``data`` (as in training: central crops, no
    augmentation) go through the network; the pooled pixel F1 is computed at every
    threshold of :data:`.metrics.CALIBRATION_THRESHOLDS` and the best
    (:func:`.metrics.best_threshold`) is written into the model's ``validation``
    metadata (``f1_by_threshold``, ``calibrated_threshold``, ``calibrated_f1``),
    which ``segment --threshold model`` uses. Training records the same for a new
    model; this is for models trained before, or on another dataset.

    Parameters
    ----------
    model_file : str or Path
        A segmentation model file (MSD-net or U-net).
    data : str or Path
        Dataset folder made by ``napari-lowdose simulate`` (with validation images).
    out : str or Path, optional
        Where to write the model with its new metadata (default: ``model_file``,
        replaced atomically); the weights are unchanged.
    device : str, optional
        ``"auto"``, ``"cpu"``, ``"cuda"``, …
    val_crop_px : int or None or "model", optional
        Side of the central crops; ``None``: whole images; ``"model"`` (default): the
        model's own validation crop (whole images if it has none).
    max_val_images : int, optional
        Use the first images only.
    progress : callable, optional
        ``progress(done, total)`` after each image.

    Returns
    -------
    dict
        The new ``calibration`` record: threshold, F1, F1 by threshold, dataset.

    Raises
    ------
    TrainingError
        If the model is no segmentation network, or the dataset has no validation images
        or none with particle pixels (F1 undefined).
    """

    model_file, data = Path(model_file), Path(data)
    target = select_device(device)
    model, metadata = load_checkpoint(model_file, device=target)
    if metadata["arch"] not in SEGMENTATION_ARCHITECTURES:
        raise TrainingError(f"{model_file.name} holds a {metadata['arch']}, not a "
                            "segmentation network")
    validation = dict(metadata.get("validation") or {})
    crop = validation.get("crop_px") if val_crop_px == "model" else val_crop_px
    val_set = SegmentationDataset(data, "val", crop_px=crop, augment=False,
                                  max_items=max_val_images)
    if len(val_set) == 0:
        raise TrainingError(f"{data} has no validation images")
    grid = np.zeros((len(CALIBRATION_THRESHOLDS), 3), dtype=np.int64)
    with torch.no_grad():
        for index in range(len(val_set)):
            image, mask = val_set[index]
            with inference_autocast(target):  # as segmentation runs the network
                logits = model(image[None].to(target)).float()
            grid += counts_at_thresholds(torch.sigmoid(logits), (mask[None] >= 0.5).numpy())
            if progress is not None:
                progress(index + 1, len(val_set))
    threshold, f1, table = best_threshold(grid)
    if threshold is None:
        raise TrainingError(f"{data}: {NO_TRUTH_PIXELS}; no threshold can be calibrated")
    record = {"threshold": threshold, "f1": f1, "f1_by_threshold": table,
              "dataset": str(data.resolve()), "n_images": len(val_set), "crop_px": crop,
              "device": describe_device(target), **training_versions()}
    validation.update(f1_by_threshold=table, calibrated_threshold=threshold,
                      calibrated_f1=f1)
    document = {k: v for k, v in metadata.items() if k not in RESERVED_KEYS}
    document.update(validation=validation, calibration=record)
    save_checkpoint(Path(out) if out is not None else model_file, model.cpu(),
                    arch=metadata["arch"], metadata=document)
    return record
