"""The napari docks (the plugin's face in the viewer; the science is in the core packages).

Each dock lives in its own module; the classes are also importable from here, loaded on
first use (``from napari_lowdose.widgets import SegmentWidget``), so importing the package
does not import Qt or napari.
"""

from importlib import import_module
from typing import Any

#: Dock class → the module that holds it.
_DOCKS = {
    "AreaPlotWidget": "area_plot",
    "DenoiseWidget": "denoise",
    "DoseCalibrationWidget": "dose_calibration",
    "NoiseFitWidget": "noise_fit",
    "SegmentWidget": "segment",
    "SimulateWidget": "simulate",
    "TrainDenoiserWidget": "train_denoiser",
    "TrainWidget": "train",
}

__all__ = sorted(_DOCKS)


def __getattr__(name: str) -> Any:
    if name in _DOCKS:
        return getattr(import_module(f".{_DOCKS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
