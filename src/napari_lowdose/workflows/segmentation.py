"""A segmentation run's files, its run record and its threshold (Larsen et al. Sec. 3: a
mask is the network's probability ≥ a threshold, 0.9 in the paper).

``napari-lowdose segment`` and the Segment dock's Export both write a run through
:func:`write_segmentation` with the record of :func:`segmentation_record`, so the files a
microscopist gets are the same whichever face made them.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.area_record import area_record
from ..errors import LowdoseError
from ..io.layers import AREA_RECORD_KEY
from ..io.outputs import write_output_folder
from ..io.tables import table_to_csv
from ..io.units import pixel_sides_A
from ..io.writers import write_series_tiff
from ..provenance import package_versions

__all__ = [
    "MAX_SAMPLING_ZOOM",
    "PAPER_THRESHOLD",
    "SEGMENT_FILES",
    "SEGMENT_FOLDER_FILES",
    "SamplingPlan",
    "SegmentError",
    "inference_zoom",
    "model_threshold",
    "resolve_threshold",
    "rose_of_run",
    "sampling_plan",
    "segmentation_record",
    "training_sampling_A",
    "with_rose",
    "write_segmentation",
]

#: The files of a segmentation run, in the order they are reported.
SEGMENT_FILES = ("masks.tif", "probability.tif", "area_vs_dose.csv", "summary.json",
                 "area_vs_dose.png", "area_vs_dose.svg")
#: Written into ``masks.tif``: the plugin's reader opens it again as a mask (Labels) layer.
MASK_TIFF_METADATA = {"layer_type": "labels"}
#: What ``segment`` writes for a series without a per-frame dose (no curve, no readouts).
SEGMENT_FILES_WITHOUT_DOSE = ("masks.tif", "probability.tif", "summary.json")
#: Every file a segmentation folder can hold (``evaluate`` and the dock add
#: ``f1_vs_dose.csv``): those a new run does not write are removed when it replaces one.
SEGMENT_FOLDER_FILES = (*SEGMENT_FILES, "f1_vs_dose.csv")
#: Why there is no curve then, as printed and recorded.
NO_DOSE_REASON = ("the area-against-dose curve and its readouts need the dose of every "
                  "frame: give --dose dose.csv, --dose-rate with --exposure-s, or "
                  "--counts-per-electron")


class SegmentError(LowdoseError):
    """Segmentation or evaluation cannot run as asked."""


def model_threshold(metadata: dict[str, Any], name: str) -> float:
    """The calibrated threshold of a model (``napari-lowdose calibrate``).

    Parameters
    ----------
    metadata : dict
        The model file's metadata.
    name : str
        The model's name or path, for the message.

    Raises
    ------
    SegmentError
        If the model has none.
    """
    value = (metadata.get("validation") or {}).get("calibrated_threshold")
    if value is None:
        raise SegmentError(f"{name} has no calibrated threshold: give --threshold T, or run "
                           f"'napari-lowdose calibrate {name} --data DATASET' first")
    return float(value)


#: The threshold of Larsen et al. (2023), used for a model that records no calibrated one
#: when no threshold is asked for.
PAPER_THRESHOLD = 0.9


def training_sampling_A(metadata: dict[str, Any]) -> float | None:
    """The pixel size a segmentation model was trained at (Å/px): the middle of its dataset
    card's sampling range (Table 1: 0.07–0.08 Å/px), None when the file does not say."""
    try:
        low, high = metadata["dataset"]["card"]["recipe"]["structure"]["sampling_range_A"]
    except (KeyError, TypeError, ValueError):
        return None
    value = 0.5 * (float(low) + float(high))
    return value if value > 0 else None


def inference_zoom(pixel_size_A: float | tuple[float, float] | None,
                   metadata: dict[str, Any]) -> float | None:
    """Factor that resamples a series' frames to the model's training pixel size.

    A network learns lattice fringes, edges and noise at the pixel scale of its training
    images; at another sampling the same particle looks different to it (on the validation
    battery, no shipped network segments anything at 0.05 Å/px as it is, and
    ``unet-au-ceo2-low`` reaches F1 ≥ 0.9 from 246 e⁻/Å² there once the frames are
    resampled to 0.075 Å/px; docs/models.md).

    Parameters
    ----------
    pixel_size_A : float or (float, float) or None
        The series' pixel size.
    metadata : dict
        The model file's metadata.

    Returns
    -------
    float or None
        ``pixel size / training pixel size`` (frames are shrunk when finer than the
        training's), or None when either is unknown.
    """
    if pixel_size_A is None:
        return None
    trained = training_sampling_A(metadata)
    if trained is None:
        return None
    side = 0.5 * sum(pixel_sides_A(pixel_size_A))
    return side / trained if side > 0 else None


#: Largest resampling factor (either way) the network is given: beyond it the frames are
#: not HR-TEM at the network's scale (e.g. 30 Å/px overviews), and resampling them would
#: only cost memory; they are segmented as they are, with a note.
MAX_SAMPLING_ZOOM = 4.0


@dataclass(frozen=True)
class SamplingPlan:
    """How a run's frames meet the network: the resampling factor and why.

    Attributes
    ----------
    zoom : float or None
        Factor the frames are resampled by before the network (None: as they are).
    note : str
        One line for the user and the run record: what was done, or why not.
    """

    zoom: float | None
    note: str


def sampling_plan(pixel_size_A: float | tuple[float, float] | None,
                  metadata: dict[str, Any], *, match: bool | None = None) -> SamplingPlan:
    """Whether and how to resample a series to the model's training pixel size.

    The one rule of ``segment`` (``--match-sampling`` / ``--no-match-sampling``) and the
    Segment dock's "match the model's sampling" box. Resampling is the default
    (:data:`napari_lowdose.models.registry.RECOMMENDED_MATCH_SAMPLING`, measured on the
    validation battery, docs/models.md).

    Parameters
    ----------
    pixel_size_A : float or (float, float) or None
        The series' pixel size.
    metadata : dict
        The model file's metadata.
    match : bool or None, optional
        True: resample, and fail when it cannot be done; False: never; None (default):
        resample when the pixel size and the model's training sampling are known and the
        factor is within :data:`MAX_SAMPLING_ZOOM`, else segment as is and say why.

    Returns
    -------
    SamplingPlan

    Raises
    ------
    SegmentError
        ``match=True`` and the frames cannot be resampled.
    """
    from ..models.registry import RECOMMENDED_MATCH_SAMPLING

    if match is False or (match is None and not RECOMMENDED_MATCH_SAMPLING):
        return SamplingPlan(None, "frames as they are (resampling off)")
    trained = training_sampling_A(metadata)
    zoom = inference_zoom(pixel_size_A, metadata)
    if zoom is None:
        why = ("the pixel size is unknown" if pixel_size_A is None
               else "the model does not record its training sampling")
        if match:
            raise SegmentError(f"matching the model's sampling needs the pixel size and a "
                               f"model that records its training sampling: {why}")
        return SamplingPlan(None, f"frames as they are: {why}")
    side = zoom * float(trained)
    if not 1.0 / MAX_SAMPLING_ZOOM <= zoom <= MAX_SAMPLING_ZOOM:
        why = (f"{side:.3g} Å/px is {max(zoom, 1 / zoom):.3g}× the model's training "
               f"{trained:.3g} Å/px (beyond {MAX_SAMPLING_ZOOM:g}×)")
        if match:
            raise SegmentError(f"cannot match the model's sampling: {why}")
        return SamplingPlan(None, f"frames as they are: {why}")
    if math.isclose(zoom, 1.0, rel_tol=1e-3):
        return SamplingPlan(None, f"frames as they are: {side:.3g} Å/px is the model's "
                                  "training sampling")
    return SamplingPlan(zoom, f"resampled ×{zoom:.3g} from {side:.3g} to the model's "
                              f"training {trained:.3g} Å/px")


def resolve_threshold(requested: float | str | None, metadata: dict[str, Any],
                      name: str) -> float:
    """The probability threshold of a run: a number, ``"model"``, or None for the default.

    The default is the recommended threshold (:data:`~napari_lowdose.models.registry.
    RECOMMENDED_THRESHOLD`: the model's calibrated one), or :data:`PAPER_THRESHOLD` for a
    model that records none.

    Raises
    ------
    SegmentError
        ``"model"`` was asked for and the model has no calibrated threshold.
    """
    if requested is None:
        calibrated = (metadata.get("validation") or {}).get("calibrated_threshold")
        return PAPER_THRESHOLD if calibrated is None else float(calibrated)
    if requested == "model":
        return model_threshold(metadata, name)
    return float(requested)


def rose_of_run(frames: Any, analysis: Any,
                pixel_size_A: tuple[float, float] | None) -> dict[str, Any] | None:
    """The particles' contrast and Rose doses for a segmented series (None without a
    consensus readout): the mean of the consensus frames, each moved onto the highest-dose
    frame by the drift of the readout, against the consensus mask as a whole and against
    each of its particles (:func:`napari_lowdose.analysis.rose.rose_readouts`).

    The one rule of ``napari-lowdose segment`` and the Segment dock.

    Parameters
    ----------
    frames : array, shape (n, y, x)
        The series' frames (read lazily: only the consensus frames are used); the
        analysis's frame ``i`` is ``frames[analysis.frame[i]]``.
    analysis : AreaAnalysis
        Its analysis, with the consensus readout.
    pixel_size_A : (float, float) or None
        The pixel size.

    Returns
    -------
    dict or None
        The whole-field readout with a ``particles`` list.
    """
    import numpy as np
    from scipy import ndimage

    from ..analysis.rose import rose_readouts

    consensus = getattr(analysis, "consensus", None)
    if consensus is None or not consensus.available or consensus.consensus is None:
        return None
    shifts = consensus.shifts_px
    top = int(np.argmax(analysis.dose_e_per_A2))
    images = []
    for i in consensus.reference_frames:
        image = np.asarray(frames[int(analysis.frame[i])], dtype=np.float64)
        if shifts.size and np.any(shifts[top] != shifts[i]):
            image = ndimage.shift(image, shifts[top] - shifts[i], order=1, mode="nearest")
        images.append(image)
    return rose_readouts(np.mean(images, axis=0), consensus.consensus, pixel_size_A)


def with_rose(frames: Any, analysis: Any, pixel_size_A: tuple[float, float] | None) -> Any:
    """The analysis with its Rose readout (:func:`rose_of_run`) in ``analysis.rose``: in
    its summary, its record and each particle's analysis."""
    from dataclasses import replace

    return replace(analysis, rose=rose_of_run(frames, analysis, pixel_size_A))


def segmentation_record(*, input_name: str, file_format: str,
                        pixel_size_A: tuple[float, float] | None, pixel_size_source: str,
                        dose_source: str, dose_detail: str, model_name: str,
                        model_path: Path, model_metadata: dict[str, Any],
                        threshold: float, cleaning: Any = None, device: str,
                        sampling: SamplingPlan | None = None) -> dict[str, Any]:
    """What a segmentation was made with: input, model, threshold, clean-up, device, versions.

    Parameters
    ----------
    input_name : str
        The input file (resolved path) or a description of a napari layer.
    file_format, pixel_size_source, dose_source, dose_detail : str
        As the series states them.
    pixel_size_A : (float, float) or None
        (y, x) pixel size in Å.
    model_name : str
        The model as the user named it (a shipped name or a path).
    model_path : Path
        The model file.
    model_metadata : dict
        The model file's metadata.
    threshold : float
        The probability threshold used.
    cleaning : MaskCleaning, optional
        The clean-up rules used after the threshold.
    device : str
        The device described (:func:`napari_lowdose.device.describe_device`).
    sampling : SamplingPlan, optional
        How the frames met the network (:func:`sampling_plan`); None: as they are.

    Returns
    -------
    dict
        The ``run`` block of ``summary.json``.
    """
    sampling = sampling or SamplingPlan(None, "frames as they are")
    return {
        "input": input_name,
        "format": file_format,
        "pixel_size_A": None if pixel_size_A is None else list(pixel_size_A),
        "pixel_size_source": pixel_size_source,
        "dose": {"source": dose_source, "detail": dose_detail},
        "model": {"name": model_name, "file": str(Path(model_path).resolve()),
                  "metadata": model_metadata},
        "threshold": threshold,
        "mask_cleaning": None if cleaning is None else cleaning.to_dict(),
        "inference_zoom": sampling.zoom,
        "sampling": sampling.note,
        "device": device,
        "versions": package_versions(),
    }


def write_segmentation(out: Path, *, pixel_size_A: tuple[float, float] | None,
                       probabilities: Any, masks: Any, analysis: Any, summary: dict,
                       label: str, overwrite: bool, f1: Any = None,
                       extra_files: dict[str, Callable[[Path], Any]] | None = None
                       ) -> list[Path]:
    """Write the outputs of a segmentation run together (see :data:`SEGMENT_FILES`).

    Everything is written at once (:func:`napari_lowdose.io.outputs.write_output_folder`):
    an error leaves no partial folder, and an existing folder needs ``overwrite``.

    Parameters
    ----------
    out : Path
        The output folder.
    pixel_size_A : (float, float) or None
        (y, x) pixel size in Å of the series, written into the TIFFs.
    probabilities, masks : array-like
        (frames, y, x) probabilities and masks.
    analysis : AreaAnalysis or None
        The area-against-dose analysis of the masks; None for a series without a dose
        (then only ``masks.tif``, ``probability.tif`` and ``summary.json`` are written).
    summary : dict
        Written as ``summary.json``.
    label : str
        The curve's label in the plot.
    overwrite : bool
        Replace files in an existing folder.
    f1 : array-like, optional
        F1 of each analysed frame against a truth mask, kept in the masks' record.
    extra_files : dict, optional
        Name → writer of that path (e.g. ``f1_vs_dose.csv`` from the dock), written in the
        same all-or-nothing step.

    Returns
    -------
    list of Path
        The files written.
    """
    from ..plots.area import area_vs_dose_figure

    # The TIFF stores one (isotropic) pixel size: the mean of the two sides.
    pixel = None if pixel_size_A is None else float(sum(pixel_size_A) / 2)
    if analysis is None:  # no dose: the masks, probabilities and the record only
        return write_output_folder(out, {
            "masks.tif": lambda p: write_series_tiff(p, masks, pixel,
                                                     extra_metadata=MASK_TIFF_METADATA),
            "probability.tif": lambda p: write_series_tiff(p, probabilities, pixel),
            "summary.json": lambda p: p.write_text(json.dumps(summary, indent=2,
                                                              default=str)),
            **(extra_files or {}),
        }, overwrite=overwrite, stale=SEGMENT_FOLDER_FILES)
    doses = analysis.dose_e_per_A2
    figure = area_vs_dose_figure({label: analysis})
    # The run's curve travels with its masks: reopened, they plot again (Area-vs-dose dock).
    mask_metadata = {**MASK_TIFF_METADATA,
                     AREA_RECORD_KEY: area_record(analysis, label=label, f1=f1)}
    return write_output_folder(out, {
        "masks.tif": lambda p: write_series_tiff(p, masks, pixel, dose_e_per_A2=doses,
                                                 extra_metadata=mask_metadata),
        "probability.tif": lambda p: write_series_tiff(p, probabilities, pixel,
                                                       dose_e_per_A2=doses),
        "area_vs_dose.csv": lambda p: p.write_text(table_to_csv(analysis.export_table())),
        "summary.json": lambda p: p.write_text(json.dumps(summary, indent=2, default=str)),
        "area_vs_dose.png": lambda p: figure.savefig(p, format="png", dpi=110),
        "area_vs_dose.svg": lambda p: figure.savefig(p, format="svg"),
        **(extra_files or {}),
    }, overwrite=overwrite, stale=SEGMENT_FOLDER_FILES)
