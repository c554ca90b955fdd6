"""Gatan DigitalMicrograph reader: .dm3 and .dm4 images and stacks (ncempy).

The pixel size comes from the DM dimension calibration, the exposure time
from a tag ending in ``Exposure (s)`` or ``Exposure Time (s)``.
"""

import warnings
from pathlib import Path

import numpy as np

from ...errors import SeriesReadError, short_reason
from ..series import DoseHints, Series
from ._common import _finish, _jsonable, _pixel_size, _to_frames

__all__ = ["read_dm"]


def read_dm(path: str | Path) -> Series:
    """Read a Gatan .dm3/.dm4 image or stack (ncempy), memory-mapped."""
    from ncempy.io import dm

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with dm.fileDM(path, on_memory=False) as dm_file:
                index = 1 if dm_file.numObjects > 1 else 0  # skip the thumbnail
                data = dm_file.getMemmap(0)
                n_dims = int(dm_file.dataShape[index])
                first = int(sum(dm_file.dataShape[:index]))
                scale = list(dm_file.scale[first : first + n_dims])[::-1]
                units = list(dm_file.scaleUnit[first : first + n_dims])[::-1]
                tags = dict(dm_file.allTags)
    except SeriesReadError:
        raise
    except Exception as err:
        raise SeriesReadError(f"{path.name}: not a readable DigitalMicrograph file "
                              f"({short_reason(err)})") from None
    warn: list[str] = []
    pixel_size = _pixel_size(
        (scale[-2], scale[-1]), (units[-2], units[-1]), warn, "DM calibration"
    )
    meta = {k: _jsonable(v) for k, v in tags.items() if not isinstance(v, np.ndarray)}
    hints = DoseHints()
    for key, value in tags.items():
        low = key.lower()
        if low.endswith("exposure (s)") or low.endswith("exposure time (s)"):
            try:
                hints.exposure_time_s = float(value)
                hints.notes.append(f"exposure time from DM tag '{key}'")
                break
            except (TypeError, ValueError):
                continue
    series = Series(
        _to_frames(data), pixel_size, f"Gatan DigitalMicrograph ({path.suffix[1:].upper()})",
        path, "DM dimension calibration" if pixel_size else "", meta, hints, warnings=warn,
    )
    return _finish(series)

