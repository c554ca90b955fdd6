"""The 'Dose calibration' dock (issue 14): unsuitable layers, one notification per failure,
bad pixels, ready on open, the canvas dose, progress, remembered settings."""


import numpy as np
import pytest

from napari_lowdose.widgets import dose_calibration as module
from napari_lowdose.widgets._dose_overlay import _text_overlay
from napari_lowdose.widgets.dose_calibration import DoseCalibrationWidget

pytestmark = pytest.mark.gui

CALIBRATED = {"scale": (1, 0.5, 0.5), "units": ("dimensionless", "angstrom", "angstrom")}




@pytest.fixture
def shown(monkeypatch):
    messages = []
    monkeypatch.setattr(module, "show_error", messages.append)
    return messages


def _frames(n=8):
    return np.random.default_rng(0).poisson(40.0, size=(n, 16, 16)).astype(np.float32)


def _lazy_frames_failing_at(frame, n=8):
    import dask
    import dask.array as da

    frames = _frames(n)

    def read(i):
        if i == frame:
            raise OSError(f"read error in frame {i}")
        return frames[i]

    return da.stack([da.from_delayed(dask.delayed(read)(i), (16, 16), np.float32)
                     for i in range(n)])


def test_rgb_layers_cannot_be_chosen(make_napari_viewer, shown, caught):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    widget = DoseCalibrationWidget(viewer, use_thread=False)
    assert widget.layer is None and widget.status.value == "no image layer"
    widget.source.value, widget.counts_per_electron.value = "counts", 1.0
    widget.apply()  # was an IndexError in _count_frames
    assert shown == ["Choose an image layer first."]
    assert caught == {"notifications": [], "excepthook": []}


def test_opens_on_the_file_just_opened_and_shows_its_new_dose(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = DoseCalibrationWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    assert widget.status.value == "no image layer"
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    series = viewer.add_image(_frames(), name="series", **CALIBRATED)  # "opened"
    assert widget.layer is series and widget.status.value == "not set"
    widget.source.value, widget.counts_per_electron.value = "counts", 4.0
    widget.apply()
    # 40 counts ÷ 4 counts/e⁻ ÷ 0.25 Å² ≈ 40 e⁻/Å², on the canvas at once
    assert _text_overlay(viewer).text.startswith("frame 0 · ")  # one dose layer: no name
    assert "e⁻/Å²" in _text_overlay(viewer).text
    assert widget.progress_bar.value == widget.progress_bar.max == 8
    assert widget.time_left.value.startswith("8/8 frames")


def test_a_frame_that_cannot_be_read_is_one_notification(make_napari_viewer, qtbot, shown,
                                                        caught):
    viewer = make_napari_viewer()
    lazy = viewer.add_image(_lazy_frames_failing_at(6), name="lazy", contrast_limits=(0, 80),
                            **CALIBRATED)
    widget = DoseCalibrationWidget(viewer)  # in a worker thread
    assert widget.layer is lazy
    widget.source.value, widget.counts_per_electron.value = "counts", 1.0
    widget.apply()
    assert not widget.apply_button.enabled and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: widget._worker is None, timeout=10_000)
    qtbot.wait(50)
    assert shown == ["Dose from counts failed: read error in frame 6"]
    assert caught == {"notifications": [], "excepthook": []}
    assert lazy.metadata.get("lowdose", {}).get("dose") is None
    assert widget.progress_bar.value == 0 and widget.time_left.value == ""
    assert widget.apply_button.enabled and not widget.cancel_button.enabled

    good = viewer.add_image(_frames(), name="good", **CALIBRATED)
    widget.layer_combo.value = good
    widget.apply()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=10_000)
    dose = np.array(good.metadata["lowdose"]["dose"]["dose_e_per_A2"])
    np.testing.assert_allclose(dose, good.data.mean(axis=(1, 2)) / 0.25, rtol=1e-6)
    assert len(shown) == 1


def test_nan_frames_are_refused_by_name(make_napari_viewer, shown):
    viewer = make_napari_viewer()
    data = _frames()
    data[3, 2, 2] = np.nan
    layer = viewer.add_image(data, name="damaged", **CALIBRATED)
    widget = DoseCalibrationWidget(viewer, use_thread=False)
    widget.source.value, widget.counts_per_electron.value = "counts", 1.0
    widget.apply()
    assert len(shown) == 1 and shown[0].startswith("Dose from counts failed: frame 3 (1 px)")
    assert layer.metadata.get("lowdose", {}).get("dose") is None
    assert widget.status.value == "not set" and widget.progress_bar.value == 0


def test_settings_are_remembered_and_reset(make_napari_viewer, tmp_path):
    table = tmp_path / "dose.csv"
    table.write_text("dose_e_per_A2\n1\n")
    widget = DoseCalibrationWidget(make_napari_viewer(), use_thread=False)
    widget.source.value, widget.counts_per_electron.value = "counts", 7.5
    widget.table.value = table
    again = DoseCalibrationWidget(make_napari_viewer(), use_thread=False)
    assert again.source.value == "counts" and again.counts_per_electron.value == 7.5
    assert again.table.value == table
    stated = again._viewer.add_image(_frames(2), name="stated", metadata={
        "lowdose": {"dose_hints": {"counts_per_electron": 3.0}}})
    assert again.layer is stated and again.counts_per_electron.value == 3.0  # the file's
    again.reset_button.changed.emit(None)
    # The remembered inputs are the defaults again; the selected file still states its gain.
    assert again.source.value == "auto" and again.counts_per_electron.value == 3.0
    plain = again._viewer.add_image(_frames(2), name="plain")
    again.layer_combo.value = plain
    assert again.counts_per_electron.value == 0


def test_a_file_s_gain_never_becomes_another_file_s(make_napari_viewer):
    """A file that states its gain shows it; a file that states none gets the user's own
    gain back, never the previous file's (it silently gave the TIA file the OneView's 44
    counts/e⁻), in this session or the next."""
    viewer = make_napari_viewer()
    widget = DoseCalibrationWidget(viewer, use_thread=False)
    widget.counts_per_electron.value = 0.0  # no gain of the user's own
    oneview = viewer.add_image(_frames(2), name="oneview", metadata={
        "lowdose": {"dose_hints": {"counts_per_electron": 44.0}}})
    assert widget.layer is oneview and widget.counts_per_electron.value == 44.0
    tia = viewer.add_image(_frames(2), name="tia")
    widget.layer_combo.value = tia
    assert widget.counts_per_electron.value == 0.0
    next_session = DoseCalibrationWidget(make_napari_viewer(), use_thread=False)
    assert next_session.counts_per_electron.value == 0.0
    # The user's own gain is theirs: kept for files that state none, remembered.
    widget.counts_per_electron.value = 12.0
    widget.layer_combo.value = oneview
    assert widget.counts_per_electron.value == 44.0
    widget.layer_combo.value = tia
    assert widget.counts_per_electron.value == 12.0
    assert DoseCalibrationWidget(make_napari_viewer(),
                                 use_thread=False).counts_per_electron.value == 12.0


def test_the_files_gain_gives_the_files_calibration_and_a_changed_gain_the_counts(
        make_napari_viewer, shown):
    viewer = make_napari_viewer()
    frames = np.stack([np.full((16, 16), 44.0), np.full((16, 16), 88.0)]).astype(np.float32)
    layer = viewer.add_image(frames, name="stated", **CALIBRATED, metadata={
        "lowdose": {"dose_hints": {"counts_per_electron": 4.0, "counts_offset": 4.0}}})
    widget = DoseCalibrationWidget(viewer, use_thread=False)
    assert widget.layer is layer and widget.counts_per_electron.value == 4.0
    widget.apply()
    dose = layer.metadata["lowdose"]["dose"]
    assert shown == [] and dose["source"] == "file_calibration"
    np.testing.assert_allclose(dose["dose_e_per_A2"], [40 / 4 / 0.25, 84 / 4 / 0.25])
    widget.counts_per_electron.value = 8.0  # the user's own gain: the plain counts rule
    widget.apply()
    dose = layer.metadata["lowdose"]["dose"]
    assert dose["source"] == "counts"
    np.testing.assert_allclose(dose["dose_e_per_A2"], [44 / 8 / 0.25, 88 / 8 / 0.25])


def test_the_files_rate_exposure_and_pixel_size_are_used_unrounded(make_napari_viewer, shown):
    """A spin box rounds what it shows; pressing Apply (or Set pixel size) without touching
    the boxes must keep the file's values, not the rounded ones (a 1.428 ms exposure shown
    as 0.0014 would change the dose by 2 %, at 3 decimals by 30 %)."""
    viewer = make_napari_viewer()
    rate, exposure, pixel_A = 2.12834, 0.001428391, 29.8845671
    layer = viewer.add_image(
        _frames(2), name="stated", scale=(1, pixel_A, pixel_A),
        units=("dimensionless", "angstrom", "angstrom"), metadata={"lowdose": {
            "pixel_size_A": [pixel_A, pixel_A],
            "dose_hints": {"dose_rate_e_per_A2_s": rate, "exposure_time_s": exposure}}})
    widget = DoseCalibrationWidget(viewer, use_thread=False)
    assert widget.layer is layer
    assert widget.exposure.value == pytest.approx(exposure, abs=1e-7)  # shown to 0.1 µs
    widget.source.value = "rate_x_exposure"
    widget.apply()
    assert shown == []
    dose = layer.metadata["lowdose"]["dose"]["dose_e_per_A2"]
    np.testing.assert_allclose(dose, [rate * exposure] * 2, rtol=1e-9)
    widget.set_pixel_size()
    assert layer.scale[-1] == pixel_A
    widget.exposure.value = 0.002  # typed by the user: used as typed
    widget.apply()
    dose = layer.metadata["lowdose"]["dose"]["dose_e_per_A2"]
    np.testing.assert_allclose(dose, [rate * 0.002] * 2, rtol=1e-9)
    widget.pixel_size.value = 30.0
    widget.set_pixel_size()
    assert layer.scale[-1] == 30.0
