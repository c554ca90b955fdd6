"""Readers for TEM image series: TIFF, Gatan DM3/DM4, FEI TIA SER/EMI, EMD, MRC.

Each reader opens a file lazily (memory map or dask: only headers are read),
finds the pixel size in Å and any dose information in the metadata, and
returns a :class:`~napari_lowdose.io.series.Series`. Anything that is not a
readable image file raises :class:`~napari_lowdose.errors.SeriesReadError`
with a one-line message.
"""

import json
import logging
import math
import re
import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..errors import SeriesReadError, UnsupportedFormatError
from .dose import resolve_frame_dose
from .series import DoseHints, Series
from .units import length_to_angstrom_factor, normalise_unit
from .writers import LOWDOSE_TIFF_KEY

__all__ = [
    "SUPPORTED_SUFFIXES",
    "read_dm",
    "read_emd",
    "read_mrc",
    "read_ser",
    "read_series",
    "read_tiff",
]

#: Electrons per m² → electrons per Å².
_PER_M2_TO_PER_A2 = 1e-20


# ---------------------------------------------------------------------------
# helpers


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
    """Resolve the per-frame dose from the file's own hints."""
    hints = series.dose_hints
    series.frame_dose = resolve_frame_dose(
        series.n_frames,
        metadata_dose_e_per_A2=hints.frame_dose_e_per_A2,
        metadata_key=hints.frame_dose_key,
        dose_rate_e_per_A2_s=hints.dose_rate_e_per_A2_s,
        exposure_time_s=hints.exposure_time_s,
        **dose_kwargs,
    )
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


# ---------------------------------------------------------------------------
# TIFF


def read_tiff(path: str | Path) -> Series:
    """Read a TIFF, ImageJ or OME-TIFF stack (tifffile), memory-mapped when possible.

    Pixel size, first match wins: napari-lowdose's own metadata, Gatan
    DigitalMicrograph tags (65003–65010), OME ``PhysicalSizeX/Y``, ImageJ
    resolution with its ``unit``.
    """
    import tifffile

    path = Path(path)
    with _capture_log_errors("tifffile") as log_errors:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as err:  # tifffile raises many kinds for broken files
            raise SeriesReadError(f"{path.name}: not a readable TIFF ({_short(err)})") from None
        with tif:
            series = _read_open_tiff(tif, path)
    if log_errors:
        raise SeriesReadError(f"{path.name}: TIFF is damaged or truncated ({log_errors[0]})")
    return series


@contextmanager
def _capture_log_errors(logger_name: str):
    """Collect ERROR records a library logs (tifffile logs, rather than raises, on bad tags)."""
    messages: list[str] = []

    class _Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage()[:160])

    handler = _Collector(level=logging.ERROR)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _read_open_tiff(tif: Any, path: Path) -> Series:
    if not tif.series:
        raise SeriesReadError(f"{path.name}: TIFF holds no image")
    series0 = tif.series[0]
    axes, shape, dtype = series0.axes, tuple(series0.shape), series0.dtype
    if "S" in axes or "C" in axes and shape[axes.index("C")] in (3, 4):
        raise SeriesReadError(f"{path.name}: colour (RGB) TIFF is not a TEM image series")
    page0 = series0.pages[0]
    tags = {tag.code: tag.value for tag in page0.tags.values()}
    ij_meta = tif.imagej_metadata or {}
    ome_xml = tif.ome_metadata if tif.is_ome else None
    n_pages = len(series0.pages)
    source_meta = _tiff_metadata(tags, ij_meta)
    kind = "OME-TIFF" if tif.is_ome else "ImageJ TIFF" if tif.is_imagej else "TIFF"
    if 65003 in tags:
        kind = "TIFF (Gatan DigitalMicrograph)"
    _check_tiff_complete(series0, path)
    data = _tiff_data(path, shape, dtype, n_pages)
    warn: list[str] = []
    own = _lowdose_tiff_record(ij_meta)
    pixel_size, where = _tiff_pixel_size(tags, ij_meta, ome_xml, own, warn)
    hints = DoseHints()
    if own.get("dose_e_per_A2") is not None:
        hints.frame_dose_e_per_A2 = np.asarray(own["dose_e_per_A2"], dtype=np.float64)
        hints.frame_dose_key = "napari-lowdose TIFF metadata"
    for key in ("counts_per_electron",):
        if own.get(key) is not None:
            setattr(hints, key, float(own[key]))
    if own:
        source_meta["napari-lowdose"] = _jsonable(own)
    series = Series(
        _to_frames(data), pixel_size, kind, path, where, source_meta, hints, warnings=warn
    )
    return _finish(series)


def _check_tiff_complete(series0: Any, path: Path) -> None:
    """Refuse a TIFF whose last frame's data run past the end of the file."""
    file_size = path.stat().st_size
    if series0.dataoffset is not None:  # contiguous: one block of data
        end = series0.dataoffset + series0.size * series0.dtype.itemsize
    else:
        page = series0.pages[len(series0.pages) - 1]
        page = page.aspage() if hasattr(page, "aspage") else page
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
        end = max(ends) if ends else 0
    if end > file_size:
        raise SeriesReadError(f"{path.name}: TIFF is truncated (image data missing)")


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


def _tiff_data(path: Path, shape: tuple[int, ...], dtype: Any, n_pages: int) -> Any:
    import tifffile

    try:
        return tifffile.memmap(path, mode="r")
    except Exception:
        pass  # compressed or non-contiguous: read page by page on demand
    handle = tifffile.TiffFile(path)
    lock = threading.Lock()
    page_shape = shape[-2:]

    def read_page(i: int) -> np.ndarray:
        with lock:
            return handle.series[0].pages[i].asarray().reshape(page_shape)

    stack = _lazy_stack(read_page, n_pages, page_shape, dtype)
    return stack.reshape(shape) if n_pages > 1 else stack


def _tiff_metadata(tags: dict[int, Any], ij_meta: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for code, value in tags.items():
        if code in (273, 279, 324, 325, 65027):  # strip/tile offsets, JEOL binary blob
            continue
        converted = _jsonable(value)
        if converted is not None and len(str(converted)) < 2000:
            meta[f"tag{code}"] = converted
    if ij_meta:
        meta["imagej"] = {k: _jsonable(v) for k, v in ij_meta.items() if k != "Info"}
    return meta


def _lowdose_tiff_record(ij_meta: dict[str, Any]) -> dict[str, Any]:
    info = str(ij_meta.get("Info", ""))
    for line in info.splitlines():
        if line.startswith(LOWDOSE_TIFF_KEY):
            try:
                record = json.loads(line[len(LOWDOSE_TIFF_KEY) :])
            except json.JSONDecodeError:
                return {}
            return record if isinstance(record, dict) else {}
    return {}


def _tiff_pixel_size(
    tags: dict[int, Any],
    ij_meta: dict[str, Any],
    ome_xml: str | None,
    own: dict[str, Any],
    warn: list[str],
) -> tuple[tuple[float, float] | None, str]:
    if own.get("pixel_size_A"):
        size = float(own["pixel_size_A"])
        return (size, size), "napari-lowdose TIFF metadata"
    if 65009 in tags and 65010 in tags:
        # DigitalMicrograph: 65009/65010 x/y scale, 65003/65004 x/y unit.
        size = _pixel_size(
            (tags[65010], tags[65009]), (tags.get(65004, ""), tags.get(65003, "")), warn,
            "DigitalMicrograph TIFF tags",
        )
        if size:
            return size, "DigitalMicrograph TIFF tags 65009/65010"
    if ome_xml:
        size = _ome_pixel_size(ome_xml, warn)
        if size:
            return size, "OME PhysicalSizeY/X"
    unit = ij_meta.get("unit")
    if unit and 282 in tags and 283 in tags:
        per_unit = [_rational(tags[283]), _rational(tags[282])]
        if all(v and v > 0 for v in per_unit):
            size = _pixel_size((1 / per_unit[0], 1 / per_unit[1]), (unit, unit), warn, "ImageJ")
            if size:
                return size, "ImageJ resolution and unit"
    return None, ""


def _rational(value: Any) -> float | None:
    try:
        if isinstance(value, tuple):
            return value[0] / value[1] if value[1] else None
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _ome_pixel_size(xml: str, warn: list[str]) -> tuple[float, float] | None:
    match = re.search(r"<Pixels\b[^>]*>", xml)
    if not match:
        return None
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(0)))
    if "PhysicalSizeX" not in attrs or "PhysicalSizeY" not in attrs:
        return None
    return _pixel_size(
        (float(attrs["PhysicalSizeY"]), float(attrs["PhysicalSizeX"])),
        (attrs.get("PhysicalSizeYUnit", "µm"), attrs.get("PhysicalSizeXUnit", "µm")),
        warn,
        "OME metadata",
    )


# ---------------------------------------------------------------------------
# Gatan DigitalMicrograph


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
                              f"({_short(err)})") from None
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


# ---------------------------------------------------------------------------
# FEI TIA .ser / .emi


def _ser_path(path: Path) -> Path:
    if path.suffix.lower() == ".ser":
        return path
    candidates = sorted(path.parent.glob(f"{path.stem}_*.ser"))
    if not candidates:
        raise SeriesReadError(f"{path.name}: no {path.stem}_1.ser data file beside this .emi")
    return candidates[0]


def read_ser(path: str | Path) -> Series:
    """Read an FEI TIA series (.ser, or the .emi beside it) frame by frame on demand."""
    from ncempy.io import ser

    path = Path(path)
    ser_path = _ser_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with ser.fileSER(ser_path) as ser_file:
                head = dict(ser_file.head)
                if head.get("DataTypeID") != 0x4122:
                    raise SeriesReadError(f"{ser_path.name}: TIA file holds spectra, not images")
                n_valid = int(head["ValidNumberElements"])
                if n_valid < 1:
                    raise SeriesReadError(f"{ser_path.name}: TIA series holds no frame")
                frame0, meta0 = ser_file.getDataset(0)
                emi = dict(ser_file._emi or {})
                offsets = [int(o) for o in head["DataOffsetArray"][:n_valid]]
    except SeriesReadError:
        raise
    except Exception as err:
        raise SeriesReadError(f"{ser_path.name}: not a readable TIA .ser file "
                              f"({_short(err)})") from None
    frame_shape = tuple(int(n) for n in frame0.shape)
    dtype = frame0.dtype
    file_size = ser_path.stat().st_size
    header_bytes = 50  # 2-D element header: 2 × (f8, f8, i4) calibrations, i2 type, 2 × i4 size
    nbytes = int(np.prod(frame_shape)) * dtype.itemsize
    if any(o + header_bytes + nbytes > file_size for o in offsets):
        raise SeriesReadError(f"{ser_path.name}: file is truncated")

    def read_frame(i: int) -> np.ndarray:
        # TIA writes rows bottom-up; flip to the orientation TIA displays (as ncempy does).
        return np.memmap(ser_path, dtype=dtype, mode="r", offset=offsets[i] + header_bytes,
                         shape=frame_shape)[::-1]

    data = read_frame(0) if n_valid == 1 else _lazy_stack(read_frame, n_valid, frame_shape, dtype)
    cal = meta0.get("Calibration", ())
    warn: list[str] = []
    pixel_size = None
    if len(cal) >= 2:
        # TIA stores calibrations in metres, X first.
        pixel_size = _pixel_size(
            (cal[1]["CalibrationDelta"], cal[0]["CalibrationDelta"]), ("m", "m"), warn, "TIA"
        )
    meta = {"ser_header": _jsonable({k: v for k, v in head.items() if "Array" not in k}),
            "emi": _jsonable(emi)}
    hints = DoseHints()
    for key in ("Exposure time [s]", "Exposure Time [s]"):
        if key in emi:
            hints.exposure_time_s = float(emi[key])
            hints.notes.append(f"exposure time from EMI '{key}'")
    series = Series(
        _to_frames(data), pixel_size, "FEI TIA (SER/EMI)", path,
        "TIA element calibration (m)" if pixel_size else "", meta, hints, warnings=warn,
    )
    return _finish(series)


# ---------------------------------------------------------------------------
# EMD (HDF5): Berkeley/NCEM and Thermo Fisher Velox


def read_emd(path: str | Path) -> Series:
    """Read a Berkeley (NCEM) or Velox .emd file; the HDF5 dataset stays on disk."""
    import h5py

    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except Exception as err:
        raise SeriesReadError(f"{path.name}: not a readable EMD/HDF5 file ({_short(err)})") \
            from None
    try:
        if "Data" in h5 and "Image" in h5["Data"]:
            return _finish(_read_velox(h5, path))
        return _finish(_read_berkeley(h5, path))
    except SeriesReadError:
        h5.close()
        raise
    except Exception as err:
        h5.close()
        raise SeriesReadError(f"{path.name}: unexpected EMD layout ({_short(err)})") from None


def _read_berkeley(h5: Any, path: Path) -> Series:
    import h5py

    groups: list[Any] = []

    def visit(_name: str, obj: Any) -> None:
        group_type = np.asarray(obj.attrs.get("emd_group_type", 0)) if hasattr(obj, "attrs") else 0
        if isinstance(obj, h5py.Group) and int(group_type) == 1:
            groups.append(obj)

    h5.visititems(visit)
    candidates = []
    for group in groups:
        for name, obj in group.items():
            if isinstance(obj, h5py.Dataset) and not name.startswith("dim") and obj.ndim >= 2:
                candidates.append((group, obj))
    if not candidates:
        raise SeriesReadError(f"{path.name}: no image data set in this EMD file")
    group, dset = max(candidates, key=lambda gd: gd[1].size)
    dims = []
    for axis in range(1, dset.ndim + 1):
        dim = group.get(f"dim{axis}")
        if dim is None:
            dims.append((None, "", ""))
            continue
        values = np.asarray(dim[: min(len(dim), 2)], dtype=np.float64)
        dims.append((values, _jsonable(dim.attrs.get("name", "")),
                     normalise_unit(dim.attrs.get("units", ""))))
    warn: list[str] = []
    step = [float(v[1] - v[0]) if v is not None and len(v) > 1 else math.nan for v, _, _ in dims]
    pixel_size = _pixel_size((step[-2], step[-1]), (dims[-2][2], dims[-1][2]), warn,
                             "EMD dim vectors")
    data = da.from_array(dset, chunks=(1,) * (dset.ndim - 2) + tuple(dset.shape[-2:]))
    if dset.ndim == 2:
        data = dset  # h5py dataset: napari slices it lazily
    meta = {
        "emd_group": group.name,
        "dataset": dset.name,
        "dims": [{"name": n, "units": u} for _, n, u in dims],
        "root_attrs": _jsonable(dict(h5.attrs)),
    }
    return Series(_to_frames(data), pixel_size, "EMD (Berkeley/NCEM)", path,
                  f"{group.name} dim vectors" if pixel_size else "", meta, DoseHints(),
                  warnings=warn)


def _read_velox(h5: Any, path: Path) -> Series:
    images = h5["Data"]["Image"]
    if not len(images):
        raise SeriesReadError(f"{path.name}: Velox file holds no image")
    key = sorted(images.keys())[0]
    group = images[key]
    dset = group["Data"]  # (y, x, frames)
    if dset.ndim != 3:
        raise SeriesReadError(f"{path.name}: unexpected Velox image shape {dset.shape}")
    meta: dict[str, Any] = {"velox_image": key}
    warn: list[str] = []
    pixel_size = None
    if "Metadata" in group:
        raw = np.asarray(group["Metadata"][:, 0]).tobytes().rstrip(b"\x00")
        try:
            record = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            record = {}
        meta["velox_metadata"] = record
        size = record.get("BinaryResult", {}).get("PixelSize", {})
        units = record.get("BinaryResult", {}).get("PixelUnitX", "m"), \
            record.get("BinaryResult", {}).get("PixelUnitY", "m")
        if "width" in size and "height" in size:
            pixel_size = _pixel_size((float(size["height"]), float(size["width"])),
                                     (units[1], units[0]), warn, "Velox BinaryResult")
    data = da.from_array(dset, chunks=tuple(dset.shape[:2]) + (1,)).transpose(2, 0, 1)
    return Series(_to_frames(data), pixel_size, "EMD (Velox)", path,
                  "Velox BinaryResult.PixelSize" if pixel_size else "", meta, DoseHints(),
                  warnings=warn)


# ---------------------------------------------------------------------------
# MRC


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
        raise SeriesReadError(f"{path.name}: not a readable MRC file ({_short(err)})") from None
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
    info_path = _de_info_path(path)
    if info_path is not None:
        info = _read_de_info(info_path)
        meta["de_info_file"] = info_path.name
        meta["de_info"] = info
        _de_dose_hints(info, pixel_size, hints)
        if pixel_size is None:
            pixel_size = _de_pixel_size(info, warn)
    series = Series(
        _to_frames(data), pixel_size, "MRC" + (" (Direct Electron)" if info_path else ""), path,
        "MRC header cell/grid" if pixel_size else "", meta, hints, warnings=warn,
    )
    return _finish(series)


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


# ---------------------------------------------------------------------------
# dispatch

_READERS: dict[str, Callable[[Path], Series]] = {
    ".tif": read_tiff,
    ".tiff": read_tiff,
    ".dm3": read_dm,
    ".dm4": read_dm,
    ".ser": read_ser,
    ".emi": read_ser,
    ".emd": read_emd,
    ".mrc": read_mrc,
    ".mrcs": read_mrc,
}

#: File extensions napari-lowdose reads.
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_READERS)


def read_series(path: str | Path) -> Series:
    """Open any supported TEM file as a :class:`Series` (lazily).

    Parameters
    ----------
    path : str or Path
        A ``.tif/.tiff``, ``.dm3/.dm4``, ``.ser/.emi``, ``.emd`` or ``.mrc/.mrcs`` file.

    Returns
    -------
    Series

    Raises
    ------
    UnsupportedFormatError
        For a directory or an extension not in :data:`SUPPORTED_SUFFIXES`.
    SeriesReadError
        For a missing, empty, truncated or corrupt file.
    """
    path = Path(path)
    if path.is_dir():
        raise UnsupportedFormatError(f"{path}: is a directory, not an image file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(SUPPORTED_SUFFIXES)
        raise UnsupportedFormatError(f"{path.name}: unsupported file type (napari-lowdose reads "
                                     f"{known})")
    if not path.is_file():
        raise SeriesReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise SeriesReadError(f"{path.name}: file is empty")
    try:
        return reader(path)
    except SeriesReadError:
        raise
    except Exception as err:  # a reader library failed in a way we did not foresee
        raise SeriesReadError(f"{path.name}: cannot be read as {path.suffix} ({_short(err)})") \
            from None
