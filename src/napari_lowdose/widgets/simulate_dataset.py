"""The dataset half of the 'Simulate' dock: generate (or resume) a training dataset.

:class:`SimulateDataset` is a mixin of :class:`~.simulate.SimulateWidget`: it checks the
dataset inputs, runs :func:`~napari_lowdose.simulate.dataset.generate_dataset` in a
worker with a progress bar, the time left (timed from the first structures; a resumed
run from where it started) and Cancel, and reports the run in one notification. A
cancelled run resumes when it is generated into the same folder again with the same
settings.
"""

import time
from pathlib import Path

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal

from ..errors import one_line
from ..simulate.dataset import generate_dataset
from ..simulate.recipe import DatasetError, DatasetRecipe
from ._activity import ActivityBar
from ._common import is_empty_path
from ._workers import eta_text, run_task

__all__ = ["SimulateDataset"]


class _Relay(QObject):
    """Carries the dataset's progress from the worker to the GUI thread (queued)."""

    progress = Signal(int, int)


class SimulateDataset:
    """Mixin of :class:`~.simulate.SimulateWidget`: the dataset inputs, run and report.

    Reads and sets the widget's ``_dataset_worker``, ``_stop_event``, ``_relay``,
    ``_dataset_epochs``, ``_dataset_started``, ``_first_done``, ``last_progress``,
    ``summary``, ``use_thread``, the dataset inputs, buttons, ``dataset_progress``,
    ``time_left`` and ``dataset_status``; calls its ``_common_inputs()`` and
    ``dose_range_e_per_A2()``.
    """

    def _dataset_request(self):
        """(out_dir, DatasetRecipe, workers) or None after show_error."""

        out = self.out_dir.value
        if is_empty_path(out):
            show_error(
                "Choose an output folder (a new or empty folder, or an unfinished "
                "dataset to resume)."
            )
            return None
        if int(self.n_structures.value) < 1 or int(self.image_epochs.value) < 1:
            show_error("The number of structures and of image epochs must be at least 1.")
            return None
        inputs = self._common_inputs()
        if inputs is None:
            return None
        recipe, model = inputs
        try:
            dose_range = self.dose_range_e_per_A2()
            dataset = DatasetRecipe(
                n_structures=int(self.n_structures.value),
                image_epochs=int(self.image_epochs.value),
                seed=int(self.seed.value),
                structure=recipe,
                dose_range_e_per_A2=dose_range,
                noise_model=model,
                val_fraction=float(self.val_fraction.value),
            )
        except (DatasetError, ValueError) as err:
            show_error(f"Invalid dataset settings: {err}")
            return None
        return Path(out), dataset, int(self.workers.value)

    def generate(self, _event=None):
        """Generate (or resume) the dataset in the output folder."""
        if self._dataset_worker is not None:
            show_info("A dataset is already being generated.")
            return
        request = self._dataset_request()
        if request is None:
            return
        self._stop_event.clear()
        self.last_progress = None
        self.summary = None
        self._dataset_epochs = request[1].image_epochs
        self._dataset_started, self._first_done = time.perf_counter(), None
        self.dataset_progress.max = request[1].n_structures
        self.dataset_progress.value = 0
        self.time_left.value = "timing the first structure…"
        self.generate_button.enabled = False
        self.cancel_dataset_button.enabled = True
        self.dataset_status.value = f"generating into {request[0]}…"
        self._dataset_activity = ActivityBar(request[1].n_structures,
                                             "Simulate: dataset structures")
        self._dataset_worker = run_task(
            self._run_dataset, *request, use_thread=self.use_thread,
            on_return=self._on_dataset_done, on_error=self._on_dataset_error,
            on_finish=self._on_dataset_finished,
        )
        if not self.use_thread:
            self._dataset_worker = None

    def _run_dataset(self, out, recipe, workers):
        show = (self._relay.progress.emit if self.use_thread
                else self._show_dataset_progress)
        activity = getattr(self, "_dataset_activity", None)  # made in the GUI thread

        def on_progress(done, total_):
            self._record_progress(done, total_)
            show(int(done), int(total_))
            if activity is not None:
                activity.update_to(int(done), int(total_))

        return generate_dataset(
            out,
            recipe,
            workers=workers,
            progress=on_progress,
            should_stop=self._stop_event.is_set,
        )

    def _record_progress(self, done, total):
        self.last_progress = (int(done), int(total))

    def _show_dataset_progress(self, done: int, total: int) -> None:
        """The bar and the time left (a resumed run is timed from where it started)."""
        if self._first_done is None:
            self._first_done = max(0, done - 1)
        self.dataset_progress.max = max(1, total)
        self.dataset_progress.value = min(done, total)
        self.time_left.value = eta_text(done - self._first_done, total - self._first_done,
                                        time.perf_counter() - self._dataset_started,
                                        unit="structure")

    def _on_dataset_done(self, summary):
        self.summary = summary
        images = summary.n_done * self._dataset_epochs
        if summary.complete:
            text = (
                f"complete: {summary.n_done} structures ({images} images) in "
                f"{summary.path}, {summary.elapsed_s:.1f} s"
            )
            show_info(f"Dataset {text}")
        else:
            text = (
                f"stopped after {summary.n_done}/{summary.n_total} structures; generate "
                "into the same folder with the same settings to resume"
            )
            show_warning(f"Dataset {text}.")
        self.dataset_status.value = text

    def _on_dataset_error(self, err):
        self.dataset_status.value = "failed"
        self.dataset_progress.value = 0
        self.time_left.value = ""
        show_error(f"Dataset not generated: {one_line(err)}")

    def _on_dataset_finished(self):
        self._dataset_worker = None
        activity, self._dataset_activity = getattr(self, "_dataset_activity", None), None
        if activity is not None:
            activity.close()
        self.generate_button.enabled = True
        self.cancel_dataset_button.enabled = False

    def cancel_dataset(self, _event=None):
        """Stop after the structure(s) in progress; the run resumes from the same folder."""
        if self._dataset_worker is not None:
            self._stop_event.set()
            self.dataset_status.value = "stopping after the current structure…"
            show_info(
                "Stopping after the current structure; generate into the same folder "
                "again with the same settings to resume."
            )
