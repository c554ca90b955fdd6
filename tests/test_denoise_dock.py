"""The 'Denoise' dock in a microscopist's afternoon (#14): failures, bad pixels, ready on
open, remembered settings, progress and cost, tiling honesty, the Watch calibration."""

import dask
import dask.array as da
import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_lowdose.io.dose import FrameDose
from napari_lowdose.io.layers import LOWDOSE_KEY, image_layer_kwargs
from napari_lowdose.models.checkpoint import save_checkpoint
from napari_lowdose.models.denoiser import DenoiserUNet
from napari_lowdose.widgets import denoise as denoise_module
from napari_lowdose.widgets import denoise_run, denoise_watch
from napari_lowdose.widgets._dose_overlay import frame_dose_text
from napari_lowdose.widgets.denoise import FILE_CHOICE, LIVE_DENOISED, LIVE_RAW, DenoiseWidget

pytestmark = pytest.mark.gui

N, SIZE, PIXEL_A = 10, 24, 0.5
DOSES = np.geomspace(10, 1e3, N)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = DenoiserUNet(base_channels=4, levels=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, model, arch="denoiser", metadata={})
    return path


def _frames(n=N):
    rng = np.random.default_rng(0)
    return np.stack([rng.poisson(d * PIXEL_A**2, (SIZE, SIZE)) for d in DOSES[:n]]).astype(
        np.float32)


def _add_series(viewer, data, name="series"):
    dose = FrameDose(DOSES[: data.shape[0]], "metadata", "test")
    return viewer.add_image(
        data, name=name,
        metadata={LOWDOSE_KEY: {"dose": dose.to_metadata(), "pixel_size_A": [PIXEL_A] * 2}},
        **image_layer_kwargs((PIXEL_A, PIXEL_A), 3))


def _dock(viewer, model_file, **kwargs):
    widget = DenoiseWidget(viewer, **kwargs)
    viewer.window.add_dock_widget(widget)
    widget.model.value = FILE_CHOICE
    widget.model_file.value = model_file
    widget.device.value = "cpu"
    return widget


@pytest.fixture
def messages(monkeypatch):
    """Every notification the dock makes, and anything else napari would show."""
    seen = {"dock": [], "napari": []}
    for name in ("show_error", "show_warning", "show_info"):
        monkeypatch.setattr(denoise_module, name, seen["dock"].append)
        monkeypatch.setattr(denoise_watch, name, seen["dock"].append)
    for name in ("show_error", "show_info"):  # the layer runs' notifications
        monkeypatch.setattr(denoise_run, name, seen["dock"].append)
    monkeypatch.setattr(notification_manager, "dispatch", seen["napari"].append)
    return seen


def _broken_at(frames, bad: int):
    """A dask series whose frame ``bad`` raises OSError when computed (a failing read)."""

    def read(block, block_info=None):
        if block_info[None]["chunk-location"][0] == bad:
            raise OSError(f"read error in frame {bad}")
        return block

    return da.from_array(frames, chunks=(1, SIZE, SIZE)).map_blocks(read, dtype=np.float32)


def test_a_read_failure_mid_series_gives_one_message_and_keeps_the_frames_done(
        make_napari_viewer, model_file, messages, qtbot):
    viewer = make_napari_viewer()
    frames = _frames()
    with dask.config.set(scheduler="synchronous"):
        image = _add_series(viewer, _broken_at(frames, 6))
        widget = _dock(viewer, model_file)  # threaded, as in napari
        assert widget.layer is image  # ready on the only series
        widget.scope.value = "all"
        widget.run()
        assert not widget.run_button.enabled and widget.cancel_button.enabled
        qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
        qtbot.wait(50)  # anything queued after "finished" arrives now
    assert messages["dock"] == ["Denoise failed: read error in frame 6"]
    assert messages["napari"] == []  # no second notification, nothing re-raised
    out = viewer.layers[f"tiny · {image.name}"]
    done = np.isfinite(out.data).reshape(N, -1).all(axis=1)
    assert done[:6].all() and not done[6:].any()  # the frames done are kept
    assert out.metadata[LOWDOSE_KEY]["denoised"]["frames_done"] == list(range(6))
    assert widget.status.value.startswith("failed after 6 frame(s): read error in frame 6")
    assert widget.progress_bar.value == 0
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    # The input is unchanged, and the dock works again (another layer, a clean run).
    np.testing.assert_array_equal(np.asarray(image.data[:6]), frames[:6])
    clean = _add_series(viewer, frames, name="clean")
    widget.layer_combo.value = clean
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert np.isfinite(viewer.layers["tiny · clean"].data).all()
    assert len(messages["dock"]) == 1 and messages["napari"] == []
    widget.shutdown()


@pytest.mark.parametrize("scope", ["all", "current"])
def test_a_frame_with_nan_is_refused_by_name_and_the_dose_is_not_blamed(
        make_napari_viewer, model_file, messages, scope):
    viewer = make_napari_viewer()
    frames = _frames()
    frames[3, 5, 7] = np.nan
    frames[8, 0, 0] = np.inf
    image = _add_series(viewer, frames)
    widget = _dock(viewer, model_file, use_thread=False)
    widget.scope.value = scope
    viewer.dims.set_current_step(0, 3)
    widget.run()
    assert len(messages["dock"]) == 1
    message = messages["dock"][0]
    assert message.startswith("Denoise: ") and "frame 3" in message
    assert "positive and finite" not in message and "dose" not in message
    assert "denoised" not in widget.status.value.split(":")[0]  # never a success
    assert widget.status.value.startswith("failed after")
    np.testing.assert_array_equal(image.data, frames)
    out = f"tiny · {image.name}"
    if scope == "current":
        assert out not in viewer.layers  # nothing done: no empty layer left behind
    else:  # frames 0–2 were denoised before frame 3 was refused
        assert viewer.layers[out].metadata[LOWDOSE_KEY]["denoised"]["frames_done"] == [0, 1, 2]
    widget.shutdown()


def test_ready_on_the_active_series_and_named_after_the_model(make_napari_viewer, model_file):
    viewer = make_napari_viewer()
    first = _add_series(viewer, _frames(), name="first")
    second = _add_series(viewer, _frames(), name="second")
    viewer.layers.selection.active = first
    widget = _dock(viewer, model_file, use_thread=False)
    assert widget.layer is first
    viewer.layers.selection.active = None
    assert DenoiseWidget(viewer).layer is None  # two series, none chosen: the user picks
    widget.layer_combo.value = second
    widget.scope.value = "current"
    widget.run()
    assert "tiny · second" in viewer.layers
    # The dose overlay is on: it reads the shown frame of the selected series.
    viewer.layers.selection.active = second
    viewer.dims.set_current_step(0, 4)
    overlay = viewer.canvas.overlays.text if hasattr(viewer, "canvas") else viewer.text_overlay
    assert overlay.visible and overlay.text.startswith("second · frame 4 · ")
    assert frame_dose_text(second, 4, named=True).startswith("second · frame 4 · ")
    widget.shutdown()


def test_settings_come_back_in_a_new_session_and_reset(make_napari_viewer, model_file,
                                                       tmp_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer, model_file)
    widget.gain.value, widget.tile_px.value, widget.overlap_px.value = 2.5, 256, 20
    widget.settle_s.value, widget.process_existing.value = 1.5, False
    widget.camera_folder.value = tmp_path
    widget.shutdown()

    again = DenoiseWidget(make_napari_viewer())
    assert again.model.value == FILE_CHOICE and str(again.model_file.value) == str(model_file)
    assert again.device.value == "cpu" and again.gain.value == 2.5
    assert (again.tile_px.value, again.overlap_px.value) == (256, 20)
    assert again.settle_s.value == 1.5 and not again.process_existing.value
    assert str(again.camera_folder.value) == str(tmp_path)
    again.reset_button.native.click()
    assert again.gain.value == 0 and again.tile_px.value == 0 and again.overlap_px.value == 0
    assert again.settle_s.value == 0.5 and again.process_existing.value
    assert again.device.value == "auto"
    assert DenoiseWidget(make_napari_viewer()).tile_px.value == 0  # the reset is stored
    again.shutdown()


def test_progress_time_left_cancel_and_few_redraws(make_napari_viewer, model_file, qtbot,
                                                   monkeypatch):
    viewer = make_napari_viewer()
    image = _add_series(viewer, _frames())
    widget = _dock(viewer, model_file, use_thread=False)
    widget.scope.value = "all"
    viewer.dims.set_current_step(0, 0)
    statuses, refreshes = [], []
    monkeypatch.setattr(denoise_run, "REFRESH_S", 3600.0)
    real_frames, real_eta = widget._frames, denoise_run.eta_text

    def frames(request):
        statuses.append(widget.status.value)  # what the run starts with
        yield from real_frames(request)

    def eta(*args, **kwargs):
        statuses.append("denoising: " + real_eta(*args, **kwargs))
        return real_eta(*args, **kwargs)

    widget._frames = frames
    monkeypatch.setattr(denoise_run, "eta_text", eta)
    import napari.layers

    real_refresh = napari.layers.Image.refresh

    def counting(self, *args, **kwargs):
        if self.name == f"tiny · {image.name}":
            refreshes.append(1)
        return real_refresh(self, *args, **kwargs)

    monkeypatch.setattr(napari.layers.Image, "refresh", counting)
    widget.run()
    assert widget.progress_bar.max == N and widget.progress_bar.value == N
    assert statuses[0].startswith(f"denoising {N} frame(s)… (the time left")
    assert any(s.startswith(f"denoising: 1/{N} frames, ~") and "left" in s for s in statuses)
    assert widget.status.value.startswith(f"{N}/{N} frame(s) denoised in ")
    # Redrawn when the frame shown (0) arrived and once at the end, not for every frame.
    assert len(refreshes) <= 3
    assert widget.cancel_button.text == "Cancel"


def test_the_tiling_line_says_how_many_tiles_and_how_much_work(make_napari_viewer,
                                                               model_file):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).poisson(5.0, (2, 384, 384)).astype(np.float32),
                     name="big")
    widget = _dock(viewer, model_file, use_thread=False)
    assert widget.tile_info.value == "whole frames (384×384 px), one pass each"  # auto
    widget.tile_px.value = 128
    text = widget.tile_info.value
    assert text.startswith("16 tiles of ≤ ") and text.endswith("× the work of one pass")
    work = float(text.split(", ")[-1].split("×")[0])
    assert work < 1.5
    widget.scope.value = "current"
    widget.run()
    record = viewer.layers["tiny · big"].metadata[LOWDOSE_KEY]["denoised"]
    assert record["tile_px"] == 128 and record["tiling"] == text


def test_watch_takes_pixel_size_and_dose_and_calibrates_the_live_layers(
        make_napari_viewer, model_file, tmp_path, qtbot, messages):
    from napari_lowdose.io.writers import write_series_tiff

    viewer = make_napari_viewer()
    _add_series(viewer, _frames())
    widget = _dock(viewer, model_file)
    assert widget.watch_pixel_A.value == PIXEL_A  # the open series' calibration
    assert widget.watch_dose.value == 0  # from the files …
    assert f"{DOSES[-1]:.4g} e⁻/Å²" in widget.watch_dose.tooltip  # … the series' as a hint
    camera = tmp_path / "camera"
    camera.mkdir()
    frames = _frames(2)
    for i, frame in enumerate(frames):  # files without pixel size or dose
        write_series_tiff(camera / f"frame_{i}.tif", frame, None)
    widget.camera_folder.value = camera
    widget.settle_s.value = 0.1
    widget.watch_dose.value = 40.0
    widget.toggle_watch()
    qtbot.waitUntil(lambda: LIVE_DENOISED in viewer.layers
                    and viewer.layers[LIVE_DENOISED].data.shape[0] == 2, timeout=30000)
    widget.toggle_watch()
    qtbot.waitUntil(lambda: not widget.watching, timeout=10000)
    for name in (LIVE_RAW, LIVE_DENOISED):
        layer = viewer.layers[name]
        np.testing.assert_allclose(layer.scale[-2:], [PIXEL_A, PIXEL_A])
        assert [str(u) for u in layer.units[-2:]] == ["angstrom", "angstrom"]
        dose = layer.metadata[LOWDOSE_KEY]["dose"]["dose_e_per_A2"]
        assert dose == pytest.approx([40.0, 40.0])
        assert frame_dose_text(layer, 1, named=True).startswith(f"{name} · frame 1 · 40 e⁻/Å²")
    assert messages["dock"] == [] and messages["napari"] == []
