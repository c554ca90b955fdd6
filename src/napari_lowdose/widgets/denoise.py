"""'Denoise' dock widget: low-dose frames through a denoiser, on a layer or a live folder.

The napari face of ``napari-lowdose denoise`` and ``napari-lowdose watch``, after
Katsuno et al. (2021).

Layer mode
    Frames of the chosen image layer go through
    :func:`napari_lowdose.models.denoising.denoise_frames` one by one in a worker
    thread and land, as they arrive, in one Image layer ``"<model> · <image>"`` of
    the same shape (:mod:`.denoise_output`), written in place and redrawn only when
    the frame shown is done or every :data:`.denoise_run.REFRESH_S`. Running again updates
    that layer; the source layer's data is never modified. Each frame is
    normalised by its expected electrons per vacuum pixel, ``dose · pixel
    height · pixel width``, when the layer has a per-frame dose and a pixel size
    in Å, otherwise by its own mean (the "expected e⁻/px" label says which).
    Scopes: the current frame, the whole series, or *live*: every frame the
    frame slider moves to is denoised if it is not done yet (:mod:`.denoise_live`).
    As with ``napari-lowdose denoise``, the detector gain (counts per electron)
    is the one set in the widget, else the one the layer's file states, else 1
    (frames in electrons). Frames are denoised whole unless they do not fit
    ("auto", :func:`napari_lowdose.models.tiling.auto_tile_px`) or a tile size is
    set; the "tiling" line says how many tiles and how much work that implies (the
    rule of ``--tile``, :func:`napari_lowdose.models.tiling.tile_plan`). Changing the
    gain or the tiling starts the output layer afresh. A whole-series run shows the
    time left from its first frame (and can be cancelled); a frame with NaN or
    infinite pixels stops it with one message naming the frame. After a run, the
    "quality" line judges the frames against an "independent frame" layer (another
    exposure of the field) or, for a series, frame against next frame: the unbiased
    MSE of raw, best Gaussian and denoiser (:mod:`.denoise_quality`).

In-situ mode
    A camera folder is watched and each frame written into it is denoised and
    appended to two growing layers (:mod:`.denoise_watch`).
"""

from types import SimpleNamespace

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import LowdoseError, one_line
from ..io.layers import LOWDOSE_KEY
from ..models.tiling import AUTO_TILE_MAX_PIXELS
from ._dose_overlay import show_frame_dose
from ._layers import (
    base_data,
    layer_counts_per_electron,
    layer_expected_e_per_px,
    pick_image_layer,
)
from ._network_dock import MODEL_SUFFIX, NetworkDock
from ._settings import DockSettings
from .denoise_live import LiveScope
from .denoise_output import DENOISED_KEY
from .denoise_quality import QualityRows
from .denoise_run import REFRESH_S, LayerRun
from .denoise_state import new_state, shutdown_handler, stop_all
from .denoise_watch import LIVE_DENOISED, LIVE_RAW, WatchMode

__all__ = [
    "FILE_CHOICE",
    "LIVE_DENOISED",
    "LIVE_RAW",
    "REFRESH_S",
    "DenoiseWidget",
]

FILE_CHOICE = "model file…"
SCOPE_CHOICES = [
    ("current frame", "current"),
    ("whole series", "all"),
    ("live (follows the frame slider)", "live"),
]
#: Gain spin-box text for 0: the layer's own value (its file's), else 1.
AUTO_GAIN_TEXT = "auto (the file's, else 1)"
#: Smallest tile ``napari-lowdose denoise --tile`` accepts.
MIN_TILE_PX = 16
_SIDE = int(AUTO_TILE_MAX_PIXELS**0.5)
#: Tile spin-box text for 0 and overlap spin-box text for 0.
AUTO_TILE_TEXT = f"auto (whole frames up to {_SIDE}×{_SIDE} px)"
AUTO_OVERLAP_TEXT = "auto (from the tile and the network)"


class DenoiseWidget(LayerRun, QualityRows, LiveScope, WatchMode, NetworkDock):
    """Denoise an image layer or a live camera folder with a trained denoiser.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are denoised.
    use_thread : bool, optional
        Run layer denoising in a worker thread (False: in the calling thread,
        for tests and scripts). The in-situ mode always uses a thread.
    """

    NETWORK = "denoiser"
    FILE_CHOICE = FILE_CHOICE
    MODEL_FILE_NULLABLE = True

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        # Shared with the destroyed-signal handler, which must not hold ``self``.
        self._state = new_state()
        super().__init__(viewer, use_thread=use_thread)
        self._stop_event = self._state.stop_event
        self._run = None  # the output layer and settings of the current / last run
        self._live = False
        self._live_pending: int | None = None
        self._model_cache: tuple | None = None  # (key, model) of the last loaded model
        self._skeletons: dict = {}  # config → unweighted network, for the tiling rule

        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
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
            label="tile (px)", min=0, max=65536, step=16, value=0,
            tooltip="Denoise frames larger than this in overlapping tiles of at most this "
            f"side (less memory; at least {MIN_TILE_PX} px). 0 = auto: whole frames "
            "unless they do not fit. As --tile of 'napari-lowdose denoise'.",
        )
        self.tile_px.native.setSpecialValueText(AUTO_TILE_TEXT)
        self.overlap_px = SpinBox(
            label="tile overlap (px)", min=0, max=4096, value=0,
            tooltip="Context each tile takes beyond its own part of the frame, on each "
            "inner side. 0 = auto: twice the network's receptive-field radius, at most 8 % "
            "of the tile (under ~1.5× the work of one pass).",
        )
        self.overlap_px.native.setSpecialValueText(AUTO_OVERLAP_TEXT)
        self.tile_info = Label(label="tiling", value="")
        self.dihedral = CheckBox(
            text="average over the 8 flips and quarter turns (8× slower)", value=False,
            tooltip="Denoise each frame in its eight orientations and average the results "
            "turned back: usually a lower error (on a real OneView pair 0.82× → 0.69× the "
            "best Gaussian filter's). As --dihedral-average of 'napari-lowdose denoise'.",
        )
        self.run_button = PushButton(text="Denoise")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="not run yet")
        self.reset_button = PushButton(text="Reset to defaults")
        watch_rows = self._build_watch_rows()
        quality_rows = self._build_quality_rows()

        self._model_inputs = [self.model, self.model_file, self.device, self.gain]
        self._tile_inputs = [self.tile_px, self.overlap_px]
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
                self.tile_info,
                self.dihedral,
                self.run_button,
                self.cancel_button,
                self.progress_bar,
                self.status,
                *quality_rows,
                *watch_rows,
                self.reset_button,
            ]
        )

        self._connect_model_rows()
        self.layer_combo.changed.connect(self._on_layer_changed)
        self.scope.changed.connect(self._on_scope_changed)
        self.gain.changed.connect(self._on_gain_changed)
        self.tile_px.changed.connect(self._on_tile_changed)
        self.overlap_px.changed.connect(self._on_tile_changed)
        self.model.changed.connect(self._on_tile_changed)
        self.model_file.changed.connect(self._on_tile_changed)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.reset_button.changed.connect(self.reset_settings)
        viewer.layers.events.inserted.connect(self._reset_choices)
        viewer.layers.events.removed.connect(self._reset_choices)
        viewer.dims.events.current_step.connect(self._on_step)
        self.native.destroyed.connect(shutdown_handler(self._state))
        self._reset_choices()
        picked = pick_image_layer(viewer, suits=self._suits)
        if picked is not None:
            self.layer_combo.value = picked
        self._on_model_changed()
        self._on_device_changed()
        self._on_layer_changed()
        self._on_tile_changed()
        # Remembered between sessions (never the layer, nor the series' calibration).
        self.settings = DockSettings("denoise", {
            "model": self.model, "model_file": self.model_file, "device": self.device,
            "gain": self.gain, "tile_px": self.tile_px, "overlap_px": self.overlap_px,
            "dihedral": self.dihedral,
            **self._watch_settings(),
        }).connect()
        show_frame_dose(viewer)

    def reset_settings(self, _event=None) -> None:
        """Give every remembered setting its default back (and forget the stored ones)."""
        self.settings.reset()

    # -- workers (kept in the shared state so that closing can stop them) ---------------
    @property
    def _worker(self):
        return self._state.worker

    @_worker.setter
    def _worker(self, worker):
        self._state.worker = worker

    @property
    def busy(self) -> bool:
        """Whether a layer denoising (run or live frame) is running."""
        return self._worker is not None

    @property
    def live(self) -> bool:
        """Whether the live scope follows the frame slider."""
        return self._live

    def on_closed(self) -> None:
        """The dock was closed: stop live mode, the running denoising and the watch."""
        if self.busy or self.watching:
            show_info("Denoise was closed: its run and folder watch are stopped; the "
                      "frames done are kept.")
        self.shutdown()

    def shutdown(self) -> None:
        """Stop live mode, the running denoising and the folder watch (for good)."""
        self._live, self._live_pending = False, None
        stop_all(self._state)

    # -- choices --------------------------------------------------------------------------
    def _image_layers(self, _widget=None):
        return [layer for layer in self._viewer.layers if self._suits(layer)]

    def _suits(self, layer) -> bool:
        """Whether the dock can denoise ``layer``: a grey 2-D frame or (frames, y, x)."""
        return (
            isinstance(layer, napari.layers.Image)
            and not getattr(layer, "rgb", False)
            and base_data(layer).ndim in (2, 3)
            and not self._is_output(layer)
        )

    @staticmethod
    def _is_output(layer) -> bool:
        return DENOISED_KEY in ((layer.metadata or {}).get(LOWDOSE_KEY) or {})

    def _reset_choices(self, _event=None):
        self.layer_combo.reset_choices()
        if hasattr(self, "reference_combo"):
            self.reference_combo.reset_choices()

    def _on_layer_changed(self, _value=None):
        layer = self.layer
        if hasattr(self, "reference_combo"):
            self.reference_combo.reset_choices()
        self._on_gain_changed()
        self._on_tile_changed()
        self._watch_calibration_from(layer)
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
        if not hasattr(self, "tile_info"):
            return  # still being built
        self.overlap_px.visible = int(self.tile_px.value) > 0
        layer = self.layer
        if layer is None:
            self.tile_info.value = ""
            return
        try:
            from ..models.checkpoint import read_checkpoint_metadata

            metadata = read_checkpoint_metadata(self._model_path())
            self.tile_info.value = self._plan(layer, metadata).describe()
        except (LowdoseError, ValueError, KeyError, TypeError) as err:
            self.tile_info.value = f"not possible: {one_line(err)}"

    def _tiling(self) -> tuple[int | str, int | None]:
        """(tile px or "auto", overlap px or None for auto); ValueError if too small."""
        tile = int(self.tile_px.value)
        overlap = int(self.overlap_px.value) or None
        if tile == 0:
            return "auto", overlap
        if tile < MIN_TILE_PX:
            raise ValueError(
                f"the tile must be 0 (auto) or at least {MIN_TILE_PX} px, not {tile}"
            )
        return tile, overlap

    def _plan(self, layer, metadata):
        """The tiling of ``layer``'s frames by the model of ``metadata`` (the core's rule)."""
        import json

        from ..models.denoiser import DenoiserUNet
        from ..models.tiling import model_tile_plan

        config = metadata.get("config") or {}
        key = json.dumps(config, sort_keys=True, default=str)
        if key not in self._skeletons:
            self._skeletons[key] = DenoiserUNet.from_config(config)
        tile, overlap = self._tiling()
        shape = tuple(int(v) for v in base_data(layer).shape[-2:])
        return model_tile_plan(self._skeletons[key], shape, tile, overlap)

    # -- model rows (see NetworkDock) -----------------------------------------------------
    def _no_model_file(self):
        from ..models.checkpoint import CheckpointError

        none = "" if self._available_models() else "no shipped denoiser is installed: "
        return CheckpointError(
            f"{none}choose a denoiser model file ({MODEL_SUFFIX}, made with "
            "'napari-lowdose train-denoiser')"
        )

    def _model_text(self, meta, path) -> str:
        arch = meta.get("arch", "?")
        if arch != "denoiser":
            return f"not usable: {path.name} holds a {arch}, not a denoiser"
        from ..models.registry import denoiser_score_text

        score = denoiser_score_text(meta)
        return f"{arch}{', ' + score if score else ''} ({path.name})"

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
        data = base_data(layer)
        if getattr(layer, "rgb", False) or data.ndim not in (2, 3):
            show_error(f"'{layer.name}' must be one 2-D frame or a (frames, y, x) series.")
            return None
        checked = self._checked_model("Denoise")
        if checked is None:
            return None
        model_path, metadata, device = checked
        try:
            plan = self._plan(layer, metadata)
        except ValueError as err:
            show_error(f"Denoise: {one_line(err)}")
            return None
        self.tile_info.value = plan.describe()
        from ..models.denoising import dose_warnings

        gain, gain_text = self.counts_per_electron(layer)
        self.gain_info.value = gain_text
        expected, expected_text = self._expected_e_per_px(layer)
        self.dose_info.value = expected_text
        indices = self.frame_indices(layer)
        if self.scope.value != "live" and indices:
            stated = (layer.metadata.get(LOWDOSE_KEY, {}).get("dose_hints") or {}).get(
                "counts_per_electron")
            first = data[indices[0]] if data.ndim == 3 else data
            warnings = dose_warnings(
                metadata, None if expected is None else [expected[i] for i in indices],
                counts_per_electron=gain, gain_known=bool(self.gain.value or stated),
                frame_mean_counts=None if expected is not None
                else float(np.mean(np.asarray(first, dtype=np.float64))))
            if warnings:
                show_warning("Denoise: " + "; ".join(warnings) + ".")
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
            plan=plan,
            dihedral=bool(self.dihedral.value),
        )

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
        self._update_watch_rows()
