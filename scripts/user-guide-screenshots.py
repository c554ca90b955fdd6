"""Retake the user guide's screenshots: napari at a given screen size, docks as they open.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/user-guide-screenshots.py \
        --demo demo_out --out docs/images

``--demo`` is a finished ``napari-lowdose demo`` folder (``bash scripts/demo.sh`` makes
``demo_out``). Every screenshot is the whole window (canvas and docks) at ``--size``.
Nothing here is part of the package: it only drives the docks as a user would.
"""

import argparse
import tempfile
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_lowdose._sample_data import synthetic_dose_series
from napari_lowdose.widgets.demo import populate_demo_viewer
from napari_lowdose.widgets.denoise import DenoiseWidget
from napari_lowdose.widgets.dose_calibration import DoseCalibrationWidget
from napari_lowdose.widgets.noise_fit import NoiseFitWidget
from napari_lowdose.widgets.simulate import SimulateWidget
from napari_lowdose.widgets.train import TrainWidget


def _viewer(size: tuple[int, int]) -> napari.Viewer:
    viewer = napari.Viewer(title="napari-lowdose")
    viewer.window._qt_window.resize(*size)
    _settle()
    return viewer


def _settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


def _shot(viewer: napari.Viewer, path: Path) -> None:
    _settle()
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def _open_synthetic(viewer: napari.Viewer):
    for data, kwargs, kind in synthetic_dose_series():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer.layers[0]


def demo_and_segment(demo: Path, out: Path, size) -> None:
    viewer = _viewer(size)
    widget = populate_demo_viewer(viewer, demo)
    viewer.dims.set_current_step(0, 15)
    _shot(viewer, out / "demo_gui.png")
    widget.keep_largest.value = True
    widget.fill_holes.value = True
    _shot(viewer, out / "segment_widget.png")
    viewer.close()


def denoise(demo: Path, out: Path, size) -> None:
    viewer = _viewer(size)
    image = viewer.open(str(demo / "series.tif"), plugin="napari-lowdose")[0]
    widget = DenoiseWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget, name="Denoise", area="right")
    widget.layer_combo.value = image
    viewer.dims.set_current_step(0, 25)
    widget.run()
    viewer.grid.enabled = True
    viewer.reset_view()
    _shot(viewer, out / "denoise_widget.png")
    viewer.close()


def dose_and_noise(out: Path, size) -> None:
    viewer = _viewer(size)
    _open_synthetic(viewer)
    dose = DoseCalibrationWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(dose, name="Dose calibration", area="right")
    viewer.dims.set_current_step(0, 30)
    _shot(viewer, out / "dose_calibration.png")
    viewer.window.remove_dock_widget(dose.native)
    noise = NoiseFitWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(noise, name="Detector noise", area="right")
    noise.add_vacuum_rectangle()
    noise.fit_series()
    _shot(viewer, out / "detector_noise.png")
    viewer.close()


def simulate_and_train(out: Path, size) -> None:
    viewer = _viewer(size)
    simulate = SimulateWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(simulate, name="Simulate", area="right")
    simulate.run_preview()
    _shot(viewer, out / "simulate_widget.png")
    viewer.close()

    from napari_lowdose.simulate.dataset import generate_dataset
    from napari_lowdose.simulate.recipe import DatasetRecipe
    from napari_lowdose.simulate.structures import StructureRecipe

    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "tiny"
        recipe = DatasetRecipe(
            structure=StructureRecipe(size_px=64, sampling_range_A=(0.25, 0.25),
                                      diameter_range_A=(9.0, 12.0),
                                      support_thickness_range_A=(6.0, 8.0), margin_A=3.0),
            dose_range_e_per_A2=(1e3, 1e5),
            n_structures=6, image_epochs=2, seed=7, val_fraction=0.34)
        generate_dataset(data, recipe, workers=1)
        viewer = _viewer(size)
        train = TrainWidget(viewer, use_thread=False)
        viewer.window.add_dock_widget(train, name="Train", area="right")
        train.data_dir.value = data
        train.arch.value = "unet"
        train.unet_channels.value, train.unet_levels.value = 8, 2
        train.epochs.value, train.crop.value = 12, 64
        train.select_calibrated.value = True
        train.train()
        _shot(viewer, out / "train_widget.png")
        viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("demo_out"))
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--size", default="1920x1080", help="window size WxH (px)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="demo, denoise, dose, simulate (default: all)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    steps = {"demo": lambda: demo_and_segment(args.demo, args.out, size),
             "denoise": lambda: denoise(args.demo, args.out, size),
             "dose": lambda: dose_and_noise(args.out, size),
             "simulate": lambda: simulate_and_train(args.out, size)}
    for name in args.only or steps:
        steps[name]()


if __name__ == "__main__":
    main()
