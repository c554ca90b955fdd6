"""The base of the 'Train' and 'Train denoiser' docks: one training run in a worker.

It owns the worker, the Stop button's event, the progress bar with the time left
(timed from the first steps), the remembered settings with their "Reset to defaults"
button, the default output file (beside the dataset folder, named after the
network) and the history plot's helpers; the subclasses gather their command's
options and call its training function.
"""

import contextlib
import os
import threading
import time
from functools import partial
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import Label, PushButton
from napari.utils.notifications import show_info
from qtpy.QtCore import QObject, Signal

from ..models.checkpoint import MODEL_SUFFIX
from ._activity import ActivityBar
from ._common import DockContainer, is_empty_path
from ._plotting import new_canvas, theme_colors
from ._settings import DockSettings
from ._workers import eta_text, run_task

__all__ = ["MODEL_SUFFIX", "RANDOM_WEIGHTS", "TrainingDock", "default_model_path"]

#: "start from" choice for a network with fresh random weights.
RANDOM_WEIGHTS = "random weights"


def default_model_path(dataset: str | Path, network: str) -> Path:
    """The model file a run on ``dataset`` writes unless told otherwise.

    Beside the dataset folder, never inside it (the folder is the dataset's own):
    ``<parent>/<dataset name>-<network>.safetensors``, e.g. ``runs/au-unet.safetensors``
    for the dataset ``runs/au`` and a U-net; in the working folder when the dataset's
    folder cannot be written to (shared, read-only data).
    """
    dataset = Path(dataset).resolve()
    name = f"{dataset.name}-{network}{MODEL_SUFFIX}"
    if not os.access(dataset.parent, os.W_OK):  # e.g. shared, read-only data
        return Path.cwd().resolve() / name
    return dataset.parent / name


class _Relay(QObject):
    """Carries the worker's callbacks to the GUI thread (queued signals)."""

    step = Signal(int, int)
    epoch = Signal(object)


class TrainingDock(DockContainer):
    """What the Train and Train-denoiser docks share: one training run in a worker.

    The subclass builds its inputs (``self._inputs``, ``train_button``,
    ``stop_button``, ``progress_bar``, ``status``, ``out_file``; it places the base's
    ``time_left`` label and ``reset_button``), calls :meth:`_remember` with the inputs
    worth keeping between sessions, and provides ``_run(*request, direct)`` (the
    worker body, using :meth:`_callbacks`), ``_on_epoch(result)``,
    ``_on_done(summary)`` and ``_on_error(err)`` (its one notification). Step and
    epoch callbacks of the worker reach the GUI thread through queued signals;
    "Stop" ends the run after the current step.
    """

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True):
        super().__init__()
        self._viewer = viewer
        self.use_thread = use_thread
        self._worker = None
        self._stop_event = threading.Event()
        self._relay = _Relay()
        self._relay.step.connect(self._on_step)
        self._relay.epoch.connect(self._on_epoch)
        self.summary = None
        self.history: list[dict] = []
        self.last_progress = None  # (step, total) of the last progress call
        self.time_left = Label(label="time left", value="")
        self.reset_button = PushButton(text="Reset to defaults")
        self.reset_button.changed.connect(self.reset_settings)
        self.dock_settings: DockSettings | None = None
        self._default_out: Path | None = None  # the suggested output file, if shown
        self._started = 0.0  # perf_counter() at the start of the run
        self._first_step: int | None = None  # steps done before this run (resumed)

    # -- remembered settings and the output file -------------------------------------------
    def _remember(self, name: str, widgets: dict) -> None:
        """Keep ``widgets``' values between sessions (restored now)."""
        self.dock_settings = DockSettings(name, widgets).connect()

    def reset_settings(self, _event=None) -> None:
        """Give every remembered input its default back (and forget the stored values)."""
        if self.dock_settings is not None and not self.busy:
            self.dock_settings.reset()

    def _suggest_out(self, path: Path | None) -> None:
        """Show ``path`` as the output file unless the user chose one of their own."""
        current = self.out_file.value
        ours = is_empty_path(current) or (
            self._default_out is not None and Path(current) == self._default_out)
        if path is None or not ours:
            return
        self._default_out = Path(path)
        self.out_file.value = self._default_out

    @property
    def busy(self) -> bool:
        """Whether training is running."""
        return self._worker is not None

    def _launch(self, request: tuple) -> None:
        """Start ``_run(*request)`` in a worker (or here, when ``use_thread`` is False)."""
        self._stop_event.clear()
        self.summary, self.last_progress, self.history = None, None, []
        self._started, self._first_step = time.perf_counter(), None
        self.time_left.value = "timing the first steps…"
        self._update_plot()
        self.progress_bar.max, self.progress_bar.value = 1, 0
        self._set_running(True)
        self._activity = ActivityBar(None, "Training: steps")  # here, in the GUI thread
        self._worker = run_task(
            partial(self._run, direct=not self.use_thread), *request,
            use_thread=self.use_thread, on_return=self._on_done, on_error=self._on_error,
            on_finish=self._on_finished,
        )

    @contextlib.contextmanager
    def _callbacks(self, desc: str, *, direct: bool):
        """(progress, on_epoch) callbacks for the training call, with a napari progress bar."""
        step_cb = self._on_step if direct else self._relay.step.emit
        epoch_cb = self._on_epoch if direct else self._relay.epoch.emit
        activity = getattr(self, "_activity", None)
        if activity is not None:
            activity.set_description(desc)

        def on_progress(step, total):
            if activity is not None:
                activity.update_to(int(step), int(total))
            step_cb(int(step), int(total))

        yield on_progress, epoch_cb

    def _on_step(self, step, total):
        if self._first_step is None:
            self._first_step = max(0, int(step) - 1)  # a resumed run starts further on
        done, left = int(step) - self._first_step, int(total) - self._first_step
        self.time_left.value = eta_text(done, left, time.perf_counter() - self._started,
                                        unit="step")
        self.last_progress = (step, total)
        if self.progress_bar.max != total:
            self.progress_bar.max = total
        self.progress_bar.value = min(step, total)

    def _on_finished(self):
        self._worker = None
        activity, self._activity = getattr(self, "_activity", None), None
        if activity is not None:
            activity.close()
        self._set_running(False)
        if self.last_progress is None or self.last_progress[0] < self.last_progress[1]:
            self.time_left.value = ""

    def _reset_after_failure(self) -> None:
        """A failed run: status "failed", the progress back to zero (before the message)."""
        self.status.value = "failed"
        self.progress_bar.value = 0
        self.time_left.value = ""

    def _set_running(self, running: bool):
        for widget in self._inputs:
            widget.enabled = not running
        self.train_button.enabled = not running
        self.reset_button.enabled = not running
        self.stop_button.enabled = running

    def on_closed(self) -> None:
        """The dock was closed during training: stop it (the best checkpoint is kept)."""
        if self.stop_button.enabled:
            self.stop()
            show_info("The training dock was closed: training stops after the current "
                      "step; the best checkpoint so far is kept.")

    def stop(self, _event=None):
        """End training after the current step; the best checkpoint so far is kept."""
        if self.stop_button.enabled:
            self._stop_event.set()
            self.status.value = "stopping after the current step…"

    # -- history plot (``self.lines``: history column → line; ``self.best_marker``) -------
    def _column(self, name: str) -> np.ndarray:
        """One column of the epoch history (NaN where an epoch lacks it)."""
        return np.array([np.nan if row.get(name) is None else row[name]
                         for row in self.history], dtype=float)

    def _draw_history(self) -> np.ndarray:
        """Set every line of ``self.lines`` from the history; returns the epochs."""
        epochs = self._column("epoch")
        for name, line in self.lines.items():
            line.set_data(epochs, self._column(name))
        return epochs

    def _mark_best(self, epochs, values, label: str, fmt: str, ax, title_ax,
                   unit: str = "") -> None:
        """Mark the best epoch of ``values`` and title it, fit the x range, redraw."""
        if np.isfinite(values).any():
            best = int(np.nanargmax(values))
            self.best_marker.set_data([epochs[best]], [values[best]])
            title = f"best {label} {values[best]:{fmt}}{unit} at epoch {epochs[best]:g}"
            title_ax.set_title(title, fontsize="small", color=self._colors["fg"])
            ax.set_xlim(0.5, max(epochs.max(), 2) + 0.5)
        else:
            self.best_marker.set_data([], [])
            title_ax.set_title("")
        ax.relim()
        ax.autoscale_view(scalex=False)
        self.canvas.draw_idle()

    def plotted_history(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The (epoch, value) data of every plotted curve, and of the best-epoch marker."""
        lines = {**self.lines, "best": self.best_marker}
        return {k: tuple(np.asarray(v, dtype=float) for v in line.get_data())
                for k, line in lines.items()}

    def _new_figure(self, min_height_px: int):
        """A matplotlib figure and Qt canvas in napari's theme colours."""
        self._colors = theme_colors(self._viewer)
        self.figure, self.canvas = new_canvas(self._colors, min_height_px)
        return self.figure
