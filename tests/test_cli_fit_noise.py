"""`napari-lowdose fit-noise`: known detector parameters recovered from a saved series."""

import csv
import json

import numpy as np
import pytest

from napari_lowdose.cli import main
from napari_lowdose.io.writers import write_series_tiff
from napari_lowdose.noise import NoiseModel, apply_detector_noise

C0, C3, N0 = 0.27, 2.25, 0.5
SAMPLING_A = 0.1


@pytest.fixture(scope="module")
def vacuum_series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vacuum")
    dose = np.geomspace(10, 1300, 16)
    counts = apply_detector_noise(np.ones((16, 160, 160)), dose, SAMPLING_A, c0=C0, c3=C3,
                                  n0_e_per_px=N0, rng=3)
    path = write_series_tiff(folder / "vacuum.tif", counts, SAMPLING_A)
    table = folder / "dose.csv"
    table.write_text("dose_e_per_A2\n" + "\n".join(repr(float(d)) for d in dose) + "\n")
    return path, table, dose


def test_physical_fit_recovers_detector(vacuum_series, tmp_path, capsys):
    path, table, dose = vacuum_series
    out = tmp_path / "fit"
    assert main(["fit-noise", str(path), "--roi", "16:144,16:144", "--dose", str(table),
                 "--model", "physical", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "noise_fits.csv").open()))
    assert len(rows) == 16
    assert list(rows[0])[:3] == ["frame", "dose_e_per_A2", "dose_e_per_px"]
    assert {"c0", "c3", "amplitude_A", "background_B", "n0_e_per_px", "r2"} <= set(rows[0])
    np.testing.assert_allclose([float(r["dose_e_per_A2"]) for r in rows], dose)
    np.testing.assert_allclose([float(r["dose_e_per_px"]) for r in rows], dose * SAMPLING_A**2)
    c0 = np.median([float(r["c0"]) for r in rows if r["ok"] == "true"])
    assert abs(c0 - C0) < 0.03
    model = NoiseModel.from_json(out / "noise_model.json")
    assert abs(model.n0_e_per_px / N0 - 1) < 0.25
    record = json.loads((out / "noise_model.json").read_text())
    assert record["spectrum_kind"] == "power"
    assert (out / "noise_fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "N0 =" in capsys.readouterr().out


def test_paper_fit_columns_and_eq2(vacuum_series, tmp_path):
    path, table, _ = vacuum_series
    out = tmp_path / "paper"
    assert main(["fit-noise", str(path), "--roi", "0:128,0:128", "--dose", str(table),
                 "--out", str(out)]) == 0
    header = (out / "noise_fits.csv").read_text().splitlines()[0].split(",")
    assert header[3:8] == ["c0", "c1", "c2", "c3", "floor_C"]
    model = NoiseModel.from_json(out / "noise_model.json")
    assert abs(model.n0_e_per_px / N0 - 1) < 0.3
    assert model.spectrum_kind == "magnitude"


@pytest.mark.parametrize(
    ("roi", "message"),
    [("0:20,0:20", "at least 32×32"), ("100:200,0:64", "outside"), ("a:b", "Y0:Y1,X0:X1")],
)
def test_bad_region_is_one_line_error(vacuum_series, tmp_path, capsys, roi, message):
    path, table, _ = vacuum_series
    with pytest.raises(SystemExit) if roi == "a:b" else _no_raise():
        code = main(["fit-noise", str(path), "--roi", roi, "--out", str(tmp_path)])
        assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert not (tmp_path / "noise_fits.csv").exists()


def test_physical_with_magnitude_is_refused(vacuum_series, tmp_path, capsys):
    path, _, _ = vacuum_series
    assert main(["fit-noise", str(path), "--roi", "0:64,0:64", "--model", "physical",
                 "--spectrum", "magnitude", "--out", str(tmp_path)]) == 1
    assert "power spectrum" in capsys.readouterr().err


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_an_existing_output_folder_needs_overwrite(vacuum_series, tmp_path, capsys):
    """The output policy of every command: an existing folder is refused, nothing lost."""
    path, table, _ = vacuum_series
    out = tmp_path / "fit"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["fit-noise", str(path), "--roi", "16:144,16:144", "--dose", str(table),
            "--out", str(out)]
    assert main(argv) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--overwrite" in error
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "noise_fit.png", "noise_fits.csv", "noise_model.json", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


# -- frame pairs (no vacuum) ------------------------------------------------------------
@pytest.fixture(scope="module")
def particle_series(tmp_path_factory):
    from noise_data import drifting_series

    folder = tmp_path_factory.mktemp("pairs")
    frames = drifting_series([2000.0] * 4)
    path = write_series_tiff(folder / "particle.tif", frames, 0.1)
    second = write_series_tiff(folder / "second.tif", frames[1], 0.1)
    first = write_series_tiff(folder / "first.tif", frames[0], 0.1)
    return path, first, second


def test_pairs_source_writes_the_outputs_and_records_it(particle_series, tmp_path, capsys):
    path, _, _ = particle_series
    out = tmp_path / "pairs"
    assert main(["fit-noise", str(path), "--source", "pairs", "--counts-per-electron", "10",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "noise source: pairs" in printed and "frame pairs: 2" in printed
    rows = list(csv.DictReader((out / "noise_fits.csv").open()))
    assert len(rows) == 1 and rows[0]["noise_source"] == "pairs"
    assert abs(float(rows[0]["c0"]) - C0) < 0.02
    model = NoiseModel.from_json(out / "noise_model.json")
    assert model.noise_source == "pairs" and model.model_kind == "physical"
    assert abs(model.n0_e_per_px / 1.0 - 1) < 0.2
    assert (out / "noise_fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pair_with_a_second_file(particle_series, tmp_path, capsys):
    _, first, second = particle_series
    out = tmp_path / "two"
    assert main(["fit-noise", str(first), "--pair-with", str(second), "--roi", "0:200,0:200",
                 "--counts-per-electron", "10", "--out", str(out)]) == 0
    assert "shift (dy, dx) 1, -1 px" in capsys.readouterr().out
    assert NoiseModel.from_json(out / "noise_model.json").noise_source == "pairs"


def test_vacuum_stays_the_default_and_needs_a_region(vacuum_series, particle_series, tmp_path,
                                                     capsys):
    path, _, _ = vacuum_series
    assert main(["fit-noise", str(path), "--out", str(tmp_path / "a")]) == 1
    assert "--roi" in capsys.readouterr().err
    out = tmp_path / "b"
    assert main(["fit-noise", str(path), "--roi", "0:64,0:64", "--out", str(out)]) == 0
    assert NoiseModel.from_json(out / "noise_model.json").noise_source == "vacuum"
    _, first, second = particle_series
    assert main(["fit-noise", str(first), "--source", "pairs", "--out",
                 str(tmp_path / "c")]) == 1
    assert "one frame" in capsys.readouterr().err


def test_pairs_that_cannot_be_fitted_keep_the_table_and_plot(tmp_path, capsys):
    # Shot noise without any blur has no MTF fall-off: Eq. 1's c3 runs to its bound and no
    # row is fitted. A field of large discs, exposed twice, makes the two frames register.
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    field = 1.0 - 0.5 * (np.hypot(yy - 40, xx - 50) < 20) - 0.5 * (np.hypot(yy - 90, xx - 90) < 15)
    frames = rng.poisson(200.0 * field, size=(2, 128, 128)).astype(np.float32)
    path = write_series_tiff(tmp_path / "white.tif", frames, SAMPLING_A)
    out = tmp_path / "out"
    assert main(["fit-noise", str(path), "--source", "pairs", "--counts-per-electron", "1",
                 "--out", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "no spectrum of the frame pairs could be fitted" in error and "bound" in error
    assert "no noise model written" in error and str(out) in error
    assert sorted(p.name for p in out.iterdir()) == ["noise_fit.png", "noise_fits.csv"]
    rows = list(csv.DictReader((out / "noise_fits.csv").open()))
    assert len(rows) == 1 and rows[0]["ok"].lower() in ("false", "0")


def test_a_region_over_structure_writes_no_noise_model_unless_allowed(particle_series, tmp_path,
                                                                      capsys):
    """The Detector-noise dock's rule: a rectangle that fails the vacuum check (a particle in
    it biases c0, c3 and N0) gives the table and the plot, no noise model, one line and exit
    status 1; --allow-non-vacuum writes the model and records that it failed."""
    path, _, _ = particle_series
    argv = ["fit-noise", str(path), "--roi", "0:128,0:128", "--counts-per-electron", "10",
            "--model", "physical"]
    out = tmp_path / "structure"
    assert main([*argv, "--out", str(out)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert "probably not pure vacuum" in error[-1] and "--allow-non-vacuum" in error[-1]
    assert sorted(p.name for p in out.iterdir()) == ["noise_fit.png", "noise_fits.csv"]
    forced = tmp_path / "forced"
    assert main([*argv, "--out", str(forced), "--allow-non-vacuum"]) == 0
    model = NoiseModel.from_json(forced / "noise_model.json")
    assert "failed the vacuum check" in model.description
