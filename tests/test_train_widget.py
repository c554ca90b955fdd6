"""The 'Train' dock widget (issue 5): live plot, checkpoint, stop, errors."""

import json
import shutil

import numpy as np
import pytest
import torch

from napari_lowdose.models.checkpoint import load_checkpoint
from napari_lowdose.simulate.dataset import generate_dataset
from napari_lowdose.simulate.recipe import DatasetRecipe
from napari_lowdose.simulate.structures import StructureRecipe
from napari_lowdose.widgets.train import TrainWidget

TINY = StructureRecipe(
    size_px=48,
    sampling_range_A=(0.25, 0.25),
    diameter_range_A=(9.0, 10.0),
    support_thickness_range_A=(6.0, 8.0),
    margin_A=3.0,
)


pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_widget") / "ds"
    recipe = DatasetRecipe(
        n_structures=4,
        image_epochs=2,
        seed=3,
        structure=TINY,
        dose_range_e_per_A2=(1e4, 1e5),
        val_fraction=0.5,
    )
    generate_dataset(out, recipe)
    return out


@pytest.fixture
def widget(make_napari_viewer, dataset, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    widget.data_dir.value = dataset
    widget.msd_depth.value, widget.msd_width.value, widget.msd_kernel.value = 4, 2, 3
    widget.epochs.value = 2
    widget.crop.value = 32
    widget.learning_rate.value = 1e-2
    widget.device.value = "cpu"
    widget.out_file.value = tmp_path / "model.safetensors"
    return widget


def test_defaults_mirror_the_cli(make_napari_viewer):
    import argparse

    from napari_lowdose.cli.train import add_train_parser, settings_from_args
    from napari_lowdose.train.segmentation import TrainSettings
    from napari_lowdose.workflows.training import architecture_defaults

    widget = TrainWidget(make_napari_viewer(), use_thread=False)
    settings = widget.settings()
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    command = settings_from_args(parser.parse_args(["train", "--data", "D", "--out", "M"]))
    defaults = TrainSettings()
    for name in ("arch", "epochs", "crop_px", "batch_size", "learning_rate", "device",
                 "threshold", "select_by", "seed"):
        assert getattr(settings, name) == getattr(command, name) == getattr(defaults, name)
    assert widget.resume.value
    widget.select_calibrated.value = True
    assert widget.settings().select_by == "calibrated"
    assert settings.model_config == architecture_defaults("msdnet")
    widget.arch.value = "unet"
    assert widget.settings().model_config == architecture_defaults("unet")
    widget.crop.value = 0
    assert widget.settings().crop_px is None
    assert widget.device_info.value  # what "auto" resolves to


def test_train_plots_every_epoch_and_saves_the_best(widget, tmp_path):
    assert "4 train + 4 val images" in widget.card_info.value
    assert "48×48 px" in widget.card_info.value and "MTF4" in widget.card_info.value
    assert widget.device_info.value.startswith("CPU")
    widget.train()
    summary = widget.summary
    assert summary is not None and not summary.stopped and summary.epochs_done == 2
    plotted = widget.plotted_history()
    for name in ("train_loss", "val_loss", "val_f1", "calibrated_f1"):
        epochs, values = plotted[name]
        np.testing.assert_array_equal(epochs, [1, 2])
        assert np.isfinite(values).all()
    assert plotted["best"][0].tolist() == [summary.best_epoch]
    assert plotted["best"][1][0] == pytest.approx(summary.best_f1)
    assert widget.last_progress is not None
    assert widget.last_progress[0] == widget.last_progress[1] > 0
    out = tmp_path / "model.safetensors"
    model, metadata = load_checkpoint(out, arch="msdnet")
    assert isinstance(model, torch.nn.Module)
    assert metadata["validation"]["epoch"] == summary.best_epoch
    assert "best F1" in widget.status.value and str(out) in widget.status.value
    assert widget.train_button.enabled and not widget.stop_button.enabled
    assert widget.epochs.enabled and widget.data_dir.enabled


def test_stop_keeps_the_first_epoch(widget, tmp_path, monkeypatch):
    widget.epochs.value = 3
    on_epoch = TrainWidget._on_epoch

    def stop_after_first(self, result):
        on_epoch(self, result)
        self.stop()

    monkeypatch.setattr(TrainWidget, "_on_epoch", stop_after_first)
    warned = []
    monkeypatch.setattr("napari_lowdose.widgets.train.show_warning", warned.append)
    widget.train()
    summary = widget.summary
    assert summary.stopped and summary.epochs_done == 1 and summary.best_epoch == 1
    assert "stopped after epoch 1" in warned[-1] and "best F1" in warned[-1]
    assert str(tmp_path / "model.safetensors") in widget.status.value
    _, metadata = load_checkpoint(tmp_path / "model.safetensors")
    assert metadata["validation"]["epoch"] == 1
    assert widget.plotted_history()["val_f1"][0].tolist() == [1.0]
    assert widget.train_button.enabled and widget.epochs.enabled


def test_stop_before_the_first_epoch_saves_nothing(widget, tmp_path, monkeypatch):
    widget.batch_size.value = 1  # 4 steps per epoch: stopped after the first one
    on_step = TrainWidget._on_step

    def stop_at_once(self, step, total):
        on_step(self, step, total)
        self.stop()

    monkeypatch.setattr(TrainWidget, "_on_step", stop_at_once)
    warned = []
    monkeypatch.setattr("napari_lowdose.widgets.train.show_warning", warned.append)
    widget.train()
    assert widget.summary.stopped and widget.summary.best_epoch == 0
    assert "nothing was saved" in warned[-1]
    assert not (tmp_path / "model.safetensors").exists()


def test_threaded_training_finishes(widget, qtbot):
    widget.use_thread = True
    widget.epochs.value = 1
    widget.train()
    assert not widget.train_button.enabled and widget.stop_button.enabled
    assert not widget.data_dir.enabled
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120000)
    assert widget.summary is not None and widget.summary.epochs_done == 1
    assert widget.plotted_history()["val_loss"][0].tolist() == [1.0]
    assert widget.train_button.enabled and not widget.stop_button.enabled


def test_bad_inputs_are_notified_not_raised(widget, dataset, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_lowdose.widgets.train.show_error", shown.append)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a dataset")
    widget.data_dir.value = other
    widget.train()
    assert "card" in shown[-1] and "\n" not in shown[-1]
    assert widget.card_info.value == "not a napari-lowdose dataset"

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    card = json.loads((dataset / "card.json").read_text())
    card["status"] = "incomplete"
    (unfinished / "card.json").write_text(json.dumps(card))
    widget.data_dir.value = unfinished
    widget.train()
    assert "unfinished dataset" in shown[-1]

    widget.data_dir.value = dataset
    widget.crop.value = 64
    widget.train()
    assert "does not fit" in shown[-1]
    widget.crop.value = 32

    widget.device.value = "cuda"
    if not torch.cuda.is_available():
        assert widget.device_info.value.startswith("unavailable")
        widget.train()
        assert shown[-1].startswith("Device:") and "CUDA" in shown[-1]
    widget.device.value = "cpu"

    widget.out_file.value = tmp_path / "model.pt"
    widget.train()
    assert ".safetensors" in shown[-1]

    # A state file of another run: the training call's error, in one line.
    widget.out_file.value = tmp_path / "model.safetensors"
    widget.epochs.value = 1
    widget.train()
    n_errors = len(shown)
    widget.msd_depth.value = 5
    widget.train()
    assert len(shown) == n_errors + 1
    assert shown[-1].startswith("Training failed:") and "other settings" in shown[-1]
    assert widget.status.value == "failed"
    assert widget.train_button.enabled and widget.msd_depth.enabled
    shutil.rmtree(other)


def test_fine_tuning_a_shipped_model_takes_its_architecture(widget, tmp_path):
    from napari_lowdose.models.registry import load_model

    assert widget.init_model.value == "random weights" and widget.settings().init_from is None
    widget.init_model.value = "unet-au-ceo2"
    assert widget.arch.value == "unet" and not widget.arch.enabled
    assert (widget.unet_channels.value, widget.unet_levels.value,
            widget.unet_kernel.value) == (16, 3, 5)
    settings = widget.settings()
    assert settings.init_from == "unet-au-ceo2" and settings.model_config["batch_norm"]
    assert "fine-tuning unet-au-ceo2" in widget.init_info.value
    widget.epochs.value, widget.learning_rate.value = 1, 1e-7
    widget.train()
    assert widget.summary is not None and widget.summary.epochs_done == 1
    assert not widget.arch.enabled  # still fine-tuning after the run
    tuned, metadata = load_checkpoint(tmp_path / "model.safetensors", arch="unet")
    shipped, _ = load_model("unet-au-ceo2", arch="unet")
    first = next(iter(dict(shipped.named_parameters())))
    assert torch.allclose(dict(tuned.named_parameters())[first],
                          dict(shipped.named_parameters())[first], atol=1e-5)
    assert metadata["training"]["settings"]["init_from"] == "unet-au-ceo2"
    widget.init_model.value = "random weights"
    assert widget.arch.enabled and widget.settings().init_from is None
