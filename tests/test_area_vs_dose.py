"""Area against dose: constructed curves with known convergence and 50 % doses."""

import math

import numpy as np
import pytest

from napari_lowdose.analysis import (
    AREA_TABLE_COLUMNS,
    analyse_area_vs_dose,
    area_per_frame,
    f1_per_frame,
)


def _curve():
    """Area rises with log dose and settles at 1000 px ± 10 from frame 12 on."""
    dose = np.geomspace(10, 1e4, 20)
    area = np.array([0, 0, 50, 120, 300, 499, 500, 700, 850, 940, 960, 985,
                     995, 1008, 1002, 990, 1010, 1000, 997, 1005])
    return dose, area


def test_convergence_and_half_doses_of_a_constructed_curve():
    dose, area = _curve()
    analysis = analyse_area_vs_dose(area, dose, high_dose_fraction=0.25)
    # The band comes from the 5 highest-dose frames: [990, 1010].
    assert analysis.band_px == (990.0, 1010.0)
    assert sorted(analysis.high_dose_frames) == [15, 16, 17, 18, 19]
    assert analysis.converged_area_px == 1000.0
    # Frame 12 (995) is the first from which every frame stays in the band.
    assert analysis.convergence_dose_e_per_A2 == pytest.approx(dose[12])
    # 50 % of 1000 px is first reached at frame 6 (500; frame 5 has 499).
    assert analysis.dose_at_50pct_e_per_A2 == pytest.approx(dose[6])


def test_frames_out_of_dose_order_give_the_same_doses():
    dose, area = _curve()
    order = np.random.default_rng(0).permutation(dose.size)
    shuffled = analyse_area_vs_dose(area[order], dose[order], high_dose_fraction=0.25)
    ordered = analyse_area_vs_dose(area, dose, high_dose_fraction=0.25)
    assert shuffled.convergence_dose_e_per_A2 == ordered.convergence_dose_e_per_A2
    assert shuffled.dose_at_50pct_e_per_A2 == ordered.dose_at_50pct_e_per_A2
    # The table stays in series order, with the cumulative dose of that order.
    assert np.array_equal(shuffled.table()["area_px"], area[order])
    assert np.allclose(shuffled.table()["cumulative_dose_e_per_A2"], np.cumsum(dose[order]))


def test_a_late_excursion_moves_the_convergence_dose_up():
    dose, area = _curve()
    area = area.copy()
    area[14] = 900  # drops out of the band after having converged
    analysis = analyse_area_vs_dose(area, dose, high_dose_fraction=0.25)
    assert analysis.convergence_dose_e_per_A2 == pytest.approx(dose[15])


def test_never_visible_particle_has_no_doses():
    dose = np.geomspace(10, 1e4, 10)
    analysis = analyse_area_vs_dose(np.zeros(10, int), dose)
    assert math.isinf(analysis.dose_at_50pct_e_per_A2)
    summary = analysis.summary()
    assert summary["dose_at_50pct_e_per_A2"] is None
    assert summary["converged_area_px"] == 0.0


def test_areas_from_masks_in_px_and_nm2_with_units_in_the_table():
    masks = np.zeros((3, 20, 30), bool)
    masks[1, :10, :10] = True
    masks[2, :10, :20] = True
    assert area_per_frame(masks).tolist() == [0, 100, 200]
    analysis = analyse_area_vs_dose(masks, [10.0, 100.0, 1000.0], pixel_size_A=(2.0, 5.0))
    table = analysis.table()
    from napari_lowdose.analysis.consensus import CONSENSUS_COLUMNS

    assert list(table) == [*AREA_TABLE_COLUMNS, *CONSENSUS_COLUMNS]  # masks: consensus too
    # 2 Å × 5 Å = 0.1 nm² per pixel.
    assert table["area_nm2"].tolist() == pytest.approx([0.0, 10.0, 20.0])
    assert analysis.converged_area_nm2 == pytest.approx(10.0)
    assert np.isnan(analyse_area_vs_dose(masks, [1.0, 2.0, 3.0]).area_nm2).all()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="3 frames but 2 doses"):
        analyse_area_vs_dose(np.zeros(3), [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        analyse_area_vs_dose(np.zeros(2), [1.0, 0.0])
    with pytest.raises(ValueError, match="pixel size"):
        analyse_area_vs_dose(np.zeros(2), [1.0, 2.0], pixel_size_A=-1.0)


def test_f1_per_frame_against_one_truth():
    truth = np.zeros((8, 8), bool)
    truth[:4] = True
    masks = np.zeros((3, 8, 8), bool)
    masks[1, :4] = True
    masks[2, :2] = True
    assert f1_per_frame(masks, truth).tolist() == pytest.approx([0.0, 1.0, 2 * 16 / (16 + 32)])
    with pytest.raises(ValueError, match="does not match"):
        f1_per_frame(masks, np.zeros((2, 8, 8)))


def test_frames_of_equal_dose_must_all_be_in_the_band():
    from napari_lowdose.analysis import convergence_dose

    dose = np.array([10.0, 10.0, 100.0, 100.0, 1000.0, 1000.0])
    area = np.array([0, 5, 9, 10, 10, 10])
    # One of the two frames at 100 e⁻/Å² is outside [10, 10]: converged only from 1000.
    for order in (np.arange(6), np.array([0, 1, 3, 2, 5, 4])):
        assert convergence_dose(dose[order], area[order], (10, 10)) == 1000.0
    assert convergence_dose(dose, np.full(6, 10), (10, 10)) == 10.0
    assert math.isinf(convergence_dose(dose, area[::-1], (10, 10)))
