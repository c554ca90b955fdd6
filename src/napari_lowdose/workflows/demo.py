"""The demo's record and summaries: what ``napari-lowdose demo`` measures on the simulated
series it makes (Larsen et al. SOI Fig. 9), and what ``demo --gui`` reads back."""

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.consensus import lowest_dose_holding
from ..io.units import electrons_per_pixel, pixel_area_A2

__all__ = ["DEMO_RECORD", "DENOISE_REPORT_E_PER_PX", "F1_HIGH_DOSE_E_PER_A2",
           "denoising_gain", "f1_summary", "truth_area_nm2"]

#: The record a finished demo folder holds (and ``demo --gui`` reads).
DEMO_RECORD = "demo.json"

#: F1 is summarised over the frames at and above this dose (the paper's high-dose regime).
F1_HIGH_DOSE_E_PER_A2 = 200.0

#: The frame of the demo series whose denoising is reported: the one nearest this level
#: (Katsuno et al. 2021 denoise ~5 e⁻/px frames).
DENOISE_REPORT_E_PER_PX = 5.0


def f1_summary(f1_table: Path) -> dict[str, Any]:
    """Median and worst F1 at high dose, and the dose from which every frame has F1 ≥ 0.5.

    Parameters
    ----------
    f1_table : Path
        ``f1_vs_dose.csv`` of ``napari-lowdose evaluate``.

    Returns
    -------
    dict
    """
    with open(f1_table, newline="", encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    dose = np.array([float(row["dose_e_per_A2"]) for row in rows])
    f1 = np.array([float(row["f1"]) for row in rows])
    high = dose >= F1_HIGH_DOSE_E_PER_A2
    return {
        "median_f1_at_200_e_per_A2_and_above": float(np.median(f1[high])) if high.any() else None,
        "worst_f1_at_200_e_per_A2_and_above": float(np.min(f1[high])) if high.any() else None,
        # The lowest doses from which every frame has F1 ≥ 0.5 / ≥ 0.9 against the truth:
        # what the readouts against the consensus estimate without a truth.
        "f1_at_least_half_from_e_per_A2": lowest_dose_holding(dose, f1 >= 0.5),
        "f1_at_least_0.9_from_e_per_A2": lowest_dose_holding(dose, f1 >= 0.9),
    }


def denoising_gain(series: Any, denoised: np.ndarray) -> dict[str, Any]:
    """PSNR of the raw and denoised frame nearest 5 e⁻/px against the noise-free one.

    Parameters
    ----------
    series : SimulatedDoseSeries
        The demo series (frames in electrons, the noise-free ``clean`` frames).
    denoised : array-like, shape (frames, y, x)
        The denoised series.

    Returns
    -------
    dict
        ``frame``, ``e_per_px``, ``raw_psnr_dB`` and ``denoised_psnr_dB``.
    """
    from ..analysis.image_quality import psnr

    e_per_px = electrons_per_pixel(series.dose_e_per_A2, series.sampling_A)
    index = int(np.argmin(np.abs(np.log(e_per_px / DENOISE_REPORT_E_PER_PX))))
    reference = series.clean[index] * e_per_px[index]
    frame = np.asarray(denoised[index], dtype=np.float32)
    return {"frame": index, "e_per_px": float(e_per_px[index]),
            "raw_psnr_dB": psnr(series.frames[index], reference),
            "denoised_psnr_dB": psnr(frame, reference)}


def truth_area_nm2(series: Any) -> float:
    """Area of the demo particle's true mask in nm²."""
    return float(series.mask.sum()) * pixel_area_A2(float(series.sampling_A)) / 100.0
