"""DigitalMicrograph tag trees: a small DM3/DM4 tag-tree parser and what its tags state.

GMS writes the tag tree of an image (its ``ImageTags``: acquisition, camera, microscope
…) into the TIFF files it exports, as TIFF tag 65027, in the DM4 binary layout:

- header: version (4 bytes, big-endian, = 4 or 3), size of the root (8 bytes for DM4,
  4 for DM3), byte order of the data (4 bytes: 1 = little-endian);
- a tag group: sorted flag (1 byte), open flag (1 byte), number of entries (8/4 bytes);
- an entry: kind (1 byte: 20 = group, 21 = data), name length (2 bytes), name, then in
  DM4 the entry's size (8 bytes); a group follows, or for data the marker ``%%%%``, the
  length of its type description (8/4 bytes) and that many type words (8/4 bytes each),
  then the value in the data byte order.

Type words: 2 int16, 3 int32, 4 uint16, 5 uint32, 6 float32, 7 float64, 8 bool,
9 int8, 10 uint8, 11 int64, 12 uint64, 15 struct, 18 string, 20 array. Arrays of
uint16 are GMS's UTF-16 strings.

:func:`parse_dm_tag_tree` turns the bytes into a flat ``{".A.B.C": value}`` dict with
the same key layout ncempy gives for .dm3/.dm4 files (unnamed entries numbered from 1),
and :func:`gatan_tag_calibration` reads, from such a dict, the exposure time, the
intensity calibration (the detector gain) and the pixel calibration.
"""

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GatanCalibration", "gatan_tag_calibration", "intensity_gain", "is_electron_unit",
           "parse_dm_tag_tree"]

_SIMPLE = {2: "h", 3: "i", 4: "H", 5: "I", 6: "f", 7: "d", 8: "?", 9: "b", 10: "B",
           11: "q", 12: "Q"}
_STRUCT, _STRING, _ARRAY = 15, 18, 20
_MAX_DEPTH = 64
#: Arrays longer than this are skipped (image data, thumbnails), not decoded.
_MAX_ARRAY = 4096


class _TagTreeError(ValueError):
    """The bytes are not a DM tag tree (or are truncated)."""


class _Reader:
    def __init__(self, data: bytes, *, dm4: bool, little: bool):
        self.data, self.pos = data, 0
        self.word = 8 if dm4 else 4
        self.dm4 = dm4
        self.order = "<" if little else ">"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _TagTreeError("truncated tag tree")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def big(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def value(self, code: int) -> Any:
        fmt = _SIMPLE.get(code)
        if fmt is None:
            raise _TagTreeError(f"unknown DM data type {code}")
        return struct.unpack(self.order + fmt, self.take(struct.calcsize(fmt)))[0]


def parse_dm_tag_tree(data: bytes) -> dict[str, Any]:
    """Parse a DM3/DM4 tag tree (e.g. GMS's TIFF tag 65027) into a flat dict.

    Parameters
    ----------
    data : bytes
        The tag tree, starting with its version header.

    Returns
    -------
    dict
        ``{".Group.Sub.Name": value}``: numbers, strings (UTF-16 arrays decoded), short
        numeric arrays as tuples. Empty when the bytes are not a DM3/DM4 tag tree; a
        truncated tree gives the entries read before the break.
    """
    if len(data) < 16:
        return {}
    version = int.from_bytes(data[:4], "big")
    if version not in (3, 4):
        return {}
    size_bytes = 8 if version == 4 else 4
    little = int.from_bytes(data[4 + size_bytes:8 + size_bytes], "big") == 1
    reader = _Reader(data, dm4=version == 4, little=little)
    reader.pos = 8 + size_bytes
    tags: dict[str, Any] = {}
    try:
        _read_group(reader, "", tags, 0)
    except (_TagTreeError, struct.error, UnicodeDecodeError, OverflowError):
        pass  # keep what was read
    return tags


def _read_group(reader: _Reader, prefix: str, tags: dict[str, Any], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _TagTreeError("tag tree too deep")
    reader.take(2)  # sorted, open
    n_entries = reader.big(reader.word)
    for index in range(1, n_entries + 1):
        kind = reader.big(1)
        name = reader.take(reader.big(2)).decode("latin-1") or str(index)
        if reader.dm4:
            reader.big(8)  # size of the entry
        key = f"{prefix}.{name}"
        if kind == 20:
            _read_group(reader, key, tags, depth + 1)
        elif kind == 21:
            if reader.take(4) != b"%%%%":
                raise _TagTreeError("bad data marker")
            n_words = reader.big(reader.word)
            if n_words > 1 + 2 * _MAX_ARRAY:
                raise _TagTreeError("bad type description")
            info = [reader.big(reader.word) for _ in range(n_words)]
            value = _read_data(reader, info)
            if value is not None:
                tags[key] = value
        else:
            raise _TagTreeError(f"bad entry kind {kind}")


def _read_data(reader: _Reader, info: list[int]) -> Any:
    code = info[0]
    if code in _SIMPLE:
        return reader.value(code)
    if code == _STRING:  # [18, length]: bytes
        return reader.take(info[1]).decode("latin-1")
    if code == _STRUCT:  # [15, name length, n fields, (name length, type) × n]
        return tuple(reader.value(t) for t in info[4::2][:info[2]])
    if code == _ARRAY:
        return _read_array(reader, info)
    raise _TagTreeError(f"unknown DM data type {code}")


def _read_array(reader: _Reader, info: list[int]) -> Any:
    element, count = info[1], info[-1]
    if element == _STRUCT:  # [20, 15, name length, n fields, (0, type) × n, count]
        types = info[5:-1:2][:info[3]]
        size = sum(struct.calcsize(_SIMPLE[t]) for t in types if t in _SIMPLE)
        reader.take(size * count)
        return None
    fmt = _SIMPLE.get(element)
    if fmt is None:
        raise _TagTreeError(f"unknown DM array element type {element}")
    raw = reader.take(struct.calcsize(fmt) * count)
    if count > _MAX_ARRAY:
        return None
    if element == 4:  # uint16 arrays are UTF-16 text
        text = raw.decode("utf-16-le" if reader.order == "<" else "utf-16-be", "replace")
        return text.rstrip("\x00")
    return tuple(np.frombuffer(raw, dtype=np.dtype(reader.order + fmt)).tolist())


@dataclass(frozen=True)
class GatanCalibration:
    """What a DigitalMicrograph tag tree states about one image.

    Attributes
    ----------
    exposure_s : float or None
        Exposure time of one frame in s.
    exposure_key : str
        The tag it came from.
    intensity_scale, intensity_origin : float or None
        Intensity calibration: ``value = (counts − origin) × scale`` in ``intensity_unit``.
    intensity_unit : str
        Unit of the calibrated intensity (``"e-"`` for electrons).
    pixel_scale : (float, float) or None
        (y, x) pixel calibration, in ``pixel_units``.
    pixel_units : (str, str)
        Units of the pixel calibration (as the tags state them).
    """

    exposure_s: float | None = None
    exposure_key: str = ""
    intensity_scale: float | None = None
    intensity_origin: float | None = None
    intensity_unit: str = ""
    pixel_scale: tuple[float, float] | None = None
    pixel_units: tuple[str, str] = ("", "")


#: Tags that hold the exposure of one frame, most specific first (the paths GMS uses).
_EXPOSURE_SUFFIXES = (
    ".acquisition.parameters.high level.exposure (s)",
    ".acquisition.parameters.acquisition write flags.exposure (s)",
    ".acquisition.frame.exposure time (s)",
    ".databar.exposure time (s)",
    "exposure (s)",
    "exposure time (s)",
)


def gatan_tag_calibration(tags: dict[str, Any], *, image: str = "") -> GatanCalibration:
    """Exposure, intensity calibration and pixel calibration from a flat DM tag dict.

    Parameters
    ----------
    tags : dict
        ``{".A.B": value}`` from :func:`parse_dm_tag_tree` or ncempy's ``allTags``.
    image : str
        Prefix of the image's own entries (e.g. ``".ImageList.2"`` in a .dm3/.dm4 file);
        empty for a TIFF's tag tree (whose root is the image's tags).

    Returns
    -------
    GatanCalibration
    """
    lowered = {k.lower(): (k, v) for k, v in tags.items() if k.lower().startswith(image.lower())}
    exposure, exposure_key = None, ""
    for suffix in _EXPOSURE_SUFFIXES:
        for low, (key, value) in lowered.items():
            if low.endswith(suffix) and _positive(value) is not None:
                exposure, exposure_key = _positive(value), key
                break
        if exposure is not None:
            break
    base = f"{image}.ImageData.Calibrations".lower()
    scale = _number(lowered.get(f"{base}.brightness.scale", (None, None))[1])
    origin = _number(lowered.get(f"{base}.brightness.origin", (None, None))[1])
    unit = lowered.get(f"{base}.brightness.units", (None, ""))[1]
    dims = []
    for axis in (2, 1):  # DM dimension 1 is x, 2 is y
        dim_scale = _number(lowered.get(f"{base}.dimension.{axis}.scale", (None, None))[1])
        dim_unit = lowered.get(f"{base}.dimension.{axis}.units", (None, ""))[1]
        dims.append((dim_scale, str(dim_unit or "")))
    pixel = None
    if all(s is not None for s, _ in dims):
        pixel = (dims[0][0], dims[1][0])
    return GatanCalibration(
        exposure_s=exposure, exposure_key=exposure_key,
        intensity_scale=scale, intensity_origin=origin, intensity_unit=str(unit or ""),
        pixel_scale=pixel, pixel_units=(dims[0][1], dims[1][1]),
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


#: Units of a DigitalMicrograph intensity calibration that mean "electrons".
_ELECTRON_UNITS = {"e-", "e", "electron", "electrons", "el", "e-/px", "e-/pixel"}


def is_electron_unit(unit: Any) -> bool:
    """Whether an intensity unit means electrons (``e-``, ``e⁻``, ``electrons`` …)."""
    text = str(unit or "").strip().strip("[]").strip().lower()
    text = text.replace("⁻", "-").replace("−", "-").replace("\u2013", "-")
    return text in _ELECTRON_UNITS


def intensity_gain(scale: Any, origin: Any, unit: Any) -> tuple[float, float] | None:
    """(counts per electron, offset in counts) of an intensity calibration, or None.

    DigitalMicrograph calibrates intensities as ``value = (counts − origin) × scale`` in
    ``unit``: with the unit in electrons, ``scale`` is electrons per count and the gain is
    ``1 / scale`` counts per electron (a OneView frame: 0.0227 e⁻/count, 44 counts/e⁻).
    A unit that is not electrons, or a scale that is not positive, states no gain.
    """
    number = _positive(scale)
    if number is None or not is_electron_unit(unit):
        return None
    offset = _number(origin)
    return 1.0 / number, 0.0 if offset is None else offset
