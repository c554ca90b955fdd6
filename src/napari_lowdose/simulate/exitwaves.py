"""Exit waves by abTEM multislice, computed once per structure and cached on disk.

The exit wave is the expensive step of the simulation of Larsen et al. (2023),
Section 2: a 300 keV plane wave propagated through the supported
particle of :mod:`.structures` by the multislice method (abTEM 1.0). The wave
is computed once per structure and kept on disk together with the structure
(an ASE trajectory, readable with ``ase.io.read``) and its label mask, so that
many image epochs (:mod:`.imaging`: Table 1 optics, dose, detector noise) are
made from it cheaply, and an interrupted dataset run resumes without
recomputing a wave.

A cache entry is a folder ``s{index:06d}`` holding::

    structure.traj   atoms (tags: 1 = Au particle, 2 = CeO2 support)
    exit_wave.npy    complex64 (y, x) over the whole periodic cell
    mask.npy         uint8 (y, x) label of the field (convex hull of Au)
    structure.json   seed, recipe, multislice settings, drawn parameters, versions

It is written into a temporary folder and renamed into place, so a folder that
exists is complete. An entry made with another seed, recipe or settings is
refused (:class:`StaleCacheError`) instead of being silently reused.

FFTW plans: ``FFTW_MEASURE`` plans make a wave about 1.4× faster than
``FFTW_ESTIMATE`` ones, but the planner picks them by timing, so the last bits
of a wave would differ from run to run. A dataset therefore plans once, on a
dummy specimen of every cell size its recipe can produce, saves the FFTW
wisdom (:func:`plan_fftw_wisdom`), and every worker imports it
(:func:`load_fftw_wisdom`) before computing with ``FFTW_MEASURE``: with the
wisdom present FFTW measures nothing and all processes use the same plans. A
single wave with no wisdom (the widget preview, the sample data) uses
``FFTW_ESTIMATE``, which is deterministic by itself.
"""

import base64
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LowdoseError
from ..io.writers import atomic_write_text
from ..provenance import package_versions
from .structures import (
    StructureGeometry,
    StructureRecipe,
    SupportedParticle,
    build_supported_particle,
    next_5_smooth,
)

__all__ = [
    "CachedStructure",
    "ExitWaveCache",
    "MultisliceSettings",
    "StaleCacheError",
    "FFTW_WISDOM_FILE",
    "cell_sizes",
    "compute_exit_wave",
    "load_fftw_wisdom",
    "plan_fftw_wisdom",
    "simulate_structure",
    "software_versions",
    "structure_rng",
]

FFTW_WISDOM_FILE = "fftw_wisdom.json"
_WISDOM_FORMAT = "napari-lowdose/fftw-wisdom"
_FFTW_PLANNING = {"estimate": "FFTW_ESTIMATE", "measure": "FFTW_MEASURE"}
_loaded_wisdom: set[str] = set()
_ENTRY_FILES = ("structure.traj", "exit_wave.npy", "mask.npy", "structure.json")


class StaleCacheError(LowdoseError, ValueError):
    """A cached exit wave was made with another seed, recipe or settings."""


@dataclass(frozen=True)
class MultisliceSettings:
    """How exit waves are computed (abTEM multislice).

    Parameters
    ----------
    energy_eV : float
        Beam energy (Larsen et al.: 300 keV).
    slice_thickness_A : float
        Multislice slice thickness in Å.
    parametrization : str
        abTEM scattering-factor parametrisation (``"lobato"`` or ``"kirkland"``).
    projection : str
        ``"infinite"`` (fast, analytic projected potentials) or ``"finite"``.
    fftw_threads : int
        FFTW threads per wave; parallel runs use one per worker process.
    """

    energy_eV: float = 300e3
    slice_thickness_A: float = 2.0
    parametrization: str = "lobato"
    projection: str = "infinite"
    fftw_threads: int = 1

    def __post_init__(self) -> None:
        if self.energy_eV <= 0 or self.slice_thickness_A <= 0:
            raise ValueError("energy_eV and slice_thickness_A must be positive")
        if self.parametrization not in ("lobato", "kirkland"):
            raise ValueError(f"unknown parametrization {self.parametrization!r}")
        if self.projection not in ("infinite", "finite"):
            raise ValueError(f"unknown projection {self.projection!r}")
        if self.fftw_threads < 1:
            raise ValueError("fftw_threads must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)

    def physics_dict(self) -> dict[str, Any]:
        """The settings that change the wave (threads do not)."""
        values = self.to_dict()
        values.pop("fftw_threads")
        return values


@dataclass
class CachedStructure:
    """One structure with its exit wave and label, as stored in the cache.

    Attributes
    ----------
    index : int
        Structure number within its dataset.
    particle : SupportedParticle
        Atoms, grid and drawn parameters.
    exit_wave : ndarray of complex64, shape (cell_px, cell_px)
        Exit wave over the whole cell, rows = y.
    mask : ndarray of uint8, shape (size_px, size_px)
        Label of the field.
    record : dict
        Contents of ``structure.json``.
    """

    index: int
    particle: SupportedParticle
    exit_wave: np.ndarray
    mask: np.ndarray
    record: dict[str, Any]

    @property
    def geometry(self) -> StructureGeometry:
        """Grid of the cell and the field."""
        return self.particle.geometry


def structure_rng(seed: int, index: int) -> np.random.Generator:
    """Generator for structure ``index`` of a run with ``seed``.

    Independent of worker count and order: ``SeedSequence(seed, spawn_key=(index, 0))``.
    """
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), 0)))


def compute_exit_wave(
    particle: SupportedParticle,
    settings: MultisliceSettings | None = None,
    *,
    fftw_planning: str = "estimate",
) -> np.ndarray:
    """Multislice exit wave of a plane wave through ``particle`` (abTEM).

    Parameters
    ----------
    particle : SupportedParticle
        Structure; its cell must be ``geometry.cell_A`` square in x and y.
    settings : MultisliceSettings, optional
        Energy, slicing, parametrisation.
    fftw_planning : {"estimate", "measure"}
        FFTW planner: ``"measure"`` only with wisdom loaded
        (:func:`load_fftw_wisdom`), else results vary in the last bits.

    Returns
    -------
    wave : ndarray of complex64, shape (cell_px, cell_px)
        Exit wave, rows = y, columns = x (abTEM stores (x, y); it is
        transposed here to the image convention). Vacuum has ``|ψ| = 1``.
    """
    settings = settings or MultisliceSettings()
    if fftw_planning not in _FFTW_PLANNING:
        raise ValueError(f"fftw_planning must be one of {sorted(_FFTW_PLANNING)}")
    return _multislice(particle.atoms, particle.geometry.cell_px, settings,
                       _FFTW_PLANNING[fftw_planning])


def _multislice(atoms: Any, n: int, settings: MultisliceSettings, effort: str) -> np.ndarray:
    import abtem

    config = {
        "device": "cpu",
        "fft": "fftw",
        "fftw.threads": settings.fftw_threads,
        "fftw.planning_effort": effort,
    }
    with abtem.config.set(config):
        potential = abtem.Potential(
            atoms,
            gpts=(n, n),
            slice_thickness=settings.slice_thickness_A,
            parametrization=settings.parametrization,
            projection=settings.projection,
        )
        waves = abtem.PlaneWave(energy=settings.energy_eV).multislice(potential)
        array = waves.compute(scheduler="single-threaded", progress_bar=False).array
    return np.ascontiguousarray(np.asarray(array, dtype=np.complex64).T)


def cell_sizes(recipe: StructureRecipe) -> list[int]:
    """Every cell size (px) that structures of ``recipe`` can have (the sampling varies).

    The margin in pixels, ``ceil(margin_A / s)``, runs over all integers between
    its values at the two ends of the sampling range (as in
    :meth:`StructureGeometry.for_field`).
    """
    low_A, high_A = recipe.sampling_range_A
    margins_px = range(int(math.ceil(recipe.margin_A / high_A)),
                       int(math.ceil(recipe.margin_A / low_A)) + 1)
    return sorted({next_5_smooth(recipe.size_px + 2 * m) for m in margins_px})


def plan_fftw_wisdom(
    path: str | os.PathLike, sizes: list[int], settings: MultisliceSettings | None = None
) -> Path:
    """Plan abTEM's FFTs (``FFTW_MEASURE``) for cells of ``sizes`` px and save the wisdom.

    A dummy specimen (one Au, Ce and O atom) is propagated through each cell
    size, which plans every transform a real structure of that size needs.
    """
    import pyfftw
    from ase import Atoms

    settings = settings or MultisliceSettings()
    for n in sizes:
        side_A = 10.0 * n  # any extent: the plans depend on the grid, not the sampling
        dummy = Atoms("AuCeO", positions=[[side_A / 2, side_A / 2, 1.0],
                                          [side_A / 3, side_A / 3, 3.0],
                                          [side_A / 4, side_A / 4, 5.0]],
                      cell=[side_A, side_A, 6.0], pbc=True)
        _multislice(dummy, int(n), settings, "FFTW_MEASURE")
    wisdom = pyfftw.export_wisdom()
    document = {
        "format": _WISDOM_FORMAT,
        "cell_sizes": [int(n) for n in sizes],
        "fftw_threads": settings.fftw_threads,
        "wisdom": [base64.b64encode(part).decode("ascii") for part in wisdom],
    }

    path = Path(path)
    atomic_write_text(path, json.dumps(document))
    _loaded_wisdom.add(str(path.resolve()))
    return path


def load_fftw_wisdom(path: str | os.PathLike) -> bool:
    """Import FFTW wisdom saved by :func:`plan_fftw_wisdom` (once per process).

    Returns
    -------
    bool
        True if the wisdom is loaded (``fftw_planning="measure"`` is then
        reproducible), False if there is no such file.
    """
    import pyfftw

    path = Path(path)
    key = str(path.resolve())
    if key in _loaded_wisdom:
        return True
    if not path.is_file():
        return False
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != _WISDOM_FORMAT:
            raise ValueError("not an FFTW wisdom file")
        wisdom = tuple(base64.b64decode(part) for part in document["wisdom"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"FFTW wisdom {path} is unreadable: {error}") from error
    pyfftw.import_wisdom(wisdom)
    _loaded_wisdom.add(key)
    return True


class ExitWaveCache:
    """Folder of cached structures, exit waves and masks (one entry per structure).

    Parameters
    ----------
    root : str or Path
        Cache folder; created on first write.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def entry_path(self, index: int) -> Path:
        """Folder of structure ``index``."""
        return self.root / f"s{int(index):06d}"

    def has(self, index: int) -> bool:
        """Whether a complete entry for ``index`` exists."""
        path = self.entry_path(index)
        return all((path / name).is_file() for name in _ENTRY_FILES)

    def get_or_compute(
        self,
        index: int,
        seed: int,
        recipe: StructureRecipe,
        settings: MultisliceSettings | None = None,
        *,
        fftw_planning: str = "estimate",
    ) -> CachedStructure:
        """Load structure ``index`` from the cache, or build, simulate and store it.

        Raises
        ------
        StaleCacheError
            The stored entry was made with another seed, recipe or settings.
        """
        settings = settings or MultisliceSettings()
        if self.has(index):
            cached = self.load(index)
            _check_matches(cached.record, index, seed, recipe, settings)
            return cached
        cached = simulate_structure(index, seed, recipe, settings, fftw_planning=fftw_planning)
        self.save(cached)
        return cached

    def save(self, cached: CachedStructure) -> Path:
        """Write an entry atomically (temporary folder, then rename)."""
        from ase.io import write

        self.root.mkdir(parents=True, exist_ok=True)
        final = self.entry_path(cached.index)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=self.root))
        try:
            write(staging / "structure.traj", cached.particle.atoms)
            np.save(staging / "exit_wave.npy", cached.exit_wave)
            np.save(staging / "mask.npy", cached.mask)
            (staging / "structure.json").write_text(
                json.dumps(cached.record, indent=2), encoding="utf-8"
            )
            if final.exists():  # a concurrent writer got there first: same content
                shutil.rmtree(staging)
            else:
                os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final

    def load(self, index: int) -> CachedStructure:
        """Read entry ``index``.

        Raises
        ------
        FileNotFoundError
            No complete entry.
        ValueError
            The files are unreadable or inconsistent.
        """
        from ase.io import read

        path = self.entry_path(index)
        if not self.has(index):
            raise FileNotFoundError(f"no cached structure {index} in {self.root}")
        try:
            record = json.loads((path / "structure.json").read_text(encoding="utf-8"))
            atoms = read(path / "structure.traj")
            wave = np.load(path / "exit_wave.npy", allow_pickle=False)
            mask = np.load(path / "mask.npy", allow_pickle=False)
            geometry = StructureGeometry(**record["geometry"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"cached structure {path} is unreadable: {error}") from error
        if wave.shape != (geometry.cell_px,) * 2 or mask.shape != (geometry.size_px,) * 2:
            raise ValueError(f"cached structure {path} has arrays of the wrong shape")
        particle = SupportedParticle(atoms, geometry, record["parameters"])
        return CachedStructure(int(index), particle, wave, mask, record)


def simulate_structure(
    index: int,
    seed: int,
    recipe: StructureRecipe,
    settings: MultisliceSettings | None = None,
    *,
    fftw_planning: str = "estimate",
) -> CachedStructure:
    """Build structure ``index`` of a run with ``seed`` and compute its exit wave and mask."""

    settings = settings or MultisliceSettings()
    particle = build_supported_particle(structure_rng(seed, index), recipe)
    wave = compute_exit_wave(particle, settings, fftw_planning=fftw_planning)
    mask = particle.mask()
    record = {
        "index": int(index),
        "seed": int(seed),
        "recipe": recipe.to_dict(),
        "multislice": settings.physics_dict(),
        "geometry": particle.geometry.to_dict(),
        "parameters": particle.parameters,
        "mask_fraction": float(mask.mean()),
        "versions": software_versions(),
    }
    return CachedStructure(int(index), particle, wave, mask, record)


def software_versions() -> dict[str, str]:
    """Versions of the packages that determine a simulated wave."""
    return package_versions("abtem", "ase", "numpy", "scipy")


def _check_matches(
    record: dict[str, Any],
    index: int,
    seed: int,
    recipe: StructureRecipe,
    settings: MultisliceSettings,
) -> None:
    """Refuse a cache entry made for another request."""
    expected = {
        "index": int(index),
        "seed": int(seed),
        "recipe": recipe.to_dict(),
        "multislice": settings.physics_dict(),
    }
    for key, value in expected.items():
        stored = record.get(key)
        if stored != value:
            raise StaleCacheError(
                f"cached structure {index} was made with {key}={stored!r}, not {value!r}; "
                "use another output folder or delete the cache"
            )
