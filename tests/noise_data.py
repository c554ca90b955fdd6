"""Test data for the noise fit from frame pairs: a particle field that fills the frame (no
vacuum anywhere), drifting by whole pixels, with Eq. 3 noise of known parameters."""

import numpy as np

from napari_lowdose.noise import apply_detector_noise

C0, C3, N0, GAIN, SAMPLING_A = 0.27, 2.25, 1.0, 10.0, 0.1
SIZE = 256


def particle_field(n: int, seed: int = 0) -> np.ndarray:
    """A particle filling the field: a crossed lattice with darker blobs, no vacuum."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n]
    psi = 1 + 0.35 * np.cos(2 * np.pi * (0.11 * x + 0.05 * y)) * np.cos(
        2 * np.pi * (0.03 * x - 0.13 * y))
    for _ in range(12):
        cy, cx = rng.uniform(0, n, 2)
        r = rng.uniform(8, 30)
        psi -= 0.3 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
    return np.clip(psi, 0.2, None)


def drifting_series(doses, *, drift_px=(1, -1), seed=0) -> np.ndarray:
    """Frames of one particle field drifting by whole pixels, independent Eq. 3 noise."""
    big = particle_field(SIZE + 16)
    frames = []
    for i, dose in enumerate(doses):
        dy, dx = 8 + i * drift_px[0], 8 + i * drift_px[1]
        clean = big[dy:dy + SIZE, dx:dx + SIZE]
        frames.append(apply_detector_noise(clean, dose, SAMPLING_A, c0=C0, c3=C3,
                                           n0_e_per_px=N0, counts_per_electron=GAIN,
                                           rng=1000 * seed + i))
    return np.stack(frames)
