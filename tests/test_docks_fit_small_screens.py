"""Every dock fits a laptop screen: it scrolls instead of forcing the window taller."""

import importlib
from pathlib import Path

import pytest
import yaml

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_lowdose" / "napari.yaml"
#: The docks of controls (the Area-vs-dose plot dock is a canvas and shrinks anyway).
CONTROL_DOCKS = ["DoseCalibrationWidget", "NoiseFitWidget", "SimulateWidget", "TrainWidget",
                 "TrainDenoiserWidget", "SegmentWidget", "DenoiseWidget"]


def _dock_classes():
    manifest = yaml.safe_load(MANIFEST.read_text())
    classes = {}
    for command in manifest["contributions"]["commands"]:
        module, _, name = command["python_name"].partition(":")
        if name in CONTROL_DOCKS:
            classes[name] = getattr(importlib.import_module(module), name)
    return classes


def test_every_control_dock_of_the_manifest_is_checked():
    assert sorted(_dock_classes()) == sorted(CONTROL_DOCKS)


@pytest.mark.parametrize("name", CONTROL_DOCKS)
def test_dock_scrolls_in_a_short_window(make_napari_viewer, name):
    from qtpy.QtWidgets import QApplication, QScrollArea

    viewer = make_napari_viewer(show=True)
    widget = _dock_classes()[name](viewer)
    content_height = widget.content.minimumSizeHint().height()
    dock = viewer.window.add_dock_widget(widget, name=name)
    assert isinstance(dock.widget(), QScrollArea)  # napari docked the scroll area
    assert dock.widget().widget() is widget.content
    assert dock.minimumSizeHint().height() < 200 < content_height  # it does not demand
    viewer.window._qt_window.resize(1100, 600)  # its controls' height: it scrolls instead
    QApplication.processEvents()
    assert viewer.window._qt_window.height() <= 600
    if dock.height() < content_height:
        assert dock.widget().verticalScrollBar().maximum() > 0
