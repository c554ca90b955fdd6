"""The layer contract every dock reads: a layer's pixel size in Å, its per-frame dose, the
expected electrons per pixel and the detector gain of its frames.

The rules themselves live in the core (:func:`napari_lowdose.io.layers.pixel_size_A_from_scale`,
:mod:`napari_lowdose.workflows.policies`); these functions only read a napari layer.
"""

import math

import numpy as np

from ..errors import LowdoseError, one_line
from ..io.layers import LOWDOSE_KEY, layer_frame_dose, pixel_size_A_from_scale
from ..io.outputs import frames_array
from ..io.units import electrons_per_pixel
from ..workflows.policies import detector_gain

__all__ = [
    "DENSE_LAYER_MAX_BYTES",
    "blank_output",
    "pick_image_layer",
    "base_data",
    "layer_counts_per_electron",
    "layer_expected_e_per_px",
    "layer_pixel_size_A",
]


#: An output layer (probabilities, masks, denoised frames) larger than this keeps only the
#: frames computed in memory (:func:`napari_lowdose.io.outputs.frames_array`): a few frames
#: of a 200-frame series of 1024² px no longer take 1 GB before the first one is done.
DENSE_LAYER_MAX_BYTES = 200 * 1024 * 1024


def blank_output(shape: tuple[int, ...], dtype, fill):
    """The data of a new output layer of a dock: ``fill`` in every frame, memory only for the
    frames written once it is over :data:`DENSE_LAYER_MAX_BYTES`."""
    return frames_array(shape, dtype, fill, in_memory_limit_bytes=DENSE_LAYER_MAX_BYTES)


def base_data(layer):
    """Full-resolution data of a layer (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_pixel_size_A(layer) -> tuple[float, float] | None:
    """(y, x) pixel size in Å from a layer's scale and units (any length unit), or None.

    Parameters
    ----------
    layer : napari.layers.Layer
        An image (or labels) layer; the last two axes are (y, x).

    Returns
    -------
    (float, float) or None
        None when the layer is uncalibrated (``pixel`` units).
    """
    return pixel_size_A_from_scale(getattr(layer, "scale", None), getattr(layer, "units", None))


def layer_expected_e_per_px(layer, n: int) -> tuple[np.ndarray | None, str]:
    """Expected e⁻ per vacuum pixel of the ``n`` frames of a layer (or None), and why.

    dose × pixel height × pixel width when the layer has a per-frame dose for all its frames
    and a pixel size in Å; otherwise None (the denoiser then uses each frame's
    mean) and a sentence saying what is missing.
    """
    mean = "each frame's mean is used instead"
    try:
        dose = layer_frame_dose(layer.metadata)
    except LowdoseError as err:
        return None, f"dose metadata unreadable ({one_line(err)}): {mean}"
    if dose is None:
        return None, f"no per-frame dose: {mean} (see 'Dose calibration')"
    if dose.n_frames != n:
        return None, f"the dose lists {dose.n_frames} frame(s), the layer has {n}: {mean}"
    pixel = layer_pixel_size_A(layer)
    if pixel is None:
        return None, f"no pixel size in Å: {mean}"
    values = electrons_per_pixel(dose.dose_e_per_A2, pixel)
    if not np.all(np.isfinite(values) & (values > 0)):
        return None, f"some frame doses are not positive: {mean}"
    lo, hi = float(values.min()), float(values.max())
    span = f"{lo:.3g}" if math.isclose(lo, hi) else f"{lo:.3g} … {hi:.3g}"
    return values, f"dose × pixel area: {span} e⁻/px"


def layer_counts_per_electron(layer, value: float = 0.0) -> tuple[float, str]:
    """Detector gain (counts per electron) to normalise a layer's frames with, and why.

    As ``napari-lowdose denoise`` and ``train-denoiser`` choose it
    (:func:`napari_lowdose.workflows.policies.detector_gain`): ``value`` when it is positive
    (the user's), otherwise the gain the layer's file states
    (``metadata["lowdose"]["dose_hints"]["counts_per_electron"]``), otherwise 1
    (frames in electrons).

    Parameters
    ----------
    layer : napari.layers.Image or None
        The layer whose file may state a gain.
    value : float, optional
        The user's gain; 0 (or below): none given.

    Returns
    -------
    gain : float
        Counts per electron, positive.
    text : str
        Where it comes from, for a label.
    """
    user = float(value) if value is not None and math.isfinite(float(value)) else 0.0
    lowdose = {} if layer is None else ((layer.metadata or {}).get(LOWDOSE_KEY) or {})
    stated = (lowdose.get("dose_hints") or {}).get("counts_per_electron")
    try:
        stated = None if stated is None else float(stated)
    except (TypeError, ValueError):
        stated = None
    if stated is not None and not (math.isfinite(stated) and stated > 0):
        stated = None
    gain = detector_gain(user if user > 0 else None, stated)
    if user > 0:
        return gain, f"{gain:g} counts/e⁻ (set here)"
    if stated is not None:
        return gain, f"{gain:g} counts/e⁻ (from the file)"
    return gain, "1 count/e⁻ (the file states no gain: frames taken as electrons)"




def pick_image_layer(viewer, *, suits=None):
    """The image layer a dock should start on: the active one, else the only one that suits.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    suits : callable, optional
        ``suits(layer) -> bool``: whether the dock can work on that image layer
        (e.g. 2-D or 3-D, not RGB); default any image layer.

    Returns
    -------
    napari.layers.Image or None
        None when nothing suits, or several layers suit and none of them is active.
    """
    from napari.layers import Image

    def ok(layer) -> bool:
        return isinstance(layer, Image) and (suits is None or bool(suits(layer)))

    active = viewer.layers.selection.active
    if active is not None and ok(active):
        return active
    candidates = [layer for layer in viewer.layers if ok(layer)]
    return candidates[0] if len(candidates) == 1 else None
