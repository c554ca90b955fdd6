"""Shared fixtures: the real-format files and switches for slow and GUI tests."""

import os
from pathlib import Path

import pytest

REAL_FORMATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-formats"
REAL_FORMATS = Path(os.environ.get("LOWDOSE_REAL_FORMATS", REAL_FORMATS))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_formats() -> Path:
    """Folder of real microscope files (shared/data/real-formats)."""
    if not REAL_FORMATS.is_dir():
        pytest.skip(f"real-format test files not found at {REAL_FORMATS} "
                    "(set LOWDOSE_REAL_FORMATS to their folder)")
    return REAL_FORMATS


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train and infer on one torch thread (stable timings and results on small CPUs)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated_dock_settings(tmp_path, monkeypatch):
    """Each test remembers dock settings in its own file, never in the user's."""
    from napari_lowdose.widgets._settings import SETTINGS_ENV

    path = tmp_path / "napari-lowdose-settings.ini"
    monkeypatch.setenv(SETTINGS_ENV, str(path))
    return path


@pytest.fixture
def caught(monkeypatch):
    """What reaches napari's notification manager and ``sys.excepthook`` besides a dock's
    own message (a re-raised worker failure, a second notification)."""
    import sys

    from napari.utils.notifications import notification_manager

    seen = {"notifications": [], "excepthook": []}
    monkeypatch.setattr(notification_manager, "dispatch", seen["notifications"].append)
    monkeypatch.setattr(notification_manager, "receive_error",
                        lambda *args, **kwargs: seen["notifications"].append(args))
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen["excepthook"].append(args))
    return seen


REAL_ONEVIEW = Path(os.environ.get(
    "LOWDOSE_REAL_ONEVIEW",
    Path(__file__).resolve().parents[2] / "shared" / "data" / "real-oneview"))


@pytest.fixture(scope="session")
def real_oneview() -> Path:
    """Two real Gatan OneView frames of one field (shared/data/real-oneview)."""
    if not (REAL_ONEVIEW / "train_0001.tif").is_file():
        pytest.skip(f"real OneView frames not found at {REAL_ONEVIEW} "
                    "(set LOWDOSE_REAL_ONEVIEW to their folder)")
    return REAL_ONEVIEW
