"""``napari-lowdose denoise`` and ``train-denoiser`` (issue 7)."""

import json

import numpy as np
import pytest
import torch

from denoise_data import clean_lattice, fake_simulated_dataset, noisy_copies
from napari_lowdose.cli import main
from napari_lowdose.io.dose import write_dose_table
from napari_lowdose.io.readers import read_series
from napari_lowdose.io.writers import write_series_tiff
from napari_lowdose.models import registry
from napari_lowdose.models.checkpoint import save_checkpoint
from napari_lowdose.models.denoiser import DenoiserUNet
from napari_lowdose.models.msdnet import MSDNet

PIXEL_A = 0.3
TINY_TRAIN = ["--epochs", "1", "--crop", "16", "--batch-size", "2", "--steps-per-epoch", "2",
              "--base-channels", "2", "--levels", "1", "--device", "cpu",
              "--max-val-images", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("denoise")
    clean = clean_lattice((40, 52))
    doses = np.array([10.0, 30.0, 100.0])  # e⁻/Å²
    frames = np.stack([noisy_copies(clean, d * PIXEL_A**2, 1, seed=i)[0]
                       for i, d in enumerate(doses)])
    series = write_series_tiff(root / "series.tif", frames, PIXEL_A, dose_e_per_A2=doses)
    write_dose_table(root / "dose.csv", doses * 2)
    model = DenoiserUNet(base_channels=4, levels=1)
    with torch.no_grad():
        model.head.weight.fill_(0.01)
    denoiser = save_checkpoint(root / "den.safetensors", model, arch="denoiser", metadata={})
    segmenter = save_checkpoint(root / "seg.safetensors", MSDNet(depth=2, width=1,
                                                                 kernel_size=3),
                                arch="msdnet", metadata={})
    return {"root": root, "series": series, "frames": frames, "doses": doses,
            "denoiser": denoiser, "segmenter": segmenter, "clean": clean}


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-lowdose: error:"), err
    assert len(err.splitlines()) == 1, err
    return err


def test_denoise_round_trip_keeps_shape_calibration_and_dose(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["denoise", str(inputs["series"]), "--model", str(inputs["denoiser"]),
                 "--device", "cpu", "--out", str(out)]) == 0
    assert "3 frame(s) denoised" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["denoise.json", "denoised.tif"]
    back = read_series(out / "denoised.tif")
    data = np.asarray(back.data)
    assert data.shape == inputs["frames"].shape and data.dtype == np.float32
    assert back.pixel_size_A == pytest.approx((PIXEL_A, PIXEL_A))
    assert back.frame_dose.dose_e_per_A2 == pytest.approx(inputs["doses"])
    # Output in the input's units: the means agree and the frames differ.
    assert data.mean(axis=(1, 2)) == pytest.approx(inputs["frames"].mean(axis=(1, 2)), rel=0.1)
    assert not np.allclose(data, inputs["frames"])
    record = json.loads((out / "denoise.json").read_text())
    assert record["model"]["metadata"]["arch"] == "denoiser"
    assert record["frames"] == {"start": 0, "stop": 3, "count": 3}
    assert record["normalisation"]["expected_e_per_px"] == pytest.approx(
        list(inputs["doses"] * PIXEL_A**2))
    assert record["dose"]["source"] == "metadata"
    assert {"napari-lowdose", "torch", "numpy"} <= set(record["versions"])


def test_denoise_a_frame_range_with_a_dose_table(inputs, tmp_path):
    out = tmp_path / "part"
    assert main(["denoise", str(inputs["series"]), "--model", str(inputs["denoiser"]),
                 "--device", "cpu", "--frames", "1:", "--dose", str(inputs["root"] / "dose.csv"),
                 "--dose-source", "table", "--out", str(out)]) == 0
    back = read_series(out / "denoised.tif")
    assert np.asarray(back.data).shape == (2, 40, 52)
    assert back.frame_dose.dose_e_per_A2 == pytest.approx(2 * inputs["doses"][1:])
    record = json.loads((out / "denoise.json").read_text())
    assert record["frames"]["count"] == 2 and record["dose"]["source"] == "table"
    assert record["dihedral_average"] is False


def test_denoise_with_the_dihedral_average_records_it_and_differs(inputs, tmp_path):
    common = [str(inputs["series"]), "--model", str(inputs["denoiser"]), "--device", "cpu",
              "--frames", "0:1", "--no-quality"]
    assert main(["denoise", *common, "--out", str(tmp_path / "plain")]) == 0
    assert main(["denoise", *common, "--dihedral-average", "--out", str(tmp_path / "d8")]) == 0
    record = json.loads((tmp_path / "d8" / "denoise.json").read_text())
    assert record["dihedral_average"] is True
    plain = np.asarray(read_series(tmp_path / "plain" / "denoised.tif").data)
    averaged = np.asarray(read_series(tmp_path / "d8" / "denoised.tif").data)
    assert averaged.shape == plain.shape and not np.allclose(averaged, plain)


@pytest.mark.parametrize("case", ["missing series", "segmentation model", "not installed",
                                  "bad frames", "empty frames", "frames past the end",
                                  "the series as its own reference"])
def test_bad_inputs_give_one_line_and_no_output(inputs, tmp_path, capsys, monkeypatch, case):
    monkeypatch.setattr(registry, "PRETRAINED_DIR", tmp_path / "no-models")
    series, model = str(inputs["series"]), ["--model", str(inputs["denoiser"])]
    argv = {
        "missing series": [str(tmp_path / "nope.tif"), *model],
        "segmentation model": [series, "--model", str(inputs["segmenter"])],
        "not installed": [series],
        "bad frames": [series, *model, "--frames", "1-2"],
        "empty frames": [series, *model, "--frames", "2:2"],
        "frames past the end": [series, *model, "--frames", "1:10"],  # 3 frames
        "the series as its own reference": [series, *model, "--reference", series],
    }[case]
    out = tmp_path / "out"
    assert main(["denoise", *argv, "--device", "cpu", "--out", str(out)]) == 1
    err = _one_line_error(capsys)
    expected = {"missing series": "nope.tif", "segmentation model": "not a denoiser",
                "not installed": "is not installed", "bad frames": "A:B",
                "empty frames": "selects no frame",
                "frames past the end": "reaches past the series' 3 frame(s)",
                "the series as its own reference": "not an independent exposure"}[case]
    assert expected in err
    assert not out.exists()


def test_an_existing_output_folder_needs_overwrite(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    argv = ["denoise", str(inputs["series"]), "--model", str(inputs["denoiser"]), "--device",
            "cpu", "--out", str(out)]
    assert main(argv) == 1
    assert "--overwrite" in _one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "denoised.tif").is_file() and (out / "keep.txt").is_file()


def test_train_denoiser_on_simulated_data_writes_a_loadable_model(tmp_path, capsys):
    data = fake_simulated_dataset(tmp_path / "ds")
    out = tmp_path / "model.safetensors"
    assert main(["train-denoiser", "--source", "simulated", "--data", str(data),
                 "--dose-range", "50,500", *TINY_TRAIN, "--out", str(out)]) == 0
    assert "best validation PSNR" in capsys.readouterr().out
    model, meta = registry.load_denoiser(out)
    assert isinstance(model, DenoiserUNet) and model.config["base_channels"] == 2
    assert meta["source"]["kind"] == "simulated"
    assert meta["source"]["dose_range_e_per_A2"] == [50.0, 500.0]
    assert meta["dataset"]["card"]["format"] == "napari-lowdose/simulated-dataset"
    assert meta["training"]["settings"]["loss"] == "l1"
    assert out.with_suffix(".json").is_file()
    # The new model denoises through the CLI.
    series = write_series_tiff(tmp_path / "s.tif", noisy_copies(clean_lattice((48, 48)), 5.0, 2),
                               0.25)
    assert main(["denoise", str(series), "--model", str(out), "--device", "cpu", "--out",
                 str(tmp_path / "den")]) == 0


def test_train_denoiser_on_pairs_and_on_a_series(inputs, tmp_path):
    clean = clean_lattice((64, 64))
    short = write_series_tiff(tmp_path / "short.tif", noisy_copies(clean, 4.0, 2), PIXEL_A)
    long = write_series_tiff(tmp_path / "long.tif", clean * 1000.0, PIXEL_A)
    out = tmp_path / "pairs.safetensors"
    assert main(["train-denoiser", "--source", "pairs", "--short", str(short), "--long",
                 str(long), *TINY_TRAIN, "--out", str(out)]) == 0
    assert registry.load_denoiser(out)[1]["source"]["kind"] == "pairs"
    out = tmp_path / "series.safetensors"
    assert main(["train-denoiser", "--source", "series", "--series", str(inputs["series"]),
                 *TINY_TRAIN, "--crop", "16", "--out", str(out)]) == 0
    meta = registry.load_denoiser(out)[1]
    assert meta["source"]["kind"] == "series" and meta["training"]["settings"]["loss"] == "l2"


def test_train_denoiser_on_phantoms_alone_and_mixed(tmp_path):
    out = tmp_path / "phantoms.safetensors"
    assert main(["train-denoiser", "--source", "phantoms", "--phantoms", "8",
                 "--e-per-px-range", "1,20", *TINY_TRAIN, "--out", str(out)]) == 0
    source = registry.load_denoiser(out)[1]["source"]
    assert source["kind"] == "phantoms" and source["trained_e_per_px_range"] == [1.0, 20.0]
    assert source["noise_model"]["name"] == "WIDE" and source["n_items"] == 8
    data = fake_simulated_dataset(tmp_path / "ds")
    out = tmp_path / "mixed.safetensors"
    assert main(["train-denoiser", "--source", "phantoms", "--phantoms", "4", "--data",
                 str(data), *TINY_TRAIN, "--out", str(out)]) == 0
    source = registry.load_denoiser(out)[1]["source"]
    assert source["kind"] == "mixed"
    assert [s["kind"] for s in source["sources"]] == ["phantoms", "simulated"]


@pytest.mark.parametrize("argv,expected", [
    (["--source", "pairs", "--short", "s.tif"], "needs --long"),
    (["--source", "phantoms", "--series", "x.tif"], "does not apply"),
    (["--source", "phantoms", "--phantoms", "0"], "at least 1"),
    (["--source", "simulated", "--data", "DS", "--series", "x.tif"], "does not apply"),
    (["--source", "series", "--series", "x.tif", "--dose-range", "1,2"], "applies to --source"),
    (["--source", "simulated", "--data", "NO_SUCH_DATASET"], "does not exist"),
])
def test_train_denoiser_usage_errors_are_one_line(tmp_path, capsys, argv, expected):
    out = tmp_path / "m.safetensors"
    argv = [str(tmp_path / a) if a in ("DS", "NO_SUCH_DATASET") else a for a in argv]
    assert main(["train-denoiser", *argv, *TINY_TRAIN, "--out", str(out)]) == 1
    assert expected in _one_line_error(capsys)
    assert not out.exists()


def test_denoise_a_single_image_without_dose(inputs, tmp_path):
    image = write_series_tiff(tmp_path / "one.tif", inputs["frames"][0], None)
    out = tmp_path / "one"
    assert main(["denoise", str(image), "--model", str(inputs["denoiser"]), "--device", "cpu",
                 "--out", str(out)]) == 0
    back = read_series(out / "denoised.tif")
    assert np.asarray(back.data).shape == (40, 52) and back.pixel_size_A is None
    record = json.loads((out / "denoise.json").read_text())
    assert record["dose"] is None and record["normalisation"]["expected_e_per_px"] is None
    assert "frame mean" in record["normalisation"]["from"]


def test_frames_outside_the_trained_dose_range_are_flagged(inputs, tmp_path, capsys):
    model = save_checkpoint(tmp_path / "narrow.safetensors", DenoiserUNet(base_channels=2,
                                                                          levels=1),
                            arch="denoiser",
                            metadata={"source": {"trained_e_per_px_range": [0.5, 3.0]}})
    out = tmp_path / "out"
    assert main(["denoise", str(inputs["series"]), "--model", str(model), "--device", "cpu",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of 3 frame(s)" in err and "0.5…3 e⁻/px" in err
    record = json.loads((out / "denoise.json").read_text())
    assert len(record["warnings"]) == 1


def test_train_denoiser_fine_tunes_with_noise_weighting(tmp_path, capsys):
    data = fake_simulated_dataset(tmp_path / "ds")
    first = tmp_path / "first.safetensors"
    common = ["train-denoiser", "--source", "simulated", "--data", str(data),
              "--dose-range", "50,500"]
    assert main([*common, *TINY_TRAIN, "--out", str(first)]) == 0
    tuned = tmp_path / "tuned.safetensors"
    assert main([*common, "--epochs", "1", "--crop", "32", "--batch-size", "2",
                 "--device", "cpu", "--init", str(first), "--noise-weighted-loss",
                 "--out", str(tuned)]) == 0
    model, meta = registry.load_denoiser(tuned)
    assert model.config == registry.load_denoiser(first)[0].config  # its network settings
    settings = meta["training"]["settings"]
    assert settings["init_from"] == str(first) and settings["noise_weighted"] is True
    capsys.readouterr()
    assert main([*common, "--init", str(tmp_path / "none.safetensors"),
                 "--out", str(tmp_path / "x.safetensors")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_series_with_neither_dose_nor_gain_is_warned_about(inputs, tmp_path, capsys):
    """Counts taken as electrons: the denoiser sees hundreds of e⁻/px; say so (and that it
    is outside the trained range), and record it; a gain given silences the first."""
    counts = (inputs["frames"] * 500.0).astype(np.float32)  # ~500 counts per electron
    bare = write_series_tiff(tmp_path / "bare.tif", counts, PIXEL_A)
    trained = save_checkpoint(tmp_path / "trained.safetensors",
                              DenoiserUNet(base_channels=4, levels=1), arch="denoiser",
                              metadata={"source": {"trained_e_per_px_range": [0.05, 100.0]}})
    out = tmp_path / "out"
    assert main(["denoise", str(bare), "--model", str(trained), "--device", "cpu",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "no dose and no detector gain: the counts are taken as electrons" in err
    assert "first frame's mean counts ÷ the gain" in err and "outside the 0.05…100" in err
    assert "1 of 1 frame" not in err
    record = json.loads((out / "denoise.json").read_text())
    assert len(record["warnings"]) == 2
    assert main(["denoise", str(bare), "--model", str(trained), "--device", "cpu",
                 "--counts-per-electron", "500", "--out", str(tmp_path / "gain")]) == 0
    assert "warning" not in capsys.readouterr().err
