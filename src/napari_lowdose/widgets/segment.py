"""'Segment' dock widget: stream a dose series through a network; area against dose.

The napari face of ``napari-lowdose segment`` (both write through
:mod:`napari_lowdose.workflows.segmentation`): frames go through
:func:`napari_lowdose.models.inference.predict_probabilities` one by one in a
worker thread and land, as they arrive, in two layers made for
the chosen image and model — ``"<model> probability · <image>"`` (Image, NaN
where not computed yet) and ``"<model> mask · <image>"`` (Labels, probability ≥
threshold, 0 where not computed; ``<model>`` is the model's short name, e.g.
``unet-low``). Running again updates the same two layers;
moving the threshold re-thresholds the stored probabilities without the network.
While frames stream in, the layers are redrawn when the frame on screen is done and
the progress at most twice a second (:class:`._network_dock.RedrawThrottle`), so that
the viewer costs the run little; the status shows the time left, measured from the
first frame. A frame that cannot be read or holds NaN/inf pixels stops the run with
one message naming it; the frames done before stay.

The dock opens on the active (else the only) suitable image layer, shows the shown
frame's dose on the canvas and remembers its settings between sessions ("Reset to
defaults" forgets them).
The optional mask clean-up (:class:`~napari_lowdose.analysis.masks.MaskCleaning`:
keep the largest region, fill holes, drop regions below an area; as the CLI's
``--keep-largest``, ``--fill-holes``, ``--min-area-nm2``) is applied the same way.

After a run (and after each re-threshold) the area against dose of the frames
done (:func:`~napari_lowdose.analysis.area_vs_dose.analyse_area_vs_dose`, Larsen
et al. 2023) is stored in the mask layer: the per-frame table in
``metadata["lowdose"]["area_vs_dose"]`` (see
:func:`napari_lowdose.analysis.area_record.area_record`) and a one-row ``features``
table for label 1 with the summary (shown when hovering the mask). With a truth
mask (a Labels layer such as the samples' "particle truth") the per-frame F1 is
added. The 'Area vs dose' dock draws every such layer. "Export…" writes the CLI's
files (:data:`~napari_lowdose.workflows.segmentation.SEGMENT_FILES`, plus
f1_vs_dose.csv) into a folder, all or nothing. The threshold and the analysis are in
:mod:`.segment_analysis`, the output layers and files in :mod:`.segment_results`,
the frames, progress and end of a run in :mod:`.segment_run`, the model rows in
:mod:`._network_dock`.
"""

import threading
from pathlib import Path
from types import SimpleNamespace

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSlider,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import LowdoseError, one_line
from ..io.layers import LOWDOSE_KEY
from ..models.checkpoint import read_checkpoint_metadata
from ..models.registry import (
    RECOMMENDED_MATCH_SAMPLING,
    RECOMMENDED_MODEL,
    RECOMMENDED_THRESHOLD,
    resolve_model,
)
from ..workflows.segmentation import SEGMENT_FILES, resolve_threshold, sampling_plan
from ._dose_overlay import show_frame_dose
from ._layers import base_data, layer_pixel_size_A
from ._network_dock import NetworkDock, RedrawThrottle
from ._workers import run_task
from .area_plot import AreaPlotWidget
from .segment_analysis import SegmentAnalysis
from .segment_results import short_model_name, write_run
from .segment_run import SegmentRun

__all__ = ["FILE_CHOICE", "SegmentWidget"]

FILE_CHOICE = NetworkDock.FILE_CHOICE
SCOPE_CHOICES = [("current frame", "current"), ("whole series", "all"), ("frame range", "range")]
TRUTH_NAME = "particle truth"



class SegmentWidget(SegmentRun, SegmentAnalysis, NetworkDock):
    """Segment an image or dose series with a trained network; area and F1 against dose."""

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__(viewer, use_thread=use_thread)
        self._worker = None
        self._stop_event = threading.Event()
        self._run = None  # the layers and settings of the last run
        self.plot_widget: AreaPlotWidget | None = None

        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
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
        self.match_sampling = CheckBox(
            text="match the model's sampling", value=RECOMMENDED_MATCH_SAMPLING,
            tooltip="Resample each frame to the pixel size the network was trained at, and "
            "its probabilities back (when the layer's pixel size is known and within 4× of "
            "it); much better away from 0.07–0.08 Å/px on the validation battery "
            "(docs/models.md); as segment --match-sampling / --no-match-sampling",
        )
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
        self._redraw = RedrawThrottle()
        self._inputs = [
            self.layer_combo,
            self.model,
            self.model_file,
            self.device,
            self.match_sampling,
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
                self.match_sampling,
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
        self._use_recommended_defaults()
        self.remember("segment", {
            "threshold": self.threshold, "keep_largest": self.keep_largest,
            "fill_holes": self.fill_holes, "min_area_nm2": self.min_area, "scope": self.scope,
            "match_sampling": self.match_sampling,
        })
        self.append(self.reset_button)
        self._inputs.append(self.reset_button)
        self._connect_model_rows()
        self.layer_combo.changed.connect(self._on_layer_changed)
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
        self.pick_layer()
        self._on_model_changed()
        self._on_device_changed()
        self._on_scope_changed()
        show_frame_dose(viewer)

    def _use_recommended_defaults(self) -> None:
        """Start on the recommended model at its calibrated threshold (decided once, in
        :data:`napari_lowdose.models.registry.RECOMMENDED_MODEL`; see docs/models.md)."""
        if RECOMMENDED_MODEL not in (self.model.choices or ()):
            return
        self.model.value = RECOMMENDED_MODEL
        try:
            metadata = read_checkpoint_metadata(resolve_model(RECOMMENDED_MODEL))
            self.threshold.value = resolve_threshold(RECOMMENDED_THRESHOLD, metadata,
                                                     RECOMMENDED_MODEL)
        except LowdoseError:  # an installation without the file: the paper's 0.9 stays
            pass

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

    def _reset_choices(self, _event=None):
        self.layer_combo.reset_choices()
        self.truth_combo.reset_choices()
        if self.truth_combo.value is None:
            for layer in self._labels_layers():
                if layer.name.startswith(TRUTH_NAME):
                    self.truth_combo.value = layer
                    break

    def _on_layer_changed(self, _value=None):
        n = max(self._n_frames(), 1)
        for box in (self.range_from, self.range_to):
            box.max = n - 1
        self.range_to.value = n - 1

    def _on_scope_changed(self, _value=None):
        is_range = self.scope.value == "range"
        self.range_from.visible = self.range_to.visible = is_range

    # -- model rows (see NetworkDock) -----------------------------------------------------
    def _on_model_changed(self, _value=None):
        """A new model: its info; the threshold follows its calibrated one when the
        threshold was the previous model's calibrated one (not a value the user chose)."""
        previous = self.calibrated_threshold
        settings = getattr(self, "settings", None)  # none yet, or giving back stored values
        following = (settings is not None and not settings.restoring
                     and previous is not None
                     and abs(float(self.threshold.value) - previous) < 0.005)
        self._set_calibrated_threshold(None)
        super()._on_model_changed()
        if following and self.calibrated_threshold is not None:
            self.threshold.value = self.calibrated_threshold

    def _model_text(self, meta, path) -> str:
        validation = meta.get("validation") or {}
        f1 = validation.get("f1")
        f1_text = f", validation F1 {float(f1):.3f}" if isinstance(f1, int | float) else ""
        calibrated = validation.get("calibrated_threshold")
        if isinstance(calibrated, int | float):
            self._set_calibrated_threshold(float(calibrated))
            f1_text += (f"; best threshold {float(calibrated):.2f} "
                        f"(F1 {float(validation.get('calibrated_f1', np.nan)):.3f})")
        return f"{meta.get('arch', '?')}{f1_text} ({path.name})"

    def _set_calibrated_threshold(self, value: float | None) -> None:
        self.calibrated_threshold = value
        self.model_threshold_button.enabled = value is not None
        self.model_threshold_button.text = ("Use the model's threshold" if value is None
                                            else f"Use the model's threshold ({value:.2f})")

    def use_model_threshold(self, _value=None):
        """Set the threshold to the chosen model's calibrated one (masks follow)."""
        if self.calibrated_threshold is not None:
            self.threshold.value = self.calibrated_threshold

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
    def _request(self):
        """Everything a run needs, or None after show_error."""
        from ..device import select_device
        from ..models.checkpoint import read_checkpoint_metadata

        layer = self.layer
        if layer is None:
            show_error("Choose an image layer to segment.")
            return None
        data = base_data(layer)
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
        sampling = sampling_plan(layer_pixel_size_A(layer), metadata,
                                 match=None if self.match_sampling.value else False)
        return SimpleNamespace(
            layer=layer,
            data=data,
            model_path=model_path,
            metadata=metadata,
            sampling=sampling,
            device=device,
            indices=indices,
            label=self._model_label(),
            short_name=short_model_name(self._model_label(), metadata.get("arch"),
                                        shipped=not self._file_chosen()),
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
        self.status.value = (f"segmenting {len(request.indices)} frame(s) "
                             f"({request.sampling.note}); timing the first frame for an "
                             "estimate…")
        self._set_running(True)
        self._worker = run_task(
            self._frames(request), use_thread=self.use_thread, on_yield=self._on_frame,
            on_error=self._on_error, on_finish=self._on_finished,
        )

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
        self.flush_rethreshold()  # a threshold moved just now: its masks and analysis first
        if not self._run_alive() or getattr(self._run, "analysis", None) is None:
            show_error("Nothing to export: segment a series with a per-frame dose first.")
            return None
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            show_error(f"Nothing written: {folder} is a file; choose a folder for the export.")
            return None
        if folder.exists() and any(folder.iterdir()):
            if overwrite is None:
                overwrite = self._confirm_overwrite(folder)
            if not overwrite:
                show_info(f"Nothing written: {folder} is not empty.")
                return None
        run = self._run
        prob, _ = self._views(run)
        model_name = str(run.model_path) if self._file_chosen() else run.label
        try:
            written, extra = write_run(
                folder, run, self._views(run), threshold=float(self.threshold.value),
                cleaning=self.mask_cleaning(run.image), model_name=model_name,
                overwrite=bool(overwrite),
            )
        except Exception as err:  # noqa: BLE001 - notify, never raise to the user
            show_error(f"Export failed: {one_line(err)}")
            return None
        done = run.done
        names = ", ".join([*SEGMENT_FILES, *extra])
        show_info(f"Wrote {names} to {folder}.")
        if done.size < prob.shape[0]:
            show_warning(
                f"Only the {done.size} segmented frame(s) of {prob.shape[0]} were exported."
            )
        return written
