"""napari's activity bar for work in a worker thread: made and moved in the GUI thread."""

import threading

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_an_activity_bar_moved_from_a_worker_thread_moves_in_the_gui_thread(qtbot):
    from napari_lowdose.widgets._activity import ActivityBar

    bar = ActivityBar(None, "steps")
    seen = []
    bar._bar.events.value.connect(lambda event: seen.append(threading.get_ident()))

    def work():
        for step in range(1, 6):
            bar.update_to(step, 5)
        bar.set_description("other steps")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: bar.n == 5, timeout=5000)
    assert bar._bar.total == 5 and bar._bar.desc.startswith("other steps")
    assert set(seen) == {threading.get_ident()}  # every change made in this (GUI) thread
    bar.close()


def test_a_threaded_dose_count_leaves_no_cross_thread_qt_warning(make_napari_viewer, qtbot,
                                                                 qtlog, caplog, capfd):
    """A napari progress made in the worker thread printed "Cannot set parent, new parent
    is in a different thread" and "Timers cannot be started from another thread"."""
    from napari_lowdose.widgets.dose_calibration import DoseCalibrationWidget

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(0).poisson(40.0, (6, 32, 32)).astype(
        np.float32), name="series", scale=(1, 0.5, 0.5),
        units=("dimensionless", "angstrom", "angstrom"))
    widget = DoseCalibrationWidget(viewer)  # in a worker thread
    widget.layer_combo.value = layer
    widget.source.value = "counts"
    widget.counts_per_electron.value = 1.0
    widget.apply()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=10000)
    assert "dose" in layer.metadata["lowdose"]
    qtbot.wait(50)
    # Qt's messages reach pytest-qt's log, or napari's handler (logging, or stderr).
    messages = ([record.message for record in qtlog.records]
                + [record.getMessage() for record in caplog.records]
                + capfd.readouterr().err.splitlines())
    assert not [m for m in messages if "thread" in m.lower()], messages
