"""The 'Segment' and 'Area vs dose' docks in a viewer (issue 14): failures, bad pixels,
ready on open, remembered settings, progress, redraw cost, one Area dock, layer names."""

import dask
import dask.array as da
import numpy as np
import pytest

from napari_lowdose.io.dose import FrameDose
from napari_lowdose.io.layers import LOWDOSE_KEY, image_layer_kwargs
from napari_lowdose.models import inference
from napari_lowdose.models.checkpoint import save_checkpoint
from napari_lowdose.models.msdnet import MSDNet
from napari_lowdose.widgets import area_plot
from napari_lowdose.widgets._network_dock import RedrawThrottle
from napari_lowdose.widgets.area_plot import AREA_DOCK_NAME, AreaPlotWidget
from napari_lowdose.widgets.segment import FILE_CHOICE, SegmentWidget
from napari_lowdose.widgets.segment_results import short_model_name

pytestmark = pytest.mark.gui

N_FRAMES, SIZE, PIXEL_A = 8, 40, 0.5
DOSES = np.geomspace(10, 1e4, N_FRAMES)
PROB = "tiny (msdnet) probability · series"
MASK = "tiny (msdnet) mask · series"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, MSDNet(depth=3, width=2, kernel_size=3, max_dilation=2),
                    arch="msdnet", metadata={"validation": {"f1": 0.5}})
    return path


def _frames():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disk = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE / 4) ** 2
    return np.stack([rng.poisson(d * PIXEL_A**2 * (1 + disk)) for d in DOSES]).astype(
        np.float32)


def _add_series(viewer, data, name="series"):
    dose = FrameDose(DOSES[: data.shape[0]] if data.ndim == 3 else DOSES[:1], "metadata", "t")
    return viewer.add_image(
        data, name=name,
        metadata={LOWDOSE_KEY: {"dose": dose.to_metadata(), "pixel_size_A": [PIXEL_A] * 2}},
        **image_layer_kwargs((PIXEL_A, PIXEL_A), data.ndim))


def _dock(viewer, model_file, layer=None, *, use_thread=False):
    widget = SegmentWidget(viewer, use_thread=use_thread)
    viewer.window.add_dock_widget(widget, name="Segment")
    if layer is not None:
        widget.layer_combo.value = layer
    widget.model.value = FILE_CHOICE
    widget.model_file.value = model_file
    widget.device.value = "cpu"
    widget.threshold.value = 0.5
    return widget


@pytest.fixture
def notes(monkeypatch):
    """Every notification of the docks' modules, and napari's own notification count."""
    from napari.utils.notifications import notification_manager

    seen = []
    for module in ("segment", "segment_analysis", "segment_run"):
        for name in ("show_error", "show_warning", "show_info"):
            monkeypatch.setattr(f"napari_lowdose.widgets.{module}.{name}",
                                lambda message, name=name: seen.append((name, message)),
                                raising=False)
    before = len(notification_manager.records)
    yield seen
    assert len(notification_manager.records) == before  # nothing reached napari itself


def _done(layer) -> list[int]:
    return np.flatnonzero(np.isfinite(layer.data).reshape(layer.data.shape[0], -1)
                          .all(axis=1)).tolist()


def _failing_dask(frames, bad=6):
    """A dask-backed series whose frame ``bad`` raises OSError when computed."""

    def read(index):
        if index == bad:
            raise OSError(f"frame {index}: read error on the detector file")
        return frames[index]

    parts = [da.from_delayed(dask.delayed(read)(i), frames.shape[1:], frames.dtype)
             for i in range(frames.shape[0])]
    return da.stack(parts)


def test_a_frame_that_fails_to_read_mid_run_gives_one_message_and_keeps_frames(
        make_napari_viewer, model_file, notes, qtbot):
    viewer = make_napari_viewer()
    frames = _frames()
    lazy = _add_series(viewer, _failing_dask(frames, bad=6))
    widget = _dock(viewer, model_file, lazy, use_thread=True)
    widget.scope.value = "all"
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)
    assert notes == [("show_error", "Segment failed: frame 6: read error on the detector "
                                    "file")]
    prob, mask = viewer.layers[PROB], viewer.layers[MASK]
    assert _done(prob) == [0, 1, 2, 3, 4, 5]  # the frames done before stay
    assert not mask.data[6:].any()
    assert widget.status.value.startswith("failed after 6 of 8 frame(s): frame 6")
    assert "6 frame(s) done before are kept" in widget.status.value
    assert widget.progress_bar.value == 0
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert widget.layer_combo.enabled and widget.model.enabled
    assert isinstance(lazy.data, da.Array)  # the input layer is left as it was

    # The dock is usable again: a good layer runs to the end.
    good = _add_series(viewer, frames, name="good")
    widget.layer_combo.value = good
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)
    assert _done(viewer.layers["tiny (msdnet) probability · good"]) == list(range(N_FRAMES))
    assert widget.status.value.startswith(f"{N_FRAMES}/{N_FRAMES} frame(s) segmented in")
    assert len(notes) == 1


def test_a_nan_patch_is_refused_naming_the_frame_and_never_reported_as_segmented(
        make_napari_viewer, model_file, notes):
    viewer = make_napari_viewer()
    frames = _frames()
    frames[3, 5:9, 5:9] = np.nan
    series = _add_series(viewer, frames)
    widget = _dock(viewer, model_file, series)
    widget.run()
    assert notes == [("show_error", "Segment failed: frame 3 (16 px) holds NaN or infinite "
                                    "pixels; replace or crop them (nothing was computed "
                                    "from them)")]
    assert _done(viewer.layers[PROB]) == [0, 1, 2]
    assert widget.status.value.startswith(
        "refused a frame with bad pixels after 3 of 8 frame(s): frame 3 (16 px)")
    assert "segmented" not in widget.status.value.split(":")[0]
    np.testing.assert_array_equal(np.isnan(series.data), np.isnan(frames))

    # One frame with a NaN patch: no "1/1 frame(s) segmented", no empty layers left.
    single = _add_series(viewer, frames[3], name="single")
    widget.layer_combo.value = single
    widget.run()
    assert notes[-1][1].startswith("Segment failed: frame 0 (16 px) holds NaN")
    assert len(notes) == 2
    assert "1/1" not in widget.status.value
    assert "nothing was segmented" in widget.status.value
    assert not any(layer.name.endswith("· single") for layer in viewer.layers)


def test_ready_on_open_the_active_else_the_only_suitable_layer_and_the_dose_overlay(
        make_napari_viewer, model_file):
    from napari_lowdose.widgets._dose_overlay import _text_overlay

    viewer = make_napari_viewer()
    series = _add_series(viewer, _frames())
    viewer.add_labels(np.zeros((SIZE, SIZE), np.uint8), name="particle truth")
    widget = SegmentWidget(viewer, use_thread=False)
    assert widget.layer_combo.value is series  # the only image layer
    assert "e⁻/Å²" in _text_overlay(viewer).text  # the frame's dose on the canvas

    other = _add_series(viewer, _frames(), name="other")
    viewer.layers.selection.active = series
    assert SegmentWidget(viewer, use_thread=False).layer_combo.value is series  # active
    viewer.layers.selection.active = other
    assert SegmentWidget(viewer, use_thread=False).layer_combo.value is other
    viewer.add_image(np.zeros((SIZE, SIZE, 3), np.uint8), name="rgb", rgb=True)
    viewer.layers.selection.active = viewer.layers["rgb"]  # not suitable: no choice
    assert SegmentWidget(viewer, use_thread=False).layer_combo.value is None


def test_settings_are_remembered_across_sessions_and_reset(make_napari_viewer, model_file):
    viewer = make_napari_viewer()
    widget = _dock(viewer, model_file)
    widget.threshold.value = 0.37
    widget.keep_largest.value = True
    widget.min_area.value = 1.5
    widget.scope.value = "current"
    widget.model.value = "msdnet-au-ceo2"

    again = SegmentWidget(make_napari_viewer(), use_thread=False)
    assert again.threshold.value == pytest.approx(0.37)
    assert again.keep_largest.value and again.min_area.value == pytest.approx(1.5)
    assert again.scope.value == "current" and again.device.value == "cpu"
    assert again.model.value == "msdnet-au-ceo2"
    assert str(again.model_file.value) == str(model_file)

    from napari_lowdose.models.registry import RECOMMENDED_MODEL, load_model

    recommended = load_model(RECOMMENDED_MODEL)[1]["validation"]["calibrated_threshold"]
    again.reset_button.clicked.emit()
    assert again.threshold.value == pytest.approx(recommended) and not again.keep_largest.value
    assert again.scope.value == "all" and again.device.value == "auto"
    assert again.model.value == RECOMMENDED_MODEL
    fresh = SegmentWidget(make_napari_viewer(), use_thread=False)
    assert fresh.threshold.value == pytest.approx(recommended) and fresh.min_area.value == 0.0


def test_the_estimate_after_the_first_frame_and_few_redraws(make_napari_viewer, model_file,
                                                            monkeypatch):
    viewer = make_napari_viewer()
    widget = _dock(viewer, model_file, _add_series(viewer, _frames()))
    real = inference.predict_probabilities
    seen = {}

    def watching(*args, **kwargs):
        for n, item in enumerate(real(*args, **kwargs), start=1):
            yield item
            if n == 1:
                seen["after first"] = widget.status.value
                seen["progress"] = widget.progress_bar.value

    monkeypatch.setattr(inference, "predict_probabilities", watching)
    refreshes = {"prob": 0, "mask": 0}
    widget.run()  # makes the layers; count their redraws on the second run
    prob, mask = viewer.layers[PROB], viewer.layers[MASK]
    for layer, key in ((prob, "prob"), (mask, "mask")):
        original = layer.refresh

        def counting(*args, key=key, original=original, **kwargs):
            refreshes[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(layer, "refresh", counting)
    viewer.dims.set_current_step(0, 2)
    widget.run()
    assert seen["after first"].startswith(f"segmented 1/{N_FRAMES} frames, ~")
    assert "left (" in seen["after first"] and "/frame)" in seen["after first"]
    assert seen["progress"] == 1
    # The shown frame (2) once, and once at the end: not once per frame.
    assert refreshes == {"prob": 2, "mask": 2}
    assert widget.progress_bar.value == N_FRAMES


def test_redraw_throttle_allows_two_per_second():
    now = [0.0]
    throttle = RedrawThrottle(0.5, clock=lambda: now[0])
    ticks = []
    for step in range(40):  # 40 frames at 0.1 s each
        now[0] = step * 0.1
        ticks.append(throttle.due())
    assert sum(ticks) == 8 and ticks[0]
    throttle.reset()
    assert throttle.due()


def test_one_area_dock_the_menu_finds_and_segment_brings_back(make_napari_viewer, model_file):
    from napari._app_model import get_app_model
    from napari.plugins import menu_item_template
    from npe2 import PluginManager

    viewer = make_napari_viewer()  # napari discovers the plugins (run alone, too)
    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("napari-lowdose")
    assert AREA_DOCK_NAME == menu_item_template.format(manifest.display_name, "Area vs dose")

    widget = _dock(viewer, model_file, _add_series(viewer, _frames()))
    widget.run()
    window = viewer.window

    def area_docks():
        return [name for name, dock in window._wrapped_dock_widgets.items()
                if isinstance(dock.inner_widget(), AreaPlotWidget)]

    assert area_docks() == [AREA_DOCK_NAME]
    assert window._wrapped_dock_widgets[AREA_DOCK_NAME].inner_widget() is widget.plot_widget
    # The Plugins menu's action finds that dock (napari toggles it) and adds no second one.
    get_app_model().commands.execute_command("napari-lowdose.area_plot_widget").result()
    assert area_docks() == [AREA_DOCK_NAME]
    # Closed by the user: the next run docks it again, once.
    window.remove_dock_widget(window._wrapped_dock_widgets[AREA_DOCK_NAME])
    assert area_docks() == []
    widget.run()
    assert area_docks() == [AREA_DOCK_NAME]
    plot = widget.plot_widget
    assert list(plot.plotted_runs()) == ["tiny"]
    assert "tiny: visible from" in plot.status.value and "converged from" in plot.status.value
    assert plot.ax_area.get_legend() is None and len(plot.figure.legends) == 1
    assert plot.ax_area.get_ylabel() == "area (nm²)"
    assert area_plot.show_area_dock(viewer) is plot


def test_result_layers_start_with_the_model_short_name(make_napari_viewer, model_file,
                                                       tmp_path):
    assert short_model_name("unet-au-ceo2-low", "unet", shipped=True) == "unet-low"
    assert short_model_name("msdnet-au-ceo2", "msdnet", shipped=True) == "msdnet"
    assert short_model_name("tiny", "msdnet") == "tiny (msdnet)"
    assert short_model_name("my-unet-v2", "unet") == "my-unet-v2"

    viewer = make_napari_viewer()
    widget = _dock(viewer, model_file, _add_series(viewer, _frames()))
    widget.run()
    import shutil

    other = tmp_path / "unet-like.safetensors"
    shutil.copy(model_file, other)
    widget.model_file.value = other
    widget.run()
    names = [layer.name for layer in viewer.layers]
    assert names[1:] == [PROB, MASK, "unet-like (msdnet) probability · series",
                         "unet-like (msdnet) mask · series"]


def test_the_dock_starts_on_the_recommended_model_at_its_threshold(make_napari_viewer):
    """The one recommended choice (models.registry), as the command and the demo use it."""
    from napari_lowdose.models.registry import RECOMMENDED_MODEL, load_model
    from napari_lowdose.widgets.segment import SegmentWidget

    widget = SegmentWidget(make_napari_viewer(), use_thread=False)
    calibrated = load_model(RECOMMENDED_MODEL)[1]["validation"]["calibrated_threshold"]
    assert widget.model.value == RECOMMENDED_MODEL
    assert widget.threshold.value == pytest.approx(calibrated)
    widget.threshold.value = 0.8
    widget.reset_settings()  # "Reset to defaults" gives the recommended choice back
    assert widget.threshold.value == pytest.approx(calibrated)


def test_the_dock_resamples_to_the_models_sampling_as_the_command_does(
        make_napari_viewer, tmp_path, notes):
    """The box "match the model's sampling" (on by default) follows workflows.segmentation.
    sampling_plan, the command's rule: the network sees each frame at its training pixel
    size, the probabilities come back at the layer's, and the export records it."""
    import json

    import torch

    from napari_lowdose.models.registry import load_model

    torch.manual_seed(1)
    card = {"validation": {"f1": 0.5}, "dataset": {"card": {"recipe": {"structure": {
        "sampling_range_A": [2 * PIXEL_A, 2 * PIXEL_A]}}}}}
    path = save_checkpoint(tmp_path / "card.safetensors",
                           MSDNet(depth=3, width=2, kernel_size=3, max_dilation=2),
                           arch="msdnet", metadata=card)
    viewer = make_napari_viewer()
    frames = _frames()
    layer = _add_series(viewer, frames)
    widget = _dock(viewer, path, layer)
    assert widget.match_sampling.value  # the recommended default
    widget.run()
    assert widget._run.sampling.zoom == pytest.approx(0.5)
    assert widget.status.value.endswith("resampled ×0.5 from 0.5 to the model's training "
                                        "1 Å/px")  # said after the run too
    model = load_model(path, device="cpu")[0]
    expected = dict(inference.predict_probabilities(model, frames, device="cpu", zoom=0.5))
    probabilities = viewer.layers[widget._run.prob_layer.name].data
    for index, probability in expected.items():
        np.testing.assert_allclose(probabilities[index], probability, atol=1e-6)
    written = widget.export(tmp_path / "out")
    assert written
    record = json.loads((tmp_path / "out" / "summary.json").read_text())["run"]
    assert record["inference_zoom"] == pytest.approx(0.5)
    assert record["sampling"].startswith("resampled ×0.5")

    widget.match_sampling.value = False  # as segment --no-match-sampling
    widget.run()
    plain = dict(inference.predict_probabilities(model, frames, device="cpu"))
    probabilities = viewer.layers[widget._run.prob_layer.name].data
    np.testing.assert_allclose(probabilities[0], plain[0], atol=1e-6)
    assert not np.allclose(plain[0], expected[0])
    assert not [n for n in notes if n[0] == "show_error"]


def _segmented_in_a_thread(viewer, model_file, qtbot):
    """(viewer, dock) after a threaded run of the whole series has finished."""
    layer = _add_series(viewer, _frames())
    widget = _dock(viewer, model_file, layer, use_thread=True)
    widget.scope.value = "all"
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)
    return viewer, widget


def test_dragging_the_threshold_redoes_the_shown_frame_at_once_and_the_rest_once(
        make_napari_viewer, model_file, qtbot, monkeypatch):
    """In the viewer, a drag over the threshold slider re-thresholds the frame on screen at
    every step; the other frames and the analysis once, after the slider rests."""
    from napari_lowdose.widgets import segment_analysis

    viewer, widget = _segmented_in_a_thread(make_napari_viewer(), model_file, qtbot)
    qtbot.wait(2 * segment_analysis.RETHRESHOLD_DELAY_MS)
    prob, mask = viewer.layers[PROB].data, viewer.layers[MASK].data
    calls = []
    original = type(widget).update_analysis
    monkeypatch.setattr(type(widget), "update_analysis",
                        lambda self, **kw: calls.append(1) or original(self, **kw))
    viewer.dims.set_current_step(0, 3)
    before = mask.copy()
    for value in (0.45, 0.4, 0.35, 0.3):  # a drag: four steps in quick succession
        widget.threshold.value = value
    expected = np.stack([widget._mask_of(p, widget._run) for p in prob])
    changing = [i for i in range(N_FRAMES) if i != 3
                and not np.array_equal(expected[i], before[i])]
    assert changing  # the drag does change other frames' masks …
    assert np.array_equal(mask[3], expected[3])  # … the shown frame followed at once
    assert all(np.array_equal(mask[i], before[i]) for i in changing)  # the others wait
    assert calls == []
    qtbot.waitUntil(lambda: calls == [1], timeout=5000)
    assert np.array_equal(mask, expected)
    assert viewer.layers[MASK].metadata[LOWDOSE_KEY]["threshold"] == pytest.approx(0.3)
    qtbot.wait(2 * segment_analysis.RETHRESHOLD_DELAY_MS)
    assert calls == [1]  # once for the whole drag


def test_an_export_right_after_the_threshold_moved_writes_the_new_masks(
        make_napari_viewer, model_file, qtbot, tmp_path):
    import tifffile

    viewer, widget = _segmented_in_a_thread(make_napari_viewer(), model_file, qtbot)
    widget.threshold.value = 0.3
    written = widget.export(tmp_path / "out")  # before the slider's rest delay is over
    assert written
    prob = viewer.layers[PROB].data
    expected = np.stack([widget._mask_of(p, widget._run) for p in prob])
    saved = tifffile.imread(next(p for p in written if p.name.startswith("masks")))
    assert np.array_equal(saved.astype(bool), expected)
    import json
    summary = json.loads(next(p for p in written if p.name == "summary.json").read_text())
    assert summary["run"]["threshold"] == pytest.approx(0.3)


def test_closing_the_dock_during_a_run_cancels_it(make_napari_viewer, model_file, notes,
                                                  qtbot):
    """The title bar's close button takes the dock out of the window (napari neither
    destroys nor hides it): the run must stop there, keeping the frames done."""
    import time

    frames = _frames()

    def slow(index):
        time.sleep(0.3)
        return frames[index]

    lazy = da.stack([da.from_delayed(dask.delayed(slow)(i), frames.shape[1:], frames.dtype)
                     for i in range(N_FRAMES)])
    viewer = make_napari_viewer()
    layer = _add_series(viewer, lazy)
    widget = _dock(viewer, model_file, layer, use_thread=True)
    widget.scope.value = "all"
    widget.run()
    prob = viewer.layers[PROB]
    qtbot.waitUntil(lambda: len(_done(prob)) >= 1, timeout=30000)
    viewer.window.remove_dock_widget(widget.native)  # what the close button does
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert 1 <= len(_done(prob)) < N_FRAMES
    assert [kind for kind, _ in notes] == ["show_info"]
    assert notes[0][1].startswith("Segmentation cancelled after")


def test_the_threshold_follows_a_new_model_unless_the_user_chose_it(make_napari_viewer):
    """On the recommended model at its calibrated threshold, choosing another shipped model
    moves the threshold to that model's calibrated one; a threshold the user set stays."""
    from napari_lowdose.models.registry import load_model

    def calibrated(name):
        return load_model(name)[1]["validation"]["calibrated_threshold"]

    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer, use_thread=False)
    widget.reset_button.clicked.emit()
    assert widget.threshold.value == pytest.approx(widget.calibrated_threshold)
    widget.model.value = "msdnet-au-ceo2"
    assert widget.threshold.value == pytest.approx(calibrated("msdnet-au-ceo2"), abs=0.005)
    widget.threshold.value = 0.7  # the user's own
    widget.model.value = "unet-au-ceo2"
    assert widget.threshold.value == pytest.approx(0.7)
    assert widget.calibrated_threshold == pytest.approx(calibrated("unet-au-ceo2"))
