"""Saving a Detector-noise fit: the noise model (JSON) and the per-frame table (CSV).

A mixin of :class:`.noise_fit.NoiseFitWidget`: the series fit if there is one, else the
current-frame fit; a fit that failed the vacuum check is not saved as a noise model (its
c0, c3 and N0 would describe the structure in the rectangle, not the detector).
"""

from pathlib import Path

from napari.utils.notifications import show_error, show_info

from ..errors import LowdoseError, one_line
from ..io.writers import atomic_write_text
from ..noise.fit_result import NoiseFitResult, fit_table_csv
from ..noise.fitted_model import fit_description, fitted_model_name
from ..noise.model import NoiseModel
from ..noise.vacuum import VacuumCheck


class NoiseFitSave:
    """Save buttons and methods of the Detector-noise dock."""

    def _has_result(self) -> bool:
        return self.result is not None or self.frame_result is not None

    def _saved(self) -> tuple[NoiseFitResult, VacuumCheck | None]:
        if self.result is not None:
            return self.result, self.check
        if self.frame_result is not None:
            return self.frame_result, self.frame_check
        raise LowdoseError("no noise fit to save: fit the current frame or the series first")

    def _saved_what(self) -> str:
        """What the saved fit was fitted to (the region or the pairs, as fit-noise says)."""
        what = self.result_what if self.result is not None else self.frame_what
        return what or "a region of the layer"

    def _saved_result(self) -> NoiseFitResult:
        return self._saved()[0]

    def save_noise_model(self, path: str | Path, *, allow_non_vacuum: bool = False) -> Path:
        """Write the fitted noise model (series fit if any, else the frame fit) as JSON.

        Raises
        ------
        LowdoseError
            No fit yet, or the fit failed the vacuum check (unless ``allow_non_vacuum``):
            its c0, c3 and N0 describe the structure in the rectangle, not the detector.
        """
        result, check = self._saved()
        if check is not None and not check.passed and not allow_non_vacuum:
            raise LowdoseError(f"the rectangle is probably not pure vacuum ({check.summary()}):"
                               " fit a rectangle over vacuum first")
        layer = self.layer
        name = fitted_model_name(layer.name) if layer is not None else "fitted"
        try:
            model = NoiseModel.from_fit(result, name=name,
                                        description=fit_description(self._saved_what(), result))
        except ValueError as err:
            raise LowdoseError(str(err)) from err
        return Path(model.to_json(path))

    def save_table(self, path: str | Path) -> Path:
        """Write the per-frame fit table as CSV (atomically), with the model and spectrum."""
        result = self._saved_result()
        atomic_write_text(path, fit_table_csv(result))
        return Path(path)

    def _save_model_dialog(self, _event=None):
        try:
            result, check = self._saved()
        except LowdoseError as err:
            show_error(f"Not saved: {err}")
            return
        if check is not None and not check.passed:
            show_error(f"Not saved: the rectangle is probably not pure vacuum "
                       f"({check.summary()}). Move it over vacuum and fit again.")
            return
        self._save_dialog("Save noise model", "noise_model.json", "JSON (*.json)",
                          self.save_noise_model)

    def _save_table_dialog(self, _event=None):
        self._save_dialog("Save per-frame table", "noise_fit.csv", "CSV (*.csv)",
                          self.save_table)

    def _save_dialog(self, title, default, filt, save):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(None, title, default, filt)
        if path:
            try:
                show_info(f"Saved {save(path)}")
            except (LowdoseError, OSError, ValueError) as err:
                show_error(f"Not saved: {one_line(err)}")

    def _update_buttons(self):
        has = self._has_result()
        self.save_model_button.enabled = self.save_table_button.enabled = has
