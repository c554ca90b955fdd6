"""The 'Simulate' dock (issue 14): one notification per failure, progress bars with the
time left, remembered settings."""


import pytest

from napari_lowdose.widgets import simulate as module
from napari_lowdose.widgets import simulate_dataset
from napari_lowdose.widgets.simulate import LAYER_NAMES, SimulateWidget

pytestmark = pytest.mark.gui




@pytest.fixture
def shown(monkeypatch):
    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    monkeypatch.setattr(simulate_dataset, "show_error", messages.append)
    return messages


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = SimulateWidget(viewer)  # in worker threads
    viewer.window.add_dock_widget(widget)
    widget.size_px.value = 64
    widget.sampling_min.value = widget.sampling_max.value = 0.2
    widget.diameter_min.value, widget.diameter_max.value = 6.0, 9.0
    return widget


def test_a_preview_failing_midway_is_one_notification(widget, qtbot, monkeypatch, shown,
                                                      caught):
    real = module.preview_steps

    def fails_after_one_step(request):
        yield None
        raise RuntimeError("out of memory\nwhile computing the exit wave")

    monkeypatch.setattr(module, "preview_steps", fails_after_one_step)
    widget.run_preview()
    qtbot.waitUntil(lambda: widget._preview_worker is None, timeout=10_000)
    qtbot.wait(50)
    assert shown == ["Preview failed: out of memory"]
    assert caught == {"notifications": [], "excepthook": []}
    assert widget.preview_progress.value == 0 and widget.preview_status.value == "failed"
    assert widget.preview_button.enabled and not widget.cancel_preview_button.enabled
    assert len(widget._viewer.layers) == 0

    monkeypatch.setattr(module, "preview_steps", real)
    widget.run_preview()
    qtbot.waitUntil(lambda: widget._preview_worker is None, timeout=60_000)
    assert sorted(layer.name for layer in widget._viewer.layers) == sorted(LAYER_NAMES.values())
    assert widget.preview_progress.value == widget.preview_progress.max == 3
    assert len(shown) == 1


def test_a_dataset_failing_midway_is_one_notification(widget, qtbot, monkeypatch, shown,
                                                      caught, tmp_path):
    real = simulate_dataset.generate_dataset

    def fails_after_one_structure(out, recipe, *, progress, **kwargs):
        progress(1, recipe.n_structures)
        raise OSError("[Errno 28] No space left on device")

    widget.out_dir.value = tmp_path / "ds"
    widget.n_structures.value, widget.image_epochs.value = 2, 1
    widget.dose_range.value = "low"
    monkeypatch.setattr(simulate_dataset, "generate_dataset", fails_after_one_structure)
    widget.generate()
    assert not widget.generate_button.enabled and widget.cancel_dataset_button.enabled
    qtbot.waitUntil(lambda: widget._dataset_worker is None, timeout=10_000)
    qtbot.wait(50)
    assert shown == ["Dataset not generated: [Errno 28] No space left on device"]
    assert caught == {"notifications": [], "excepthook": []}
    assert widget.dataset_progress.value == 0 and widget.time_left.value == ""
    assert widget.generate_button.enabled and not widget.cancel_dataset_button.enabled

    monkeypatch.setattr(simulate_dataset, "generate_dataset", real)
    widget.generate()
    qtbot.waitUntil(lambda: widget._dataset_worker is None, timeout=60_000)
    assert widget.summary is not None and widget.summary.complete and len(shown) == 1
    assert widget.dataset_progress.value == widget.dataset_progress.max == 2
    assert widget.time_left.value == "2/2 structures"


def test_settings_are_remembered_and_reset(make_napari_viewer, tmp_path):
    widget = SimulateWidget(make_napari_viewer(), use_thread=False)
    widget.seed.value, widget.size_px.value, widget.noise.value = 5, 128, "MTF2"
    widget.dose_range.value, widget.out_dir.value = "custom", tmp_path
    widget.dose_min.value, widget.workers.value = 50.0, 1
    again = SimulateWidget(make_napari_viewer(), use_thread=False)
    assert (again.seed.value, again.size_px.value, again.noise.value) == (5, 128, "MTF2")
    assert again.dose_range.value == "custom" and again.dose_min.enabled
    assert again.dose_min.value == 50.0 and again.out_dir.value == tmp_path
    again.reset_button.changed.emit(None)
    assert (again.seed.value, again.noise.value, again.dose_range.value) == (0, "MTF4", "high")
    assert not again.dose_min.enabled
