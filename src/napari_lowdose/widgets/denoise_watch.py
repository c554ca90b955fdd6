"""The in-situ mode of the 'Denoise' dock: denoise frames as the camera writes them.

The napari face of ``napari-lowdose watch`` (:mod:`napari_lowdose.insitu`). A
camera folder is watched (:class:`~napari_lowdose.insitu.FolderWatcher`,
:class:`~napari_lowdose.insitu.WatchSession`); each frame written into it is
denoised (:class:`~napari_lowdose.insitu.FrameDenoiser`, with the gain set in the
dock, else the one each file states, else 1, as ``napari-lowdose watch`` chooses
it) and appended to two growing layers,
``"live raw"`` and ``"live denoised"``, and the viewer moves to the newest frame.
With an output folder the results are also written there
(:class:`~napari_lowdose.insitu.InSituOutput`: ``<name>_denoised.tif`` and
``watch_log.csv``). The status line shows the sustained rate, the backlog and the
failures; a file that cannot be read and a frame of another size than the first are
reported, never skipped silently.
"""

from pathlib import Path
from types import SimpleNamespace

import napari
import numpy as np
from magicgui.widgets import CheckBox, FileEdit, FloatSpinBox, Label, PushButton
from napari.utils.notifications import show_error, show_info, show_warning

from ..insitu import FolderWatcher, FrameDenoiser, InSituOutput, WatchSession
from ..io.layers import LOWDOSE_KEY, image_layer_kwargs
from ._common import is_empty_path, one_line
from ._display import GrowingStack, display_limits
from ._workers import run_task
from .denoise_output import DENOISED_KEY

__all__ = ["LIVE_DENOISED", "LIVE_RAW", "WatchMode"]

#: Names of the two growing layers of the in-situ mode.
LIVE_RAW = "live raw"
LIVE_DENOISED = "live denoised"
WATCH_TEXT, STOP_TEXT = "Watch folder", "Stop watching"


class WatchMode:
    """Mixin of :class:`~.denoise.DenoiseWidget`: its in-situ (Watch-folder) rows.

    Uses the dock's ``_viewer``, ``_state`` (``watch_stop``, ``watch_worker``,
    ``closed``), ``gain``, ``_checked_model()``, ``_model_label()`` and
    ``_update_enabled()``.
    """

    def _build_watch_rows(self) -> list:
        """The in-situ rows (title, folders, settle time, button, status), connected."""
        self._watch = None  # state of the current / last in-situ session
        self._watch_stop = self._state.watch_stop
        self.insitu_title = Label(value="In-situ: denoise frames as the camera writes them")
        self.camera_folder = FileEdit(label="camera folder", mode="d", value="", nullable=True)
        self.output_folder = FileEdit(label="output folder", mode="d", value="", nullable=True)
        self.settle_s = FloatSpinBox(
            label="settle time (s)", min=0.0, max=60.0, step=0.1, value=0.5
        )
        self.process_existing = CheckBox(text="process files already there", value=True)
        self.watch_button = PushButton(text=WATCH_TEXT)
        self.watch_status = Label(label="watch", value="not watching")
        self.watch_status.native.setWordWrap(True)
        self._watch_inputs = [
            self.camera_folder,
            self.output_folder,
            self.settle_s,
            self.process_existing,
        ]
        self.watch_button.changed.connect(self.toggle_watch)
        return [self.insitu_title, *self._watch_inputs, self.watch_button, self.watch_status]

    @property
    def _watch_worker(self):
        return self._state.watch_worker

    @_watch_worker.setter
    def _watch_worker(self, worker):
        self._state.watch_worker = worker

    @property
    def watching(self) -> bool:
        """Whether the in-situ mode is watching a folder."""
        return self._watch_worker is not None

    def _update_watch_rows(self) -> None:
        watching = self.watching
        for widget in self._watch_inputs:
            widget.enabled = not watching
        self.watch_button.text = STOP_TEXT if watching else WATCH_TEXT

    def toggle_watch(self, _event=None):
        """Start watching the camera folder, or stop watching it."""
        if self.watching:
            self.stop_watch()
        else:
            self.start_watch()

    def _watch_request(self):
        """Everything a watch needs, or None after show_error."""

        if is_empty_path(self.camera_folder.value):
            show_error("Choose the camera folder to watch.")
            return None
        folder = Path(self.camera_folder.value).expanduser()
        if not folder.is_dir():
            show_error(f"{folder} is not a folder.")
            return None
        out = None
        if not is_empty_path(self.output_folder.value):
            out = Path(self.output_folder.value).expanduser()
            if out.resolve() == folder.resolve():
                show_error(
                    "The output folder must not be the camera folder (the results would be "
                    "watched too): choose a sub-folder or another folder."
                )
                return None
        checked = self._checked_model("Watch")
        if checked is None:
            return None
        model_path, metadata, device = checked
        settle = float(self.settle_s.value)
        try:
            watcher = FolderWatcher(
                folder,
                settle_s=settle,
                poll_s=max(0.05, min(0.2, settle / 2)),
                existing="process" if self.process_existing.value else "skip",
            )
        except (OSError, ValueError) as err:
            show_error(f"Watch: {one_line(err)}")
            return None
        gain = float(self.gain.value)
        return SimpleNamespace(
            folder=folder,
            out=out,
            model_path=model_path,
            device=device,
            watcher=watcher,
            # None: each file's stated gain, else 1 (as 'napari-lowdose watch')
            gain=gain if gain > 0 else None,
        )

    def start_watch(self):
        """Watch the camera folder in a worker thread until :meth:`stop_watch`."""
        if self.watching:
            show_info("The camera folder is already being watched.")
            return
        request = self._watch_request()
        if request is None:
            return
        self._watch_stop.clear()
        self._watch = SimpleNamespace(
            request=request,
            raw=None,
            denoised=None,
            frame_shape=None,
            n_skipped=0,
            n_failures=0,
            stats=None,
            written=[],
            error=None,
        )
        skipped = len(request.watcher.skipped)
        self.watch_status.value = f"watching {request.folder}" + (
            f" ({skipped} file(s) already there skipped)" if skipped else ""
        )
        self._watch_worker = run_task(
            self._watch_events, request, on_yield=self._on_watch_event,
            on_error=self._on_watch_error, on_finish=self._on_watch_finished,
        )
        self._update_enabled()

    def stop_watch(self):
        """Stop watching; frames already shown (and written) are kept."""
        if self.watching:
            self._watch_stop.set()
            self.watch_status.value = "stopping…"

    def _watch_events(self, request):
        """Generator (worker thread): the watch session's events, results written to OUT."""
        from ..models.registry import load_denoiser

        watch = self._watch
        model, _ = load_denoiser(request.model_path, device="cpu")
        denoise = FrameDenoiser(model, request.device, counts_per_electron=request.gain)

        def process(frame, meta):
            return frame, denoise(frame, meta), meta.get("pixel_size_A")

        output = None if request.out is None else InSituOutput(request.out)
        on_result = None
        if output is not None:

            def on_result(result, meta):
                output.add_frame(
                    meta["path"], meta["frame_index_in_file"], result[1], meta, session.stats
                )

        session = WatchSession(
            request.watcher,
            process,
            on_result=on_result,
            should_stop=self._watch_stop.is_set,
            as_float32=True,
        )
        try:
            for event in session.run_iter(idle_yield_s=0.5):
                if event.failed and output is not None:
                    output.add_failure(event.result, event.stats)
                yield event
        finally:
            if output is not None:
                output.close()
                watch.written = output.written

    def _watch_text(self) -> str:
        watch = self._watch
        text = "" if watch.stats is None else watch.stats.summary()
        if watch.n_skipped:
            text += f", {watch.n_skipped} not shown (other frame size)"
        return text

    def _on_watch_event(self, event):
        if self._state.closed:
            return
        watch = self._watch
        watch.stats = event.stats
        if event.failed:
            failure = event.result
            where = "" if failure.frame_index is None else f" frame {failure.frame_index}"
            show_warning(
                f"In-situ: {Path(failure.path).name}{where}: {failure.stage} failed: "
                f"{failure.reason}"
            )
        elif not event.idle:
            raw, denoised, pixel = event.result
            self._append_live(event.path, raw, denoised, pixel)
        if self._watch_stop.is_set():
            return
        self.watch_status.value = self._watch_text()

    def _append_live(self, path, raw, denoised, pixel):
        """Append one frame to the "live raw" and "live denoised" layers."""
        watch = self._watch
        shape = tuple(np.shape(denoised))
        if watch.frame_shape is None:
            watch.frame_shape = shape
            watch.raw = self._live_stack(LIVE_RAW, shape)
            watch.denoised = self._live_stack(LIVE_DENOISED, shape)
        if shape != watch.frame_shape:
            watch.n_skipped += 1
            show_warning(
                f"In-situ: {Path(path).name}: a {shape[0]}×{shape[1]} frame, not "
                f"{watch.frame_shape[0]}×{watch.frame_shape[1]} like the first: not shown "
                f"({watch.n_skipped} so far)"
                + ("; it is still written to the output folder" if watch.request.out else "")
            )
            return
        layers = []
        for name, stack, frame in (
            (LIVE_RAW, watch.raw, raw),
            (LIVE_DENOISED, watch.denoised, denoised),
        ):
            view = stack.append(np.asarray(frame, dtype=np.float32))
            layers.append(self._show_live(name, view, frame, pixel))
        newest = layers[-1].data_to_world((watch.denoised.n - 1, 0, 0))[0]
        self._viewer.dims.set_point(self._viewer.dims.ndim - 3, newest)

    def _live_stack(self, name: str, shape) -> GrowingStack:
        """A growing stack continuing the layer ``name`` when its frames have ``shape``."""
        if name in self._viewer.layers:
            data = self._viewer.layers[name].data
            if data.ndim == 3 and tuple(data.shape[1:]) == tuple(shape):
                return GrowingStack(shape, initial=np.asarray(data))
        return GrowingStack(shape)

    def _show_live(self, name: str, view: np.ndarray, frame, pixel):
        """Show ``view`` in the layer ``name`` (created with the first frame)."""
        layer = self._viewer.layers[name] if name in self._viewer.layers else None
        if layer is not None and isinstance(layer, napari.layers.Image) and layer.ndim == 3:
            layer.data = view
            return layer
        if layer is not None:
            self._viewer.layers.remove(layer)
        limits, full = display_limits(frame)
        pixel_yx = None if pixel is None else tuple(float(v) for v in np.broadcast_to(pixel, 2))
        record = {"insitu": name, "folder": str(self._watch.request.folder)}
        if name == LIVE_DENOISED:
            record[DENOISED_KEY] = {
                "model": self._model_label(),
                "model_path": str(self._watch.request.model_path),
                # the dock's gain; None: each file's, else 1 (see watch_log.csv)
                "counts_per_electron": self._watch.request.gain,
            }
        layer = self._viewer.add_image(
            view,
            name=name,
            contrast_limits=limits,
            metadata={LOWDOSE_KEY: record},
            **image_layer_kwargs(pixel_yx, 3),
        )
        layer.contrast_limits_range = full
        layer.contrast_limits = limits
        return layer

    def _on_watch_error(self, err):
        if self._state.closed:
            return
        if self._watch is not None:
            self._watch.error = one_line(err)
        show_error(f"In-situ watch failed: {one_line(err)}")

    def _on_watch_finished(self):
        self._watch_worker = None
        if self._state.closed:
            return
        watch = self._watch
        self._update_enabled()
        if watch is None:
            return
        if watch.error:
            self.watch_status.value = f"stopped after an error: {watch.error}"
            return
        text = self._watch_text() or "nothing processed"
        if watch.request.out is not None:
            text += f"; {len(watch.written)} denoised file(s) written to {watch.request.out}"
        self.watch_status.value = f"stopped: {text}"
