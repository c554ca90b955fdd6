"""NaN or infinite pixels are refused, naming the frames, in every command: never a
"success" with a NaN or empty result."""

import numpy as np
import pytest

from napari_lowdose.cli import main
from napari_lowdose.io.series import BadPixelsError, check_finite_frames
from napari_lowdose.io.writers import write_series_tiff
from napari_lowdose.noise import apply_detector_noise

DOSES = [50.0, 100.0, 200.0, 400.0]


@pytest.fixture(scope="module")
def damaged_series(tmp_path_factory):
    """Four 96² frames at 0.1 Å/px with a dose each; frame 2 has a NaN patch (segment
    resamples them to its model's 0.075 Å/px by default: the check must name frame 2 there too)."""
    folder = tmp_path_factory.mktemp("bad")
    frames = apply_detector_noise(np.ones((4, 96, 96)), DOSES, 0.1, c0=0.27, c3=2.25,
                                  n0_e_per_px=0.01, rng=0).astype(np.float32)
    frames[2, 10:14, 20:30] = np.nan
    return write_series_tiff(folder / "damaged.tif", frames, 0.1, dose_e_per_A2=DOSES)


def test_the_check_names_every_bad_frame():
    frames = np.ones((5, 8, 8), dtype=np.float32)
    frames[1, 0, 0] = np.nan
    frames[3] = np.inf
    with pytest.raises(BadPixelsError, match=r"frames 11 \(1 px\), 13 \(64 px\) hold NaN"):
        check_finite_frames(frames, range(10, 15))
    check_finite_frames(np.ones((2, 4, 4), dtype=np.uint16))  # integers are always finite


@pytest.mark.parametrize("argv", [
    ["segment", "{series}", "--out", "{out}"],
    ["denoise", "{series}", "--out", "{out}"],
    ["info", "{series}", "--dose-source", "counts", "--counts-per-electron", "2"],
])
def test_commands_refuse_the_damaged_frame_in_one_line(damaged_series, tmp_path, capsys, argv):
    out = tmp_path / "out"
    argv = [a.format(series=damaged_series, out=out) for a in argv]
    assert main(argv) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "frame 2" in error and "NaN or infinite" in error
    assert not out.exists()  # nothing written, nothing half-written


def test_fit_noise_leaves_the_damaged_frame_out_and_says_so(damaged_series, tmp_path, capsys):
    """Frames are fitted one by one: the damaged one is masked out, named, and marked."""
    out = tmp_path / "fit"
    assert main(["fit-noise", str(damaged_series), "--roi", "0:64,0:64", "--out", str(out)]) == 0
    error = capsys.readouterr().err
    assert "frame(s) 2 hold NaN or infinite pixels" in error
    rows = (out / "noise_fits.csv").read_text().splitlines()
    header = rows[0].split(",")
    ok = [row.split(",")[header.index("ok")] for row in rows[1:]]
    assert ok[2] == "false" and ok.count("false") >= 1
