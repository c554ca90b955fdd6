"""The layer runs of the 'Denoise' dock: frames streamed into the output layer.

A run prepares the output layer (:mod:`.denoise_output`), denoises the requested
frames in a worker (:func:`napari_lowdose.models.denoising.denoise_frames`, the
model loaded once per file and device), writes each frame as it arrives and
redraws the layer only when the frame shown is done; the progress and the time
left (from the first frame, then from those after it) are updated at most every
:data:`REFRESH_S`. A failure stops the run with one message (a frame with NaN or
infinite pixels is named); a cancelled run keeps the frames already denoised.
"""

import time

from napari.utils.notifications import show_error, show_info

from ..errors import one_line
from ..io.series import BadPixelsError
from ._workers import eta_text, run_task
from .denoise_output import follow_contrast, prepare_output, record_frame, stack, sync_record

__all__ = ["REFRESH_S", "LayerRun"]

#: A whole-series run redraws its output layer at most this often (s), and when the
#: frame shown is done.
REFRESH_S = 0.5


class LayerRun:
    """Mixin of :class:`~.denoise.DenoiseWidget`: a run of the layer mode, start to end.

    Uses the dock's ``_viewer``, ``_run``, ``_live``, ``_worker``, ``_state``,
    ``_stop_event``, ``_model_cache``, ``use_thread``, ``progress_bar``, ``status``,
    ``cancel_button``, ``current_frame()``, ``_n_frames()``, ``_update_enabled()``,
    ``_stop_live()`` and ``_next_live()``.
    """

    def _start(self, request):
        """Prepare the output layer and stream the requested frames into it."""
        self._run = prepare_output(self._viewer, request, self._n_frames(request.layer))
        self._request_of_run = request
        self.quality.value = ""
        self._run.started_s = time.perf_counter()
        self._run.first_s = None
        self._run.refreshed_s = 0.0
        self._stop_event.clear()
        self.progress_bar.max, self.progress_bar.value = len(request.indices), 0
        if not self._live:
            n = len(request.indices)
            self.status.value = f"denoising {n} frame(s)" + (
                "… (the time left follows the first frame)" if n > 1 else "…")
        if not self.use_thread:
            self._update_enabled(running=True)
        self._worker = run_task(
            self._frames(request), use_thread=self.use_thread, on_yield=self._on_frame,
            on_error=self._on_error, on_finish=self._on_finished,
        )
        if self._worker is not None:
            self._update_enabled()

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
        tiled = request.plan.tiles is not None
        yield from denoiser.denoise_frames(
            model,
            request.data,
            expected_e_per_px=request.expected,
            counts_per_electron=request.gain,
            device=request.device,
            frame_indices=request.indices,
            should_stop=self._stop_event.is_set,
            tile_px=request.plan.tile_px if tiled else None,
            overlap_px=request.plan.overlap_px,
            dihedral_average=getattr(request, "dihedral", False),
        )

    def _on_frame(self, item):
        if self._state.closed:
            return
        index, frame = item
        run = self._run
        now = time.perf_counter()
        if run.first_s is None:
            run.first_s = now
        first = not run.done
        shown = int(index) == self.current_frame(run.layer)
        # Redraw only what is displayed: the layer when the frame shown is done (a redraw
        # costs as much as denoising a frame where the canvas is drawn in software), the
        # progress and the status at most every REFRESH_S.
        refresh = first or shown
        record_frame(run, index, frame, refresh=refresh)
        if refresh:
            follow_contrast(run, frame, force=first)
        last = run.n_new >= self.progress_bar.max
        if not (first or last or now - run.refreshed_s >= REFRESH_S):
            return
        run.refreshed_s = now
        self.progress_bar.value = min(run.n_new, self.progress_bar.max)
        if self._live:
            n = stack(run).shape[0]
            self.status.value = f"live: frame {index} denoised ({len(run.done)}/{n} done)"
        else:
            self.status.value = self._eta(run, now)

    @staticmethod
    def _eta(run, now: float) -> str:
        """Frames done and the time left: from the first frame, then from those after it."""
        done, total = run.n_new, run.n_requested
        if done <= 1:
            elapsed = run.first_s - run.started_s
        else:  # the first frame also loaded the model: time the others
            elapsed = (now - run.first_s) / (done - 1) * done
        return "denoising: " + eta_text(done, total, elapsed)

    def _on_error(self, err):
        if self._state.closed:
            return
        if self._run is not None:
            self._run.error = one_line(err)
        if isinstance(err, BadPixelsError):
            show_error(f"Denoise: {one_line(err)}")  # names the frames; never the dose
        else:
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
        if run.layer in self._viewer.layers:
            sync_record(run)
            run.layer.refresh()
        if run.error:
            self.status.value = f"failed after {run.n_new} frame(s): {run.error}"
            self.progress_bar.value = 0
            if run.n_new == 0 and run.created and run.layer in self._viewer.layers:
                # Nothing was denoised: do not leave an empty layer behind.
                self._viewer.layers.remove(run.layer)
                self._run = None
            return
        if self._live:
            return
        if not stopped and not self._stop_event.is_set():
            self._start_quality(run, self._request_of_run)
        seconds = time.perf_counter() - run.started_s
        self.status.value = f"{run.n_new}/{run.n_requested} frame(s) denoised" + (
            " (stopped)" if stopped else f" in {seconds:.1f} s"
        )
        if self._stop_event.is_set():
            show_info(f"Denoising cancelled after {run.n_new} frame(s); they are kept.")

    def cancel(self, _event=None):
        """Stop after the current frame; frames already denoised are kept."""
        if self._worker is not None or self.cancel_button.enabled:
            self._stop_event.set()
            self.status.value = "stopping after the current frame…"
