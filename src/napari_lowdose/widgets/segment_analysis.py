"""The threshold, mask clean-up and area (and F1) against dose of the 'Segment' dock.

Moving the threshold or a clean-up rule re-thresholds the stored probabilities
without the network (as ``napari-lowdose segment``: threshold, then
:class:`~napari_lowdose.analysis.masks.MaskCleaning`). After a run and after each
re-threshold the area against dose of the frames done
(:func:`~napari_lowdose.analysis.area_vs_dose.analyse_area_vs_dose`, Larsen et al.
2023), with the F1 against a truth mask if one is chosen and the particles' contrast and
Rose-criterion doses (:func:`~napari_lowdose.workflows.segmentation.with_rose`, as
``napari-lowdose segment``), is stored in the mask layer and drawn by the 'Area vs dose'
dock.
"""


import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning

from ..analysis.area_record import area_record, summary_features
from ..analysis.area_vs_dose import analyse_area_vs_dose, f1_per_frame
from ..analysis.masks import MaskCleaning, probability_mask
from ..errors import LowdoseError, one_line
from ..io.layers import LOWDOSE_KEY, layer_frame_dose
from ..io.series import as_frame_stack
from ..workflows.segmentation import with_rose
from ._common import shown_frame
from ._layers import base_data, layer_pixel_size_A
from .area_plot import AREA_KEY, AreaPlotWidget, refresh_area_plots, show_area_dock
from .segment_results import done_frames

__all__ = ["RETHRESHOLD_DELAY_MS", "SegmentAnalysis"]

#: How long the threshold slider must rest before every frame and the analysis are redone.
RETHRESHOLD_DELAY_MS = 250


class SegmentAnalysis:
    """Mixin of :class:`~.segment.SegmentWidget`: threshold, clean-up, area against dose.

    Reads the widget's ``_run``, ``_views()``, ``_worker``, its threshold and
    clean-up inputs and ``truth_combo``.
    """

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

        pixel_size = None if image is None else layer_pixel_size_A(image)
        min_area = float(self.min_area.value) if pixel_size is not None else 0.0
        return MaskCleaning.from_area_nm2(min_area, pixel_size,
                                          keep_largest=bool(self.keep_largest.value),
                                          fill_holes=bool(self.fill_holes.value))

    def _mask_of(self, probability, run, cleaning=None):
        """Mask of one frame: threshold, then the clean-up rules (the CLI's)."""

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
        """A new threshold or clean-up rule.

        In the viewer (threaded dock) the frame on screen follows at once, and every other
        frame and the analysis once the slider has rested for
        :data:`RETHRESHOLD_DELAY_MS` (dragging the slider over a long series would
        otherwise redo them all at every step and stall the viewer). Without threads (tests,
        scripts) everything is redone at once.
        """
        if not self._run_alive():
            return
        if not self.use_thread:
            self._rethreshold_all()
            return
        prob, mask = self._views()
        index = shown_frame(self._viewer, self._run.mask_layer, prob.shape[0])
        frame = prob[index]  # read once (a frame-chunked layer decompresses each read)
        if np.isfinite(frame).all():
            mask[index] = self._mask_of(frame, self._run)
            self._run.mask_layer.refresh()
        self._rethreshold_timer().start()

    def _rethreshold_timer(self):
        """The single-shot timer that redoes every frame and the analysis (made once)."""
        timer = getattr(self, "_rethreshold_timer_", None)
        if timer is None:
            from qtpy.QtCore import QTimer

            timer = QTimer(self.native)
            timer.setSingleShot(True)
            timer.setInterval(RETHRESHOLD_DELAY_MS)
            timer.timeout.connect(self._rethreshold_all)
            self._rethreshold_timer_ = timer
        return timer

    def flush_rethreshold(self) -> None:
        """Redo now what a threshold change left waiting for the slider to rest."""
        timer = getattr(self, "_rethreshold_timer_", None)
        if timer is not None and timer.isActive():
            timer.stop()
            self._rethreshold_all()

    def _rethreshold_all(self):
        """Every frame done re-thresholded, then the analysis (unless a run is going on)."""
        if not self._run_alive():
            return
        prob, mask = self._views()
        done = done_frames(prob)
        cleaning = self.mask_cleaning(self._run.image)
        for index in done:
            mask[index] = self._mask_of(prob[index], self._run, cleaning)
        if done.size:
            self._run.mask_layer.refresh()
        if self._worker is None:
            self.update_analysis(done=done)

    def _truth(self, n_frames: int, shape_yx):
        layer = self.truth_combo.value
        if layer is None or layer not in self._viewer.layers:
            return None
        truth = np.asarray(base_data(layer))
        if truth.shape[-2:] != tuple(shape_yx):
            return None
        if truth.ndim == 3 and truth.shape[0] == 1:
            truth = truth[0]
        if truth.ndim == 3 and truth.shape[0] != n_frames:
            return None
        return truth if truth.ndim in (2, 3) else None

    def update_analysis(self, *, quiet: bool = False, done=None):
        """Area (and F1) against dose of the frames done → the mask layer and the plot.

        ``quiet``: no notification (after a failed run, whose message is the one shown).
        ``done``: the frames done when the caller has just found them (not scanned again).
        """
        if quiet:
            def silent(_message):
                return None

            info = warning = error = silent
        else:
            info, warning, error = show_info, show_warning, show_error
        if not self._run_alive():
            return None
        run = self._run
        prob, mask = self._views(run)
        done = done_frames(prob) if done is None else done
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
            warning(f"{run.image.name}: dose metadata unreadable ({one_line(err)}).")
            dose = None
        if dose is None or dose.n_frames != prob.shape[0]:
            info(
                f"'{run.image.name}' has no per-frame dose: the area against dose needs "
                "it (use the 'Dose calibration' widget)."
            )
            return None
        try:
            # Series frame numbers, and the dose received before the first frame done.
            analysis = analyse_area_vs_dose(
                mask[done], dose.dose_e_per_A2[done], layer_pixel_size_A(run.image),
                frames=done, series_dose_e_per_A2=dose.dose_e_per_A2,
            )
        except ValueError as err:
            error(f"Area against dose: {one_line(err)}")
            return None
        image = base_data(run.image)
        try:  # contrast and Rose doses: the command's rule (workflows.segmentation)
            analysis = with_rose(as_frame_stack(image), analysis,
                                 layer_pixel_size_A(run.image))
        except (OSError, ValueError) as err:
            warning(f"Rose criterion: the frames of '{run.image.name}' could not be read "
                    f"({one_line(err)}).")
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
        run.mask_layer.features = summary_features(analysis, f1, run.label)
        self._show_plot()
        return analysis

    def _show_plot(self):
        """Redraw the Area-vs-dose dock of this viewer and bring it forward.

        The dock is the one the Plugins menu opens (same name): one per viewer, never
        a duplicate; one is docked if the viewer has none (or it was closed).
        """
        refresh_area_plots(self._viewer)
        plot = show_area_dock(self._viewer)
        if plot is not None:
            self.plot_widget = plot
        elif self.plot_widget is None:  # a viewer without a window: keep the widget
            self.plot_widget = AreaPlotWidget(self._viewer)
