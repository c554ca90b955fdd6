"""The training data of the 'Train denoiser' dock: its sources, checked and read.

As ``--source`` of ``napari-lowdose train-denoiser``: real short/long exposure pairs
of two layers of the viewer
(:class:`~napari_lowdose.train.denoise_measured.PairedExposures`), a 'Simulate'
dataset folder (its datasets built by the command's own code) or a dose series of
the viewer (Noise2Noise), or the user's own field: the layers selected in the layer
list (a dose series, or two or more exposures of the same field), fine-tuned from the
shipped denoiser with a strip held out and judged by the unbiased-MSE quality readout
(:func:`~napari_lowdose.train.denoise_own.field_datasets`). Per-frame dose comes
from a layer's metadata and its pixel size from its scale; the detector gain is the one
set in the dock, else the one the layer's file states, else 1. The frames are read and
checked in the worker: a frame with NaN or inf pixels is refused, named.
"""

from pathlib import Path

import numpy as np

from ..io.series import BadPixelsError, check_finite_frames
from ..workflows.denoiser_training import DENOISER_TRAINING_DEFAULTS as DEFAULTS
from ..workflows.denoiser_training import (
    phantom_datasets,
    simulated_datasets,
    validation_crop_px,
)
from ._common import is_empty_path
from ._layers import base_data, layer_counts_per_electron, layer_expected_e_per_px

__all__ = [
    "OWN",
    "PAIRS",
    "PHANTOMS",
    "SERIES",
    "SIMULATED",
    "SOURCE_CHOICES",
    "TrainingData",
    "is_series",
    "layer_file",
]

PAIRS, SIMULATED, SERIES, OWN = "pairs", "simulated", "series", "own"
PHANTOMS = "phantoms"
SOURCE_CHOICES = [
    ("short/long exposure pairs", PAIRS),
    ("simulated dataset", SIMULATED),
    ("dose series (Noise2Noise)", SERIES),
    ("your own field: the selected layers (fine-tune)", OWN),
    ("phantoms (+ dataset if chosen)", PHANTOMS),
]


class TrainingData:
    """Mixin of :class:`~.train_denoiser.TrainDenoiserWidget`: the source and its datasets.

    Uses the dock's ``source``, ``crop``, ``gain``, ``data_dir``, ``e_per_px_range``,
    ``max_val_images``, ``layer_combo``, ``short_combo`` and ``long_combo``.
    """

    def _source_spec(self) -> dict:
        """The chosen source's inputs, checked without reading frames (raises ValueError)."""
        spec = {"source": self.source.value, "crop": int(self.crop.value),
                "gain": float(self.gain.value)}
        if spec["source"] == SIMULATED:
            path = self.data_dir.value
            if is_empty_path(path) or not Path(path).is_dir():
                raise ValueError("Choose a dataset folder made by 'Simulate'.")
            spec.update(path=Path(path), e_per_px_range=_range_of(self.e_per_px_range.value))
        elif spec["source"] == PHANTOMS:
            # As --source phantoms: a dataset folder, if chosen, is mixed in.
            path = self.data_dir.value
            spec["path"] = None if is_empty_path(path) or not Path(path).is_dir() else Path(path)
            spec["e_per_px_range"] = _range_of(self.e_per_px_range.value)
        elif spec["source"] == PAIRS:
            spec["short"], spec["long"] = self._pair_layers()[:2]
        elif spec["source"] == OWN:
            spec["layers"] = self._own_layers()
            spec["val_fraction"] = float(self.val_fraction.value)
        else:
            layer = self.layer_combo.value
            if layer is None:
                raise ValueError("Choose an image layer holding a dose series.")
            shape = base_data(layer).shape
            if len(shape) != 3 or shape[0] < 2:
                raise ValueError(
                    f"{layer.name}: Noise2Noise needs a series of at least 2 frames.")
            spec["layer"] = layer
        return spec

    def _datasets(self, spec: dict):
        """(train, val, notes) of a source (reads the frames; raises LowdoseError, ValueError)."""
        notes: list[str] = []
        crop = spec["crop"]
        if spec["source"] == SIMULATED:
            train, val = simulated_datasets(
                spec["path"], crop_px=crop, val_crop_px=validation_crop_px(crop, None),
                seed=DEFAULTS.seed, dose_range_e_per_A2=None,
                e_per_px_range=spec["e_per_px_range"],
                images_per_wave=DEFAULTS.images_per_wave, clean_cache=DEFAULTS.clean_cache,
                max_waves=None, notes=notes)
            return train, val, notes
        if spec["source"] == PHANTOMS:
            train, val = phantom_datasets(
                n_phantoms=DEFAULTS.phantoms, crop_px=crop,
                val_crop_px=validation_crop_px(crop, None), seed=DEFAULTS.seed,
                e_per_px_range=spec["e_per_px_range"], max_val_images=self.max_val_images,
                data=spec["path"], images_per_wave=DEFAULTS.images_per_wave,
                clean_cache=DEFAULTS.clean_cache, notes=notes)
            return train, val, notes
        if spec["source"] == PAIRS:
            return (*self._pair_datasets(spec, notes), notes)
        if spec["source"] == OWN:
            return (*self._own_datasets(spec, notes), notes)
        from ..train.denoise_measured import series_datasets

        layer = spec["layer"]
        data = _read_frames(layer)
        # the 'Denoise' widget's per-frame e⁻/px (dose × pixel size², or None: frame means)
        e_per_px, text = layer_expected_e_per_px(layer, data.shape[0])
        gain, gain_text = layer_counts_per_electron(layer, spec["gain"])
        notes.extend([text, f"gain: {gain_text}"])
        train, val = series_datasets(
            data, crop_px=crop, val_crop_px=validation_crop_px(crop, None), notes=notes,
            expected_e_per_px=e_per_px,
            counts_per_electron=gain, max_frame_gap=DEFAULTS.max_frame_gap,
            seed=DEFAULTS.seed)
        return train, val, notes

    def _own_layers(self) -> list:
        """The selected image layers: one series or 2+ exposures (raises ValueError)."""
        layers = [layer for layer in self._viewer.layers.selection
                  if layer in self._image_layers()]
        layers.sort(key=lambda layer: list(self._viewer.layers).index(layer))
        n = sum(1 if base_data(layer).ndim == 2 else int(base_data(layer).shape[0])
                for layer in layers)
        if n < 2:
            raise ValueError("Select, in the layer list, a dose series or two or more "
                             "exposures of the same field.")
        sizes = {tuple(base_data(layer).shape[-2:]) for layer in layers}
        if len(sizes) > 1:
            raise ValueError("The selected layers differ in frame size; they must be "
                             "exposures of the same field.")
        return layers

    def _own_datasets(self, spec: dict, notes: list[str]):
        """The selected exposures stacked, a bottom strip held out (the command's rule)."""
        from ..train.denoise_own import field_datasets, stack_exposures

        stacks, doses = [], []
        for layer in spec["layers"]:
            data = _read_frames(layer)
            n = 1 if data.ndim == 2 else int(data.shape[0])
            e_per_px, text = layer_expected_e_per_px(layer, n)
            stacks.append(data)
            doses.append(e_per_px)
            notes.append(f"{layer.name}: {text}")
        gain, gain_text = layer_counts_per_electron(spec["layers"][0], spec["gain"])
        notes.append(f"gain: {gain_text}")
        stack, e_per_px = stack_exposures(stacks, doses)
        train, val = field_datasets(
            stack, crop_px=spec["crop"], val_fraction=spec["val_fraction"],
            expected_e_per_px=e_per_px, counts_per_electron=gain,
            phantom_share=DEFAULTS.own_phantom_share,
            max_frame_gap=DEFAULTS.max_frame_gap, seed=DEFAULTS.seed)
        notes.append(f"{stack.shape[0]} exposures of the field; rows {val.box[0]}…"
                     f"{val.box[1] - 1} held out for validation")
        return train, val

    def _pair_layers(self):
        """(short layer, long layer, short frames, long frames), checked (raises ValueError)."""
        short, long = self.short_combo.value, self.long_combo.value
        if short is None or long is None:
            raise ValueError("Choose the image layers of the short and of the long exposures.")
        if short is long:
            raise ValueError("The short and the long exposures must be two different layers.")
        frames = []
        for layer in (short, long):
            data = base_data(layer)
            if data.ndim not in (2, 3):
                raise ValueError(f"'{layer.name}' must be one 2-D frame or a (frames, y, x) "
                                 "series.")
            frames.append(data)
        n_short, n_long = (1 if d.ndim == 2 else int(d.shape[0]) for d in frames)
        if n_long not in (1, n_short):
            raise ValueError(
                f"'{short.name}' has {n_short} short exposure(s) but '{long.name}' has "
                f"{n_long} long one(s): give one long exposure per short one, or a single "
                "long exposure.")
        return short, long, *frames

    def _pair_datasets(self, spec: dict, notes: list[str]):
        """Training and validation :class:`PairedExposures`, split as the command does."""
        from ..train.denoise_measured import pair_datasets

        crop = spec["crop"]
        short, long = spec["short"], spec["long"]
        short_data, long_data = _read_frames(short), _read_frames(long)
        n = 1 if short_data.ndim == 2 else int(short_data.shape[0])
        n_long = 1 if long_data.ndim == 2 else int(long_data.shape[0])
        short_e, short_text = layer_expected_e_per_px(short, n)
        long_e, long_text = layer_expected_e_per_px(long, n_long)
        # the gain of the short exposures' file, as the command takes it (--short's)
        gain, gain_text = layer_counts_per_electron(short, spec["gain"])
        notes.extend([f"short exposures: {short_text}", f"long exposures: {long_text}",
                      f"gain: {gain_text}"])
        return pair_datasets(
            short_data, long_data,
            crop_px=crop, val_crop_px=validation_crop_px(crop, None), notes=notes,
            short_e_per_px=short_e, long_e_per_px=long_e, counts_per_electron=gain,
            seed=DEFAULTS.seed)


def _range_of(text: str) -> tuple[float, float]:
    """``LO,HI`` e⁻/px, checked (raises ValueError)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo = hi = float("nan")
    if not 0 < lo <= hi:
        raise ValueError("The e⁻/px range must be LO,HI with 0 < LO ≤ HI.")
    return lo, hi


def is_series(layer) -> bool:
    """Whether a layer can be a Noise2Noise series: (frames, y, x), not RGB."""
    return not getattr(layer, "rgb", False) and len(base_data(layer).shape) == 3


def layer_file(layer) -> Path | None:
    """The file a layer was read from, if it says."""
    path = getattr(getattr(layer, "source", None), "path", None)
    path = path or ((layer.metadata or {}).get("lowdose") or {}).get("path")
    return Path(path) if path else None


def _read_frames(layer) -> np.ndarray:
    """A layer's frames as float32, refused (named) when a frame holds NaN or inf pixels."""
    data = np.asarray(base_data(layer), dtype=np.float32)
    try:
        check_finite_frames(data)
    except BadPixelsError as err:
        raise BadPixelsError(f"'{layer.name}': {err}") from None
    return data
