"""A synthetic HR-TEM dose series with known truth, made in about a second.

Vacuum with one lattice-textured particle, frame dose rising log-uniformly
(default 10 → 10⁴ e⁻/Å²), imaged through the detector model of Larsen et al.
(2023): shot noise blurred by the MTF of Eq. 1 plus Poisson readout noise,
Eq. 3 (:func:`napari_lowdose.noise.apply_detector_noise`). Because every
parameter is known, it serves as demo data and as ground truth for tests
(noise fits, segmentation, area-versus-dose).

This is not a multislice simulation (see ``simulate`` for abTEM); the particle
is a soft-edged disk whose intensity carries the two {111} and the {200}
lattice fringes of Au seen along [110].
"""

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from ..noise import apply_detector_noise

__all__ = ["SyntheticDoseSeries", "SyntheticSeriesParameters", "make_synthetic_dose_series"]

#: Au lattice parameter (Å); {111} and {200} spacings in the [110] projection.
AU_LATTICE_A = 4.078


@dataclass(frozen=True)
class SyntheticSeriesParameters:
    """Everything the synthetic series is made with (all recorded in metadata)."""

    n_frames: int = 50
    shape: tuple[int, int] = (256, 256)
    sampling_A: float = 0.3
    dose_min_e_per_A2: float = 10.0
    dose_max_e_per_A2: float = 1e4
    particle_radius_A: float = 20.0
    particle_contrast: float = 0.35
    c0: float = 0.27
    c3: float = 2.25
    n0_e_per_px: float = 0.01
    counts_per_electron: float = 2.0
    seed: int = 0


@dataclass
class SyntheticDoseSeries:
    """The synthetic series and its ground truth.

    Attributes
    ----------
    counts : ndarray of float32, shape (n_frames, ny, nx)
        Detector counts (what a camera would record).
    clean_intensity : ndarray of float32, shape (ny, nx)
        Noise-free intensity, 1 in vacuum.
    particle_mask : ndarray of uint8, shape (ny, nx)
        1 inside the particle, 0 elsewhere.
    dose_e_per_A2 : ndarray of float64, shape (n_frames,)
        Frame dose.
    parameters : SyntheticSeriesParameters
    """

    counts: np.ndarray
    clean_intensity: np.ndarray
    particle_mask: np.ndarray
    dose_e_per_A2: np.ndarray
    parameters: SyntheticSeriesParameters = field(default_factory=SyntheticSeriesParameters)

    def metadata(self) -> dict:
        """JSON-serialisable record of how the series was made."""
        record = asdict(self.parameters)
        record["shape"] = list(self.parameters.shape)
        record["generator"] = "napari_lowdose.simulate.synthetic_series"
        record["noise_model"] = "Larsen et al. 2023 Eq. 3 (MTF Eq. 1, C = 0)"
        return record


def _particle(params: SyntheticSeriesParameters, rng: np.random.Generator):
    ny, nx = params.shape
    s = params.sampling_A
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64) * s
    cy = (ny * s) * rng.uniform(0.4, 0.6)
    cx = (nx * s) * rng.uniform(0.4, 0.6)
    # A slightly faceted outline: radius modulated with the 6-fold symmetry of [110].
    theta = np.arctan2(y - cy, x - cx)
    phase = rng.uniform(0, 2 * np.pi)
    radius = params.particle_radius_A * (1 + 0.06 * np.cos(6 * theta + phase))
    inside = np.hypot(y - cy, x - cx) <= radius
    soft = ndimage.gaussian_filter(inside.astype(np.float64), sigma=1.0)
    # Lattice fringes of Au along [110]: two {111} (70.5° apart) and one {200}.
    rotation = rng.uniform(0, np.pi)
    d111 = AU_LATTICE_A / np.sqrt(3)
    d200 = AU_LATTICE_A / 2
    fringes = np.zeros_like(y)
    for angle, spacing in ((0.0, d111), (np.deg2rad(70.53), d111), (np.deg2rad(35.26 + 90), d200)):
        k = 2 * np.pi / spacing
        a = rotation + angle
        fringes += np.cos(k * ((x - cx) * np.cos(a) + (y - cy) * np.sin(a)))
    texture = 0.5 + fringes / 6.0  # in [0, 1]
    intensity = 1.0 - params.particle_contrast * soft * (0.4 + 0.6 * texture)
    return intensity.astype(np.float32), inside.astype(np.uint8)


def make_synthetic_dose_series(
    params: SyntheticSeriesParameters | None = None, **overrides
) -> SyntheticDoseSeries:
    """Make a synthetic dose series of one particle in vacuum.

    Parameters
    ----------
    params : SyntheticSeriesParameters, optional
        All parameters; defaults give 50 frames of 256² px at 0.3 Å/px over
        10–10⁴ e⁻/Å², MTF c0 = 0.27, c3 = 2.25, N0 = 0.01 e⁻/px (the values
        Larsen et al. fitted to a Gatan OneView).
    **overrides
        Fields of :class:`SyntheticSeriesParameters` to change.

    Returns
    -------
    SyntheticDoseSeries
    """
    params = params or SyntheticSeriesParameters()
    if overrides:
        params = SyntheticSeriesParameters(**{**asdict(params), **overrides})
    if params.n_frames < 1:
        raise ValueError("n_frames must be at least 1")
    if not 0 < params.dose_min_e_per_A2 <= params.dose_max_e_per_A2:
        raise ValueError("need 0 < dose_min_e_per_A2 <= dose_max_e_per_A2")
    rng = np.random.default_rng(params.seed)
    clean, mask = _particle(params, rng)
    dose = np.geomspace(params.dose_min_e_per_A2, params.dose_max_e_per_A2, params.n_frames)
    counts = apply_detector_noise(
        np.broadcast_to(clean, (params.n_frames,) + clean.shape),
        dose,
        params.sampling_A,
        c0=params.c0,
        c3=params.c3,
        n0_e_per_px=params.n0_e_per_px,
        counts_per_electron=params.counts_per_electron,
        rng=rng,
    )
    return SyntheticDoseSeries(counts, clean, mask, dose, params)
