"""Small helpers shared by the dock widgets (napari-side glue only)."""

import atexit
import weakref

import numpy as np
from magicgui.widgets import Container, Label
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QFrame

from ..errors import one_line

#: Share of the screen's height a dock keeps for its controls before it scrolls.
DOCK_SCREEN_SHARE = 0.55

#: Docks alive, so that those never docked are deleted before Qt goes at exit.
_LIVE_DOCKS: "weakref.WeakSet[DockContainer]" = weakref.WeakSet()
_EXIT_HOOK: list[bool] = []


def _delete_undocked_at_exit() -> None:
    """Delete the Qt widgets of docks never docked (made in a script or a notebook) while
    the Qt application still exists: left to Python's last garbage collection, they were
    destroyed after it, and the interpreter ended with a segmentation fault in about one run
    of three. Docked ones belong to the window, which deletes them itself."""
    try:
        from qtpy.sip import delete
    except ImportError:  # PySide
        from qtpy.shiboken import delete
    for dock in list(_LIVE_DOCKS):
        try:
            if dock.native.parent() is None:
                delete(dock.native)
        except RuntimeError:  # already deleted by Qt
            pass


class _FitScroll(QObject):
    """Sizes a dock's scroll area whenever its controls' layout changes (labels filled in
    after the dock was built): at least as wide as the controls plus the vertical scroll
    bar, and as tall as the controls up to :data:`DOCK_SCREEN_SHARE` of the screen, so a
    dock shows all its controls where the screen has room (a plot docked below it does not
    squeeze them away) and scrolls where it has not."""

    def __init__(self, scroll) -> None:
        super().__init__(scroll)
        self._scroll = scroll

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() in (QEvent.Type.LayoutRequest, QEvent.Type.Show):
            bar = self._scroll.verticalScrollBar().sizeHint().width()
            needed = watched.minimumSizeHint()
            self._scroll.setMinimumWidth(needed.width() + bar + 2)
            screen = watched.screen()
            room = (DOCK_SCREEN_SHARE * screen.availableGeometry().height()
                    if screen is not None else needed.height())
            wanted = max(needed.height(), watched.sizeHint().height()) + 4
            self._scroll.setMinimumHeight(int(min(wanted, room)))
        return False


class _WatchUndock(QObject):
    """Tells a dock when napari takes it out of its dock (the title bar's close button
    unparents the dock's widget; it is neither destroyed nor hidden)."""

    def __init__(self, scroll, dock) -> None:
        super().__init__(scroll)
        self._scroll = scroll
        self._dock = dock
        self._docked = False

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ParentChange:
            if watched.parent() is not None:
                self._docked = True
            elif self._docked:
                self._docked = False
                self._dock.on_closed()
        return False


class DockContainer(Container):
    """A dock that scrolls when it is taller than the room napari gives it.

    A magicgui container made ``scrollable`` keeps its controls in an inner widget inside a
    scroll area, but napari docks a widget's ``native``, which is that inner widget: the
    scroll area would be dropped and a tall dock would force the window taller than a laptop
    screen. Here ``native`` is the scroll area, and :attr:`content` the inner widget that
    holds the layout (add plain Qt widgets, such as plot canvases, to its layout).
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("labels", True)
        super().__init__(scrollable=True, **kwargs)
        self.content._magic_widget = self
        scroll = self.native
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        # A dock narrower than its controls gets a scroll bar, never cut-off buttons.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self._fit = _FitScroll(scroll)
        self.content.installEventFilter(self._fit)
        self._undock = _WatchUndock(scroll, self)
        scroll.installEventFilter(self._undock)
        _LIVE_DOCKS.add(self)
        if not _EXIT_HOOK:  # after napari's own (exit hooks run last registered first)
            atexit.register(_delete_undocked_at_exit)
            _EXIT_HOOK.append(True)

    def insert(self, key: int, widget) -> None:
        """Add a control; a text line (:class:`magicgui.widgets.Label`) wraps, so that a long
        status or file name never widens the dock (and pushes its buttons out of view)."""
        super().insert(key, widget)
        if isinstance(widget, Label) and not getattr(widget, "is_heading", False):
            widget.native.setWordWrap(True)  # (a short bold heading stays on one line)

    def on_closed(self) -> None:
        """The dock was closed (taken out of the window): stop its work. Each dock with
        background work overrides this; what is done so far is kept, as with Cancel."""

    @property
    def native(self):
        """The scroll area (what napari docks)."""
        return self.root_native_widget

    @property
    def content(self):
        """The widget inside the scroll area that holds the controls' layout."""
        return self._widget._mgui_get_native_widget()


def heading(text: str) -> Label:
    """A bold section heading of a dock (never wrapped)."""
    label = Label(value=f"<b>{text}</b>")
    label.is_heading = True
    return label


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
