"""The 'Train' and 'Train denoiser' docks (issue 14): one notification per failure,
bad pixels, ready on open, remembered settings, time left, the output file, F1 undefined."""

import shutil

import numpy as np
import pytest

from denoise_data import SAMPLING_A, clean_lattice, noisy_copies
from napari_lowdose.analysis.metrics import NO_TRUTH_PIXELS
from napari_lowdose.io.layers import image_layer_kwargs
from napari_lowdose.simulate.dataset import generate_dataset
from napari_lowdose.simulate.recipe import DatasetRecipe
from napari_lowdose.simulate.structures import StructureRecipe
from napari_lowdose.widgets import train as train_module
from napari_lowdose.widgets import train_denoiser as denoiser_module
from napari_lowdose.widgets.train import TrainWidget
from napari_lowdose.widgets.train_denoiser import SERIES, TrainDenoiserWidget

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

TINY = StructureRecipe(size_px=48, sampling_range_A=(0.25, 0.25), diameter_range_A=(9.0, 10.0),
                       support_thickness_range_A=(6.0, 8.0), margin_A=3.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_docks") / "au"
    generate_dataset(out, DatasetRecipe(n_structures=4, image_epochs=2, seed=3, structure=TINY,
                                        dose_range_e_per_A2=(1e4, 1e5), val_fraction=0.5))
    return out




def _train_widget(viewer, dataset, tmp_path=None):
    widget = TrainWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    widget.data_dir.value = dataset
    widget.msd_depth.value, widget.msd_width.value, widget.msd_kernel.value = 4, 2, 3
    widget.epochs.value, widget.crop.value, widget.device.value = 1, 32, "cpu"
    if tmp_path is not None:
        widget.out_file.value = tmp_path / "model.safetensors"
    return widget


# -- Train ------------------------------------------------------------------------------------
def test_train_output_file_is_beside_the_dataset_and_follows_the_network(
        make_napari_viewer, dataset, tmp_path):
    widget = _train_widget(make_napari_viewer(), dataset)
    assert widget.out_file.value == dataset.parent / "au-msdnet.safetensors"  # shown at once
    widget.arch.value = "unet"
    assert widget.out_file.value == dataset.parent / "au-unet.safetensors"
    mine = tmp_path / "mine.safetensors"
    widget.out_file.value = mine  # the user's own file: the network no longer changes it
    widget.arch.value = "msdnet"
    assert widget.out_file.value == mine


def test_train_failure_mid_run_is_one_notification_and_the_dock_works_again(
        make_napari_viewer, dataset, tmp_path, qtbot, monkeypatch, caught):
    widget = _train_widget(make_napari_viewer(), dataset, tmp_path)
    widget.use_thread = True
    shown = []
    monkeypatch.setattr(train_module, "show_error", shown.append)
    real = train_module.train_segmentation

    def fails_after_a_step(data, out, settings, *, progress, **kwargs):
        progress(1, 4)
        raise OSError("disk full while writing the checkpoint")

    monkeypatch.setattr(train_module, "train_segmentation", fails_after_a_step)
    widget.train()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    qtbot.wait(50)
    assert shown == ["Training failed: disk full while writing the checkpoint"]
    assert caught == {"notifications": [], "excepthook": []}
    assert widget.status.value == "failed" and widget.progress_bar.value == 0
    assert widget.train_button.enabled and widget.epochs.enabled

    monkeypatch.setattr(train_module, "train_segmentation", real)
    widget.train()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.summary is not None and widget.summary.epochs_done == 1
    assert len(shown) == 1
    assert widget.time_left.value.endswith("steps")  # "N/N steps" at the end


def test_train_reports_undefined_f1_without_particle_pixels(make_napari_viewer, dataset,
                                                            tmp_path, monkeypatch):
    import zarr

    empty = tmp_path / "empty"
    shutil.copytree(dataset, empty)
    zarr.open_group(empty / "data.zarr", mode="r+")["val"]["masks"][...] = 0
    widget = _train_widget(make_napari_viewer(), empty, tmp_path)
    warned, infos = [], []
    monkeypatch.setattr(train_module, "show_warning", warned.append)
    monkeypatch.setattr(train_module, "show_info", infos.append)
    widget.train()
    assert widget.summary is not None and widget.summary.best_f1 is None
    assert len(warned) == 1 and NO_TRUTH_PIXELS in warned[0] and not infos
    assert NO_TRUTH_PIXELS in widget.status.value
    for text in (warned[0], widget.status.value):
        assert "F1 0.0" not in text and "F1 1.0" not in text
    assert widget.ax_f1.get_title() == NO_TRUTH_PIXELS


def test_train_settings_are_remembered_and_reset(make_napari_viewer, dataset):
    widget = _train_widget(make_napari_viewer(), dataset)
    widget.arch.value, widget.epochs.value, widget.learning_rate.value = "unet", 7, 3e-4
    widget.unet_levels.value, widget.select_calibrated.value = 2, True
    again = TrainWidget(make_napari_viewer(), use_thread=False)
    assert (again.arch.value, again.epochs.value, again.unet_levels.value) == ("unet", 7, 2)
    assert again.learning_rate.value == pytest.approx(3e-4) and again.select_calibrated.value
    assert again.data_dir.value == dataset
    assert again.out_file.value == dataset.parent / "au-unet.safetensors"
    again.reset_button.changed.emit(None)
    from napari_lowdose.train.segmentation import TrainSettings

    assert (again.arch.value, again.epochs.value) == ("msdnet", TrainSettings().epochs)
    assert not again.select_calibrated.value
    third = TrainWidget(make_napari_viewer(), use_thread=False)
    assert third.arch.value == "msdnet" and third.epochs.value == TrainSettings().epochs


# -- Train denoiser ---------------------------------------------------------------------------
def _series(n=8, seed=0):
    return noisy_copies(clean_lattice((48, 48)), 20.0, n, seed=seed).astype(np.float32)


def _dask_series_failing_at(frame, n=8):
    """A lazily read series whose ``frame`` cannot be read (OSError when computed)."""
    import dask
    import dask.array as da

    frames = _series(n)

    def read(i):
        if i == frame:
            raise OSError(f"read error in frame {i}")
        return frames[i]

    return da.stack([da.from_delayed(dask.delayed(read)(i), (48, 48), np.float32)
                     for i in range(n)])


def _denoiser_widget(viewer, tmp_path):
    widget = TrainDenoiserWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    widget.model_config = {"base_channels": 2, "levels": 1}
    widget.steps_per_epoch, widget.max_val_images = 2, 2
    widget.epochs.value, widget.crop.value, widget.batch_size.value = 1, 16, 2
    widget.device.value, widget.source.value = "cpu", SERIES
    widget.out_file.value = tmp_path / "den.safetensors"
    return widget


def test_denoiser_dock_opens_on_the_series(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), name="photo", rgb=True)
    series = viewer.add_image(_series(4), name="series")
    viewer.layers.selection.active = viewer.layers["photo"]  # the active one does not suit
    widget = TrainDenoiserWidget(viewer, use_thread=False)
    assert widget.layer_combo.value is series
    assert "photo" not in [getattr(layer, "name", None) for layer in widget.layer_combo.choices]


def test_denoiser_failure_reading_a_frame_is_one_notification(make_napari_viewer, tmp_path,
                                                              qtbot, monkeypatch, caught):
    viewer = make_napari_viewer()
    lazy = viewer.add_image(_dask_series_failing_at(6), name="lazy", contrast_limits=(0, 60),
                            **image_layer_kwargs((SAMPLING_A, SAMPLING_A), 3))
    widget = _denoiser_widget(viewer, tmp_path)
    widget.use_thread = True
    assert widget.layer_combo.value is lazy
    shown = []
    monkeypatch.setattr(denoiser_module, "show_error", shown.append)
    widget.train()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    qtbot.wait(50)
    assert shown == ["Training failed: read error in frame 6"]
    assert caught == {"notifications": [], "excepthook": []}
    assert widget.status.value == "failed" and widget.progress_bar.value == 0
    assert widget.train_button.enabled and [layer.name for layer in viewer.layers] == ["lazy"]
    assert not (tmp_path / "den.safetensors").exists()

    widget.layer_combo.value = viewer.add_image(_series(), name="good")
    widget.train()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.summary is not None and widget.summary.best_epoch == 1
    assert len(shown) == 1 and (tmp_path / "den.safetensors").is_file()


def test_denoiser_refuses_a_series_with_nan_frames(make_napari_viewer, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    data = _series()
    data[2, 5, 5] = np.nan
    data[5, :2, :2] = np.inf
    layer = viewer.add_image(data, name="damaged")
    before = layer.data.copy()
    widget = _denoiser_widget(viewer, tmp_path)
    shown = []
    monkeypatch.setattr(denoiser_module, "show_error", shown.append)
    widget.train()
    assert len(shown) == 1 and shown[0].startswith("Training failed: 'damaged': frames 2")
    assert "5 (4 px)" in shown[0] and widget.summary is None
    np.testing.assert_array_equal(layer.data, before)
    assert not (tmp_path / "den.safetensors").exists()


def test_denoiser_settings_are_remembered_and_reset(make_napari_viewer, tmp_path):
    widget = TrainDenoiserWidget(make_napari_viewer(), use_thread=False)
    widget.source.value, widget.epochs.value, widget.levels.value = SERIES, 9, 2
    widget.noise_weighted.value, widget.gain.value = True, 2.5
    widget.data_dir.value = tmp_path
    again = TrainDenoiserWidget(make_napari_viewer(), use_thread=False)
    assert (again.source.value, again.epochs.value, again.levels.value) == (SERIES, 9, 2)
    assert again.noise_weighted.value and again.gain.value == pytest.approx(2.5)
    assert again.data_dir.value == tmp_path
    assert again.source.value == SERIES and again.layer_combo.value is None
    again.source.value = "simulated"  # the dataset folder's model file, beside it
    assert again.out_file.value == tmp_path.parent / f"{tmp_path.name}-denoiser.safetensors"
    again.source.value = SERIES
    again.reset_button.changed.emit(None)
    assert again.source.value == "simulated" and again.levels.value == 3
    assert not again.noise_weighted.value and again.gain.value == 0


def test_the_suggested_model_file_is_beside_the_data_unless_that_folder_is_read_only(
        tmp_path, monkeypatch):
    import os

    from napari_lowdose.widgets._training_dock import default_model_path

    data = tmp_path / "runs" / "au"
    data.mkdir(parents=True)
    assert default_model_path(data, "unet") == (tmp_path / "runs" / "au-unet.safetensors")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    os.chmod(tmp_path / "runs", 0o555)
    try:
        if os.access(tmp_path / "runs", os.W_OK):  # root ignores the mode bits
            monkeypatch.setattr(os, "access", lambda path, mode: False)
        assert default_model_path(data, "unet") == work.resolve() / "au-unet.safetensors"
    finally:
        os.chmod(tmp_path / "runs", 0o755)
