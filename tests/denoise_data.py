"""Small, fast test data for the denoiser: clean lattice images and a fake simulated dataset.

The fake dataset has the layout of ``napari-lowdose simulate`` (card + cached exit
waves) with analytic phase-object waves instead of abTEM multislice, so tests of
:class:`napari_lowdose.train.denoise_simulated.SimulatedPairs` run in milliseconds.
"""

import json
from pathlib import Path

import numpy as np

from napari_lowdose.noise import apply_detector_noise
from napari_lowdose.simulate.recipe import CARD_FORMAT, DatasetRecipe
from napari_lowdose.simulate.structures import StructureRecipe
from napari_lowdose.simulate.synthetic_series import (
    SyntheticSeriesParameters,
    make_synthetic_dose_series,
)

SAMPLING_A = 0.3


def clean_lattice(shape=(96, 96)) -> np.ndarray:
    """Noise-free intensity (vacuum 1) of the synthetic lattice-fringed particle."""
    params = SyntheticSeriesParameters(n_frames=1, shape=tuple(shape), sampling_A=SAMPLING_A,
                                       particle_radius_A=0.35 * min(shape) * SAMPLING_A)
    return make_synthetic_dose_series(params).clean_intensity.astype(np.float32)


def noisy_copies(clean: np.ndarray, e_per_px: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` independent detector frames (Eq. 3) of ``clean`` at ``e_per_px``, electrons."""
    rng = np.random.default_rng(seed)
    dose = e_per_px / SAMPLING_A**2
    return np.stack([apply_detector_noise(clean, dose, SAMPLING_A, c0=0.5, c3=3.0,
                                          n0_e_per_px=0.01, rng=rng) for _ in range(n)])


def fake_simulated_dataset(root: Path, n_structures: int = 3, size_px: int = 48,
                           sampling_A: float = 0.25) -> Path:
    """A dataset folder with a card and cached phase-object exit waves (no abTEM)."""
    margin = 8
    cell = size_px + 2 * margin
    recipe = DatasetRecipe(
        n_structures=n_structures, image_epochs=1, seed=0,
        structure=StructureRecipe(size_px=size_px, sampling_range_A=(sampling_A, sampling_A),
                                  diameter_range_A=(9.0, 10.0),
                                  support_thickness_range_A=(6.0, 8.0), margin_A=2.0),
        val_fraction=0.34)
    root.mkdir(parents=True, exist_ok=True)
    card = {"format": CARD_FORMAT, "version": 1, "status": "complete",
            "recipe": recipe.to_dict()}
    (root / "card.json").write_text(json.dumps(card))
    y, x = np.mgrid[0:cell, 0:cell] * sampling_A
    for index in range(n_structures):
        rng = np.random.default_rng(index)
        angle = rng.uniform(0, np.pi)
        period = 2.35
        k = 2 * np.pi / period
        phase = 0.3 * (np.cos(k * (x * np.cos(angle) + y * np.sin(angle)))
                       + np.cos(k * (x * np.cos(angle + 1.23) + y * np.sin(angle + 1.23))))
        centre = cell * sampling_A / 2
        disk = ((x - centre) ** 2 + (y - centre) ** 2) < (0.3 * size_px * sampling_A) ** 2
        wave = np.exp(1j * phase * disk) * np.where(disk, 0.9, 1.0)
        entry = root / "cache" / f"s{index:06d}"
        entry.mkdir(parents=True)
        np.save(entry / "exit_wave.npy", wave.astype(np.complex64))
        np.save(entry / "mask.npy", disk[margin:-margin, margin:-margin].astype(np.uint8))
        (entry / "structure.traj").write_bytes(b"")
        geometry = {"sampling_A": sampling_A, "cell_px": cell, "size_px": size_px,
                    "margin_px": margin}
        (entry / "structure.json").write_text(json.dumps({"index": index,
                                                          "geometry": geometry}))
    return root
