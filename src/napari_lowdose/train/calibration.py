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

__all__ = ["MIN_CALIBRATION_IMAGES", "calibrate_threshold"]

#: Fewer validation images than this give a threshold that rests on a handful of
#: particles: it is still recorded, with a warning (the shipped models were calibrated on
#: thousands).
MIN_CALIBRATION_IMAGES = 16


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
    previous = metadata.get("calibration") or _training_calibration(validation)
    warnings = []
    if len(val_set) < MIN_CALIBRATION_IMAGES:
        warnings.append(f"the threshold rests on {len(val_set)} validation image(s) (fewer "
                        f"than {MIN_CALIBRATION_IMAGES}); use a larger dataset of the "
                        "conditions you segment")
    record = {"threshold": threshold, "f1": f1, "f1_by_threshold": table,
              "dataset": str(data.resolve()), "n_images": len(val_set), "crop_px": crop,
              "device": describe_device(target), "warnings": warnings,
              # what it replaced, to go back to (the record of a model is all it keeps)
              "previous": _short_calibration(previous), **training_versions()}
    validation.update(f1_by_threshold=table, calibrated_threshold=threshold,
                      calibrated_f1=f1)
    document = {k: v for k, v in metadata.items() if k not in RESERVED_KEYS}
    document.update(validation=validation, calibration=record)
    save_checkpoint(Path(out) if out is not None else model_file, model.cpu(),
                    arch=metadata["arch"], metadata=document)
    return record


def _training_calibration(validation: dict[str, Any]) -> dict[str, Any] | None:
    """The threshold training calibrated (validation metadata), as a calibration record."""
    if validation.get("calibrated_threshold") is None:
        return None
    return {"threshold": validation["calibrated_threshold"],
            "f1": validation.get("calibrated_f1"), "dataset": "its training validation",
            "n_images": validation.get("n_images")}


def _short_calibration(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Threshold, F1, dataset and number of images of a calibration record (None: none)."""
    if not record:
        return None
    return {key: record.get(key) for key in ("threshold", "f1", "dataset", "n_images")}
