"""Length units found in TEM metadata, converted to ångström."""

import math

__all__ = ["length_to_angstrom_factor", "normalise_unit"]

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
    text = normalise_unit(unit)
    if not text:
        return None
    factor = _TO_ANGSTROM.get(text, _TO_ANGSTROM.get(text.lower()))
    if factor is None or not math.isfinite(factor):
        return None
    return factor
