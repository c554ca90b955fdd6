"""Dock settings remembered between sessions, with a reset to the defaults.

Each dock names the inputs worth keeping (model, threshold, clean-up, device, folders,
tile, watch options …); their values are stored in one settings file of the user's
(Qt's ``QSettings``: ``~/.config/napari-lowdose/napari-lowdose.ini`` on Linux) under the
dock's name, restored when the dock opens, saved on every change, and forgotten by
:meth:`DockSettings.reset`. Layer choices are never stored: they belong to a session.

``NAPARI_LOWDOSE_SETTINGS=/path/file.ini`` points the store elsewhere (the tests give
each test its own file).
"""

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS_ENV", "DockSettings", "settings_store"]

#: Environment variable naming another settings file (INI format).
SETTINGS_ENV = "NAPARI_LOWDOSE_SETTINGS"


def settings_store():
    """The ``QSettings`` every dock reads and writes."""
    from qtpy.QtCore import QSettings

    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                     "napari-lowdose", "napari-lowdose")


def _to_text(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    elif isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


class DockSettings:
    """Remember some value widgets of one dock between sessions.

    Parameters
    ----------
    dock : str
        The dock's name: the group of its keys in the store.
    widgets : mapping of str to magicgui ValueWidget
        Key → widget whose ``value`` is kept (JSON-serialisable values, paths).

    Notes
    -----
    A stored value the widget no longer accepts (a model that is not installed any more,
    a choice that was renamed) is skipped, and the widget keeps its default.
    """

    def __init__(self, dock: str, widgets: dict[str, Any]) -> None:
        self.dock = dock
        self.widgets = dict(widgets)
        self.defaults = {key: widget.value for key, widget in self.widgets.items()}
        self._restoring = False

    @property
    def restoring(self) -> bool:
        """Whether the stored values are being given back (not the user's own changes)."""
        return self._restoring

    def _key(self, name: str) -> str:
        return f"{self.dock}/{name}"

    def restore(self) -> list[str]:
        """Give the widgets their stored values; return the keys restored."""
        store = settings_store()
        restored = []
        with self.not_remembered():
            for key, widget in self.widgets.items():
                text = store.value(self._key(key))
                if text is None:
                    continue
                try:
                    value = json.loads(str(text))
                    widget.value = tuple(value) if isinstance(value, list) else value
                except Exception:  # noqa: BLE001 - a stale value: keep the default
                    continue
                restored.append(key)
        return restored

    def save(self, keys: Iterable[str] | None = None) -> None:
        """Store the current values (of ``keys``, default all)."""
        store = settings_store()
        for key in self.widgets if keys is None else keys:
            try:
                store.setValue(self._key(key), _to_text(self.widgets[key].value))
            except (TypeError, ValueError):  # not JSON-serialisable: not remembered
                continue
        store.sync()

    def connect(self) -> "DockSettings":
        """Save each value when it changes (and restore the stored ones first)."""
        self.restore()
        for key, widget in self.widgets.items():
            widget.changed.connect(lambda _value=None, key=key: self._changed(key))
        return self

    @contextlib.contextmanager
    def not_remembered(self):
        """Set widget values that are not the user's own (e.g. what a file states): they are
        shown but not stored."""
        previous, self._restoring = self._restoring, True
        try:
            yield
        finally:
            self._restoring = previous

    def _changed(self, key: str) -> None:
        if not self._restoring:
            self.save([key])

    def reset(self) -> None:
        """Forget the stored values and give every widget its default back."""
        store = settings_store()
        store.remove(self.dock)
        store.sync()
        with self.not_remembered():
            for key, widget in self.widgets.items():
                try:
                    widget.value = self.defaults[key]
                except Exception:  # noqa: BLE001 - e.g. a choice list that changed
                    continue
