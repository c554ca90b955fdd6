"""The 'Simulate' dock widget: preview layers, re-noise, dataset generation, sample data."""

import json

import numpy as np
import pytest

from napari_lowdose.noise import preset
from napari_lowdose.widgets.simulate import LAYER_NAMES, SimulateWidget

pytestmark = pytest.mark.gui

SIZE = 96
SAMPLING = 0.15


@pytest.fixture
def viewer_and_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = SimulateWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    widget.size_px.value = SIZE
    widget.sampling_min.value = widget.sampling_max.value = SAMPLING
    widget.diameter_min.value, widget.diameter_max.value = 8.0, 11.0
    return viewer, widget


def _layers(viewer):
    return {name: viewer.layers[name] for name in LAYER_NAMES.values()}


def test_preview_adds_layers_updates_them_and_renoises(viewer_and_widget):
    viewer, widget = viewer_and_widget
    widget.dose.value = 1e4
    widget.run_preview()
    layers = _layers(viewer)
    assert len(viewer.layers) == 3
    for layer in layers.values():
        assert layer.data.shape == (SIZE, SIZE)
        np.testing.assert_allclose(layer.scale, [SAMPLING, SAMPLING])
        assert [str(u) for u in layer.units] == ["angstrom", "angstrom"]
    mask = layers[LAYER_NAMES["mask"]]
    assert type(mask).__name__ == "Labels" and mask.data.any()
    noisy = layers[LAYER_NAMES["noisy"]]
    assert noisy.metadata["lowdose"]["dose"]["dose_e_per_A2"] == [pytest.approx(1e4)]
    assert noisy.metadata["lowdose"]["pixel_size_A"] == [SAMPLING, SAMPLING]
    # 1e4 e⁻/Å² × 0.15² Å² = 225 e⁻/px in vacuum (clean ≈ 1 there on average).
    clean = layers[LAYER_NAMES["clean"]].data
    assert noisy.data.mean() == pytest.approx(225 * clean.mean(), rel=0.05)
    assert "Å/px" in widget.preview_status.value

    first = {name: layer.data.copy() for name, layer in layers.items()}
    widget.seed.value = 1
    widget.run_preview()
    assert len(viewer.layers) == 3
    assert _layers(viewer) == layers  # the same layer objects, updated in place
    assert not np.array_equal(layers[LAYER_NAMES["clean"]].data, first[LAYER_NAMES["clean"]])

    # Changing the dose (live) or pressing Re-noise redraws only the noisy layer.
    clean, mask = (layers[LAYER_NAMES[k]].data.copy() for k in ("clean", "mask"))
    noisy = layers[LAYER_NAMES["noisy"]]
    before = noisy.data.copy()
    widget.dose.value = 100.0  # live: the noisy layer follows the dose
    assert noisy.data.mean() == pytest.approx(before.mean() / 100, rel=0.1)
    assert noisy.metadata["lowdose"]["dose"]["dose_e_per_A2"] == [pytest.approx(100.0)]
    at_100 = noisy.data.copy()
    widget.renoise()
    assert not np.array_equal(noisy.data, at_100)
    assert noisy.data.mean() == pytest.approx(at_100.mean(), rel=0.1)
    np.testing.assert_array_equal(layers[LAYER_NAMES["clean"]].data, clean)
    np.testing.assert_array_equal(layers[LAYER_NAMES["mask"]].data, mask)
    assert len(viewer.layers) == 3


def test_threaded_preview_and_dataset_finish(viewer_and_widget, qtbot, tmp_path):
    viewer, widget = viewer_and_widget
    widget.use_thread = True
    widget.run_preview()
    assert not widget.preview_button.enabled and widget.cancel_preview_button.enabled
    qtbot.waitUntil(lambda: widget._preview_worker is None, timeout=30000)
    assert widget.preview is not None and widget.renoise_button.enabled
    assert len(viewer.layers) == 3

    _tiny_dataset(widget, tmp_path / "dataset")
    widget.n_structures.value = 1
    widget.generate()
    assert not widget.generate_button.enabled and widget.cancel_dataset_button.enabled
    qtbot.waitUntil(lambda: widget._dataset_worker is None, timeout=30000)
    assert widget.summary is not None and widget.summary.complete
    assert widget.generate_button.enabled and not widget.cancel_dataset_button.enabled


def test_bad_inputs_are_notified_not_raised(viewer_and_widget, monkeypatch, tmp_path):
    viewer, widget = viewer_and_widget
    shown = []
    monkeypatch.setattr("napari_lowdose.widgets.simulate.show_error", shown.append)
    monkeypatch.setattr("napari_lowdose.widgets.simulate_dataset.show_error", shown.append)
    widget.renoise()
    assert "preview first" in shown[-1]
    widget.generate()  # no output folder
    assert "output folder" in shown[-1]
    widget.out_dir.value = tmp_path / "ds"
    widget.dose_range.value = "custom"
    widget.dose_min.value, widget.dose_max.value = 1e4, 10.0
    widget.generate()
    assert "dose range" in shown[-1]
    widget.dose_range.value = "low"
    widget.sampling_min.value = 0.3  # above "to"
    widget.run_preview()
    assert "sampling_range_A" in shown[-1]
    widget.sampling_min.value = SAMPLING
    widget.noise.value = "file"
    widget.run_preview()
    assert "noise model file" in shown[-1]
    (tmp_path / "bad.json").write_text("{not json")
    widget.noise_file.value = tmp_path / "bad.json"
    widget.generate()
    assert "not a valid JSON noise model" in shown[-1]
    path = preset("MTF 2").to_json(tmp_path / "noise_model.json")
    widget.noise_file.value = path
    assert widget.noise_model().name == "MTF2"
    widget.noise.value = "MTF4"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a dataset")
    widget.out_dir.value = tmp_path / "other"
    widget.generate()
    assert "not a napari-lowdose dataset" in shown[-1]
    assert len(viewer.layers) == 0


def _tiny_dataset(widget, out):
    widget.size_px.value = 64
    widget.sampling_min.value = widget.sampling_max.value = 0.2
    widget.diameter_min.value, widget.diameter_max.value = 6.0, 9.0
    widget.n_structures.value = 2
    widget.image_epochs.value = 2
    widget.dose_range.value = "low"
    widget.out_dir.value = out


def test_generate_tiny_dataset_then_stop_and_resume(viewer_and_widget, tmp_path, monkeypatch):
    _, widget = viewer_and_widget
    out = tmp_path / "dataset"
    _tiny_dataset(widget, out)
    widget.generate()
    assert widget.last_progress == (2, 2)
    assert widget.summary is not None and widget.summary.complete
    assert "complete" in widget.dataset_status.value
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "complete"
    assert card["recipe"]["image_epochs"] == 2
    assert card["recipe"]["dose_range_e_per_A2"] == [10.0, 1e4]
    assert card["recipe"]["structure"]["size_px"] == 64
    assert card["recipe"]["noise_model"]["name"] == "MTF4"
    assert (out / "data.zarr").is_dir()
    assert (out / "train_params.csv").is_file() and (out / "val_params.csv").is_file()
    records = sorted(p.name for p in (out / "records").iterdir())
    assert records == ["s000000.json", "s000001.json"]

    # Stopped after the first structure (what Cancel does), then resumed.
    widget.out_dir.value = tmp_path / "resumed"
    record = SimulateWidget._record_progress
    runs = []

    def stop_after_first(self, done, total):
        record(self, done, total)
        if done >= 1 and len(runs) == 1:
            self._stop_event.set()

    monkeypatch.setattr(SimulateWidget, "_record_progress", stop_after_first)
    warned = []
    monkeypatch.setattr("napari_lowdose.widgets.simulate_dataset.show_warning", warned.append)
    runs.append(1)
    widget.generate()
    assert not widget.summary.complete and widget.summary.n_done == 1
    assert "resume" in warned[-1] and "resume" in widget.dataset_status.value
    runs.append(2)
    widget.generate()
    assert widget.summary.complete and widget.summary.n_done == 2
    assert widget.summary.n_waves_computed == 1
    assert widget.last_progress == (2, 2)


def test_sample_opens_with_calibrated_image_and_mask(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-lowdose", "simulated_au_ceo2")
    image = viewer.layers["simulated Au/CeO2 dose series"]
    labels = viewer.layers["particle truth"]
    assert type(labels).__name__ == "Labels"
    assert image.data.shape == (50, 256, 256) and image.data.dtype == np.float32
    assert labels.data.shape == (256, 256) and labels.data.any()
    np.testing.assert_allclose(image.scale[-2:], labels.scale)
    np.testing.assert_allclose(labels.scale, [0.075, 0.075])
    assert [str(u) for u in image.units[-2:]] == ["angstrom", "angstrom"]
    assert tuple(image.axis_labels) == ("frame", "y", "x")
    dose = np.array(image.metadata["lowdose"]["dose"]["dose_e_per_A2"])
    assert dose.shape == (50,) and np.all(np.diff(dose) > 0)
    assert dose[0] == pytest.approx(10.0) and dose[-1] == pytest.approx(1e4)
    assert image.metadata["lowdose"]["pixel_size_A"] == [0.075, 0.075]
    # The 2-D mask overlays every frame: it spans the image's y and x extent.
    np.testing.assert_allclose(labels.extent.world[:, -2:], image.extent.world[:, -2:])


def test_a_preview_beside_a_micrometre_series_is_framed_and_a_small_field_is_said(
        viewer_and_widget):
    """Beside a real low-magnification series (30 Å/px) the preview (0.15 Å/px) would be a
    dot: the view frames it. A field too small for the diameters asked says so."""
    viewer, widget = viewer_and_widget
    viewer.add_image(np.zeros((512, 512), np.float32), name="real", scale=(29.9, 29.9))
    widget.run_preview()
    clean = viewer.layers[LAYER_NAMES["clean"]]
    field_A = SIZE * SAMPLING
    centre = np.asarray(viewer.scene.camera.center)[-2:]
    assert np.all(centre >= 0) and np.all(centre <= field_A)
    canvas_px = min(viewer.window._qt_viewer.canvas.size)
    assert viewer.scene.camera.zoom * field_A > 0.5 * canvas_px  # the preview fills the view
    assert "⚠" not in widget.preview_status.value
    widget.diameter_min.value, widget.diameter_max.value = 20.0, 40.0  # field is 14.4 Å
    widget.run_preview()
    assert "⚠ the field (96 px at 0.15 Å/px = 14.4 Å) holds particles of at most" in \
        widget.preview_status.value
    assert clean in viewer.layers
