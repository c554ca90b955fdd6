"""HR-TEM images of exit waves: objective lens, blur and detector noise.

The cheap, repeated step of the training-data simulation of Larsen et al.
(2023), Section 2 and Table 1: an exit wave, computed once per structure by
abTEM multislice at 300 keV with a unit-amplitude plane wave (vacuum
``|ψ|² = 1``), is imaged many times ("image epochs") with fresh random
microscope parameters (:mod:`.optics`, Table 1) and a fresh frame dose
(Table 2), then given the detector noise of Eq. 3
(:func:`napari_lowdose.noise.apply_detector_noise`).

Conventions
-----------
* Arrays are ``(ny, nx)``: row = y, column = x, square pixels of
  ``sampling_A`` Å. (abTEM stores ``(nx, ny)``; pass ``wave.T`` to it.)
* The wave covers the whole periodic simulation cell (field of view plus a
  margin on every side). The lens (:func:`~.ctf.ctf_array`) acts on the whole
  cell, so the wrap-around of the CTF's delocalisation lands in the margin;
  the central field is cropped afterwards, and detector noise is applied to
  the crop.
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

Speed: float32/complex64 FFTs (``scipy.fft``) on the whole cell. A 768² cell
takes about 20–30 ms on two cores for :func:`clean_image`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import scipy.fft

from ..io.units import electrons_per_pixel
from ..noise.model import NoiseDraw, NoiseModel
from ..noise.presets import PRESETS
from ..noise.synthesis import apply_detector_noise, n_threads
from .ctf import apply_ctf, check_sampling, k2_grid
from .optics import (
    DOSE_RANGES_E_PER_A2,
    SERIES_OPTICS,
    TABLE1_OPTICS,
    Optics,
    OpticsRanges,
    draw_dose_e_per_A2,
    draw_optics,
)

__all__ = [
    "NOISE_MARGIN_PX",
    "clean_image",
    "iter_images",
    "make_dose_series",
    "make_image",
    "noisy_crop",
    "noisy_image",
]

#: Margin (px) noised around a crop so that the MTF's periodic FFT, whose point-spread
#: function is a few pixels wide, does not wrap round into it.
NOISE_MARGIN_PX = 16

Crop = tuple[slice, slice]


def _blur_kernel(shape: tuple[int, int], sampling_A: float, blur_A: float) -> np.ndarray:
    """Fourier transform of a Gaussian of std ``blur_A`` on the rfft2 grid (float32)."""
    arg = k2_grid(shape, sampling_A, True) * (-2.0 * math.pi**2 * blur_A**2)
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
    s = check_sampling(sampling_A)
    workers = n_threads(workers)
    psi = scipy.fft.ifft2(apply_ctf(spectrum, s, optics), workers=workers, overwrite_x=True)
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

    ``FFT(ψ) × CTF`` (:func:`~.ctf.ctf_array`) → ``|IFFT|²`` → Gaussian blur of
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
        check_sampling(sampling_A),
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
        "electrons_per_px": float(electrons_per_pixel(dose_e_per_A2, sampling_A)),
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
    s = check_sampling(sampling_A)
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
        :data:`~.optics.SERIES_OPTICS` (defocus 48–50 Å, Cs 7–8 µm, focal spread
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
    s = check_sampling(sampling_A)
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


def noisy_crop(clean: np.ndarray, window: tuple[int, int, int, int], dose_e_per_A2: float,
               sampling_A: float, noise: NoiseDraw, rng: np.random.Generator, *,
               workers: int = 1) -> np.ndarray:
    """:func:`noisy_image` of one window of ``clean``, noising only it and a margin.

    Parameters
    ----------
    clean : ndarray, shape (ny, nx)
        Clean intensity, vacuum 1.
    window : (y0, x0, height, width)
        The crop, inside ``clean``.
    dose_e_per_A2, sampling_A, noise, rng, workers
        As for :func:`noisy_image`.

    Returns
    -------
    ndarray, shape (height, width)
        The detector frame of the window: the same as cropping the noisy whole image,
        up to :data:`NOISE_MARGIN_PX` of the MTF's wrap-round.
    """
    y0, x0, height, width = (int(v) for v in window)
    ny, nx = clean.shape
    m = NOISE_MARGIN_PX
    top, left = max(0, y0 - m), max(0, x0 - m)
    region = clean[top:min(ny, y0 + height + m), left:min(nx, x0 + width + m)]
    noisy = noisy_image(region, dose_e_per_A2, sampling_A, noise, rng, workers=workers)
    return noisy[y0 - top:y0 - top + height, x0 - left:x0 - left + width]
