"""The validation battery: its conditions span the issue's ranges, its series are what the
condition says, and its scoring compares readouts with the truth-based doses."""

import numpy as np
import pytest

from napari_lowdose.workflows.battery import (
    BATTERY,
    BATTERY_DOSE_RANGE_E_PER_A2,
    BATTERY_FRAMES,
    BATTERY_PARTICLES,
    SeriesScore,
    battery_condition,
    battery_seed,
    battery_series,
    readout_factor,
    score_series,
    summarise_condition,
)


def test_battery_spans_the_papers_ranges():
    assert len(BATTERY) >= 6 and BATTERY_PARTICLES >= 3 and BATTERY_FRAMES >= 40
    assert BATTERY_DOSE_RANGE_E_PER_A2 == (5.0, 5e3)
    diameters = [d for c in BATTERY for d in c.diameter_range_A]
    assert min(diameters) <= 12 and max(diameters) >= 38  # ~1 to ~4 nm
    samplings = [c.sampling_A for c in BATTERY]
    assert min(samplings) == pytest.approx(0.05) and max(samplings) == pytest.approx(0.10)
    detectors = {c.detector for c in BATTERY}
    assert {"MTF 1", "MTF 5", "direct"} <= detectors
    direct = battery_condition("direct").noise_model
    assert direct.c0_range[0] >= 0.7 and direct.n0_range_e_per_px[1] <= 0.0015
    defocus = [d for c in BATTERY for d in c.defocus_A]
    assert min(defocus) == -100 and max(defocus) == 100
    assert BATTERY[0].name == "soi-fig9"


def test_battery_seeds_are_distinct_and_outside_the_validation_series():
    seeds = [battery_seed(c, p) for c in BATTERY for p in range(BATTERY_PARTICLES)]
    assert len(set(seeds)) == len(seeds)
    # Seeds 1000–1099 are the validation series used to choose and calibrate models.
    assert all(not 1000 <= s < 1100 for s in seeds)


def test_a_condition_whose_particle_does_not_fit_is_refused():
    from napari_lowdose.workflows.battery import BatteryCondition

    with pytest.raises(ValueError, match="do not fit"):
        BatteryCondition("x", "", (30.0, 40.0), 0.05, 256, "MTF 3", (0.0, 0.0))


def test_readout_factor_is_symmetric_and_missing_when_either_is():
    assert readout_factor(20.0, 10.0) == pytest.approx(2.0)
    assert readout_factor(10.0, 20.0) == pytest.approx(2.0)
    assert readout_factor(None, 10.0) is None and readout_factor(10.0, None) is None


def _series_masks(dose, truth, *, found_from, noisy_below, rng):
    """Masks that miss the particle below ``found_from`` and have noise-triggered false
    detections below ``noisy_below``."""
    masks = np.zeros((dose.size, *truth.shape), dtype=bool)
    for i, d in enumerate(dose):
        if d >= found_from:
            masks[i] = truth
        if d < noisy_below:
            masks[i] |= rng.random(truth.shape) < 0.1
    return masks


def test_score_series_recovers_the_truth_doses_and_compares_the_readouts():
    rng = np.random.default_rng(0)
    truth = np.zeros((64, 64), dtype=bool)
    truth[20:44, 16:40] = True
    dose = np.geomspace(5, 5e3, 40)
    masks = _series_masks(dose, truth, found_from=50.0, noisy_below=20.0, rng=rng)
    score = score_series(masks, truth, dose)
    first_found = dose[dose >= 50.0][0]
    assert score.truth_visibility_dose_e_per_A2 == pytest.approx(first_found)
    assert score.truth_convergence_dose_e_per_A2 == pytest.approx(first_found)
    # The consensus readouts see the same: masks are exact from first_found on.
    assert score.visibility_dose_e_per_A2 == pytest.approx(first_found)
    assert score.convergence_dose_e_per_A2 == pytest.approx(first_found)
    summary = score.summary()
    assert summary["visibility_factor"] == pytest.approx(1.0)
    # The paper's area-only readout is fooled by the noise at the lowest doses.
    assert score.paper_dose_at_50pct_e_per_A2 < 20.0


def test_summarise_condition_takes_the_worst_particle_at_shared_doses():
    dose = np.array([10.0, 100.0, 1000.0])

    def score(f1, vis, truth_vis):
        return SeriesScore(dose_e_per_A2=dose, f1_truth=np.array(f1),
                           truth_visibility_dose_e_per_A2=truth_vis,
                           truth_convergence_dose_e_per_A2=None,
                           visibility_dose_e_per_A2=vis, convergence_dose_e_per_A2=None,
                           paper_dose_at_50pct_e_per_A2=None,
                           paper_convergence_dose_e_per_A2=None)

    row = summarise_condition([score([0.6, 0.95, 0.95], 10.0, 10.0),
                               score([0.2, 0.6, 0.95], 300.0, 100.0)])
    assert row["f1_05_dose_e_per_A2"] == 100.0  # both particles hold from 100
    assert row["f1_09_dose_e_per_A2"] == 1000.0
    assert row["worst_visibility_factor"] == pytest.approx(3.0)
    assert row["readout_misses"] == 0
    assert row["particles"] == 2


def test_a_battery_series_is_made_as_its_condition_says():
    pytest.importorskip("abtem")
    condition = battery_condition("direct")
    series = battery_series(condition, 0, n_frames=4, size_px=96)
    assert series.frames.shape == (4, 96, 96)
    assert series.sampling_A == pytest.approx(condition.sampling_A)
    assert series.dose_e_per_A2[0] == pytest.approx(5.0)
    assert series.dose_e_per_A2[-1] == pytest.approx(5e3)
    assert series.records[0]["c0"] >= 0.7 and series.records[0]["n0_e_per_px"] < 0.0015
    assert all(-100 <= r["defocus_A"] <= -80 for r in series.records)
    assert series.mask.any() and series.seed == battery_seed(condition, 0)
    again = battery_series(condition, 0, n_frames=4, size_px=96)
    np.testing.assert_array_equal(series.frames, again.frames)


def test_model_ranking_prefers_reaching_the_levels_then_lower_doses():
    from napari_lowdose.workflows.battery_runs import model_ranking

    def row(model, d05, d09, high):
        return {"model": model, "f1_05_dose_e_per_A2": d05, "f1_09_dose_e_per_A2": d09,
                "mean_f1_above_200": high}

    table = [row("early-but-never-converges", 10.0, None, 0.8),
             row("early-but-never-converges", 12.0, None, 0.8),
             row("converges", 40.0, 300.0, 0.93), row("converges", 60.0, 900.0, 0.91),
             row("converges-earlier", 30.0, 300.0, 0.92), row("converges-earlier", "", 500.0,
                                                               "0.90")]
    ranking = [model for model, _ in model_ranking(table)]
    # Both converging models reach 0.9 on both conditions; one never reaches 0.5 on one of
    # them (counted as 2 × 5·10³): "converges" is first.
    assert ranking == ["converges", "converges-earlier", "early-but-never-converges"]

    # Same conditions reached: finding the particle a little earlier does not outweigh
    # segmenting it fully much later (both levels' doses count).
    table = [row("finds-earlier", 20.0, 1500.0, 0.9), row("finds-earlier", 1200.0, 150.0, 0.9),
             row("segments-earlier", 25.0, 400.0, 0.9), row("segments-earlier", 4000.0, 70.0,
                                                            0.9)]
    assert [model for model, _ in model_ranking(table)] == ["segments-earlier",
                                                            "finds-earlier"]


def test_a_row_is_the_same_scored_from_kept_masks_as_from_the_network(monkeypatch):
    """``eval_battery.py --rescore`` scores kept masks with ``row_from_masks``: the row a
    network run writes, without the seconds."""
    from napari_lowdose.workflows.battery_runs import battery_row, row_from_masks

    rng = np.random.default_rng(1)
    truth = np.zeros((64, 64), dtype=bool)
    truth[20:44, 16:40] = True
    dose = np.geomspace(5, 5e3, 40)
    masks = _series_masks(dose, truth, found_from=50.0, noisy_below=20.0, rng=rng)

    class Oracle:  # a "network" whose probabilities are the masks, frame by frame
        pass

    import napari_lowdose.models.inference as inference

    def predict(model, frames, **_):
        for index in range(len(frames)):
            yield index, masks[index].astype(np.float32)

    monkeypatch.setattr(inference, "predict_probabilities", predict)
    kept = []
    row = battery_row("oracle", BATTERY[0], 0, 0.5, Oracle(), masks.astype(np.float32),
                      truth, dose, on_masks=kept.append)
    again = row_from_masks("oracle", BATTERY[0].name, 0, 0.5, kept[0], truth, dose)
    assert {k: v for k, v in row.items() if k != "seconds"} == again
    assert again["readouts"]["visibility_dose_e_per_A2"] == pytest.approx(dose[dose >= 50][0])


def test_kept_masks_round_trip(tmp_path):
    """``eval_battery.py --keep-masks`` / ``--rescore``: masks of any width come back."""
    from napari_lowdose.workflows.battery_runs import load_masks, save_masks

    masks = np.random.default_rng(2).random((3, 5, 13)) > 0.5  # 13: not a multiple of 8
    save_masks(tmp_path / "kept" / "m.npz", masks)
    back = load_masks(tmp_path / "kept" / "m.npz")
    assert back.dtype == bool and np.array_equal(back, masks)
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["m.npz"]
