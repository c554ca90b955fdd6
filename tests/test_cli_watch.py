"""``napari-lowdose watch`` and the in-situ output folder (issue 7, in-situ mode)."""

import csv
import threading
import time

import numpy as np
import pytest
import tifffile

from napari_lowdose.cli import main
from napari_lowdose.insitu import LOG_FILE, Failure, FrameDenoiser, InSituOutput, WatchStats
from napari_lowdose.io.readers import read_series
from napari_lowdose.io.writers import write_series_tiff
from napari_lowdose.models.checkpoint import save_checkpoint
from napari_lowdose.models.denoiser import DenoiserUNet
from napari_lowdose.models.denoising import denoise_frame

PIXEL_A, DOSE = 0.5, 20.0


@pytest.fixture(scope="module")
def denoiser_file(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = DenoiserUNet(base_channels=4, levels=1)
    with torch.no_grad():  # not the identity, so that the output differs from the input
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return save_checkpoint(tmp_path_factory.mktemp("m") / "den.safetensors", model,
                           arch="denoiser", metadata={})


def _frames(n, seed):
    rng = np.random.default_rng(seed)
    return rng.poisson(DOSE * PIXEL_A**2, size=(n, 24, 32)).astype(np.float32)


def _log_rows(out):
    with open(out / LOG_FILE, newline="") as log:
        return list(csv.DictReader(log))


def test_watch_denoises_files_present_and_arriving_in_order(denoiser_file, tmp_path, capsys):
    camera, out = tmp_path / "camera", tmp_path / "out"
    camera.mkdir()
    first = _frames(2, 0)
    write_series_tiff(camera / "frame_2.tif", first, PIXEL_A, dose_e_per_A2=[DOSE, DOSE])
    later = _frames(1, 1)[0]

    def camera_writes_later():
        time.sleep(0.6)
        write_series_tiff(camera / "frame_10.tif", later, PIXEL_A, dose_e_per_A2=[DOSE])

    writer = threading.Thread(target=camera_writes_later)
    writer.start()
    status = main(["watch", str(camera), "--out", str(out), "--model", str(denoiser_file),
                   "--device", "cpu", "--settle-s", "0.1", "--poll-s", "0.05",
                   "--idle-timeout-s", "1.5"])
    writer.join()
    assert status == 0
    printed = capsys.readouterr().out
    assert "processed 3 frames" in printed and "backlog 0" in printed
    rows = _log_rows(out)
    assert [(r["file"], r["frame_in_file"]) for r in rows] == [
        ("frame_2.tif", "0"), ("frame_2.tif", "1"), ("frame_10.tif", "0")]
    assert all(r["status"] == "ok" for r in rows)
    assert float(rows[0]["expected_e_per_px"]) == pytest.approx(DOSE * PIXEL_A**2)
    # Same shape, calibration and dose as the input; the values are the denoiser's.
    written = read_series(out / "frame_2_denoised.tif")
    assert written.data.shape == first.shape
    assert written.pixel_size_A == pytest.approx((PIXEL_A, PIXEL_A), rel=1e-4)
    assert written.frame_dose.dose_e_per_A2.tolist() == [DOSE, DOSE]
    from napari_lowdose.models.registry import load_denoiser

    model, _ = load_denoiser(denoiser_file)
    expected = denoise_frame(model, first[1], expected_e_per_px=DOSE * PIXEL_A**2,
                             device="cpu")
    assert np.allclose(np.asarray(written.data)[1], expected, atol=1e-5)
    assert not np.allclose(expected, first[1])
    assert (out / "frame_10_denoised.tif").is_file()


def test_watch_reports_an_unreadable_file_and_exits_1(denoiser_file, tmp_path, capsys):
    camera, out = tmp_path / "camera", tmp_path / "out"
    camera.mkdir()
    (camera / "a_broken.tif").write_bytes(b"II*\x00 this is not a TIFF")
    np.save(camera / "b_good.npy", _frames(1, 2)[0])
    status = main(["watch", str(camera), "--out", str(out), "--model", str(denoiser_file),
                   "--device", "cpu", "--settle-s", "0.05", "--poll-s", "0.02",
                   "--idle-timeout-s", "0.5"])
    assert status == 1
    captured = capsys.readouterr()
    assert "a_broken.tif" in captured.err and "read failed" in captured.err
    rows = _log_rows(out)
    assert rows[0]["file"] == "a_broken.tif" and rows[0]["status"].startswith("failed (read)")
    assert rows[1]["file"] == "b_good.npy" and rows[1]["status"] == "ok"
    # No pixel size or dose in a .npy: the frame mean sets the scale.
    assert rows[1]["expected_e_per_px"] == ""
    assert (out / "b_good_denoised.tif").is_file()


@pytest.mark.parametrize("case", ["missing", "same-folder", "negative", "not-a-denoiser"])
def test_watch_bad_options_give_one_line(case, denoiser_file, tmp_path, capsys):
    camera = tmp_path / "camera"
    camera.mkdir()
    args = ["watch", str(camera), "--out", str(tmp_path / "out"), "--model",
            str(denoiser_file), "--idle-timeout-s", "0.1"]
    if case == "missing":
        args[1] = str(tmp_path / "nowhere")
    elif case == "same-folder":
        args[3] = str(camera)
    elif case == "negative":
        args += ["--settle-s", "-1"]
    else:
        from napari_lowdose.models.msdnet import MSDNet

        seg = save_checkpoint(tmp_path / "seg.safetensors",
                              MSDNet(depth=2, width=1, kernel_size=3), arch="msdnet",
                              metadata={})
        args[5] = str(seg)
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("napari-lowdose: error:")
    assert not (tmp_path / "out").exists()


def test_in_situ_output_keeps_frame_order_when_a_frame_fails(tmp_path):
    output = InSituOutput(tmp_path / "out")
    stats = WatchStats()
    meta = {"n_frames_in_file": 3, "pixel_size_A": (PIXEL_A, PIXEL_A), "dose_e_per_A2": DOSE}
    source = tmp_path / "stack.tif"
    output.add_frame(source, 0, np.zeros((4, 5)), meta, stats)
    output.add_failure(Failure(source, 1, "process", "boom"), stats)
    written = output.add_frame(source, 2, np.ones((4, 5)), meta, stats)
    data = tifffile.imread(written)
    assert data.shape == (3, 4, 5)
    assert np.isnan(data[1]).all() and (data[2] == 1).all()
    # A second file of the same name does not replace the first.
    again = output.add_frame(source, 2, np.ones((4, 5)), meta, stats)
    assert again.name == "stack_denoised_1.tif" and written.is_file()


def test_frame_denoiser_takes_dose_and_pixel_size_from_file_or_options():
    model = DenoiserUNet(base_channels=2, levels=1)
    from_file = FrameDenoiser(model, "cpu")
    assert from_file.expected_e_per_px({"dose_e_per_A2": 8.0, "pixel_size_A": (0.5, 0.5)}) == 2.0
    assert from_file.expected_e_per_px({"dose_e_per_A2": None, "pixel_size_A": None}) is None
    fixed = FrameDenoiser(model, "cpu", dose_e_per_A2=100.0, pixel_size_A=0.1)
    assert fixed.expected_e_per_px({"dose_e_per_A2": 8.0}) == pytest.approx(1.0)


def test_sigterm_ends_a_watch_as_ctrl_c_does(denoiser_file, tmp_path):
    """A job queue or service manager stops a watch with SIGTERM: the log is closed and the
    summary printed (it ended with no summary)."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "camera"
    folder.mkdir()
    write_series_tiff(folder / "frame_1.tif", _frames(1, 0)[0], PIXEL_A)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "napari_lowdose.cli", "watch", str(folder), "--model",
         str(denoiser_file), "--out", str(out), "--device", "cpu", "--settle-s", "0.1",
         "--dose-e-per-A2", str(DOSE), "--pixel-size-A", str(PIXEL_A)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / LOG_FILE).is_file() or len(_log_rows(out)) < 1:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert stdout.startswith("stopped: ") and "wrote 1 denoised file(s)" in stdout
