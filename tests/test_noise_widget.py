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
