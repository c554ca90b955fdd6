"""Microscope parameters of the training-data simulation (Larsen et al. 2023, Tables 1–2).

* :class:`OpticsRanges` — the uniform ranges of Table 1 (defocus, Cs, focal
  spread, blur), :data:`TABLE1_OPTICS`, and the narrower ranges of the
  validation series (:data:`SERIES_OPTICS`, SOI Fig. 9).
* :class:`Optics` — one set of parameters; :func:`draw_optics` draws it.
* :data:`DOSE_RANGES_E_PER_A2` — the frame-dose ranges of Table 2, drawn
  log-uniformly by :func:`draw_dose_e_per_A2`.
* :data:`ENERGY_EV` and :func:`electron_wavelength_A` — the 300 keV beam.

Defocus follows abTEM's sign (positive = underfocus, ``C10 = −defocus``); the
focal spread is a 1/e width (``Δ = √2 σ`` for a Gaussian focal distribution
of standard deviation σ). Every draw uses the given
:class:`numpy.random.Generator`, so the same generator state gives the same
parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import scipy.constants as const

__all__ = [
    "DOSE_RANGES_E_PER_A2",
    "ENERGY_EV",
    "SERIES_OPTICS",
    "TABLE1_OPTICS",
    "Optics",
    "OpticsRanges",
    "draw_dose_e_per_A2",
    "draw_optics",
    "electron_wavelength_A",
]


#: Beam energy of the paper's simulations and experiments (eV).
ENERGY_EV = 300e3

#: Frame-dose ranges of Larsen et al. (2023), Table 2 (e⁻/Å², drawn log-uniformly).
DOSE_RANGES_E_PER_A2: dict[str, tuple[float, float]] = {
    "high": (1e2, 1e6),
    "low": (1e1, 1e4),
}


def electron_wavelength_A(energy_eV: float) -> float:
    """Relativistic de Broglie wavelength of an electron.

    ``λ = h c / √(E (E + 2 m c²))`` with ``E = e · energy_eV``.

    Parameters
    ----------
    energy_eV : float
        Kinetic energy in eV (300 keV → 0.019687 Å).

    Returns
    -------
    float
        Wavelength in Å.
    """
    if not energy_eV > 0:
        raise ValueError(f"energy_eV must be positive, got {energy_eV}")
    energy_J = energy_eV * const.e
    rest_J = const.m_e * const.c**2
    return const.h * const.c / math.sqrt(energy_J * (energy_J + 2.0 * rest_J)) * 1e10


# ---------------------------------------------------------------------------
# Parameters and their ranges (Table 1)
# ---------------------------------------------------------------------------


def _pair(value: Any, name: str, *, non_negative: bool) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite, got {(lo, hi)}")
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, got {(lo, hi)}")
    if non_negative and lo < 0:
        raise ValueError(f"{name} must be non-negative, got {(lo, hi)}")
    return (lo, hi)


@dataclass(frozen=True)
class OpticsRanges:
    """Uniform ranges of the imaging parameters (Larsen et al. 2023, Table 1).

    Every field is a ``(low, high)`` pair; :func:`draw_optics` draws each
    value uniformly from it (``low == high`` fixes the value).

    Parameters
    ----------
    defocus_A : tuple of float
        Defocus in Å, abTEM sign (positive = underfocus); Table 1: −200…200.
    cs_A : tuple of float
        Spherical aberration ``C30`` in Å; Table 1: 0…12.45 µm.
    focal_spread_A : tuple of float
        Focal spread (1/e width, as in abTEM) in Å; Table 1: 5…20.
    blur_A : tuple of float
        Standard deviation of the Gaussian image blur in Å; Table 1: 0.1…0.8.
    """

    defocus_A: tuple[float, float] = (-200.0, 200.0)
    cs_A: tuple[float, float] = (0.0, 12.45e4)
    focal_spread_A: tuple[float, float] = (5.0, 20.0)
    blur_A: tuple[float, float] = (0.1, 0.8)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = _pair(getattr(self, f.name), f.name, non_negative=f.name != "defocus_A")
            object.__setattr__(self, f.name, value)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready dict of ``[low, high]`` lists."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpticsRanges:
        """Inverse of :meth:`to_dict`; missing keys take the Table 1 defaults.

        Raises
        ------
        ValueError
            For unknown keys or invalid ranges.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown optics-range keys {unknown}; expected {sorted(names)}")
        return cls(**{k: tuple(v) for k, v in data.items()})


#: Table 1 of Larsen et al. (2023): the training-data ranges.
TABLE1_OPTICS = OpticsRanges()

#: SOI Fig. 9 validation series: narrow ranges around one microscope setting.
SERIES_OPTICS = OpticsRanges(
    defocus_A=(48.0, 50.0), cs_A=(7e4, 8e4), focal_spread_A=(5.0, 6.0), blur_A=(0.1, 0.2)
)


@dataclass(frozen=True)
class Optics:
    """One set of imaging parameters (see the module notes for conventions).

    Parameters
    ----------
    defocus_A : float
        Defocus in Å (``C10 = −defocus``; positive = underfocus).
    cs_A : float
        Spherical aberration ``C30`` in Å (1 µm = 10⁴ Å).
    focal_spread_A : float
        Focal spread, 1/e width, in Å (0 = fully coherent).
    blur_A : float
        Standard deviation of the Gaussian intensity blur in Å (0 = none).
    energy_eV : float, optional
        Beam energy in eV.
    """

    defocus_A: float
    cs_A: float
    focal_spread_A: float
    blur_A: float
    energy_eV: float = ENERGY_EV

    def __post_init__(self) -> None:
        for f in fields(self):
            value = float(getattr(self, f.name))
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value}")
            if f.name != "defocus_A" and value < 0:
                raise ValueError(f"{f.name} must be non-negative, got {value}")
            object.__setattr__(self, f.name, value)
        if self.energy_eV <= 0:
            raise ValueError(f"energy_eV must be positive, got {self.energy_eV}")

    @property
    def wavelength_A(self) -> float:
        """Electron wavelength in Å."""
        return electron_wavelength_A(self.energy_eV)

    def to_dict(self) -> dict[str, float]:
        """Flat dict of the parameters (the keys of a :func:`~.imaging.make_image` record)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Optics:
        """Optics from :meth:`to_dict` or from a :func:`~.imaging.make_image` record.

        Keys that are not fields (``dose_e_per_A2``, ``c0`` …) are ignored;
        a missing ``energy_eV`` is :data:`ENERGY_EV`.
        """
        names = [f.name for f in fields(cls)]
        return cls(**{k: data[k] for k in names if k in data})


def draw_optics(rng: np.random.Generator, ranges: OpticsRanges = TABLE1_OPTICS) -> Optics:
    """Draw imaging parameters uniformly from ``ranges`` (Table 1).

    Parameters
    ----------
    rng : numpy.random.Generator
        Consumes exactly four uniform draws (defocus, Cs, focal spread, blur).
    ranges : OpticsRanges, optional
        Table 1 by default.

    Returns
    -------
    Optics
        At :data:`ENERGY_EV`.
    """
    values = {f.name: float(rng.uniform(*getattr(ranges, f.name))) for f in fields(ranges)}
    return Optics(**values)


def draw_dose_e_per_A2(rng: np.random.Generator, dose_range: Sequence[float]) -> float:
    """Draw a frame dose log-uniformly from ``dose_range`` (Table 2).

    Parameters
    ----------
    rng : numpy.random.Generator
        Consumes one uniform draw.
    dose_range : (float, float)
        ``(low, high)`` in e⁻/Å², ``0 < low <= high``; see
        :data:`DOSE_RANGES_E_PER_A2`.

    Returns
    -------
    float
        Dose in e⁻/Å² (median = geometric mean of the range).
    """
    lo, hi = _pair(dose_range, "dose_range", non_negative=True)
    if lo <= 0:
        raise ValueError(f"dose_range must be positive for a log-uniform draw, got {(lo, hi)}")
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
