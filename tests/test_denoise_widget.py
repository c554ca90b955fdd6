"""The 'Denoise' dock widget: layer mode, live scope and in-situ folder watch."""

import threading

import numpy as np
import pytest

from napari_lowdose.io.dose import FrameDose
from napari_lowdose.io.layers import LOWDOSE_KEY, image_layer_kwargs
from napari_lowdose.models import denoising
from napari_lowdose.models.checkpoint import save_checkpoint
from napari_lowdose.models.denoiser import DenoiserUNet
from napari_lowdose.widgets.denoise import (
    FILE_CHOICE,
    LIVE_DENOISED,
    LIVE_RAW,
    DenoiseWidget,
)

pytestmark = pytest.mark.gui

N_FRAMES, SIZE, PIXEL_A = 6, 24, 0.5
DOSES = np.geomspace(10, 1e3, N_FRAMES)
OUTPUT = "tiny · series"
REAL_DENOISE_FRAMES = denoising.denoise_frames  # before any monkeypatch


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = DenoiserUNet(base_channels=4, levels=1)
    with torch.no_grad():  # the last layer starts at zero: make it do something
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, model, arch="denoiser", metadata={"validation": {"psnr_db": 31.5}})
    return path


def _series():
    rng = np.random.default_rng(0)
    return np.stack([rng.poisson(d * PIXEL_A**2, (SIZE, SIZE)) for d in DOSES]).astype(
        np.float32
    )


@pytest.fixture
def setup(make_napari_viewer, model_file):
    viewer = make_napari_viewer()
    dose = FrameDose(DOSES, "metadata", "test")
    image = viewer.add_image(
        _series(),
        name="series",
        translate=(0, 3.0, -2.0),
        metadata={LOWDOSE_KEY: {"dose": dose.to_metadata(), "pixel_size_A": [PIXEL_A] * 2}},
        **image_layer_kwargs((PIXEL_A, PIXEL_A), 3),
    )
    widget = DenoiseWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    widget.layer_combo.value = image
    widget.model.value = FILE_CHOICE
    widget.model_file.value = model_file
    widget.device.value = "cpu"
    yield viewer, widget, image
    widget.shutdown()


def _expected(model_file, frames, indices=None):
    from napari_lowdose.models.registry import load_denoiser

    model, _ = load_denoiser(model_file)
    return dict(
        REAL_DENOISE_FRAMES(
            model, frames, expected_e_per_px=DOSES * PIXEL_A**2, device="cpu",
            frame_indices=indices,
        )
    )


def _done(layer) -> list[int]:
    finite = np.isfinite(layer.data).reshape(layer.data.shape[0], -1).all(axis=1)
    return np.flatnonzero(finite).tolist()


def test_whole_series_layer_values_and_rerun(setup, model_file, monkeypatch):
    viewer, widget, image = setup
    assert "denoiser" in widget.model_info.value and "31.50 dB" in widget.model_info.value
    assert widget.device_info.value
    assert widget.dose_info.value.startswith("dose × pixel area")
    before = image.data.copy()
    calls = []
    real = denoising.denoise_frames

    def counting(*args, **kwargs):
        calls.append(kwargs)
        yield from real(*args, **kwargs)

    monkeypatch.setattr(denoising, "denoise_frames", counting)
    widget.scope.value = "all"
    widget.run()
    assert len(viewer.layers) == 2
    out = viewer.layers[OUTPUT]
    assert out.data.shape == image.data.shape and out.data.dtype == np.float32
    np.testing.assert_allclose(out.scale, image.scale)
    np.testing.assert_allclose(out.translate, image.translate)
    assert [str(u) for u in out.units] == [str(u) for u in image.units]
    assert tuple(out.axis_labels) == tuple(image.axis_labels)
    np.testing.assert_allclose(calls[0]["expected_e_per_px"], DOSES * PIXEL_A**2)
    expected = _expected(model_file, before)
    for i in range(N_FRAMES):
        np.testing.assert_allclose(out.data[i], expected[i], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out.data, before)  # the network did something
    np.testing.assert_array_equal(image.data, before)  # the source is never modified
    record = out.metadata[LOWDOSE_KEY]["denoised"]
    assert record["frames_done"] == list(range(N_FRAMES))
    assert record["model"] == "tiny" and record["device"]
    assert out.metadata[LOWDOSE_KEY]["dose"]["dose_e_per_A2"] == pytest.approx(DOSES)
    lo, hi = out.contrast_limits
    shown = out.data[widget.current_frame(out)]  # contrast from the frame shown
    assert np.nanmin(shown) <= lo < hi <= np.nanmax(shown)
    assert widget.status.value.startswith(f"{N_FRAMES}/{N_FRAMES} frame(s) denoised in ")

    # Running again updates the same layer.
    out.data[:] = 0
    widget.run()
    assert len(calls) == 2 and len(viewer.layers) == 2 and viewer.layers[OUTPUT] is out
    np.testing.assert_allclose(out.data[3], expected[3], rtol=1e-5, atol=1e-5)
    assert widget.run_button.enabled and widget.layer_combo.enabled
    assert not widget.cancel_button.enabled


def test_current_frame_and_cancel_keeps_frames(setup, monkeypatch):
    viewer, widget, image = setup
    viewer.dims.set_current_step(0, 4)
    widget.scope.value = "current"
    widget.run()
    out = viewer.layers[OUTPUT]
    assert _done(out) == [4]
    assert out.metadata[LOWDOSE_KEY]["denoised"]["frames_done"] == [4]

    # Cancel after 2 frames of the whole series: those 2 are kept (with frame 4).
    real = denoising.denoise_frames

    def stop_after_two(*args, **kwargs):
        assert kwargs["frame_indices"] == list(range(N_FRAMES))
        for n, item in enumerate(real(*args, **kwargs), start=1):
            yield item
            if n == 2:
                widget.cancel_button.enabled = True
                widget.cancel()
                assert kwargs["should_stop"]()

    monkeypatch.setattr(denoising, "denoise_frames", stop_after_two)
    widget.scope.value = "all"
    widget.run()
    assert viewer.layers[OUTPUT] is out
    assert _done(out) == [0, 1, 4]
    assert np.isnan(out.data[[2, 3, 5]]).all()
    assert out.metadata[LOWDOSE_KEY]["denoised"]["frames_done"] == [0, 1, 4]
    assert "stopped" in widget.status.value
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_no_dose_uses_frame_mean(setup, model_file):
    viewer, widget, image = setup
    plain = viewer.add_image(image.data[2].copy(), name="plain")
    widget.layer_combo.value = plain
    assert "mean" in widget.dose_info.value
    widget.run()
    out = viewer.layers["tiny · plain"]
    from napari_lowdose.models.registry import load_denoiser

    model, _ = load_denoiser(model_file)
    expected = denoising.denoise_frame(model, image.data[2], device="cpu")
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-5)
    assert out.data.shape == (SIZE, SIZE)


def test_live_mode_follows_the_slider(setup):
    viewer, widget, _ = setup
    viewer.dims.set_current_step(0, 1)
    widget.scope.value = "live"
    assert widget.live and not widget.run_button.enabled and widget.scope.enabled
    out = viewer.layers[OUTPUT]
    assert _done(out) == [1]
    viewer.dims.set_current_step(0, 3)
    assert _done(out) == [1, 3]
    viewer.dims.set_current_step(0, 1)  # already done: nothing new
    assert "already" in widget.status.value
    widget.scope.value = "all"  # leaving the live scope stops it
    assert not widget.live and widget.run_button.enabled
    viewer.dims.set_current_step(0, 5)
    assert _done(out) == [1, 3]


def test_live_mode_threaded_keeps_only_the_latest_request(setup, qtbot, monkeypatch):
    viewer, widget, _ = setup
    widget.use_thread = True
    real = denoising.denoise_frames
    release = threading.Event()
    calls = []

    def held(*args, **kwargs):
        calls.append(kwargs["frame_indices"])
        release.wait(10)
        yield from real(*args, **kwargs)

    monkeypatch.setattr(denoising, "denoise_frames", held)
    viewer.dims.set_current_step(0, 0)
    widget.scope.value = "live"
    assert widget.busy
    for step in (1, 2, 3, 4):  # while frame 0 runs: only 4 is kept
        viewer.dims.set_current_step(0, step)
    release.set()
    qtbot.waitUntil(lambda: not widget.busy and 4 in _done(viewer.layers[OUTPUT]), timeout=20000)
    assert calls == [[0], [4]]
    assert _done(viewer.layers[OUTPUT]) == [0, 4]
    widget.scope.value = "current"


def test_bad_model_gives_one_notification_and_no_layer(setup, tmp_path, monkeypatch):
    viewer, widget, _ = setup
    messages = []
    monkeypatch.setattr("napari_lowdose.widgets.denoise.show_error", messages.append)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is no model")
    widget.model_file.value = bad
    assert widget.model_info.value.startswith("not usable")
    widget.run()
    assert len(messages) == 1 and messages[0].startswith("Denoise: ")
    assert len(viewer.layers) == 1

    # A segmentation model is refused with a clear message.
    from napari_lowdose.models.msdnet import MSDNet

    seg = tmp_path / "seg.safetensors"
    save_checkpoint(seg, MSDNet(depth=2, width=2, kernel_size=3, max_dilation=2),
                    arch="msdnet", metadata={})
    widget.model_file.value = seg
    widget.run()
    assert len(messages) == 2 and "not a denoiser" in messages[-1]
    assert len(viewer.layers) == 1

    # No model chosen (e.g. no shipped denoiser installed): say so.
    widget.model_file.value = None
    assert "model file" in widget.model_info.value
    widget.run()
    assert len(messages) == 3 and "choose a denoiser model file" in messages[-1]
    assert len(viewer.layers) == 1


def test_no_shipped_denoiser_still_offers_a_file(setup, monkeypatch):
    from napari_lowdose.models import registry

    _, widget, _ = setup
    monkeypatch.setattr(registry, "available_denoisers", lambda: [])
    widget.model.reset_choices()
    assert list(widget.model.choices) == [FILE_CHOICE]
    widget.model_file.value = None
    assert "no shipped denoiser is installed" in widget.model_info.value


def test_insitu_watch_denoises_new_frames(setup, model_file, tmp_path, qtbot):
    from napari_lowdose.insitu import LOG_FILE
    from napari_lowdose.io.writers import write_series_tiff
    from napari_lowdose.models.registry import load_denoiser

    viewer, widget, _ = setup
    camera, out_dir = tmp_path / "camera", tmp_path / "out"
    camera.mkdir()
    frames = _series()[[1, 4]]
    for i, frame in enumerate(frames, start=1):
        write_series_tiff(camera / f"frame_{i}.tif", frame, PIXEL_A,
                          dose_e_per_A2=[float(DOSES[[1, 4][i - 1]])])
    widget.camera_folder.value = camera
    widget.output_folder.value = out_dir
    widget.settle_s.value = 0.1
    widget.process_existing.value = True
    widget.watch_button.native.click()  # the toggle button starts the watch
    assert widget.watching and widget.watch_button.text == "Stop watching"
    assert not widget.camera_folder.enabled and not widget.model.enabled
    qtbot.waitUntil(
        lambda: LIVE_DENOISED in viewer.layers and viewer.layers[LIVE_DENOISED].data.shape[0] == 2,
        timeout=30000,
    )
    raw, den = viewer.layers[LIVE_RAW], viewer.layers[LIVE_DENOISED]
    np.testing.assert_array_equal(raw.data, frames)  # in order
    model, _ = load_denoiser(model_file)
    for k, dose in enumerate(DOSES[[1, 4]]):
        expected = denoising.denoise_frame(
            model, frames[k], expected_e_per_px=dose * PIXEL_A**2, device="cpu"
        )
        np.testing.assert_allclose(den.data[k], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(den.scale[-2:], [PIXEL_A, PIXEL_A])
    assert viewer.dims.current_step[0] == 1  # the newest frame is shown
    qtbot.waitUntil(lambda: "processed 2 frames" in widget.watch_status.value, timeout=10000)

    widget.toggle_watch()  # stop
    qtbot.waitUntil(lambda: not widget.watching, timeout=10000)
    assert widget.watch_button.text == "Watch folder" and widget.camera_folder.enabled
    assert widget.watch_status.value.startswith("stopped: processed 2 frames")
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(["frame_1_denoised.tif", "frame_2_denoised.tif", LOG_FILE])
    log = (out_dir / LOG_FILE).read_text().splitlines()
    assert len(log) == 3 and all(",ok," in row for row in log[1:])


def test_insitu_reports_bad_files_and_other_sizes(setup, tmp_path, qtbot, monkeypatch):
    viewer, widget, _ = setup
    warnings = []
    monkeypatch.setattr("napari_lowdose.widgets.denoise_watch.show_warning", warnings.append)
    camera = tmp_path / "camera"
    camera.mkdir()
    rng = np.random.default_rng(1)
    np.save(camera / "a_1.npy", rng.poisson(5, (SIZE, SIZE)).astype(np.float32))
    np.save(camera / "a_2.npy", rng.poisson(5, (SIZE + 8, SIZE)).astype(np.float32))
    (camera / "a_3.tif").write_bytes(b"not a tiff at all")
    widget.camera_folder.value = camera
    widget.settle_s.value = 0.05
    widget.start_watch()
    qtbot.waitUntil(lambda: len(warnings) >= 2, timeout=30000)
    widget.stop_watch()
    qtbot.waitUntil(lambda: not widget.watching, timeout=10000)
    assert viewer.layers[LIVE_DENOISED].data.shape == (1, SIZE, SIZE)
    assert any("not shown" in w and "a_2.npy" in w for w in warnings)
    assert any("a_3.tif" in w and "failed" in w for w in warnings)
    status = widget.watch_status.value
    assert "1 unreadable" in status and "1 not shown (other frame size)" in status


def test_closing_the_viewer_stops_the_watch(setup, tmp_path, qtbot):
    viewer, widget, _ = setup
    widget.camera_folder.value = tmp_path
    widget.start_watch()
    assert widget.watching
    state = widget._state
    viewer.close()
    qtbot.waitUntil(lambda: state.watch_worker is None, timeout=10000)
    assert state.closed and state.watch_stop.is_set()


def test_a_dock_dropped_without_being_docked_goes_quietly(make_napari_viewer, qtbot):
    """A dock made in a script and dropped is garbage-collected with its state; its
    destroyed handler must still find the state (PyQt aborts on an error in a slot)."""
    import gc

    from qtpy.QtWidgets import QApplication

    from napari_lowdose.widgets import denoise_state

    before = len(denoise_state._SHUTDOWN_HANDLERS)
    widget = DenoiseWidget(make_napari_viewer())
    state = widget._state
    assert len(denoise_state._SHUTDOWN_HANDLERS) == before + 1
    del widget
    gc.collect()
    QApplication.processEvents()
    assert state.closed and state.stop_event.is_set()
    assert len(denoise_state._SHUTDOWN_HANDLERS) == before


def test_frames_outside_the_trained_dose_range_are_warned_about(setup, tmp_path, monkeypatch):
    from napari_lowdose.widgets import denoise as denoise_widget

    viewer, widget, _ = setup
    narrow = save_checkpoint(tmp_path / "narrow.safetensors", DenoiserUNet(base_channels=2,
                                                                            levels=1),
                             arch="denoiser",
                             metadata={"source": {"trained_e_per_px_range": [2.0, 300.0]}})
    warnings = []
    monkeypatch.setattr(denoise_widget, "show_warning", warnings.append)
    widget.model_file.value = narrow
    widget.scope.value = "all"
    widget.run()
    # Frames at 10 … 1000 e⁻/Å² and 0.5 Å/px have 2.5 … 250 e⁻/px: inside.
    assert warnings == []
    widget.model_file.value = tmp_path / "missing"  # leave and come back: a new run
    narrow_high = save_checkpoint(tmp_path / "n2.safetensors",
                                  DenoiserUNet(base_channels=2, levels=1), arch="denoiser",
                                  metadata={"source": {"trained_e_per_px_range": [0.1, 20.0]}})
    widget.model_file.value = narrow_high
    widget.run()
    assert len(warnings) == 1 and "outside the 0.1…20 e⁻/px" in warnings[0]
    assert "3 of 6 frame(s)" in warnings[0]  # 39.8, 99.9 and 250 e⁻/px


def test_contrast_follows_the_frame_shown_until_the_user_sets_it(setup):
    viewer, widget, _ = setup
    widget.scope.value = "all"
    widget.run()
    out = viewer.layers[OUTPUT]
    viewer.dims.set_current_step(0, 0)
    low = tuple(out.contrast_limits)
    viewer.dims.set_current_step(0, N_FRAMES - 1)
    high = tuple(out.contrast_limits)
    last = out.data[N_FRAMES - 1]
    assert high == pytest.approx(tuple(np.percentile(last, (0.5, 99.5))), rel=1e-4)
    assert high[1] > 10 * low[1]  # 100× the dose: the limits moved with it
    out.contrast_limits = (1.0, 2.0)  # the user's choice is kept from now on
    viewer.dims.set_current_step(0, 2)
    assert tuple(out.contrast_limits) == pytest.approx((1.0, 2.0))


def test_gain_normalises_like_the_command(setup, model_file, monkeypatch):
    from napari_lowdose.models.registry import load_denoiser
    from napari_lowdose.workflows.policies import detector_gain

    viewer, widget, image = setup
    model, _ = load_denoiser(model_file)
    assert widget.gain.value == 0 and widget.gain_info.value.startswith("1 count/e⁻")
    widget.scope.value = "all"
    widget.run()
    plain = viewer.layers[OUTPUT].data.copy()  # default: gain 1, as before

    widget.gain.value = 4.0
    assert widget.gain_info.value == "4 counts/e⁻ (set here)"
    widget.run()
    out = viewer.layers[OUTPUT]
    expected = dict(REAL_DENOISE_FRAMES(model, image.data, expected_e_per_px=DOSES * PIXEL_A**2,
                                        counts_per_electron=4.0, device="cpu"))
    for i in range(N_FRAMES):
        np.testing.assert_allclose(out.data[i], expected[i], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out.data, plain)  # the gain changed the normalisation
    record = out.metadata[LOWDOSE_KEY]["denoised"]
    assert record["counts_per_electron"] == 4.0 and record["tile_px"] is None

    # Auto: the gain the layer's file states, as 'napari-lowdose denoise' without
    # --counts-per-electron (no dose here: frame mean / gain).
    hinted = viewer.add_image(image.data[3].copy(), name="hinted", metadata={
        LOWDOSE_KEY: {"dose_hints": {"counts_per_electron": 2.5}}})
    widget.layer_combo.value = hinted
    widget.gain.value = 0.0
    assert widget.gain_info.value == "2.5 counts/e⁻ (from the file)"
    assert detector_gain(None, 2.5) == 2.5  # the rule the command applies
    widget.run()
    expected = denoising.denoise_frame(model, image.data[3], counts_per_electron=2.5,
                                      device="cpu")
    np.testing.assert_allclose(viewer.layers["tiny · hinted"].data, expected,
                               rtol=1e-5, atol=1e-5)


def test_tiled_output_matches_the_whole_frame(make_napari_viewer, model_file):
    from napari_lowdose.models.registry import load_denoiser

    viewer = make_napari_viewer()
    rng = np.random.default_rng(3)
    frames = rng.poisson(20.0, (2, 100, 90)).astype(np.float32)
    image = viewer.add_image(frames, name="big")
    widget = DenoiseWidget(viewer, use_thread=False)
    widget.layer_combo.value = image
    widget.model.value = FILE_CHOICE
    widget.model_file.value = model_file
    widget.device.value = "cpu"
    widget.scope.value = "all"
    assert widget.tile_px.value == 0 and widget.overlap_px.native.isHidden()
    widget.run()
    whole = viewer.layers["tiny · big"].data.copy()

    widget.tile_px.value, widget.overlap_px.value = 48, 12
    assert not widget.overlap_px.native.isHidden()
    widget.run()
    out = viewer.layers["tiny · big"]
    assert out.data.shape == frames.shape and np.isfinite(out.data).all()
    model, _ = load_denoiser(model_file)
    expected = dict(REAL_DENOISE_FRAMES(model, frames, device="cpu", tile_px=48, overlap_px=12))
    for i in range(2):
        np.testing.assert_allclose(out.data[i], expected[i], rtol=1e-5, atol=1e-5)
    assert not np.array_equal(out.data, whole)  # tiled, not the whole frame
    np.testing.assert_allclose(out.data, whole, rtol=0, atol=1e-3 * np.abs(whole).max())
    record = out.metadata[LOWDOSE_KEY]["denoised"]
    assert (record["tile_px"], record["overlap_px"]) == (48, 12)
    widget.shutdown()


def test_bad_tile_gives_one_notification_and_no_layer(setup, monkeypatch):
    viewer, widget, _ = setup
    messages = []
    monkeypatch.setattr("napari_lowdose.widgets.denoise.show_error", messages.append)
    widget.tile_px.value = 8  # below the command's minimum
    widget.run()
    assert len(messages) == 1 and "at least 16 px" in messages[0]
    widget.tile_px.value, widget.overlap_px.value = 16, 48  # overlap too large for the tile
    widget.run()
    assert len(messages) == 2 and "too small" in messages[-1]
    assert len(viewer.layers) == 1


def test_the_dihedral_average_runs_as_the_command_does(setup, model_file):
    from napari_lowdose.models.registry import load_denoiser

    viewer, widget, image = setup
    model, _ = load_denoiser(model_file)
    widget.scope.value = "all"
    widget.dihedral.value = True
    widget.run()
    out = viewer.layers[OUTPUT]
    expected = dict(REAL_DENOISE_FRAMES(model, image.data, expected_e_per_px=DOSES * PIXEL_A**2,
                                        device="cpu", dihedral_average=True))
    for i in range(N_FRAMES):
        np.testing.assert_allclose(out.data[i], expected[i], rtol=1e-5, atol=1e-5)
    assert out.metadata[LOWDOSE_KEY]["denoised"]["dihedral_average"] is True
    averaged = np.array(out.data)
    widget.dihedral.value = False  # other settings: the frames are made again
    widget.run()
    again = viewer.layers[OUTPUT]
    assert again.metadata[LOWDOSE_KEY]["denoised"]["dihedral_average"] is False
    assert not np.allclose(np.asarray(again.data), averaged)


def test_a_long_series_keeps_only_the_frames_denoised_in_memory(setup, model_file,
                                                                  monkeypatch):
    """An output layer too large for memory holds one chunk per frame denoised: the same
    values, and the frames not denoised read as NaN."""
    from napari_lowdose.widgets import _layers

    viewer, widget, image = setup
    monkeypatch.setattr(_layers, "DENSE_LAYER_MAX_BYTES", 1)
    viewer.dims.set_current_step(0, 2)
    widget.scope.value = "current"
    widget.run()
    out = viewer.layers[OUTPUT]
    assert not isinstance(out.data, np.ndarray) and out.data.dtype == np.float32
    expected = _expected(model_file, np.array(image.data), [2])
    np.testing.assert_allclose(out.data[2], expected[2], rtol=1e-5, atol=1e-5)
    assert np.isnan(out.data[0]).all() and np.isnan(out.data[N_FRAMES - 1]).all()
    assert out.metadata[LOWDOSE_KEY]["denoised"]["frames_done"] == [2]
