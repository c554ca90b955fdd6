"""Denoising your own data: fine-tuning on your field and the quality readout (issue 16)."""

import json

import numpy as np
import pytest
import torch

from denoise_data import clean_lattice, noisy_copies
from napari_lowdose.cli import main
from napari_lowdose.io.writers import write_series_tiff
from napari_lowdose.models import registry
from napari_lowdose.models.checkpoint import save_checkpoint
from napari_lowdose.models.denoiser import DenoiserUNet
from napari_lowdose.train.denoise_own import field_datasets

PIXEL_A = 0.3
TINY = ["--epochs", "1", "--crop", "16", "--batch-size", "2", "--steps-per-epoch", "2",
        "--device", "cpu"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """Two independent exposures of one field (20 e⁻/px), the second drifted by (2, −1) px."""
    root = tmp_path_factory.mktemp("own")
    clean = clean_lattice((72, 64))
    a, b = noisy_copies(clean, 20.0, 2, seed=3)
    b = np.roll(b, (2, -1), axis=(0, 1))
    paths = [write_series_tiff(root / f"{name}.tif", frame, PIXEL_A)
             for name, frame in (("a", a), ("b", b))]
    model = DenoiserUNet(base_channels=4, levels=1)
    with torch.no_grad():
        model.head.weight.fill_(0.01)
    denoiser = save_checkpoint(root / "den.safetensors", model, arch="denoiser", metadata={})
    return {"root": root, "a": a, "b": b, "paths": paths, "denoiser": denoiser}


def test_the_held_out_rows_never_reach_a_training_crop(field):
    stack = np.stack([field["a"], field["b"]])
    train, val = field_datasets(stack, crop_px=16, val_fraction=0.25, seed=0)
    split = round(72 * 0.75)
    assert train.box[1] <= split <= val.box[0]
    assert train.shifts[1] == pytest.approx((-2.0, 1.0)) or train.shifts[0] == pytest.approx(
        (2.0, -1.0))
    assert all(float(v).is_integer() for s in train.shifts.values() for v in s)
    assert val.independent_target and train.independent_target
    # Every training crop lies in the training rows, whatever the epoch's draw.
    for epoch in range(3):
        train.set_epoch(epoch)
        for index in range(len(train)):
            y0, _, h, _ = train._window(train.box, train._rng(index))
            assert y0 + h <= split
    noisy, target, _ = val[0]
    assert noisy.shape[-2] == val.box[1] - val.box[0]
    # The target is the other exposure moved by whole pixels: its own values, not a spline's.
    i, j = val.pairs[0]
    assert set(np.unique(target.numpy())) <= set(np.unique(
        stack[j] * np.float32(val.e_per_px[i] / val.e_per_px[j])).tolist()) | {0.0}


def test_fine_tuning_on_two_files_starts_from_the_shipped_denoiser(field, tmp_path, capsys):
    out = tmp_path / "own.safetensors"
    assert main(["train-denoiser", "--source", "own", "--frames", *map(str, field["paths"]),
                 *TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"start ({registry.DEFAULT_DENOISER}): held-out unbiased MSE" in text
    assert "× Gaussian" in text.split("epoch 1:")[1]
    meta = registry.load_denoiser(out)[1]
    settings = meta["training"]["settings"]
    assert settings["init_from"] == registry.DEFAULT_DENOISER and settings["loss"] == "l2"
    # The field's pairs, with phantom pairs mixed in one for one (the default).
    field_source, phantoms = meta["source"]["sources"]
    assert meta["source"]["kind"] == "mixed" and phantoms["kind"] == "phantoms"
    assert field_source["kind"] == "series" and field_source["whole_pixel"]
    assert phantoms["n_items"] == field_source["n_items"]
    readout = meta["validation"]["readout"]
    assert readout["ratio_to_gaussian"] > 0 and readout["raw"]["mse_normalised"] > 0
    assert meta["history"][0]["readout"]["gaussian"]["sigma_px"] > 0
    assert meta["validation_start"]["readout"]["denoised"]["mse_normalised"] > 0
    # It records the files it was trained on; judging it against one of them is flagged.
    assert meta["trained_on_files"] == [str(p.resolve()) for p in field["paths"]]
    assert main(["denoise", str(field["paths"][0]), "--model", str(out), "--reference",
                 str(field["paths"][1]), "--device", "cpu", "--out",
                 str(tmp_path / "judged")]) == 0
    err = capsys.readouterr().err
    assert "the denoiser was trained on" in err and "optimistic" in err


def test_phantom_pairs_are_mixed_into_the_field_s_training_items_only(field):
    """One field over-fits in a few epochs: phantom pairs (clean targets, doses around the
    field's) are mixed into the training items; validation stays on the held-out field."""
    from napari_lowdose.train.denoise_phantoms import MixedPairs
    from napari_lowdose.train.loop import TrainingError

    stack = np.stack([field["a"], field["b"]])
    alone, val = field_datasets(stack, crop_px=16, val_fraction=0.25, seed=0)
    mixed, val_mixed = field_datasets(stack, crop_px=16, val_fraction=0.25, seed=0,
                                      phantom_share=0.5)
    assert isinstance(mixed, MixedPairs) and not isinstance(alone, MixedPairs)
    field_part, phantoms = mixed.sources
    assert len(phantoms) == round(0.5 * len(alone)) and len(mixed) == len(alone) + len(phantoms)
    low, high = alone.describe()["trained_e_per_px_range"]
    assert phantoms.e_per_px_range == pytest.approx((low / 2, 2 * high))
    noisy, target, e = phantoms[0]
    assert noisy.shape == target.shape == (1, 16, 16) and float(e) > 0
    assert val_mixed.box == val.box and len(val_mixed) == len(val)
    with pytest.raises(TrainingError, match="at least 0"):
        field_datasets(stack, crop_px=16, val_fraction=0.25, phantom_share=-1)


def test_fine_tuning_refuses_files_of_other_fields(field, tmp_path, capsys):
    other = write_series_tiff(tmp_path / "other.tif", field["a"][:40], PIXEL_A)
    out = tmp_path / "m.safetensors"
    assert main(["train-denoiser", "--source", "own", "--frames", str(field["paths"][0]),
                 str(other), *TINY, "--init", "none", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "differ in frame size" in err and len(err.splitlines()) == 1
    assert main(["train-denoiser", "--source", "own", "--frames", str(field["paths"][0]),
                 *TINY, "--init", "none", "--out", str(out)]) == 1
    assert "two or more exposures" in capsys.readouterr().err
    assert not out.exists()


def test_denoise_with_a_reference_writes_and_prints_the_readout(field, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["denoise", str(field["paths"][0]), "--model", str(field["denoiser"]),
                 "--device", "cpu", "--reference", str(field["paths"][1]),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "quality (the reference exposure): unbiased MSE" in printed
    quality = json.loads((out / "denoise.json").read_text())["quality"]
    assert quality["shift_px"] == [-2, 1]
    assert quality["raw"]["mse"] > quality["gaussian"]["mse"]
    assert quality["ratio_to_gaussian"] == pytest.approx(
        quality["denoised"]["mse"] / quality["gaussian"]["mse"])
    assert quality["reference"].endswith("b.tif")


def test_a_series_is_judged_frame_against_frame_and_one_image_not_at_all(field, tmp_path,
                                                                         capsys):
    pair = write_series_tiff(tmp_path / "p.tif", np.stack([field["a"], np.roll(
        field["b"], (-2, 1), axis=(0, 1))]), PIXEL_A)
    records, printed = {}, {}
    for name, path, extra in (("pair", pair, []), ("single", field["paths"][0], []),
                              ("skipped", pair, ["--no-quality"])):
        out = tmp_path / name
        assert main(["denoise", str(path), "--model", str(field["denoiser"]), "--device",
                     "cpu", "--out", str(out), *extra]) == 0
        records[name] = json.loads((out / "denoise.json").read_text())
        printed[name] = capsys.readouterr().out
    # One image and no reference: said, not silent.
    assert "quality: not judged: no second exposure" in printed["single"]
    assert "--reference FILE" in printed["single"] and "quality" not in printed["skipped"]
    assert records["pair"]["quality"]["against"].startswith("the next frame")
    assert records["pair"]["quality"]["shift_px"] == [0, 0]
    assert records["single"]["quality"] is None
    assert "quality" not in records["skipped"]


def test_a_crop_larger_than_the_training_part_is_refused_first(field):
    from napari_lowdose.train.loop import TrainingError

    stack = np.stack([field["a"], field["b"]])
    with pytest.raises(TrainingError, match="does not fit the 36×64 px training part"):
        field_datasets(stack, crop_px=32, val_fraction=0.5)


def test_the_log_line_survives_a_best_gaussian_at_zero():
    from napari_lowdose.train.denoiser import readout_line

    score = {"mse_normalised": 1e-3, "sigma_px": 2.0}
    readout = {"raw": score, "gaussian": score, "denoised": score, "ratio_to_gaussian": None,
               "standard_error": 2e-3, "peak": 1.0}
    assert readout_line(readout).endswith("denoiser 1 (±2 common offset) = no ratio")
    assert readout_line(None) == ""


def test_a_denoiser_fine_tuned_on_own_frames_is_described_by_its_readout_not_its_psnr():
    """Its PSNR is against a second noisy exposure (low whatever its quality): the models
    command and the Denoise dock lead with the held-out readout."""
    from napari_lowdose.models.registry import denoiser_score_text

    own = {"validation": {"psnr_db": 16.52, "input_psnr_db": 13.56,
                          "readout": {"ratio_to_gaussian": 0.89}}}
    assert denoiser_score_text(own) == ("held-out 0.89× the best Gaussian's unbiased MSE "
                                        "(PSNR 16.52 dB against a second noisy exposure)")
    own["validation"]["readout"]["ratio_interval"] = [0.35, 0.73]
    assert denoiser_score_text(own).startswith(
        "held-out 0.89× the best Gaussian's unbiased MSE (0.35–0.73 within its error)")
    clean = {"validation": {"psnr_db": 20.42, "input_psnr_db": 3.33}}
    assert denoiser_score_text(clean) == "validation PSNR 20.42 dB (input 3.33 dB)"
    assert denoiser_score_text({}) == ""
