"""The viewer of ``napari-lowdose demo --gui``: a finished demo folder, shown in napari.

The series, its truth mask, the denoised series (hidden) and the segmentation
that ``napari-lowdose demo`` wrote are opened as layers, and the Segment and
Area vs dose docks are filled in with that run, so the microscopist can step
through the frames, move the threshold and click the curve at once.
"""

import json
from pathlib import Path

import napari
import numpy as np

from ..errors import LowdoseError
from ..io.readers import read_series
from ..workflows.demo import DEMO_RECORD
from .segment import FILE_CHOICE, SegmentWidget

__all__ = ["populate_demo_viewer"]


def populate_demo_viewer(viewer: napari.viewer.Viewer, folder: str | Path) -> SegmentWidget:
    """Open the demo in ``folder`` in ``viewer`` and dock its Segment widget.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer to fill.
    folder : str or Path
        Output folder of ``napari-lowdose demo``.

    Returns
    -------
    SegmentWidget
        The docked widget, showing the demo's segmentation.

    Raises
    ------
    LowdoseError
        ``folder`` is not a finished demo.
    """
    folder = Path(folder)
    record_path = folder / DEMO_RECORD
    if not record_path.is_file():
        raise LowdoseError(f"{folder} is not a finished napari-lowdose demo (no {DEMO_RECORD})")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    files = record["series"]["files"]
    image = viewer.open(str(folder / files["series"]), plugin="napari-lowdose")[0]
    image.name = "simulated series"
    truth = np.asarray(read_series(folder / files["truth"]).data).astype(np.uint8)
    viewer.add_labels(
        truth,
        name="truth mask",
        scale=tuple(image.scale[-2:]),
        translate=tuple(image.translate[-2:]),
        units=tuple(image.units[-2:]),
        opacity=0.3,
        visible=False,
    )
    denoised = folder / "denoise" / "denoised.tif"
    if denoised.is_file():
        layer = viewer.open(str(denoised), plugin="napari-lowdose")[0]
        layer.name, layer.visible = "denoised", False
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment", area="right")
    widget.layer_combo.value = image
    model = record["model"]
    if model in widget.model.choices:
        widget.model.value = model
    else:
        widget.model.value = FILE_CHOICE
        widget.model_file.value = model
    widget.threshold.value = record["threshold"]
    widget.truth_combo.value = viewer.layers["truth mask"]
    probabilities = read_series(folder / "segment" / "probability.tif").data
    widget.show_probabilities(np.asarray(probabilities))
    viewer.dims.set_current_step(0, image.data.shape[0] - 1)
    return widget


def main(argv: list[str] | None = None) -> int:
    """``python -m napari_lowdose.widgets.demo FOLDER``: open a finished demo in napari.

    ``napari-lowdose demo --gui`` starts this once the demo has written its files.
    """
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m napari_lowdose.widgets.demo DEMO_FOLDER", file=sys.stderr)
        return 2
    viewer = napari.Viewer(title="napari-lowdose demo")
    try:
        populate_demo_viewer(viewer, args[0])
    except LowdoseError as err:
        print(f"napari-lowdose: error: {err}", file=sys.stderr)
        viewer.close()
        return 1
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
