"""``napari-lowdose demo`` (the README's main job) and its napari viewer."""

import json

import numpy as np
import pytest

from napari_lowdose.cli import main
from napari_lowdose.io.readers import read_series

DEMO_OPTIONS = ["--frames", "5", "--size", "224", "--device", "cpu"]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--out", str(out), *DEMO_OPTIONS]) == 0
    return out


def test_demo_writes_series_noise_fit_segmentation_and_record(demo_folder):
    out = demo_folder
    for name in ("series.tif", "truth_mask.tif", "dose.csv", "demo.json",
                 "noise_fit/noise_model.json", "segment/masks.tif", "segment/probability.tif",
                 "segment/area_vs_dose.csv", "segment/summary.json", "segment/f1_vs_dose.csv",
                 "denoise/denoised.tif", "denoise/denoise.json"):
        assert (out / name).is_file(), name
    series = read_series(out / "series.tif")
    assert series.data.shape == (5, 224, 224)
    assert series.pixel_size_A == pytest.approx((0.075, 0.075), rel=1e-4)
    assert series.frame_dose.dose_e_per_A2[0] == pytest.approx(10.0)
    assert series.frame_dose.dose_e_per_A2[-1] == pytest.approx(1e4)
    record = json.loads((out / "demo.json").read_text())
    summary = json.loads((out / "segment" / "summary.json").read_text())
    for key in ("visibility_dose_e_per_A2", "convergence_dose_e_per_A2",
                "paper_dose_at_50pct_e_per_A2", "paper_convergence_dose_e_per_A2"):
        assert record["segmentation"][key] == summary[key]  # the consensus and paper readouts
    assert {"f1_at_least_half_from_e_per_A2", "f1_at_least_0.9_from_e_per_A2"} <= set(
        record["f1"])  # against the truth, printed next to them
    # by default the model's calibrated threshold (segment --threshold model)
    from napari_lowdose.models.registry import RECOMMENDED_MODEL, load_model

    calibrated = load_model(RECOMMENDED_MODEL)[1]["validation"]["calibrated_threshold"]
    assert record["model"] == RECOMMENDED_MODEL and record["threshold"] == calibrated
    assert summary["run"]["threshold"] == calibrated
    # The vacuum corner holds no particle and the fit gives back the detector's MTF.
    y0, y1, x0, x1 = record["noise_fit"]["roi_px"]
    truth_mask = np.asarray(read_series(out / "truth_mask.tif").data)
    assert truth_mask.sum() > 1000  # a particle to score (a 192 px field held 2 px of one)
    assert not truth_mask[y0:y1, x0:x1].any()
    fitted = json.loads((out / "noise_fit" / "noise_model.json").read_text())
    c0_truth = record["noise_fit"]["truth"]["c0"]
    assert np.median(fitted["c0_range"]) == pytest.approx(c0_truth, rel=0.15)
    # The shipped denoiser brings the frame nearest 5 e⁻/px closer to the noise-free one.
    denoising = record["denoising"]
    assert denoising["denoised_psnr_dB"] > denoising["raw_psnr_dB"]
    assert read_series(out / "denoise" / "denoised.tif").data.shape == (5, 224, 224)


def test_demo_prints_a_summary_and_replaces_its_own_folder(demo_folder, capsys):
    before = (demo_folder / "demo.json").stat().st_mtime_ns
    assert main(["demo", "--out", str(demo_folder), *DEMO_OPTIONS]) == 0
    printed = capsys.readouterr().out
    for text in ("visible:", "converged:", "50 % segmentation at", "converged area:", "truth",
                 "$ napari-lowdose fit-noise", "$ napari-lowdose segment",
                 "$ napari-lowdose denoise", "dB denoised"):
        assert text in printed
    assert (demo_folder / "demo.json").stat().st_mtime_ns != before


def test_demo_refuses_a_folder_of_other_files(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["demo", "--out", str(tmp_path), *DEMO_OPTIONS]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a napari-lowdose demo" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    assert main(["demo", "--out", str(tmp_path / "x"), "--frames", "1"]) == 1
    assert "--frames" in capsys.readouterr().err


def test_a_field_too_small_for_the_particle_is_refused_not_scored(tmp_path, capsys):
    """At 128 px the demo's field holds no particle: F1 against an empty truth would read
    1.00; it says why in one line instead."""
    assert main(["demo", "--out", str(tmp_path / "small"), "--frames", "2", "--size", "128",
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no particle worth scoring" in err
    assert "--size" in err
    assert not (tmp_path / "small").exists()   # no empty folder left behind


def test_demo_gui_without_a_display_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert main(["demo", "--gui", "--out", str(tmp_path / "gui")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a display" in err
    assert not (tmp_path / "gui").exists()


@pytest.mark.gui
def test_demo_viewer_shows_the_run_in_the_segment_and_plot_docks(demo_folder,
                                                                 make_napari_viewer):
    from napari_lowdose.widgets.demo import populate_demo_viewer

    viewer = make_napari_viewer()
    widget = populate_demo_viewer(viewer, demo_folder)
    image = viewer.layers["simulated series"]
    from napari_lowdose.models.registry import RECOMMENDED_MODEL
    from napari_lowdose.widgets.segment_results import short_model_name

    short = short_model_name(RECOMMENDED_MODEL, RECOMMENDED_MODEL.split("-")[0], shipped=True)
    prob = viewer.layers[f"{short} probability · simulated series"]  # the recommended model
    mask = viewer.layers[f"{short} mask · simulated series"]
    assert prob.data.shape == mask.data.shape == image.data.shape
    assert tuple(mask.scale) == tuple(image.scale)
    saved = np.asarray(read_series(demo_folder / "segment" / "probability.tif").data)
    assert np.array_equal(prob.data, saved)
    summary = json.loads((demo_folder / "segment" / "summary.json").read_text())
    threshold = summary["run"]["threshold"]  # the model's calibrated one
    assert widget.threshold.value == pytest.approx(threshold)
    assert np.array_equal(mask.data, (saved >= threshold).astype(np.uint8))
    features = mask.features
    assert features["converged_area_px"][0] == pytest.approx(summary["converged_area_px"])
    assert "median_f1" in features  # the truth mask was picked up

    runs = widget.plot_widget.plotted_runs()
    assert list(runs) == [RECOMMENDED_MODEL] and len(runs[RECOMMENDED_MODEL][0]) == 5
    assert viewer.dims.current_step[0] == 4
    denoised = viewer.layers["denoised"]
    assert not denoised.visible and tuple(denoised.scale) == tuple(image.scale)
