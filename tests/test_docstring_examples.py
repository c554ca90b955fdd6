"""The Examples sections of the core's docstrings run and give what they show."""

import doctest
import importlib
from pathlib import Path

import pytest

import napari_lowdose

PACKAGE = Path(napari_lowdose.__file__).parent
#: Core modules whose docstrings show examples (the docks need a viewer: not here).
MODULES = sorted(
    ".".join(("napari_lowdose", *path.relative_to(PACKAGE).with_suffix("").parts))
    for path in PACKAGE.rglob("*.py")
    if "widgets" not in path.parts and ">>> " in path.read_text(encoding="utf-8"))


def test_there_are_examples_to_run():
    assert "napari_lowdose.analysis.denoise_quality" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
