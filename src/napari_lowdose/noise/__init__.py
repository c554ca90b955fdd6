"""Detector noise: MTF and readout-noise models of Larsen et al. (2023).

Pure numpy/scipy; importable without Qt or napari.

* :mod:`.mtf` — the normalised MTF, Eq. 1, on a ``q / q_N`` grid.
* :mod:`.synthesis` — apply the noise model, Eq. 3, to clean images.
* :mod:`.spectrum` — azimuthally averaged vacuum spectra (magnitude or power).
* :mod:`.fitting` — per-frame fits of Eq. 4 ("paper") or Eq. 3 ("physical")
  and the series readout noise of Eq. 2.
* :mod:`.model` — noise models (Table 3 presets, fitted, MTF 4 training
  recipe) with JSON I/O and seeded sampling.
"""

from .fitting import (
    C0_BOUNDS,
    C3_BOUNDS,
    NoiseFitResult,
    ReadoutFit,
    fit_noise,
    fit_noise_frame,
    fit_readout_noise,
    fit_spectra,
    fit_table_csv,
    paper_spectrum_model,
    physical_spectrum_model,
)
from .model import PRESETS, NoiseDraw, NoiseModel, preset, training_model_from_fit
from .mtf import mtf_normalised, normalised_frequency_grid
from .spectrum import RadialSpectrum, radial_spectrum
from .synthesis import apply_detector_noise

__all__ = [
    "C0_BOUNDS",
    "C3_BOUNDS",
    "PRESETS",
    "NoiseDraw",
    "NoiseFitResult",
    "NoiseModel",
    "RadialSpectrum",
    "ReadoutFit",
    "apply_detector_noise",
    "fit_noise",
    "fit_noise_frame",
    "fit_readout_noise",
    "fit_spectra",
    "fit_table_csv",
    "mtf_normalised",
    "normalised_frequency_grid",
    "paper_spectrum_model",
    "physical_spectrum_model",
    "preset",
    "radial_spectrum",
    "training_model_from_fit",
]
