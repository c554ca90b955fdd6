"""'Train' dock widget: train an MSD-net or U-net on a simulated dataset (issue 5).

Thin: it gathers the options of ``napari-lowdose train`` (same defaults) and
calls :func:`napari_lowdose.train.segmentation.train_segmentation` in a thread
(the worker, Stop and the plot helpers are those of
:class:`._training_dock.TrainingDock`). Every step moves the progress bar; every
epoch adds a point to the live plot of train loss, validation loss and
validation F1 (best epoch marked). "Stop" ends training after the current step;
the best checkpoint so far is kept, and running again with "resume" continues
after the last epoch. The output file defaults to one beside the dataset folder,
named after the network (``<dataset>-unet.safetensors``), and follows the
architecture until the user picks a file of their own. A validation set without
particle pixels is reported as such: its F1 is undefined, never 0 or 1.
"""

from pathlib import Path

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info, show_warning

from ..analysis.metrics import NO_TRUTH_PIXELS
from ..device import DeviceError, select_device
from ..errors import one_line
from ..models.checkpoint import CheckpointError, model_output_path, read_checkpoint_metadata
from ..models.registry import available_models, resolve_model
from ..simulate.recipe import DatasetError, read_card
from ..train.loop import TrainingError
from ..train.segmentation import TrainSettings, train_segmentation
from ..train.segmentation import TrainSettings as DEFAULTS
from ..workflows.training import architecture_defaults, init_config
from ._common import DEVICE_CHOICES, device_description, heading, is_empty_path
from ._plotting import style_axes
from ._training_dock import MODEL_SUFFIX, RANDOM_WEIGHTS, TrainingDock, default_model_path

ARCH_CHOICES = [("MSD-net", "msdnet"), ("U-net", "unet")]
CURVES = ("train_loss", "val_loss", "val_f1", "calibrated_f1")


def card_summary(card: dict) -> str:
    """One line describing a dataset card: images, size, dose range, noise model."""
    recipe = card.get("recipe", {})
    split = card.get("split", {})
    structure = recipe.get("structure", {})
    n_train, n_val = int(split.get("n_train_images", 0)), int(split.get("n_val_images", 0))
    size = structure.get("size_px", "?")
    sampling = structure.get("sampling_range_A") or []
    sampling_txt = ""
    if len(sampling) == 2:
        lo, hi = sampling
        sampling_txt = f" at {lo:g} Å/px" if lo == hi else f" at {lo:g}–{hi:g} Å/px"
    dose = recipe.get("dose_range_e_per_A2") or [float("nan")] * 2
    noise = (recipe.get("noise_model") or {}).get("name", "?")
    status = card.get("status", "?")
    return (
        f"{n_train} train + {n_val} val images, {size}×{size} px{sampling_txt}, "
        f"dose {dose[0]:.3g}–{dose[1]:.3g} e⁻/Å², {noise} ({status})"
    )


class TrainWidget(TrainingDock):
    """Train a segmentation network on a simulated dataset, with a live loss / F1 plot."""

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__(viewer, use_thread=use_thread)
        self._out = None

        self.data_dir = FileEdit(label="dataset folder", mode="d", value="")
        self.card_info = Label(label="dataset", value="choose a 'Simulate' dataset folder")
        self.init_model = ComboBox(
            label="start from", choices=self._init_choices, value=RANDOM_WEIGHTS
        )
        self.init_info = Label(label="", value="")
        self.arch = ComboBox(label="architecture", choices=ARCH_CHOICES, value=DEFAULTS.arch)
        msd, unet = architecture_defaults("msdnet"), architecture_defaults("unet")
        self.msd_depth = SpinBox(label="MSD-net depth", min=1, max=1000, value=msd["depth"])
        self.msd_width = SpinBox(label="MSD-net width", min=1, max=64, value=msd["width"])
        self.msd_kernel = SpinBox(label="MSD-net kernel", min=1, max=31, step=2,
                                  value=msd["kernel_size"])
        self.unet_channels = SpinBox(label="U-net base channels", min=1, max=512,
                                     value=unet["base_channels"])
        self.unet_levels = SpinBox(label="U-net levels", min=1, max=8, value=unet["levels"])
        self.unet_kernel = SpinBox(label="U-net kernel", min=1, max=31, step=2,
                                   value=unet["kernel_size"])
        self.epochs = SpinBox(label="epochs", min=1, max=100_000, value=DEFAULTS.epochs)
        self.crop = SpinBox(label="crop (px, 0 = whole)", min=0, max=8192, value=DEFAULTS.crop_px)
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=DEFAULTS.batch_size)
        self.learning_rate = FloatSpinBox(
            label="learning rate", min=1e-7, max=1.0, step=1e-4, value=DEFAULTS.learning_rate
        )
        self.learning_rate.native.setDecimals(7)
        self.device = ComboBox(label="device", choices=DEVICE_CHOICES, value=DEFAULTS.device)
        self.device_info = Label(label="runs on", value="")
        self.out_file = FileEdit(
            label="output model", mode="w", filter=f"*{MODEL_SUFFIX}", value=""
        )
        self.select_calibrated = CheckBox(
            text="keep the best F1 at its own threshold", value=False,
            tooltip="Keep the checkpoint of best validation F1 at each epoch's best threshold "
            "instead of at 0.9 (train --select-by calibrated); segment it with the "
            "model's threshold",
        )
        self.resume = CheckBox(text="resume from the saved state", value=True)
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress_bar = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="not started")
        self._inputs = [
            self.data_dir,
            self.init_model,
            self.arch,
            self.msd_depth,
            self.msd_width,
            self.msd_kernel,
            self.unet_channels,
            self.unet_levels,
            self.unet_kernel,
            self.epochs,
            self.crop,
            self.batch_size,
            self.learning_rate,
            self.device,
            self.out_file,
            self.select_calibrated,
            self.resume,
        ]
        self.extend(
            [
                heading("Data"),
                self.data_dir,
                self.card_info,
                heading("Network"),
                self.init_model,
                self.init_info,
                self.arch,
                self.msd_depth,
                self.msd_width,
                self.msd_kernel,
                self.unet_channels,
                self.unet_levels,
                self.unet_kernel,
                heading("Training"),
                self.epochs,
                self.crop,
                self.batch_size,
                self.learning_rate,
                self.device,
                self.device_info,
                self.out_file,
                self.select_calibrated,
                self.resume,
                self.train_button,
                self.stop_button,
                self.progress_bar,
                self.time_left,
                self.status,
                self.reset_button,
            ]
        )
        self._build_plot()

        self.data_dir.changed.connect(self._on_data_changed)
        self.arch.changed.connect(self._on_arch_changed)
        self.init_model.changed.connect(self._on_init_changed)
        self.device.changed.connect(self._on_device_changed)
        self.train_button.changed.connect(self.train)
        self.stop_button.changed.connect(self.stop)
        self._on_arch_changed()
        self._on_device_changed()
        # the output file is not kept: it follows the dataset folder (and the network)
        self._remember("train", {
            "dataset_folder": self.data_dir, "arch": self.arch,
            "msd_depth": self.msd_depth, "msd_width": self.msd_width,
            "msd_kernel": self.msd_kernel, "unet_channels": self.unet_channels,
            "unet_levels": self.unet_levels, "unet_kernel": self.unet_kernel,
            "epochs": self.epochs, "crop_px": self.crop, "batch_size": self.batch_size,
            "learning_rate": self.learning_rate, "device": self.device,
            "select_calibrated": self.select_calibrated, "resume": self.resume,
            "start_from": self.init_model,  # last: a model to fine-tune sets the network
        })

    # -- inputs ---------------------------------------------------------------------------
    @staticmethod
    def _init_choices(_widget=None):
        return [RANDOM_WEIGHTS, *available_models()]

    @property
    def _network_inputs(self):
        return (self.arch, self.msd_depth, self.msd_width, self.msd_kernel,
                self.unet_channels, self.unet_levels, self.unet_kernel)

    def _on_init_changed(self, _value=None):
        """Fine-tuning: take the architecture and its settings from the chosen model."""

        start = self.init_model.value
        fine_tune = start not in (None, RANDOM_WEIGHTS)
        for widget in self._network_inputs:
            widget.enabled = not fine_tune
        if not fine_tune:
            self.init_info.value = ""
            return
        metadata = read_checkpoint_metadata(resolve_model(start))
        config = init_config(start)
        self.arch.value = metadata["arch"]
        if metadata["arch"] == "msdnet":
            self.msd_depth.value = config["depth"]
            self.msd_width.value = config["width"]
            self.msd_kernel.value = config["kernel_size"]
        else:
            self.unet_channels.value = config["base_channels"]
            self.unet_levels.value = config["levels"]
            self.unet_kernel.value = config["kernel_size"]
        self.init_info.value = (
            f"fine-tuning {start}: its weights and architecture (a lower learning rate, "
            "e.g. 3e-4, keeps what it learned)"
        )

    def _on_arch_changed(self, _value=None):
        msd = self.arch.value == "msdnet"
        for widget in (self.msd_depth, self.msd_width, self.msd_kernel):
            widget.visible = msd
        for widget in (self.unet_channels, self.unet_levels, self.unet_kernel):
            widget.visible = not msd
        self._suggest_out(self._default_path())

    def _default_path(self) -> Path | None:
        """``<dataset>-<arch>.safetensors`` beside the chosen dataset folder, or None."""
        path = self.data_dir.value
        if is_empty_path(path) or not Path(path).is_dir():
            return None
        return default_model_path(path, self.arch.value)

    def _on_device_changed(self, _value=None):
        self.device_info.value = device_description(self.device.value)

    def _on_data_changed(self, _value=None):
        card = self._read_card(notify=False)
        if card is None:
            return
        self._suggest_out(self._default_path())

    def _read_card(self, *, notify: bool):
        """The dataset card (also shown as one line), or None (after show_error if notify)."""

        path = self.data_dir.value
        if is_empty_path(path):
            message = "Choose a dataset folder made by 'Simulate' (or 'napari-lowdose simulate')."
            self.card_info.value = "choose a 'Simulate' dataset folder"
        elif not Path(path).is_dir():
            message = f"{path} is not a folder."
            self.card_info.value = "not a folder"
        else:
            try:
                card = read_card(path)
            except DatasetError as err:
                message = one_line(err)
                self.card_info.value = "not a napari-lowdose dataset"
            else:
                self.card_info.value = card_summary(card)
                if card.get("status") == "complete":
                    return card
                message = (
                    f"{path} is an unfinished dataset (status {card.get('status')!r}): "
                    "finish it with 'Simulate' first (generate into the same folder)."
                )
        if notify:
            show_error(message)
        return None

    def model_config(self) -> dict:
        """The architecture settings of the current inputs (all of the model's to fine-tune)."""
        if self.init_model.value not in (None, RANDOM_WEIGHTS):
            from ..workflows.training import init_config

            return init_config(self.init_model.value)
        if self.arch.value == "msdnet":
            return {
                "depth": int(self.msd_depth.value),
                "width": int(self.msd_width.value),
                "kernel_size": int(self.msd_kernel.value),
            }
        return {
            "base_channels": int(self.unet_channels.value),
            "levels": int(self.unet_levels.value),
            "kernel_size": int(self.unet_kernel.value),
        }

    def settings(self):
        """The :class:`TrainSettings` of the current inputs (raises TrainingError)."""

        return TrainSettings(
            arch=self.arch.value,
            model_config=self.model_config(),
            epochs=int(self.epochs.value),
            crop_px=int(self.crop.value) or None,
            batch_size=int(self.batch_size.value),
            learning_rate=float(self.learning_rate.value),
            device=self.device.value,
            select_by="calibrated" if self.select_calibrated.value else "threshold",
            init_from=None if self.init_model.value in (None, RANDOM_WEIGHTS)
            else str(self.init_model.value),
        )

    def _request(self):
        """(dataset, out, settings, resume) or None after show_error."""

        card = self._read_card(notify=True)
        if card is None:
            return None
        size = int(card.get("recipe", {}).get("structure", {}).get("size_px", 0))
        crop = int(self.crop.value)
        if crop and size and crop > size:
            show_error(
                f"The crop of {crop} px does not fit the {size}×{size} px images of "
                f"this dataset: choose at most {size} (or 0 for whole frames)."
            )
            return None
        if crop and crop < 8:
            show_error("The crop must be at least 8 px (or 0 for whole frames).")
            return None
        try:
            select_device(self.device.value)
        except DeviceError as err:
            show_error(f"Device: {one_line(err)}")
            return None
        out = self.out_file.value
        if is_empty_path(out):
            show_error(f"Choose an output model file ({MODEL_SUFFIX}).")
            return None
        try:
            out = model_output_path(out)
        except CheckpointError as err:
            show_error(f"{one_line(err)[0].upper()}{one_line(err)[1:]}.")
            return None
        try:
            settings = self.settings()
        except TrainingError as err:
            show_error(f"Invalid settings: {one_line(err)}")
            return None
        return Path(self.data_dir.value), out, settings, bool(self.resume.value)

    # -- training -------------------------------------------------------------------------
    def train(self, _event=None):
        """Train with the current inputs (in a thread unless ``use_thread`` is False)."""
        if self._worker is not None:
            show_info("Training is already running.")
            return
        request = self._request()
        if request is None:
            return
        self._out = request[1]
        self.status.value = f"training on {self.device_info.value} → {self._out}…"
        self._launch(request)

    def _run(self, data, out, settings, resume, *, direct=False):
        """Worker body: the training call, its callbacks relayed to the GUI thread."""

        with self._callbacks("Train: steps", direct=direct) as (on_progress, on_epoch):
            return train_segmentation(data, out, settings, resume=resume,
                                      progress=on_progress,
                                      should_stop=self._stop_event.is_set, on_epoch=on_epoch)

    def _on_epoch(self, result):
        self.history.append(result.to_dict())
        marker = " (best, saved)" if result.best else ""
        f1 = (f"{result.val_f1:.4f}" if result.f1_defined
              else "undefined (the validation images hold no particle pixels)")
        self.status.value = (
            f"epoch {result.epoch}/{int(self.epochs.value)}: train loss "
            f"{result.train_loss:.4f}, val loss {result.val_loss:.4f}, "
            f"val F1 {f1}{marker}"
        )
        if result.f1_defined and result.calibrated_threshold is not None:
            self.status.value += (f"; {result.calibrated_f1:.4f} at p ≥ "
                                  f"{result.calibrated_threshold:.2f}")
        self._update_plot()

    def _on_error(self, err):
        self._reset_after_failure()
        show_error(f"Training failed: {one_line(err)}")

    def _on_done(self, summary):
        self.summary = summary
        self.history = [dict(row) for row in summary.history]  # also the resumed epochs
        self._update_plot()
        if summary.best_epoch == 0:
            text = (
                "stopped before the first epoch finished; nothing was saved"
                if summary.stopped
                else "no epoch finished; nothing was saved"
            )
            show_warning(f"Training {text}.")
        elif not summary.f1_defined:
            text = (f"{'stopped' if summary.stopped else 'done'} after epoch "
                    f"{summary.epochs_done}, but {summary.warning} (epoch "
                    f"{summary.best_epoch}) in {summary.checkpoint}")
            show_warning(f"Training {text}.")
        else:
            best = (
                f"best F1 {summary.best_f1:.4f} (epoch {summary.best_epoch}) saved in "
                f"{summary.checkpoint}"
            )
            if summary.stopped:
                text = (
                    f"stopped after epoch {summary.epochs_done}; {best}; train again with "
                    "'resume' to continue"
                )
                show_warning(f"Training {text}.")
            else:
                text = f"done: {summary.epochs_done} epochs on {summary.device}; {best}"
                show_info(f"Training {text}.")
        self.status.value = text

    def _set_running(self, running: bool):
        super()._set_running(running)
        if not running and self.init_model.value not in (None, RANDOM_WEIGHTS):
            for widget in self._network_inputs:  # fine-tuning: the model's network
                widget.enabled = False

    # -- plot -----------------------------------------------------------------------------
    def _build_plot(self):
        self._new_figure(260)
        self.ax_loss = self.figure.add_subplot()
        self.ax_f1 = self.ax_loss.twinx()
        self.lines = {}
        (self.lines["train_loss"],) = self.ax_loss.plot(
            [], [], "o-", ms=3, color="#8ab4f8", label="train loss"
        )
        (self.lines["val_loss"],) = self.ax_loss.plot(
            [], [], "s--", ms=3, color="#81c995", label="val loss"
        )
        (self.lines["val_f1"],) = self.ax_f1.plot(
            [], [], "^-", ms=4, color="#ff9e40", label="val F1"
        )
        (self.lines["calibrated_f1"],) = self.ax_f1.plot(
            [], [], "v:", ms=4, color="#f28b82", label="val F1, best threshold"
        )
        (self.best_marker,) = self.ax_f1.plot([], [], "*", ms=12, color="#fdd663", label="best F1")
        self.ax_loss.set_xlabel("epoch")
        self.ax_loss.set_ylabel("BCE loss")
        self.ax_f1.set_ylabel("validation F1")
        self.ax_f1.set_ylim(0, 1)
        handles = [*self.lines.values(), self.best_marker]
        self.ax_loss.legend(
            handles, [h.get_label() for h in handles], loc="center right", fontsize="x-small"
        )
        for ax in (self.ax_loss, self.ax_f1):
            style_axes(ax, self._colors)
        self.content.layout().addWidget(self.canvas)

    def _update_plot(self):
        epochs = self._draw_history()
        key = "calibrated_f1" if self.select_calibrated.value else "val_f1"
        self._mark_best(epochs, self._column(key), "F1", ".3f", self.ax_loss, self.ax_f1)
        if self.history and not any(row.get("f1_defined", True) for row in self.history):
            self.ax_f1.set_title(NO_TRUTH_PIXELS, fontsize="small", color=self._colors["fg"])
            self.canvas.draw_idle()
