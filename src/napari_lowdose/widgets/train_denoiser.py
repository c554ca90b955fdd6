"""'Train denoiser' dock widget: the GUI of ``napari-lowdose train-denoiser``.

Thin, like 'Train' (:mod:`.train`; both are a :class:`._training_dock.TrainingDock`):
it gathers the options (with the defaults both faces read,
:data:`napari_lowdose.workflows.denoiser_training.DENOISER_TRAINING_DEFAULTS`) and calls
:func:`napari_lowdose.train.denoiser.train_denoiser` in a thread. Sources, as
``--source``: real short/long exposure pairs of two layers of the viewer
(:class:`~napari_lowdose.train.denoise_measured.PairedExposures`), a 'Simulate' dataset
folder (its datasets built by the command's own code) or a dose series of the
viewer (Noise2Noise). Per-frame dose comes from a layer's metadata and its pixel
size from its scale; the detector gain is the one set in the widget, else the
one the layer's file states, else 1 (as ``--counts-per-electron``). The network
size (base channels, levels; or those of the model training starts from) is
shown as a number of parameters. Every epoch adds a point to the live plot of
the validation PSNR (the noisy input's PSNR as a reference; best epoch marked).
"Stop" ends training after the current step; the best checkpoint is kept.

The frames are read and checked in the worker (a frame with NaN or inf pixels is
refused, named); the dock opens on the active (else the only) series; its settings
are remembered between sessions; the output file defaults to one beside the
dataset folder (or the series' file), ``<name>-denoiser.safetensors``.
"""

from pathlib import Path

import napari
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

from ..errors import LowdoseError, one_line
from ..models.checkpoint import model_output_path
from ..workflows.denoiser_training import DENOISER_TRAINING_DEFAULTS as DEFAULTS
from ._common import DEVICE_CHOICES, device_description, heading, is_empty_path
from ._layers import base_data, pick_image_layer
from ._plotting import style_axes
from ._training_dock import MODEL_SUFFIX, RANDOM_WEIGHTS, TrainingDock, default_model_path
from .denoise import AUTO_GAIN_TEXT
from .train_denoiser_data import (
    OWN,
    PAIRS,
    PHANTOMS,
    SERIES,
    SIMULATED,
    SOURCE_CHOICES,
    TrainingData,
    is_series,
    layer_file,
)

__all__ = [
    "OWN",
    "PAIRS",
    "SERIES",
    "SIMULATED",
    "SOURCE_CHOICES",
    "TrainDenoiserWidget",
    "count_parameters",
    "parameters_text",
]


def _network_defaults() -> dict:
    """The :class:`DenoiserUNet` settings used when none is given."""
    import torch

    from ..models.denoiser import DenoiserUNet

    with torch.device("meta"):  # no memory: only the settings are wanted
        return dict(DenoiserUNet().config)


def count_parameters(config: dict) -> int:
    """Number of parameters of the :class:`DenoiserUNet` of ``config`` (nothing allocated).

    Raises
    ------
    ValueError
        If ``config`` is not a valid network.
    """
    import torch

    from ..models.denoiser import DenoiserUNet

    with torch.device("meta"):
        model = DenoiserUNet.from_config(config)
    return int(sum(p.numel() for p in model.parameters()))


def parameters_text(n: int) -> str:
    """``"1.02 M parameters (1,023,457)"``: a network size for a label."""
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M parameters ({n:,})"
    if n >= 1_000:
        return f"{n / 1e3:.1f} k parameters ({n:,})"
    return f"{n} parameters"


class TrainDenoiserWidget(TrainingData, TrainingDock):
    """Train a denoiser on exposure pairs, a simulated dataset or a dose series.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers can be the training data.
    use_thread : bool, optional
        Train in a worker thread (False: in the calling thread, for tests and scripts).
    """

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__(viewer, use_thread=use_thread)
        #: Step caps, as the command's --steps-per-epoch and --max-val-images.
        self.steps_per_epoch = DEFAULTS.steps_per_epoch
        self.max_val_images = DEFAULTS.max_val_images
        defaults = _network_defaults()
        self._extra_config: dict = {}  # network settings without an input (model_config)
        #: Parameters of the network to train (None: its settings are not usable).
        self.n_parameters: int | None = None

        self.source = ComboBox(label="source", choices=SOURCE_CHOICES, value=SIMULATED)
        self.data_dir = FileEdit(label="dataset folder", mode="d", value="")
        from ..train.denoise_simulated import DEFAULT_E_PER_PX_RANGE  # the command's default

        self.e_per_px_range = LineEdit(
            label="e⁻/px range", value="{:g},{:g}".format(*DEFAULT_E_PER_PX_RANGE))
        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.short_combo = ComboBox(
            label="short exposures", choices=self._image_layers, nullable=True,
            tooltip="Low-dose frames (the network's input)",
        )
        self.long_combo = ComboBox(
            label="long exposures", choices=self._image_layers, nullable=True,
            tooltip="Long exposures of the same field: one per short exposure, or one for "
            "all (the targets; registered and scaled to the short ones' dose)",
        )
        self.own_info = Label(label="exposures", value="")
        self.own_info.native.setWordWrap(True)
        self.val_fraction = FloatSpinBox(
            label="held-out share", min=0.05, max=0.95, step=0.05,
            value=DEFAULTS.own_val_fraction,
            tooltip="Share of the field's rows (the bottom ones) kept out of training and "
            "used to judge it with the unbiased MSE against the best Gaussian filter. As "
            "--val-fraction.",
        )
        self.gain = FloatSpinBox(
            label="counts per e⁻", min=0.0, max=1e6, step=0.1, value=0.0,
            tooltip="Detector gain (counts per electron) the frames are divided by; 0 = auto: "
            "the gain the layer's file states, else 1. As --counts-per-electron.",
        )
        self.gain.native.setDecimals(4)
        self.gain.native.setSpecialValueText(AUTO_GAIN_TEXT)
        self.init_model = ComboBox(
            label="start from", choices=self._init_choices, value=RANDOM_WEIGHTS
        )
        self.base_channels = SpinBox(
            label="base channels", min=1, max=1024, value=int(defaults["base_channels"]),
            tooltip="Channels of the first block (--base-channels)",
        )
        self.levels = SpinBox(
            label="levels", min=0, max=10, value=int(defaults["levels"]),
            tooltip="Down-sampling steps (--levels)",
        )
        self.network_info = Label(label="network", value="")
        self.epochs = SpinBox(label="epochs", min=1, max=100_000, value=DEFAULTS.epochs)
        self.crop = SpinBox(label="crop (px)", min=8, max=8192, value=DEFAULTS.crop_px)
        self.batch_size = SpinBox(
            label="batch size", min=1, max=4096, value=DEFAULTS.batch_size
        )
        # Katsuno et al. (2021): Adam at 1e-4, the command's default.
        self.learning_rate = FloatSpinBox(
            label="learning rate", min=1e-7, max=1.0, step=1e-4, value=DEFAULTS.learning_rate
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
        self.network_info.native.setWordWrap(True)
        data_inputs = [
            self.source, self.data_dir, self.e_per_px_range, self.layer_combo,
            self.short_combo, self.long_combo, self.own_info, self.val_fraction, self.gain,
        ]
        network_inputs = [self.init_model, self.base_channels, self.levels]
        training_inputs = [
            self.epochs, self.crop, self.batch_size, self.learning_rate,
            self.noise_weighted, self.device, self.out_file, self.resume,
        ]
        self._inputs = [*data_inputs, *network_inputs, *training_inputs]
        self.extend([
            heading("Data"), *data_inputs,
            heading("Network"), *network_inputs, self.network_info,
            heading("Training"), *training_inputs,
            self.train_button, self.stop_button, self.progress_bar, self.time_left,
            self.status, self.reset_button,
        ])
        self._build_plot()
        self.source.changed.connect(self._on_source_changed)
        self.init_model.changed.connect(self._on_network_changed)
        self.base_channels.changed.connect(self._on_network_changed)
        self.levels.changed.connect(self._on_network_changed)
        self.train_button.changed.connect(self.train)
        self.stop_button.changed.connect(self.stop)
        viewer.layers.events.inserted.connect(self._reset_choices)
        viewer.layers.events.removed.connect(self._reset_choices)
        viewer.layers.selection.events.changed.connect(self._on_selection_changed)
        self.data_dir.changed.connect(self._update_default_out)
        self.layer_combo.changed.connect(self._update_default_out)
        self.short_combo.changed.connect(self._update_default_out)
        self._on_source_changed()
        self._on_network_changed()
        self._remember("train_denoiser", {
            "source": self.source, "dataset_folder": self.data_dir,
            "e_per_px_range": self.e_per_px_range, "counts_per_electron": self.gain,
            "base_channels": self.base_channels, "levels": self.levels,
            "epochs": self.epochs, "crop_px": self.crop, "batch_size": self.batch_size,
            "learning_rate": self.learning_rate, "noise_weighted": self.noise_weighted,
            "held_out_share": self.val_fraction,
            "device": self.device, "resume": self.resume,
            "start_from": self.init_model,  # last: a model to start from sets the network
        })
        self._pick_series()

    # -- inputs ---------------------------------------------------------------------------
    def _image_layers(self, _widget=None):
        return [layer for layer in self._viewer.layers
                if isinstance(layer, napari.layers.Image) and not getattr(layer, "rgb", False)]

    def _reset_choices(self, _event=None):
        for combo in (self.layer_combo, self.short_combo, self.long_combo):
            combo.reset_choices()
        self._pick_series()

    def _pick_series(self) -> None:
        """Start on the active (else the only) dose series when none is chosen."""
        if self.layer_combo.value is None:
            layer = pick_image_layer(self._viewer, suits=is_series)
            if layer is not None:
                self.layer_combo.value = layer

    @staticmethod
    def _init_choices(_widget=None):
        from ..models.registry import available_denoisers

        return [RANDOM_WEIGHTS, *available_denoisers()]

    def _on_source_changed(self, _value=None):
        source = self.source.value
        simulated = source in (SIMULATED, PHANTOMS)
        self.data_dir.visible = self.e_per_px_range.visible = simulated
        self.layer_combo.visible = source == SERIES
        self.short_combo.visible = self.long_combo.visible = source == PAIRS
        self.own_info.visible = self.val_fraction.visible = source == OWN
        self.gain.visible = not simulated  # simulated data has its own detector model
        if source == OWN and self._init_name() is None:
            from ..models.registry import DEFAULT_DENOISER

            if DEFAULT_DENOISER in self.init_model.choices:  # fine-tune the shipped one
                self.init_model.value = DEFAULT_DENOISER
        self._on_selection_changed()

    def _on_selection_changed(self, _event=None) -> None:
        """The 'exposures' line: the selected layers the own-field source would use."""
        if not hasattr(self, "own_info"):
            return
        try:
            layers = self._own_layers()
            n = sum(1 if base_data(layer).ndim == 2 else int(base_data(layer).shape[0])
                    for layer in layers)
            self.own_info.value = (f"{n} exposures: "
                                   + ", ".join(f"'{layer.name}'" for layer in layers))
        except ValueError as err:
            self.own_info.value = str(err)
        self._update_default_out()

    def _update_default_out(self, _value=None) -> None:
        """Suggest ``<dataset or file>-denoiser.safetensors`` beside the training data."""
        source, path = self.source.value, None
        if source in (SIMULATED, PHANTOMS):
            folder = self.data_dir.value
            if not is_empty_path(folder) and Path(folder).is_dir():
                path = default_model_path(folder, "denoiser")
        else:
            if source == OWN:
                selected = [layer for layer in self._viewer.layers.selection
                            if layer in self._image_layers()]
                layer = selected[0] if selected else None
            else:
                layer = self.layer_combo.value if source == SERIES else self.short_combo.value
            file = None if layer is None else layer_file(layer)
            if file is not None:
                path = default_model_path(file.with_suffix(""), "denoiser")
        self._suggest_out(path)

    # -- network --------------------------------------------------------------------------
    @property
    def model_config(self) -> dict:
        """Network settings (:class:`DenoiserUNet`), as --base-channels and --levels.

        Setting it sets the inputs (missing keys: the defaults); other keys are kept
        as they are given.
        """
        return {**self._extra_config, "base_channels": int(self.base_channels.value),
                "levels": int(self.levels.value)}

    @model_config.setter
    def model_config(self, config: dict) -> None:
        defaults = _network_defaults()
        config = dict(config or {})
        self._extra_config = {k: v for k, v in config.items()
                              if k not in ("base_channels", "levels")}
        self.base_channels.value = int(config.get("base_channels", defaults["base_channels"]))
        self.levels.value = int(config.get("levels", defaults["levels"]))
        self._on_network_changed()

    def _init_name(self) -> str | None:
        init = self.init_model.value
        return None if init in (None, RANDOM_WEIGHTS) else str(init)

    def _init_config(self, init: str) -> dict:
        """Network settings of the model to start from (raises LowdoseError)."""
        from ..models.checkpoint import read_checkpoint_metadata
        from ..models.registry import resolve_denoiser

        metadata = read_checkpoint_metadata(resolve_denoiser(init))
        if metadata.get("arch") != "denoiser":
            raise LowdoseError(f"{init} holds a {metadata.get('arch')}, not a denoiser")
        return dict(metadata.get("config") or {})

    def network_config(self) -> dict:
        """The settings of the network to train (the start-from model's, if one is chosen).

        Raises
        ------
        LowdoseError
            If the start-from model cannot be read or is no denoiser.
        """
        init = self._init_name()
        if init is None:
            return self.model_config
        return {**self._init_config(init), **self._extra_config}

    def _on_network_changed(self, _value=None):
        """Start-from model: take its settings; show the size of the network."""
        init = self._init_name()
        for widget in (self.base_channels, self.levels):
            widget.enabled = init is None and not self.busy
        try:
            config = self.network_config()
            if init is not None:  # show its settings (the inputs do not apply)
                with self.base_channels.changed.blocked(), self.levels.changed.blocked():
                    self.base_channels.value = int(config.get("base_channels",
                                                              self.base_channels.value))
                    self.levels.value = int(config.get("levels", self.levels.value))
            self.n_parameters = count_parameters(config)
        except (LowdoseError, ValueError) as err:
            self.n_parameters = None
            self.network_info.value = f"unknown: {one_line(err)}"
            return
        origin = "" if init is None else f" (those of {init})"
        self.network_info.value = parameters_text(self.n_parameters) + origin

    def _set_running(self, running: bool):
        super()._set_running(running)
        if not running:  # the network inputs stay off while a start-from model is chosen
            for widget in (self.base_channels, self.levels):
                widget.enabled = self._init_name() is None

    # -- request (the data: :class:`~.train_denoiser_data.TrainingData`) ------------------
    def settings(self):
        """The :class:`DenoiserSettings` of the current inputs (raises LowdoseError)."""
        from ..train.denoiser import DenoiserSettings

        init = self._init_name()
        return DenoiserSettings(
            model_config=self.network_config(), epochs=int(self.epochs.value),
            batch_size=int(self.batch_size.value),
            learning_rate=float(self.learning_rate.value),
            loss="l2" if self.source.value in (SERIES, OWN) else "l1",
            device=self.device.value,
            seed=DEFAULTS.seed,
            steps_per_epoch=self.steps_per_epoch, max_val_images=self.max_val_images,
            source=self.source.value, noise_weighted=bool(self.noise_weighted.value),
            init_from=init)

    def _request(self):
        """(source spec, out, settings, resume) or None after show_error."""
        from ..device import select_device

        out = self.out_file.value
        try:
            spec = self._source_spec()
            if is_empty_path(out):
                raise ValueError(f"Choose an output model file ({MODEL_SUFFIX}).")
            out = model_output_path(out)
            select_device(self.device.value)
            settings = self.settings()
        except (LowdoseError, ValueError) as err:
            show_error(one_line(err))
            return None
        return spec, out, settings, bool(self.resume.value)

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

    def _run(self, spec, out, settings, resume, *, direct=False):
        """Worker body: the frames read and checked, then the training call (its
        callbacks relayed to the GUI thread)."""
        from ..train.denoiser import train_denoiser

        train, val, notes = self._datasets(spec)
        with self._callbacks("Train denoiser: steps", direct=direct) as (on_progress, on_epoch):
            return train_denoiser(
                train, val, out, settings, resume=resume,
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
        if result.readout:
            self.status.value += f"; {result.readout_line()}"
        self._update_plot()

    def _on_error(self, err):
        self._reset_after_failure()
        show_error(f"Training failed: {one_line(err)}")

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
            text += "".join(f"\n{line}" for line in summary.readout_lines())
        self.status.value = text

    # -- plot -----------------------------------------------------------------------------
    def _build_plot(self):
        self._new_figure(240)
        self.ax = self.figure.add_subplot()
        (psnr_line,) = self.ax.plot([], [], "o-", ms=3, color="#ff9e40", label="val PSNR")
        (input_line,) = self.ax.plot([], [], "--", color="#8ab4f8", label="input PSNR (noisy)")
        self.lines = {"val_psnr_db": psnr_line, "input_psnr_db": input_line}
        (self.best_marker,) = self.ax.plot([], [], "*", ms=12, color="#fdd663", label="best")
        self.ax.set_xlabel("epoch")
        self.ax.set_ylabel("PSNR (dB)")
        self.ax.legend(loc="lower right", fontsize="x-small")
        style_axes(self.ax, self._colors)
        self.content.layout().addWidget(self.canvas)

    def _update_plot(self):
        epochs = self._draw_history()
        self._mark_best(epochs, self._column("val_psnr_db"), "PSNR", ".2f", self.ax, self.ax,
                        unit=" dB")
