"""Cheap clean images beyond HR-TEM lattices, for training a denoiser on more variety.

The simulated exit waves (:mod:`.exitwaves`) give HR-TEM images of Au particles on
CeO2 at ~0.05–0.1 Å/px. Real low-dose frames are often something else: low-
magnification fields of nanoparticle aggregates on amorphous supports, at nm per
pixel. :func:`phantom_image` draws such fields without any multislice simulation:

* an amorphous **support** (smooth random texture: low-pass filtered noise, with
  holes of vacuum) or plain vacuum;
* **aggregates**: clusters of overlapping spheres and ellipsoids of random sizes
  (2–30 px across), placed by a random walk from a seed particle, and loose
  particles;
* projected thickness ``t`` turned into intensity by mass-thickness / amplitude
  contrast, ``exp(−μ · t)``, with a random absorption per cluster;
* at random, **lattice fringes** inside particles or over a patch (HR-TEM-like
  images at other samplings: periods of 2.5–12 px), **defocus fringes** (a Fresnel-
  like over/undershoot at edges) and a slight blur (the optics' resolution).

Every image has intensity 1 in vacuum (far from edges), is non-negative, float32, of any
size, and is reproducible from its generator.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["PHANTOM_KINDS", "phantom_image"]

#: The kinds of field :func:`phantom_image` draws (``None`` draws one at random).
PHANTOM_KINDS: tuple[str, ...] = ("aggregates", "support", "particles", "lattice")
#: Least intensity a phantom pixel may have (a fully opaque pixel still lets some through).
_FLOOR = 0.02


def _smooth_noise(shape: tuple[int, int], sigma_px: float,
                  rng: np.random.Generator) -> np.ndarray:
    """White noise low-pass filtered with a Gaussian of ``sigma_px``, scaled to unit std."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    std = float(field.std())
    return field / std if std > 0 else field


def _support_thickness(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Projected thickness (in units of 1/μ) of an amorphous support, with vacuum holes."""
    texture = 0.0
    for sigma in (rng.uniform(0.7, 2.0), rng.uniform(3.0, 12.0)):
        texture = texture + rng.uniform(0.02, 0.12) * _smooth_noise(shape, sigma, rng)
    thickness = rng.uniform(0.05, 0.6) + texture
    if rng.random() < 0.5:
        # Holes: where a very smooth field lies below a threshold, the support is absent.
        holes = _smooth_noise(shape, rng.uniform(15.0, 60.0), rng) < rng.uniform(-1.0, 0.5)
        edge = ndimage.gaussian_filter(holes.astype(np.float64), rng.uniform(0.5, 2.0))
        thickness = thickness * edge
    return np.maximum(thickness, 0.0)


def _add_particle(thickness: np.ndarray, cy: float, cx: float, radius_px: float,
                  rng: np.random.Generator, density: float) -> None:
    """Add the projected thickness of one ellipsoid (a sphere when its axes are equal)."""
    ny, nx = thickness.shape
    ratio = rng.uniform(0.6, 1.0) if rng.random() < 0.5 else 1.0
    a, b = radius_px, radius_px * ratio
    angle = rng.uniform(0.0, math.pi)
    reach = int(math.ceil(a)) + 1
    y0, y1 = max(0, int(cy) - reach), min(ny, int(cy) + reach + 2)
    x0, x1 = max(0, int(cx) - reach), min(nx, int(cx) + reach + 2)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / a
    v = (-dx * math.sin(angle) + dy * math.cos(angle)) / b
    inside = np.clip(1.0 - u * u - v * v, 0.0, None)
    # Projected chord of an ellipsoid: 2 b √(1 − u² − v²), b the axis along the beam.
    thickness[y0:y1, x0:x1] += density * 2.0 * b * np.sqrt(inside)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _aggregate(thickness: np.ndarray, rng: np.random.Generator, *, n_particles: int,
               radius_range_px: tuple[float, float], density: float) -> None:
    """A cluster of touching, overlapping particles grown by a random walk."""
    ny, nx = thickness.shape
    cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
    typical = _log_uniform(rng, *radius_range_px)
    for _ in range(n_particles):
        r = float(np.clip(typical * rng.lognormal(0.0, 0.3), *radius_range_px))
        _add_particle(thickness, cy, cx, r, rng, density)
        step = rng.uniform(0.8, 1.8) * r
        direction = rng.uniform(0.0, 2.0 * math.pi)
        cy, cx = cy + step * math.sin(direction), cx + step * math.cos(direction)
        if not (-r <= cy < ny + r and -r <= cx < nx + r):
            cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)


def _fringes(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Lattice-like fringes: one to three cosines of 2.5–12 px period, contrast ≤ 1."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    period = rng.uniform(2.5, 12.0)
    field = np.zeros(shape)
    n = int(rng.integers(1, 4))
    base = rng.uniform(0.0, math.pi)
    for i in range(n):
        angle = base + i * math.pi / n + rng.normal(0.0, 0.05)
        k = 2.0 * math.pi / period
        field += np.cos(k * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 6.3))
    return field / n


def phantom_image(shape: tuple[int, int], rng: np.random.Generator | int | None = None, *,
                  kind: str | None = None) -> np.ndarray:
    """A clean low-dose training image: aggregates, supports, particles or lattice patches.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` in pixels, each at least 8.
    rng : numpy.random.Generator or int or None
        Generator or seed; the same seed gives the same image.
    kind : {"aggregates", "support", "particles", "lattice"} or None, optional
        ``aggregates``: clusters of overlapping particles (2–30 px across) on a support
        or in vacuum, as at low magnification; ``support``: an amorphous support alone,
        with holes; ``particles``: loose particles on a support; ``lattice``: particles
        and patches with lattice fringes (HR-TEM-like, at other samplings). None: one
        at random.

    Returns
    -------
    ndarray of float32, shape ``shape``
        Intensity, 1 in vacuum, at least 0.02 (a probability density of electrons, ``ψ``,
        ready for :func:`napari_lowdose.noise.apply_detector_noise`).
    """
    rng = np.random.default_rng(rng)
    ny, nx = (int(v) for v in shape)
    if min(ny, nx) < 8:
        raise ValueError(f"a phantom needs at least 8×8 px, got {ny}×{nx}")
    if kind is None:
        kind = PHANTOM_KINDS[int(rng.choice(len(PHANTOM_KINDS), p=[0.45, 0.15, 0.2, 0.2]))]
    if kind not in PHANTOM_KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose from {PHANTOM_KINDS}")
    shape = (ny, nx)
    area = ny * nx
    support = (_support_thickness(shape, rng)
               if kind == "support" or rng.random() < 0.6 else np.zeros(shape))
    particles = np.zeros(shape)
    lattice = np.zeros(shape)
    if kind == "aggregates":
        for _ in range(int(rng.integers(1, 2 + max(1, area // 40000)))):
            _aggregate(particles, rng, n_particles=int(rng.integers(3, 40)),
                       radius_range_px=(1.0, 15.0),
                       density=_log_uniform(rng, 0.005, 0.08))
    if kind in ("particles", "lattice") or (kind == "aggregates" and rng.random() < 0.5):
        density = _log_uniform(rng, 0.005, 0.12)
        for _ in range(max(1, int(rng.poisson(area / rng.uniform(1500.0, 20000.0))))):
            _add_particle(particles, rng.uniform(0, ny), rng.uniform(0, nx),
                          _log_uniform(rng, 1.0, 15.0), rng, density)
    if kind == "lattice":
        inside = np.clip(particles / (particles.max() + 1e-12) * 4.0, 0.0, 1.0)
        lattice = rng.uniform(0.05, 0.4) * _fringes(shape, rng) * inside
        if rng.random() < 0.5:
            # A crystalline patch of the support (or a large crystal) with its own lattice.
            patch = _smooth_noise(shape, rng.uniform(10.0, 40.0), rng) > rng.uniform(0.0, 1.0)
            weight = ndimage.gaussian_filter(patch.astype(np.float64), 1.5)
            lattice = lattice + rng.uniform(0.05, 0.3) * _fringes(shape, rng) * weight
    intensity = np.exp(-(support + particles)) * (1.0 + lattice)
    if rng.random() < 0.5:
        # Defocus: a Fresnel-like fringe at edges (over- and undershoot of the contrast).
        sigma = rng.uniform(0.7, 3.0)
        intensity = intensity + rng.uniform(-0.8, 0.8) * (
            intensity - ndimage.gaussian_filter(intensity, sigma, mode="nearest"))
    blur = rng.uniform(0.0, 1.0)
    if blur > 0.3:
        intensity = ndimage.gaussian_filter(intensity, blur, mode="nearest")
    return np.maximum(intensity, _FLOOR).astype(np.float32)
