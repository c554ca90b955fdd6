"""Helpers the format readers share: JSON-safe metadata, frame axes, pixel size, dose.

Every reader of :mod:`napari_lowdose.io.readers` turns its file's metadata into
JSON-friendly values (:func:`_jsonable`), its data into ``(frame, y, x)`` or
``(y, x)`` (:func:`_to_frames`), its calibration into a pixel size in Å
(:func:`_pixel_size`) and its dose hints into a per-frame dose
(:func:`_finish`).
"""

import math
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np

from ...errors import LowdoseError, SeriesReadError, one_line
from ..dose import resolve_frame_dose
from ..dose_calibration import open_time_dose
from ..series import Series
from ..units import length_to_angstrom_factor, normalise_unit


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars, bytes and small arrays to JSON-friendly values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").rstrip("\x00")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _jsonable(value.item())
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.size <= 64 else None
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _to_frames(data: Any) -> Any:
    """Collapse leading axes so data is ``(frame, y, x)``, or keep ``(y, x)``."""
    if data.ndim < 2:
        raise SeriesReadError(f"data has {data.ndim} dimension(s); an image needs 2")
    if data.ndim > 3:
        data = data.reshape((-1,) + tuple(data.shape[-2:]))
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if min(data.shape[-2:]) < 1 or any(n == 0 for n in data.shape):
        raise SeriesReadError(f"data has an empty axis, shape {tuple(data.shape)}")
    return data


def _pixel_size(
    values: tuple[float, float], units: tuple[Any, Any], warn: list[str], where: str
) -> tuple[float, float] | None:
    """Convert a (y, x) calibration to Å, or None with a warning if unusable."""
    factors = [length_to_angstrom_factor(u) for u in units]
    if any(f is None for f in factors):
        shown = ", ".join(repr(normalise_unit(u)) for u in units)
        if any(normalise_unit(u) for u in units):
            warn.append(f"{where}: unit {shown} is not a length; the image is shown in pixels")
        return None
    size = []
    for value, factor in zip(values, factors, strict=True):
        value = float(value)
        if not math.isfinite(value) or value == 0:
            return None
        size.append(abs(value) * factor)
    if any(float(v) < 0 for v in values):
        warn.append(f"{where}: negative pixel size {values[0]:g}; using its magnitude")
    return (size[0], size[1])


def _finish(series: Series, **dose_kwargs: Any) -> Series:
    """Resolve the per-frame dose from the file's own hints.

    A per-frame dose the file states, else its dose rate × exposure time, else the dose
    of its own intensity calibration (mean counts ÷ stated gain ÷ pixel area), computed
    now only when reading every frame is cheap
    (:func:`~napari_lowdose.io.dose_calibration.open_time_dose`).
    """
    hints = series.dose_hints
    series.frame_dose = resolve_frame_dose(
        series.n_frames,
        metadata_dose_e_per_A2=hints.frame_dose_e_per_A2,
        metadata_key=hints.frame_dose_key,
        dose_rate_e_per_A2_s=hints.dose_rate_e_per_A2_s,
        exposure_time_s=hints.exposure_time_s,
        **dose_kwargs,
    )
    if series.frame_dose is None and hints.counts_per_electron:
        try:
            series.frame_dose = open_time_dose(series.data, pixel_area_A2=series.pixel_area_A2,
                                               hints=hints.to_metadata())
        except LowdoseError as err:
            series.warnings.append(f"no dose from the file's intensity calibration: "
                                   f"{one_line(err)}")
            return series
        if series.frame_dose is None and series.pixel_area_A2:
            hints.notes.append("the dose from the file's intensity calibration needs every "
                               "frame read: an analysis computes it, or --dose-source "
                               "file_calibration, or the Dose calibration dock")
    return series


def _lazy_stack(
    read_frame: Callable[[int], np.ndarray], n: int, shape: tuple[int, int], dtype: Any
) -> da.Array:
    """A dask array of ``n`` frames, each read on demand by ``read_frame(i)``."""
    from dask import delayed

    frames = [
        da.from_delayed(delayed(read_frame)(i), shape=shape, dtype=dtype) for i in range(n)
    ]
    return da.stack(frames) if n > 1 else frames[0]
