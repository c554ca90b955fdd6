"""Simulated dose series of one supported Au particle (Larsen et al. 2023, SOI Fig. 9)."""

import numpy as np
import pytest
from scipy import ndimage

from napari_lowdose.noise import preset
from napari_lowdose.simulate.optics import SERIES_OPTICS
from napari_lowdose.simulate.series import (
    SERIES_SAMPLING_A,
    SimulatedDoseSeries,
    series_recipe,
    simulate_dose_series,
)


@pytest.fixture(scope="module")
def series() -> SimulatedDoseSeries:
    return simulate_dose_series(0)


def test_shapes_dtypes_and_doses(series):
    assert series.frames.shape == (50, 256, 256)
    assert series.clean.shape == series.frames.shape
    assert series.frames.dtype == np.float32 and series.clean.dtype == np.float32
    assert series.mask.shape == (256, 256) and series.mask.dtype == np.uint8
    assert series.sampling_A == pytest.approx(SERIES_SAMPLING_A)
    dose = series.dose_e_per_A2
    assert dose.shape == (50,)
    assert np.all(np.diff(dose) > 0)
    assert dose[0] == pytest.approx(10.0) and dose[-1] == pytest.approx(1e4)
    np.testing.assert_allclose(np.diff(np.log(dose)), np.log(1e3) / 49)
    assert len(series.records) == 50
    assert [r["dose_e_per_A2"] for r in series.records] == pytest.approx(list(dose))
    assert series.noise_model.name == "MTF3"


def test_optics_and_noise_follow_soi_fig9(series):
    for record in series.records:
        for name, (low, high) in SERIES_OPTICS.to_dict().items():
            assert low <= record[name] <= high
    c0, c3 = {r["c0"] for r in series.records}, {r["c3"] for r in series.records}
    assert len(c0) == len(c3) == 1  # one detector for the whole series
    model = preset("MTF 3")
    assert model.c0_range[0] <= c0.pop() <= model.c0_range[1]
    assert model.c3_range[0] <= c3.pop() <= model.c3_range[1]


def test_mask_is_a_particle_inside_the_field(series):
    mask = series.mask
    assert set(np.unique(mask)) == {0, 1}
    assert 0.01 < mask.mean() < 0.5
    rows, cols = np.nonzero(mask)
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < 255 and cols.max() < 255
    labels, n = ndimage.label(mask)
    assert n == 1  # one convex particle
    # The particle (Au, Z = 79) is darker than vacuum in the clean image on average.
    assert series.clean[-1][mask == 1].mean() < 1.0
    assert series.structure["n_au_atoms"] > 10


def test_mean_electrons_per_px_is_dose_times_pixel_area(series):
    s2 = series.sampling_A**2
    n0 = series.records[0]["n0_e_per_px"]
    # Vacuum: clean intensity ≈ 1, away from the particle and support edges
    # (the MTF spreads counts over a few pixels).
    for i in (10, 30, 49):
        clean, frame = series.clean[i], series.frames[i]
        vacuum = ndimage.binary_erosion(np.abs(clean - 1.0) < 0.05, iterations=8)
        assert vacuum.sum() > 2000
        expected = series.dose_e_per_A2[i] * s2 * clean[vacuum].mean() + n0
        sigma = np.sqrt(expected / vacuum.sum())
        assert frame[vacuum].mean() == pytest.approx(expected, abs=6 * sigma + 0.02 * expected)
        # The MTF conserves the total count exactly: the whole frame within Poisson error.
        total = series.dose_e_per_A2[i] * s2 * clean.mean() + n0
        assert frame.mean() == pytest.approx(total, abs=5 * np.sqrt(total / frame.size))


def test_same_seed_same_series_other_seed_differs():
    a = simulate_dose_series(3, n_frames=3, size_px=64)
    b = simulate_dose_series(3, n_frames=3, size_px=64)
    c = simulate_dose_series(4, n_frames=3, size_px=64)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.clean, b.clean)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.records == b.records
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (3, 64, 64)
    assert a.metadata()["recipe"] == series_recipe(64).to_dict()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_frames"):
        simulate_dose_series(n_frames=0)
    with pytest.raises(ValueError, match="dose range"):
        simulate_dose_series(dose_range_e_per_A2=(100.0, 10.0))


def test_recipe_sizes_the_particle_for_the_field():
    recipe = series_recipe(256)
    assert recipe.sampling_range_A == (SERIES_SAMPLING_A, SERIES_SAMPLING_A)
    low, high = recipe.diameter_range_A
    assert low == pytest.approx(12.0) and high == pytest.approx(0.8 * 256 * SERIES_SAMPLING_A)


def test_vacuum_corner_is_empty_of_particle_and_support(series):
    roi = series.vacuum_corner(32)
    assert roi is not None
    y0, y1, x0, x1 = roi
    assert (y1 - y0, x1 - x0) == (32, 32)
    assert not series.mask[y0:y1, x0:x1].any()
    assert np.allclose(series.clean[:, y0:y1, x0:x1], 1.0, atol=0.02)
    # Too large a square cannot be vacuum everywhere.
    assert series.vacuum_corner(series.frames.shape[1]) is None
