"""Training the segmentation networks (issue 5): learning, resume, stop, DDP, CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_lowdose.analysis.metrics import binary_counts, f1_score
from napari_lowdose.cli import main
from napari_lowdose.simulate.dataset import generate_dataset
from napari_lowdose.simulate.recipe import DatasetRecipe
from napari_lowdose.simulate.structures import StructureRecipe
from napari_lowdose.train.data import SegmentationDataset
from napari_lowdose.train.loop import TrainingError
from napari_lowdose.train.segmentation import TrainSettings, train_segmentation

TINY = StructureRecipe(size_px=48, sampling_range_A=(0.25, 0.25), diameter_range_A=(9.0, 10.0),
                       support_thickness_range_A=(6.0, 8.0), margin_A=3.0)
MSD_TINY = {"depth": 6, "width": 3, "kernel_size": 3, "max_dilation": 3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "ds"
    recipe = DatasetRecipe(n_structures=6, image_epochs=4, seed=2, structure=TINY,
                           dose_range_e_per_A2=(1e4, 1e5), val_fraction=0.34)
    generate_dataset(out, recipe)
    return out


def _settings(**overrides):
    values = {"arch": "msdnet", "model_config": MSD_TINY, "epochs": 6, "crop_px": 32,
              "batch_size": 4, "learning_rate": 1e-2, "threshold": 0.5, "seed": 1}
    values.update(overrides)
    return TrainSettings(**values)


def test_metrics_count_pixels():
    truth = np.zeros((4, 4), bool)
    truth[:2] = True
    predicted = np.zeros((4, 4), bool)
    predicted[1:3] = True
    counts = binary_counts(predicted, truth)
    assert (counts.tp, counts.fp, counts.fn) == (4, 4, 4)
    assert f1_score(predicted, truth) == pytest.approx(0.5)
    assert f1_score(np.zeros(3), np.zeros(3)) == 1.0
    assert f1_score(torch.ones(2, 2), torch.ones(2, 2)) == 1.0


def test_dataset_items_are_standardised_augmented_crops(dataset):
    train = SegmentationDataset(dataset, "train", crop_px=32, seed=3)
    image, mask = train[0]
    assert image.shape == (1, 32, 32) and mask.shape == (1, 32, 32)
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    again, _ = SegmentationDataset(dataset, "train", crop_px=32, seed=3)[0]
    assert torch.equal(image, again)
    train.set_epoch(1)
    assert not torch.equal(train[0][0], image)
    val = SegmentationDataset(dataset, "val", crop_px=None, augment=False)
    full, _ = val[0]
    assert full.shape == (1, 48, 48)
    assert abs(float(full.mean())) < 1e-4 and float(full.std()) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(Exception, match="does not fit"):
        SegmentationDataset(dataset, "train", crop_px=64)


@pytest.mark.parametrize("arch,config,lr", [
    ("msdnet", {"depth": 8, "width": 4, "kernel_size": 3, "max_dilation": 4}, 1e-2),
    ("unet", {"base_channels": 4, "levels": 2, "kernel_size": 3}, 1e-2),
])
def test_tiny_networks_learn_the_tiny_dataset(dataset, tmp_path, arch, config, lr):
    """Loss falls and validation F1 rises within seconds on CPU (unseen structures)."""
    epochs = []
    summary = train_segmentation(dataset, tmp_path / f"{arch}.safetensors",
                                 _settings(arch=arch, model_config=config, epochs=15,
                                           learning_rate=lr, seed=3),
                                 on_epoch=epochs.append)
    assert summary.epochs_done == 15 and not summary.stopped
    late_loss = np.mean([e.train_loss for e in epochs[-3:]])
    assert late_loss < 0.65 * epochs[0].train_loss
    assert summary.best_f1 == max(e.val_f1 for e in epochs)
    assert summary.best_f1 > max(0.4, epochs[0].val_f1 + 0.2)
    assert (tmp_path / f"{arch}.safetensors").is_file()


def test_checkpoint_carries_the_training_record(dataset, tmp_path):
    from napari_lowdose.models.checkpoint import load_checkpoint

    out = tmp_path / "m.safetensors"
    summary = train_segmentation(dataset, out, _settings(epochs=2))
    model, metadata = load_checkpoint(out, arch="msdnet")
    assert metadata["validation"]["f1"] == pytest.approx(summary.best_f1)
    assert metadata["validation"]["epoch"] == summary.best_epoch
    assert metadata["dataset"]["card"]["recipe"]["seed"] == 2
    assert metadata["noise_model"]["name"] == "MTF4"
    assert metadata["training"]["settings"]["crop_px"] == 32
    assert "standardis" in json.dumps(metadata["normalisation"]).lower()
    assert model.config["depth"] == 6


def test_threshold_grid_counts_and_best_threshold():
    from napari_lowdose.analysis.metrics import (
        CALIBRATION_THRESHOLDS,
        best_threshold,
        counts_at_thresholds,
    )

    truth = np.zeros((10, 10), bool)
    truth[:, :5] = True
    probability = np.where(truth, 0.42, 0.2)  # an under-confident network
    grid = counts_at_thresholds(probability, truth)
    assert grid.shape == (len(CALIBRATION_THRESHOLDS), 3)
    i = CALIBRATION_THRESHOLDS.index(0.9)
    assert tuple(grid[i]) == (0, 0, 50)  # nothing reaches the paper's 0.9
    threshold, f1, table = best_threshold(grid)
    assert 0.2 < threshold <= 0.42 and f1 == 1.0
    assert threshold == 0.4  # of the perfect thresholds, the one nearest 0.5
    assert table["0.90"] == 0.0 and table["0.40"] == 1.0


def test_training_records_the_calibrated_threshold(dataset, tmp_path):
    from napari_lowdose.analysis.metrics import CALIBRATION_THRESHOLDS
    from napari_lowdose.models.checkpoint import read_checkpoint_metadata

    out = tmp_path / "m.safetensors"
    summary = train_segmentation(dataset, out, _settings(epochs=2))
    validation = read_checkpoint_metadata(out)["validation"]
    table = validation["f1_by_threshold"]
    assert len(table) == len(CALIBRATION_THRESHOLDS)
    assert table["0.50"] == pytest.approx(summary.best_f1)  # trained with threshold 0.5
    assert validation["calibrated_f1"] == max(table.values())
    assert table[f"{validation['calibrated_threshold']:.2f}"] == validation["calibrated_f1"]
    assert summary.history[-1]["calibrated_threshold"] is not None


def test_select_by_calibrated_keeps_the_epoch_of_best_calibrated_f1(dataset, tmp_path):
    from napari_lowdose.models.checkpoint import read_checkpoint_metadata

    out = tmp_path / "m.safetensors"
    summary = train_segmentation(dataset, out, _settings(epochs=3, select_by="calibrated"))
    scores = [h["calibrated_f1"] for h in summary.history]
    assert summary.best_epoch == 1 + int(np.argmax(scores))
    assert summary.best_f1 == pytest.approx(max(scores))
    assert read_checkpoint_metadata(out)["validation"]["epoch"] == summary.best_epoch
    with pytest.raises(TrainingError, match="select_by"):
        _settings(select_by="loss")


def test_calibrate_command_writes_the_threshold_and_keeps_the_weights(dataset, tmp_path,
                                                                      capsys):
    from napari_lowdose.models.checkpoint import load_checkpoint

    model_file = tmp_path / "m.safetensors"
    train_segmentation(dataset, model_file, _settings(epochs=1))
    before, meta_before = load_checkpoint(model_file)
    out = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", str(model_file), "--data", str(dataset), "--device", "cpu",
                 "--out", str(out)]) == 0
    assert "calibrated threshold" in capsys.readouterr().out
    after, meta = load_checkpoint(out)
    for key, value in before.state_dict().items():
        assert torch.equal(value, after.state_dict()[key])
    assert meta["calibration"]["threshold"] == meta["validation"]["calibrated_threshold"]
    assert meta["training"] == meta_before["training"]  # provenance kept
    # What it replaced is said and kept; a small validation set is warned about.
    previous = meta["calibration"]["previous"]
    assert previous["threshold"] == meta_before["validation"]["calibrated_threshold"]
    assert meta["calibration"]["n_images"] < 16 and meta["calibration"]["warnings"]
    # An existing --out is not replaced without --overwrite.
    capsys.readouterr()
    assert main(["calibrate", str(model_file), "--data", str(dataset), "--device", "cpu",
                 "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["calibrate", str(model_file), "--data", str(dataset), "--device", "cpu",
                 "--out", str(out), "--overwrite"]) == 0
    printed = capsys.readouterr()
    assert "replaced: threshold" in printed.out and "validation image(s)" in printed.err
    # same data, same crops as training's validation: the same F1 table
    assert meta["validation"]["f1_by_threshold"] == pytest.approx(
        meta_before["validation"]["f1_by_threshold"])
    # --val-crop 0: whole validation images
    assert main(["calibrate", str(model_file), "--data", str(dataset), "--device", "cpu",
                 "--val-crop", "0", "--out", str(tmp_path / "whole.safetensors")]) == 0
    whole = load_checkpoint(tmp_path / "whole.safetensors")[1]["calibration"]
    assert whole["crop_px"] is None and meta["calibration"]["crop_px"] == 32
    # a denoiser is refused in one line
    from napari_lowdose.models.checkpoint import save_checkpoint
    from napari_lowdose.models.denoiser import DenoiserUNet

    denoiser = save_checkpoint(tmp_path / "d.safetensors",
                               DenoiserUNet(base_channels=4, levels=1), arch="denoiser",
                               metadata={})
    assert main(["calibrate", str(denoiser), "--data", str(dataset), "--device", "cpu"]) == 1
    assert "not a segmentation network" in capsys.readouterr().err
    # a shipped model's name: it says how to calibrate a copy (not "does not exist")
    assert main(["calibrate", "unet-au-ceo2-low", "--data", str(dataset)]) == 1
    assert "is a shipped model: copy its file" in capsys.readouterr().err


def _without_val_particles(dataset, out):
    """A copy of ``dataset`` whose validation masks hold no particle pixel."""
    import shutil

    import zarr

    shutil.copytree(dataset, out)
    masks = zarr.open_group(out / "data.zarr", mode="r+")["val"]["masks"]
    masks[...] = 0
    return out


def test_best_threshold_is_undefined_without_truth_pixels():
    from napari_lowdose.analysis.metrics import best_threshold, counts_at_thresholds

    truth = np.zeros((10, 10), bool)
    for probability in (np.full((10, 10), 0.2), np.zeros((10, 10))):  # some false positives
        assert best_threshold(counts_at_thresholds(probability, truth)) == (None, None, {})


def test_validation_without_particle_pixels_reports_f1_undefined(dataset, tmp_path, capsys):
    from napari_lowdose.analysis.metrics import NO_TRUTH_PIXELS
    from napari_lowdose.models.checkpoint import read_checkpoint_metadata
    from napari_lowdose.train.calibration import calibrate_threshold

    empty = _without_val_particles(dataset, tmp_path / "empty")
    out = tmp_path / "m.safetensors"
    seen = []
    summary = train_segmentation(empty, out, _settings(epochs=2), on_epoch=seen.append)
    assert [e.f1_defined for e in seen] == [False, False]
    assert all(e.val_f1 is None and e.calibrated_threshold is None and e.calibrated_f1 is None
               for e in seen)
    assert not summary.f1_defined and summary.best_f1 is None
    assert NO_TRUTH_PIXELS in summary.warning
    losses = [e.val_loss for e in seen]
    assert summary.best_epoch == 1 + int(np.argmin(losses))  # kept: lowest validation loss
    validation = read_checkpoint_metadata(out)["validation"]
    assert validation["f1"] is None and validation["f1_defined"] is False
    assert validation["calibrated_threshold"] is None and validation["f1_by_threshold"] == {}
    with pytest.raises(TrainingError, match="no particle pixels"):
        calibrate_threshold(out, empty, device="cpu")

    assert main(["train", "--data", str(empty), "--epochs", "1", "--crop", "32",
                 "--depth", "4", "--width", "2", "--kernel-size", "3",
                 "--out", str(tmp_path / "cli.safetensors")]) == 0
    printed = capsys.readouterr()
    assert "val F1 undefined" in printed.out and "F1 0.0000" not in printed.out
    assert "F1 1.0000" not in printed.out and "lowest validation loss" in printed.out
    assert NO_TRUTH_PIXELS in printed.err


def test_training_resumes_after_the_last_finished_epoch(dataset, tmp_path):
    out = tmp_path / "m.safetensors"
    first = train_segmentation(dataset, out, _settings(epochs=2))
    assert first.epochs_done == 2
    seen = []
    resumed = train_segmentation(dataset, out, _settings(epochs=3), on_epoch=seen.append)
    assert [e.epoch for e in seen] == [3]
    assert resumed.epochs_done == 3
    with pytest.raises(TrainingError, match="other settings"):
        train_segmentation(dataset, out, _settings(epochs=4, crop_px=24))


def test_stop_keeps_the_best_checkpoint(dataset, tmp_path):
    out = tmp_path / "m.safetensors"
    steps = []

    def stop_in_second_epoch():
        steps.append(1)
        return len(steps) > 4  # the first epoch has 4 steps

    summary = train_segmentation(dataset, out, _settings(epochs=5),
                                 should_stop=stop_in_second_epoch)
    assert summary.stopped and summary.epochs_done == 1 and summary.best_epoch == 1
    assert out.is_file()


def test_cli_train_writes_a_checkpoint(dataset, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    code = main(["train", "--data", str(dataset), "--arch", "unet", "--epochs", "1",
                 "--crop", "32", "--base-channels", "4", "--levels", "2", "--out", str(out)])
    assert code == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert "best validation F1" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [
    (["--depth", "5", "--arch", "unet"], "does not apply to unet"),
    (["--epochs", "0"], "at least 1"),
    (["--crop", "500"], "does not fit"),
    (["--device", "cuda"], "CUDA"),
])
def test_cli_train_bad_options_give_one_line(dataset, tmp_path, capsys, extra, message):
    code = main(["train", "--data", str(dataset), "--out", str(tmp_path / "m.safetensors"),
                 *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert message in err[-1] and err[-1].startswith("napari-lowdose: error:")


def test_cli_train_refuses_a_folder_that_is_not_a_dataset(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "m")]) == 1
    assert "dataset card" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_trains_with_two_gloo_processes(dataset, tmp_path):
    out = tmp_path / "ddp.safetensors"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "napari_lowdose.cli", "train",
               "--data", str(dataset), "--arch", "msdnet", "--depth", "4", "--width", "2",
               "--kernel-size", "3", "--epochs", "2", "--crop", "32", "--device", "cpu",
               "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    from napari_lowdose.models.checkpoint import read_checkpoint_metadata

    metadata = read_checkpoint_metadata(out)
    assert metadata["training"]["world_size"] == 2
    assert len(metadata["history"]) >= 1


def test_fine_tuning_starts_from_the_weights_of_a_trained_model(dataset, tmp_path, capsys):
    from napari_lowdose.models.checkpoint import load_checkpoint

    first = tmp_path / "first.safetensors"
    assert main(["train", "--data", str(dataset), "--arch", "unet", "--epochs", "2",
                 "--crop", "32", "--base-channels", "4", "--levels", "2", "--lr", "1e-2",
                 "--threshold", "0.5", "--out", str(first)]) == 0
    trained, _ = load_checkpoint(first, arch="unet")
    # --init takes the architecture and its settings from the model; with lr ~0 the
    # weights stay those of the model (batch-norm statistics still move in training).
    tuned = tmp_path / "tuned.safetensors"
    assert main(["train", "--data", str(dataset), "--init", str(first), "--epochs", "1",
                 "--crop", "32", "--lr", "1e-12", "--threshold", "0.5",
                 "--out", str(tuned)]) == 0
    model, metadata = load_checkpoint(tuned, arch="unet")
    assert metadata["training"]["settings"]["init_from"] == str(first)
    tuned_weights = dict(model.named_parameters())
    for name, value in trained.named_parameters():
        assert torch.allclose(tuned_weights[name], value, atol=1e-6), name
    capsys.readouterr()
    # The wrong architecture and settings that contradict the model are refused in one line.
    assert main(["train", "--data", str(dataset), "--init", str(first), "--arch", "msdnet",
                 "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "is a unet, not a msdnet" in capsys.readouterr().err
    assert main(["train", "--data", str(dataset), "--init", str(first), "--epochs", "1",
                 "--crop", "32", "--base-channels", "8",
                 "--out", str(tmp_path / "y.safetensors")]) == 1
    assert "other settings" in capsys.readouterr().err


def test_cli_train_into_a_folder_that_cannot_be_written_stops_before_training(
        dataset, tmp_path, capsys, monkeypatch):
    """Found before the first epoch (not after it, losing the epoch), in one line."""
    import tempfile

    from napari_lowdose.train import segmentation

    epochs = []
    real = segmentation.train_epochs
    monkeypatch.setattr(segmentation, "train_epochs",
                        lambda *a, **k: epochs.append(1) or real(*a, **k))

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    out = tmp_path / "ro" / "m.safetensors"
    assert main(["train", "--data", str(dataset), "--arch", "unet", "--epochs", "1",
                 "--crop", "32", "--out", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.splitlines() == [f"napari-lowdose: error: cannot write to {out.parent} (made "
                                  f"in {tmp_path}): Read-only file system"]
    assert not epochs and not out.exists()


@pytest.mark.parametrize(("name", "message"), [
    ("model.txt", "must end in .safetensors: model.txt"),
    ("model.json", "not its .json sidecar"),
])
def test_cli_train_wants_a_model_file_the_other_commands_open(dataset, tmp_path, capsys, name,
                                                              message):
    """The rule of the Train dock: `segment --model` and the docks open *.safetensors only;
    a name without an ending gets it."""
    from napari_lowdose.models.checkpoint import model_output_path

    assert main(["train", "--data", str(dataset), "--epochs", "1", "--crop", "32",
                 "--out", str(tmp_path / name)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error
    assert list(tmp_path.iterdir()) == []
    assert model_output_path(tmp_path / "m") == tmp_path / "m.safetensors"


def test_epochs_of_the_same_score_are_told_apart_by_the_loss():
    """Two epochs of F1 0 (early in a run): the one with the lower validation loss is kept,
    not merely the first."""
    import math

    from napari_lowdose.train.loop import LoopState, Validation

    state = LoopState(0, -math.inf)
    assert state.improved_by(Validation(0.0, tiebreak=-0.598))
    state.best_score, state.best_tiebreak = 0.0, -0.598
    assert state.improved_by(Validation(0.0, tiebreak=-0.354))
    assert not state.improved_by(Validation(0.0, tiebreak=-0.7))
    assert state.improved_by(Validation(0.1, tiebreak=-5.0))
    assert not state.improved_by(Validation(-0.1, tiebreak=0.0))
