"""The 'Segment' dock widget and the 'Area vs dose' plot dock."""

import numpy as np
import pytest

from napari_lowdose.io.dose import FrameDose
from napari_lowdose.io.layers import LOWDOSE_KEY, image_layer_kwargs
from napari_lowdose.models import inference
from napari_lowdose.models.checkpoint import save_checkpoint
from napari_lowdose.models.msdnet import MSDNet
from napari_lowdose.widgets.area_plot import AREA_KEY, AreaPlotWidget
from napari_lowdose.widgets.segment import FILE_CHOICE, SegmentWidget

pytestmark = pytest.mark.gui

N_FRAMES, SIZE, PIXEL_A = 8, 40, 0.5
DOSES = np.geomspace(10, 1e4, N_FRAMES)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    model = MSDNet(depth=3, width=2, kernel_size=3, max_dilation=2)
    save_checkpoint(path, model, arch="msdnet", metadata={"validation": {"f1": 0.5}})
    return path


def _series():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disk = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE / 4) ** 2
    frames = np.stack([rng.poisson(d * PIXEL_A**2 * (1 + disk)) for d in DOSES])
    return frames.astype(np.float32), disk.astype(np.uint8)


@pytest.fixture
def setup(make_napari_viewer, model_file):
    viewer = make_napari_viewer()
    frames, disk = _series()
    dose = FrameDose(DOSES, "metadata", "test")
    image = viewer.add_image(
        frames,
        name="series",
        translate=(0, 3.0, -2.0),
        metadata={LOWDOSE_KEY: {"dose": dose.to_metadata(), "pixel_size_A": [PIXEL_A] * 2}},
        **image_layer_kwargs((PIXEL_A, PIXEL_A), 3),
    )
    widget = SegmentWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    widget.layer_combo.value = image
    widget.model.value = FILE_CHOICE
    widget.model_file.value = model_file
    widget.device.value = "cpu"
    widget.threshold.value = 0.5
    return viewer, widget, image, disk


def _outputs(viewer):
    prob = viewer.layers["tiny (msdnet) probability · series"]
    mask = viewer.layers["tiny (msdnet) mask · series"]
    return prob, mask


def _plot(widget):
    plot = widget.plot_widget
    assert isinstance(plot, AreaPlotWidget)
    return plot


def test_whole_series_layers_table_plot_and_threshold(setup, monkeypatch):
    viewer, widget, image, _ = setup
    assert "msdnet" in widget.model_info.value and "0.500" in widget.model_info.value
    assert widget.device_info.value  # what "cpu" resolves to
    before = image.data.copy()
    calls = []
    real = inference.predict_probabilities

    def counting(*args, **kwargs):
        calls.append(kwargs.get("frame_indices"))
        yield from real(*args, **kwargs)

    monkeypatch.setattr(inference, "predict_probabilities", counting)
    widget.scope.value = "all"
    widget.run()
    assert len(calls) == 1
    prob, mask = _outputs(viewer)
    assert len(viewer.layers) == 3
    for layer in (prob, mask):
        assert layer.data.shape == image.data.shape
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
        assert [str(u) for u in layer.units] == [str(u) for u in image.units]
    assert type(mask).__name__ == "Labels"
    assert np.isfinite(prob.data).all()
    np.testing.assert_array_equal(mask.data, prob.data >= 0.5)
    np.testing.assert_array_equal(image.data, before)  # the input is never modified

    record = mask.metadata[LOWDOSE_KEY][AREA_KEY]
    table = record["table"]
    assert table["frame"] == list(range(N_FRAMES))
    np.testing.assert_allclose(table["dose_e_per_A2"], DOSES)
    areas = mask.data.reshape(N_FRAMES, -1).sum(axis=1)
    assert table["area_px"] == areas.tolist()
    np.testing.assert_allclose(table["area_nm2"], areas * PIXEL_A**2 / 100)
    assert list(mask.features["index"]) == [1]
    assert "convergence_dose_e_per_A2" in mask.features

    plot = _plot(widget)
    runs = plot.plotted_runs()
    assert list(runs) == ["tiny"]
    np.testing.assert_allclose(runs["tiny"][0], DOSES)
    np.testing.assert_allclose(runs["tiny"][1], areas * PIXEL_A**2 / 100)

    # Running again updates the same layers.
    widget.run()
    assert len(viewer.layers) == 3 and _outputs(viewer) == (prob, mask)
    assert len(calls) == 2

    # The threshold re-thresholds without the network.
    widget.threshold.value = 0.3
    assert len(calls) == 2
    np.testing.assert_array_equal(mask.data, prob.data >= 0.3)
    new_areas = mask.data.reshape(N_FRAMES, -1).sum(axis=1)
    assert mask.metadata[LOWDOSE_KEY][AREA_KEY]["table"]["area_px"] == new_areas.tolist()
    np.testing.assert_allclose(plot.plotted_runs()["tiny"][1], new_areas * PIXEL_A**2 / 100)
    assert widget.run_button.enabled and widget.layer_combo.enabled


def test_current_frame_scope_and_cancel(setup, monkeypatch):
    viewer, widget, _, _ = setup
    viewer.dims.set_current_step(0, 5)
    widget.scope.value = "current"
    widget.run()
    prob, mask = _outputs(viewer)
    done = np.isfinite(prob.data).reshape(N_FRAMES, -1).all(axis=1)
    assert done.tolist() == [i == 5 for i in range(N_FRAMES)]
    assert not mask.data[np.arange(N_FRAMES) != 5].any()
    assert mask.metadata[LOWDOSE_KEY][AREA_KEY]["table"]["frame"] == [5]

    # Cancel after 3 frames of a range: those 3 are kept, the rest stay NaN / 0.
    viewer.layers.remove(prob)
    viewer.layers.remove(mask)
    widget.scope.value = "range"
    widget.range_from.value, widget.range_to.value = 1, 6
    real = inference.predict_probabilities

    def stop_after_three(*args, **kwargs):
        assert kwargs["frame_indices"] == [1, 2, 3, 4, 5, 6]
        for n, item in enumerate(real(*args, **kwargs), start=1):
            yield item
            if n == 3:
                widget.cancel_button.enabled = True
                widget.cancel()
                assert kwargs["should_stop"]()

    monkeypatch.setattr(inference, "predict_probabilities", stop_after_three)
    widget.run()
    prob, mask = _outputs(viewer)
    done = np.isfinite(prob.data).reshape(N_FRAMES, -1).all(axis=1)
    assert np.flatnonzero(done).tolist() == [1, 2, 3]
    assert np.isnan(prob.data[~done]).all() and not mask.data[~done].any()
    table = mask.metadata[LOWDOSE_KEY][AREA_KEY]["table"]
    assert table["frame"] == [1, 2, 3]
    # The dose received counts frame 0, which this run did not segment.
    np.testing.assert_allclose(table["cumulative_dose_e_per_A2"], np.cumsum(DOSES)[1:4])
    assert "stopped" in widget.status.value
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_plot_click_moves_viewer_and_marker_follows(setup):
    viewer, widget, _, _ = setup
    widget.run()
    plot = _plot(widget)
    dose, area = plot.plotted_runs()["tiny"]
    frame = plot.click_at(dose[6] * 1.01, area[6])
    assert frame == 6
    assert viewer.dims.current_step[0] == 6
    assert plot.marker_positions() == [pytest.approx((dose[6], area[6]))]
    viewer.dims.set_current_step(0, 2)
    assert plot.marker_positions() == [pytest.approx((dose[2], area[2]))]
    # A click far from any point changes nothing.
    assert plot.click_at(dose[0], area.max() * 10 + 100) is None
    assert viewer.dims.current_step[0] == 2


def test_truth_f1_and_overlay_of_two_runs(setup, model_file, tmp_path):
    viewer, widget, image, disk = setup
    viewer.add_labels(disk, name="particle truth", **image_layer_kwargs((PIXEL_A,) * 2, 2))
    assert widget.truth_combo.value.name == "particle truth"
    widget.run()
    _, mask = _outputs(viewer)
    from napari_lowdose.analysis.area_vs_dose import f1_per_frame

    record = mask.metadata[LOWDOSE_KEY][AREA_KEY]
    np.testing.assert_allclose(record["table"]["f1"], f1_per_frame(mask.data, disk))
    assert "median_f1" in mask.features
    plot = _plot(widget)
    assert plot.ax_f1 is not None and "tiny" in plot.f1

    # A second model's run overlays in the same plot.
    import shutil

    other = tmp_path / "other.safetensors"
    shutil.copy(model_file, other)
    widget.model_file.value = other
    widget.run()
    assert set(plot.plotted_runs()) == {"tiny", "other"}
    assert len(viewer.layers) == 6


def test_mask_clean_up_re_applies_without_the_network_and_is_exported(setup, monkeypatch,
                                                                      tmp_path):
    import json

    from napari_lowdose.analysis.masks import MaskCleaning, clean_mask

    viewer, widget, _, _ = setup
    widget.run()
    prob, mask = _outputs(viewer)
    plain = mask.data.copy()
    calls = []
    monkeypatch.setattr(inference, "predict_probabilities",
                        lambda *a, **k: calls.append(1) or iter(()))
    widget.keep_largest.value = True
    widget.fill_holes.value = True
    widget.min_area.value = 0.01  # 4 pixels of 0.5 Å
    rules = MaskCleaning(keep_largest=True, fill_holes=True, min_area_px=4)
    for frame in range(N_FRAMES):
        np.testing.assert_array_equal(mask.data[frame],
                                      clean_mask(prob.data[frame] >= 0.5, rules))
    assert not calls and not np.array_equal(mask.data, plain)
    table = mask.metadata[LOWDOSE_KEY][AREA_KEY]["table"]
    assert table["area_px"] == mask.data.reshape(N_FRAMES, -1).sum(axis=1).tolist()
    assert mask.metadata[LOWDOSE_KEY]["mask_cleaning"] == rules.to_dict()
    widget.export(tmp_path / "out")
    run = json.loads((tmp_path / "out" / "summary.json").read_text())["run"]
    assert run["mask_cleaning"] == rules.to_dict()

    # Off again: the plain threshold comes back.
    widget.keep_largest.value = widget.fill_holes.value = False
    widget.min_area.value = 0.0
    np.testing.assert_array_equal(mask.data, plain)


def test_the_model_threshold_button_sets_the_calibrated_threshold(setup, tmp_path):
    viewer, widget, _, _ = setup
    assert widget.calibrated_threshold is None and not widget.model_threshold_button.enabled
    calibrated = save_checkpoint(
        tmp_path / "cal.safetensors", MSDNet(depth=3, width=2, kernel_size=3, max_dilation=2),
        arch="msdnet", metadata={"validation": {"f1": 0.5, "calibrated_threshold": 0.35,
                                                "calibrated_f1": 0.6}})
    widget.model_file.value = calibrated
    assert widget.calibrated_threshold == 0.35 and widget.model_threshold_button.enabled
    assert "0.35" in widget.model_info.value and "0.35" in widget.model_threshold_button.text
    widget.run()
    widget.model_threshold_button.clicked.emit()
    assert widget.threshold.value == pytest.approx(0.35)
    prob = viewer.layers["cal (msdnet) probability · series"]
    mask = viewer.layers["cal (msdnet) mask · series"]
    np.testing.assert_array_equal(mask.data, prob.data >= 0.35)


def test_export_round_trip_and_no_silent_overwrite(setup, tmp_path):
    from napari_lowdose.io.readers import read_series
    from napari_lowdose.workflows.segmentation import SEGMENT_FILES

    viewer, widget, _, disk = setup
    viewer.add_labels(disk, name="particle truth", **image_layer_kwargs((PIXEL_A,) * 2, 2))
    widget.run()
    assert widget.export_button.enabled
    out = tmp_path / "out"
    written = widget.export(out)
    assert {p.name for p in written} == {*SEGMENT_FILES, "f1_vs_dose.csv"}
    masks = read_series(out / "masks.tif")
    assert masks.data.shape == (N_FRAMES, SIZE, SIZE)
    assert masks.pixel_size_A == pytest.approx((PIXEL_A, PIXEL_A))
    _, mask = _outputs(viewer)
    np.testing.assert_array_equal(np.asarray(masks.data), mask.data)
    summary = (out / "summary.json").read_text()
    assert "napari layer 'series'" in summary and "tiny" in summary

    # A non-empty folder is not overwritten without consent.
    stamp = (out / "summary.json").stat().st_mtime_ns
    widget.threshold.value = 0.2
    assert widget.export(out, overwrite=False) is None
    assert (out / "summary.json").stat().st_mtime_ns == stamp
    assert widget.export(out, overwrite=True) is not None
    assert (out / "summary.json").stat().st_mtime_ns != stamp
    # A file chosen as the folder is left alone, even when replacing is allowed.
    a_file = tmp_path / "series.tif"
    a_file.write_text("keep")
    assert widget.export(a_file, overwrite=True) is None
    assert a_file.read_text() == "keep"


def test_min_area_on_an_uncalibrated_image_warns_once_and_is_not_applied(setup, monkeypatch):
    viewer, widget, image, _ = setup
    frames = np.asarray(image.data).copy()
    bare = viewer.add_image(frames, name="bare", metadata=dict(image.metadata))
    widget.layer_combo.value = bare
    widget.run()
    mask = viewer.layers["tiny (msdnet) mask · bare"]
    prob = viewer.layers["tiny (msdnet) probability · bare"]
    warnings = []
    monkeypatch.setattr("napari_lowdose.widgets.segment_analysis.show_warning", warnings.append)
    widget.min_area.value = 5.0
    assert len(warnings) == 1 and "no pixel size" in warnings[0]
    np.testing.assert_array_equal(mask.data, prob.data >= 0.5)  # the rule is left out
    np.testing.assert_array_equal(bare.data, frames)


def test_errors_are_one_line_and_inputs_stay_enabled(setup, model_file, monkeypatch):
    viewer, widget, _, _ = setup
    messages = []
    monkeypatch.setattr("napari_lowdose.widgets.segment.show_error", messages.append)
    monkeypatch.setattr("napari_lowdose.widgets.segment_run.show_error", messages.append)
    assert widget.export(model_file.parent / "nothing") is None
    assert "Nothing to export" in messages[-1]
    widget.model_file.value = ""
    widget.run()
    assert "model file" in messages[-1]
    assert len(viewer.layers) == 1

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory\nlong traceback")
        yield  # pragma: no cover

    monkeypatch.setattr(inference, "predict_probabilities", boom)
    widget.model_file.value = model_file
    widget.run()
    assert messages[-1] == "Segment failed: out of memory"
    assert widget.status.value.startswith("failed after 0 of 8 frame(s): out of memory")
    assert widget.run_button.enabled and widget.layer_combo.enabled
    assert not widget.cancel_button.enabled
    # Nothing was segmented: no empty output layers are left behind.
    assert len(viewer.layers) == 1


def test_threaded_run_streams_and_finishes(setup, qtbot):
    viewer, widget, _, _ = setup
    widget.use_thread = True
    widget.run()
    assert not widget.run_button.enabled and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)
    prob, mask = _outputs(viewer)
    assert np.isfinite(prob.data).all()
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert mask.metadata[LOWDOSE_KEY][AREA_KEY]["table"]["frame"] == list(range(N_FRAMES))


def test_a_run_of_another_model_file_of_the_same_name_starts_on_fresh_layers(
        setup, model_file, tmp_path):
    """Frames are added to the layers of earlier runs only for the same model file and
    resampling: another file of the same name (or the same file retrained) gets layers of
    its own, so its export never holds the first model's frames under its name."""
    import torch

    viewer, widget, _, _ = setup
    widget.run()  # model A, every frame
    prob, _ = _outputs(viewer)
    assert np.isfinite(prob.data).all()
    torch.manual_seed(1)
    other = tmp_path / "elsewhere" / "tiny.safetensors"
    other.parent.mkdir()
    save_checkpoint(other, MSDNet(depth=3, width=2, kernel_size=3, max_dilation=2),
                    arch="msdnet", metadata={"validation": {"f1": 0.5}})
    widget.model_file.value = other
    viewer.dims.set_current_step(0, 4)
    widget.scope.value = "current"
    widget.run()  # model B, one frame
    prob, mask = _outputs(viewer)
    done = np.isfinite(prob.data).reshape(N_FRAMES, -1).all(axis=1)
    assert np.flatnonzero(done).tolist() == [4]
    written = widget.export(tmp_path / "b")
    from napari_lowdose.io.readers import read_series

    assert read_series(tmp_path / "b" / "masks.tif").data.shape == (SIZE, SIZE)  # one frame
    assert any(p.name == "summary.json" for p in written)
    # The same file again: frames are added to its layers (frame 4 kept, frame 2 added).
    viewer.dims.set_current_step(0, 2)
    widget.run()
    prob, _ = _outputs(viewer)
    done = np.isfinite(prob.data).reshape(N_FRAMES, -1).all(axis=1)
    assert np.flatnonzero(done).tolist() == [2, 4]


def test_a_long_series_keeps_only_the_frames_segmented_in_memory(setup, monkeypatch, tmp_path):
    """Output layers too large for memory hold one compressed chunk per frame segmented
    (frames_array): a few frames of a long series cost a few frames. Same results, analysis,
    re-threshold and export as plain arrays."""
    from napari_lowdose.io.readers import read_series
    from napari_lowdose.widgets import _layers

    viewer, widget, _, _ = setup
    widget.run()
    plain_prob, plain_mask = (np.array(layer.data) for layer in _outputs(viewer))
    for layer in _outputs(viewer):
        viewer.layers.remove(layer)
    monkeypatch.setattr(_layers, "DENSE_LAYER_MAX_BYTES", 1)
    widget.scope.value = "range"
    widget.range_from.value, widget.range_to.value = 2, 4
    widget.run()
    prob, mask = _outputs(viewer)
    assert not isinstance(prob.data, np.ndarray) and not isinstance(mask.data, np.ndarray)
    assert prob.data.store is not None and len(prob.data.shape) == 3
    np.testing.assert_array_equal(np.asarray(prob.data[[2, 3, 4]]), plain_prob[2:5])
    np.testing.assert_array_equal(np.asarray(mask.data[[2, 3, 4]]), plain_mask[2:5])
    assert np.isnan(prob.data[0]).all() and not mask.data[7].any()
    assert mask.metadata[LOWDOSE_KEY][AREA_KEY]["table"]["frame"] == [2, 3, 4]
    widget.threshold.value = 0.2  # re-threshold the frames done
    np.testing.assert_array_equal(np.asarray(mask.data[3]), (plain_prob[3] >= 0.2))
    written = widget.export(tmp_path / "out")
    assert written and read_series(tmp_path / "out" / "masks.tif").data.shape == (3, SIZE, SIZE)
