"""'Detector noise' dock widget: fit the noise model of Larsen et al. (2023) to a vacuum ROI.

Thin: it cuts the vacuum rectangle out of the selected image layer and calls
:mod:`napari_lowdose.noise` (spectra in chunks of frames, then one batched
fit of the whole series); it plots the spectrum and fit of the current frame
(SOI Eq. 4 / Eq. 3), c0, c3 and C against dose (paper Fig. 5) and C² against
the frame dose ``N_D`` with the Eq. 2 curve (paper Fig. 6); the plots are in
:mod:`.noise_fit_plots`, the series fit and the fit report in :mod:`.noise_fit_run`,
saving the model and the table in :mod:`.noise_fit_save`.
``N_D`` is the dose × pixel height × pixel width, as ``napari-lowdose fit-noise``
computes it.

Every fit is checked for vacuum (:func:`napari_lowdose.noise.vacuum.vacuum_check`): the
result text counts the frames that look like vacuum, one warning says when too few do,
and such a fit is not saved as a noise model. "Add vacuum rectangle" proposes the least
structured corner of the frame shown (:func:`napari_lowdose.noise.vacuum.vacuum_corner`).
The spectrum follows the model (paper → magnitude, physical → power) unless the user
chose another one for the paper model.

"Noise source: frame pairs" needs no vacuum: the registered differences of frame pairs of
one field (consecutive frames of the layer, or frame i of the layer and of a second
"pair with" layer) are fitted instead (:func:`napari_lowdose.noise.pairs.
fit_noise_from_pairs`); the frames' dose is their mean counts ÷ the gain.
"""

import math

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import LowdoseError, one_line
from ..io.layers import layer_frame_dose
from ..io.series import check_finite_frames
from ..io.units import pixel_area_A2
from ..noise.fit_result import NoiseFitResult
from ..noise.fitting import fit_spectra
from ..noise.spectrum import radial_spectrum
from ..noise.vacuum import VacuumCheck, vacuum_check, vacuum_corner
from ._common import DockContainer, rectangle_roi_px, shown_frame
from ._dose_overlay import show_frame_dose
from ._layers import (
    base_data,
    layer_counts_per_electron,
    layer_pixel_size_A,
    pick_image_layer,
)
from ._settings import DockSettings
from .noise_fit_plots import NoiseFitPlots
from .noise_fit_run import NoiseFitRun, _failed, pair_fit
from .noise_fit_save import NoiseFitSave

SOURCE_CHOICES = [("vacuum region", "vacuum"), ("frame pairs", "pairs")]
MODEL_CHOICES = [("paper (Eq. 4)", "paper"), ("physical (Eq. 3)", "physical")]
SPECTRUM_CHOICES = [("magnitude |FFT|", "magnitude"), ("power |FFT|²", "power")]
#: The spectrum each model is meant for (the physical model, Eq. 3, needs the power one).
MODEL_SPECTRUM = {"paper": "magnitude", "physical": "power"}
MIN_ROI_PX = 32
ROI_LAYER_NAME = "vacuum ROI"
SETTINGS_NAME = "Detector noise"


class NoiseFitWidget(NoiseFitRun, NoiseFitPlots, NoiseFitSave, DockContainer):
    """Fit the detector noise model to a vacuum rectangle of one frame or a whole series."""

    def __init__(self, viewer: napari.viewer.Viewer, *, use_thread: bool = True,
                 chunk_frames: int = 64):
        super().__init__()
        self._viewer = viewer
        self.use_thread = use_thread
        self.chunk_frames = max(1, int(chunk_frames))
        self._worker = None
        self._cancelled = False
        self.result: NoiseFitResult | None = None  # last series fit
        self.frame_result: NoiseFitResult | None = None  # last single-frame fit
        self._frame_result_index = 0

        self.layer_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.source = ComboBox(label="noise source", choices=SOURCE_CHOICES, value="vacuum")
        self.pair_combo = ComboBox(label="pair with", choices=self._image_layers,
                                   nullable=True, visible=False,
                                   tooltip="a second exposure of the field (frame i with "
                                           "frame i); empty: consecutive frames of the image")
        self.gain = FloatSpinBox(label="gain (counts/e⁻)", value=0.0, min=0.0, max=1e6,
                                 step=1.0, visible=False,
                                 tooltip="0: the gain the file states (else 1); the frames' "
                                         "dose is their mean counts ÷ the gain")
        self.roi_combo = ComboBox(label="vacuum ROI", choices=self._shapes_layers,
                                  nullable=True)
        self.add_roi_button = PushButton(text="Add vacuum rectangle")
        self.model = ComboBox(label="model", choices=MODEL_CHOICES, value="paper")
        self.spectrum = ComboBox(label="spectrum", choices=SPECTRUM_CHOICES, value="magnitude")
        self.fit_frame_button = PushButton(text="Fit current frame")
        self.fit_series_button = PushButton(text="Fit whole series")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(label="progress", min=0, max=1, value=0)
        self.progress_text = Label(label="", value="")
        self.status = Label(label="result", value="no fit yet")
        self.save_model_button = PushButton(text="Save noise model…", enabled=False)
        self.save_table_button = PushButton(text="Save per-frame table…", enabled=False)
        self.reset_button = PushButton(text="Reset to defaults")
        self.extend([
            self.layer_combo, self.source, self.pair_combo, self.gain, self.roi_combo,
            self.add_roi_button, self.model, self.spectrum,
            self.fit_frame_button, self.fit_series_button, self.cancel_button,
            self.progress_bar, self.progress_text, self.status,
            self.save_model_button, self.save_table_button, self.reset_button,
        ])
        self._build_plots()
        self.check: VacuumCheck | None = None  # vacuum check of the series fit
        self.frame_check: VacuumCheck | None = None  # … of the single-frame fit
        self._spectrum_chosen = False  # the user picked a spectrum other than the model's
        self._following = False

        self.add_roi_button.changed.connect(self.add_vacuum_rectangle)
        self.model.changed.connect(self._on_model_changed)
        self.source.changed.connect(self._on_source_changed)
        self.spectrum.changed.connect(self._on_spectrum_changed)
        self.reset_button.changed.connect(self.reset_settings)
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
        self.settings = DockSettings(SETTINGS_NAME, {"model": self.model,
                                                     "spectrum": self.spectrum}).connect()
        self.layer_combo.value = pick_image_layer(viewer, suits=_suits)
        self._reset_choices()
        show_frame_dose(viewer)

    # -- choices --------------------------------------------------------------------------
    def _image_layers(self, _widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Image)]

    def _shapes_layers(self, _widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Shapes)]

    def _on_source_changed(self, _value=None):
        """Frame pairs need no vacuum rectangle; they may take a second layer and a gain."""
        pairs = self.source.value == "pairs"
        self.pair_combo.visible = self.gain.visible = pairs
        self.roi_combo.visible = self.add_roi_button.visible = not pairs
        self._on_layer_changed()

    def _reset_choices(self, _event=None):
        self.layer_combo.reset_choices()
        self.pair_combo.reset_choices()
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
        self.result = self.check = None
        self.frame_result = self.frame_check = None
        # What each fit was fitted to, for the saved model's description.
        self.result_what = self.frame_what = ""
        self._update_buttons()
        self._update_plots()
        self.status.value = "no fit yet"

    def _on_model_changed(self, value=None):
        """The spectrum follows the model (paper → magnitude, physical → power) unless the
        user chose another one for the paper model; the physical model needs power."""
        physical = self.model.value == "physical"
        if physical or not self._spectrum_chosen:
            self._follow(MODEL_SPECTRUM[self.model.value])
        self.spectrum.enabled = not physical

    def _follow(self, kind: str) -> None:
        self._following = True
        try:
            self.spectrum.value = kind
        finally:
            self._following = False

    def _on_spectrum_changed(self, value=None):
        if not self._following:
            self._spectrum_chosen = self.spectrum.value != MODEL_SPECTRUM[self.model.value]

    def spectrum_note(self, model: str, kind: str) -> str:
        """``"physical model (Eq. 3), power spectrum (the model's)"`` or ``"… (chosen)"``."""
        eq = "Eq. 4" if model == "paper" else "Eq. 3"
        whose = "the model's" if MODEL_SPECTRUM[model] == kind else "chosen instead of " \
            f"the model's {MODEL_SPECTRUM[model]}"
        return f"{model} model ({eq}), {kind} spectrum ({whose})"

    def reset_settings(self, _event=None):
        """Forget the remembered model and spectrum; back to the paper model, magnitude."""
        self._spectrum_chosen = False
        self.settings.reset()
        self._on_model_changed()

    # -- ROI ------------------------------------------------------------------------------
    def add_vacuum_rectangle(self, _event=None):
        """Add a Shapes layer with a square over the most vacuum-like corner of the frame shown.

        The corner is the one of :func:`napari_lowdose.noise.vacuum.vacuum_corner`: the
        least structured (lattice, edges, thickness) of the four corner squares.
        """
        layer = self.layer
        if layer is None:
            show_error("Choose an image layer first: the rectangle takes its scale.")
            return None
        if not _suits(layer):
            show_error(f"'{layer.name}' must be one 2-D frame or a (frames, y, x) series.")
            return None
        ny, nx = _frame_shape(layer)
        if min(ny, nx) < MIN_ROI_PX:
            show_error(f"'{layer.name}' is only {ny}×{nx} px: the noise fit needs a vacuum "
                       f"rectangle of at least {MIN_ROI_PX}×{MIN_ROI_PX} px.")
            return None
        side = min(ny, nx, int(np.clip(min(ny, nx) // 4, 2 * MIN_ROI_PX, 512)))
        index = self.current_frame(layer)
        try:
            data = base_data(layer)
            frame = np.asarray(data[index] if layer.ndim == 3 else data, dtype=np.float64)
            check_finite_frames(frame, [index])
            (y0, y1, x0, x1), score = vacuum_corner(frame, side)
        except Exception as err:  # noqa: BLE001 - notify, never raise to the user
            show_error(f"No vacuum rectangle proposed: {one_line(err)}")
            return None
        rect = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)
        shapes = self._viewer.add_shapes(
            [rect], shape_type="rectangle", name=ROI_LAYER_NAME,
            scale=tuple(layer.scale[-2:]), translate=tuple(layer.translate[-2:]),
            units=tuple(layer.units[-2:]), edge_color="yellow", face_color="transparent",
            edge_width=max(1.0, side / 64),
        )
        self.roi_combo.reset_choices()
        self.roi_combo.value = shapes
        try:  # ready to be moved (a second, drawn rectangle would not be used)
            shapes.selected_data = {0}
            shapes.mode = "select"
        except (ValueError, TypeError):  # pragma: no cover - mode names differ by version
            pass
        corner = "top" if y0 == 0 else "bottom"
        corner += "-left" if x0 == 0 else "-right"
        if math.isfinite(score):
            why = (f"the least structured of frame {index} (score {score:.2g}; vacuum ≈ 1): "
                   "check that it is vacuum, or move it")
        else:
            why = (f"but no corner of frame {index} could be judged (flat, or no noise "
                   "spectrum): move it over vacuum")
        show_info(f"Added '{shapes.name}' ({side}×{side} px) over the {corner} corner, {why}.")
        return shapes

    def _roi_px(self, layer):
        """(y0, y1, x0, x1) of the vacuum rectangle, or None after show_error."""
        shapes = self.roi_combo.value
        if shapes is None:
            show_error("Choose a Shapes layer with a rectangle over vacuum "
                       "(or press 'Add vacuum rectangle').")
            return None
        problem = _not_one_rectangle(shapes)
        if problem:
            show_error(problem)
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
        if not _suits(layer):
            show_error(f"'{layer.name}' must be one 2-D frame or a (frames, y, x) series.")
            return None
        if self.source.value == "pairs":
            return self._pair_inputs(layer)
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
            "source": "vacuum", "what": f"ROI {tuple(int(v) for v in roi)}",
        }

    def _pair_inputs(self, layer):
        """What a frame-pair fit needs, or None after show_error."""
        other = self.pair_combo.value
        n_frames = layer.data.shape[0] if layer.ndim == 3 else 1
        if other is None and n_frames < 2:
            show_error(f"'{layer.name}' is one frame: frame pairs need a series, or a second "
                       "exposure of the field in 'pair with'.")
            return None
        if other is not None and (other is layer or base_data(other).shape
                                  != base_data(layer).shape):
            show_error(f"'pair with' must be another layer of the same frames as "
                       f"'{layer.name}' ({base_data(layer).shape}).")
            return None
        gain, why = layer_counts_per_electron(layer, float(self.gain.value))
        if other is None:
            index = [(i, i + 1) for i in range(0, n_frames - 1, 2)]
        else:
            index = [(i, i) for i in range(n_frames)]
        return {
            "layer": layer, "pair_layer": other, "pairs": index, "n_frames": len(index),
            "gain": gain, "gain_text": why, "sampling": _square_sampling_A(layer),
            "model": self.model.value, "source": "pairs",
            "kind": "power" if self.model.value == "physical" else self.spectrum.value,
            "what": (f"{len(index)} frame pairs of '{layer.name}'" if other is None
                     else f"{len(index)} frame pairs of '{layer.name}' and '{other.name}'"),
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
        n_frames = 1 if layer is None or layer.ndim < 3 else int(layer.data.shape[0])
        return shown_frame(self._viewer, layer, n_frames)

    def fit_current_frame(self, _event=None):
        """Fit the vacuum rectangle of the frame shown now (synchronous)."""
        inputs = self._inputs()
        if inputs is None:
            return None
        if inputs["source"] == "pairs":
            return self._fit_current_pair(inputs)
        layer, (y0, y1, x0, x1) = inputs["layer"], inputs["roi"]
        index = self.current_frame(layer)
        dose = None if inputs["dose"] is None else inputs["dose"][index:index + 1]
        try:
            data = base_data(layer)
            region = np.asarray(data[index, y0:y1, x0:x1] if layer.ndim == 3
                                else data[y0:y1, x0:x1])
            check_finite_frames(region, [index])
            spec = radial_spectrum(region, kind=inputs["kind"])
            result = fit_spectra(spec, model=inputs["model"], dose_e_per_A2=dose,
                                 sampling_A=inputs["sampling"])
            check = vacuum_check(result, spec.counts)
        except Exception as err:  # noqa: BLE001 - notify, never raise to the user
            show_error(f"{_failed(err, f'Noise fit of frame {index}')}")
            return None
        self.frame_result, self.frame_check = result, check
        self.frame_what = f"{inputs['what']}, frame {index}"
        self._frame_result_index = index
        self._report(result, check, f"frame {index}")
        return result

    def _fit_current_pair(self, inputs):
        """Fit the pair of the frame shown (it and the next, or it in both layers)."""
        index = self.current_frame(inputs["layer"])
        if inputs["pair_layer"] is None:
            start = min(index - index % 2, inputs["pairs"][-1][0])
            chosen = [(start, start + 1)]
        else:
            chosen = [(index, index)]
        try:
            result, check = pair_fit({**inputs, "pairs": chosen})
        except Exception as err:  # noqa: BLE001 - notify, never raise to the user
            show_error(f"{_failed(err, f'Noise fit of frame pair {chosen[0]}')}")
            return None
        self.frame_result, self.frame_check = result, check
        self.frame_what = f"frame pair {chosen[0]} of '{inputs['layer'].name}'"
        self._frame_result_index = 0
        self._report(result, check, f"frame pair {chosen[0]}")
        return result


# -- helpers ----------------------------------------------------------------------------------
def _suits(layer) -> bool:
    """One 2-D frame or a (frames, y, x) series, not RGB."""
    return not getattr(layer, "rgb", False) and layer.ndim in (2, 3)


def _not_one_rectangle(shapes) -> str | None:
    """Why a Shapes layer is not one axis-aligned rectangle (None when it is).

    A rotated rectangle, an ellipse or a polygon would be fitted as its bounding box,
    which holds pixels the user did not choose: it is refused instead.
    """
    n = len(shapes.data)
    if n == 0:
        return None  # rectangle_roi_px says so
    if n > 1:
        return (f"'{shapes.name}' holds {n} shapes: keep one rectangle over vacuum "
                "(delete the others) so that it is clear which one is fitted.")
    kind = shapes.shape_type[0]
    vertices = np.asarray(shapes.data[0], dtype=np.float64)[:, -2:]
    if kind != "rectangle":
        article = "an" if kind[:1] in "aeiou" else "a"
        return (f"'{shapes.name}' holds {article} {kind}, not a rectangle: the noise fit needs an "
                "axis-aligned rectangle over vacuum (draw one, or press 'Add vacuum rectangle').")
    span = np.ptp(vertices, axis=0).max()
    tol = 1e-6 * max(span, 1.0)
    for axis in (0, 1):
        values = np.sort(vertices[:, axis])
        if not (values[1] - values[0] <= tol and values[3] - values[2] <= tol):
            return (f"The rectangle in '{shapes.name}' is rotated: the noise fit needs an "
                    "axis-aligned rectangle (draw a new one without rotating it).")
    return None


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
