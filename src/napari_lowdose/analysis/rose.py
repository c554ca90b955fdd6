"""The physics next to the network: the Rose criterion's dose for a particle of a given size
and contrast (Rose 1948; used for low-dose imaging by Larsen et al. 2023).

An object of area ``A`` and contrast ``C`` (relative to the background intensity) is
detectable when its signal-to-noise ratio ``C · √(dose · A)`` reaches ``k = 5``, i.e. from
the dose ``k² / (C² · A)``. The contrast is measured on the highest-dose frames, inside the
consensus mask against a ring around it.

The ring is set in ångström, not pixels: at HR-TEM samplings (0.05–0.1 Å/px) a ring a few
pixels wide lies inside the particle's own Fresnel fringes and delocalised lattice signal,
where the intensity is neither particle nor background. A 1 Å gap and a 4 Å ring measure,
on the noise-free images of the validation battery (:mod:`napari_lowdose.workflows.battery`),
contrasts of 0.02–0.11 against 0.03–0.21 for a 0.15 Å gap and 0.45 Å ring, whose sign also
flips with defocus.

Several particles (:func:`~napari_lowdose.analysis.consensus.particle_labels`): each
particle's own component of the consensus is its mask, and its ring leaves out the other
particles and their gap (:func:`rose_readouts`); the whole-field entry takes the consensus
as one mask.
"""

import math
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["ROSE_GAP_A", "ROSE_K", "ROSE_RING_A", "particle_contrast", "rose_dose_e_per_A2",
           "rose_readout", "rose_readouts"]

#: The Rose criterion's signal-to-noise ratio for certain detection.
ROSE_K = 5.0
#: Distance of the background ring from the particle and its width, in Å.
ROSE_GAP_A = 1.0
ROSE_RING_A = 4.0


def particle_contrast(frame: Any, mask: Any, *, ring_px: int = 6, gap_px: int = 2,
                      pixel_size_A: float | tuple[float, float] | None = None,
                      exclude: Any = None) -> float:
    """Contrast of a particle: (mean inside − mean of a ring around it) / frame mean.

    Parameters
    ----------
    frame : array, shape (y, x)
        An image (a high-dose frame, or the mean of several), any units.
    mask : array of bool, shape (y, x)
        The particle.
    ring_px, gap_px : int
        Width of the background ring and its distance from the mask, in pixels, for an
        uncalibrated image.
    pixel_size_A : float or (float, float), optional
        Pixel size: the ring is then :data:`ROSE_GAP_A` from the mask and
        :data:`ROSE_RING_A` wide (``ring_px`` and ``gap_px`` are ignored).
    exclude : array of bool, shape (y, x), optional
        Pixels that are not background (other particles): left out of the ring, with the
        same gap around them.

    Returns
    -------
    float
        Signed contrast (negative for a particle darker than its surroundings); NaN when
        the mask or the ring is empty.
    """
    image = np.asarray(frame, dtype=np.float64)
    inside = np.asarray(mask, dtype=bool)
    if not inside.any():
        return math.nan
    if pixel_size_A is not None:
        side_A = float(np.mean(np.broadcast_to(np.asarray(pixel_size_A, dtype=float), (2,))))
        gap_px = max(1, round(ROSE_GAP_A / side_A))
        ring_px = max(1, round(ROSE_RING_A / side_A))
    mean = image.mean()
    # Only the window that the ring (and the gap around other particles) can reach: a
    # small particle in a large field costs its neighbourhood, not the field.
    window = _window(inside, gap_px + ring_px + gap_px)
    image, inside = image[window], inside[window]
    grown = ndimage.binary_dilation(inside, iterations=gap_px)
    ring = ndimage.binary_dilation(grown, iterations=ring_px) & ~grown
    if exclude is not None:
        others = np.asarray(exclude, dtype=bool)[window]
        if others.any():
            ring &= ~ndimage.binary_dilation(others, iterations=gap_px)
    if not ring.any() or mean == 0:
        return math.nan
    return float((image[inside].mean() - image[ring].mean()) / mean)


def _window(mask: np.ndarray, margin_px: int) -> tuple[slice, slice]:
    """The bounding box of ``mask`` grown by ``margin_px`` on every side, in the image."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (slice(max(rows[0] - margin_px, 0), rows[-1] + margin_px + 1),
            slice(max(cols[0] - margin_px, 0), cols[-1] + margin_px + 1))


def rose_dose_e_per_A2(contrast: float, area_A2: float, *, k: float = ROSE_K) -> float:
    """Dose from which an object of ``area_A2`` and ``contrast`` meets the Rose criterion.

    Parameters
    ----------
    contrast : float
        Relative contrast (its sign does not matter).
    area_A2 : float
        The object's area in Å² (a whole particle, or 100 Å² for a 1 nm² patch).
    k : float
        Required signal-to-noise ratio (5).

    Returns
    -------
    float
        ``k² / (C² · A)`` in e⁻/Å²; inf for zero contrast, NaN for a NaN contrast.
    """
    if not math.isfinite(contrast):
        return math.nan
    if contrast == 0 or area_A2 <= 0:
        return math.inf
    return k * k / (contrast * contrast * area_A2)


def rose_readout(high_dose_image: Any, consensus: Any,
                 pixel_size_A: float | tuple[float, float] | None, *,
                 exclude: Any = None) -> dict[str, Any]:
    """The particle's contrast and its Rose doses, for a run's summary.

    Parameters
    ----------
    high_dose_image : array, shape (y, x)
        The mean of the highest-dose frames (the consensus frames), in the frames' units.
    consensus : array of bool, shape (y, x)
        The consensus mask (:class:`~napari_lowdose.analysis.consensus.ConsensusReadout`).
    pixel_size_A : float or (float, float) or None
        Pixel size; without it only the contrast is given.
    exclude : array of bool, shape (y, x), optional
        Other particles, left out of the background ring (:func:`particle_contrast`).

    Returns
    -------
    dict
        ``particle_contrast``, ``particle_area_nm2``, ``rose_dose_particle_e_per_A2`` (the
        whole particle) and ``rose_dose_1nm2_e_per_A2`` (a 1 nm² patch of it); None where
        not computable.
    """
    from ..io.units import pixel_area_A2

    contrast = particle_contrast(high_dose_image, consensus, pixel_size_A=pixel_size_A,
                                 exclude=exclude)
    finite = math.isfinite(contrast)
    record: dict[str, Any] = {"particle_contrast": contrast if finite else None,
                              "particle_area_nm2": None, "rose_dose_particle_e_per_A2": None,
                              "rose_dose_1nm2_e_per_A2": None, "rose_k": ROSE_K}
    if pixel_size_A is None or not finite:
        return record
    area_A2 = float(np.count_nonzero(consensus)) * pixel_area_A2(pixel_size_A)

    def dose(area: float) -> float | None:
        value = rose_dose_e_per_A2(contrast, area)
        return value if math.isfinite(value) else None

    record.update(particle_area_nm2=area_A2 / 100.0,
                  rose_dose_particle_e_per_A2=dose(area_A2),
                  rose_dose_1nm2_e_per_A2=dose(100.0))
    return record


def rose_readouts(high_dose_image: Any, consensus: Any,
                  pixel_size_A: float | tuple[float, float] | None) -> dict[str, Any]:
    """The Rose readout of the whole consensus and of each of its particles.

    Parameters
    ----------
    high_dose_image : array, shape (y, x)
        The mean of the highest-dose frames, aligned on the consensus.
    consensus : array of bool, shape (y, x)
        The consensus mask.
    pixel_size_A : float or (float, float) or None
        Pixel size; without it only the contrasts are given.

    Returns
    -------
    dict
        :func:`rose_readout` of the whole consensus (one mask), with ``particles``: one
        :func:`rose_readout` per particle (``particle`` 1, 2, … by size, as
        :func:`~napari_lowdose.analysis.consensus.particle_readouts` numbers them), its own
        component as the mask and the other particles left out of its ring.
    """
    from .consensus import particle_labels

    mask = np.asarray(consensus, dtype=bool)
    labels, n = particle_labels(mask)
    particles = []
    for number in range(1, n + 1):
        own = labels == number
        particles.append({"particle": number,
                          **rose_readout(high_dose_image, own, pixel_size_A,
                                         exclude=mask & ~own)})
    return {**rose_readout(high_dose_image, mask, pixel_size_A), "particles": particles}
