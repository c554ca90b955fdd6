"""MRC reader: images, stacks and movies (.mrc/.mrcs), with Direct Electron info files.

The header is read with mrcfile and the data memory-mapped. Per-frame dose
comes from an FEI extended header (``Dose``, e⁻/m²) when present; a Direct
Electron ``*_info.txt`` beside the file gives exposure rate, frame time and
ADU per electron.
"""

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SeriesReadError, short_reason
from ..series import DoseHints, Series
from ._common import _finish, _jsonable, _pixel_size, _to_frames

__all__ = ["read_mrc"]

#: Electrons per m² → electrons per Å².
_PER_M2_TO_PER_A2 = 1e-20


def _de_info_path(path: Path) -> Path | None:
    stem = path.stem
    names = [f"{stem}_info.txt"]
    if stem.endswith("_movie"):
        names.insert(0, f"{stem[: -len('_movie')]}_info.txt")
    for name in names:
        candidate = path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def _read_de_info(info_path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in info_path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def read_mrc(path: str | Path) -> Series:
    """Read an .mrc image, stack or movie (mrcfile header, data memory-mapped).

    Per-frame dose comes from an FEI extended header (``Dose``, e⁻/m²) when
    present; a Direct Electron ``*_info.txt`` beside the file gives exposure
    rate, frame time and ADU per electron.
    """
    import mrcfile
    from mrcfile import utils as mrc_utils

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc:
                header = mrc.header
                if header is None:
                    raise SeriesReadError(f"{path.name}: not an MRC file (no header)")
                ext_header = mrc.extended_header
                exttyp = bytes(header.exttyp).decode("ascii", errors="replace").strip("\x00 ")
                indexed = mrc.indexed_extended_header if exttyp in ("FEI1", "FEI2") else None
                voxel = mrc.voxel_size
                dtype = mrc_utils.data_dtype_from_header(header)
                shape = (int(header.nz), int(header.ny), int(header.nx))
                offset = header.nbytes + int(header.nsymbt)
                map_id = bytes(header.map).decode("ascii", errors="replace")
    except SeriesReadError:
        raise
    except Exception as err:
        why = short_reason(err)
        raise SeriesReadError(f"{path.name}: not a readable MRC file ({why})") from None
    if map_id != "MAP " or min(shape) < 1:
        raise SeriesReadError(f"{path.name}: not a valid MRC file (bad header)")
    needed = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < needed:
        raise SeriesReadError(f"{path.name}: file is truncated ({path.stat().st_size} of "
                              f"{needed} bytes)")
    data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    warn: list[str] = []
    pixel_size = _pixel_size((float(voxel.y), float(voxel.x)), ("Å", "Å"), warn, "MRC header")
    meta: dict[str, Any] = {
        "header": {name: _jsonable(header[name]) for name in header.dtype.names
                   if name not in ("label",)},
        "exttyp": exttyp,
        "extended_header_bytes": 0 if ext_header is None else int(ext_header.nbytes),
    }
    hints = DoseHints()
    if indexed is not None and "Dose" in (indexed.dtype.names or ()):
        dose = np.asarray(indexed["Dose"], dtype=np.float64)[: shape[0]] * _PER_M2_TO_PER_A2
        if dose.size == shape[0] and np.all(dose > 0):
            hints.frame_dose_e_per_A2 = dose
            hints.frame_dose_key = f"{exttyp} extended header 'Dose' (e⁻/m²)"
    source = "MRC header cell/grid" if pixel_size else ""
    info_path = _de_info_path(path)
    if info_path is not None:
        info = _read_de_info(info_path)
        meta["de_info_file"] = info_path.name
        meta["de_info"] = info
        stated = _de_pixel_size(info, [] if pixel_size else warn)
        if pixel_size is None and stated is not None:
            pixel_size, source = stated, "Direct Electron info file 'Specimen Pixel Size'"
        elif stated is not None and not np.allclose(stated, pixel_size, rtol=0.01):
            warn.append(f"the MRC header gives {_sides(pixel_size)} Å/px, the Direct Electron "
                        f"info file {_sides(stated)} Å/px ('Specimen Pixel Size'): the "
                        "header's is used; set the pixel size if the info file is right (the "
                        "dose per Å² follows it)")
        _de_dose_hints(info, pixel_size, hints)
        scan = [_float_or_none(info.get(f"Scan - Size {axis}")) for axis in ("X", "Y")]
        if all(scan) and scan[0] * scan[1] > 1:
            warn.append(f"the info file states a {scan[0]:g} × {scan[1]:g} scan: the frames "
                        "are its diffraction patterns (4D-STEM), not a dose series of one "
                        "field")
    series = Series(
        _to_frames(data), pixel_size, "MRC" + (" (Direct Electron)" if info_path else ""), path,
        source, meta, hints, warnings=warn,
    )
    return _finish(series)


def _sides(pixel_size_A: tuple[float, float]) -> str:
    y, x = (float(v) for v in pixel_size_A)
    return f"{x:.4g}" if math.isclose(x, y, rel_tol=1e-3) else f"{x:.4g} × {y:.4g}"


def _float_or_none(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _de_pixel_size(info: dict[str, str], warn: list[str]) -> tuple[float, float] | None:
    x = _float_or_none(info.get("Specimen Pixel Size X (nanometers)"))
    y = _float_or_none(info.get("Specimen Pixel Size Y (nanometers)"))
    if x and y:
        return _pixel_size((y, x), ("nm", "nm"), warn, "DE info file")
    return None


def _de_dose_hints(
    info: dict[str, str], pixel_size: tuple[float, float] | None, hints: DoseHints
) -> None:
    adu = _float_or_none(info.get("ADUs Per Electron"))
    if adu and adu > 0:
        hints.counts_per_electron = adu
        hints.counts_per_electron_key = "Direct Electron info file 'ADUs Per Electron'"
        hints.notes.append("counts per electron from DE 'ADUs Per Electron'")
    frame_ns = _float_or_none(info.get("Frame Exposure Time (nanoseconds)"))
    if frame_ns and frame_ns > 0:
        hints.exposure_time_s = frame_ns * 1e-9
        hints.notes.append("exposure per frame from DE 'Frame Exposure Time (nanoseconds)'")
    rate_px = _float_or_none(info.get("Exposure Rate (e-/pix/s)"))
    if rate_px and rate_px > 0 and pixel_size is not None:
        hints.dose_rate_e_per_A2_s = rate_px / (pixel_size[0] * pixel_size[1])
        hints.notes.append(
            "dose rate from DE 'Exposure Rate (e-/pix/s)' divided by the pixel area "
            "(assumes the rate refers to the saved image's pixels)"
        )

