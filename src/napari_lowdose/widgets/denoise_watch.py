"""The in-situ mode of the 'Denoise' dock: denoise frames as the camera writes them.

The napari face of ``napari-lowdose watch`` (:mod:`napari_lowdose.insitu`). A
camera folder is watched (:class:`~napari_lowdose.insitu.FolderWatcher`,
:class:`~napari_lowdose.insitu.WatchSession`); each frame written into it is
denoised (:class:`~napari_lowdose.insitu.FrameDenoiser`, with the gain set in the
dock, else the one each file states, else 1, as ``napari-lowdose watch`` chooses
it) and appended to two growing layers,
``"live raw"`` and ``"live denoised"``, and the viewer moves to the newest frame.
As ``napari-lowdose watch --pixel-size-A/--dose-e-per-A2``, the pixel size (Å) and the
dose (e⁻/Å² per frame) can be set here (0: the files' values); the pixel size starts at
the open series' and the dose at the files' (a dose series changes it every frame; the
tooltip gives the open series' last dose for a camera whose files state none). The two
layers carry the pixel size as their scale (in Å) and the per-frame dose in their
metadata, so they sit next to a calibrated series and the dose overlay reads them.
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

from ..errors import one_line
from ..insitu import (
    DEFAULT_SETTLE_S,
    FolderWatcher,
    FrameDenoiser,
    InSituOutput,
    WatchSession,
)
from ..io.dose import FrameDose
from ..io.layers import LOWDOSE_KEY, image_layer_kwargs, layer_frame_dose
from ._common import is_empty_path
from ._display import GrowingStack, display_limits
from ._layers import layer_pixel_size_A
from ._workers import run_task
from .denoise_output import DENOISED_KEY

__all__ = ["LIVE_DENOISED", "LIVE_RAW", "WatchMode"]

#: Names of the two growing layers of the in-situ mode.
LIVE_RAW = "live raw"
LIVE_DENOISED = "live denoised"
WATCH_TEXT, STOP_TEXT = "Watch folder", "Stop watching"
FROM_FILES_TEXT = "from the files"


def series_calibration(layer) -> tuple[float, float]:
    """(pixel size Å, last frame's dose e⁻/Å²) of an open series; 0: unknown.

    The pixel size is the mean of the layer's (y, x) pixel size.
    """
    if layer is None:
        return 0.0, 0.0
    pixel = layer_pixel_size_A(layer)
    try:
        dose = layer_frame_dose(layer.metadata)
    except Exception:  # noqa: BLE001 - unreadable dose: from the files
        dose = None
    pixel_A = 0.0 if pixel is None else float(np.mean(pixel))
    dose_e_per_A2 = 0.0 if dose is None else float(dose.dose_e_per_A2[-1])
    return pixel_A, dose_e_per_A2


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
            label="settle time (s)", min=0.0, max=60.0, step=0.1, value=DEFAULT_SETTLE_S
        )
        self.process_existing = CheckBox(text="process files already there", value=True)
        self.watch_pixel_A = FloatSpinBox(
            label="pixel size (Å)", min=0.0, max=1e4, step=0.01, value=0.0,
            tooltip="Pixel size of the camera's frames; 0 = the one each file states. "
            "As --pixel-size-A of 'napari-lowdose watch'.",
        )
        self.watch_pixel_A.native.setDecimals(4)
        self.watch_dose = FloatSpinBox(
            label="dose (e⁻/Å² per frame)", min=0.0, max=1e9, step=1.0, value=0.0,
            tooltip="Dose of every frame; 0 = the one each file states (else the frame "
            "mean normalises). As --dose-e-per-A2 of 'napari-lowdose watch'.",
        )
        self.watch_dose.native.setDecimals(3)
        self._dose_tooltip = self.watch_dose.tooltip
        for box in (self.watch_pixel_A, self.watch_dose):
            box.native.setSpecialValueText(FROM_FILES_TEXT)
        self._calibration_edited = False
        self._calibration_setting = False
        for box in (self.watch_pixel_A, self.watch_dose):
            box.changed.connect(self._on_calibration_edited)
        self.watch_button = PushButton(text=WATCH_TEXT)
        self.watch_status = Label(label="watch", value="not watching")
        self._watch_inputs = [
            self.camera_folder,
            self.output_folder,
            self.settle_s,
            self.process_existing,
            self.watch_pixel_A,
            self.watch_dose,
        ]
        self.watch_button.changed.connect(self.toggle_watch)
        return [self.insitu_title, *self._watch_inputs, self.watch_button, self.watch_status]

    def _watch_settings(self) -> dict:
        """The in-situ inputs remembered between sessions (not the calibration)."""
        return {"camera_folder": self.camera_folder, "output_folder": self.output_folder,
                "settle_s": self.settle_s, "process_existing": self.process_existing}

    def _on_calibration_edited(self, _value=None) -> None:
        if not self._calibration_setting:
            self._calibration_edited = True

    def _watch_calibration_from(self, layer) -> None:
        """Pixel size and dose from the open series, unless the user set their own."""
        if self._calibration_edited or self.watching:
            return
        pixel_A, dose = series_calibration(layer)
        self._calibration_setting = True
        try:
            self.watch_pixel_A.value = pixel_A
        finally:
            self._calibration_setting = False
        hint = f" The open series' last frame had {dose:.4g} e⁻/Å²." if dose > 0 else ""
        self.watch_dose.tooltip = self._dose_tooltip + hint

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
        pixel_A, dose = float(self.watch_pixel_A.value), float(self.watch_dose.value)
        return SimpleNamespace(
            folder=folder,
            out=out,
            model_path=model_path,
            device=device,
            watcher=watcher,
            # None: each file's value (gain: else 1), as 'napari-lowdose watch'
            gain=gain if gain > 0 else None,
            pixel_size_A=pixel_A if pixel_A > 0 else None,
            dose_e_per_A2=dose if dose > 0 else None,
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
            doses=[],
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
        denoise = FrameDenoiser(model, request.device, counts_per_electron=request.gain,
                                dose_e_per_A2=request.dose_e_per_A2,
                                pixel_size_A=request.pixel_size_A)

        def process(frame, meta):
            pixel = (request.pixel_size_A if request.pixel_size_A is not None
                     else meta.get("pixel_size_A"))
            dose = (request.dose_e_per_A2 if request.dose_e_per_A2 is not None
                    else meta.get("dose_e_per_A2"))
            return frame, denoise(frame, meta), pixel, dose

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
            raw, denoised, pixel, dose = event.result
            self._append_live(event.path, raw, denoised, pixel, dose)
        if self._watch_stop.is_set():
            return
        self.watch_status.value = self._watch_text()

    def _append_live(self, path, raw, denoised, pixel, dose=None):
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
        watch.doses.append(None if dose is None else float(dose))
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
        pixel_yx = None if pixel is None else tuple(float(v) for v in np.broadcast_to(pixel, 2))
        if layer is not None and isinstance(layer, napari.layers.Image) and layer.ndim == 3:
            layer.data = view
            self._calibrate_live(layer, pixel_yx)
            return layer
        if layer is not None:
            self._viewer.layers.remove(layer)
        limits, full = display_limits(frame)
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
        self._calibrate_live(layer, pixel_yx)
        return layer

    def _calibrate_live(self, layer, pixel_yx) -> None:
        """Scale, units (Å) and the per-frame dose of a live layer, as its frames arrive.

        The frames of a layer continued from an earlier watch without a dose keep the
        layer undated (one dose per frame, or none).
        """
        if pixel_yx is not None:
            kwargs = image_layer_kwargs(pixel_yx, 3)
            if tuple(layer.scale[-2:]) != pixel_yx or str(layer.units[-1]) != "angstrom":
                layer.scale, layer.units = kwargs["scale"], kwargs["units"]
        lowdose = dict((layer.metadata or {}).get(LOWDOSE_KEY) or {})
        doses = self._watch.doses
        start = int(layer.data.shape[0]) - len(doses)  # frames from an earlier watch
        earlier = lowdose.get("dose") if start > 0 else None
        try:
            earlier = None if earlier is None else FrameDose.from_metadata(earlier)
        except Exception:  # noqa: BLE001 - unreadable: the earlier frames are undated
            earlier = None
        known = all(d is not None and d > 0 for d in doses) and (
            start == 0 or (earlier is not None and earlier.n_frames == start))
        if known:
            values = np.asarray(doses, dtype=float)
            if start:
                values = np.concatenate([earlier.dose_e_per_A2, values])
            detail = ("set in the Denoise dock" if self._watch.request.dose_e_per_A2
                      else "the camera files")
            lowdose["dose"] = FrameDose(values, "metadata", detail).to_metadata()
        else:
            lowdose.pop("dose", None)
        if pixel_yx is not None:
            lowdose["pixel_size_A"] = list(pixel_yx)
        layer.metadata = {**(layer.metadata or {}), LOWDOSE_KEY: lowdose}

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
