"""Detector noise: MTF and readout-noise models of Larsen et al. (2023).

Pure numpy/scipy; importable without Qt or napari.
"""

from .mtf import mtf_normalised, normalised_frequency_grid
from .synthesis import apply_detector_noise

__all__ = ["apply_detector_noise", "mtf_normalised", "normalised_frequency_grid"]
