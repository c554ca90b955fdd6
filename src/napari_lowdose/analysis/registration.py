"""Translation between images of the same field: subpixel registration and shifting.

Used to pair a short exposure with a long one (Katsuno et al. 2021: both of the
same field) and to align the frames of a dose series before Noise2Noise pairs are
drawn from it (Katsuno et al. 2021). Pure numpy/scipy/scikit-image.

Convention: :func:`register_translation` returns the shift ``(dy, dx)`` in pixels
that, applied to ``moving`` with :func:`shift_image`, brings it onto
``reference``: ``shift_image(moving, register_translation(reference, moving))
≈ reference``. A positive ``dy`` moves the content down (to larger row indices).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["overlap", "register_translation", "register_whole_pixels", "shift_image"]

#: Fraction of each axis tapered by the registration window (cosine edges, flat centre).
_TUKEY_ALPHA = 0.25


def _prepare(image: np.ndarray, sigma_px: float, window: bool) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("the image holds NaN or inf")
    if sigma_px > 0:
        arr = ndimage.gaussian_filter(arr, sigma_px, mode="nearest")
    arr = arr - arr.mean()
    if window:
        from scipy.signal.windows import tukey

        arr = arr * np.outer(tukey(arr.shape[0], _TUKEY_ALPHA), tukey(arr.shape[1], _TUKEY_ALPHA))
    return arr


def register_translation(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    upsample: int = 20,
    sigma_px: float = 1.0,
    window: bool = True,
    refine: int = 1,
) -> tuple[float, float]:
    """Subpixel shift that brings ``moving`` onto ``reference``.

    The peak of the cross-correlation, refined by matrix-multiply DFT upsampling
    (Guizar-Sicairos et al. 2008, :func:`skimage.registration.phase_cross_correlation`).
    Both images are low-passed (``sigma_px``), mean-subtracted and, by default,
    multiplied by a Tukey window (cosine taper over the outer 12.5 % of each side, so
    the wrap-around edge does not pull the peak to zero shift). Plain
    cross-correlation, not phase correlation, is used: it is the matched filter for
    noisy low-dose frames (phase correlation whitens, i.e. amplifies, the noise).
    The window pulls the peak slightly towards zero shift (by a few % of the
    shift), so ``refine`` more passes register ``moving`` shifted by the estimate
    so far and add the residual.

    Parameters
    ----------
    reference, moving : ndarray, shape (y, x)
        Images of the same field and shape.
    upsample : int, optional
        Precision is ``1 / upsample`` px.
    sigma_px : float, optional
        Gaussian low-pass (standard deviation in px) applied to both first (1 px by
        default: steadier at low dose; 0: none).
    window : bool, optional
        Apply the Tukey window.
    refine : int, optional
        Extra passes on the shifted image (1 by default).

    Returns
    -------
    (dy, dx) : tuple of float
        Shift in pixels for :func:`shift_image` (rows, columns).

    Raises
    ------
    ValueError
        If the images are not 2-D of the same shape, hold NaN/inf, or ``upsample < 1``.
    """
    from skimage.registration import phase_cross_correlation

    if int(upsample) < 1:
        raise ValueError(f"upsample must be >= 1, got {upsample}")
    if int(refine) < 0:
        raise ValueError(f"refine must be >= 0, got {refine}")
    ref = _prepare(reference, sigma_px, window)
    moving = np.asarray(moving, dtype=np.float64)
    if ref.shape != moving.shape:
        raise ValueError(f"images of different shapes: {ref.shape} and {moving.shape}")
    total = np.zeros(2)
    for step in range(int(refine) + 1):
        moved = moving if step == 0 else ndimage.shift(moving, total, order=3, mode="nearest")
        shift, _, _ = phase_cross_correlation(
            ref, _prepare(moved, sigma_px, window), upsample_factor=int(upsample),
            normalization=None,
        )
        total += shift
        if not np.any(shift):
            break
    return float(total[0]), float(total[1])


def shift_image(
    image: np.ndarray, shift_px: tuple[float, float], *, order: int = 3, mode: str = "nearest"
) -> np.ndarray:
    """Translate an image by ``(dy, dx)`` pixels (spline interpolation).

    Parameters
    ----------
    image : ndarray, shape (y, x)
        The image.
    shift_px : (float, float)
        Shift in pixels, as returned by :func:`register_translation`.
    order : int, optional
        Spline order (3: cubic; 1: linear, no overshoot).
    mode : str, optional
        How pixels shifted in from outside are filled (:func:`scipy.ndimage.shift`);
        the ``ceil(|shift|)`` px border is extrapolated either way, so crop it away
        where it matters.

    Returns
    -------
    ndarray of float32
        The shifted image, same shape.
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {arr.shape}")
    dy, dx = (float(v) for v in shift_px)
    if dy == 0 and dx == 0:
        return arr.copy()
    return ndimage.shift(arr, (dy, dx), order=order, mode=mode).astype(np.float32, copy=False)


def overlap(a: np.ndarray, b: np.ndarray, shift_px: tuple[int, int]
            ) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` moved by the whole-pixel ``(dy, dx)``, cut to where both have pixels.

    Pixel ``(y, x)`` of ``a`` pairs with ``b[y − dy, x − dx]`` (the convention of
    :func:`register_translation`); the two cuts have the same shape.
    """
    dy, dx = (int(v) for v in shift_px)
    ny, nx = a.shape[-2:]
    a_cut = a[..., max(dy, 0):ny + min(dy, 0), max(dx, 0):nx + min(dx, 0)]
    b_cut = b[..., max(-dy, 0):ny + min(-dy, 0), max(-dx, 0):nx + min(-dx, 0)]
    return a_cut, b_cut


def register_whole_pixels(reference: np.ndarray, moving: np.ndarray, *,
                          register: bool = True) -> tuple[int, int]:
    """The nearest whole-pixel shift that brings ``moving`` onto ``reference``.

    Two exposures of the same field are compared on whole pixels (:func:`overlap`),
    never interpolated: a spline is a low-pass filter, which would shrink and
    correlate the noise of the moved frame (the noise fit from frame pairs,
    :mod:`napari_lowdose.noise.pairs`, and the denoising quality readout,
    :mod:`napari_lowdose.analysis.denoise_quality`, both rely on its noise being
    intact). The sub-pixel remainder (≤ 0.5 px) is left.

    Parameters
    ----------
    reference, moving : ndarray, shape (y, x)
        Images of the same field and shape.
    register : bool, optional
        False: the images are known to be aligned; ``(0, 0)``.

    Returns
    -------
    (dy, dx) : tuple of int
    """
    if not register:
        return 0, 0
    dy, dx = register_translation(reference, moving)
    return int(round(dy)), int(round(dx))
