"""'Detector noise' dock widget: fit the noise model of Larsen et al. (2023) to a vacuum ROI.

Thin: it cuts the vacuum rectangle out of the selected image layer and calls
:mod:`napari_lowdose.noise` (spectra in chunks of frames, then one batched
fit of the whole series); it plots the spectrum and fit of the current frame
(SOI Eq. 4 / Eq. 3), c0, c3 and C against dose (paper Fig. 5) and C² against
the frame dose ``N_D`` with the Eq. 2 curve (paper Fig. 6); the plots are in
:mod:`.noise_fit_plots`. ``N_D`` is the dose × pixel height × pixel width, as
``napari-lowdose fit-noise`` computes it.
"""

import math
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import LowdoseError
from ..io.layers import layer_frame_dose
from ..io.units import pixel_area_A2
from ..io.writers import atomic_write_text
from ..noise.fit_result import NoiseFitResult, fit_table_csv
from ..noise.fitting import fit_spectra
from ..noise.model import NoiseModel
from ..noise.spectrum import RadialSpectrum, radial_spectrum
from ._common import rectangle_roi_px
from ._layers import base_data, layer_pixel_size_A
from ._workers import run_task
from .noise_fit_plots import NoiseFitPlots

MODEL_CHOICES = [("paper (Eq. 4)", "paper"), ("physical (Eq. 3)", "physical")]
SPECTRUM_CHOICES = [("magnitude |FFT|", "magnitude"), ("power |FFT|²", "power")]
MIN_ROI_PX = 32
VACUUM_R2 = 0.9  # median R² below this: the ROI is probably not vacuum
ROI_LAYER_NAME = "vacuum ROI"


class NoiseFitWidget(NoiseFitPlots, Container):
    """Fit the detector noise model to a vacuum rectangle of one frame or a whole series."""

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True,
                 chunk_frames: int = 64):
        super().__init__(labels=True)
        self._viewer = viewer
        self.use_thread = use_thread
        self.chunk_frames = max(1, int(chunk_frames))
        self._worker = None
        self._cancelled = False
        self.result: NoiseFitResult | None = None  # last series fit
        self.frame_result: NoiseFitResult | None = None  # last single-frame fit
        self._frame_result_index = 0

        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.roi_combo = ComboBox(label="vacuum ROI", choices=self._shapes_layers,
                                  nullable=True)
        self.add_roi_button = PushButton(text="Add vacuum rectangle")
        self.model = ComboBox(label="model", choices=MODEL_CHOICES, value="paper")
        self.spectrum = ComboBox(label="spectrum", choices=SPECTRUM_CHOICES, value="magnitude")
        self.fit_frame_button = PushButton(text="Fit current frame")
        self.fit_series_button = PushButton(text="Fit whole series")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="result", value="no fit yet")
        self.save_model_button = PushButton(text="Save noise model…", enabled=False)
        self.save_table_button = PushButton(text="Save per-frame table…", enabled=False)
        self.extend([
            self.layer_combo, self.roi_combo, self.add_roi_button, self.model, self.spectrum,
            self.fit_frame_button, self.fit_series_button, self.cancel_button, self.status,
            self.save_model_button, self.save_table_button,
        ])
        self._build_plots()

        self.add_roi_button.changed.connect(self.add_vacuum_rectangle)
        self.model.changed.connect(self._on_model_changed)
        self.fit_frame_button.changed.connect(self.fit_current_frame)
        self.fit_series_button.changed.connect(self.fit_series)
        self.cancel_button.changed.connect(self.cancel)
        self.save_model_button.changed.connect(self._save_model_dialog)
        self.save_table_button.changed.connect(self._save_table_dialog)
        self.layer_combo.changed.connect(self._on_layer_changed)
        viewer.layers.events.inserted.connect(self._reset_choices)
        viewer.layers.events.removed.connect(self._reset_choices)
        viewer.dims.events.current_step.connect(self._on_step)
        self._on_model_changed()

    # -- choices --------------------------------------------------------------------------
    def _image_layers(self, _widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Image)]

    def _shapes_layers(self, _widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Shapes)]

    def _reset_choices(self, _event=None):
        self.layer_combo.reset_choices()
        self.roi_combo.reset_choices()
        if self.roi_combo.value is None:
            shapes = self._shapes_layers()
            if shapes:
                self.roi_combo.value = shapes[-1]

    @property
    def layer(self):
        """The selected image layer, or None."""
        return self.layer_combo.value

    def _on_layer_changed(self, _value=None):
        self.result = None
        self.frame_result = None
        self._update_buttons()
        self._update_plots()
        self.status.value = "no fit yet"

    def _on_model_changed(self, value=None):
        # The physical model (Eq. 3) is a model of the power spectrum.
        if self.model.value == "physical":
            self.spectrum.value = "power"
            self.spectrum.enabled = False
        else:
            self.spectrum.enabled = True

    # -- ROI ------------------------------------------------------------------------------
    def add_vacuum_rectangle(self, _event=None):
        """Add a Shapes layer with a default rectangle in the image's top-left corner."""
        layer = self.layer
        if layer is None:
            show_error("Choose an image layer first: the rectangle takes its scale.")
            return None
        ny, nx = _frame_shape(layer)
        side = min(ny, nx, int(np.clip(min(ny, nx) // 4, 2 * MIN_ROI_PX, 512)))
        rect = np.array([[0, 0], [0, side], [side, side], [side, 0]], dtype=float)
        shapes = self._viewer.add_shapes(
            [rect], shape_type="rectangle", name=ROI_LAYER_NAME,
            scale=tuple(layer.scale[-2:]), translate=tuple(layer.translate[-2:]),
            units=tuple(layer.units[-2:]), edge_color="yellow", face_color="transparent",
            edge_width=max(1.0, side / 64),
        )
        self.roi_combo.reset_choices()
        self.roi_combo.value = shapes
        try:
            shapes.mode = "add_rectangle"
        except (ValueError, TypeError):  # pragma: no cover - mode names differ by version
            pass
        show_info(f"Added '{shapes.name}': move it over vacuum ({side}×{side} px).")
        return shapes

    def _roi_px(self, layer):
        """(y0, y1, x0, x1) of the vacuum rectangle, or None after show_error."""
        shapes = self.roi_combo.value
        if shapes is None:
            show_error("Choose a Shapes layer with a rectangle over vacuum "
                       "(or press 'Add vacuum rectangle').")
            return None
        try:
            y0, y1, x0, x1 = rectangle_roi_px(shapes, layer)
        except ValueError as err:
            show_error(str(err))
            return None
        ny, nx = _frame_shape(layer)
        if y0 < 0 or x0 < 0 or y1 > ny or x1 > nx:
            show_error(
                f"The vacuum rectangle (rows {y0}–{y1}, columns {x0}–{x1}) lies partly "
                f"outside the image ({ny}×{nx} px): move it inside the image."
            )
            return None
        if y1 - y0 < MIN_ROI_PX or x1 - x0 < MIN_ROI_PX:
            show_error(
                f"The vacuum rectangle is only {y1 - y0}×{x1 - x0} px: draw one of at least "
                f"{MIN_ROI_PX}×{MIN_ROI_PX} px (larger gives better spectra)."
            )
            return None
        return y0, y1, x0, x1

    def _inputs(self):
        """Everything a fit needs, or None after show_error."""
        layer = self.layer
        if layer is None:
            show_error("Choose an image layer first.")
            return None
        if getattr(layer, "rgb", False) or layer.ndim not in (2, 3):
            show_error(f"'{layer.name}' must be one 2-D frame or a (frames, y, x) series.")
            return None
        roi = self._roi_px(layer)
        if roi is None:
            return None
        n_frames = layer.data.shape[0] if layer.ndim == 3 else 1
        dose = self._dose(layer, n_frames)
        sampling = _square_sampling_A(layer)
        if dose is None:
            show_info("No dose calibration on this layer: c0, c3 and C are fitted, but N0 "
                      "needs the dose (use the 'Dose calibration' widget).")
        elif sampling is None:
            show_info("No pixel size in Å on this layer: N0 needs it (set it in the "
                      "'Dose calibration' widget).")
        return {
            "layer": layer, "roi": roi, "n_frames": n_frames, "dose": dose,
            "sampling": sampling, "model": self.model.value,
            "kind": "power" if self.model.value == "physical" else self.spectrum.value,
        }

    @staticmethod
    def _dose(layer, n_frames):
        try:
            dose = layer_frame_dose(layer.metadata)
        except LowdoseError as err:
            show_warning(f"{layer.name}: dose metadata unreadable ({err}); fitting without.")
            return None
        if dose is None:
            return None
        if dose.n_frames != n_frames:
            show_warning(f"{layer.name}: the dose has {dose.n_frames} values for {n_frames} "
                         "frames; fitting without dose.")
            return None
        return dose.dose_e_per_A2

    # -- fitting --------------------------------------------------------------------------
    def current_frame(self, layer=None) -> int:
        """Index of the frame shown for ``layer`` (0 for a 2-D layer)."""
        layer = self.layer if layer is None else layer
        if layer is None or layer.ndim < 3:
            return 0
        try:
            index = float(np.asarray(layer.world_to_data(self._viewer.dims.point))[0])
        except (ValueError, IndexError, TypeError):
            index = float(self._viewer.dims.current_step[0])
        return int(min(max(round(index), 0), layer.data.shape[0] - 1))

    def fit_current_frame(self, _event=None):
        """Fit the vacuum rectangle of the frame shown now (synchronous)."""
        inputs = self._inputs()
        if inputs is None:
            return None
        layer, (y0, y1, x0, x1) = inputs["layer"], inputs["roi"]
        index = self.current_frame(layer)
        data = base_data(layer)
        region = data[index, y0:y1, x0:x1] if layer.ndim == 3 else data[y0:y1, x0:x1]
        dose = None if inputs["dose"] is None else inputs["dose"][index:index + 1]
        try:
            spec = radial_spectrum(np.asarray(region), kind=inputs["kind"])
            result = fit_spectra(spec, model=inputs["model"], dose_e_per_A2=dose,
                                 sampling_A=inputs["sampling"])
        except Exception as err:  # noqa: BLE001 - notify, never raise to the user
            show_error(f"Noise fit failed: {err}")
            return None
        self.frame_result = result
        self._frame_result_index = index
        self._check_quality(result)
        self._describe(result, f"frame {index}")
        self._update_buttons()
        self._update_plots()
        return result

    def fit_series(self, _event=None):
        """Fit every frame: spectra in chunks (with progress and Cancel), then one batched fit."""
        if self._worker is not None:
            show_info("A series fit is already running.")
            return
        inputs = self._inputs()
        if inputs is None:
            return
        self._cancelled = False
        if self.use_thread:
            self.fit_series_button.enabled = self.fit_frame_button.enabled = False
            self.cancel_button.enabled = True
        self._worker = run_task(
            self._series_gen(inputs), use_thread=self.use_thread,
            on_yield=self._on_series_yield, on_error=self._on_series_error,
            on_finish=self._on_worker_done,
        )

    def _series_gen(self, inputs):
        """Generator: yields None after each chunk of spectra, then the NoiseFitResult."""
        layer, (y0, y1, x0, x1) = inputs["layer"], inputs["roi"]
        data, n = base_data(layer), inputs["n_frames"]
        starts = range(0, n, self.chunk_frames)
        values, spec = [], None
        with progress(total=len(starts) + 1, desc="Detector noise fit") as pbar:
            for start in starts:
                if layer.ndim == 3:
                    block = data[start:start + self.chunk_frames, y0:y1, x0:x1]
                else:
                    block = data[y0:y1, x0:x1]
                spec = radial_spectrum(np.asarray(block), kind=inputs["kind"])
                values.append(spec.values)
                pbar.update(1)
                yield None
            full = RadialSpectrum(q_norm=spec.q_norm, values=np.concatenate(values),
                                  counts=spec.counts, kind=spec.kind,
                                  frame_shape=spec.frame_shape)
            pbar.set_description("Fitting the noise model")
            result = fit_spectra(full, model=inputs["model"], dose_e_per_A2=inputs["dose"],
                                 sampling_A=inputs["sampling"])
            pbar.update(1)
        yield result

    def _on_series_yield(self, item):
        if item is not None and not self._cancelled:
            self._on_series_result(item)

    def _on_series_result(self, result: NoiseFitResult):
        self.result = result
        self.frame_result = None
        self._check_quality(result)
        self._describe(result, "series")
        self._update_buttons()
        self._update_plots()

    @staticmethod
    def _on_series_error(err):
        show_error(f"Series noise fit failed: {err}")

    def _on_worker_done(self):
        self._worker = None
        self.fit_series_button.enabled = self.fit_frame_button.enabled = True
        self.cancel_button.enabled = False

    def cancel(self, _event=None):
        """Stop a running series fit; the previous result is kept."""
        if self._worker is not None:
            self._cancelled = True
            self._worker.quit()
            show_info("Noise fit cancelled; the previous result is kept.")

    @property
    def busy(self) -> bool:
        """Whether a series fit is running."""
        return self._worker is not None

    @staticmethod
    def _check_quality(result: NoiseFitResult):
        ok = np.asarray(result.ok, dtype=bool)
        r2 = np.asarray(result.r2, dtype=float)
        r2 = r2[np.isfinite(r2)]
        med = float(np.median(r2)) if r2.size else float("nan")
        if not ok.any():
            show_warning("No frame could be fitted: is the rectangle over vacuum?")
        elif not med >= VACUUM_R2 or ok.mean() < 0.5:
            show_warning(
                f"Poor fits (median R² {med:.2f}, {int(ok.sum())}/{ok.size} frames ok): "
                "the rectangle is probably not pure vacuum (or the dose is very low)."
            )

    def _describe(self, result: NoiseFitResult, what: str):
        ok = result.ok
        lines = [f"{what}: {int(ok.sum())}/{result.n_frames} fits ok "
                 f"({result.model}, {result.spectrum_kind} spectrum)"]
        if ok.any():
            lines.append(f"c0 {np.median(result.c0[ok]):.3g}, c3 {np.median(result.c3[ok]):.3g},"
                         f" C {np.median(result.floor_C[ok]):.3g}, "
                         f"R² {np.nanmedian(result.r2):.3g} (medians)")
        n0 = result.readout.n0_e_per_px
        if np.isfinite(n0):
            lines.append(f"N0 = {n0:.3g} e⁻/px (Eq. 2 R² {result.readout.r2:.3g})")
        else:
            lines.append("N0: needs dose and pixel size")
        self.status.value = "\n".join(lines)

    # -- saving ---------------------------------------------------------------------------
    def _saved_result(self) -> NoiseFitResult:
        result = self.result if self.result is not None else self.frame_result
        if result is None:
            raise LowdoseError("no noise fit to save: fit the current frame or the series first")
        return result

    def save_noise_model(self, path: str | Path) -> Path:
        """Write the fitted noise model (series fit if any, else the frame fit) as JSON."""
        result = self._saved_result()
        layer = self.layer
        name = f"fitted from {layer.name}" if layer is not None else "fitted"
        try:
            model = NoiseModel.from_fit(result, name=name)
        except ValueError as err:
            raise LowdoseError(str(err)) from err
        return Path(model.to_json(path))

    def save_table(self, path: str | Path) -> Path:
        """Write the per-frame fit table as CSV (atomically), with the model and spectrum."""
        result = self._saved_result()
        atomic_write_text(path, fit_table_csv(result))
        return Path(path)

    def _save_model_dialog(self, _event=None):
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
                show_error(f"Not saved: {err}")

    def _update_buttons(self):
        has = self.result is not None or self.frame_result is not None
        self.save_model_button.enabled = self.save_table_button.enabled = has


# -- helpers ----------------------------------------------------------------------------------
def _frame_shape(layer) -> tuple[int, int]:
    shape = base_data(layer).shape
    return int(shape[-2]), int(shape[-1])


def _square_sampling_A(layer) -> float | None:
    """Side in Å of the square pixel of the same area, or None if the layer is uncalibrated.

    The noise fit takes one sampling; with it the frame dose is N_D = dose × pixel
    height × pixel width, as ``napari-lowdose fit-noise`` computes it.
    """
    pixel = layer_pixel_size_A(layer)
    return None if pixel is None else math.sqrt(pixel_area_A2(pixel))
