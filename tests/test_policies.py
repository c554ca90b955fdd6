"""One rule each, the same in every face: electrons per pixel, the detector gain, a layer's
pixel size. Each test here failed before the rule was written once (issue: one core, two
faces): non-square pixels got the area of a square with the mean side, ``watch`` ignored
the gain the file states, and a layer calibrated in nm was taken as uncalibrated."""

import json

import numpy as np
import pytest
import tifffile

from napari_lowdose.cli import main
from napari_lowdose.insitu import FrameDenoiser
from napari_lowdose.io.layers import pixel_size_A_from_scale
from napari_lowdose.io.units import electrons_per_pixel
from napari_lowdose.workflows.policies import GainError, detector_gain, expected_e_per_px

PIXEL_YX_A = (0.5, 1.0)  # a non-square pixel: 0.5 Å high, 1 Å wide
DOSES = np.geomspace(20.0, 2000.0, 6)


def test_electrons_per_pixel_is_dose_times_both_sides():
    np.testing.assert_allclose(electrons_per_pixel(DOSES, PIXEL_YX_A), DOSES * 0.5)
    np.testing.assert_allclose(electrons_per_pixel(100.0, 0.2), 100.0 * 0.04)
    values, how = expected_e_per_px(DOSES, PIXEL_YX_A, dose_source="table")
    np.testing.assert_allclose(values, DOSES * 0.5)
    assert "0.5 × 1" in how and "table" in how
    assert expected_e_per_px(DOSES, None)[0] is None
    assert expected_e_per_px(None, PIXEL_YX_A)[0] is None


def test_the_gain_rule():
    assert detector_gain(None, None) == 1.0
    assert detector_gain(None, 44.0) == 44.0  # what the file states
    assert detector_gain(2.0, 44.0) == 2.0  # the user's wins
    assert detector_gain(0.0, 3.0) == 3.0  # 0 means "not given"
    with pytest.raises(GainError):
        detector_gain(-1.0, None)


@pytest.mark.parametrize(("unit", "scale", "expected"), [
    ("angstrom", (0.5, 1.0), (0.5, 1.0)),
    ("nanometer", (0.05, 0.1), (0.5, 1.0)),
    ("µm", (1e-4, 1e-4), (1.0, 1.0)),
    ("pixel", (1.0, 1.0), None),
    ("furlong", (1.0, 1.0), None),
])
def test_layer_pixel_size_from_any_length_unit(unit, scale, expected):
    size = pixel_size_A_from_scale((1.0, *scale), ("pixel", unit, unit))
    if expected is None:
        assert size is None
    else:
        assert size == pytest.approx(expected)


@pytest.fixture(scope="module")
def non_square_series(tmp_path_factory):
    """A vacuum series with 0.5 × 1.0 Å pixels (ImageJ resolution in nm) and a dose table."""
    folder = tmp_path_factory.mktemp("nonsquare")
    rng = np.random.default_rng(0)
    e_per_px = DOSES * 0.5
    frames = rng.poisson(e_per_px[:, None, None] * np.ones((6, 96, 96))).astype(np.float32)
    path = folder / "series.tif"
    # ImageJ resolution is pixels per unit, (x, y): 10 px/nm wide (1 Å), 20 px/nm high.
    tifffile.imwrite(path, frames, imagej=True, resolution=(10.0, 20.0),
                     metadata={"unit": "nm", "axes": "ZYX"})
    table = folder / "dose.csv"
    table.write_text("dose_e_per_A2\n" + "\n".join(repr(float(d)) for d in DOSES) + "\n")
    return path, table


def test_info_reads_the_non_square_pixel(non_square_series, capsys):
    path, table = non_square_series
    assert main(["info", str(path), "--dose", str(table), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pixel_size_A"] == pytest.approx(list(PIXEL_YX_A))


def test_fit_noise_uses_the_pixel_area(non_square_series, tmp_path):
    path, table = non_square_series
    out = tmp_path / "fit"
    assert main(["fit-noise", str(path), "--roi", "0:64,0:64", "--dose", str(table),
                 "--model", "physical", "--out", str(out)]) == 0
    rows = (out / "noise_fits.csv").read_text().splitlines()
    header = rows[0].split(",")
    column = header.index("dose_e_per_px")
    e_per_px = [float(row.split(",")[column]) for row in rows[1:]]
    np.testing.assert_allclose(e_per_px, DOSES * 0.5, rtol=1e-9)  # was dose × 0.75²


def test_denoise_normalises_by_the_pixel_area(non_square_series, tmp_path):
    path, table = non_square_series
    out = tmp_path / "den"
    assert main(["denoise", str(path), "--dose", str(table), "--frames", "0:2",
                 "--out", str(out)]) == 0
    record = json.loads((out / "denoise.json").read_text())
    np.testing.assert_allclose(record["normalisation"]["expected_e_per_px"], DOSES[:2] * 0.5,
                               rtol=1e-9)


class _Identity:
    """Stands in for a denoiser network: FrameDenoiser only moves it and calls it."""

    def to(self, _device):
        return self


def test_watch_takes_the_gain_and_the_pixel_area_the_file_states():
    frame_denoiser = FrameDenoiser(_Identity(), "cpu")
    meta = {"dose_e_per_A2": 100.0, "pixel_size_A": PIXEL_YX_A, "counts_per_electron": 44.0}
    assert frame_denoiser.gain(meta) == 44.0  # was 1: the file's gain was ignored
    assert frame_denoiser.expected_e_per_px(meta) == pytest.approx(50.0)  # was 56.25
    given = FrameDenoiser(_Identity(), "cpu", counts_per_electron=2.0, pixel_size_A=0.2)
    assert given.gain(meta) == 2.0
    assert given.expected_e_per_px(meta) == pytest.approx(4.0)
