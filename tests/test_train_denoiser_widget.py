"""The 'Train denoiser' dock widget: simulated and Noise2Noise sources, plot, errors."""

import numpy as np
import pytest
import torch

from denoise_data import SAMPLING_A, clean_lattice, fake_simulated_dataset, noisy_copies
from napari_lowdose.io.dose import FrameDose
from napari_lowdose.io.layers import LOWDOSE_KEY, image_layer_kwargs
from napari_lowdose.models.registry import load_denoiser
from napari_lowdose.widgets import train_denoiser as module
from napari_lowdose.widgets.train_denoiser import SERIES, TrainDenoiserWidget


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def widget(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainDenoiserWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    widget.model_config = {"base_channels": 2, "levels": 1}
    widget.steps_per_epoch, widget.max_val_images = 2, 2
    widget.epochs.value, widget.crop.value, widget.batch_size.value = 2, 16, 2
    widget.device.value = "cpu"
    widget.out_file.value = tmp_path / "den.safetensors"
    return widget


def test_simulated_dataset_trains_plots_and_saves(widget, tmp_path):
    widget.data_dir.value = fake_simulated_dataset(tmp_path / "ds")
    widget.train()
    assert widget.summary is not None and widget.summary.epochs_done == 2
    out = tmp_path / "den.safetensors"
    model, meta = load_denoiser(out)
    assert meta.get("arch") == "denoiser" and model.config["base_channels"] == 2
    plotted = widget.plotted_history()
    assert plotted["val_psnr_db"][0].tolist() == [1.0, 2.0]
    assert len(plotted["input_psnr_db"][1]) == 2 and len(plotted["best"][0]) == 1
    assert "best PSNR" in widget.status.value and "dB" in widget.status.value
    assert widget.train_button.enabled and not widget.stop_button.enabled


def test_noise2noise_from_a_layer_with_dose(widget, tmp_path):
    e_per_px = 20.0
    frames = noisy_copies(clean_lattice((48, 48)), e_per_px, 4)
    dose = FrameDose(np.full(4, e_per_px / SAMPLING_A**2), "metadata", "test")
    layer = widget._viewer.add_image(
        frames.astype(np.float32), name="series",
        metadata={LOWDOSE_KEY: {"dose": dose.to_metadata()}},
        **image_layer_kwargs((SAMPLING_A, SAMPLING_A), 3))
    widget.source.value = SERIES
    assert not widget.layer_combo.native.isHidden() and widget.data_dir.native.isHidden()
    widget.layer_combo.value = layer
    widget.epochs.value = 1
    assert widget.settings().loss == "l2"
    widget.train()
    assert widget.summary is not None and widget.summary.best_epoch == 1
    assert (tmp_path / "den.safetensors").is_file()
    assert len(widget.plotted_history()["val_psnr_db"][0]) == 1


def test_no_dataset_folder_gives_one_notification(widget, monkeypatch):
    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    widget.train()
    assert len(messages) == 1 and "dataset folder" in messages[0]
    assert widget.summary is None and widget.train_button.enabled


def test_threaded_run_relays_epochs(widget, tmp_path, qtbot):
    widget.use_thread = True
    widget.epochs.value = 1
    widget.data_dir.value = fake_simulated_dataset(tmp_path / "ds")
    widget.train()
    assert widget.busy and widget.stop_button.enabled
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert len(widget.history) == 1 and "best PSNR" in widget.status.value
    assert widget.progress_bar.value == widget.progress_bar.max


def test_starting_from_the_shipped_denoiser_takes_its_network(widget):
    widget.model_config = {}
    assert "denoiser-au-ceo2" in widget.init_model.choices
    widget.init_model.value = "denoiser-au-ceo2"
    settings = widget.settings()
    assert settings.init_from == "denoiser-au-ceo2"
    assert settings.model_config["base_channels"] == 24 and settings.model_config["levels"] == 3
