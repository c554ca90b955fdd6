"""One simulated particle imaged as a dose series (Larsen et al. 2023, SOI Fig. 9).

The validation series of Larsen et al. (2023), SOI Fig. 9: one
CeO2-supported Au particle (:mod:`.structures`), one abTEM multislice exit wave
at 300 keV (:mod:`.exitwaves`), imaged frame after frame with the dose rising
log-uniformly over 10¹…10⁴ e⁻/Å², narrow optics (defocus 48–50 Å, Cs 7–8 µm,
focal spread 5–6 Å, blur 0.1–0.2 Å: :data:`~.optics.SERIES_OPTICS`) and the
MTF 3 detector model (Table 3, Eq. 3). The truth mask is the convex hull of
the projected Au atoms, so F1 per frame is defined exactly.

The paper's series has 1000 frames of 640² px; the defaults here (50 frames of
256² px at 0.075 Å/px) make one in about a second once abTEM is loaded, for the
sample data and for tests; pass larger numbers for a paper-scale series.

Seeding: the structure is drawn from ``SeedSequence(seed, spawn_key=(0, 2))``
and the imaging from ``SeedSequence(seed, spawn_key=(0, 3))``, streams disjoint
from those of a training dataset (``(i, 0)`` and ``(i, 1, j)``, see
:mod:`.dataset`), so a series never repeats a training structure even with
the same seed. The same seed gives the same series bit for bit.

:func:`preview_clean_image` and :func:`preview_noisy_image` image one structure
of a dataset recipe (the widget's preview) with the same draws as the dataset.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..noise.model import NoiseModel
from ..noise.presets import preset
from .exitwaves import CachedStructure, MultisliceSettings, compute_exit_wave
from .imaging import clean_image, make_dose_series, noisy_image
from .optics import SERIES_OPTICS, TABLE1_OPTICS, Optics, OpticsRanges, draw_optics
from .structures import StructureRecipe, build_supported_particle

__all__ = [
    "SERIES_SAMPLING_A",
    "SimulatedDoseSeries",
    "preview_clean_image",
    "preview_noisy_image",
    "series_recipe",
    "simulate_dose_series",
]

#: Pixel size of the default series (Å/px): the middle of Table 1's 0.07–0.08 Å/px.
SERIES_SAMPLING_A = 0.075
#: Particle diameter as a fraction of the field side (the structures clip at 0.8).
_DIAMETER_FRACTION = (0.625, 0.8)


@dataclass
class SimulatedDoseSeries:
    """A simulated dose series of one supported particle and its exact truth.

    Attributes
    ----------
    frames : ndarray of float32, shape (n_frames, ny, nx)
        Detector frames in electrons per pixel (Eq. 3, one count per electron).
    clean : ndarray of float32, shape (n_frames, ny, nx)
        Noise-free intensity of every frame (vacuum 1; optics differ slightly
        from frame to frame).
    mask : ndarray of uint8, shape (ny, nx)
        Truth label: 1 inside the convex hull of the projected Au atoms.
    dose_e_per_A2 : ndarray of float64, shape (n_frames,)
        Frame dose, log-spaced and increasing.
    sampling_A : float
        Pixel size in Å/px.
    records : list of dict
        Per frame: optics, dose, electrons per pixel and noise parameters
        (see :func:`~.imaging.make_dose_series`).
    structure : dict
        The drawn structure parameters (diameter, tilt, rotation, position,
        support thickness, atom counts, grid).
    seed : int
        Seed of the series.
    recipe : StructureRecipe
        Ranges the structure was drawn from.
    noise_model : NoiseModel
        Detector model the noise was drawn from.
    optics_ranges : OpticsRanges
        Ranges the per-frame optics were drawn from.
    """

    frames: np.ndarray
    clean: np.ndarray
    mask: np.ndarray
    dose_e_per_A2: np.ndarray
    sampling_A: float
    records: list[dict[str, Any]]
    structure: dict[str, Any]
    seed: int
    recipe: StructureRecipe
    noise_model: NoiseModel
    optics_ranges: OpticsRanges = field(default=SERIES_OPTICS)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])

    def vacuum_corner(self, size_px: int = 64) -> tuple[int, int, int, int] | None:
        """The corner square of the field that is most nearly vacuum, if any is.

        A microscopist draws the vacuum region for the noise fit (Larsen et al.
        2023, Eqs. 1–4) by eye; here the noise-free reference decides: of the
        four ``size_px`` corner squares, the one whose clean intensity departs
        least from the vacuum level 1 in every frame.

        Parameters
        ----------
        size_px : int
            Side of the square in pixels.

        Returns
        -------
        (y0, y1, x0, x1) or None
            Pixel bounds (end exclusive), or None when no corner square is
            vacuum to within 2 % in every frame (the particle or the support
            reaches every corner).
        """
        ny, nx = self.frames.shape[1:]
        size = int(size_px)
        if size > min(ny, nx):
            return None
        best, best_departure = None, np.inf
        for y0 in (0, ny - size):
            for x0 in (0, nx - size):
                square = self.clean[:, y0:y0 + size, x0:x0 + size]
                departure = float(np.max(np.abs(square - 1.0)))
                if departure < best_departure:
                    best, best_departure = (y0, y0 + size, x0, x0 + size), departure
        return best if best_departure <= 0.02 else None

    def metadata(self) -> dict[str, Any]:
        """JSON-ready record of how the series was made (for layer metadata)."""
        return {
            "generator": "napari_lowdose.simulate.series",
            "reference": ("Larsen et al. (2023), Section 2 and Table 1 (recipe), "
                          "SOI Fig. 9 (dose series)"),
            "seed": int(self.seed),
            "n_frames": self.n_frames,
            "shape": [int(v) for v in self.frames.shape[1:]],
            "sampling_A": float(self.sampling_A),
            "dose_range_e_per_A2": [float(self.dose_e_per_A2[0]), float(self.dose_e_per_A2[-1])],
            "recipe": self.recipe.to_dict(),
            "optics_ranges": self.optics_ranges.to_dict(),
            "noise_model": self.noise_model.name,
            "noise": {k: self.records[0][k] for k in ("c0", "c3", "n0_e_per_px")},
            "mask_fraction": float(self.mask.mean()),
            "structure": self.structure,
        }


def series_recipe(size_px: int = 256, sampling_A: float = SERIES_SAMPLING_A) -> StructureRecipe:
    """Structure recipe of a series: fixed pixel size, a particle sized for the field.

    Parameters
    ----------
    size_px : int
        Side of the field in pixels.
    sampling_A : float
        Pixel size in Å/px (fixed, for a reproducible calibration).

    Returns
    -------
    StructureRecipe
        Particle diameter 62.5–80 % of the field side (12–15.4 Å for 256 px at
        0.075 Å/px), other ranges as in Larsen et al.
    """
    field_A = int(size_px) * float(sampling_A)
    low, high = (fraction * field_A for fraction in _DIAMETER_FRACTION)
    return StructureRecipe(
        size_px=int(size_px),
        sampling_range_A=(float(sampling_A), float(sampling_A)),
        diameter_range_A=(low, high),
    )


def _stream(seed: int, key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0, int(key))))


def simulate_dose_series(
    seed: int = 0,
    *,
    n_frames: int = 50,
    size_px: int = 256,
    dose_range_e_per_A2: tuple[float, float] = (10.0, 1e4),
    recipe: StructureRecipe | None = None,
    noise_model: NoiseModel | None = None,
    optics_ranges: OpticsRanges = SERIES_OPTICS,
    settings: MultisliceSettings | None = None,
) -> SimulatedDoseSeries:
    """Simulate a dose series of one CeO2-supported Au particle (SOI Fig. 9).

    Parameters
    ----------
    seed : int
        Seed; the same seed gives the same series bit for bit.
    n_frames : int
        Number of frames (the paper's series: 1000).
    size_px : int
        Side of the field in pixels; ignored when ``recipe`` is given
        (``recipe.size_px`` is used).
    dose_range_e_per_A2 : (float, float)
        Dose of the first and of the last frame in e⁻/Å²; frames are
        log-spaced between them (SOI Fig. 9: 10¹…10⁴).
    recipe : StructureRecipe, optional
        Structure ranges; by default :func:`series_recipe` (``size_px`` at
        0.075 Å/px, a particle 62.5–80 % of the field).
    noise_model : NoiseModel, optional
        Detector model; by default Table 3 MTF 3, as in SOI Fig. 9. One set of
        ``(c0, c3, N0)`` is drawn for the whole series.
    optics_ranges : OpticsRanges
        Per-frame optics ranges; :data:`~.optics.SERIES_OPTICS` by default
        (defocus 48–50 Å, Cs 7–8 µm, focal spread 5–6 Å, blur 0.1–0.2 Å).
    settings : MultisliceSettings, optional
        Exit-wave settings; by default 300 keV, 2 Å slices, one FFTW thread.

    Returns
    -------
    SimulatedDoseSeries

    Raises
    ------
    ValueError
        For ``n_frames < 1`` or a dose range that is not ``0 < first <= last``.
    """
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    low, high = (float(v) for v in dose_range_e_per_A2)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"dose range must satisfy 0 < first <= last, got {(low, high)}")
    recipe = recipe or series_recipe(size_px)
    noise_model = noise_model or preset("MTF 3")
    settings = settings or MultisliceSettings()

    particle = build_supported_particle(_stream(seed, 2), recipe)
    wave = compute_exit_wave(particle, settings)
    geometry = particle.geometry
    doses = np.geomspace(low, high, n_frames)
    frames, clean, records = make_dose_series(
        wave,
        geometry.sampling_A,
        geometry.crop,
        doses,
        _stream(seed, 3),
        optics_ranges=optics_ranges,
        noise_model=noise_model,
    )
    return SimulatedDoseSeries(
        frames=frames,
        clean=clean,
        mask=particle.mask(),
        dose_e_per_A2=doses,
        sampling_A=geometry.sampling_A,
        records=records,
        structure=dict(particle.parameters),
        seed=int(seed),
        recipe=recipe,
        noise_model=noise_model,
        optics_ranges=optics_ranges,
    )


def preview_clean_image(
    structure: CachedStructure,
    rng: np.random.Generator,
    optics_ranges: OpticsRanges = TABLE1_OPTICS,
) -> tuple[np.ndarray, Optics]:
    """Clean image of a cached structure with optics drawn from ``optics_ranges``.

    With ``rng = dataset.image_rng(seed, index, epoch)`` the optics are those
    of that image epoch of the dataset (:func:`~.imaging.make_image` draws the
    optics first).

    Parameters
    ----------
    structure : CachedStructure
        Exit wave and grid (:func:`~.exitwaves.simulate_structure`).
    rng : numpy.random.Generator
        Consumes four draws.
    optics_ranges : OpticsRanges
        Table 1 by default.

    Returns
    -------
    clean : ndarray of float32, shape (size_px, size_px)
        Intensity of the field, vacuum 1.
    optics : Optics
        The drawn optics.
    """
    optics = draw_optics(rng, optics_ranges)
    geometry = structure.geometry
    return clean_image(structure.exit_wave, geometry.sampling_A, optics, geometry.crop), optics


def preview_noisy_image(
    clean: np.ndarray,
    dose_e_per_A2: float,
    sampling_A: float,
    noise_model: NoiseModel,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, float]]:
    """Detector frame of a clean image at one dose, noise drawn from ``noise_model``.

    Parameters
    ----------
    clean : ndarray, shape (ny, nx)
        Clean intensity, vacuum 1.
    dose_e_per_A2 : float
        Frame dose in e⁻/Å² (must be > 0).
    sampling_A : float
        Pixel size in Å/px.
    noise_model : NoiseModel
        Detector model; one ``(c0, c3, N0)`` is drawn from it.
    rng : numpy.random.Generator
        Random generator (noise parameters, then the noise itself).

    Returns
    -------
    noisy : ndarray of float32
        Electrons per pixel (Eq. 3).
    record : dict
        ``dose_e_per_A2, electrons_per_px, c0, c3, n0_e_per_px``.
    """
    dose = float(dose_e_per_A2)
    if not (math.isfinite(dose) and dose > 0):
        raise ValueError(f"dose must be positive, got {dose_e_per_A2}")
    draw = noise_model.sample(rng)
    noisy = noisy_image(clean, dose, sampling_A, draw, rng)
    record = {
        "dose_e_per_A2": dose,
        "electrons_per_px": dose * float(sampling_A) ** 2,
        **{k: float(v) for k, v in draw.as_kwargs().items()},
    }
    return noisy, record
