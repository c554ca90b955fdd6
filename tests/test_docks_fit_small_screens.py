"""Every dock fits a laptop screen: it shows all its controls where the screen has room
and scrolls where it has not, instead of forcing the window taller than the screen."""

import importlib
from pathlib import Path

import pytest
import yaml

from napari_lowdose.widgets._common import DOCK_SCREEN_SHARE

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
    QApplication.processEvents()
    # It asks for its controls' height, or DOCK_SCREEN_SHARE of the screen where that is
    # less; never more (it scrolls instead).
    room = DOCK_SCREEN_SHARE * widget.content.screen().availableGeometry().height()
    asked = dock.widget().minimumHeight()
    assert asked <= max(room, 1) + 1
    assert asked >= min(content_height, room) - 1
    if content_height > room:
        viewer.window._qt_window.resize(1100, 300)
        QApplication.processEvents()
        assert dock.height() < content_height
        assert dock.widget().verticalScrollBar().maximum() > 0


@pytest.mark.parametrize("name", CONTROL_DOCKS)
def test_closing_a_dock_tells_it_once_and_only_then(make_napari_viewer, name, monkeypatch):
    """The close button (napari's remove_dock_widget) calls the dock's on_closed, which
    stops its work; hiding or floating it does not."""
    cls = _dock_classes()[name]
    closed = []
    monkeypatch.setattr(cls, "on_closed", lambda self: closed.append(self))
    viewer = make_napari_viewer(show=True)
    widget = cls(viewer)
    dock = viewer.window.add_dock_widget(widget, name=name)
    dock.setVisible(False)
    dock.setVisible(True)
    dock.setFloating(True)
    dock.setFloating(False)
    assert closed == []
    viewer.window.remove_dock_widget(widget.native)
    assert closed == [widget]


def test_every_dock_of_the_manifest_is_importable_from_the_widgets_package():
    import napari_lowdose.widgets as widgets

    manifest = yaml.safe_load(MANIFEST.read_text())
    names = {command["python_name"].partition(":")[2]
             for command in manifest["contributions"]["commands"]
             if command["python_name"].startswith("napari_lowdose.widgets.")}
    assert names <= set(widgets.__all__)
    for name in names:
        assert getattr(widgets, name) is _dock_classes().get(name, getattr(widgets, name))
    with pytest.raises(AttributeError):
        widgets.NotADock  # noqa: B018


@pytest.mark.parametrize("name", CONTROL_DOCKS)
def test_a_long_status_line_wraps_instead_of_widening_the_dock(make_napari_viewer, name):
    """A long status, file name or readout in any text line of a dock wraps: the dock does
    not grow to the text's width (6 000 px for this one unwrapped) and push its buttons out of
    view."""
    from magicgui.widgets import Label
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    widget = _dock_classes()[name](viewer)
    viewer.window.add_dock_widget(widget, name=name)
    # Text lines (a heading's text is fixed: headings stay on one line).
    labels = [w for w in widget if isinstance(w, Label) and not getattr(w, "is_heading", False)]
    assert labels
    for label in labels:
        label.value = "a very long status line " * 40
    QApplication.processEvents()
    assert widget.content.minimumSizeHint().width() < 1000
