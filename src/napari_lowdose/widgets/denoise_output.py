"""The output layer of the 'Denoise' dock's layer mode, and its ``"denoised"`` record.

One Image layer ``"<model> · <image>"`` per image and model (the name starts with the
model's short name), of the image's shape (float32, NaN where not denoised yet),
scale, translate, units and axis labels. ``metadata["lowdose"]`` keeps the source's
record (dose, pixel size) plus a ``"denoised"`` record: model, device, normalisation,
gain, tiling and the frames done. Frames are written in place; the layer is
refreshed by the dock only when what is shown changed (:func:`record_frame`,
:func:`sync_record`). No notifications here.
"""

from types import SimpleNamespace

import napari
import numpy as np

from ..io.layers import LOWDOSE_KEY
from ._display import display_limits
from ._layers import blank_output

__all__ = [
    "DENOISED_KEY",
    "existing_output",
    "follow_contrast",
    "output_name",
    "prepare_output",
    "record_frame",
    "same_settings",
    "settings_record",
    "sync_record",
]

#: Key of the denoising record in an output layer's ``metadata["lowdose"]``.
DENOISED_KEY = "denoised"


def output_name(layer, label: str) -> str:
    """Name of the output layer of an image layer and a model label."""
    return f"{label} · {layer.name}"


def settings_record(request) -> dict:
    """The run settings an output layer's frames were made with (gain, tiling)."""
    tiled = request.plan.tiles is not None
    return {
        "counts_per_electron": float(request.gain),
        "tile_px": request.plan.tile_px if tiled else None,
        "overlap_px": int(request.plan.overlap_px) if tiled else None,
        "dihedral_average": bool(getattr(request, "dihedral", False)),
    }


def same_settings(record: dict, request) -> bool:
    """Whether an output record's frames were made with the settings of ``request``."""
    wanted = settings_record(request)
    return all(record.get(key) == value for key, value in wanted.items())


def existing_output(viewer, request):
    """The output layer of this image and model if it can be reused, else None."""
    name = output_name(request.layer, request.label)
    if name not in viewer.layers:
        return None
    layer = viewer.layers[name]
    ok = (
        isinstance(layer, napari.layers.Image)
        and layer.data.shape == tuple(request.data.shape)
        and layer.data.dtype == np.float32
    )
    return layer if ok else None


def prepare_output(viewer, request, n_frames: int) -> SimpleNamespace:
    """Create (or reuse) the output layer of a request; the run that fills it.

    A reused layer keeps its frames unless the gain or the tiling changed (then it
    starts afresh: NaN everywhere).
    """
    from ..device import describe_device

    layer, shape = request.layer, tuple(request.data.shape)
    name = output_name(layer, request.label)
    out = existing_output(viewer, request)
    created = out is None
    if created:
        if name in viewer.layers:  # same name, other shape or kind: replace it
            viewer.layers.remove(name)
        lowdose = dict((layer.metadata or {}).get(LOWDOSE_KEY) or {})
        out = viewer.add_image(
            blank_output(shape, np.float32, np.nan),  # memory only for the frames done
            name=name,
            contrast_limits=(0.0, 1.0),
            colormap=getattr(layer.colormap, "name", "gray"),
            metadata={LOWDOSE_KEY: lowdose},
            scale=tuple(layer.scale),
            translate=tuple(layer.translate),
            units=tuple(layer.units),
            axis_labels=tuple(layer.axis_labels),
        )
    lowdose = dict(out.metadata.get(LOWDOSE_KEY) or {})
    previous = dict(lowdose.get(DENOISED_KEY) or {})
    done = set() if created else {int(i) for i in previous.get("frames_done", [])}
    if done and not same_settings(previous, request):
        # Another gain or tiling: the frames already there do not match the new ones.
        out.data[...] = np.nan
        done = set()
    record = {
        "image": layer.name,
        "model": request.label,
        "model_path": str(request.model_path),
        "device": describe_device(request.device),
        "normalisation": request.expected_text,
        "gain": request.gain_text,
        **settings_record(request),
        "tiling": request.plan.describe(),
        "frames_done": sorted(done),
        "n_frames": n_frames,
    }
    out.metadata = {**out.metadata, LOWDOSE_KEY: {**lowdose, DENOISED_KEY: record}}
    return SimpleNamespace(
        image=layer,
        layer=out,
        label=request.label,
        indices=list(request.indices),
        n_requested=len(request.indices),
        n_new=0,
        done=done,
        error=None,
        created=created,
    )


def stack(run) -> np.ndarray:
    """The output layer's data as (frames, y, x)."""
    data = run.layer.data
    return data if data.ndim == 3 else data[None]


def record_frame(run, index: int, frame: np.ndarray, *, refresh: bool = True) -> None:
    """Put one denoised frame into the output layer, in place (no copy of the layer).

    ``refresh``: redraw the layer now (the dock does so only when the frame is the one
    shown, or every :data:`~.denoise_run.REFRESH_S`); the record is written by
    :func:`sync_record`.
    """
    stack(run)[index] = frame
    run.done.add(int(index))
    run.n_new += 1
    if refresh:
        run.layer.refresh()


def sync_record(run) -> None:
    """Write the frames done into the output layer's ``"denoised"`` record."""
    lowdose = dict(run.layer.metadata.get(LOWDOSE_KEY) or {})
    record = dict(lowdose.get(DENOISED_KEY) or {}, frames_done=sorted(run.done))
    run.layer.metadata = {**run.layer.metadata, LOWDOSE_KEY: {**lowdose, DENOISED_KEY: record}}


def follow_contrast(run, frame, *, force: bool = False) -> None:
    """Contrast of the output layer from the frame shown, unless the user set their own.

    The frames of a dose series differ in counts by orders of magnitude, so
    limits taken from one frame saturate the others; they follow the frame
    shown until the user moves them.
    """
    layer = run.layer
    auto = getattr(run, "auto_limits", None)
    if not force and auto is not None and not np.allclose(layer.contrast_limits, auto):
        return
    limits, full = display_limits(frame)
    old = layer.contrast_limits_range
    layer.contrast_limits_range = (min(full[0], old[0]), max(full[1], old[1]))
    layer.contrast_limits = limits
    run.auto_limits = tuple(layer.contrast_limits)
