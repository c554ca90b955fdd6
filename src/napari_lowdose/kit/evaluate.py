"""The kit's evaluation: every segmentation network on the validation battery, every
denoiser's PSNR against dose on the same series.

Battery series (:func:`~napari_lowdose.workflows.battery.battery_series`) are simulated
once per (condition, particle) and shared by all models; each model is scored with
:func:`~napari_lowdose.workflows.battery_runs.battery_row` (the inference and
thresholding of ``segment``) and summarised with
:func:`~napari_lowdose.workflows.battery_runs.battery_table`. A denoiser is judged as in
``benchmarks/eval_denoise_vs_dose.py``: every frame and its denoised version divided by the
frame's expected e⁻/px, against the noise-free intensity, PSNR over the reference's range.
"""

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..workflows.battery import BatteryCondition, battery_series
from ..workflows.battery_runs import battery_row, battery_table
from ..workflows.segmentation import sampling_plan
from .budget import Deadline

__all__ = ["SeriesBank", "denoiser_psnr", "evaluate_segmenters", "psnr_table"]


class SeriesBank:
    """Battery series simulated on first use and kept for every model."""

    def __init__(self, n_frames: int, size_px: int | None) -> None:
        self.n_frames, self.size_px = int(n_frames), size_px
        self._series: dict[tuple[str, int], Any] = {}

    def get(self, condition: BatteryCondition, particle: int) -> Any:
        key = (condition.name, int(particle))
        if key not in self._series:
            self._series[key] = battery_series(condition, particle, n_frames=self.n_frames,
                                               size_px=self.size_px)
        return self._series[key]


def evaluate_segmenters(models: dict[str, tuple[Any, float, dict]],
                        conditions: Sequence[BatteryCondition], particles: int,
                        bank: SeriesBank, *, device: str, deadline: Deadline,
                        log: logging.Logger) -> tuple[list[dict], list[dict]]:
    """Battery rows and table of every model (name → (network, threshold, metadata)).

    Each model sees the frames as ``segment`` gives them by default: resampled to its
    training sampling when that is the default (:func:`~napari_lowdose.workflows.
    segmentation.sampling_plan`).

    Stops starting new series when ``deadline`` passes; the table then holds what was
    scored (the log says what was left out).
    """
    rows = []
    for condition in conditions:
        for particle in range(int(particles)):
            for name, (model, threshold, metadata) in models.items():
                if deadline.expired():
                    log.warning("battery: out of time before %s %s %d", name, condition.name,
                                particle)
                    return rows, battery_table(rows, list(models), conditions)
                series = bank.get(condition, particle)
                zoom = sampling_plan(condition.sampling_A, metadata).zoom
                row = battery_row(name, condition, particle, threshold, model, series.frames,
                                  series.mask, series.dose_e_per_A2, device=device,
                                  batch_size=4, zoom=zoom)
                rows.append(row)
                log.info("battery %s %s particle %d: F1 %s (%.1f s)", name, condition.name,
                         particle, np.round(row["f1"], 2).tolist(), row["seconds"])
    return rows, battery_table(rows, list(models), conditions)


def denoiser_psnr(models: dict[str, Any], conditions: Sequence[BatteryCondition],
                  particles: int, bank: SeriesBank, *, device: str, deadline: Deadline,
                  log: logging.Logger) -> list[dict[str, Any]]:
    """Per-frame PSNR rows (model ``"raw"`` for the frame itself) on the battery series."""
    from ..analysis.image_quality import psnr
    from ..models.denoising import denoise_frames

    rows = []
    for condition in conditions:
        for particle in range(int(particles)):
            if deadline.expired():
                log.warning("denoiser PSNR: out of time before %s %d", condition.name, particle)
                return rows
            series = bank.get(condition, particle)
            e_per_px = series.dose_e_per_A2 * series.sampling_A**2
            outputs = {"raw": series.frames}
            for name, model in models.items():
                denoised = np.zeros_like(series.frames)
                for index, frame in denoise_frames(model, series.frames,
                                                   expected_e_per_px=e_per_px, device=device,
                                                   batch_size=4):
                    denoised[index] = frame
                outputs[name] = denoised
            for name, frames in outputs.items():
                for i, clean in enumerate(series.clean):
                    reference = clean.astype(np.float64)
                    data_range = float(np.ptp(reference)) or 1.0
                    rows.append({"model": name, "condition": condition.name,
                                 "particle": particle, "e_per_px": float(e_per_px[i]),
                                 "dose_e_per_A2": float(series.dose_e_per_A2[i]),
                                 "psnr_dB": psnr(frames[i] / e_per_px[i], reference,
                                                 data_range)})
    return rows


def psnr_table(rows: Sequence[dict[str, Any]],
               edges_e_per_px: Sequence[float] = (0.01, 0.3, 1, 3, 10, 30, 100, 1e4)
               ) -> list[dict[str, Any]]:
    """Mean PSNR per model and e⁻/px bin (one row per model and bin that has frames)."""
    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        for lo, hi in zip(edges_e_per_px[:-1], edges_e_per_px[1:], strict=True):
            values = [r["psnr_dB"] for r in mine if lo <= r["e_per_px"] < hi]
            if values:
                table.append({"model": model, "e_per_px_from": lo, "e_per_px_to": hi,
                              "frames": len(values), "psnr_dB": round(float(np.mean(values)),
                                                                      2)})
    return table
