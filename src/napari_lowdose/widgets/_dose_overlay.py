"""The dose of the frame shown, written on the canvas.

Every dock that works on dose series calls :func:`show_frame_dose` when it opens: the
viewer's text overlay then reads, for the selected (else the first) image layer that
has a per-frame dose, ``frame 12 · 240 e⁻/Å² · 1.35 e⁻/px`` over ``cumulative 1300 e⁻/Å²``,
and follows the frame slider (two short lines: one long line was cut off where docks
narrow the canvas). Idempotent: a viewer
gets one overlay however many docks call it.
"""

import weakref

from ..io.layers import layer_frame_dose
from ..io.units import electrons_per_pixel
from ._common import shown_frame
from ._layers import layer_pixel_size_A

__all__ = ["frame_dose_text", "show_frame_dose"]

_INSTALLED: "weakref.WeakSet" = weakref.WeakSet()


def frame_dose_text(layer, frame: int, *, named: bool = False) -> str:
    """Two lines for ``frame`` of ``layer``: its dose and e⁻/px, then the cumulative dose;
    "" if none.

    Parameters
    ----------
    layer : napari.layers.Image
        A layer whose metadata holds a per-frame dose.
    frame : int
        The frame index.
    named : bool
        Start with the layer's name (when several layers have a dose).
    """
    try:
        dose = layer_frame_dose(layer.metadata)
    except Exception:  # noqa: BLE001 - unreadable metadata: no overlay
        return ""
    if dose is None or not 0 <= frame < dose.n_frames:
        return ""
    value = float(dose.dose_e_per_A2[frame])
    text = f"{layer.name + ' · ' if named else ''}frame {frame} · {value:.4g} e⁻/Å²"
    pixel = layer_pixel_size_A(layer)
    if pixel is not None:
        text += f" · {float(electrons_per_pixel(value, pixel)):.3g} e⁻/px"
    # Two short lines: a canvas narrowed by docks cut one long line off (a value lost).
    return f"{text}\ncumulative {float(dose.cumulative_dose_e_per_A2[frame]):.4g} e⁻/Å²"


def _text_overlay(viewer):
    """The canvas text overlay (``viewer.canvas.overlays.text`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is not None:
        return canvas.overlays.text
    return viewer.text_overlay


def _has_dose(layer) -> bool:
    from napari.layers import Image

    try:
        return isinstance(layer, Image) and layer_frame_dose(layer.metadata) is not None
    except Exception:  # noqa: BLE001 - unreadable metadata: no dose
        return False


def _dose_layer(viewer):
    active = viewer.layers.selection.active
    if active is not None and _has_dose(active):
        return active
    return next((layer for layer in viewer.layers if _has_dose(layer)), None)


def _update(viewer) -> None:
    layer = _dose_layer(viewer)
    if layer is None:
        _text_overlay(viewer).text = ""
        return
    n = int(layer.data.shape[0]) if layer.ndim == 3 else 1
    frame = shown_frame(viewer, layer, n) if n > 1 else 0
    named = sum(_has_dose(other) for other in viewer.layers) > 1
    _text_overlay(viewer).text = frame_dose_text(layer, frame, named=named)


def show_frame_dose(viewer) -> None:
    """Show the shown frame's dose in ``viewer``'s text overlay, following the slider."""
    if viewer in _INSTALLED:
        _update(viewer)
        return
    _INSTALLED.add(viewer)
    overlay = _text_overlay(viewer)
    overlay.position = "top_left"
    overlay.font_size = 10
    overlay.visible = True

    def update(_event=None) -> None:
        _update(viewer)

    viewer.dims.events.current_step.connect(update)
    viewer.layers.selection.events.active.connect(update)
    viewer.layers.events.inserted.connect(update)
    viewer.layers.events.removed.connect(update)
    update()
