"""Atomic models of CeO2-supported Au particles and their convex-hull labels (Larsen Sec. 2)."""

import math

import numpy as np
import pytest
from scipy import ndimage

from napari_lowdose.simulate.structures import (
    PARTICLE,
    SUPPORT,
    StructureGeometry,
    StructureRecipe,
    build_supported_particle,
    next_5_smooth,
)

SMALL = StructureRecipe(
    size_px=96,
    sampling_range_A=(0.25, 0.3),
    diameter_range_A=(12.0, 16.0),
    support_thickness_range_A=(8.0, 12.0),
    margin_A=4.0,
)


def _interface_normal(particle) -> np.ndarray:
    """Unit vector from the support into the particle, in cell coordinates (3-D)."""
    p = particle.parameters
    from napari_lowdose.simulate.structures import _rotation_z, _tilt

    transform = _rotation_z(p["rotation_deg"]) @ _tilt(p["tilt_axis_deg"], p["tilt_deg"])
    return transform @ np.array([0.0, 1.0, 0.0])


def test_same_seed_same_structure_and_other_seed_differs():
    a = build_supported_particle(7, SMALL)
    b = build_supported_particle(7, SMALL)
    c = build_supported_particle(8, SMALL)
    assert np.array_equal(a.atoms.positions, b.atoms.positions)
    assert a.atoms.get_chemical_symbols() == b.atoms.get_chemical_symbols()
    assert a.parameters == b.parameters
    assert not np.array_equal(a.mask(), c.mask()) or a.parameters != c.parameters


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_particle_sits_on_the_support_across_a_flat_111_interface(seed):
    particle = build_supported_particle(seed, SMALL)
    tags = particle.atoms.get_tags()
    normal = _interface_normal(particle)
    height = particle.atoms.positions @ normal
    gap = height[tags == PARTICLE].min() - height[tags == SUPPORT].max()
    assert gap == pytest.approx(SMALL.interface_gap_A, abs=1e-6)
    # The support's top layer is oxygen (O-terminated CeO2(111)).
    support = np.flatnonzero(tags == SUPPORT)
    top = support[np.argmax(height[support])]
    assert particle.atoms[top].symbol == "O"


def test_support_is_fluorite_ceo2():
    particle = build_supported_particle(3, SMALL)
    symbols = np.asarray(particle.atoms.get_chemical_symbols())
    support = symbols[particle.atoms.get_tags() == SUPPORT]
    n_ce, n_o = np.sum(support == "Ce"), np.sum(support == "O")
    assert set(support) == {"Ce", "O"}
    assert n_o / n_ce == pytest.approx(2.0, rel=0.15)
    au = symbols[particle.atoms.get_tags() == PARTICLE]
    assert set(au) == {"Au"}


def test_zone_axis_110_along_the_beam_gives_atom_columns():
    untilted = StructureRecipe(**{**SMALL.to_dict(), "max_tilt_deg": 0.0})
    particle = build_supported_particle(4, untilted)
    au = particle.particle_atoms.positions
    columns = np.unique(np.round(au[:, :2], 3), axis=0)
    # [110] columns hold several atoms each; a wrong zone axis gives ~1 per column.
    assert len(au) / len(columns) > 2.5
    # The closest columns of an FCC [110] projection (a centred a × a/√2 rectangle)
    # are a·√6/4 = 2.50 Å apart ([100]: a/2 = 2.04 Å, [111]: a·√6/6 = 1.66 Å).
    from scipy.spatial import cKDTree

    from napari_lowdose.simulate.structures import AU_LATTICE_A

    distances, _ = cKDTree(columns).query(columns, k=2)
    assert np.median(distances[:, 1]) == pytest.approx(AU_LATTICE_A * math.sqrt(6) / 4, abs=0.02)


def test_tilt_stays_within_three_degrees_and_breaks_columns():
    tilts = [build_supported_particle(s, SMALL).parameters["tilt_deg"] for s in range(20)]
    assert max(tilts) <= 3.0
    assert min(tilts) >= 0.0


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_mask_covers_the_projected_au_and_no_support_far_from_interface(seed):
    particle = build_supported_particle(seed, SMALL)
    geometry = particle.geometry
    mask = particle.mask()
    assert mask.shape == (SMALL.size_px, SMALL.size_px) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    # Every Au atom is inside the field and on (or next to, for hull vertices) the mask.
    rows_cols = particle.particle_atoms.positions[:, [1, 0]] / geometry.sampling_A
    rows_cols -= geometry.margin_px
    idx = np.round(rows_cols).astype(int)
    assert idx.min() >= 0 and idx.max() < SMALL.size_px
    grown = ndimage.binary_dilation(mask, iterations=1)
    assert grown[idx[:, 0], idx[:, 1]].all()
    # Support atoms more than 3 Å below the interface are outside the mask.
    normal = _interface_normal(particle)
    positions = particle.atoms.positions
    tags = particle.atoms.get_tags()
    au_floor = (positions[tags == PARTICLE] @ normal).min()
    depth = au_floor - positions @ normal
    deep = (tags == SUPPORT) & (depth > 3.0 + SMALL.interface_gap_A)
    rc = np.round(positions[deep][:, [1, 0]] / geometry.sampling_A - geometry.margin_px)
    rc = rc.astype(int)
    in_field = np.all((rc >= 0) & (rc < SMALL.size_px), axis=1)
    assert not mask[rc[in_field, 0], rc[in_field, 1]].any()


def test_mask_area_matches_the_particle_size():
    particle = build_supported_particle(2, SMALL)
    area_A2 = particle.mask().sum() * particle.geometry.sampling_A**2
    diameter = particle.parameters["diameter_A"]
    # A truncated particle projects to between ~30 % and 100 % of its disc.
    disc = math.pi * diameter**2 / 4
    assert 0.3 * disc < area_A2 < 1.1 * disc


def test_geometry_cell_is_field_plus_margin_and_crop_cuts_the_field():
    geometry = StructureGeometry.for_field(640, 0.075, 8.0)
    assert geometry.cell_px >= 640 + 2 * math.ceil(8.0 / 0.075)
    assert geometry.margin_px * 0.075 >= 8.0
    window = np.zeros((geometry.cell_px, geometry.cell_px))[geometry.crop]
    assert window.shape == (640, 640)
    n = geometry.cell_px
    for prime in (2, 3, 5):
        while n % prime == 0:
            n //= prime
    assert n == 1, "the cell size should have no prime factor above 5 (fast FFTW plans)"
    assert next_5_smooth(751) == 768 and next_5_smooth(864) == 864


def test_atoms_are_inside_the_periodic_cell():
    particle = build_supported_particle(9, SMALL)
    cell = particle.atoms.cell.lengths()
    positions = particle.atoms.positions
    assert np.all(positions >= 0) and np.all(positions < cell)
    assert cell[0] == pytest.approx(particle.geometry.cell_A)


def test_recipe_round_trip_and_validation():
    assert StructureRecipe.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="sampling_range_A"):
        StructureRecipe(sampling_range_A=(0.08, 0.07))
    with pytest.raises(ValueError, match="size_px"):
        StructureRecipe(size_px=4)
    with pytest.raises(ValueError, match="unknown"):
        StructureRecipe.from_dict({"colour": "gold"})
