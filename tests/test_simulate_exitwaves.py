"""abTEM exit waves and their on-disk cache (Larsen et al. 2023, Sec. 2)."""

import numpy as np
import pytest
from scipy import ndimage

from napari_lowdose.simulate import exitwaves
from napari_lowdose.simulate.exitwaves import (
    ExitWaveCache,
    MultisliceSettings,
    StaleCacheError,
    simulate_structure,
)
from napari_lowdose.simulate.structures import PARTICLE, StructureRecipe

TINY = StructureRecipe(
    size_px=64,
    sampling_range_A=(0.25, 0.25),
    diameter_range_A=(10.0, 12.0),
    support_thickness_range_A=(6.0, 8.0),
    margin_A=3.0,
)


@pytest.fixture(scope="module")
def tiny_structure():
    return simulate_structure(0, 3, TINY)


def test_exit_wave_is_a_complex_image_of_the_cell(tiny_structure):
    wave = tiny_structure.exit_wave
    geometry = tiny_structure.geometry
    assert wave.shape == (geometry.cell_px, geometry.cell_px)
    assert wave.dtype == np.complex64
    assert np.isfinite(wave).all()
    assert tiny_structure.mask.shape == (TINY.size_px, TINY.size_px)


def test_wave_rows_are_y_like_the_atoms_and_the_mask(tiny_structure):
    """The phase shift sits where the atoms are, in (row = y, column = x) order."""
    geometry = tiny_structure.geometry
    atoms = tiny_structure.particle.atoms
    density = np.zeros((geometry.cell_px,) * 2)
    rows = np.floor(atoms.positions[:, 1] / geometry.sampling_A).astype(int) % geometry.cell_px
    cols = np.floor(atoms.positions[:, 0] / geometry.sampling_A).astype(int) % geometry.cell_px
    np.add.at(density, (rows, cols), atoms.numbers)
    density = ndimage.gaussian_filter(density, 2.0, mode="wrap")
    phase = np.abs(np.angle(tiny_structure.exit_wave))
    right = np.corrcoef(phase.ravel(), density.ravel())[0, 1]
    transposed = np.corrcoef(phase.ravel(), density.T.ravel())[0, 1]
    assert right > 0.5
    assert right > transposed + 0.2


def test_vacuum_far_from_atoms_keeps_unit_amplitude(tiny_structure):
    geometry = tiny_structure.geometry
    atoms = tiny_structure.particle.atoms
    occupied = np.zeros((geometry.cell_px,) * 2, dtype=bool)
    rows = np.floor(atoms.positions[:, 1] / geometry.sampling_A).astype(int) % geometry.cell_px
    cols = np.floor(atoms.positions[:, 0] / geometry.sampling_A).astype(int) % geometry.cell_px
    occupied[rows, cols] = True
    far = ~ndimage.binary_dilation(occupied, iterations=int(4.0 / geometry.sampling_A))
    assert far.sum() > 100, "the tiny structure should leave some vacuum"
    amplitude = np.abs(tiny_structure.exit_wave[far])
    # Fresnel fringes from propagation through the cell ripple it by a few per cent.
    assert amplitude.mean() == pytest.approx(1.0, abs=0.01)
    assert amplitude.std() < 0.02


def test_same_seed_gives_the_identical_wave(tiny_structure):
    again = simulate_structure(0, 3, TINY)
    assert np.array_equal(again.exit_wave, tiny_structure.exit_wave)
    assert np.array_equal(again.mask, tiny_structure.mask)
    other = simulate_structure(1, 3, TINY)
    assert not np.array_equal(other.exit_wave.shape, ()) and (
        other.exit_wave.shape != tiny_structure.exit_wave.shape
        or not np.array_equal(other.exit_wave, tiny_structure.exit_wave)
    )


def test_cache_stores_reloads_and_never_recomputes(tmp_path, monkeypatch):
    cache = ExitWaveCache(tmp_path / "cache")
    first = cache.get_or_compute(2, 5, TINY)
    entry = cache.entry_path(2)
    assert {p.name for p in entry.iterdir()} == {
        "structure.traj", "exit_wave.npy", "mask.npy", "structure.json"
    }

    def no_compute(*args, **kwargs):
        raise AssertionError("a cached exit wave was recomputed")

    monkeypatch.setattr(exitwaves, "compute_exit_wave", no_compute)
    second = cache.get_or_compute(2, 5, TINY)
    assert np.array_equal(first.exit_wave, second.exit_wave)
    assert np.array_equal(first.mask, second.mask)
    # The structure is readable with ASE, tags included.
    from ase.io import read

    atoms = read(entry / "structure.traj")
    assert np.allclose(atoms.positions, first.particle.atoms.positions)
    assert (atoms.get_tags() == PARTICLE).sum() == first.particle.parameters["n_au_atoms"]


def test_cache_refuses_an_entry_of_another_recipe(tmp_path):
    cache = ExitWaveCache(tmp_path)
    cache.get_or_compute(0, 5, TINY)
    with pytest.raises(StaleCacheError, match="seed"):
        cache.get_or_compute(0, 6, TINY)
    other = StructureRecipe(**{**TINY.to_dict(), "diameter_range_A": (9.0, 10.0)})
    with pytest.raises(StaleCacheError, match="recipe"):
        cache.get_or_compute(0, 5, other)
    with pytest.raises(StaleCacheError, match="multislice"):
        cache.get_or_compute(0, 5, TINY, MultisliceSettings(slice_thickness_A=1.0))
    # Threads do not change the wave: not a different recipe.
    cache.get_or_compute(0, 5, TINY, MultisliceSettings(fftw_threads=2))


def test_a_damaged_entry_is_reported(tmp_path):
    cache = ExitWaveCache(tmp_path)
    cache.get_or_compute(0, 5, TINY)
    (cache.entry_path(0) / "exit_wave.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="unreadable"):
        cache.load(0)


def test_cell_sizes_lists_every_cell_a_recipe_can_make():
    from napari_lowdose.simulate.exitwaves import cell_sizes
    from napari_lowdose.simulate.structures import StructureGeometry

    recipe = StructureRecipe()
    seen = {StructureGeometry.for_field(recipe.size_px, s, recipe.margin_A).cell_px
            for s in np.linspace(*recipe.sampling_range_A, 2001)}
    assert set(cell_sizes(recipe)) == seen


def test_shared_fftw_wisdom_means_no_new_planning(tmp_path):
    """With the dataset's wisdom loaded, FFTW_MEASURE measures nothing: same plans everywhere."""
    import pyfftw

    from napari_lowdose.simulate.exitwaves import (
        cell_sizes,
        compute_exit_wave,
        load_fftw_wisdom,
        plan_fftw_wisdom,
    )
    from napari_lowdose.simulate.structures import build_supported_particle

    recipe = StructureRecipe(**{**TINY.to_dict(), "sampling_range_A": (0.23, 0.27)})
    path = plan_fftw_wisdom(tmp_path / "wisdom.json", cell_sizes(recipe))
    assert load_fftw_wisdom(path)
    assert not load_fftw_wisdom(tmp_path / "absent.json")
    before = pyfftw.export_wisdom()
    for seed in range(3):
        particle = build_supported_particle(seed, recipe)
        measured = compute_exit_wave(particle, fftw_planning="measure")
        estimated = compute_exit_wave(particle, fftw_planning="estimate")
        assert np.allclose(measured, estimated, atol=1e-4)
    assert pyfftw.export_wisdom() == before
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="unreadable"):
        load_fftw_wisdom(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="fftw_planning"):
        compute_exit_wave(particle, fftw_planning="patient")
