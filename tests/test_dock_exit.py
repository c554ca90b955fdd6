"""A script (or notebook) that makes docks without docking them ends cleanly: their Qt
widgets are deleted while Qt still runs, not after it (a segmentation fault at exit in
about one run of three before)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui

SCRIPT = """
import napari
from napari_lowdose.widgets.segment import SegmentWidget
from napari_lowdose.widgets.train import TrainWidget
from napari_lowdose.widgets.denoise import DenoiseWidget
viewer = napari.Viewer(show=False)
docks = [SegmentWidget(viewer), TrainWidget(viewer), DenoiseWidget(viewer)]
print("made", flush=True)
"""


def test_a_script_with_undocked_docks_exits_cleanly():
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs the display of the GUI tests (Xvfb)")
    for _ in range(4):
        done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                              timeout=300)
        assert done.stdout.strip() == "made"
        assert done.returncode == 0, done.stderr[-2000:]
