"""TIFF reader: plain, ImageJ and OME-TIFF stacks, and Gatan DigitalMicrograph TIFF tags.

Pixel size, first match wins: napari-lowdose's own metadata (written by
:func:`~napari_lowdose.io.writers.write_series_tiff`), Gatan DigitalMicrograph
tags (65003–65010), OME ``PhysicalSizeX/Y``, ImageJ resolution with its
``unit``. A DigitalMicrograph TIFF also states its intensity calibration (tags
65022–65025: the detector gain) and, in its own tag tree (tag 65027, DM4 layout,
:mod:`.dm_tags`), the exposure time. A TIFF whose data run past the end of the file is
refused.
"""

import json
import logging
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SeriesReadError, short_reason
from ..series import DoseHints, Series
from ..writers import LOWDOSE_TIFF_KEY
from ._common import _finish, _jsonable, _lazy_stack, _pixel_size, _to_frames
from .dm_tags import gatan_tag_calibration, intensity_gain, parse_dm_tag_tree

__all__ = ["read_tiff"]


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
            why = short_reason(err)
            raise SeriesReadError(f"{path.name}: not a readable TIFF ({why})") from None
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
        raise SeriesReadError(f"{path.name}: TIFF holds no image (empty, or truncated "
                              "before its first image)")
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
    _check_decodable(page0, path)
    data = _tiff_data(path, shape, dtype, n_pages)
    warn: list[str] = []
    own = _lowdose_tiff_record(ij_meta)
    pixel_size, where = _tiff_pixel_size(tags, ij_meta, ome_xml, own, warn)
    hints = DoseHints()
    if own.get("dose_e_per_A2") is not None:
        hints.frame_dose_e_per_A2 = np.asarray(own["dose_e_per_A2"], dtype=np.float64)
        hints.frame_dose_key = "napari-lowdose TIFF metadata"
    if own.get("counts_per_electron") is not None:
        hints.counts_per_electron = float(own["counts_per_electron"])
        hints.counts_per_electron_key = "napari-lowdose TIFF metadata"
    if hints.counts_per_electron is None:
        _gatan_intensity_calibration(tags, hints, warn)
    _gatan_tag_tree(tags, hints, source_meta)
    if own:
        source_meta["napari-lowdose"] = _jsonable(own)
    series = Series(
        _to_frames(data), pixel_size, kind, path, where, source_meta, hints, warnings=warn
    )
    return _finish(series)


def _gatan_intensity_calibration(tags: dict[int, Any], hints: DoseHints,
                                 warn: list[str]) -> None:
    """The detector gain a DigitalMicrograph TIFF states: its intensity calibration.

    Gatan tags 65022/65023 hold the intensity unit, 65024 the origin and 65025 the scale:
    ``electrons = (counts − origin) × scale`` when the unit is electrons, i.e.
    ``1 / scale`` counts per electron (a OneView frame: 0.0227 e⁻/count, 44 counts/e⁻).
    """
    gain = intensity_gain(tags.get(65025), tags.get(65024, 0.0),
                          tags.get(65022, tags.get(65023, "")))
    if gain is None:
        return
    counts_per_electron, origin = gain
    hints.counts_per_electron = counts_per_electron
    hints.counts_per_electron_key = "DigitalMicrograph intensity calibration, TIFF tag 65025"
    hints.counts_offset = origin
    hints.notes.append(f"counts per electron {counts_per_electron:.4g} from the file's "
                       f"intensity calibration ({1 / counts_per_electron:.6g} e⁻ per count, "
                       "DigitalMicrograph tag 65025)")
    if origin != 0:
        warn.append(f"the intensity calibration has an offset of {origin:g} counts: the dose "
                    "from it subtracts it, the denoiser's input counts do not")


def _gatan_tag_tree(tags: dict[int, Any], hints: DoseHints, source_meta: dict[str, Any]
                    ) -> None:
    """The exposure time from GMS's own tag tree (TIFF tag 65027, DM4 layout)."""
    raw = tags.get(65027)
    if not isinstance(raw, bytes | bytearray):
        return
    tree = parse_dm_tag_tree(bytes(raw))
    if not tree:
        return
    source_meta["gatan_tags"] = {k: _jsonable(v) for k, v in tree.items()}
    calibration = gatan_tag_calibration(tree)
    if calibration.exposure_s is not None and hints.exposure_time_s is None:
        hints.exposure_time_s = calibration.exposure_s
        hints.notes.append(f"exposure time {calibration.exposure_s:.6g} s from GMS tag "
                           f"'{calibration.exposure_key.lstrip('.')}' (TIFF tag 65027)")


def _check_decodable(page: Any, path: Path) -> None:
    """Decode the first page of a compressed TIFF now, so that a compression nothing here
    can decode is one line at opening (naming it), not a failure when a frame is shown.

    LZW and Deflate (DigitalMicrograph's and ImageJ's usual compressions) and the others
    tifffile knows are decoded by ``imagecodecs``, a dependency of napari-lowdose.
    """
    compression = getattr(page, "compression", 1)
    if int(compression) == 1:  # not compressed
        return
    try:
        page.asarray()
    except Exception as err:  # noqa: BLE001 - any decoder failure is one line
        name = getattr(compression, "name", str(compression))
        raise SeriesReadError(
            f"{path.name}: its {name} compression cannot be decoded here ({short_reason(err)}); "
            "reinstall napari-lowdose with its dependencies (imagecodecs) or save the file "
            "uncompressed") from None


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


class _ClosingTiff:
    """An open TIFF that closes itself when the last lazy reader of its pages goes.

    The pages of a compressed TIFF are read on demand, so the file stays open as long as
    an array (or anything derived from it) may still read them; left to the garbage
    collector, the open file was reported as "unclosed file" (a ResourceWarning, which
    napari shows as a notification: at every frame of a folder watch).
    """

    def __init__(self, tif: Any) -> None:
        self.tif = tif

    def __del__(self) -> None:
        try:
            self.tif.close()
        except Exception:  # noqa: BLE001 - interpreter shutting down, file already gone
            pass


def _tiff_data(path: Path, shape: tuple[int, ...], dtype: Any, n_pages: int) -> Any:
    import tifffile

    try:
        return tifffile.memmap(path, mode="r")
    except Exception:
        pass  # compressed or non-contiguous: read page by page on demand
    handle = _ClosingTiff(tifffile.TiffFile(path))
    lock = threading.Lock()
    page_shape = shape[-2:]

    def read_page(i: int) -> np.ndarray:
        with lock:
            return handle.tif.series[0].pages[i].asarray().reshape(page_shape)

    stack = _lazy_stack(read_page, n_pages, page_shape, dtype)
    return stack.reshape(shape) if n_pages > 1 else stack


def _tiff_metadata(tags: dict[int, Any], ij_meta: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for code, value in tags.items():
        if code in (273, 279, 324, 325, 65027):  # strip/tile offsets, GMS tag tree
            continue  # (65027: GMS's tag tree, decoded into "gatan_tags")
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

