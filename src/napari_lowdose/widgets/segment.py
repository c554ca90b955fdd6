"""'Segment' dock widget: stream a dose series through a network; area against dose.

The napari face of ``napari-lowdose segment`` (both write through
:mod:`napari_lowdose.workflows.segmentation`): frames go through
:func:`napari_lowdose.models.inference.predict_probabilities` one by one in a
worker thread and land, as they arrive, in two layers made for
the chosen image and model — ``"<image> probability [<model>]"`` (Image, NaN
where not computed yet) and ``"<image> mask [<model>]"`` (Labels, probability ≥
threshold, 0 where not computed). Running again updates the same two layers;
moving the threshold re-thresholds the stored probabilities without the network.
The optional mask clean-up (:class:`~napari_lowdose.analysis.masks.MaskCleaning`:
keep the largest region, fill holes, drop regions below an area; as the CLI's
``--keep-largest``, ``--fill-holes``, ``--min-area-nm2``) is applied the same way.

After a run (and after each re-threshold) the area against dose of the frames
done (:func:`~napari_lowdose.analysis.area_vs_dose.analyse_area_vs_dose`, SPEC §5)
is stored in the mask layer: the per-frame table in
``metadata["lowdose"]["area_vs_dose"]`` (see
:func:`napari_lowdose.widgets.area_plot.area_record`) and a one-row ``features``
table for label 1 with the summary (shown when hovering the mask). With a truth
mask (a Labels layer such as the samples' "particle truth") the per-frame F1 is
added. The 'Area vs dose' dock draws every such layer. "Export…" writes the CLI's
files (:data:`~napari_lowdose.workflows.segmentation.SEGMENT_FILES`, plus f1_vs_dose.csv)
into a folder, all or nothing.
"""

import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
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
from ..io.layers import LOWDOSE_KEY, layer_frame_dose
from ._common import DEVICE_CHOICES, device_description, is_empty_path, one_line, shown_frame
from ._layers import layer_pixel_size_A
from .area_plot import AREA_KEY, AreaPlotWidget, area_record, refresh_area_plots
from .noise_fit import _base_data

__all__ = ["FILE_CHOICE", "SegmentWidget"]

FILE_CHOICE = "file…"
SCOPE_CHOICES = [("current frame", "current"), ("whole series", "all"), ("frame range", "range")]
TRUTH_NAME = "particle truth"
MODEL_SUFFIX = ".safetensors"



def _done_frames(probabilities3: np.ndarray) -> np.ndarray:
    """Indices of the frames whose probabilities have been computed (not NaN)."""
    flat = probabilities3.reshape(probabilities3.shape[0], -1)
    return np.flatnonzero(np.isfinite(flat).all(axis=1))


class SegmentWidget(Container):
    """Segment an image or dose series with a trained network; area and F1 against dose."""

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__(labels=True)
        self._viewer = viewer
        self.use_thread = use_thread
        self._worker = None
        self._stop_event = threading.Event()
        self._run = None  # the layers and settings of the last run
        self.plot_widget: AreaPlotWidget | None = None

        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.model_file = FileEdit(
            label="model file", mode="r", filter=f"*{MODEL_SUFFIX}", value=""
        )
        self.model_info = Label(label="model info", value="")
        self.device = ComboBox(label="device", choices=DEVICE_CHOICES, value="auto")
        self.device_info = Label(label="runs on", value="")
        self.threshold = FloatSlider(label="threshold", min=0.0, max=1.0, step=0.01, value=0.9)
        self.model_threshold_button = PushButton(
            text="Use the model's threshold", enabled=False,
            tooltip="Set the threshold to the one of best validation F1 recorded with the model "
            "(napari-lowdose calibrate; as segment --threshold model)",
        )
        #: The chosen model's calibrated threshold (None: it has none).
        self.calibrated_threshold: float | None = None
        self.keep_largest = CheckBox(
            text="keep largest region", value=False,
            tooltip="Keep only the largest connected region of each mask (one particle in "
            "view); as --keep-largest",
        )
        self.fill_holes = CheckBox(text="fill holes", value=False,
                                   tooltip="Fill holes enclosed by a region; as --fill-holes")
        self.min_area = FloatSpinBox(
            label="min area (nm²)", min=0.0, max=1e6, step=0.05, value=0.0,
            tooltip="Drop regions smaller than this (0: keep all; needs the pixel size); "
            "as --min-area-nm2",
        )
        self.min_area.native.setDecimals(3)
        self.scope = ComboBox(label="frames", choices=SCOPE_CHOICES, value="all")
        self.range_from = SpinBox(label="from frame", min=0, max=0, value=0)
        self.range_to = SpinBox(label="to frame", min=0, max=0, value=0)
        self.truth_combo = ComboBox(
            label="truth (optional)", choices=self._labels_layers, nullable=True
        )
        self.run_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="not run yet")
        self.export_button = PushButton(text="Export…", enabled=False)
        self._inputs = [
            self.layer_combo,
            self.model,
            self.model_file,
            self.device,
            self.scope,
            self.range_from,
            self.range_to,
            self.truth_combo,
        ]
        self.extend(
            [
                self.layer_combo,
                self.model,
                self.model_file,
                self.model_info,
                self.device,
                self.device_info,
                self.threshold,
                self.model_threshold_button,
                self.keep_largest,
                self.fill_holes,
                self.min_area,
                self.scope,
                self.range_from,
                self.range_to,
                self.truth_combo,
                self.run_button,
                self.cancel_button,
                self.progress_bar,
                self.status,
                self.export_button,
            ]
        )
        for label in (self.model_info, self.device_info, self.status):
            label.native.setWordWrap(True)

        self.layer_combo.changed.connect(self._on_layer_changed)
        self.model.changed.connect(self._on_model_changed)
        self.model_file.changed.connect(self._on_model_changed)
        self.device.changed.connect(self._on_device_changed)
        self.scope.changed.connect(self._on_scope_changed)
        for control in (self.threshold, self.keep_largest, self.fill_holes):
            control.changed.connect(self._on_threshold_changed)
        self.min_area.changed.connect(self._on_min_area_changed)
        self.model_threshold_button.changed.connect(self.use_model_threshold)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.export_button.changed.connect(self._export_dialog)
        viewer.layers.events.inserted.connect(self._reset_choices)
        viewer.layers.events.removed.connect(self._reset_choices)
        self._reset_choices()
        self._on_model_changed()
        self._on_device_changed()
        self._on_scope_changed()

    # -- choices --------------------------------------------------------------------------
    def _image_layers(self, _widget=None):
        return [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, napari.layers.Image) and not self._is_output(layer)
        ]

    def _labels_layers(self, _widget=None):
        return [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, napari.layers.Labels) and not self._is_output(layer)
        ]

    @staticmethod
    def _is_output(layer) -> bool:
        return "segment_output" in (layer.metadata or {}).get(LOWDOSE_KEY, {})

    @staticmethod
    def _model_choices(_widget=None):
        from ..models.registry import available_models

        return [*available_models(), FILE_CHOICE]

    def _reset_choices(self, _event=None):
        self.layer_combo.reset_choices()
        self.truth_combo.reset_choices()
        if self.truth_combo.value is None:
            for layer in self._labels_layers():
                if layer.name.startswith(TRUTH_NAME):
                    self.truth_combo.value = layer
                    break

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
        n = max(self._n_frames(), 1)
        for box in (self.range_from, self.range_to):
            box.max = n - 1
        self.range_to.value = n - 1

    def _on_scope_changed(self, _value=None):
        is_range = self.scope.value == "range"
        self.range_from.visible = self.range_to.visible = is_range

    def _on_model_changed(self, _value=None):
        from ..models.checkpoint import CheckpointError, read_checkpoint_metadata

        self.model_file.visible = self.model.value == FILE_CHOICE
        self._set_calibrated_threshold(None)
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
        validation = meta.get("validation") or {}
        f1 = validation.get("f1")
        f1_text = f", validation F1 {float(f1):.3f}" if isinstance(f1, int | float) else ""
        calibrated = validation.get("calibrated_threshold")
        if isinstance(calibrated, int | float):
            self._set_calibrated_threshold(float(calibrated))
            f1_text += (f"; best threshold {float(calibrated):.2f} "
                        f"(F1 {float(validation.get('calibrated_f1', np.nan)):.3f})")
        self.model_info.value = f"{meta.get('arch', '?')}{f1_text} ({path.name})"

    def _set_calibrated_threshold(self, value: float | None) -> None:
        self.calibrated_threshold = value
        self.model_threshold_button.enabled = value is not None
        self.model_threshold_button.text = ("Use the model's threshold" if value is None
                                            else f"Use the model's threshold ({value:.2f})")

    def use_model_threshold(self, _value=None):
        """Set the threshold to the chosen model's calibrated one (masks follow)."""
        if self.calibrated_threshold is not None:
            self.threshold.value = self.calibrated_threshold

    def _model_path(self) -> Path:
        """The checkpoint file of the chosen model (raises CheckpointError/LowdoseError)."""
        from ..models.checkpoint import CheckpointError
        from ..models.registry import resolve_model

        if self.model.value == FILE_CHOICE or self.model.value is None:
            value = self.model_file.value
            if is_empty_path(value):
                raise CheckpointError(f"choose a model file ({MODEL_SUFFIX})")
            return resolve_model(value)
        return resolve_model(self.model.value)

    def _model_label(self) -> str:
        if self.model.value == FILE_CHOICE:
            return Path(str(self.model_file.value)).stem
        return str(self.model.value)

    def _on_device_changed(self, _value=None):
        self.device_info.value = device_description(self.device.value)

    def current_frame(self, layer=None) -> int:
        """Index of the frame shown for ``layer`` (0 for a 2-D layer)."""
        layer = self.layer if layer is None else layer
        return shown_frame(self._viewer, layer, self._n_frames(layer))

    def frame_indices(self, layer=None) -> list[int]:
        """The frames the current scope asks for."""
        layer = self.layer if layer is None else layer
        n = self._n_frames(layer)
        if self.scope.value == "current":
            return [self.current_frame(layer)]
        if self.scope.value == "range":
            lo, hi = sorted((int(self.range_from.value), int(self.range_to.value)))
            return list(range(max(lo, 0), min(hi, n - 1) + 1))
        return list(range(n))

    # -- run ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a segmentation is running."""
        return self._worker is not None

    def _request(self):
        """Everything a run needs, or None after show_error."""
        from ..device import select_device
        from ..models.checkpoint import read_checkpoint_metadata

        layer = self.layer
        if layer is None:
            show_error("Choose an image layer to segment.")
            return None
        data = _base_data(layer)
        if getattr(layer, "rgb", False) or data.ndim not in (2, 3):
            show_error(f"'{layer.name}' must be one 2-D frame or a (frames, y, x) series.")
            return None
        try:
            model_path = self._model_path()
            metadata = read_checkpoint_metadata(model_path)
            device = select_device(self.device.value)
        except LowdoseError as err:
            show_error(f"Segment: {one_line(err)}")
            return None
        indices = self.frame_indices(layer)
        if not indices:
            show_error("The frame range is empty.")
            return None
        return SimpleNamespace(
            layer=layer,
            data=data,
            model_path=model_path,
            metadata=metadata,
            device=device,
            indices=indices,
            label=self._model_label(),
        )

    def run(self, _event=None):
        """Segment the chosen frames (in a thread unless ``use_thread`` is False)."""
        if self._worker is not None:
            show_info("A segmentation is already running.")
            return
        request = self._request()
        if request is None:
            return
        self._prepare_layers(request)
        self._stop_event.clear()
        self.progress_bar.max, self.progress_bar.value = len(request.indices), 0
        self.status.value = f"segmenting {len(request.indices)} frame(s)…"
        self._set_running(True)
        gen = self._frames(request)
        if not self.use_thread:
            try:
                for item in gen:
                    self._on_frame(item)
            except Exception as err:  # noqa: BLE001 - notify, never raise to the user
                self._on_error(err)
            finally:
                self._on_finished()
            return
        self._worker = thread_worker(lambda: (yield from gen))()
        self._worker.yielded.connect(self._on_frame)
        self._worker.errored.connect(self._on_error)
        self._worker.finished.connect(self._on_finished)
        self._worker.start()

    def show_probabilities(self, probabilities) -> bool:
        """Show a finished run (e.g. ``probability.tif`` of the ``segment`` command).

        The probabilities fill this widget's probability and mask layers for the
        chosen image and model as if they had just been computed: thresholds,
        the features table, F1 against the truth and the plot follow.

        Parameters
        ----------
        probabilities : array, shape (frames, y, x) or (y, x)
            Probability of every frame of the chosen image layer.

        Returns
        -------
        bool
            False (after a notification) when nothing could be shown.
        """
        request = self._request()
        if request is None:
            return False
        values = np.asarray(probabilities, dtype=np.float32)
        if values.shape != tuple(request.data.shape):
            show_error(
                f"The probabilities have shape {values.shape} but '{request.layer.name}' "
                f"has shape {tuple(request.data.shape)}."
            )
            return False
        stack = values if values.ndim == 3 else values[None]
        self._prepare_layers(request)
        self._stop_event.clear()
        self._run.n_requested = stack.shape[0]
        self.progress_bar.max = stack.shape[0]
        for index in range(stack.shape[0]):
            self._on_frame((index, stack[index]))
        self._on_finished()
        return True

    def _frames(self, request):
        """Generator (worker thread): load the model, then yield (index, probability)."""
        from ..models import inference
        from ..models.registry import load_model

        model, _ = load_model(request.model_path, device="cpu")
        with progress(total=len(request.indices), desc="Segment") as pbar:
            for index, probability in inference.predict_probabilities(
                model,
                request.data,
                device=request.device,
                frame_indices=request.indices,
                should_stop=self._stop_event.is_set,
            ):
                pbar.update(1)
                yield index, probability

    def _prepare_layers(self, request):
        """Create (or reuse) the probability and mask layers of this image and model."""
        layer, shape = request.layer, tuple(request.data.shape)
        names = (
            f"{layer.name} probability [{request.label}]",
            f"{layer.name} mask [{request.label}]",
        )
        existing = [self._viewer.layers[n] if n in self._viewer.layers else None for n in names]
        reuse = (
            isinstance(existing[0], napari.layers.Image)
            and isinstance(existing[1], napari.layers.Labels)
            and existing[0].data.shape == shape
            and existing[1].data.shape == shape
        )
        record = {
            "segment_output": True,
            "image": layer.name,
            "label": request.label,
            "model": str(request.model_path),
        }
        common = {
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "units": tuple(layer.units),
            "axis_labels": tuple(layer.axis_labels),
        }
        if reuse:
            prob_layer, mask_layer = existing
        else:
            for old in existing:
                if old is not None:
                    self._viewer.layers.remove(old)
            prob_layer = self._viewer.add_image(
                np.full(shape, np.nan, dtype=np.float32),
                name=names[0],
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                opacity=0.5,
                blending="additive",
                metadata={LOWDOSE_KEY: dict(record, kind="probability")},
                **common,
            )
            mask_layer = self._viewer.add_labels(
                np.zeros(shape, dtype=np.uint8),
                name=names[1],
                opacity=0.4,
                metadata={LOWDOSE_KEY: dict(record, kind="mask")},
                **common,
            )
        self._run = SimpleNamespace(
            image=layer,
            prob_layer=prob_layer,
            mask_layer=mask_layer,
            label=request.label,
            model_path=request.model_path,
            metadata=request.metadata,
            device=request.device,
            n_requested=len(request.indices),
            n_new=0,
            error=None,
            created=not reuse,
        )

    def _views(self, run=None):
        """(probabilities, masks) of a run as (frames, y, x) views of the layers' data."""
        run = self._run if run is None else run
        prob, mask = run.prob_layer.data, run.mask_layer.data
        return (prob, mask) if prob.ndim == 3 else (prob[None], mask[None])

    def _on_frame(self, item):
        index, probability = item
        run = self._run
        prob, mask = self._views(run)
        prob[index] = probability
        mask[index] = self._mask_of(probability, run)
        run.n_new += 1
        run.prob_layer.refresh()
        run.mask_layer.refresh()
        self.progress_bar.value = min(run.n_new, self.progress_bar.max)
        self.status.value = f"{run.n_new}/{run.n_requested} frame(s) segmented…"

    def _on_error(self, err):
        if self._run is not None:
            self._run.error = one_line(err)
        show_error(f"Segment failed: {one_line(err)}")

    def _on_finished(self):
        self._worker = None
        self._set_running(False)
        run = self._run
        if run is None:
            return
        stopped = run.n_new < run.n_requested
        self.status.value = f"{run.n_new}/{run.n_requested} frame(s) segmented" + (
            " (stopped)" if stopped else ""
        )
        if run.error:
            self.status.value = f"failed after {run.n_new} frame(s): {run.error}"
            if run.n_new == 0 and run.created:
                # Nothing was segmented: do not leave two empty layers behind.
                for created in (run.prob_layer, run.mask_layer):
                    if created in self._viewer.layers:
                        self._viewer.layers.remove(created)
                self._run = None
                self._set_running(False)
                return
        if self._stop_event.is_set():
            show_info(f"Segmentation cancelled after {run.n_new} frame(s); they are kept.")
        self.update_analysis()

    def _set_running(self, running: bool):
        for widget in self._inputs:
            widget.enabled = not running
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        self.export_button.enabled = not running and self._run is not None

    def cancel(self, _event=None):
        """Stop after the current frame; frames already segmented are kept."""
        if self._worker is not None or self.cancel_button.enabled:
            self._stop_event.set()
            self.status.value = "stopping after the current frame…"

    # -- threshold and analysis -----------------------------------------------------------
    def _run_alive(self) -> bool:
        run = self._run
        return (
            run is not None
            and run.prob_layer in self._viewer.layers
            and run.mask_layer in self._viewer.layers
        )

    def mask_cleaning(self, image=None):
        """The clean-up rules of the inputs for the pixels of ``image`` (None: no area rule).

        A minimum area with no pixel size cannot be applied; it is then left out
        (and the status line says so).
        """
        from ..analysis.masks import MaskCleaning

        pixel_size = None if image is None else layer_pixel_size_A(image)
        min_area = float(self.min_area.value) if pixel_size is not None else 0.0
        return MaskCleaning.from_area_nm2(min_area, pixel_size,
                                          keep_largest=bool(self.keep_largest.value),
                                          fill_holes=bool(self.fill_holes.value))

    def _mask_of(self, probability, run, cleaning=None):
        """Mask of one frame: threshold, then the clean-up rules (the CLI's)."""
        from ..analysis.masks import probability_mask

        if cleaning is None:
            cleaning = self.mask_cleaning(run.image)
        return probability_mask(probability, float(self.threshold.value), cleaning)

    def _on_min_area_changed(self, _value=None):
        if (self._run_alive() and float(self.min_area.value) > 0
                and layer_pixel_size_A(self._run.image) is None):
            show_warning(f"'{self._run.image.name}' has no pixel size: the minimum area is "
                         "not applied (use 'Dose calibration').")
        self._on_threshold_changed()

    def _on_threshold_changed(self, _value=None):
        if not self._run_alive():
            return
        prob, mask = self._views()
        done = _done_frames(prob)
        cleaning = self.mask_cleaning(self._run.image)
        for index in done:
            mask[index] = self._mask_of(prob[index], self._run, cleaning)
        if done.size:
            self._run.mask_layer.refresh()
        if self._worker is None:
            self.update_analysis()

    def _truth(self, n_frames: int, shape_yx):
        layer = self.truth_combo.value
        if layer is None or layer not in self._viewer.layers:
            return None
        truth = np.asarray(_base_data(layer))
        if truth.shape[-2:] != tuple(shape_yx):
            return None
        if truth.ndim == 3 and truth.shape[0] == 1:
            truth = truth[0]
        if truth.ndim == 3 and truth.shape[0] != n_frames:
            return None
        return truth if truth.ndim in (2, 3) else None

    def update_analysis(self):
        """Area (and F1) against dose of the frames done → the mask layer and the plot."""
        from ..analysis.area_vs_dose import analyse_area_vs_dose, f1_per_frame

        if not self._run_alive():
            return None
        run = self._run
        prob, mask = self._views(run)
        done = _done_frames(prob)
        lowdose = dict(run.mask_layer.metadata.get(LOWDOSE_KEY, {}))
        lowdose["threshold"] = float(self.threshold.value)
        lowdose["mask_cleaning"] = self.mask_cleaning(run.image).to_dict()
        lowdose.pop(AREA_KEY, None)
        run.mask_layer.metadata = {**run.mask_layer.metadata, LOWDOSE_KEY: lowdose}
        run.analysis, run.f1, run.done = None, None, done
        if done.size == 0:
            return None
        try:
            dose = layer_frame_dose(run.image.metadata)
        except LowdoseError as err:
            show_warning(f"{run.image.name}: dose metadata unreadable ({one_line(err)}).")
            dose = None
        if dose is None or dose.n_frames != prob.shape[0]:
            show_info(
                f"'{run.image.name}' has no per-frame dose: the area against dose needs "
                "it (use the 'Dose calibration' widget)."
            )
            return None
        try:
            analysis = analyse_area_vs_dose(
                mask[done], dose.dose_e_per_A2[done], layer_pixel_size_A(run.image)
            )
        except ValueError as err:
            show_error(f"Area against dose: {one_line(err)}")
            return None
        analysis = replace(
            analysis, frame=done.copy(), high_dose_frames=done[analysis.high_dose_frames]
        )
        truth = self._truth(prob.shape[0], prob.shape[-2:])
        f1 = None
        if truth is not None:
            f1 = f1_per_frame(mask[done], truth if truth.ndim == 2 else truth[done])
        run.analysis, run.f1 = analysis, f1
        lowdose[AREA_KEY] = area_record(
            analysis,
            label=run.label,
            f1=f1,
            extra={
                "image": run.image.name,
                "threshold": float(self.threshold.value),
                "truth": None if f1 is None else self.truth_combo.value.name,
            },
        )
        run.mask_layer.metadata = {**run.mask_layer.metadata, LOWDOSE_KEY: lowdose}
        run.mask_layer.features = self._summary_features(analysis, f1, run.label)
        self._show_plot()
        return analysis

    @staticmethod
    def _summary_features(analysis, f1, label):
        summary = analysis.summary()

        def value(key):
            v = summary[key]
            return np.nan if v is None else float(v)

        features = {
            "index": [1],
            "run": [label],
            "frames_analysed": [int(analysis.frame.size)],
            "convergence_dose_e_per_A2": [value("convergence_dose_e_per_A2")],
            "dose_at_50pct_e_per_A2": [value("dose_at_50pct_e_per_A2")],
            "converged_area_px": [value("converged_area_px")],
            "converged_area_nm2": [value("converged_area_nm2")],
        }
        if f1 is not None:
            features["median_f1"] = [float(np.nanmedian(f1))]
        return features

    def _show_plot(self):
        """Redraw the Area-vs-dose docks of this viewer, docking one if there is none."""
        if refresh_area_plots(self._viewer):
            return
        self.plot_widget = AreaPlotWidget(self._viewer)
        try:
            self._viewer.window.add_dock_widget(
                self.plot_widget, name="Area vs dose", area="right"
            )
        except Exception:  # noqa: BLE001 - a viewer without a window: keep the widget
            pass

    # -- export ---------------------------------------------------------------------------
    def _export_dialog(self, _event=None):
        from qtpy.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self.native, "Export the segmentation to")
        if folder:
            self.export(folder)

    @staticmethod
    def _confirm_overwrite(folder: Path) -> bool:
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(
            None,
            "Replace files?",
            f"{folder} is not empty. Replace the segmentation files in it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def export(self, folder, *, overwrite: bool | None = None) -> list[Path] | None:
        """Write the CLI's files (and f1_vs_dose.csv with a truth) into ``folder``.

        ``overwrite=None`` asks before replacing files in a non-empty folder.
        Only frames that have been segmented are written (in series order).
        """
        from ..device import describe_device
        from ..io.tables import table_to_csv
        from ..workflows.segmentation import (
            SEGMENT_FILES,
            segmentation_record,
            write_segmentation,
        )

        if not self._run_alive() or getattr(self._run, "analysis", None) is None:
            show_error("Nothing to export: segment a series with a per-frame dose first.")
            return None
        folder = Path(folder)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            if overwrite is None:
                overwrite = self._confirm_overwrite(folder)
            if not overwrite:
                show_info(f"Nothing written: {folder} is not empty.")
                return None
        run = self._run
        prob, mask = self._views(run)
        done, analysis = run.done, run.analysis
        source = getattr(run.image.source, "path", None)
        lowdose = run.image.metadata.get(LOWDOSE_KEY, {})
        dose = layer_frame_dose(run.image.metadata)
        record = segmentation_record(
            input_name=(str(Path(source or lowdose["path"]).resolve())
                        if (source or lowdose.get("path"))
                        else f"napari layer '{run.image.name}'"),
            file_format=lowdose.get("format", "napari layer"),
            pixel_size_A=layer_pixel_size_A(run.image),
            pixel_size_source=lowdose.get("pixel_size_source", "napari layer scale"),
            dose_source=dose.source, dose_detail=dose.detail,
            model_name=str(run.model_path) if self.model.value == FILE_CHOICE else run.label,
            model_path=run.model_path, model_metadata=run.metadata,
            threshold=float(self.threshold.value), cleaning=self.mask_cleaning(run.image),
            device=describe_device(run.device),
        )
        record["frames"] = [int(f) for f in done]
        summary = {**analysis.summary(), "run": record}
        extra = {}
        if run.f1 is not None:
            f1_table = {"frame": done, "dose_e_per_A2": analysis.dose_e_per_A2, "f1": run.f1}
            extra["f1_vs_dose.csv"] = lambda p: p.write_text(table_to_csv(f1_table))
            summary["median_f1"] = float(np.nanmedian(run.f1))
        try:
            written = write_segmentation(
                folder,
                pixel_size_A=layer_pixel_size_A(run.image),
                probabilities=np.asarray(prob[done]),
                masks=np.asarray(mask[done]),
                analysis=analysis,
                summary=summary,
                label=run.label,
                overwrite=bool(overwrite),
                extra_files=extra,
            )
        except Exception as err:  # noqa: BLE001 - notify, never raise to the user
            show_error(f"Export failed: {one_line(err)}")
            return None
        names = ", ".join([*SEGMENT_FILES, *extra])
        show_info(f"Wrote {names} to {folder}.")
        if done.size < prob.shape[0]:
            show_warning(
                f"Only the {done.size} segmented frame(s) of {prob.shape[0]} were exported."
            )
        return written
