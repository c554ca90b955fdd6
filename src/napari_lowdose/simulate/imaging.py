"""HR-TEM imaging of exit waves: objective lens, blur and detector noise.

The cheap, repeated step of the training-data simulation of Larsen et al.
(2023), Section 2 and Table 1 (SPEC §3): an exit wave, computed once per
structure by abTEM multislice at 300 keV with a unit-amplitude plane wave
(vacuum ``|ψ|² = 1``), is imaged many times ("image epochs") with fresh random
microscope parameters and a fresh frame dose, then given the detector noise
of Eq. 3 (:func:`napari_lowdose.noise.apply_detector_noise`).

Conventions
-----------
* Arrays are ``(ny, nx)``: row = y, column = x, square pixels of
  ``sampling_A`` Å. (abTEM stores ``(nx, ny)``; pass ``wave.T`` to it.)
* The wave covers the whole periodic simulation cell (field of view plus a
  margin on every side). The lens acts on the whole cell, so the wrap-around
  of the CTF's delocalisation lands in the margin; the central field is
  cropped afterwards, and detector noise is applied to the crop.
* Objective lens as in abTEM 1.0 (``abtem.transfer``; Kirkland 2010,
  Eq. 2.22 and Ch. 3.2): ``C10 = −defocus`` (positive defocus = underfocus),
  ``C30 = Cs``, ``α = λ k``,

  ``χ(k) = 2π/λ · (½ C10 α² + ¼ C30 α⁴)``,
  ``E_t(k) = exp(−(½ π/λ · Δ · α²)²)`` with the focal spread ``Δ`` a 1/e width
  (``Δ = √2 σ`` for a Gaussian focal distribution of standard deviation σ),

  and ``CTF(k) = E_t(k) · exp(−i χ(k))`` multiplies ``FFT(ψ)`` — the
  quasi-coherent approximation, exactly what ``abtem.Waves.apply_ctf`` with
  ``abtem.CTF(defocus=…, Cs=…, focal_spread=…)`` does. No objective aperture.
* Blur (Table 1, "blur 0.1–0.8 Å", vibrations / drift / source size) is a
  Gaussian of standard deviation ``blur_A`` applied to the *intensity*, in
  Fourier space: ``× exp(−2π² σ² k²)``.
* Image values are ``|ψ|²`` (vacuum 1) before noise and electrons per pixel
  after it (``N_D = dose · s²`` e⁻/px in vacuum, plus readout noise).

Random draws (Table 1, uniform unless stated; Table 2 doses log-uniform) use
one :class:`numpy.random.Generator`; the same generator state gives the same
parameters and the same image, whatever the number of threads (``workers``,
``scipy.fft`` convention, all CPUs by default; pass ``workers=1`` in a pool of
single-threaded processes — an explicit ``workers`` overrides any
``scipy.fft.set_workers`` context).

Speed: float32/complex64 FFTs (``scipy.fft``) on the whole cell; the CTF is
evaluated on one quadrant of the frequency grid (it is even in ``k_x`` and
``k_y``) and ``k²`` grids are cached per (shape, sampling). A 768² cell takes
about 20–30 ms on two cores for :func:`clean_image`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.constants as const
import scipy.fft

from ..noise.model import NoiseDraw, NoiseModel
from ..noise.presets import PRESETS
from ..noise.synthesis import apply_detector_noise, n_threads

__all__ = [
    "DOSE_RANGES_E_PER_A2",
    "ENERGY_EV",
    "SERIES_OPTICS",
    "TABLE1_OPTICS",
    "Optics",
    "OpticsRanges",
    "clean_image",
    "ctf_array",
    "draw_dose_e_per_A2",
    "draw_optics",
    "electron_wavelength_A",
    "make_dose_series",
    "iter_images",
    "make_image",
    "noisy_image",
]

#: Beam energy of the paper's simulations and experiments (eV).
ENERGY_EV = 300e3

#: Frame-dose ranges of Larsen et al. (2023), Table 2 (e⁻/Å², drawn log-uniformly).
DOSE_RANGES_E_PER_A2: dict[str, tuple[float, float]] = {
    "high": (1e2, 1e6),
    "low": (1e1, 1e4),
}

Crop = tuple[slice, slice]


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
        """Flat dict of the parameters (the keys of a :func:`make_image` record)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Optics:
        """Optics from :meth:`to_dict` or from a :func:`make_image` record.

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


# ---------------------------------------------------------------------------
# Objective lens and clean image
# ---------------------------------------------------------------------------


def _check_sampling(sampling_A: float) -> float:
    s = float(sampling_A)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"sampling_A must be positive, got {sampling_A}")
    return s


@lru_cache(maxsize=8)
def _k2_grid(shape: tuple[int, int], sampling_A: float, rfft: bool) -> np.ndarray:
    """``k²`` (1/Å²) on the FFT grid of ``shape`` (rfft: last axis halved), read-only."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny, d=sampling_A)
    kx = np.fft.rfftfreq(nx, d=sampling_A) if rfft else np.fft.fftfreq(nx, d=sampling_A)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    k2.setflags(write=False)
    return k2


@lru_cache(maxsize=8)
def _k2_quadrant(shape: tuple[int, int], sampling_A: float) -> np.ndarray:
    """``k²`` (1/Å²) for the non-negative ``|k_y|, |k_x|`` of the FFT grid, read-only.

    Shape ``(ny // 2 + 1, nx // 2 + 1)``; row ``i`` holds ``|k_y| = i / (ny s)``.
    """
    ny, nx = shape
    ky = np.arange(ny // 2 + 1) / (ny * sampling_A)
    kx = np.arange(nx // 2 + 1) / (nx * sampling_A)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    k2.setflags(write=False)
    return k2


def _mirror_slices(n: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(FFT-grid slice, quadrant slice) pairs covering an axis of length ``n``.

    FFT index ``j`` has ``|frequency|`` index ``min(j, n − j)``: the first
    ``n // 2 + 1`` entries are the quadrant itself, the rest are its rows
    ``n − n // 2 − 1 … 1`` in reverse.
    """
    h = n // 2 + 1
    return ((slice(0, h), slice(0, h)), (slice(h, n), slice(n - h, 0, -1)))


def _ctf_quadrant(shape: tuple[int, int], sampling_A: float, optics: Optics) -> np.ndarray:
    """The CTF of :func:`ctf_array` on the ``|k_y|, |k_x|`` quadrant (it is even in both)."""
    k2 = _k2_quadrant(shape, sampling_A)
    lam = optics.wavelength_A
    # χ = π λ C10 k² + ½ π λ³ C30 k⁴ in float64, wrapped to [−π, π] before float32 trig.
    chi = k2 * (-math.pi * lam * optics.defocus_A + 0.5 * math.pi * lam**3 * optics.cs_A * k2)
    chi -= (2 * math.pi) * np.rint(chi * (1 / (2 * math.pi)))
    chi = chi.astype(np.float32)
    ctf = np.empty(k2.shape, dtype=np.complex64)
    ctf.real = np.cos(chi)
    ctf.imag = np.sin(chi)
    ctf.imag *= -1
    if optics.focal_spread_A > 0:
        arg = (k2 * (0.5 * math.pi * lam * optics.focal_spread_A)).astype(np.float32)
        arg *= arg
        ctf *= np.exp(-arg)
    return ctf


def _shape2(shape: Sequence[int]) -> tuple[int, int]:
    ny, nx = (int(n) for n in shape)
    if ny < 1 or nx < 1:
        raise ValueError(f"shape must be positive, got {tuple(shape)}")
    return (ny, nx)


def ctf_array(shape: tuple[int, int], sampling_A: float, optics: Optics) -> np.ndarray:
    """Coherent transfer function of the objective lens on the FFT grid.

    ``CTF(k) = E_t(k) · exp(−i χ(k))`` with (abTEM 1.0 conventions, Kirkland
    2010 Eq. 2.22 and Ch. 3.2)::

        χ(k)   = 2π/λ (½ C10 α² + ¼ C30 α⁴),   α = λ k,  C10 = −defocus,  C30 = Cs
        E_t(k) = exp(−(½ π/λ · focal_spread · α²)²)

    The temporal envelope multiplies the wave (quasi-coherent approximation),
    as in ``abtem.CTF``; no aperture is applied.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` of the wave.
    sampling_A : float
        Pixel size in Å.
    optics : Optics
        Lens parameters (``blur_A`` is not used here).

    Returns
    -------
    ndarray of complex64, shape ``(ny, nx)``
        In numpy FFT order (zero frequency at ``[0, 0]``); multiply
        ``fft2(ψ)`` by it.
    """
    shape = _shape2(shape)
    quadrant = _ctf_quadrant(shape, _check_sampling(sampling_A), optics)
    out = np.empty(shape, dtype=np.complex64)
    for dy, sy in _mirror_slices(shape[0]):
        for dx, sx in _mirror_slices(shape[1]):
            out[dy, dx] = quadrant[sy, sx]
    return out


def _apply_ctf(spectrum: np.ndarray, sampling_A: float, optics: Optics) -> np.ndarray:
    """``spectrum × ctf_array(...)`` into a new array, without building the full CTF."""
    quadrant = _ctf_quadrant(spectrum.shape, sampling_A, optics)
    out = np.empty_like(spectrum)
    for dy, sy in _mirror_slices(spectrum.shape[0]):
        for dx, sx in _mirror_slices(spectrum.shape[1]):
            np.multiply(spectrum[dy, dx], quadrant[sy, sx], out=out[dy, dx])
    return out


def _blur_kernel(shape: tuple[int, int], sampling_A: float, blur_A: float) -> np.ndarray:
    """Fourier transform of a Gaussian of std ``blur_A`` on the rfft2 grid (float32)."""
    arg = _k2_grid(shape, sampling_A, True) * (-2.0 * math.pi**2 * blur_A**2)
    return np.exp(arg.astype(np.float32))


def _wave_spectrum(wave: np.ndarray, workers: int) -> np.ndarray:
    """``fft2`` of the exit wave in complex64 (validated)."""
    arr = np.asarray(wave)
    if arr.ndim != 2:
        raise ValueError(f"wave must be 2-D (ny, nx), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("wave contains NaN or inf")
    arr = arr.astype(np.complex64, copy=False)
    return scipy.fft.fft2(arr, workers=n_threads(workers))


def _crop(image: np.ndarray, crop: Crop | None) -> np.ndarray:
    if crop is None:
        return image
    if len(crop) != 2 or not all(isinstance(s, slice) for s in crop):
        raise ValueError(f"crop must be a (slice, slice) pair, got {crop!r}")
    out = image[crop]
    if out.size == 0:
        raise ValueError(f"crop {crop!r} of a {image.shape} image is empty")
    return out


def _image_from_spectrum(
    spectrum: np.ndarray, sampling_A: float, optics: Optics, crop: Crop | None, workers: int
) -> np.ndarray:
    """Clean image from ``fft2(ψ)``: lens, ``|·|²``, blur, crop (see :func:`clean_image`)."""
    shape = spectrum.shape
    s = _check_sampling(sampling_A)
    workers = n_threads(workers)
    psi = scipy.fft.ifft2(_apply_ctf(spectrum, s, optics), workers=workers, overwrite_x=True)
    intensity = np.square(psi.real)
    intensity += np.square(psi.imag)
    if optics.blur_A > 0:
        blurred = scipy.fft.rfft2(intensity, workers=workers, overwrite_x=True)
        blurred *= _blur_kernel(shape, s, optics.blur_A)
        intensity = scipy.fft.irfft2(blurred, s=shape, workers=workers, overwrite_x=True)
    out = np.array(_crop(intensity, crop), dtype=np.float32, copy=True)
    # FFT round-off and the band-limited Gaussian can dip a hair below 0 in dark pixels.
    return np.maximum(out, 0.0, out=out)


def clean_image(
    wave: np.ndarray,
    sampling_A: float,
    optics: Optics,
    crop: Crop | None = None,
    *,
    workers: int = -1,
) -> np.ndarray:
    """Noise-free HR-TEM image of an exit wave (Larsen et al. 2023, Section 2).

    ``FFT(ψ) × CTF`` (:func:`ctf_array`) → ``|IFFT|²`` → Gaussian blur of
    standard deviation ``optics.blur_A`` (in Fourier space,
    ``× exp(−2π² σ² k²)``) → crop. All of it on the periodic cell, so the
    crop discards the wrap-around of the delocalised contrast.

    Parameters
    ----------
    wave : ndarray of complex, shape (ny, nx)
        Exit wave of the whole cell, vacuum amplitude 1.
    sampling_A : float
        Pixel size in Å.
    optics : Optics
        Lens and blur parameters.
    crop : (slice, slice), optional
        The field of view inside the cell (``None``: the whole cell).
    workers : int, optional
        FFT threads, ``scipy.fft`` convention (``-1``: all CPUs).

    Returns
    -------
    ndarray of float32
        Intensity, 1 in vacuum, clipped at 0 (float32 FFT round-off).
    """
    spectrum = _wave_spectrum(wave, workers)
    return _image_from_spectrum(spectrum, sampling_A, optics, crop, workers)


# ---------------------------------------------------------------------------
# Noise and image epochs
# ---------------------------------------------------------------------------


def _noise_floats(noise: NoiseDraw) -> dict[str, float]:
    try:
        return {k: float(v) for k, v in noise.as_kwargs().items()}
    except TypeError:
        raise ValueError("noise must be one draw (NoiseModel.sample(rng) without size)") from None


def noisy_image(
    clean: np.ndarray,
    dose_e_per_A2: float,
    sampling_A: float,
    noise: NoiseDraw,
    rng: np.random.Generator,
    *,
    workers: int = -1,
) -> np.ndarray:
    """Detector frame of a clean image in electrons per pixel (Eq. 3).

    ``MTF ⊛ Poisson(N_D · ψ) + Poisson(N0)``, ``N_D = dose · s²``, via
    :func:`~napari_lowdose.noise.apply_detector_noise` with one count per
    electron.

    Parameters
    ----------
    clean : ndarray, shape (ny, nx)
        Clean intensity, vacuum 1.
    dose_e_per_A2 : float
        Frame dose in e⁻/Å².
    sampling_A : float
        Pixel size in Å.
    noise : NoiseDraw
        One draw of ``(c0, c3, N0)`` from a :class:`NoiseModel`.
    rng : numpy.random.Generator
        Random generator.
    workers : int, optional
        Threads (FFT and Poisson draws; the result does not depend on it).

    Returns
    -------
    ndarray of float32
        Electrons per pixel.
    """
    return apply_detector_noise(
        clean,
        float(dose_e_per_A2),
        _check_sampling(sampling_A),
        **_noise_floats(noise),
        counts_per_electron=1.0,
        rng=rng,
        workers=workers,
    )


def _record(
    optics: Optics,
    dose_e_per_A2: float,
    sampling_A: float,
    noise: NoiseDraw,
    noise_model: NoiseModel,
) -> dict[str, Any]:
    return {
        **optics.to_dict(),
        "dose_e_per_A2": float(dose_e_per_A2),
        "electrons_per_px": float(dose_e_per_A2) * sampling_A**2,
        "sampling_A": sampling_A,
        **_noise_floats(noise),
        "noise_model": noise_model.name,
    }


def make_image(
    wave: np.ndarray,
    sampling_A: float,
    crop: Crop | None,
    rng: np.random.Generator,
    *,
    optics_ranges: OpticsRanges = TABLE1_OPTICS,
    dose_range_e_per_A2: Sequence[float] = DOSE_RANGES_E_PER_A2["high"],
    noise_model: NoiseModel = PRESETS["MTF4"],
    workers: int = -1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One image epoch of an exit wave: random optics, dose and detector noise.

    Draws, in this order, the optics (Table 1, uniform), the frame dose
    (Table 2, log-uniform) and the noise parameters (``noise_model.sample``,
    Table 3 ranges, uniform), then makes the clean image
    (:func:`clean_image`) and the noisy frame (:func:`noisy_image`, Eq. 3).

    Parameters
    ----------
    wave : ndarray of complex, shape (ny, nx)
        Exit wave of the whole cell, vacuum amplitude 1.
    sampling_A : float
        Pixel size in Å.
    crop : (slice, slice) or None
        Field of view inside the cell.
    rng : numpy.random.Generator
        Random generator (the same state gives the same image and record).
    optics_ranges : OpticsRanges, optional
        Table 1 by default.
    dose_range_e_per_A2 : (float, float), optional
        Table 2 "high" range (10²…10⁶ e⁻/Å²) by default.
    noise_model : NoiseModel, optional
        Table 3 MTF 4 (the paper's best) by default.
    workers : int, optional
        Threads, ``scipy.fft`` convention (``-1``: all CPUs; 1 in a process
        pool of single-threaded workers). The image does not depend on it.

    Returns
    -------
    image : ndarray of float32
        Noisy frame in electrons per pixel.
    record : dict
        ``defocus_A, cs_A, focal_spread_A, blur_A, energy_eV, dose_e_per_A2,
        electrons_per_px, sampling_A, c0, c3, n0_e_per_px, noise_model``
        (``Optics.from_dict(record)`` rebuilds the optics).
    """
    return next(
        iter_images(
            wave, sampling_A, crop, [np.random.default_rng(rng)],
            optics_ranges=optics_ranges, dose_range_e_per_A2=dose_range_e_per_A2,
            noise_model=noise_model, workers=workers,
        )
    )


def iter_images(
    wave: np.ndarray,
    sampling_A: float,
    crop: Crop | None,
    rngs: Iterable[np.random.Generator],
    *,
    optics_ranges: OpticsRanges = TABLE1_OPTICS,
    dose_range_e_per_A2: Sequence[float] = DOSE_RANGES_E_PER_A2["high"],
    noise_model: NoiseModel = PRESETS["MTF4"],
    workers: int = -1,
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Image epochs of one exit wave, one per generator: :func:`make_image` for each.

    The wave is Fourier transformed once for all of them; image ``i`` equals
    ``make_image(wave, ..., rngs[i])`` exactly.

    Yields
    ------
    image, record
        As returned by :func:`make_image`.
    """
    s = _check_sampling(sampling_A)
    spectrum = _wave_spectrum(wave, workers)
    for rng in rngs:
        optics = draw_optics(rng, optics_ranges)
        dose = draw_dose_e_per_A2(rng, dose_range_e_per_A2)
        noise = noise_model.sample(rng)
        clean = _image_from_spectrum(spectrum, s, optics, crop, workers)
        image = noisy_image(clean, dose, s, noise, rng, workers=workers)
        yield image, _record(optics, dose, s, noise, noise_model)


def make_dose_series(
    wave: np.ndarray,
    sampling_A: float,
    crop: Crop | None,
    doses_e_per_A2: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    *,
    optics_ranges: OpticsRanges = SERIES_OPTICS,
    noise_model: NoiseModel = PRESETS["MTF3"],
    workers: int = -1,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """A simulated dose series of one structure (Larsen et al. 2023, SOI Fig. 9).

    One detector: the noise parameters are drawn once from ``noise_model``.
    The microscope drifts a little: optics are drawn per frame from the narrow
    ``optics_ranges`` (all frames' optics are drawn before any noise, so the
    clean series does not depend on the noise model). The exit wave is
    Fourier transformed once.

    Parameters
    ----------
    wave : ndarray of complex, shape (ny, nx)
        Exit wave of the whole cell, vacuum amplitude 1.
    sampling_A : float
        Pixel size in Å.
    crop : (slice, slice) or None
        Field of view inside the cell.
    doses_e_per_A2 : sequence of float
        Frame doses in e⁻/Å² (SOI Fig. 9: 1000 frames over 10¹…10⁴).
    rng : numpy.random.Generator
        Random generator (the same state gives the same series).
    optics_ranges : OpticsRanges, optional
        :data:`SERIES_OPTICS` (defocus 48–50 Å, Cs 7–8 µm, focal spread
        5–6 Å, blur 0.1–0.2 Å) by default.
    noise_model : NoiseModel, optional
        Table 3 MTF 3 by default, as in SOI Fig. 9.
    workers : int, optional
        Threads, ``scipy.fft`` convention (``-1``: all CPUs). The series does
        not depend on it.

    Returns
    -------
    noisy : ndarray of float32, shape (n_frames, ny', nx')
        Frames in electrons per pixel.
    clean : ndarray of float32, shape (n_frames, ny', nx')
        The clean image of every frame (optics differ slightly per frame).
    records : list of dict
        Per frame: the keys of a :func:`make_image` record plus ``frame``.
    """
    rng = np.random.default_rng(rng)
    s = _check_sampling(sampling_A)
    doses = np.asarray(doses_e_per_A2, dtype=np.float64).reshape(-1)
    if doses.size == 0 or not np.all(np.isfinite(doses)) or np.any(doses < 0):
        raise ValueError("doses_e_per_A2 must be a non-empty sequence of finite doses >= 0")
    noise = noise_model.sample(rng)
    optics = [draw_optics(rng, optics_ranges) for _ in range(doses.size)]
    spectrum = _wave_spectrum(wave, workers)
    first = _image_from_spectrum(spectrum, s, optics[0], crop, workers)
    clean = np.empty((doses.size,) + first.shape, dtype=np.float32)
    noisy = np.empty_like(clean)
    clean[0] = first
    records = []
    for i, (dose, frame_optics) in enumerate(zip(doses, optics, strict=True)):
        if i:
            clean[i] = _image_from_spectrum(spectrum, s, frame_optics, crop, workers)
        noisy[i] = noisy_image(clean[i], dose, s, noise, rng, workers=workers)
        records.append({"frame": i, **_record(frame_optics, dose, s, noise, noise_model)})
    return noisy, clean, records
