"""The dose of the frame shown is written on the canvas and follows the slider."""

import numpy as np
import pytest

from napari_lowdose.io.dose import FrameDose
from napari_lowdose.io.layers import with_frame_dose
from napari_lowdose.widgets._dose_overlay import _text_overlay, show_frame_dose

pytestmark = pytest.mark.gui


def test_overlay_follows_the_frame_and_the_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    dose = FrameDose(np.array([10.0, 20.0, 40.0]), source="table")
    metadata = with_frame_dose({}, dose)
    viewer.add_image(np.zeros((3, 8, 8)), name="other")  # no dose: not shown
    viewer.add_image(np.zeros((3, 8, 8)), name="series", metadata=metadata,
                     scale=(1, 0.5, 0.5), units=("pixel", "angstrom", "angstrom"))
    show_frame_dose(viewer)
    show_frame_dose(viewer)  # a second dock: still one overlay
    viewer.dims.set_current_step(0, 1)
    text = _text_overlay(viewer).text
    assert _text_overlay(viewer).visible
    assert "frame 1" in text and "20 e⁻/Å²" in text and "cumulative 30 e⁻/Å²" in text
    assert "5 e⁻/px" in text  # 20 e⁻/Å² × 0.25 Å²
    viewer.dims.set_current_step(0, 2)
    assert "frame 2 · 40 e⁻/Å²" in _text_overlay(viewer).text
    viewer.layers.remove("series")
    assert _text_overlay(viewer).text == ""
