"""The base of the docks that run a trained network on the frames of an image layer.

'Segment' and 'Denoise' share the model rows (a shipped model or a model file, what
the file holds, the device and what it resolves to) and the frame bookkeeping of the
chosen layer; each says which models it lists and how it describes one.
"""

from pathlib import Path

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, Label

from ..errors import LowdoseError
from ._common import DEVICE_CHOICES, device_description, is_empty_path, one_line, shown_frame
from ._layers import base_data

__all__ = ["MODEL_SUFFIX", "NetworkDock"]

MODEL_SUFFIX = ".safetensors"


class NetworkDock(Container):
    """A dock running a network on an image layer: model rows, device rows, frames.

    Subclasses set :attr:`FILE_CHOICE` (the model choice meaning "a file"), provide
    :meth:`_available_models`, :meth:`_resolve_model`, :meth:`_no_model_file` and
    :meth:`_model_text`, add the rows (``model``, ``model_file``, ``model_info``,
    ``device``, ``device_info``) to their layout and call :meth:`_connect_model_rows`.
    """

    FILE_CHOICE = "file…"
    #: Whether the model-file row may be empty (None) rather than "".
    MODEL_FILE_NULLABLE = False

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__(labels=True)
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

    def _connect_model_rows(self) -> None:
        for label in (self.model_info, self.device_info):
            label.native.setWordWrap(True)
        self.model.changed.connect(self._on_model_changed)
        self.model_file.changed.connect(self._on_model_changed)
        self.device.changed.connect(self._on_device_changed)

    # -- what a subclass says -------------------------------------------------------------
    @staticmethod
    def _available_models() -> list[str]:
        """Names of the shipped models this dock offers."""
        raise NotImplementedError

    @staticmethod
    def _resolve_model(value) -> Path:
        """The checkpoint file of a model name or path (raises LowdoseError)."""
        raise NotImplementedError

    def _no_model_file(self) -> LowdoseError:
        """The error when "a file" is chosen but none is given."""
        raise NotImplementedError

    def _model_text(self, meta: dict, path: Path) -> str:
        """The "model info" line of a readable checkpoint (its metadata, its path)."""
        raise NotImplementedError

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
