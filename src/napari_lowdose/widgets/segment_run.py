"""The runs of the 'Segment' dock: frames streaming in, progress, time left, the end.

:class:`SegmentRun` is a mixin of :class:`~.segment.SegmentWidget`: the worker's
generator (load the model, then one probability per frame), the output layers of a
run and its bookkeeping (``_run``), the redraw of the frame on screen and of the
progress at most twice a second (:class:`._network_dock.RedrawThrottle`), the status
with the time left, the one message of a failure and the end of a run (finished,
stopped or failed; two empty layers are not left behind).
"""

import time
from types import SimpleNamespace

from napari.utils.notifications import show_error, show_info

from ..errors import one_line
from ..io.series import BadPixelsError
from ._workers import eta_text, format_duration
from .segment_results import output_layers

__all__ = ["SegmentRun"]


class SegmentRun:
    """Mixin of :class:`~.segment.SegmentWidget`: a run's frames, progress and end.

    Reads and sets the widget's ``_run``, ``_worker``, ``_stop_event``, ``_redraw``,
    ``_inputs``, ``_viewer``, its buttons, ``progress_bar`` and ``status``; calls its
    ``current_frame()``, ``_mask_of()``, ``_run_alive()`` and ``update_analysis()``
    (:class:`~.segment_analysis.SegmentAnalysis`).
    """

    def _frames(self, request):
        """Generator (worker thread): load the model, then yield (index, probability)."""
        from ..models import inference
        from ..models.registry import load_model

        model, _ = load_model(request.model_path, device="cpu")
        yield from inference.predict_probabilities(
            model,
            request.data,
            device=request.device,
            frame_indices=request.indices,
            should_stop=self._stop_event.is_set,
            zoom=request.sampling.zoom,
        )

    def _prepare_layers(self, request):
        """Create (or reuse) the probability and mask layers of this image and model."""
        prob_layer, mask_layer, created = output_layers(self._viewer, request)
        self._run = SimpleNamespace(
            image=request.layer,
            prob_layer=prob_layer,
            mask_layer=mask_layer,
            label=request.label,
            model_path=request.model_path,
            metadata=request.metadata,
            sampling=request.sampling,
            device=request.device,
            n_requested=len(request.indices),
            n_new=0,
            error=None,
            bad_pixels=False,
            created=created,
            started_s=time.perf_counter(),
            unshown=set(),
        )
        self._redraw.reset()

    def _views(self, run=None):
        """(probabilities, masks) of a run as (frames, y, x) views of the layers' data."""
        run = self._run if run is None else run
        prob, mask = run.prob_layer.data, run.mask_layer.data
        return (prob, mask) if prob.ndim == 3 else (prob[None], mask[None])

    def _on_frame(self, item):
        """A frame is done: store it; redraw only what is on screen, and not too often.

        The layers' data are written in place. The layers are redrawn when the frame the
        viewer shows is done (other frames are read when the slider reaches them); the
        progress bar and the status at most every :data:`REDRAW_INTERVAL_S` (and after
        the first frame: its time gives the estimate).
        """
        index, probability = item
        run = self._run
        prob, mask = self._views(run)
        prob[index] = probability
        mask[index] = self._mask_of(probability, run)
        run.n_new += 1
        run.unshown.add(int(index))
        if self.current_frame(run.image) in run.unshown:
            self._refresh_layers(run)
        if run.n_new == 1 or run.n_new == run.n_requested or self._redraw.due():
            self._show_progress(run)

    def _refresh_layers(self, run) -> None:
        run.unshown.clear()
        run.prob_layer.refresh()
        run.mask_layer.refresh()

    def _show_progress(self, run) -> None:
        self.progress_bar.value = min(run.n_new, self.progress_bar.max)
        self.status.value = "segmented " + eta_text(
            run.n_new, run.n_requested, time.perf_counter() - run.started_s)

    def _on_error(self, err):
        if self._run is not None:
            self._run.error = one_line(err)
            self._run.bad_pixels = isinstance(err, BadPixelsError)
        show_error(f"Segment failed: {one_line(err)}")

    def _on_finished(self):
        self._worker = None
        self._set_running(False)
        run = self._run
        if run is None:
            return
        if self._run_alive():
            self._refresh_layers(run)
        stopped = run.n_new < run.n_requested
        elapsed = time.perf_counter() - run.started_s
        self.progress_bar.value = min(run.n_new, self.progress_bar.max)
        self.status.value = f"{run.n_new}/{run.n_requested} frame(s) segmented" + (
            " (stopped)" if stopped else f" in {format_duration(elapsed)}"
        ) + f"; {run.sampling.note}"
        if run.error:
            self.progress_bar.value = 0
            what = "refused a frame with bad pixels" if run.bad_pixels else "failed"
            kept = (f"; the {run.n_new} frame(s) done before are kept" if run.n_new
                    else "; nothing was segmented")
            self.status.value = (f"{what} after {run.n_new} of {run.n_requested} frame(s): "
                                 f"{run.error}{kept}")
            if run.n_new == 0 and run.created:
                # Nothing was segmented: do not leave two empty layers behind.
                for created in (run.prob_layer, run.mask_layer):
                    if created in self._viewer.layers:
                        self._viewer.layers.remove(created)
                self._run = None
                self._set_running(False)
                return
        if self._stop_event.is_set() and not run.error:
            show_info(f"Segmentation cancelled after {run.n_new} frame(s); they are kept.")
        # After a failure its message is the one notification: the analysis stays quiet.
        self.update_analysis(quiet=bool(run.error))

    def _set_running(self, running: bool):
        for widget in self._inputs:
            widget.enabled = not running
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        self.export_button.enabled = not running and self._run is not None

    def on_closed(self) -> None:
        """The dock was closed during a run: cancel it (the frames done are kept)."""
        if self._worker is not None:
            self.cancel()  # its notification says how many frames are kept

    def cancel(self, _event=None):
        """Stop after the current frame; frames already segmented are kept."""
        if self._worker is not None or self.cancel_button.enabled:
            self._stop_event.set()
            self.status.value = "stopping after the current frame…"
