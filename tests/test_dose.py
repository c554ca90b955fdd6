"""Dose per frame: priority order, each source, and clear refusals."""

import numpy as np
import pytest

from napari_lowdose.errors import DoseCalibrationError
from napari_lowdose.io.dose import (
    FrameDose,
    dose_from_counts,
    read_dose_table,
    resolve_frame_dose,
    write_dose_table,
)
from napari_lowdose.io.dose_calibration import calibrate_frame_dose
from napari_lowdose.simulate.synthetic_series import make_synthetic_dose_series


def test_dose_table_round_trip(tmp_path):
    dose = np.geomspace(10, 1e4, 7)
    write_dose_table(tmp_path / "d.csv", dose)
    np.testing.assert_allclose(read_dose_table(tmp_path / "d.csv", n_frames=7), dose)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frame,dose\n0,1\n", "dose_e_per_A2"),
        ("dose_e_per_A2\n1\nabc\n", "line 3"),
        ("dose_e_per_A2\n1\n-2\n", "negative"),
        ("dose_e_per_A2\n1\nnan\n", "finite"),
        ("dose_e_per_A2\n", "no values"),
        ("dose_e_per_A2\n1\n2\n", "2 rows but the series has 3 frames"),
    ],
)
def test_bad_dose_tables_are_refused(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DoseCalibrationError, match=message):
        read_dose_table(path, n_frames=3)


def test_priority_order(tmp_path):
    write_dose_table(tmp_path / "t.csv", [5.0, 6.0])
    counts = np.array([200.0, 400.0])
    everything = {
        "metadata_dose_e_per_A2": [1.0, 2.0],
        "metadata_key": "header",
        "dose_table": tmp_path / "t.csv",
        "dose_rate_e_per_A2_s": 100.0,
        "exposure_time_s": 0.5,
        "counts_per_electron": 2.0,
        "pixel_area_A2": 0.25,
        "mean_counts": counts,
    }
    order = ["metadata_dose_e_per_A2", "dose_table", "dose_rate_e_per_A2_s", "mean_counts"]
    expected = {"metadata": [1, 2], "table": [5, 6], "rate_x_exposure": [50, 50],
                "counts": [400, 800]}
    for drop, source in zip([None] + order[:-1], expected, strict=True):
        if drop is not None:
            everything.pop(drop)
        dose = resolve_frame_dose(2, **everything)
        assert dose.source == source
        np.testing.assert_allclose(dose.dose_e_per_A2, expected[source])
    everything.pop("mean_counts")
    assert resolve_frame_dose(2, **everything) is None


def test_counts_source_recovers_synthetic_dose():
    series = make_synthetic_dose_series(n_frames=8, shape=(64, 64), particle_radius_A=4.0)
    p = series.parameters
    # The particle sits in the middle: take a vacuum corner.
    dose = calibrate_frame_dose(
        series.counts, pixel_area_A2=p.sampling_A**2, source="counts",
        counts_per_electron=p.counts_per_electron, roi=(0, 12, 0, 12),
    )
    # Vacuum counts = gain × (N_D + N0); N0 = 0.01 e⁻/px is negligible against Poisson error.
    n_px = 144
    poisson_rel = 1 / np.sqrt(series.dose_e_per_A2 * p.sampling_A**2 * n_px)
    rel = np.abs(dose.dose_e_per_A2 / series.dose_e_per_A2 - 1)
    assert np.all(rel < 4 * poisson_rel + 0.01)
    assert dose.source == "counts"


def test_forced_source_explains_what_is_missing():
    data = np.zeros((3, 4, 4))
    with pytest.raises(DoseCalibrationError, match="exposure time"):
        calibrate_frame_dose(data, pixel_area_A2=1.0, source="rate_x_exposure",
                             dose_rate_e_per_A2_s=10.0)
    with pytest.raises(DoseCalibrationError, match="calibrated pixel size"):
        calibrate_frame_dose(data, pixel_area_A2=None, source="counts", counts_per_electron=1.0)
    with pytest.raises(DoseCalibrationError, match="not inside"):
        calibrate_frame_dose(data, pixel_area_A2=1.0, source="counts", counts_per_electron=1.0,
                             roi=(0, 10, 0, 2))


def test_user_values_override_metadata_hints():
    data = np.zeros((2, 4, 4))
    hints = {"dose_rate_e_per_A2_s": 10.0, "exposure_time_s": 1.0}
    assert calibrate_frame_dose(data, pixel_area_A2=1, hints=hints).dose_e_per_A2[0] == 10
    dose = calibrate_frame_dose(data, pixel_area_A2=1, hints=hints, exposure_time_s=0.1)
    np.testing.assert_allclose(dose.dose_e_per_A2, [1.0, 1.0])


def test_negative_counts_are_refused():
    with pytest.raises(DoseCalibrationError, match="dark"):
        dose_from_counts([-1.0], 1.0, 1.0)


def test_frame_dose_metadata_round_trip_and_units():
    dose = FrameDose(np.array([10.0, 100.0]), "table", "d.csv")
    again = FrameDose.from_metadata(dose.to_metadata())
    np.testing.assert_array_equal(again.dose_e_per_A2, dose.dose_e_per_A2)
    assert again.source == "table"
    np.testing.assert_allclose(dose.dose_e_per_px(0.1), [0.1, 1.0])
    np.testing.assert_allclose(dose.cumulative_dose_e_per_A2, [10, 110])
    with pytest.raises(DoseCalibrationError):
        FrameDose(np.array([1.0]), "guess")
