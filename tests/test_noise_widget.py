"""The 'Detector noise' dock widget fits a vacuum ROI, plots the fit and saves the model."""

import csv

import numpy as np
import pytest

from napari_lowdose.errors import LowdoseError
from napari_lowdose.io.dose import FrameDose
from napari_lowdose.io.layers import with_frame_dose
from napari_lowdose.noise import NoiseModel, apply_detector_noise
from napari_lowdose.widgets.noise_fit import NoiseFitWidget

pytestmark = pytest.mark.gui

N_FRAMES = 12
DOSE = np.geomspace(10, 1300, N_FRAMES)
SAMPLING = 0.1


@pytest.fixture(scope="module")
def vacuum_series():
    return apply_detector_noise(np.ones((N_FRAMES, 128, 128)), DOSE, SAMPLING, c0=0.27,
                                c3=2.25, n0_e_per_px=0.5, rng=0)


def _rect(y0, x0, side_A):
    """Rectangle vertices in world coordinates (Å)."""
    return [[y0, x0], [y0, x0 + side_A], [y0 + side_A, x0 + side_A], [y0 + side_A, x0]]


@pytest.fixture
def viewer_and_widget(make_napari_viewer, vacuum_series):
    viewer = make_napari_viewer()
    meta = with_frame_dose({}, FrameDose(DOSE, "table"))
    layer = viewer.add_image(vacuum_series, name="vacuum", scale=(1, SAMPLING, SAMPLING),
                             units=("dimensionless", "angstrom", "angstrom"), metadata=meta)
    widget = NoiseFitWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    widget.layer_combo.value = layer
    return viewer, widget, layer


def _add_roi(viewer, widget, y0=1.0, x0=1.0, side_A=9.6):
    shapes = viewer.add_shapes([_rect(y0, x0, side_A)], shape_type="rectangle", name="roi",
                               units=("angstrom", "angstrom"))
    widget.roi_combo.value = shapes
    return shapes


def test_series_fit_plots_and_saves(viewer_and_widget, tmp_path):
    viewer, widget, _ = viewer_and_widget
    _add_roi(viewer, widget)  # 96×96 px from pixel (10, 10)
    widget.model.value = "physical"
    assert widget.spectrum.value == "power"
    widget.fit_series()
    result = widget.result
    assert result is not None and result.n_frames == N_FRAMES
    assert result.spectra.shape[0] == N_FRAMES
    data = widget.plotted_data()
    np.testing.assert_allclose(data["c0"][1], result.c0)
    np.testing.assert_allclose(data["c0"][0], DOSE)
    assert abs(np.median(result.c0[result.ok]) - 0.27) < 0.03
    # The spectrum plot follows the frame slider.
    viewer.dims.set_current_step(0, 3)
    np.testing.assert_allclose(widget.spectrum_line.get_ydata(), result.spectra[3])
    np.testing.assert_allclose(widget.fit_line.get_ydata(), result.predict(3))
    viewer.dims.set_current_step(0, 9)
    np.testing.assert_allclose(widget.spectrum_line.get_ydata(), result.spectra[9])
    # Eq. 2 curve is drawn for the series N0.
    n0 = result.readout.n0_e_per_px
    x, y = data["eq2"]
    np.testing.assert_allclose(y, n0 / (n0 + x))
    saved = widget.save_noise_model(tmp_path / "model.json")
    model = NoiseModel.from_json(saved)
    assert model.n0_e_per_px == pytest.approx(0.5, rel=0.3)
    assert model.model_kind == "physical"
    # Where it was fitted, as fit-noise records it.
    assert model.description == "ROI (10, 106, 10, 106), physical model, power spectrum"
    assert model.name.startswith("fit of ")
    table = widget.save_table(tmp_path / "fit.csv")
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == N_FRAMES
    assert rows[0]["spectrum_kind"] == "power"
    assert float(rows[5]["c0"]) == pytest.approx(result.c0[5])


def test_current_frame_fit_paper_model(viewer_and_widget):
    viewer, widget, _ = viewer_and_widget
    _add_roi(viewer, widget)
    viewer.dims.set_current_step(0, 11)
    result = widget.fit_current_frame()
    assert result is not None and result.n_frames == 1
    assert result.model == "paper" and result.spectrum_kind == "magnitude"
    assert result.dose_e_per_A2[0] == pytest.approx(DOSE[11])
    np.testing.assert_allclose(widget.spectrum_line.get_ydata(), result.spectra[0])
    assert widget.save_model_button.enabled


def test_series_fit_in_thread(viewer_and_widget, qtbot):
    viewer, widget, _ = viewer_and_widget
    widget.use_thread = True
    widget.chunk_frames = 5  # three chunks
    _add_roi(viewer, widget)
    widget.fit_series()
    qtbot.waitUntil(lambda: widget.result is not None and not widget.busy, timeout=30000)
    assert widget.result.n_frames == N_FRAMES
    assert widget.fit_series_button.enabled and not widget.cancel_button.enabled
    np.testing.assert_allclose(widget.plotted_data()["c0"][1], widget.result.c0)


def test_cancel_keeps_previous_result(viewer_and_widget, qtbot, monkeypatch):
    viewer, widget, _ = viewer_and_widget
    monkeypatch.setattr("napari_lowdose.widgets.noise_fit.show_info", lambda msg: None)
    monkeypatch.setattr("napari_lowdose.widgets.noise_fit_run.show_info", lambda msg: None)
    _add_roi(viewer, widget)
    previous = widget.fit_current_frame()
    widget.use_thread = True
    widget.chunk_frames = 1
    widget.fit_series()
    assert widget.cancel_button.enabled
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert widget.result is None
    assert widget.frame_result is previous
    assert widget.fit_series_button.enabled and not widget.cancel_button.enabled


def test_add_vacuum_rectangle_matches_image(viewer_and_widget):
    viewer, widget, layer = viewer_and_widget
    shapes = widget.add_vacuum_rectangle()
    assert shapes.name == "vacuum ROI"
    assert widget.roi_combo.value is shapes
    np.testing.assert_allclose(shapes.scale, layer.scale[-2:])
    assert widget.fit_current_frame() is not None


def test_without_dose_n0_is_unavailable(viewer_and_widget, monkeypatch):
    viewer, widget, layer = viewer_and_widget
    infos = []
    monkeypatch.setattr("napari_lowdose.widgets.noise_fit.show_info", infos.append)
    layer.metadata = {}
    _add_roi(viewer, widget)
    widget.fit_series()
    assert widget.result is not None
    assert np.isnan(widget.result.readout.n0_e_per_px)
    assert any("N0" in msg for msg in infos)


def test_errors_are_notified_not_raised(viewer_and_widget, monkeypatch):
    viewer, widget, layer = viewer_and_widget
    shown = []
    monkeypatch.setattr("napari_lowdose.widgets.noise_fit.show_error", shown.append)
    widget.fit_series()  # no ROI layer
    assert shown and "Shapes" in shown[-1]
    widget.roi_combo.value = viewer.add_shapes(name="empty")
    widget.fit_current_frame()
    assert "no shape" in shown[-1]
    _add_roi(viewer, widget, side_A=2.0)  # 20×20 px
    widget.fit_series()
    assert "at least 32×32" in shown[-1]
    _add_roi(viewer, widget, y0=9.0, x0=9.0, side_A=6.0)  # beyond the 12.8 Å image
    widget.fit_current_frame()
    assert "outside the image" in shown[-1]
    widget.layer_combo.value = None
    widget.fit_series()
    assert "image layer" in shown[-1]
    assert widget.result is None and widget.frame_result is None
    n_errors = len(shown)
    with pytest.raises(LowdoseError, match="no noise fit"):
        widget.save_noise_model("unused.json")
    assert len(shown) == n_errors


# -- issue #14: a microscopist's afternoon ----------------------------------------------------
MODULE = "napari_lowdose.widgets.noise_fit"
MODULES = (MODULE, "napari_lowdose.widgets.noise_fit_run",
           "napari_lowdose.widgets.noise_fit_save")


class Notes:
    """Every notification the dock sends, by kind; napari's own manager must get nothing."""

    def __init__(self, monkeypatch):
        from napari.utils.notifications import notification_manager

        self.manager = notification_manager
        self.before = len(notification_manager.records)
        self.errors, self.warnings, self.infos = [], [], []
        for module in MODULES:
            # (a module that never warns has no show_warning to replace)
            monkeypatch.setattr(f"{module}.show_error", self.errors.append, raising=False)
            monkeypatch.setattr(f"{module}.show_warning", self.warnings.append, raising=False)
            monkeypatch.setattr(f"{module}.show_info", self.infos.append, raising=False)

    def napari_records(self) -> list:
        return [str(r) for r in self.manager.records[self.before:]]


def _failing_dask(series, bad=6):
    """A dask-backed series whose frame ``bad`` raises OSError when computed."""
    import dask
    import dask.array as da

    def read(i):
        if i == bad:
            raise OSError(f"read error in frame {i} (the disk went away)")
        return series[i]

    frames = [da.from_delayed(dask.delayed(read)(i), shape=series.shape[1:], dtype=series.dtype)
              for i in range(series.shape[0])]
    return da.stack(frames)


@pytest.mark.parametrize("use_thread", [True, False])
def test_failing_frame_gives_one_notification_and_the_dock_works_again(
        make_napari_viewer, vacuum_series, qtbot, monkeypatch, use_thread):
    viewer = make_napari_viewer()
    notes = Notes(monkeypatch)
    data = _failing_dask(vacuum_series)
    units = ("dimensionless", "angstrom", "angstrom")
    broken = viewer.add_image(data, name="broken", scale=(1, SAMPLING, SAMPLING), units=units,
                              contrast_limits=(0, 50))
    good = viewer.add_image(vacuum_series, name="good", scale=(1, SAMPLING, SAMPLING),
                            units=units)
    widget = NoiseFitWidget(viewer, use_thread=use_thread, chunk_frames=2)
    widget.layer_combo.value = broken
    _add_roi(viewer, widget)
    previous = widget.fit_current_frame()  # frame 0 reads fine
    assert previous is not None
    widget.fit_series()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert len(notes.errors) == 1, notes.errors
    assert notes.errors[0].startswith("Series noise fit failed: read error in frame 6")
    assert "\n" not in notes.errors[0] and "previous result is kept" in notes.errors[0]
    assert notes.napari_records() == []
    assert widget.result is None and widget.frame_result is previous
    assert widget.progress_bar.value == 0
    assert widget.fit_series_button.enabled and widget.fit_frame_button.enabled
    assert not widget.cancel_button.enabled
    assert broken.data is data and good.data is vacuum_series  # inputs untouched
    widget.layer_combo.value = good  # the same dock fits the next series
    widget.fit_series()
    qtbot.waitUntil(lambda: widget.result is not None and not widget.busy, timeout=30000)
    assert widget.result.n_frames == N_FRAMES
    assert len(notes.errors) == 1 and notes.napari_records() == []


def test_nan_frames_are_refused_by_name(viewer_and_widget, monkeypatch):
    viewer, widget, layer = viewer_and_widget
    notes = Notes(monkeypatch)
    data = layer.data.copy()
    data[3, 20, 20] = np.nan  # inside the rectangle
    data[7, 50:52, 40] = np.inf
    data[9, 120, 120] = np.nan  # outside it: not used, not refused
    layer.data = data
    _add_roi(viewer, widget)  # pixels 10–106
    widget.fit_series()
    assert notes.errors == ["Series noise fit refused: frames 3 (1 px), 7 (2 px) hold NaN or "
                            "infinite pixels; replace or crop them (nothing was computed from "
                            "them)"]
    assert widget.result is None and "no fit yet" in widget.status.value
    viewer.dims.set_current_step(0, 7)
    assert widget.fit_current_frame() is None
    assert notes.errors[-1].startswith("Noise fit of frame 7 refused: frame 7 (2 px) holds")
    viewer.dims.set_current_step(0, 9)
    assert widget.fit_current_frame() is not None  # its NaN lies outside the rectangle
    data[9, 2, 2] = np.nan  # now a corner of frame 9 holds one
    layer.data = data
    assert widget.add_vacuum_rectangle() is None
    assert notes.errors[-1].startswith("No vacuum rectangle proposed: frame 9 (2 px)")


def test_ready_on_open(make_napari_viewer, vacuum_series):
    viewer = make_napari_viewer()
    first = viewer.add_image(vacuum_series, name="first")
    widget = NoiseFitWidget(viewer, use_thread=False)
    assert widget.layer is first  # the only image layer
    viewer.add_image(vacuum_series[0], name="second")
    shapes = viewer.add_shapes([_rect(0, 0, 50)], shape_type="rectangle", name="roi")
    viewer.layers.selection.active = first
    widget = NoiseFitWidget(viewer, use_thread=False)
    assert widget.layer is first  # the active one of two
    assert widget.roi_combo.value is shapes
    viewer.add_image(np.zeros((8, 8, 3)), rgb=True, name="rgb")
    viewer.layers.selection.active = viewer.layers["rgb"]
    assert NoiseFitWidget(viewer, use_thread=False).layer is None  # two fit, none active


def test_model_and_spectrum_remembered_and_reset(make_napari_viewer):
    widget = NoiseFitWidget(make_napari_viewer(), use_thread=False)
    assert (widget.model.value, widget.spectrum.value) == ("paper", "magnitude")
    widget.spectrum.value = "power"  # chosen for the paper model
    widget2 = NoiseFitWidget(make_napari_viewer(), use_thread=False)
    assert (widget2.model.value, widget2.spectrum.value) == ("paper", "power")
    widget2.model.value = "physical"
    widget3 = NoiseFitWidget(make_napari_viewer(), use_thread=False)
    assert (widget3.model.value, widget3.spectrum.value) == ("physical", "power")
    assert not widget3.spectrum.enabled
    widget3.reset_button.clicked.emit()
    assert (widget3.model.value, widget3.spectrum.value) == ("paper", "magnitude")
    assert widget3.spectrum.enabled
    widget4 = NoiseFitWidget(make_napari_viewer(), use_thread=False)
    assert (widget4.model.value, widget4.spectrum.value) == ("paper", "magnitude")


def test_spectrum_follows_the_model_unless_chosen(viewer_and_widget, monkeypatch):
    viewer, widget, _ = viewer_and_widget
    Notes(monkeypatch)
    widget.model.value = "physical"
    assert widget.spectrum.value == "power" and not widget.spectrum.enabled
    widget.model.value = "paper"  # back: magnitude again (it used to stay on power)
    assert widget.spectrum.value == "magnitude" and widget.spectrum.enabled
    _add_roi(viewer, widget)
    widget.fit_current_frame()
    assert "paper model (Eq. 4), magnitude spectrum (the model's)" in widget.status.value
    widget.spectrum.value = "power"
    widget.model.value = "physical"
    widget.model.value = "paper"
    assert widget.spectrum.value == "power"  # the user's choice is kept
    widget.fit_current_frame()
    assert widget.frame_result.spectrum_kind == "power"
    assert ("paper model (Eq. 4), power spectrum (chosen instead of the model's magnitude)"
            in widget.status.value)


def test_series_progress_shows_time_left(viewer_and_widget):
    viewer, widget, _ = viewer_and_widget
    widget.chunk_frames = 5
    texts = []
    on_yield = widget._on_series_yield

    def record(item):
        texts.append(widget.progress_text.value)  # before this item
        on_yield(item)

    widget._on_series_yield = record
    _add_roi(viewer, widget)
    widget.fit_series()
    texts.append(widget.progress_text.value)
    assert texts[0] == f"reading frame 0 of {N_FRAMES} …"
    assert texts[1].startswith(f"1/{N_FRAMES} frames, ~") and "left" in texts[1]  # frame 0
    assert texts[2].startswith(f"6/{N_FRAMES} frames")
    fitted = int(widget.result.ok.sum())
    assert texts[-1] == f"done: {fitted} of {N_FRAMES} frames fitted"
    assert widget.progress_bar.value == widget.progress_bar.max == N_FRAMES + 1


@pytest.fixture(scope="module")
def demo_series():
    from napari_lowdose.simulate.synthetic_series import make_synthetic_dose_series

    return make_synthetic_dose_series(n_frames=20)


def _demo_viewer(make_napari_viewer, series):
    viewer = make_napari_viewer()
    s = series.parameters.sampling_A
    meta = with_frame_dose({}, FrameDose(series.dose_e_per_A2, "table"))
    layer = viewer.add_image(series.counts, name="demo", scale=(1, s, s),
                             units=("dimensionless", "angstrom", "angstrom"), metadata=meta)
    return viewer, layer, NoiseFitWidget(viewer, use_thread=False)


def _roi_px(viewer, widget, layer, y0, x0, side):
    s = layer.scale[-1]
    shapes = viewer.add_shapes([_rect(y0 * s, x0 * s, side * s)], shape_type="rectangle",
                               name="roi", units=("angstrom", "angstrom"))
    widget.roi_combo.value = shapes


@pytest.mark.parametrize("model", ["paper", "physical"])
def test_vacuum_passes_and_particle_fails_the_check(make_napari_viewer, demo_series,
                                                    monkeypatch, tmp_path, model):
    viewer, layer, widget = _demo_viewer(make_napari_viewer, demo_series)
    notes = Notes(monkeypatch)
    widget.model.value = model
    _roi_px(viewer, widget, layer, 192, 192, 64)  # bottom-right corner: vacuum
    widget.fit_series()
    assert notes.warnings == []
    assert "20/20 frames look like vacuum" in widget.status.value
    assert "⚠" not in widget.status.value
    assert widget.save_noise_model(tmp_path / "vacuum.json").is_file()
    ys, xs = np.nonzero(demo_series.particle_mask)
    _roi_px(viewer, widget, layer, int(ys.mean()) - 32, int(xs.mean()) - 32, 64)
    widget.fit_series()
    assert len(notes.warnings) == 1 and "not pure vacuum" in notes.warnings[0]
    check = widget.check
    assert not check.passed and check.n_ok < 16
    assert f"{check.n_ok}/20 frames look like vacuum" in widget.status.value
    assert f"{check.n_ok}/20" in notes.warnings[0]  # the count and the warning agree
    assert "⚠ probably not pure vacuum" in widget.status.value
    with pytest.raises(LowdoseError, match="not pure vacuum"):
        widget.save_noise_model(tmp_path / "particle.json")
    assert not (tmp_path / "particle.json").exists()
    monkeypatch.setattr("qtpy.QtWidgets.QFileDialog.getSaveFileName",
                        lambda *a, **k: pytest.fail("no file dialog for a failed check"))
    widget.save_model_button.clicked.emit()
    assert notes.errors[-1].startswith("Not saved: the rectangle is probably not pure vacuum")
    assert widget.save_table(tmp_path / "particle.csv").is_file()  # the diagnostics are kept
    assert notes.napari_records() == []


def test_add_vacuum_rectangle_avoids_the_particle(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    notes = Notes(monkeypatch)
    y, x = np.mgrid[0:256, 0:256].astype(float)
    lattice = 1 - 0.35 * (np.hypot(y - 20, x - 20) < 90) * (
        0.7 + 0.3 * np.cos(2 * np.pi * (x + 0.4 * y) / 7.8))  # particle over the top-left
    frames = apply_detector_noise(np.stack([lattice, lattice]), 600.0, 0.3, c0=0.27, c3=2.25,
                                  n0_e_per_px=0.01, rng=1)
    layer = viewer.add_image(frames, name="particle", scale=(1, 0.3, 0.3))
    widget = NoiseFitWidget(viewer, use_thread=False)
    shapes = widget.add_vacuum_rectangle()
    (y0, x0), (y1, x1) = shapes.data[0].min(axis=0), shapes.data[0].max(axis=0)
    assert (y1 - y0, x1 - x0) == (64, 64)
    assert (y0, x0) != (0, 0)
    assert lattice[int(y0):int(y1), int(x0):int(x1)].min() == 1.0  # over vacuum
    assert "corner, the least structured of frame" in notes.infos[-1]
    np.testing.assert_allclose(shapes.scale, layer.scale[-2:])
    assert shapes.mode == "select"
    assert widget.fit_current_frame() is not None and widget.frame_check.passed


def test_only_one_axis_aligned_rectangle_is_fitted(viewer_and_widget, monkeypatch):
    viewer, widget, _ = viewer_and_widget
    notes = Notes(monkeypatch)
    ellipse = viewer.add_shapes([_rect(1, 1, 9.6)], shape_type="ellipse", name="ellipse")
    widget.roi_combo.value = ellipse
    widget.fit_series()
    assert notes.errors[-1].startswith("'ellipse' holds an ellipse, not a rectangle")
    centre, half = np.array([6.0, 6.0]), 4.0
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[-half, -half], [-half, half], [half, half], [half, -half]])
    rotated = viewer.add_shapes([centre + corners @ rot.T], shape_type="rectangle",
                                name="rotated")
    widget.roi_combo.value = rotated
    widget.fit_current_frame()
    assert notes.errors[-1].startswith("The rectangle in 'rotated' is rotated")
    two = viewer.add_shapes([_rect(1, 1, 5), _rect(6, 6, 5)], shape_type="rectangle",
                            name="two")
    widget.roi_combo.value = two
    widget.fit_series()
    assert notes.errors[-1].startswith("'two' holds 2 shapes")
    assert len(notes.errors) == 3 and widget.result is None and widget.frame_result is None


def test_add_vacuum_rectangle_bad_inputs(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    notes = Notes(monkeypatch)
    widget = NoiseFitWidget(viewer, use_thread=False)
    assert widget.add_vacuum_rectangle() is None
    assert notes.errors[-1].startswith("Choose an image layer first")
    widget.layer_combo.value = viewer.add_image(np.ones((2, 20, 20)), name="tiny")
    assert widget.add_vacuum_rectangle() is None
    assert notes.errors[-1] == ("'tiny' is only 20×20 px: the noise fit needs a vacuum "
                                "rectangle of at least 32×32 px.")
    widget.layer_combo.value = viewer.add_image(np.zeros((2, 128, 128)), name="flat")
    assert widget.add_vacuum_rectangle() is not None
    assert "no corner of frame" in notes.infos[-1] and "could be judged" in notes.infos[-1]
    widget.fit_series()
    assert len(notes.warnings) == 1
    assert notes.warnings[0].startswith("No frame could be fitted (")
    assert notes.warnings[0].endswith("is the region over vacuum?")
    assert "0/2 frames could be fitted  ⚠ no model to save" in widget.status.value
    assert notes.napari_records() == []


def test_frame_pairs_need_no_vacuum(make_napari_viewer):
    """Noise source 'frame pairs': a particle filling the field, consecutive frames, and a
    second layer (frame i with frame i); no vacuum rectangle."""
    from noise_data import GAIN, drifting_series

    viewer = make_napari_viewer()
    frames = drifting_series([2000.0] * 4)
    layer = viewer.add_image(frames, name="particle")
    widget = NoiseFitWidget(viewer, use_thread=False)
    widget.layer_combo.value = layer
    widget.source.value = "pairs"
    assert not widget.pair_combo.native.isHidden() and widget.roi_combo.native.isHidden()
    widget.gain.value = GAIN
    widget.model.value = "physical"
    widget.fit_series()
    result = widget.result
    assert result is not None and result.noise_source == "pairs" and result.n_frames == 1
    assert abs(result.c0[0] - 0.27) < 0.02
    assert abs(result.n0_e_per_px[0] - 1.0) < 0.2
    assert "frame-pair differences" in widget.status.value
    # Two layers: frame i with frame i.
    second = viewer.add_image(frames[[1, 3]], name="second")
    first = viewer.add_image(frames[[0, 2]], name="first")
    widget.layer_combo.value = first
    widget.pair_combo.value = second
    assert widget.fit_current_frame().noise_source == "pairs"
    assert widget.frame_result.n_frames == 1 and widget.frame_result.ok.all()
    widget.source.value = "vacuum"
    assert not widget.roi_combo.native.isHidden() and widget.pair_combo.native.isHidden()


def test_frame_pairs_that_cannot_be_fitted_say_why(make_napari_viewer, monkeypatch):
    """Pairs whose difference has no MTF fall-off: one warning naming the reason, never the
    vacuum advice (pairs need no vacuum), and no model to save."""
    viewer = make_napari_viewer()
    notes = Notes(monkeypatch)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    field = 1.0 - 0.5 * (np.hypot(yy - 40, xx - 50) < 20)
    layer = viewer.add_image(rng.poisson(200.0 * field, size=(2, 128, 128)).astype(np.float32),
                             name="white")
    widget = NoiseFitWidget(viewer, use_thread=False)
    widget.layer_combo.value = layer
    widget.source.value = "pairs"
    widget.gain.value = 1.0
    widget.fit_series()
    assert len(notes.warnings) == 1
    assert notes.warnings[0].startswith("No spectrum of the frame pairs could be fitted (")
    assert "vacuum" not in notes.warnings[0]
    assert "no model to save" in widget.status.value
    assert "N0: no fitted frame to read it from" in widget.status.value
    assert widget.progress_text.value == "done: 0 of 1 pair spectra fitted"
    assert notes.napari_records() == []
