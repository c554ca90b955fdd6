"""Small helpers shared by the dock widgets (napari-side glue only)."""

import numpy as np
from magicgui.widgets import Label

from ..errors import one_line


def heading(text: str) -> Label:
    """A bold section heading of a dock."""
    return Label(value=f"<b>{text}</b>")


def rectangle_roi_px(shapes_layer, image_layer) -> tuple[int, int, int, int]:
    """Pixel bounds ``(y0, y1, x0, x1)`` of the first rectangle of a Shapes layer.

    The rectangle is converted from world coordinates to the image's data
    (pixel) coordinates, so it does not matter how either layer is scaled.

    Raises
    ------
    ValueError
        If the Shapes layer holds no shape.
    """
    if len(shapes_layer.data) == 0:
        raise ValueError(f"'{shapes_layer.name}' has no shape: draw a rectangle over vacuum")
    vertices = np.asarray(shapes_layer.data[0], dtype=np.float64)
    pixels = []
    for vertex in vertices:
        world = np.asarray(shapes_layer.data_to_world(vertex), dtype=np.float64)[-2:]
        position = np.concatenate([np.zeros(image_layer.ndim - 2), world])
        pixels.append(np.asarray(image_layer.world_to_data(position))[-2:])
    pixels = np.array(pixels)
    y0, x0 = np.floor(pixels.min(axis=0) + 0.5).astype(int)
    y1, x1 = np.floor(pixels.max(axis=0) + 0.5).astype(int)
    return int(y0), int(y1), int(x0), int(x1)


#: Device choices offered by the widgets that run a network.
DEVICE_CHOICES = ["auto", "cpu", "cuda", "mps"]


def is_empty_path(value) -> bool:
    """Whether a magicgui FileEdit value means "nothing chosen"."""
    return value is None or str(value).strip() in ("", ".")


def device_description(name: str) -> str:
    """What a device choice resolves to here ("CPU (2 threads)"), or why it cannot be used."""
    from ..device import DeviceError, describe_device, select_device

    try:
        return describe_device(select_device(name))
    except DeviceError as err:
        return f"unavailable: {one_line(err)}"


def shown_frame(viewer, layer, n_frames: int) -> int:
    """Index of the frame of ``layer`` that ``viewer`` shows (0 for a 2-D layer or None)."""
    import numpy as np

    if layer is None or n_frames <= 1 or layer.ndim < 3:
        return 0
    try:
        index = float(np.asarray(layer.world_to_data(viewer.dims.point))[0])
    except (ValueError, IndexError, TypeError):
        index = float(viewer.dims.current_step[0])
    return int(min(max(round(index), 0), n_frames - 1))
