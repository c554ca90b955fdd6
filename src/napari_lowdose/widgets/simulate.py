"""'Simulate' dock widget: preview simulated images and generate training datasets.

Thin: it gathers inputs and calls the pure simulation modules
(:mod:`napari_lowdose.simulate`, Larsen et al. 2023, Section 2, Table 1).

* Preview: structure 0 of the dataset these settings would make, imaged with
  the optics of its image epoch 0 (Table 1), then the detector noise of Eq. 3
  at a chosen dose (:mod:`.simulate_preview`). Three layers — clean, noisy and
  the truth mask — calibrated in Å; running again updates them. Changing the
  dose or pressing "Re-noise" redraws only the noise.
* Dataset: :func:`~napari_lowdose.simulate.dataset.generate_dataset` in a
  thread, with a progress bar and Cancel; a cancelled run resumes when it is
  generated into the same folder again with the same settings
  (:mod:`.simulate_dataset`).

Both runs have a progress bar (the dataset's with the time left, timed from the
first structures); any failure is one notification and leaves the dock usable.
The settings are remembered between sessions ("Reset to defaults").
"""

import os
import threading
from pathlib import Path

import napari
from magicgui.widgets import (
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import one_line
from ..io.layers import LOWDOSE_KEY
from ..noise.model import NoiseModel
from ..noise.presets import PRESETS
from ..simulate.optics import DOSE_RANGES_E_PER_A2
from ..simulate.series import preview_noisy_image
from ..simulate.structures import StructureRecipe
from ._activity import ActivityBar
from ._common import DockContainer, heading, is_empty_path
from ._settings import DockSettings
from ._workers import run_task
from .simulate_dataset import SimulateDataset, _Relay
from .simulate_preview import noise_rng, preview_steps, preview_text, set_preview_layer

NOISE_FILE = "file"
CUSTOM_DOSE = "custom"
LAYER_NAMES = {
    "clean": "simulated clean",
    "noisy": "simulated noisy",
    "mask": "simulated mask",
}
_DEFAULT_STRUCTURE = StructureRecipe()


def _noise_choices():
    choices = []
    for key, model in PRESETS.items():
        (c0_lo, c0_hi), (c3_lo, c3_hi) = model.c0_range, model.c3_range
        label = f"{key[:3]} {key[3:]} (c0 {c0_lo:g}–{c0_hi:g}, c3 {c3_lo:g}–{c3_hi:g})"
        choices.append((label, key))
    return choices + [("noise model file (JSON)…", NOISE_FILE)]


def _dose_choices():
    choices = [
        (f"{name}: {lo:.0e}–{hi:.0e} e⁻/Å² (Table 2)", name)
        for name, (lo, hi) in DOSE_RANGES_E_PER_A2.items()
    ]
    return choices + [("custom", CUSTOM_DOSE)]


def _log_steps(spin_box):
    """Step a float spin box by about a tenth of its value; emit only on Enter / focus-out."""
    from qtpy.QtWidgets import QAbstractSpinBox

    native = spin_box.native
    try:
        native.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
        native.setKeyboardTracking(False)
    except AttributeError:  # pragma: no cover - not a Qt spin box
        pass


class SimulateWidget(SimulateDataset, DockContainer):
    """Preview simulated HR-TEM images of supported Au particles and generate datasets."""

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__()
        self._viewer = viewer
        self.use_thread = use_thread
        self._preview_worker = None
        self._dataset_worker = None
        self._preview_cancelled = False
        self._stop_event = threading.Event()
        self._noise_draw = 0
        self.preview = None  # dict: structure, clean, optics, sampling_A, seed, noise record
        self.layers = {}  # role -> layer, updated in place
        self.last_progress = None  # (done, total) of the last dataset progress call
        self.summary = None  # DatasetSummary of the last dataset run
        self._dataset_epochs = 0
        self._relay = _Relay()
        self._relay.progress.connect(self._show_dataset_progress)
        self._dataset_started = 0.0
        self._first_done: int | None = None  # structures done before this run (resumed)

        s = _DEFAULT_STRUCTURE
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.size_px = SpinBox(label="field (px)", min=32, max=4096, step=32, value=s.size_px)
        self.sampling_min = FloatSpinBox(
            label="sampling from (Å/px)",
            min=0.01,
            max=5.0,
            step=0.005,
            value=s.sampling_range_A[0],
        )
        self.sampling_max = FloatSpinBox(
            label="sampling to (Å/px)", min=0.01, max=5.0, step=0.005, value=s.sampling_range_A[1]
        )
        self.diameter_min = FloatSpinBox(
            label="diameter from (Å)", min=1.0, max=1000.0, step=1.0, value=s.diameter_range_A[0]
        )
        self.diameter_max = FloatSpinBox(
            label="diameter to (Å)", min=1.0, max=1000.0, step=1.0, value=s.diameter_range_A[1]
        )
        self.noise = ComboBox(label="noise model", choices=_noise_choices(), value="MTF4")
        self.noise_file = FileEdit(label="noise model file", mode="r", filter="*.json", value="")
        self.dose = FloatSpinBox(label="dose (e⁻/Å²)", min=0.01, max=1e8, step=0.01, value=1e3)
        _log_steps(self.dose)
        self.preview_button = PushButton(text="Preview")
        self.renoise_button = PushButton(text="Re-noise", enabled=False)
        self.cancel_preview_button = PushButton(text="Cancel preview", enabled=False)
        self.preview_progress = ProgressBar(label="preview steps", min=0, max=3, value=0)
        self.preview_status = Label(label="preview", value="none yet")

        self.out_dir = FileEdit(label="output folder", mode="d", value="")
        self.n_structures = SpinBox(label="structures", min=1, max=1_000_000, value=100)
        self.image_epochs = SpinBox(label="image epochs", min=1, max=10_000, value=10)
        self.dose_range = ComboBox(label="dose range", choices=_dose_choices(), value="high")
        self.dose_min = FloatSpinBox(
            label="custom from (e⁻/Å²)", min=1e-3, max=1e9, value=10.0, enabled=False
        )
        self.dose_max = FloatSpinBox(
            label="custom to (e⁻/Å²)", min=1e-3, max=1e9, value=1e4, enabled=False
        )
        self.val_fraction = FloatSpinBox(
            label="validation fraction", min=0.0, max=0.9, step=0.01, value=0.05
        )
        self.workers = SpinBox(label="workers", min=1, max=max(1, os.cpu_count() or 1), value=1)
        self.generate_button = PushButton(text="Generate dataset")
        self.cancel_dataset_button = PushButton(text="Cancel dataset", enabled=False)
        self.dataset_progress = ProgressBar(label="structures", min=0, max=1, value=0)
        self.time_left = Label(label="time left", value="")
        self.dataset_status = Label(label="dataset", value="not started")
        self.reset_button = PushButton(text="Reset to defaults")

        self.extend(
            [
                heading("Structure and detector"),
                self.seed,
                self.size_px,
                self.sampling_min,
                self.sampling_max,
                self.diameter_min,
                self.diameter_max,
                self.noise,
                self.noise_file,
                heading("Preview"),
                self.dose,
                self.preview_button,
                self.renoise_button,
                self.cancel_preview_button,
                self.preview_progress,
                self.preview_status,
                heading("Dataset"),
                self.out_dir,
                self.n_structures,
                self.image_epochs,
                self.dose_range,
                self.dose_min,
                self.dose_max,
                self.val_fraction,
                self.workers,
                self.generate_button,
                self.cancel_dataset_button,
                self.dataset_progress,
                self.time_left,
                self.dataset_status,
                self.reset_button,
            ]
        )
        self.noise.changed.connect(self._on_noise_changed)
        self.dose_range.changed.connect(self._on_dose_range_changed)
        self.dose.changed.connect(self._on_dose_changed)
        self.preview_button.changed.connect(self.run_preview)
        self.renoise_button.changed.connect(self.renoise)
        self.cancel_preview_button.changed.connect(self.cancel_preview)
        self.generate_button.changed.connect(self.generate)
        self.cancel_dataset_button.changed.connect(self.cancel_dataset)
        self.reset_button.changed.connect(self.reset_settings)
        self._on_noise_changed()
        self.dock_settings = DockSettings("simulate", {
            "seed": self.seed, "size_px": self.size_px, "sampling_min_A": self.sampling_min,
            "sampling_max_A": self.sampling_max, "diameter_min_A": self.diameter_min,
            "diameter_max_A": self.diameter_max, "noise_model": self.noise,
            "noise_file": self.noise_file, "dose_e_per_A2": self.dose,
            "output_folder": self.out_dir, "structures": self.n_structures,
            "image_epochs": self.image_epochs, "dose_range": self.dose_range,
            "custom_dose_min": self.dose_min, "custom_dose_max": self.dose_max,
            "val_fraction": self.val_fraction, "workers": self.workers,
        }).connect()

    def reset_settings(self, _event=None) -> None:
        """Give every remembered input its default back (and forget the stored values)."""
        if not self.busy:
            self.dock_settings.reset()

    # -- inputs ---------------------------------------------------------------------------
    def _on_noise_changed(self, _value=None):
        self.noise_file.visible = self.noise.value == NOISE_FILE

    def _on_dose_range_changed(self, _value=None):
        custom = self.dose_range.value == CUSTOM_DOSE
        self.dose_min.enabled = self.dose_max.enabled = custom

    def structure_recipe(self) -> StructureRecipe:
        """The structure recipe of the current inputs (raises ValueError if invalid)."""
        return StructureRecipe(
            size_px=int(self.size_px.value),
            sampling_range_A=(float(self.sampling_min.value), float(self.sampling_max.value)),
            diameter_range_A=(float(self.diameter_min.value), float(self.diameter_max.value)),
        )

    def noise_model(self) -> NoiseModel:
        """The chosen noise model (raises ValueError if the file is missing or invalid)."""
        if self.noise.value != NOISE_FILE:
            return PRESETS[self.noise.value]
        path = self.noise_file.value
        if is_empty_path(path) or not Path(path).is_file():
            raise ValueError("choose a noise model file (JSON saved by 'Detector noise')")
        return NoiseModel.from_json(path)

    def dose_range_e_per_A2(self) -> tuple[float, float]:
        """The dataset's frame-dose range in e⁻/Å² (raises ValueError if invalid)."""
        if self.dose_range.value != CUSTOM_DOSE:
            return DOSE_RANGES_E_PER_A2[self.dose_range.value]
        low, high = float(self.dose_min.value), float(self.dose_max.value)
        if not 0 < low <= high:
            raise ValueError(
                f"the custom dose range must satisfy 0 < from <= to, got {low:g}–{high:g} e⁻/Å²"
            )
        return (low, high)

    def _common_inputs(self):
        """(recipe, noise model) or None after show_error."""
        try:
            recipe = self.structure_recipe()
        except ValueError as err:
            show_error(f"Invalid structure settings: {err}")
            return None
        try:
            model = self.noise_model()
        except (ValueError, OSError) as err:
            show_error(f"Noise model: {err}")
            return None
        notes = model.implausible()
        if notes:
            show_warning(f"Noise model '{model.name}': {'; '.join(notes)}: is this the detector "
                         "you mean?")
        return recipe, model

    # -- preview --------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a preview or a dataset run is in progress."""
        return self._preview_worker is not None or self._dataset_worker is not None

    def run_preview(self, _event=None):
        """Simulate structure 0 and its exit wave, then the clean and noisy images."""
        if self._preview_worker is not None:
            show_info("A preview is already running.")
            return
        inputs = self._common_inputs()
        if inputs is None:
            return
        recipe, model = inputs
        request = {
            "seed": int(self.seed.value),
            "recipe": recipe,
            "noise_model": model,
            "dose": float(self.dose.value),
        }
        self._noise_draw = 0
        self._preview_cancelled = False
        self.preview_progress.value = 0
        self.preview_button.enabled = self.renoise_button.enabled = False
        self.cancel_preview_button.enabled = True
        self.preview_status.value = "simulating…"
        self._preview_activity = ActivityBar(3, "Simulate: preview")
        self._preview_worker = run_task(
            preview_steps(request), use_thread=self.use_thread,
            on_yield=self._on_preview_yield, on_error=self._on_preview_error,
            on_finish=self._on_preview_done,
        )
        if not self.use_thread:
            self._preview_worker = None

    def _on_preview_error(self, err):
        self.preview_progress.value = 0
        show_error(f"Preview failed: {one_line(err)}")

    def _on_preview_yield(self, item):
        if item is None:  # one step done
            self.preview_progress.value = min(self.preview_progress.value + 1,
                                              self.preview_progress.max)
        elif not self._preview_cancelled:
            self.preview_progress.value = self.preview_progress.max
            self._on_preview_result(item)
        activity = getattr(self, "_preview_activity", None)
        if activity is not None:
            activity.update_to(self.preview_progress.value)

    def _on_preview_done(self):
        activity, self._preview_activity = getattr(self, "_preview_activity", None), None
        if activity is not None:
            activity.close()
        self._preview_worker = None
        if self.preview_progress.value < self.preview_progress.max:
            self.preview_progress.value = 0  # failed or cancelled
        self.preview_button.enabled = True
        self.renoise_button.enabled = self.preview is not None
        self.cancel_preview_button.enabled = False
        if self.preview is None or self.preview_progress.value == 0:
            self.preview_status.value = "cancelled" if self._preview_cancelled else "failed"
            if self.preview is not None:
                self.preview_status.value += " (the layers show the previous preview)"
        elif self.preview["record"]["dose_e_per_A2"] != float(self.dose.value):
            self._draw_noise()  # the dose was changed while the preview ran
        else:
            self._describe()

    def on_closed(self) -> None:
        """The dock was closed: stop the preview and the dataset generation."""
        self.cancel_preview()
        self.cancel_dataset()

    def cancel_preview(self, _event=None):
        """Stop a running preview after its current step; the layers stay as they were."""
        if self._preview_worker is not None:
            self._preview_cancelled = True
            self._preview_worker.quit()
            show_info("Preview cancelled.")

    def _on_preview_result(self, result):
        self.preview = result
        self.renoise_button.enabled = True
        structure = result["structure"]
        s = result["sampling_A"]
        truth = {
            "seed": result["seed"],
            "structure_index": 0,
            **structure.record,
            "optics": result["optics"].to_dict(),
        }
        truth.pop("versions", None)
        self._set_layer("clean", result["clean"], "image", s, None, truth)
        self._set_layer("noisy", result["noisy"], "image", s, result["record"], truth)
        self._set_layer("mask", structure.mask, "labels", s, None, truth)
        self._describe()

    def _on_dose_changed(self, _value=None):
        if self.preview is not None and self._preview_worker is None:
            self._draw_noise()

    def renoise(self, _event=None):
        """Draw fresh detector noise at the current dose (the exit wave is kept)."""
        if self.preview is None:
            show_error("Run a preview first.")
            return
        self._noise_draw += 1
        self._draw_noise()

    def _draw_noise(self):
        try:
            model = self.noise_model()
        except (ValueError, OSError) as err:
            show_error(f"Noise model: {err}")
            return
        preview = self.preview
        try:
            noisy, record = preview_noisy_image(
                preview["clean"],
                float(self.dose.value),
                preview["sampling_A"],
                model,
                noise_rng(preview["seed"], self._noise_draw),
            )
        except ValueError as err:
            show_error(f"Noise not drawn: {err}")
            return
        preview.update(noisy=noisy, record=record, noise_model=model)
        layer = self.layers.get("noisy")
        truth = None if layer is None else layer.metadata.get(LOWDOSE_KEY, {}).get("truth")
        self._set_layer("noisy", noisy, "image", preview["sampling_A"], record, truth)
        self._describe()

    def _describe(self):
        text = preview_text(self.preview)
        try:
            note = self.structure_recipe().diameter_note()
        except ValueError:
            note = ""
        self.preview_status.value = f"{text}\n⚠ {note}" if note else text

    def _set_layer(self, role, data, kind, sampling_A, noise_record, truth):
        """Add the layer of ``role`` or update it in place if it is still in the viewer."""
        layer = set_preview_layer(self._viewer, self.layers.get(role), LAYER_NAMES[role], data,
                                  kind, sampling_A, noise_record, truth)
        self.layers[role] = layer
        return layer
