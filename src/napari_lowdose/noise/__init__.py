"""Detector noise: MTF and readout-noise models of Larsen et al. (2023).

Pure numpy/scipy; importable without Qt or napari.

* :mod:`.mtf` — the normalised MTF, Eq. 1, on a ``q / q_N`` grid.
* :mod:`.synthesis` — apply the noise model, Eq. 3, to clean images.
* :mod:`.spectrum` — azimuthally averaged vacuum spectra (magnitude or power).
* :mod:`.spectrum_models` — the spectrum models fitted to them: Eq. 4
  ("paper") and the expected power spectrum of Eq. 3 ("physical").
* :mod:`.solver` — the batched Levenberg–Marquardt that fits them.
* :mod:`.fitting` — the per-frame fit pipeline (:func:`fit_noise`).
* :mod:`.fit_result` — its result and the per-frame CSV table.
* :mod:`.readout` — the series readout noise N0 of Eq. 2 and the Eq. 2 plot data.
* :mod:`.model` — noise models (fitted, MTF 4 training recipe) with seeded
  sampling; :mod:`.model_io` — their JSON file format.
* :mod:`.presets` — the Table 3 presets MTF 1 … MTF 5.
* :mod:`.vacuum` — is a fitted region vacuum (:func:`vacuum_check`), and which corner of a
  frame is (:func:`vacuum_corner`).
"""

from .fit_result import NoiseFitResult, fit_table_csv
from .fitted_model import training_model_from_fit
from .fitting import C0_BOUNDS, C3_BOUNDS, fit_noise, fit_noise_frame, fit_spectra
from .model import NoiseDraw, NoiseModel
from .mtf import mtf_normalised, normalised_frequency_grid
from .presets import PRESETS, preset
from .readout import Eq2PlotData, ReadoutFit, eq2_plot_data, fit_readout_noise
from .spectrum import RadialSpectrum, radial_spectrum
from .spectrum_models import paper_spectrum_model, physical_spectrum_model
from .synthesis import apply_detector_noise
from .vacuum import VacuumCheck, corner_scores, no_fit_reason, vacuum_check, vacuum_corner

__all__ = [
    "C0_BOUNDS",
    "C3_BOUNDS",
    "PRESETS",
    "Eq2PlotData",
    "NoiseDraw",
    "NoiseFitResult",
    "NoiseModel",
    "RadialSpectrum",
    "ReadoutFit",
    "VacuumCheck",
    "apply_detector_noise",
    "corner_scores",
    "eq2_plot_data",
    "fit_noise",
    "fit_noise_frame",
    "fit_readout_noise",
    "fit_spectra",
    "fit_table_csv",
    "mtf_normalised",
    "no_fit_reason",
    "normalised_frequency_grid",
    "paper_spectrum_model",
    "physical_spectrum_model",
    "preset",
    "radial_spectrum",
    "training_model_from_fit",
    "vacuum_check",
    "vacuum_corner",
]
