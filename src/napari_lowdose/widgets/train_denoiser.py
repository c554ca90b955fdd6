"""'Train denoiser' dock widget: the GUI of ``napari-lowdose train-denoiser``.

Thin, like 'Train' (:mod:`.train`): it gathers the command's options and calls
:func:`napari_lowdose.train.denoise.train_denoiser` in a thread. Sources: a
'Simulate' dataset folder (its datasets built by the command's own code) or a
dose series of the viewer (Noise2Noise; per-frame dose from the layer's
metadata, pixel size from its scale). Every epoch adds a point to the live plot
of the validation PSNR (the noisy input's PSNR as a reference; best epoch
marked). "Stop" ends training after the current step; the best checkpoint is kept.
"""

from pathlib import Path
from types import SimpleNamespace

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info, show_warning

from ..io.errors import LowdoseError
from ._common import DEVICE_CHOICES, device_description, is_empty_path, one_line
from .denoise import layer_expected_e_per_px
from .noise_fit import _base_data, _style_axes
from .train import MODEL_SUFFIX, RANDOM_WEIGHTS, TrainingDock, _heading

SIMULATED, SERIES = "simulated", "series"
SOURCE_CHOICES = [("simulated dataset", SIMULATED), ("dose series (Noise2Noise)", SERIES)]


class TrainDenoiserWidget(TrainingDock):
    """Train a denoiser on a simulated dataset or a dose series, with a live PSNR plot."""

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__(viewer, use_thread=use_thread)
        #: Network settings (DenoiserUNet; empty: its defaults) and step caps, as the
        #: command's --base-channels/--levels, --steps-per-epoch, --max-val-images.
        self.model_config: dict = {}
        self.steps_per_epoch = None
        self.max_val_images = 16

        self.source = ComboBox(label="source", choices=SOURCE_CHOICES, value=SIMULATED)
        self.data_dir = FileEdit(label="dataset folder", mode="d", value="")
        self.e_per_px_range = LineEdit(label="e⁻/px range", value="0.05,100")
        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.init_model = ComboBox(
            label="start from", choices=self._init_choices, value=RANDOM_WEIGHTS
        )
        self.epochs = SpinBox(label="epochs", min=1, max=100_000, value=10)
        self.crop = SpinBox(label="crop (px)", min=8, max=8192, value=128)
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=8)
        self.learning_rate = FloatSpinBox(
            label="learning rate", min=1e-7, max=1.0, step=1e-4, value=1e-3
        )
        self.learning_rate.native.setDecimals(7)
        self.noise_weighted = CheckBox(text="noise-weighted loss", value=False)
        self.device = ComboBox(label="device", choices=DEVICE_CHOICES, value="auto")
        self.out_file = FileEdit(
            label="output model", mode="w", filter=f"*{MODEL_SUFFIX}", value=""
        )
        self.resume = CheckBox(text="resume from the saved state", value=True)
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress_bar = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="not started")
        self.status.native.setWordWrap(True)
        self._inputs = [
            self.source, self.data_dir, self.e_per_px_range, self.layer_combo,
            self.init_model, self.epochs, self.crop, self.batch_size, self.learning_rate,
            self.noise_weighted, self.device, self.out_file, self.resume,
        ]
        self.extend([
            _heading("Data"), self.source, self.data_dir, self.e_per_px_range,
            self.layer_combo, _heading("Training"), *self._inputs[4:],
            self.train_button, self.stop_button, self.progress_bar, self.status,
        ])
        self._build_plot()
        self.source.changed.connect(self._on_source_changed)
        self.train_button.changed.connect(self.train)
        self.stop_button.changed.connect(self.stop)
        viewer.layers.events.inserted.connect(self._reset_choices)
        viewer.layers.events.removed.connect(self._reset_choices)
        self._on_source_changed()

    # -- inputs ---------------------------------------------------------------------------
    def _image_layers(self, _widget=None):
        return [layer for layer in self._viewer.layers
                if isinstance(layer, napari.layers.Image) and not getattr(layer, "rgb", False)]

    def _reset_choices(self, _event=None):
        self.layer_combo.reset_choices()

    @staticmethod
    def _init_choices(_widget=None):
        from ..models.registry import available_denoisers

        return [RANDOM_WEIGHTS, *available_denoisers()]

    def _on_source_changed(self, _value=None):
        simulated = self.source.value == SIMULATED
        self.data_dir.visible = self.e_per_px_range.visible = simulated
        self.layer_combo.visible = not simulated

    def _datasets(self):
        """(train, val, notes) of the chosen source (raises LowdoseError, ValueError)."""
        from ..cli_denoise import _datasets

        notes: list[str] = []
        crop = int(self.crop.value)
        if self.source.value == SIMULATED:
            path = self.data_dir.value
            if is_empty_path(path) or not Path(path).is_dir():
                raise ValueError("Choose a dataset folder made by 'Simulate'.")
            lo, hi = (float(v) for v in self.e_per_px_range.value.split(","))
            if not 0 < lo <= hi:
                raise ValueError("The e⁻/px range must be LO,HI with 0 < LO ≤ HI.")
            args = SimpleNamespace(
                source=SIMULATED, data=Path(path), crop=crop, val_crop=None, seed=0,
                dose_range=None, e_per_px_range=(lo, hi), images_per_wave=4,
                clean_cache=512, max_waves=None)
            return (*_datasets(args, notes), notes)
        from ..train.denoise import Noise2NoiseSeries

        layer = self.layer_combo.value
        if layer is None:
            raise ValueError("Choose an image layer holding a dose series.")
        data = np.asarray(_base_data(layer), dtype=np.float32)
        if data.ndim != 3 or data.shape[0] < 2:
            raise ValueError(f"{layer.name}: Noise2Noise needs a series of at least 2 frames.")
        n = data.shape[0]
        # the 'Denoise' widget's per-frame e⁻/px (dose × pixel size², or None: frame means)
        e_per_px, text = layer_expected_e_per_px(layer, n)
        notes.append(text)
        index = np.arange(n)
        held_out = index % 10 >= 8 if n >= 10 else np.zeros(n, bool)
        val_index = index[held_out] if held_out.any() else index
        kwargs = {"expected_e_per_px": e_per_px, "max_frame_gap": 1, "seed": 0}
        train = Noise2NoiseSeries(data, frame_indices=index[~held_out].tolist(), crop_px=crop,
                                  crops_per_pair=4, **kwargs)
        val = Noise2NoiseSeries(data, frame_indices=val_index.tolist(), crop_px=2 * crop,
                                crops_per_pair=1, augment=False, **kwargs)
        return train, val, notes

    def settings(self):
        """The :class:`DenoiserSettings` of the current inputs (raises LowdoseError)."""
        from ..models.checkpoint import read_checkpoint_metadata
        from ..models.registry import resolve_denoiser
        from ..train.denoise import DenoiserSettings

        init = self.init_model.value
        init = None if init in (None, RANDOM_WEIGHTS) else str(init)
        config = dict(self.model_config)
        if init is not None:
            config = {**read_checkpoint_metadata(resolve_denoiser(init)).get("config", {}),
                      **config}
        return DenoiserSettings(
            model_config=config, epochs=int(self.epochs.value),
            batch_size=int(self.batch_size.value),
            learning_rate=float(self.learning_rate.value),
            loss="l2" if self.source.value == SERIES else "l1", device=self.device.value,
            steps_per_epoch=self.steps_per_epoch, max_val_images=self.max_val_images,
            source=self.source.value, noise_weighted=bool(self.noise_weighted.value),
            init_from=init)

    def _request(self):
        """(train, val, out, settings, notes) or None after show_error."""
        from ..train.device import select_device

        out = self.out_file.value
        try:
            train, val, notes = self._datasets()
            if is_empty_path(out):
                raise ValueError(f"Choose an output model file ({MODEL_SUFFIX}).")
            out = Path(out)
            if out.suffix != MODEL_SUFFIX:
                out = out.with_suffix(MODEL_SUFFIX)
            select_device(self.device.value)
            settings = self.settings()
        except (LowdoseError, ValueError) as err:
            show_error(one_line(err))
            return None
        return train, val, out, settings, notes

    # -- training -------------------------------------------------------------------------
    def train(self, _event=None):
        """Train with the current inputs (in a thread unless ``use_thread`` is False)."""
        if self._worker is not None:
            show_info("Training is already running.")
            return
        request = self._request()
        if request is None:
            return
        self.status.value = f"training on {device_description(self.device.value)}…"
        self._launch(request)

    def _run(self, train, val, out, settings, notes, *, direct=False):
        """Worker body: the training call, its callbacks relayed to the GUI thread."""
        from ..train.denoise import train_denoiser

        with self._callbacks("Train denoiser: steps", direct=direct) as (on_progress, on_epoch):
            return train_denoiser(
                train, val, out, settings, resume=bool(self.resume.value),
                progress=on_progress, should_stop=self._stop_event.is_set, on_epoch=on_epoch,
                metadata={"command": "napari 'Train denoiser' widget", "notes": notes})

    def _on_epoch(self, result):
        self.history.append(result.to_dict())
        marker = " (best, saved)" if result.best else ""
        self.status.value = (
            f"epoch {result.epoch}/{int(self.epochs.value)}: train loss "
            f"{result.train_loss:.4f}, val PSNR {result.val_psnr_db:.2f} dB (input "
            f"{result.input_psnr_db:.2f} dB), SSIM {result.val_ssim:.3f}{marker}"
        )
        self._update_plot()

    def _on_done(self, summary):
        self.summary = summary
        self.history = [dict(row) for row in summary.history]  # also the resumed epochs
        self._update_plot()
        if summary.best_epoch == 0:
            text = "stopped before the first epoch finished" if summary.stopped else (
                "no epoch finished")
            text = f"{text}; nothing was saved"
            show_warning(f"Training {text}.")
        else:
            best = (f"best PSNR {summary.best_psnr_db:.2f} dB (epoch {summary.best_epoch}) "
                    f"saved in {summary.checkpoint}")
            if summary.stopped:
                text = f"stopped after epoch {summary.epochs_done}; {best}"
                show_warning(f"Training {text}.")
            else:
                text = f"done: {summary.epochs_done} epochs on {summary.device}; {best}"
                show_info(f"Training {text}.")
        self.status.value = text

    # -- plot -----------------------------------------------------------------------------
    def _build_plot(self):
        self._new_figure(240)
        self.ax = self.figure.add_subplot()
        (self.psnr_line,) = self.ax.plot([], [], "o-", ms=3, color="#ff9e40", label="val PSNR")
        (self.input_line,) = self.ax.plot(
            [], [], "--", color="#8ab4f8", label="input PSNR (noisy)"
        )
        (self.best_marker,) = self.ax.plot([], [], "*", ms=12, color="#fdd663", label="best")
        self.ax.set_xlabel("epoch")
        self.ax.set_ylabel("PSNR (dB)")
        self.ax.legend(loc="lower right", fontsize="x-small")
        _style_axes(self.ax, self._colors)
        self.native.layout().addWidget(self.canvas)

    def _update_plot(self):
        epochs = np.array([row["epoch"] for row in self.history], dtype=float)
        psnr = np.array([row["val_psnr_db"] for row in self.history], dtype=float)
        self.psnr_line.set_data(epochs, psnr)
        self.input_line.set_data(
            epochs, np.array([row["input_psnr_db"] for row in self.history], dtype=float))
        if self.history:
            best = int(np.nanargmax(psnr)) if np.isfinite(psnr).any() else 0
            self.best_marker.set_data([epochs[best]], [psnr[best]])
            self.ax.set_title(f"best PSNR {psnr[best]:.2f} dB at epoch {epochs[best]:g}",
                              fontsize="small", color=self._colors["fg"])
            self.ax.set_xlim(0.5, max(epochs.max(), 2) + 0.5)
        else:
            self.best_marker.set_data([], [])
            self.ax.set_title("")
        self.ax.relim()
        self.ax.autoscale_view(scalex=False)
        self.canvas.draw_idle()

    def plotted_history(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The (epoch, value) data of the plotted curves and of the best-epoch marker."""
        lines = {"val_psnr_db": self.psnr_line, "input_psnr_db": self.input_line,
                 "best": self.best_marker}
        return {k: tuple(np.asarray(v, dtype=float) for v in line.get_data())
                for k, line in lines.items()}
