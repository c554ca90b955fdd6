"""The 'Train denoiser' dock widget: simulated and Noise2Noise sources, plot, errors."""

import numpy as np
import pytest

from denoise_data import SAMPLING_A, clean_lattice, fake_simulated_dataset, noisy_copies
from napari_lowdose.io.dose import FrameDose
from napari_lowdose.io.layers import LOWDOSE_KEY, image_layer_kwargs
from napari_lowdose.models.registry import load_denoiser
from napari_lowdose.widgets import train_denoiser as module
from napari_lowdose.widgets.train_denoiser import SERIES, TrainDenoiserWidget

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


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


def _pair_layers(viewer, n_short=3, n_long=3):
    clean = clean_lattice((48, 48))
    short = noisy_copies(clean, 5.0, n_short, seed=1).astype(np.float32)
    long = noisy_copies(clean, 500.0, n_long, seed=2).astype(np.float32)
    kwargs = image_layer_kwargs((SAMPLING_A, SAMPLING_A), 3)
    return (viewer.add_image(short, name="short", **kwargs),
            viewer.add_image(long, name="long", **kwargs))


def test_exposure_pairs_from_two_layers(widget, tmp_path, monkeypatch):
    from napari_lowdose.train.denoise_measured import PairedExposures

    short, long = _pair_layers(widget._viewer)
    before = short.data.copy(), long.data.copy()
    built = []
    real = PairedExposures.__init__

    def recording(self, *args, **kwargs):
        built.append(kwargs)
        real(self, *args, **kwargs)

    monkeypatch.setattr(PairedExposures, "__init__", recording)
    widget.source.value = module.PAIRS
    assert not widget.short_combo.native.isHidden() and widget.layer_combo.native.isHidden()
    assert widget.data_dir.native.isHidden() and not widget.gain.native.isHidden()
    widget.short_combo.value, widget.long_combo.value = short, long
    widget.epochs.value = 1
    assert widget.settings().loss == "l1" and widget.settings().source == "pairs"
    widget.train()
    assert widget.summary is not None and widget.summary.best_epoch == 1
    model, meta = load_denoiser(tmp_path / "den.safetensors")
    assert model.config["base_channels"] == 2 and meta["source"]["kind"] == "pairs"
    # as 'train-denoiser --source pairs': 10 % of the pairs held out, 16 crops per pair
    train_kw, val_kw = built
    assert train_kw["pairs"] == [0, 1] and val_kw["pairs"] == [2]
    assert train_kw["crops_per_pair"] == 16 and val_kw["crop_px"] == 2 * widget.crop.value
    assert train_kw["counts_per_electron"] == 1.0 and train_kw["short_e_per_px"] is None
    np.testing.assert_array_equal(short.data, before[0])
    np.testing.assert_array_equal(long.data, before[1])
    assert len(widget._viewer.layers) == 2


def test_exposure_pairs_refuse_mismatched_layers(widget, monkeypatch):
    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    short, long = _pair_layers(widget._viewer, n_short=3, n_long=2)
    widget.source.value = module.PAIRS
    widget.train()  # no layer chosen
    assert len(messages) == 1 and "short and of the long exposures" in messages[0]
    widget.short_combo.value, widget.long_combo.value = short, long
    widget.train()
    assert len(messages) == 2
    assert "3 short exposure(s)" in messages[1] and "2 long one(s)" in messages[1]
    assert widget.summary is None and widget.train_button.enabled
    assert len(widget._viewer.layers) == 2
    assert widget.short_combo.value is short and widget.long_combo.value is long
    assert not (widget.out_file.value).exists()


def test_network_size_is_shown_and_follows_the_settings(widget):
    from napari_lowdose.models.denoiser import DenoiserUNet

    def n_params(model):
        return sum(p.numel() for p in model.parameters())

    widget.model_config = {}  # the defaults: base channels 32, 3 levels
    n = n_params(DenoiserUNet())
    assert (widget.base_channels.value, widget.levels.value) == (32, 3)
    assert widget.n_parameters == n and widget.network_info.value.startswith(
        f"{n / 1e6:.2f} M parameters ({n:,})")
    widget.base_channels.value, widget.levels.value = 8, 2
    n = n_params(DenoiserUNet(base_channels=8, levels=2))
    assert widget.n_parameters == n and f"({n:,})" in widget.network_info.value
    assert widget.settings().model_config == {"base_channels": 8, "levels": 2}

    widget.init_model.value = "denoiser-au-ceo2"  # its network, whatever the inputs say
    shipped, _ = load_denoiser("denoiser-au-ceo2")
    n = n_params(shipped)
    assert widget.n_parameters == n and f"({n:,})" in widget.network_info.value
    assert "denoiser-au-ceo2" in widget.network_info.value
    assert not widget.base_channels.enabled and widget.base_channels.value == 24
    widget.init_model.value = module.RANDOM_WEIGHTS
    assert widget.base_channels.enabled


def test_defaults_are_the_commands(widget):
    import argparse

    from napari_lowdose.cli.train_denoiser import add_train_denoiser_parser
    from napari_lowdose.workflows.denoiser_training import DENOISER_TRAINING_DEFAULTS

    parser = argparse.ArgumentParser()
    add_train_denoiser_parser(parser.add_subparsers())
    command = parser.parse_args(["train-denoiser", "--source", "series", "--out", "M"])
    defaults = DENOISER_TRAINING_DEFAULTS
    assert defaults.learning_rate == pytest.approx(1e-4)  # Katsuno et al. (2021)
    assert widget.learning_rate.value == pytest.approx(command.lr) == defaults.learning_rate
    # (the fixture shortened the widget's epochs and crops; the command reads the same object)
    assert (command.epochs, command.crop, command.batch_size, command.seed) == (
        defaults.epochs, defaults.crop_px, defaults.batch_size, defaults.seed)
    widget.learning_rate.value = 3e-4  # still the user's choice
    assert widget.settings().learning_rate == pytest.approx(3e-4)


def test_own_field_fine_tunes_the_shipped_denoiser_on_the_selected_layers(widget, tmp_path,
                                                                          monkeypatch):
    from napari_lowdose.models.registry import DEFAULT_DENOISER

    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    a, b = noisy_copies(clean_lattice((64, 48)), 20.0, 2, seed=4)
    viewer = widget._viewer
    layer_a = viewer.add_image(a.astype(np.float32), name="exposure 1")
    layer_b = viewer.add_image(b.astype(np.float32), name="exposure 2")
    widget.source.value = module.OWN
    assert widget.init_model.value == DEFAULT_DENOISER  # fine-tuning by default
    assert not widget.val_fraction.native.isHidden()
    viewer.layers.selection = {layer_a}
    widget.train()
    assert len(messages) == 1 and "two or more exposures" in messages[0]
    assert "two or more exposures" in widget.own_info.value
    viewer.layers.selection = {layer_a, layer_b}
    assert widget.own_info.value == "2 exposures: 'exposure 1', 'exposure 2'"
    widget.epochs.value = 1
    assert widget.settings().loss == "l2"
    widget.train()
    assert widget.summary is not None and widget.summary.best_epoch == 1
    meta = load_denoiser(tmp_path / "den.safetensors")[1]
    assert meta["training"]["settings"]["init_from"] == DEFAULT_DENOISER
    held_out = meta["validation"]["set"]["rows"]
    field, phantoms = meta["source"]["sources"]  # phantom pairs mixed in, as the command
    assert phantoms["kind"] == "phantoms" and phantoms["n_items"] == field["n_items"]
    assert field["rows"] == [0, held_out[0]] and held_out == [48, 64]
    assert meta["validation"]["readout"]["n_pairs"] == 2
    assert meta["history"][0]["readout"]["ratio_to_gaussian"] > 0
    # The final status keeps the held-out readouts (best epoch, and the starting model).
    lines = widget.status.value.splitlines()
    assert lines[0].startswith("done: 1 epochs")
    assert lines[1].startswith("best epoch: held-out unbiased MSE")
    assert lines[2].startswith("start: held-out unbiased MSE")


def test_phantoms_train_alone_or_mixed_with_a_dataset(widget, tmp_path):
    from napari_lowdose.widgets.train_denoiser import PHANTOMS

    widget.source.value = PHANTOMS
    assert not widget.data_dir.native.isHidden()
    assert not widget.e_per_px_range.native.isHidden()
    assert widget.gain.native.isHidden()  # simulated noise has its own detector model
    widget.train()
    meta = load_denoiser(tmp_path / "den.safetensors")[1]
    assert meta["source"]["kind"] == "phantoms"
    widget.data_dir.value = fake_simulated_dataset(tmp_path / "ds")
    widget.out_file.value = tmp_path / "mixed.safetensors"
    widget.train()
    meta = load_denoiser(tmp_path / "mixed.safetensors")[1]
    assert [s["kind"] for s in meta["source"]["sources"]] == ["phantoms", "simulated"]
