"""The base of the docks that run a trained network on the frames of an image layer.

'Segment' and 'Denoise' share the model rows (a shipped model or a model file, what
the file holds, the device and what it resolves to) and the frame bookkeeping of the
chosen layer; each says which models it lists and how it describes one.

Also shared: the settings worth remembering of those rows (:meth:`NetworkDock.remember`,
with a "Reset to defaults" button), the layer a dock starts on
(:meth:`NetworkDock.pick_layer`), and :class:`RedrawThrottle`, which keeps a stream of
finished frames from redrawing the viewer more often than the eye can follow.
"""

import time
from pathlib import Path

import napari
from magicgui.widgets import ComboBox, FileEdit, Label, PushButton

from ..errors import LowdoseError, one_line
from ..models.checkpoint import MODEL_SUFFIX
from ._common import (
    DEVICE_CHOICES,
    DockContainer,
    device_description,
    is_empty_path,
    shown_frame,
)
from ._layers import base_data, pick_image_layer
from ._settings import DockSettings

__all__ = ["MODEL_SUFFIX", "REDRAW_INTERVAL_S", "NetworkDock", "RedrawThrottle"]

#: Seconds between two redraws of a dock's progress and layers while frames stream in.
REDRAW_INTERVAL_S = 0.5


class RedrawThrottle:
    """Whether it is time to redraw: at most once every ``interval_s`` seconds.

    Parameters
    ----------
    interval_s : float, optional
        Shortest time between two redraws.
    clock : callable, optional
        Seconds (``time.perf_counter`` by default; tests pass their own).
    """

    def __init__(self, interval_s: float = REDRAW_INTERVAL_S, clock=time.perf_counter):
        self.interval_s = float(interval_s)
        self._clock = clock
        self._last_s: float | None = None

    def due(self) -> bool:
        """True (and the redraw counted) if none happened in the last ``interval_s``."""
        now = self._clock()
        if self._last_s is not None and now - self._last_s < self.interval_s:
            return False
        self._last_s = now
        return True

    def reset(self) -> None:
        """The next :meth:`due` is True."""
        self._last_s = None


class NetworkDock(DockContainer):
    """A dock running a network on an image layer: model rows, device rows, frames.

    Subclasses set :attr:`NETWORK` (which shipped networks the registry offers) and
    :attr:`FILE_CHOICE` (the model choice meaning "a file"), may say more about a model
    (:meth:`_model_text`) or a missing file (:meth:`_no_model_file`), add the rows
    (``model``, ``model_file``, ``model_info``, ``device``, ``device_info``) to their layout
    and call :meth:`_connect_model_rows`.
    """

    #: "segmentation" or "denoiser": the shipped networks (models.registry) offered.
    NETWORK = "segmentation"
    FILE_CHOICE = "file…"
    #: Whether the model-file row may be empty (None) rather than "".
    MODEL_FILE_NULLABLE = False

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__()
        self._viewer = viewer
        self.use_thread = use_thread
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.model_file = FileEdit(
            label="model file", mode="r", filter=f"*{MODEL_SUFFIX}", value="",
            nullable=self.MODEL_FILE_NULLABLE,
        )
        self.model_info = Label(label="model info", value="")
        self.device = ComboBox(label="device", choices=DEVICE_CHOICES, value="auto")
        self.device_info = Label(label="runs on", value="")

    # -- settings and the layer a dock starts on ------------------------------------------
    def network_settings(self) -> dict:
        """The model rows worth remembering between sessions: model, model file, device."""
        return {"model": self.model, "model_file": self.model_file, "device": self.device}

    def remember(self, dock: str, widgets: dict) -> DockSettings:
        """Remember the model rows and ``widgets`` under ``dock``; make :attr:`reset_button`.

        Restores the stored values now (call it after connecting the widgets' handlers)
        and saves each change. The dock places :attr:`reset_button` ("Reset to
        defaults", which calls :meth:`reset_settings`) in its layout.
        """
        self.settings = DockSettings(dock, {**self.network_settings(), **widgets}).connect()
        self.reset_button = PushButton(
            text="Reset to defaults",
            tooltip="Forget the remembered settings of this dock and use the defaults",
        )
        self.reset_button.changed.connect(self.reset_settings)
        return self.settings

    def reset_settings(self, _value=None) -> None:
        """Give every remembered input its default back (and forget the stored values)."""
        self.settings.reset()

    @staticmethod
    def suits(layer) -> bool:
        """Whether a network can run on ``layer``: one 2-D frame or a (frames, y, x) series."""
        return not getattr(layer, "rgb", False) and base_data(layer).ndim in (2, 3)

    def pick_layer(self) -> None:
        """Choose the active (else the only) suitable image layer, if there is one."""
        layer = pick_image_layer(
            self._viewer, suits=lambda candidate: self.suits(candidate)
            and candidate in self.layer_combo.choices)
        if layer is not None:
            self.layer_combo.value = layer

    def _connect_model_rows(self) -> None:
        self.model.changed.connect(self._on_model_changed)
        self.model_file.changed.connect(self._on_model_changed)
        self.device.changed.connect(self._on_device_changed)

    # -- the networks offered (a subclass may say more) -----------------------------------
    @classmethod
    def _available_models(cls) -> list[str]:
        """Names of the shipped networks of :attr:`NETWORK` installed here."""
        from ..models.registry import available_denoisers, available_models

        return available_denoisers() if cls.NETWORK == "denoiser" else available_models()

    @classmethod
    def _resolve_model(cls, value) -> Path:
        """The checkpoint file of a network name or path (raises LowdoseError)."""
        from ..models.registry import resolve_denoiser, resolve_model

        return resolve_denoiser(value) if cls.NETWORK == "denoiser" else resolve_model(value)

    def _no_model_file(self) -> LowdoseError:
        """The error when "a file" is chosen but none is given."""
        from ..models.checkpoint import CheckpointError

        return CheckpointError(f"choose a model file ({MODEL_SUFFIX})")

    def _model_text(self, meta: dict, path: Path) -> str:
        """The "model info" line of a readable checkpoint (its metadata, its path)."""
        return f"{meta.get('arch', '?')} ({path.name})"

    # -- model rows -----------------------------------------------------------------------
    @classmethod
    def _model_choices(cls, _widget=None):
        return [*cls._available_models(), cls.FILE_CHOICE]

    def _file_chosen(self) -> bool:
        return self.model.value in (self.FILE_CHOICE, None)

    def _model_path(self) -> Path:
        """The checkpoint file of the chosen model (raises CheckpointError/LowdoseError)."""
        if self._file_chosen():
            value = self.model_file.value
            if is_empty_path(value) or Path(value).is_dir():
                raise self._no_model_file()
            return self._resolve_model(value)
        return self._resolve_model(self.model.value)

    def _model_label(self) -> str:
        if self._file_chosen():
            return Path(str(self.model_file.value)).stem
        return str(self.model.value)

    def _on_model_changed(self, _value=None):
        from ..models.checkpoint import CheckpointError, read_checkpoint_metadata

        self.model_file.visible = self._file_chosen()
        try:
            path = self._model_path()
        except LowdoseError as err:
            self.model_info.value = one_line(err)
            return
        try:
            meta = read_checkpoint_metadata(path)
        except CheckpointError as err:
            self.model_info.value = f"not usable: {one_line(err)}"
            return
        self.model_info.value = self._model_text(meta, path)

    def _on_device_changed(self, _value=None):
        self.device_info.value = device_description(self.device.value)

    # -- frames of the chosen layer -------------------------------------------------------
    @property
    def layer(self):
        """The selected image layer, or None."""
        return self.layer_combo.value

    @property
    def busy(self) -> bool:
        """Whether a run is going on."""
        return self._worker is not None

    def _n_frames(self, layer=None) -> int:
        layer = self.layer if layer is None else layer
        if layer is None:
            return 0
        data = base_data(layer)
        return int(data.shape[0]) if data.ndim == 3 else 1

    def current_frame(self, layer=None) -> int:
        """Index of the frame shown for ``layer`` (0 for a 2-D layer)."""
        layer = self.layer if layer is None else layer
        return shown_frame(self._viewer, layer, self._n_frames(layer))
