"""Length units found in TEM metadata, converted to ångström; pixel area and electrons per
pixel (dose × pixel height × pixel width, the one rule every face uses)."""

import math
from typing import Any

import numpy as np

__all__ = ["electrons_per_pixel", "length_to_angstrom_factor", "normalise_unit",
           "pixel_area_A2", "pixel_sides_A"]

_TO_ANGSTROM = {
    "m": 1e10,
    "meter": 1e10,
    "cm": 1e8,
    "mm": 1e7,
    "um": 1e4,
    "µm": 1e4,
    "μm": 1e4,
    "micron": 1e4,
    "micrometer": 1e4,
    "nm": 10.0,
    "n_m": 10.0,
    "nanometer": 10.0,
    "a": 1.0,
    "å": 1.0,
    "Å": 1.0,
    "angstrom": 1.0,
    "pm": 0.01,
    "millimeter": 1e7,
    "centimeter": 1e8,
    "picometer": 0.01,
}


def normalise_unit(unit: object) -> str:
    """Return a unit string stripped of brackets, bytes and surrounding blanks."""
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", errors="replace")
    text = str(unit).strip().strip("[]").strip()
    return text.replace("\\u00B5", "µ").replace("\\u00c5", "Å").replace("\\u00C5", "Å")


def length_to_angstrom_factor(unit: object) -> float | None:
    """Return the factor that converts a length in ``unit`` to Å, or None.

    Parameters
    ----------
    unit : str or bytes
        A unit as written by acquisition software: ``"nm"``, ``"[n_m]"``,
        ``"µm"``, ``"micron"``, ``"m"``, ``"Å"`` …

    Returns
    -------
    float or None
        None when the unit is empty, unknown or not a length (e.g. ``1/nm``).
    """
    for text in _unit_readings(unit):
        factor = _TO_ANGSTROM.get(text, _TO_ANGSTROM.get(text.lower()))
        if factor is not None and math.isfinite(factor):
            return factor
    return None


#: Code pages DigitalMicrograph writes unit strings in (its locale's), tried in turn when a
#: unit is not recognised as read: Japanese (Shift-JIS, cp932), Windows Western, UTF-8.
_UNIT_ENCODINGS = ("utf-8", "cp932", "shift_jis", "cp1252", "utf-16-le")


def _unit_readings(unit: object) -> list[str]:
    """The unit as read, then as the same bytes decoded in the code pages GMS uses.

    A Japanese-locale GMS stores ``µm`` as the Shift-JIS bytes 83 CA 6D, which a reader
    that assumes Windows-1252 shows as ``ƒÊm``: re-encoding that text as Windows-1252 gives
    the bytes back, and Shift-JIS decodes them as ``μm``.
    """
    first = normalise_unit(unit)
    readings = [first] if first else []
    raw: list[bytes] = [unit] if isinstance(unit, bytes) else []
    for encoding in ("cp1252", "latin-1"):
        try:
            raw.append(str(first).encode(encoding))
        except UnicodeEncodeError:
            continue
    for data in raw:
        for encoding in _UNIT_ENCODINGS:
            try:
                text = normalise_unit(data.decode(encoding))
            except UnicodeDecodeError:
                continue
            if text and text not in readings:
                readings.append(text)
    return readings


def pixel_sides_A(pixel_size_A: float | tuple[float, float] | Any) -> tuple[float, float]:
    """(height, width) of a pixel in Å from one side (square) or (y, x) sides."""
    values = np.atleast_1d(np.asarray(pixel_size_A, dtype=np.float64))
    if values.size == 1:
        return float(values[0]), float(values[0])
    if values.size != 2:
        raise ValueError(f"a pixel size is one length or (y, x), not {values.size} values")
    return float(values[0]), float(values[1])


def pixel_area_A2(pixel_size_A: float | tuple[float, float]) -> float:
    """Area of one pixel in Å²: pixel height × pixel width.

    Parameters
    ----------
    pixel_size_A : float or (float, float)
        Square pixel side, or (y, x) sides, in Å.

    Returns
    -------
    float
    """
    height, width = pixel_sides_A(pixel_size_A)
    return height * width


def electrons_per_pixel(dose_e_per_A2: Any, pixel_size_A: float | tuple[float, float]
                        ) -> np.ndarray:
    """Electrons per pixel ``N_D`` of a dose: dose × pixel height × pixel width.

    ``N_D`` is the quantity of Larsen et al. Eq. 2 (the readout fit) and the noise level
    a denoiser normalises by (Katsuno et al.).

    Parameters
    ----------
    dose_e_per_A2 : float or array-like
        Dose(s) in e⁻/Å².
    pixel_size_A : float or (float, float)
        Square pixel side, or (y, x) sides, in Å.

    Returns
    -------
    ndarray of float64
        Electrons per pixel, the shape of ``dose_e_per_A2``.
    """
    return np.asarray(dose_e_per_A2, dtype=np.float64) * pixel_area_A2(pixel_size_A)
