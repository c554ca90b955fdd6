"""The napari-lowdose command: info on real files, demo, one-line errors."""

import json
import subprocess
import sys

import pytest

from napari_lowdose.cli import main
from real_files import REAL_FILES


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_info_prints_pixel_size(real_formats, name, capsys):
    assert main(["info", str(real_formats / name)]) == 0
    out = capsys.readouterr().out
    _, pixel_A = REAL_FILES[name]
    line = next(ln for ln in out.splitlines() if ln.startswith("pixel size:"))
    if pixel_A is None:
        assert "uncalibrated" in line
    else:
        assert f"{pixel_A:.6g} Å/px" in line


def test_info_json_and_dose_table(real_formats, tmp_path, capsys):
    table = tmp_path / "dose.csv"
    table.write_text("dose_e_per_A2\n" + "\n".join(str(10 * (i + 1)) for i in range(5)) + "\n")
    name = "tia_old_64x64x5_TEM_preview.emi"
    assert main(["info", str(real_formats / name), "--dose", str(table), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [5, 64, 64]
    assert info["dose"]["source"] == "table"
    assert info["dose"]["dose_e_per_A2"] == [10, 20, 30, 40, 50]


def test_info_dose_from_counts(real_formats, capsys):
    name = "tia_old_64x64_TEM_images_acquire.emi"
    assert main(["info", str(real_formats / name), "--counts-per-electron", "10",
                 "--counts-roi", "0:32,0:32"]) == 0
    assert "dose source: counts" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["empty", "garbage", "unsupported", "directory", "missing",
                                  "truncated", "bad-dose-table"])
def test_bad_input_gives_one_line_and_nonzero_exit(real_formats, tmp_path, kind, capsys):
    target = {
        "empty": tmp_path / "e.mrc",
        "garbage": tmp_path / "g.dm4",
        "unsupported": tmp_path / "x.jpg",
        "directory": tmp_path,
        "missing": tmp_path / "nothing.ser",
        "truncated": tmp_path / "t.emd",
        "bad-dose-table": real_formats / "dm_3D_test-1.dm3",
    }[kind]
    if kind == "empty":
        target.write_bytes(b"")
    elif kind in ("garbage", "unsupported"):
        target.write_bytes(b"\x00\x01garbage" * 100)
    elif kind == "truncated":
        target.write_bytes((real_formats / "emd_Si100_2x1x1_3D.emd").read_bytes()[:5000])
    args = ["info", str(target)]
    if kind == "bad-dose-table":
        (tmp_path / "d.csv").write_text("dose\n1\n2\n")
        args += ["--dose", str(tmp_path / "d.csv"), "--dose-source", "table"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("napari-lowdose: error:")
    assert "Traceback" not in err


def test_console_script_runs(real_formats):
    result = subprocess.run(
        [sys.executable, "-m", "napari_lowdose.cli", "info",
         str(real_formats / "mrc_20241021_00405_movie.mrc")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0
    assert "10 Å/px" in result.stdout
    assert "rate_x_exposure" in result.stdout


@pytest.mark.parametrize("command", ["segment", "denoise"])
@pytest.mark.parametrize("name", ["emd_example_image.emd",
                                  "tiff_test_loading_image_saved_with_DM.tif",
                                  "tia_old_64x64_TEM_images_acquire.emi"])
def test_single_images_of_every_kind_go_through_the_main_commands(real_formats, tmp_path,
                                                                  command, name):
    """A single image in an HDF5 file (EMD) used to stop segment and denoise with 'internal
    error: Indexing with None'; every single-image format is one frame now."""
    from napari_lowdose.io.readers import read_series

    out = tmp_path / "out"
    argv = [command, str(real_formats / name), "--device", "cpu", "--out", str(out)]
    if command == "segment":
        argv += ["--no-match-sampling"]
    assert main(argv) == 0
    written = out / ("masks.tif" if command == "segment" else "denoised.tif")
    assert read_series(written).data.shape == REAL_FILES[name][0]


def test_a_single_hdf5_image_is_one_frame():
    import h5py
    import numpy as np

    from napari_lowdose.io.series import as_frame_stack

    with h5py.File("in-memory", "w", driver="core", backing_store=False) as handle:
        dataset = handle.create_dataset("image", data=np.arange(12.0).reshape(3, 4))
        stack = as_frame_stack(dataset)
        assert stack.shape == (1, 3, 4) and stack[0, 2, 3] == 11.0


def test_the_dose_from_counts_of_a_single_hdf5_image(real_formats, capsys):
    """The counts dose read the frames as data[None], which an HDF5 dataset refuses."""
    assert main(["info", str(real_formats / "emd_example_image.emd"), "--dose-source",
                 "counts", "--counts-per-electron", "2", "--pixel-size-A", "1"]) == 0
    assert "dose:        " in capsys.readouterr().out
