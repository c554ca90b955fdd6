"""Gatan DigitalMicrograph reader: .dm3 and .dm4 images and stacks (ncempy).

The pixel size comes from the DM dimension calibration; the exposure time from the
image's acquisition tags (``Exposure (s)``, ``Exposure Time (s)``); the detector gain
from its intensity ("Brightness") calibration when that is in electrons
(:func:`~napari_lowdose.io.readers.dm_tags.gatan_tag_calibration`, the same rules as a
DigitalMicrograph TIFF).
"""

import warnings
from pathlib import Path

import numpy as np

from ...errors import SeriesReadError, short_reason
from ..series import DoseHints, Series
from ._common import _finish, _jsonable, _pixel_size, _to_frames
from .dm_tags import gatan_tag_calibration, intensity_gain

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
    hints = _dm_dose_hints(tags, f".ImageList.{index + 1}", warn)
    series = Series(
        _to_frames(data), pixel_size, f"Gatan DigitalMicrograph ({path.suffix[1:].upper()})",
        path, "DM dimension calibration" if pixel_size else "", meta, hints, warnings=warn,
    )
    return _finish(series)


def _dm_dose_hints(tags: dict, image: str, warn: list[str]) -> DoseHints:
    """Exposure time and detector gain the image's tags state."""
    hints = DoseHints()
    calibration = gatan_tag_calibration(tags, image=image)
    if calibration.exposure_s is None:  # a tag outside the image's own entries
        calibration = gatan_tag_calibration(tags)
    if calibration.exposure_s is not None:
        hints.exposure_time_s = calibration.exposure_s
        hints.notes.append(f"exposure time {calibration.exposure_s:.6g} s from DM tag "
                           f"'{calibration.exposure_key.lstrip('.')}'")
    gain = intensity_gain(calibration.intensity_scale, calibration.intensity_origin,
                          calibration.intensity_unit)
    if gain is not None:
        hints.counts_per_electron, hints.counts_offset = gain
        hints.counts_per_electron_key = "DM intensity calibration (Calibrations.Brightness)"
        hints.notes.append(f"counts per electron {gain[0]:.4g} from the file's intensity "
                           f"calibration ({1 / gain[0]:.6g} e⁻ per count)")
        if gain[1] != 0:
            warn.append(f"the intensity calibration has an offset of {gain[1]:g} counts: "
                        "the dose from it subtracts it, the denoiser's input counts do not")
    return hints
