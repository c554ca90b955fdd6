"""Turn a :class:`Series` into napari layer data, without importing napari.

Layer metadata layout (shared by every widget of the plugin)::

    metadata["lowdose"] = {
        "format", "path", "pixel_size_A", "pixel_size_source",
        "dose": FrameDose.to_metadata() or None,
        "dose_hints": DoseHints.to_metadata(), "warnings": [...],
    }
    metadata["source_metadata"] = the file's own metadata

A mask TIFF written by ``segment`` (or the Segment dock's export) opens as a Labels
layer and carries its run's area-against-dose record back under
``metadata["lowdose"]["area_vs_dose"]`` (:data:`AREA_RECORD_KEY`), so the Area-vs-dose
dock draws an exported run again.
"""

import math
from typing import Any

from .dose import FrameDose
from .series import Series
from .units import length_to_angstrom_factor

__all__ = [
    "AREA_RECORD_KEY",
    "LOWDOSE_KEY",
    "image_layer_kwargs",
    "layer_frame_dose",
    "pixel_size_A_from_scale",
    "series_to_layer_data",
    "with_frame_dose",
]

LOWDOSE_KEY = "lowdose"
#: Key of a mask layer's area-against-dose record in ``metadata["lowdose"]`` (and in the
#: napari-lowdose metadata of the mask TIFF it was exported to).
AREA_RECORD_KEY = "area_vs_dose"


def image_layer_kwargs(
    pixel_size_A: tuple[float, float] | None, ndim: int
) -> dict[str, Any]:
    """``scale``, ``units`` and ``axis_labels`` for an image of ``ndim`` axes.

    The last two axes are (y, x) in Å (or pixels if uncalibrated); a leading
    axis is the frame index.
    """
    if pixel_size_A is None:
        spatial_scale, spatial_unit = (1.0, 1.0), "pixel"
    else:
        spatial_scale, spatial_unit = tuple(float(v) for v in pixel_size_A), "angstrom"
    lead = ndim - 2
    return {
        "scale": (1.0,) * lead + spatial_scale,
        "units": ("dimensionless",) * lead + (spatial_unit, spatial_unit),
        "axis_labels": (("frame",) if lead == 1 else tuple(f"axis{i}" for i in range(lead)))
        + ("y", "x"),
    }


def series_to_layer_data(series: Series) -> list[tuple[Any, dict[str, Any], str]]:
    """Return the napari ``LayerDataTuple`` list for an opened series."""
    lowdose = {
        "format": series.format,
        "path": str(series.path),
        "pixel_size_A": None if series.pixel_size_A is None else list(series.pixel_size_A),
        "pixel_size_source": series.pixel_size_source,
        "dose": None if series.frame_dose is None else series.frame_dose.to_metadata(),
        "dose_hints": series.dose_hints.to_metadata(),
        "warnings": list(series.warnings),
    }
    kwargs = {
        "name": series.path.stem,
        # Frame dose spans decades: follow each frame's own range when sliding.
        "auto_contrast": series.data.ndim == 3,
        "metadata": {LOWDOSE_KEY: lowdose, "source_metadata": series.source_metadata},
        **image_layer_kwargs(series.pixel_size_A, series.data.ndim),
    }
    own = (series.source_metadata or {}).get("napari-lowdose") or {}
    if own.get("layer_type") == "labels":  # masks this package wrote: back as a mask layer
        kwargs.pop("auto_contrast", None)
        if isinstance(own.get(AREA_RECORD_KEY), dict):  # the run's curve, for the plot
            lowdose[AREA_RECORD_KEY] = own[AREA_RECORD_KEY]
            first = _first_of_contiguous_frames(own[AREA_RECORD_KEY], series.data.ndim)
            if first:  # a frame range: its masks over the series' own frames
                kwargs["translate"] = (float(first), 0.0, 0.0)
        return [(series.data, kwargs, "labels")]
    return [(series.data, kwargs, "image")]


def _first_of_contiguous_frames(record: dict[str, Any], ndim: int) -> int:
    """The series index of a mask stack's first frame when its record numbers a contiguous
    range of frames (0 otherwise: the stack starts at the series' first frame, or its
    frames are not one range and cannot be placed)."""
    frames = (record.get("table") or {}).get("frame")
    if ndim != 3 or not isinstance(frames, list) or not frames:
        return 0
    try:
        first = int(frames[0])
        contiguous = [int(f) for f in frames] == list(range(first, first + len(frames)))
    except (TypeError, ValueError):
        return 0
    return first if contiguous and first > 0 else 0


def layer_frame_dose(metadata: dict[str, Any]) -> FrameDose | None:
    """Return the per-frame dose stored in a layer's metadata, or None."""
    record = (metadata or {}).get(LOWDOSE_KEY, {}).get("dose")
    return None if record is None else FrameDose.from_metadata(record)


def with_frame_dose(metadata: dict[str, Any], dose: FrameDose | None) -> dict[str, Any]:
    """Return a copy of layer ``metadata`` with ``dose`` recorded (input unchanged)."""
    new = dict(metadata or {})
    lowdose = dict(new.get(LOWDOSE_KEY, {}))
    lowdose["dose"] = None if dose is None else dose.to_metadata()
    new[LOWDOSE_KEY] = lowdose
    return new


def pixel_size_A_from_scale(scale: Any, units: Any) -> tuple[float, float] | None:
    """(y, x) pixel size in Å of an image's last two axes, from its scale and length units.

    The one rule every dock uses to read a layer's pixel size: any length unit napari or a
    file writes (``angstrom``, ``nanometer``, ``micrometer``, ``Å``, ``nm``, ``µm`` …)
    is converted; ``pixel`` or an unknown unit means uncalibrated.

    Parameters
    ----------
    scale : sequence of float
        The layer's ``scale`` (the last two values are used).
    units : sequence of str or pint units, or None
        The layer's ``units`` (the last two are used).

    Returns
    -------
    (float, float) or None
        The pixel size in Å, or None when uncalibrated or not positive and finite.
    """
    if units is None or scale is None or len(units) < 2 or len(scale) < 2:
        return None
    sizes = []
    for value, unit in zip(tuple(scale)[-2:], tuple(units)[-2:], strict=True):
        factor = length_to_angstrom_factor(str(unit))
        if factor is None:
            return None
        size = float(value) * factor
        if not (math.isfinite(size) and size > 0):
            return None
        sizes.append(size)
    return sizes[0], sizes[1]
