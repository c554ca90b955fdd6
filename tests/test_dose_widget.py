"""The 'Dose calibration' dock widget sets the dose on a layer without touching its data."""

import numpy as np
import pytest

from napari_lowdose.io.dose import read_dose_table
from napari_lowdose.widgets.dose_calibration import DoseCalibrationWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_and_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    data = rng.poisson(50.0, size=(4, 32, 32)).astype(np.float32)
    layer = viewer.add_image(data, name="series", scale=(1, 0.5, 0.5),
                             units=("dimensionless", "angstrom", "angstrom"))
    widget = DoseCalibrationWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget)
    return viewer, widget, layer


def test_table_source_sets_dose_and_keeps_data(viewer_and_widget, tmp_path):
    viewer, widget, layer = viewer_and_widget
    before = layer.data.copy()
    table = tmp_path / "dose.csv"
    table.write_text("dose_e_per_A2\n10\n20\n40\n80\n")
    widget.layer_combo.value = layer
    widget.source.value = "table"
    widget.table.value = table
    widget.apply()
    dose = layer.metadata["lowdose"]["dose"]
    assert dose["source"] == "table"
    assert dose["dose_e_per_A2"] == [10, 20, 40, 80]
    assert "table" in widget.status.value
    np.testing.assert_array_equal(layer.data, before)
    viewer.dims.set_current_step(0, 2)
    assert widget.frame_status.value.startswith("frame 2: 40 e⁻/Å²")
    saved = widget.save_dose_table(tmp_path / "out.csv")
    np.testing.assert_allclose(read_dose_table(saved), [10, 20, 40, 80])


def test_counts_source_uses_drawn_vacuum_rectangle(viewer_and_widget):
    viewer, widget, layer = viewer_and_widget
    layer.data[:, :8, :8] = 100.0  # test set-up: a bright "vacuum" corner of 8×8 px
    shapes = viewer.add_shapes([[[0, 0], [0, 4], [4, 4], [4, 0]]], shape_type="rectangle",
                               name="vacuum")  # world coordinates (Å): 8×8 px at 0.5 Å/px
    widget.layer_combo.value = layer
    widget.source.value = "counts"
    widget.counts_per_electron.value = 4.0
    widget.roi_combo.value = shapes
    widget.apply()
    dose = np.array(layer.metadata["lowdose"]["dose"]["dose_e_per_A2"])
    # 100 counts ÷ 4 counts/e⁻ ÷ 0.25 Å² = 100 e⁻/Å².
    np.testing.assert_allclose(dose, 100.0)


def test_errors_are_notified_not_raised(viewer_and_widget, monkeypatch):
    viewer, widget, layer = viewer_and_widget
    shown = []
    monkeypatch.setattr("napari_lowdose.widgets.dose_calibration.show_error", shown.append)
    widget.layer_combo.value = layer
    widget.source.value = "rate_x_exposure"
    widget.dose_rate.value = 10.0
    widget.exposure.value = 0.0
    widget.apply()
    assert shown and "exposure time" in shown[-1]
    assert layer.metadata.get("lowdose", {}).get("dose") is None
    widget.source.value = "counts"
    widget.counts_per_electron.value = 1.0
    widget.roi_combo.value = viewer.add_shapes(name="empty")
    widget.apply()
    assert "no shape" in shown[-1]


def test_pixel_size_can_be_set(viewer_and_widget):
    _, widget, layer = viewer_and_widget
    widget.layer_combo.value = layer
    widget.pixel_size.value = 0.08
    widget.set_pixel_size()
    np.testing.assert_allclose(layer.scale[-2:], [0.08, 0.08])
    assert layer.metadata["lowdose"]["pixel_size_A"] == [0.08, 0.08]


def test_threaded_counts_run_and_finish(viewer_and_widget, qtbot):
    viewer, widget, layer = viewer_and_widget
    widget.use_thread = True
    widget.layer_combo.value = layer
    widget.source.value = "counts"
    widget.counts_per_electron.value = 1.0
    widget.apply()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=10000)
    dose = np.array(layer.metadata["lowdose"]["dose"]["dose_e_per_A2"])
    np.testing.assert_allclose(dose, layer.data.mean(axis=(1, 2)) / 0.25, rtol=1e-6)


def test_a_layer_calibrated_in_nm_is_calibrated(viewer_and_widget):
    """The dock reads the pixel size through the one layer reader: nm is a length too."""
    viewer, widget, _ = viewer_and_widget
    data = np.full((2, 16, 16), 100.0, dtype=np.float32)
    layer = viewer.add_image(data, name="in nm", scale=(1, 0.05, 0.05),
                             units=("dimensionless", "nanometer", "nanometer"))
    widget.layer_combo.value = layer
    assert widget.pixel_size.value == pytest.approx(0.5)  # Å; was 0 ("uncalibrated")
    widget.source.value = "counts"
    widget.counts_per_electron.value = 4.0
    widget.apply()
    dose = np.array(layer.metadata["lowdose"]["dose"]["dose_e_per_A2"])
    # 100 counts ÷ 4 counts/e⁻ ÷ 0.25 Å² = 100 e⁻/Å² (was refused: no pixel size).
    np.testing.assert_allclose(dose, 100.0)
