"""What the 'Segment' dock makes of a run: its two output layers, the features row
of the mask layer and the command's files.

No notifications here: :mod:`.segment` reports what these raise.
"""

from pathlib import Path

import napari
import numpy as np

from ..analysis.area_record import summary_features
from ..io.layers import LOWDOSE_KEY, layer_frame_dose
from ..io.tables import table_to_csv
from ..workflows.segmentation import segmentation_record, write_segmentation
from ._layers import blank_output, layer_pixel_size_A

__all__ = ["done_frames", "output_layer_names", "output_layers", "run_key",
           "short_model_name", "summary_features", "write_run"]

#: The sample the shipped models were trained on: left out of their short names.
_SHIPPED_SAMPLE = "-au-ceo2"


def done_frames(probabilities3) -> np.ndarray:
    """Indices of the frames whose probabilities have been computed (not NaN).

    A frame-chunked array (:func:`napari_lowdose.io.outputs.frames_array`) is read one frame
    at a time, never whole.
    """
    if isinstance(probabilities3, np.ndarray):
        flat = probabilities3.reshape(probabilities3.shape[0], -1)
        return np.flatnonzero(np.isfinite(flat).all(axis=1))
    return np.flatnonzero([bool(np.isfinite(probabilities3[i]).all())
                           for i in range(probabilities3.shape[0])])


def short_model_name(label: str, arch: str | None = None, *, shipped: bool = False) -> str:
    """The model's name as the output layers start with it.

    A shipped model loses the sample it was trained on (``unet-au-ceo2-low`` →
    ``unet-low``); a model file keeps its name, followed by its architecture when
    the name does not say it (``tiny`` → ``tiny (msdnet)``).
    """
    if shipped:
        return label.replace(_SHIPPED_SAMPLE, "")
    if arch and arch.lower() not in label.lower():
        return f"{label} ({arch})"
    return label


def output_layer_names(image_name: str, short_name: str) -> tuple[str, str]:
    """``("<model> probability · <image>", "<model> mask · <image>")``."""
    return (f"{short_name} probability · {image_name}", f"{short_name} mask · {image_name}")


def run_key(request) -> str:
    """What makes a run's frames belong together: the model file (path, size, time of
    change: a file retrained in place is another model) and the resampling.

    Output layers are reused (frames added to those of earlier runs) only for the same
    key; otherwise they are made anew, so that no frame of another model or resampling
    is kept beside the new ones and exported as theirs.
    """
    path = Path(request.model_path)
    try:
        stat = path.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        stamp = "?"
    zoom = getattr(request.sampling, "zoom", None)
    return f"{path.resolve()}|{stamp}|zoom={zoom}"


def output_layers(viewer, request):
    """(probability layer, mask layer, created) of a request's image and model.

    ``"<model> probability · <image>"`` (Image, NaN where not computed) and
    ``"<model> mask · <image>"`` (Labels, 0 where not computed; see
    :func:`output_layer_names`: the model's short name first, so that two runs are told
    apart in the layer list), with the image's scale, translate, units and axis labels.
    Layers of those names, of the image's shape and of the same :func:`run_key` are
    reused (created False); others of those names are replaced.
    """
    layer, shape = request.layer, tuple(request.data.shape)
    names = output_layer_names(layer.name, request.short_name)
    existing = [viewer.layers[n] if n in viewer.layers else None for n in names]
    key = run_key(request)
    reuse = (
        isinstance(existing[0], napari.layers.Image)
        and isinstance(existing[1], napari.layers.Labels)
        and existing[0].data.shape == shape
        and existing[1].data.shape == shape
        and all((old.metadata.get(LOWDOSE_KEY) or {}).get("run_key") == key
                for old in existing)
    )
    if reuse:
        return existing[0], existing[1], False
    record = {
        "segment_output": True,
        "image": layer.name,
        "label": request.label,
        "model": str(request.model_path),
        "run_key": key,
    }
    common = {
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "units": tuple(layer.units),
        "axis_labels": tuple(layer.axis_labels),
    }
    for old in existing:
        if old is not None:
            viewer.layers.remove(old)
    # A few frames of a long series: the frames not segmented take no memory.
    prob_layer = viewer.add_image(
        blank_output(shape, np.float32, np.nan),
        name=names[0],
        colormap="magma",
        contrast_limits=(0.0, 1.0),
        opacity=0.5,
        blending="additive",
        metadata={LOWDOSE_KEY: dict(record, kind="probability")},
        **common,
    )
    mask_layer = viewer.add_labels(
        blank_output(shape, np.uint8, 0),
        name=names[1],
        opacity=0.4,
        metadata={LOWDOSE_KEY: dict(record, kind="mask")},
        **common,
    )
    return prob_layer, mask_layer, True


def write_run(folder, run, views, *, threshold: float, cleaning, model_name: str,
              overwrite: bool):
    """Write the ``segment`` command's files of the frames done (and f1_vs_dose.csv).

    Parameters
    ----------
    run : SimpleNamespace
        The dock's run: image, model, device, frames done, analysis and F1.
    views : (ndarray, ndarray)
        (probabilities, masks) as (frames, y, x).

    Returns
    -------
    (list of Path, dict)
        The files written and the extra files (name → writer) beyond the command's.
    """
    from ..device import describe_device

    prob, mask = views
    done, analysis = run.done, run.analysis
    source = getattr(run.image.source, "path", None)
    lowdose = run.image.metadata.get(LOWDOSE_KEY, {})
    dose = layer_frame_dose(run.image.metadata)
    record = segmentation_record(
        input_name=(str(Path(source or lowdose["path"]).resolve())
                    if (source or lowdose.get("path"))
                    else f"napari layer '{run.image.name}'"),
        file_format=lowdose.get("format", "napari layer"),
        pixel_size_A=layer_pixel_size_A(run.image),
        pixel_size_source=lowdose.get("pixel_size_source", "napari layer scale"),
        dose_source=dose.source, dose_detail=dose.detail,
        model_name=model_name,
        model_path=run.model_path, model_metadata=run.metadata,
        threshold=threshold, cleaning=cleaning,
        device=describe_device(run.device),
        sampling=run.sampling,
    )
    record["frames"] = [int(f) for f in done]
    summary = {**analysis.summary(), "run": record}
    extra = {}
    if run.f1 is not None:
        f1_table = {"frame": done, "dose_e_per_A2": analysis.dose_e_per_A2, "f1": run.f1}
        extra["f1_vs_dose.csv"] = lambda p: p.write_text(table_to_csv(f1_table))
        summary["median_f1"] = float(np.nanmedian(run.f1))
    written = write_segmentation(
        folder,
        pixel_size_A=layer_pixel_size_A(run.image),
        probabilities=np.asarray(prob[done]),
        masks=np.asarray(mask[done]),
        analysis=analysis,
        summary=summary,
        label=run.label,
        f1=run.f1,
        overwrite=overwrite,
        extra_files=extra,
    )
    return written, extra
