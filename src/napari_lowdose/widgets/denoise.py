"""'Denoise' dock widget: low-dose frames through a denoiser, on a layer or a live folder.

The napari face of ``napari-lowdose denoise`` and ``napari-lowdose watch``
(:mod:`napari_lowdose.cli.denoise`, :mod:`napari_lowdose.cli.watch`), after
Katsuno et al. (2021).

Layer mode
    Frames of the chosen image layer go through
    :func:`napari_lowdose.models.denoising.denoise_frames` one by one in a worker
    thread and land, as they arrive, in one Image layer ``"<image> denoised
    [<model>]"`` of the same shape (float32, NaN where not denoised yet), scale,
    translate, units and axis labels. Running again updates that layer; the
    source layer's data is never modified. Each frame is normalised by its
    expected electrons per vacuum pixel, ``dose · pixel size²``, when the layer
    has a per-frame dose and a pixel size in Å, otherwise by its own mean (the
    "expected e⁻/px" label says which). Scopes: the current frame, the whole
    series, or *live*: every frame the frame slider moves to is denoised if it
    is not done yet (a request made while a frame is running replaces any
    earlier waiting one, so requests never pile up). ``metadata["lowdose"]`` of
    the output keeps the source's record (dose, pixel size) plus a ``"denoised"``
    record: model, device, normalisation, gain, tiling and the frames done.
    As with ``napari-lowdose denoise``, the detector gain (counts per electron)
    is the one set in the widget, else the one the layer's file states, else 1
    (frames in electrons); frames may be denoised in overlapping tiles of a
    given size (0: whole frames), normalised as whole frames first. Changing
    the gain or the tiling starts the output layer afresh.

In-situ mode
    A camera folder is watched (:class:`napari_lowdose.insitu.FolderWatcher`,
    :class:`~napari_lowdose.insitu.WatchSession`); each frame written into it
    is denoised (:class:`napari_lowdose.insitu.FrameDenoiser`, with the gain set
    in the widget, else 1 as for ``napari-lowdose watch``) and appended to
    two growing layers, ``"live raw"`` and ``"live denoised"``, and the viewer
    moves to the newest frame. With an output folder the results are also
    written there (:class:`napari_lowdose.insitu.InSituOutput`:
    ``<name>_denoised.tif`` and ``watch_log.csv``). The status line shows the
    sustained rate, the backlog and the failures; a file that cannot be read and
    a frame of another size than the first are reported, never skipped silently.
"""

import inspect
import threading
from pathlib import Path
from types import SimpleNamespace

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import LowdoseError
from ..io.layers import LOWDOSE_KEY, image_layer_kwargs
from ._common import DEVICE_CHOICES, device_description, is_empty_path, one_line, shown_frame
from ._layers import layer_counts_per_electron, layer_expected_e_per_px
from .noise_fit import _base_data

__all__ = [
    "FILE_CHOICE",
    "LIVE_DENOISED",
    "LIVE_RAW",
    "DenoiseWidget",
]

FILE_CHOICE = "model file…"
SCOPE_CHOICES = [
    ("current frame", "current"),
    ("whole series", "all"),
    ("live (follows the frame slider)", "live"),
]
MODEL_SUFFIX = ".safetensors"
#: Key of the denoising record in an output layer's ``metadata["lowdose"]``.
DENOISED_KEY = "denoised"
#: Names of the two growing layers of the in-situ mode.
LIVE_RAW = "live raw"
LIVE_DENOISED = "live denoised"
WATCH_TEXT, STOP_TEXT = "Watch folder", "Stop watching"
#: Gain spin-box text for 0: the layer's own value (its file's), else 1.
AUTO_GAIN_TEXT = "auto (the file's, else 1)"
#: Smallest tile ``napari-lowdose denoise --tile`` accepts.
MIN_TILE_PX = 16


def _display_limits(frame: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """(contrast limits, contrast-limit range) for a frame: 0.5–99.5 % and min–max."""
    finite = np.asarray(frame, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (0.0, 1.0), (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, (0.5, 99.5)))
    if not hi > lo:
        hi = lo + 1.0
    full = (min(float(finite.min()), lo), max(float(finite.max()), hi))
    return (lo, hi), full


def _default_overlap_px() -> int:
    """Tile overlap ``napari-lowdose denoise`` uses (:func:`denoise_frames`' default)."""
    from ..models.denoising import denoise_frames

    return int(inspect.signature(denoise_frames).parameters["overlap_px"].default)


class _GrowingStack:
    """A (n, y, x) float32 stack that grows by appending frames (capacity doubles).

    Parameters
    ----------
    frame_shape : tuple of int
        (y, x) of every frame.
    initial : ndarray, shape (n, y, x), optional
        Frames to start with (copied).
    capacity : int, optional
        Initial number of frames the buffer holds.
    """

    def __init__(self, frame_shape, initial=None, capacity: int = 16):
        self.frame_shape = tuple(int(v) for v in frame_shape)
        n = 0 if initial is None else int(initial.shape[0])
        self._buffer = np.empty((max(capacity, 2 * n, 1), *self.frame_shape), np.float32)
        if n:
            self._buffer[:n] = initial
        self.n = n

    @property
    def view(self) -> np.ndarray:
        """The filled part (a view of the buffer, no copy)."""
        return self._buffer[: self.n]

    def append(self, frame: np.ndarray) -> np.ndarray:
        """Append one frame and return the new :attr:`view`."""
        if self.n == self._buffer.shape[0]:
            bigger = np.empty((2 * self.n, *self.frame_shape), np.float32)
            bigger[: self.n] = self._buffer
            self._buffer = bigger
        self._buffer[self.n] = frame
        self.n += 1
        return self.view


def _shutdown(state: SimpleNamespace) -> None:
    """Stop every worker of a widget (called when its Qt widget is destroyed)."""
    state.closed = True
    state.stop_event.set()
    state.watch_stop.set()
    for name in ("worker", "watch_worker"):
        worker = getattr(state, name, None)
        if worker is not None:
            try:
                worker.quit()
            except RuntimeError:  # its Qt side is already gone
                pass


class DenoiseWidget(Container):
    """Denoise an image layer or a live camera folder with a trained denoiser.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are denoised.
    use_thread : bool, optional
        Run layer denoising in a worker thread (False: in the calling thread,
        for tests and scripts). The in-situ mode always uses a thread.
    """

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__(labels=True)
        self._viewer = viewer
        self.use_thread = use_thread
        # Shared with the destroyed-signal handler, which must not hold ``self``.
        self._state = SimpleNamespace(
            stop_event=threading.Event(),
            watch_stop=threading.Event(),
            worker=None,
            watch_worker=None,
            closed=False,
        )
        self._stop_event = self._state.stop_event
        self._watch_stop = self._state.watch_stop
        self._run = None  # the output layer and settings of the current / last run
        self._live = False
        self._live_pending: int | None = None
        self._watch = None  # state of the current / last in-situ session
        self._model_cache: tuple | None = None  # (key, model) of the last loaded model

        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.model_file = FileEdit(
            label="model file", mode="r", filter=f"*{MODEL_SUFFIX}", value="", nullable=True
        )
        self.model_info = Label(label="model info", value="")
        self.device = ComboBox(label="device", choices=DEVICE_CHOICES, value="auto")
        self.device_info = Label(label="runs on", value="")
        self.scope = ComboBox(label="frames", choices=SCOPE_CHOICES, value="all")
        self.dose_info = Label(label="expected e⁻/px", value="")
        self.gain = FloatSpinBox(
            label="counts per e⁻", min=0.0, max=1e6, step=0.1, value=0.0,
            tooltip="Detector gain (counts per electron) the frames are divided by; "
            "0 = auto: the gain the layer's file states, else 1 (frames in electrons). "
            "As --counts-per-electron of 'napari-lowdose denoise'.",
        )
        self.gain.native.setDecimals(4)
        self.gain.native.setSpecialValueText(AUTO_GAIN_TEXT)
        self.gain_info = Label(label="gain used", value="")
        self.tile_px = SpinBox(
            label="tile (px, 0 = whole frame)", min=0, max=65536, step=16, value=0,
            tooltip="Denoise frames larger than this in overlapping square tiles (less "
            f"memory; at least {MIN_TILE_PX} px). As --tile of 'napari-lowdose denoise'.",
        )
        self.overlap_px = SpinBox(
            label="tile overlap (px)", min=0, max=4096, value=_default_overlap_px(),
            tooltip="How far each tile reaches beyond its own part of the frame, on each "
            "inner side (the default is the one of 'napari-lowdose denoise').",
        )
        self.run_button = PushButton(text="Denoise")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="not run yet")

        self.insitu_title = Label(value="In-situ: denoise frames as the camera writes them")
        self.camera_folder = FileEdit(label="camera folder", mode="d", value="", nullable=True)
        self.output_folder = FileEdit(label="output folder", mode="d", value="", nullable=True)
        self.settle_s = FloatSpinBox(
            label="settle time (s)", min=0.0, max=60.0, step=0.1, value=0.5
        )
        self.process_existing = CheckBox(text="process files already there", value=True)
        self.watch_button = PushButton(text=WATCH_TEXT)
        self.watch_status = Label(label="watch", value="not watching")

        self._model_inputs = [self.model, self.model_file, self.device, self.gain]
        self._tile_inputs = [self.tile_px, self.overlap_px]
        self._watch_inputs = [
            self.camera_folder,
            self.output_folder,
            self.settle_s,
            self.process_existing,
        ]
        self.extend(
            [
                self.layer_combo,
                self.model,
                self.model_file,
                self.model_info,
                self.device,
                self.device_info,
                self.scope,
                self.dose_info,
                self.gain,
                self.gain_info,
                self.tile_px,
                self.overlap_px,
                self.run_button,
                self.cancel_button,
                self.progress_bar,
                self.status,
                self.insitu_title,
                self.camera_folder,
                self.output_folder,
                self.settle_s,
                self.process_existing,
                self.watch_button,
                self.watch_status,
            ]
        )
        for label in (
            self.model_info,
            self.device_info,
            self.dose_info,
            self.gain_info,
            self.status,
            self.watch_status,
        ):
            label.native.setWordWrap(True)

        self.layer_combo.changed.connect(self._on_layer_changed)
        self.model.changed.connect(self._on_model_changed)
        self.model_file.changed.connect(self._on_model_changed)
        self.device.changed.connect(self._on_device_changed)
        self.scope.changed.connect(self._on_scope_changed)
        self.gain.changed.connect(self._on_gain_changed)
        self.tile_px.changed.connect(self._on_tile_changed)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.watch_button.changed.connect(self.toggle_watch)
        viewer.layers.events.inserted.connect(self._reset_choices)
        viewer.layers.events.removed.connect(self._reset_choices)
        viewer.dims.events.current_step.connect(self._on_step)
        state = self._state
        self.native.destroyed.connect(lambda *_: _shutdown(state))
        self._reset_choices()
        self._on_model_changed()
        self._on_device_changed()
        self._on_layer_changed()
        self._on_tile_changed()

    # -- workers (kept in the shared state so that closing can stop them) ---------------
    @property
    def _worker(self):
        return self._state.worker

    @_worker.setter
    def _worker(self, worker):
        self._state.worker = worker

    @property
    def _watch_worker(self):
        return self._state.watch_worker

    @_watch_worker.setter
    def _watch_worker(self, worker):
        self._state.watch_worker = worker

    @property
    def busy(self) -> bool:
        """Whether a layer denoising (run or live frame) is running."""
        return self._worker is not None

    @property
    def watching(self) -> bool:
        """Whether the in-situ mode is watching a folder."""
        return self._watch_worker is not None

    @property
    def live(self) -> bool:
        """Whether the live scope follows the frame slider."""
        return self._live

    def shutdown(self) -> None:
        """Stop live mode, the running denoising and the folder watch (for good)."""
        self._live, self._live_pending = False, None
        _shutdown(self._state)

    # -- choices --------------------------------------------------------------------------
    def _image_layers(self, _widget=None):
        return [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, napari.layers.Image)
            and not getattr(layer, "rgb", False)
            and not self._is_output(layer)
        ]

    @staticmethod
    def _is_output(layer) -> bool:
        return DENOISED_KEY in ((layer.metadata or {}).get(LOWDOSE_KEY) or {})

    @staticmethod
    def _model_choices(_widget=None):
        from ..models.registry import available_denoisers

        return [*available_denoisers(), FILE_CHOICE]

    def _reset_choices(self, _event=None):
        self.layer_combo.reset_choices()

    @property
    def layer(self):
        """The selected image layer, or None."""
        return self.layer_combo.value

    def _n_frames(self, layer=None) -> int:
        layer = self.layer if layer is None else layer
        if layer is None:
            return 0
        data = _base_data(layer)
        return int(data.shape[0]) if data.ndim == 3 else 1

    def _on_layer_changed(self, _value=None):
        layer = self.layer
        self._on_gain_changed()
        if layer is None:
            self.dose_info.value = ""
            return
        self.dose_info.value = self._expected_e_per_px(layer)[1]

    def counts_per_electron(self, layer=None) -> tuple[float, str]:
        """The gain a run on ``layer`` (default: the chosen one) uses, and where it is from."""
        layer = self.layer if layer is None else layer
        return layer_counts_per_electron(layer, float(self.gain.value))

    def _on_gain_changed(self, _value=None):
        self.gain_info.value = self.counts_per_electron()[1]

    def _on_tile_changed(self, _value=None):
        self.overlap_px.visible = int(self.tile_px.value) > 0

    def _tiling(self) -> tuple[int | None, int]:
        """(tile px or None for whole frames, overlap px); raises ValueError if too small."""
        tile = int(self.tile_px.value)
        if tile == 0:
            return None, int(self.overlap_px.value)
        if tile < MIN_TILE_PX:
            raise ValueError(
                f"the tile must be 0 (whole frames) or at least {MIN_TILE_PX} px, not {tile}"
            )
        return tile, int(self.overlap_px.value)

    def _on_model_changed(self, _value=None):
        from ..models.checkpoint import CheckpointError, read_checkpoint_metadata

        self.model_file.visible = self.model.value in (FILE_CHOICE, None)
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
        arch = meta.get("arch", "?")
        if arch != "denoiser":
            self.model_info.value = f"not usable: {path.name} holds a {arch}, not a denoiser"
            return
        psnr = (meta.get("validation") or {}).get("psnr_db")
        psnr_text = (
            f", validation PSNR {float(psnr):.2f} dB" if isinstance(psnr, int | float) else ""
        )
        self.model_info.value = f"{arch}{psnr_text} ({path.name})"

    def _model_path(self) -> Path:
        """The checkpoint file of the chosen model (raises CheckpointError)."""
        from ..models.checkpoint import CheckpointError
        from ..models.registry import available_denoisers, resolve_denoiser

        if self.model.value in (FILE_CHOICE, None):
            value = self.model_file.value
            if is_empty_path(value) or Path(value).is_dir():
                none = "" if available_denoisers() else "no shipped denoiser is installed: "
                raise CheckpointError(
                    f"{none}choose a denoiser model file ({MODEL_SUFFIX}, made with "
                    "'napari-lowdose train-denoiser')"
                )
            return resolve_denoiser(value)
        return resolve_denoiser(self.model.value)

    def _checked_model(self, what: str):
        """(model file, its metadata, device), or None after one notification."""
        from ..device import select_device
        from ..models.checkpoint import read_checkpoint_metadata

        try:
            model_path = self._model_path()
            metadata = read_checkpoint_metadata(model_path)
            if metadata.get("arch") != "denoiser":
                raise LowdoseError(
                    f"{model_path.name} holds a {metadata.get('arch')}, not a denoiser"
                )
            return model_path, metadata, select_device(self.device.value)
        except LowdoseError as err:
            show_error(f"{what}: {one_line(err)}")
            return None

    def _model_label(self) -> str:
        if self.model.value in (FILE_CHOICE, None):
            return Path(str(self.model_file.value)).stem
        return str(self.model.value)

    def _on_device_changed(self, _value=None):
        self.device_info.value = device_description(self.device.value)

    def current_frame(self, layer=None) -> int:
        """Index of the frame shown for ``layer`` (0 for a 2-D layer)."""
        layer = self.layer if layer is None else layer
        return shown_frame(self._viewer, layer, self._n_frames(layer))

    def frame_indices(self, layer=None) -> list[int]:
        """The frames the current scope asks for (the shown one for "current" and "live")."""
        layer = self.layer if layer is None else layer
        if self.scope.value == "all":
            return list(range(self._n_frames(layer)))
        return [self.current_frame(layer)]

    def _expected_e_per_px(self, layer) -> tuple[np.ndarray | None, str]:
        return layer_expected_e_per_px(layer, self._n_frames(layer))

    # -- layer mode -----------------------------------------------------------------------
    def _request(self):
        """Everything a run needs, or None after show_error."""

        layer = self.layer
        if layer is None:
            show_error("Choose an image layer to denoise.")
            return None
        data = _base_data(layer)
        if getattr(layer, "rgb", False) or data.ndim not in (2, 3):
            show_error(f"'{layer.name}' must be one 2-D frame or a (frames, y, x) series.")
            return None
        try:
            tile, overlap = self._tiling()
        except ValueError as err:
            show_error(f"Denoise: {one_line(err)}")
            return None
        checked = self._checked_model("Denoise")
        if checked is None:
            return None
        model_path, metadata, device = checked
        from ..models.denoising import outside_training_range

        gain, gain_text = self.counts_per_electron(layer)
        self.gain_info.value = gain_text
        expected, expected_text = self._expected_e_per_px(layer)
        self.dose_info.value = expected_text
        indices = self.frame_indices(layer)
        outside = outside_training_range(
            metadata, None if expected is None else [expected[i] for i in indices]
        )
        if outside and self.scope.value != "live":
            show_warning(f"Denoise: {outside}.")
        return SimpleNamespace(
            layer=layer,
            data=data,
            model_path=model_path,
            metadata=metadata,
            device=device,
            indices=indices,
            label=self._model_label(),
            expected=expected,
            expected_text=expected_text,
            gain=gain,
            gain_text=gain_text,
            tile_px=tile,
            overlap_px=overlap,
        )

    @staticmethod
    def _settings_record(request) -> dict:
        """The run settings an output layer's frames were made with (gain, tiling)."""
        return {
            "counts_per_electron": float(request.gain),
            "tile_px": request.tile_px,
            "overlap_px": None if request.tile_px is None else int(request.overlap_px),
        }

    @classmethod
    def _same_settings(cls, record: dict, request) -> bool:
        """Whether an output record's frames were made with the settings of ``request``."""
        wanted = cls._settings_record(request)
        return all(record.get(key) == value for key, value in wanted.items())

    def run(self, _event=None):
        """Denoise the frames of the scope (in a thread unless ``use_thread`` is False)."""
        if self._worker is not None:
            show_info("A denoising is already running.")
            return
        if self.scope.value == "live":
            show_info("Live mode: move the frame slider to denoise the frame shown.")
            return
        request = self._request()
        if request is not None:
            self._start(request)

    def _start(self, request):
        """Prepare the output layer and stream the requested frames into it."""
        self._prepare_layer(request)
        self._stop_event.clear()
        self.progress_bar.max, self.progress_bar.value = len(request.indices), 0
        if not self._live:
            self.status.value = f"denoising {len(request.indices)} frame(s)…"
        gen = self._frames(request)
        if not self.use_thread:
            self._update_enabled(running=True)
            try:
                for item in gen:
                    self._on_frame(item)
            except Exception as err:  # noqa: BLE001 - notify, never raise to the user
                self._on_error(err)
            finally:
                self._on_finished()
            return
        self._worker = thread_worker(lambda: (yield from gen))()
        self._update_enabled()
        self._worker.yielded.connect(self._on_frame)
        self._worker.errored.connect(self._on_error)
        self._worker.finished.connect(self._on_finished)
        self._worker.start()

    def _load_model(self, request):
        """The denoiser of a request, loaded once per file and device (worker thread)."""
        from ..models.registry import load_denoiser

        stat = request.model_path.stat()
        key = (str(request.model_path), stat.st_mtime_ns, stat.st_size)
        if self._model_cache is None or self._model_cache[0] != key:
            model, _ = load_denoiser(request.model_path, device="cpu")
            self._model_cache = (key, model)
        return self._model_cache[1]

    def _frames(self, request):
        """Generator (worker thread): load the model, then yield (index, denoised frame)."""
        from ..models import denoising as denoiser

        model = self._load_model(request)
        with progress(total=len(request.indices), desc="Denoise") as pbar:
            for index, frame in denoiser.denoise_frames(
                model,
                request.data,
                expected_e_per_px=request.expected,
                counts_per_electron=request.gain,
                device=request.device,
                frame_indices=request.indices,
                should_stop=self._stop_event.is_set,
                tile_px=request.tile_px,
                overlap_px=request.overlap_px,
            ):
                pbar.update(1)
                yield index, frame

    def _output_name(self, layer, label: str) -> str:
        return f"{layer.name} denoised [{label}]"

    def _existing_output(self, request):
        """The output layer of this image and model if it can be reused, else None."""
        name = self._output_name(request.layer, request.label)
        if name not in self._viewer.layers:
            return None
        layer = self._viewer.layers[name]
        ok = (
            isinstance(layer, napari.layers.Image)
            and layer.data.shape == tuple(request.data.shape)
            and layer.data.dtype == np.float32
        )
        return layer if ok else None

    def _prepare_layer(self, request):
        """Create (or reuse) the output layer of this image and model."""
        from ..device import describe_device

        layer, shape = request.layer, tuple(request.data.shape)
        name = self._output_name(layer, request.label)
        out = self._existing_output(request)
        created = out is None
        if created:
            if name in self._viewer.layers:  # same name, other shape or kind: replace it
                self._viewer.layers.remove(name)
            lowdose = dict((layer.metadata or {}).get(LOWDOSE_KEY) or {})
            out = self._viewer.add_image(
                np.full(shape, np.nan, dtype=np.float32),
                name=name,
                contrast_limits=(0.0, 1.0),
                colormap=getattr(layer.colormap, "name", "gray"),
                metadata={LOWDOSE_KEY: lowdose},
                scale=tuple(layer.scale),
                translate=tuple(layer.translate),
                units=tuple(layer.units),
                axis_labels=tuple(layer.axis_labels),
            )
        lowdose = dict(out.metadata.get(LOWDOSE_KEY) or {})
        previous = dict(lowdose.get(DENOISED_KEY) or {})
        done = set() if created else {int(i) for i in previous.get("frames_done", [])}
        if done and not self._same_settings(previous, request):
            # Another gain or tiling: the frames already there do not match the new ones.
            out.data[...] = np.nan
            done = set()
        record = {
            "image": layer.name,
            "model": request.label,
            "model_path": str(request.model_path),
            "device": describe_device(request.device),
            "normalisation": request.expected_text,
            "gain": request.gain_text,
            **self._settings_record(request),
            "frames_done": sorted(done),
            "n_frames": self._n_frames(layer),
        }
        out.metadata = {**out.metadata, LOWDOSE_KEY: {**lowdose, DENOISED_KEY: record}}
        self._run = SimpleNamespace(
            image=layer,
            layer=out,
            label=request.label,
            indices=list(request.indices),
            n_requested=len(request.indices),
            n_new=0,
            done=done,
            error=None,
            created=created,
        )

    def _stack(self, run=None) -> np.ndarray:
        run = self._run if run is None else run
        data = run.layer.data
        return data if data.ndim == 3 else data[None]

    def _on_frame(self, item):
        if self._state.closed:
            return
        index, frame = item
        run = self._run
        stack = self._stack(run)
        first = not run.done
        stack[index] = frame
        run.done.add(int(index))
        run.n_new += 1
        if first or int(index) == self.current_frame(run.layer):
            self._follow_contrast(run, frame, force=first)
        lowdose = dict(run.layer.metadata.get(LOWDOSE_KEY) or {})
        record = dict(lowdose.get(DENOISED_KEY) or {}, frames_done=sorted(run.done))
        run.layer.metadata = {**run.layer.metadata, LOWDOSE_KEY: {**lowdose, DENOISED_KEY: record}}
        run.layer.refresh()
        self.progress_bar.value = min(run.n_new, self.progress_bar.max)
        if self._live:
            self.status.value = (
                f"live: frame {index} denoised ({len(run.done)}/{stack.shape[0]} done)"
            )
        else:
            self.status.value = f"{run.n_new}/{run.n_requested} frame(s) denoised…"

    def _on_error(self, err):
        if self._state.closed:
            return
        if self._run is not None:
            self._run.error = one_line(err)
        show_error(f"Denoise failed: {one_line(err)}")

    def _on_finished(self):
        self._worker = None
        if self._state.closed:
            return
        run = self._run
        if run is not None:
            self._finish_run(run)
        if run is not None and run.error and self._live:
            self._stop_live(f"live mode stopped: {run.error}")
        self._update_enabled()
        self._next_live()

    def _finish_run(self, run):
        stopped = run.n_new < run.n_requested
        if run.error:
            self.status.value = f"failed after {run.n_new} frame(s): {run.error}"
            if run.n_new == 0 and run.created and run.layer in self._viewer.layers:
                # Nothing was denoised: do not leave an empty layer behind.
                self._viewer.layers.remove(run.layer)
                self._run = None
            return
        if self._live:
            return
        self.status.value = f"{run.n_new}/{run.n_requested} frame(s) denoised" + (
            " (stopped)" if stopped else ""
        )
        if self._stop_event.is_set():
            show_info(f"Denoising cancelled after {run.n_new} frame(s); they are kept.")

    def cancel(self, _event=None):
        """Stop after the current frame; frames already denoised are kept."""
        if self._worker is not None or self.cancel_button.enabled:
            self._stop_event.set()
            self.status.value = "stopping after the current frame…"

    def _update_enabled(self, *, running: bool | None = None):
        running = self.busy if running is None else running
        live, watching = self._live, self.watching
        self.layer_combo.enabled = not running and not live
        for widget in self._model_inputs:
            widget.enabled = not running and not live and not watching
        for widget in self._tile_inputs:
            widget.enabled = not running and not live
        self.scope.enabled = live or not running
        self.run_button.enabled = not running and not live
        self.cancel_button.enabled = running
        for widget in self._watch_inputs:
            widget.enabled = not watching
        self.watch_button.text = STOP_TEXT if watching else WATCH_TEXT

    # -- live scope -----------------------------------------------------------------------
    def _on_scope_changed(self, _value=None):
        if self.scope.value == "live":
            self._start_live()
        elif self._live:
            self._stop_live("live mode off")

    def _start_live(self):
        request = self._request()
        if request is None:  # already notified; do not keep failing on every step
            self.scope.value = "current"
            return
        self._live, self._live_pending = True, None
        self.status.value = "live: the frame shown is denoised"
        self._update_enabled()
        self._live_frame(request)

    def _stop_live(self, message: str):
        self._live, self._live_pending = False, None
        self.status.value = message
        if self.scope.value == "live":
            self.scope.value = "current"
        self._update_enabled()

    def _follow_contrast(self, run, frame, *, force: bool = False):
        """Contrast of the output layer from the frame shown, unless the user set their own.

        The frames of a dose series differ in counts by orders of magnitude, so
        limits taken from one frame saturate the others; they follow the frame
        shown until the user moves them.
        """
        layer = run.layer
        auto = getattr(run, "auto_limits", None)
        if not force and auto is not None and not np.allclose(layer.contrast_limits, auto):
            return
        limits, full = _display_limits(frame)
        old = layer.contrast_limits_range
        layer.contrast_limits_range = (min(full[0], old[0]), max(full[1], old[1]))
        layer.contrast_limits = limits
        run.auto_limits = tuple(layer.contrast_limits)

    def _on_step(self, _event=None):
        """Frame slider moved: contrast follows the frame; in live mode, denoise it."""
        run = self._run
        if run is not None and not self._state.closed and run.layer in self._viewer.layers:
            shown = self.current_frame(run.layer)
            if shown in run.done:
                self._follow_contrast(run, self._stack(run)[shown])
        if not self._live or self._state.closed:
            return
        if self.layer is None:
            self._stop_live("live mode stopped: no image layer")
            return
        index = self.current_frame()
        if self._worker is not None:
            self._live_pending = index  # only the latest request is kept
            return
        request = self._request()
        if request is None:
            self._stop_live("live mode stopped")
            return
        self._live_frame(request)

    def _live_frame(self, request):
        """Denoise the shown frame of a request unless its output already has it."""
        index = request.indices[0]
        out = self._existing_output(request)
        if out is not None:
            done = (out.metadata.get(LOWDOSE_KEY) or {}).get(DENOISED_KEY) or {}
            if index in set(done.get("frames_done", [])) and self._same_settings(done, request):
                self.status.value = f"live: frame {index} already denoised"
                return
        self._start(request)

    def _next_live(self):
        """After a live frame: run the latest request made meanwhile, if any."""
        if not self._live or self._live_pending is None or self._worker is not None:
            return
        self._live_pending = None
        self._on_step()

    # -- in-situ mode ---------------------------------------------------------------------
    def toggle_watch(self, _event=None):
        """Start watching the camera folder, or stop watching it."""
        if self.watching:
            self.stop_watch()
        else:
            self.start_watch()

    def _watch_request(self):
        """Everything a watch needs, or None after show_error."""
        from ..insitu import FolderWatcher

        if is_empty_path(self.camera_folder.value):
            show_error("Choose the camera folder to watch.")
            return None
        folder = Path(self.camera_folder.value).expanduser()
        if not folder.is_dir():
            show_error(f"{folder} is not a folder.")
            return None
        out = None
        if not is_empty_path(self.output_folder.value):
            out = Path(self.output_folder.value).expanduser()
            if out.resolve() == folder.resolve():
                show_error(
                    "The output folder must not be the camera folder (the results would be "
                    "watched too): choose a sub-folder or another folder."
                )
                return None
        checked = self._checked_model("Watch")
        if checked is None:
            return None
        model_path, metadata, device = checked
        settle = float(self.settle_s.value)
        try:
            watcher = FolderWatcher(
                folder,
                settle_s=settle,
                poll_s=max(0.05, min(0.2, settle / 2)),
                existing="process" if self.process_existing.value else "skip",
            )
        except (OSError, ValueError) as err:
            show_error(f"Watch: {one_line(err)}")
            return None
        gain = float(self.gain.value)
        return SimpleNamespace(
            folder=folder,
            out=out,
            model_path=model_path,
            device=device,
            watcher=watcher,
            gain=gain if gain > 0 else 1.0,  # as 'napari-lowdose watch' (default 1)
        )

    def start_watch(self):
        """Watch the camera folder in a worker thread until :meth:`stop_watch`."""
        if self.watching:
            show_info("The camera folder is already being watched.")
            return
        request = self._watch_request()
        if request is None:
            return
        self._watch_stop.clear()
        self._watch = SimpleNamespace(
            request=request,
            raw=None,
            denoised=None,
            frame_shape=None,
            n_skipped=0,
            n_failures=0,
            stats=None,
            written=[],
            error=None,
        )
        skipped = len(request.watcher.skipped)
        self.watch_status.value = f"watching {request.folder}" + (
            f" ({skipped} file(s) already there skipped)" if skipped else ""
        )
        worker = thread_worker(self._watch_events)(request)
        self._watch_worker = worker
        worker.yielded.connect(self._on_watch_event)
        worker.errored.connect(self._on_watch_error)
        worker.finished.connect(self._on_watch_finished)
        self._update_enabled()
        worker.start()

    def stop_watch(self):
        """Stop watching; frames already shown (and written) are kept."""
        if self.watching:
            self._watch_stop.set()
            self.watch_status.value = "stopping…"

    def _watch_events(self, request):
        """Generator (worker thread): the watch session's events, results written to OUT."""
        from ..insitu import FrameDenoiser, InSituOutput, WatchSession
        from ..models.registry import load_denoiser

        watch = self._watch
        model, _ = load_denoiser(request.model_path, device="cpu")
        denoise = FrameDenoiser(model, request.device, counts_per_electron=request.gain)

        def process(frame, meta):
            return frame, denoise(frame, meta), meta.get("pixel_size_A")

        output = None if request.out is None else InSituOutput(request.out)
        on_result = None
        if output is not None:

            def on_result(result, meta):
                output.add_frame(
                    meta["path"], meta["frame_index_in_file"], result[1], meta, session.stats
                )

        session = WatchSession(
            request.watcher,
            process,
            on_result=on_result,
            should_stop=self._watch_stop.is_set,
            as_float32=True,
        )
        try:
            for event in session.run_iter(idle_yield_s=0.5):
                if event.failed and output is not None:
                    output.add_failure(event.result, event.stats)
                yield event
        finally:
            if output is not None:
                output.close()
                watch.written = output.written

    def _watch_text(self) -> str:
        watch = self._watch
        text = "" if watch.stats is None else watch.stats.summary()
        if watch.n_skipped:
            text += f", {watch.n_skipped} not shown (other frame size)"
        return text

    def _on_watch_event(self, event):
        if self._state.closed:
            return
        watch = self._watch
        watch.stats = event.stats
        if event.failed:
            failure = event.result
            where = "" if failure.frame_index is None else f" frame {failure.frame_index}"
            show_warning(
                f"In-situ: {Path(failure.path).name}{where}: {failure.stage} failed: "
                f"{failure.reason}"
            )
        elif not event.idle:
            raw, denoised, pixel = event.result
            self._append_live(event.path, raw, denoised, pixel)
        if self._watch_stop.is_set():
            return
        self.watch_status.value = self._watch_text()

    def _append_live(self, path, raw, denoised, pixel):
        """Append one frame to the "live raw" and "live denoised" layers."""
        watch = self._watch
        shape = tuple(np.shape(denoised))
        if watch.frame_shape is None:
            watch.frame_shape = shape
            watch.raw = self._live_stack(LIVE_RAW, shape)
            watch.denoised = self._live_stack(LIVE_DENOISED, shape)
        if shape != watch.frame_shape:
            watch.n_skipped += 1
            show_warning(
                f"In-situ: {Path(path).name}: a {shape[0]}×{shape[1]} frame, not "
                f"{watch.frame_shape[0]}×{watch.frame_shape[1]} like the first: not shown "
                f"({watch.n_skipped} so far)"
                + ("; it is still written to the output folder" if watch.request.out else "")
            )
            return
        layers = []
        for name, stack, frame in (
            (LIVE_RAW, watch.raw, raw),
            (LIVE_DENOISED, watch.denoised, denoised),
        ):
            view = stack.append(np.asarray(frame, dtype=np.float32))
            layers.append(self._show_live(name, view, frame, pixel))
        newest = layers[-1].data_to_world((watch.denoised.n - 1, 0, 0))[0]
        self._viewer.dims.set_point(self._viewer.dims.ndim - 3, newest)

    def _live_stack(self, name: str, shape) -> _GrowingStack:
        """A growing stack continuing the layer ``name`` when its frames have ``shape``."""
        if name in self._viewer.layers:
            data = self._viewer.layers[name].data
            if data.ndim == 3 and tuple(data.shape[1:]) == tuple(shape):
                return _GrowingStack(shape, initial=np.asarray(data))
        return _GrowingStack(shape)

    def _show_live(self, name: str, view: np.ndarray, frame, pixel):
        """Show ``view`` in the layer ``name`` (created with the first frame)."""
        layer = self._viewer.layers[name] if name in self._viewer.layers else None
        if layer is not None and isinstance(layer, napari.layers.Image) and layer.ndim == 3:
            layer.data = view
            return layer
        if layer is not None:
            self._viewer.layers.remove(layer)
        limits, full = _display_limits(frame)
        pixel_yx = None if pixel is None else tuple(float(v) for v in np.broadcast_to(pixel, 2))
        record = {"insitu": name, "folder": str(self._watch.request.folder)}
        if name == LIVE_DENOISED:
            record[DENOISED_KEY] = {
                "model": self._model_label(),
                "model_path": str(self._watch.request.model_path),
                "counts_per_electron": float(self._watch.request.gain),
            }
        layer = self._viewer.add_image(
            view,
            name=name,
            contrast_limits=limits,
            metadata={LOWDOSE_KEY: record},
            **image_layer_kwargs(pixel_yx, 3),
        )
        layer.contrast_limits_range = full
        layer.contrast_limits = limits
        return layer

    def _on_watch_error(self, err):
        if self._state.closed:
            return
        if self._watch is not None:
            self._watch.error = one_line(err)
        show_error(f"In-situ watch failed: {one_line(err)}")

    def _on_watch_finished(self):
        self._watch_worker = None
        if self._state.closed:
            return
        watch = self._watch
        self._update_enabled()
        if watch is None:
            return
        if watch.error:
            self.watch_status.value = f"stopped after an error: {watch.error}"
            return
        text = self._watch_text() or "nothing processed"
        if watch.request.out is not None:
            text += f"; {len(watch.written)} denoised file(s) written to {watch.request.out}"
        self.watch_status.value = f"stopped: {text}"
