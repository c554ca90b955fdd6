"""``napari-lowdose segment`` / ``evaluate``: outputs, round trips and bad input (issue 6)."""

import json

import numpy as np
import pytest

from napari_lowdose.cli import main
from napari_lowdose.io.readers import read_series
from napari_lowdose.io.writers import write_series_tiff
from napari_lowdose.models.checkpoint import save_checkpoint
from napari_lowdose.models.msdnet import MSDNet
from napari_lowdose.noise.presets import preset

N_FRAMES, SIZE, PIXEL_A = 5, 40, 0.5


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg")
    rng = np.random.default_rng(0)
    frames = rng.poisson(20.0, (N_FRAMES, SIZE, SIZE)).astype(np.float32)
    frames[:, 10:25, 12:30] *= 0.5
    doses = np.geomspace(10, 1e3, N_FRAMES)
    series = write_series_tiff(folder / "series.tif", frames, PIXEL_A, dose_e_per_A2=doses)
    truth = np.zeros((SIZE, SIZE), np.uint8)
    truth[10:25, 12:30] = 1
    truth_path = write_series_tiff(folder / "truth.tif", truth, PIXEL_A)
    model = save_checkpoint(folder / "tiny.safetensors",
                            MSDNet(depth=3, width=2, kernel_size=3, max_dilation=2),
                            arch="msdnet", metadata={"validation": {"f1": 0.5}})
    return folder, series, truth_path, model


def _run(inputs, out, *extra):
    folder, series, _, model = inputs
    return main(["segment", str(series), "--model", str(model), "--device", "cpu",
                 "--threshold", "0.5", "--out", str(out), *extra])


def test_segment_writes_every_output_with_calibration(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(inputs, out) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "masks.tif", "probability.tif", "area_vs_dose.csv", "summary.json",
        "area_vs_dose.png", "area_vs_dose.svg"])
    masks = read_series(out / "masks.tif")
    assert masks.data.shape == (N_FRAMES, SIZE, SIZE) and masks.data.dtype == np.uint8
    assert masks.pixel_size_A == pytest.approx((PIXEL_A, PIXEL_A))
    assert masks.frame_dose.dose_e_per_A2 == pytest.approx(np.geomspace(10, 1e3, N_FRAMES))
    probability = read_series(out / "probability.tif")
    assert probability.data.dtype == np.float32
    p = np.asarray(probability.data)
    assert np.array_equal(np.asarray(masks.data), (p >= 0.5).astype(np.uint8))
    header = (out / "area_vs_dose.csv").read_text().splitlines()[0].split(",")
    assert header == ["frame", "dose_e_per_A2", "cumulative_dose_e_per_A2", "area_px",
                      "area_nm2", "in_converged_band",
                      "recall", "precision", "f1_consensus", "over_segmented"]
    summary = json.loads((out / "summary.json").read_text())
    assert {"convergence_dose_e_per_A2", "dose_at_50pct_e_per_A2",
            "converged_area_nm2", "visibility_dose_e_per_A2", "paper_dose_at_50pct_e_per_A2",
            "paper_convergence_dose_e_per_A2", "particles", "consensus_readout"} <= set(summary)
    run = summary["run"]
    assert run["threshold"] == 0.5 and run["device"].startswith("CPU")
    assert run["model"]["metadata"]["arch"] == "msdnet"
    assert run["dose"]["source"] == "metadata" and run["pixel_size_A"] == [PIXEL_A, PIXEL_A]
    assert "segmented" in capsys.readouterr().out


def test_evaluate_writes_f1_per_frame(inputs, tmp_path):
    _, _, truth, _ = inputs
    out = tmp_path / "run"
    assert _run(inputs, out) == 0
    assert main(["evaluate", str(out), "--truth", str(truth)]) == 0
    lines = (out / "f1_vs_dose.csv").read_text().splitlines()
    assert lines[0] == "frame,dose_e_per_A2,f1" and len(lines) == N_FRAMES + 1
    f1 = [float(line.split(",")[2]) for line in lines[1:]]
    assert all(0 <= v <= 1 for v in f1)
    assert main(["evaluate", str(out), "--truth", str(truth)]) == 1  # exists: needs --overwrite


def test_mask_clean_up_keeps_one_region_and_is_recorded(inputs, tmp_path):
    from napari_lowdose.analysis.masks import MaskCleaning, clean_mask

    out = tmp_path / "run"
    assert _run(inputs, out, "--keep-largest", "--fill-holes", "--min-area-nm2", "0.01") == 0
    masks = np.asarray(read_series(out / "masks.tif").data).astype(bool)
    p = np.asarray(read_series(out / "probability.tif").data)
    rules = MaskCleaning(keep_largest=True, fill_holes=True, min_area_px=4)  # 0.01 nm² / 0.25² nm²
    for mask, probability in zip(masks, p, strict=True):
        np.testing.assert_array_equal(mask, clean_mask(probability >= 0.5, rules))
    assert not np.array_equal(masks, p >= 0.5)  # the rules did change the masks
    run = json.loads((out / "summary.json").read_text())["run"]
    assert run["mask_cleaning"] == rules.to_dict()


def test_min_area_needs_the_pixel_size(inputs, tmp_path, capsys):
    _, _, _, model = inputs
    bare = write_series_tiff(tmp_path / "bare.tif", np.ones((2, SIZE, SIZE), np.float32), None)
    out = tmp_path / "run"
    assert main(["segment", str(bare), "--model", str(model), "--device", "cpu",
                 "--dose-rate", "10", "--exposure-s", "1", "--min-area-nm2", "0.5",
                 "--out", str(out)]) == 1
    assert "pixel size" in _one_line_error(capsys) and not out.exists()


def test_threshold_model_uses_the_calibrated_threshold(inputs, tmp_path, capsys):
    folder, series, _, _ = inputs
    calibrated = save_checkpoint(
        tmp_path / "cal.safetensors", MSDNet(depth=3, width=2, kernel_size=3, max_dilation=2),
        arch="msdnet", metadata={"validation": {"f1": 0.5, "calibrated_threshold": 0.35}})
    out = tmp_path / "run"
    assert main(["segment", str(series), "--model", str(calibrated), "--device", "cpu",
                 "--threshold", "model", "--out", str(out)]) == 0
    masks = np.asarray(read_series(out / "masks.tif").data)
    p = np.asarray(read_series(out / "probability.tif").data)
    np.testing.assert_array_equal(masks, (p >= 0.35).astype(np.uint8))
    assert json.loads((out / "summary.json").read_text())["run"]["threshold"] == 0.35
    capsys.readouterr()
    # a model without one is refused in one line, before any output
    assert _run(inputs, tmp_path / "none", "--threshold", "model") == 1
    assert "no calibrated threshold" in _one_line_error(capsys)
    assert not (tmp_path / "none").exists()


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("napari-lowdose: error:")
    return err[-1]


def test_missing_series_gives_one_line_and_no_output(inputs, tmp_path, capsys):
    _, _, _, model = inputs
    out = tmp_path / "run"
    code = main(["segment", str(tmp_path / "nope.tif"), "--model", str(model),
                 "--out", str(out)])
    assert code == 1 and "nope.tif" in _one_line_error(capsys)
    assert not out.exists()


def test_dose_table_of_the_wrong_length_is_refused(inputs, tmp_path, capsys):
    table = tmp_path / "dose.csv"
    table.write_text("dose_e_per_A2\n1\n2\n")
    out = tmp_path / "run"
    assert _run(inputs, out, "--dose", str(table), "--dose-source", "table") == 1
    assert "2" in _one_line_error(capsys)
    assert not out.exists()


def test_a_model_file_of_the_wrong_kind_is_refused(inputs, tmp_path, capsys):
    folder, series, _, _ = inputs
    noise = preset("MTF 4").to_json(tmp_path / "noise_model.json")
    garbage = tmp_path / "model.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    for path in (noise, garbage):
        out = tmp_path / f"run-{path.suffix[1:]}"
        code = main(["segment", str(series), "--model", str(path), "--out", str(out)])
        assert code == 1
        _one_line_error(capsys)
        assert not out.exists()


def test_an_existing_output_folder_needs_overwrite(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _run(inputs, out) == 1
    assert "--overwrite" in _one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert _run(inputs, out, "--overwrite") == 0
    assert (out / "masks.tif").is_file() and (out / "notes.txt").read_text() == "mine"


def test_a_series_too_large_for_memory_gives_the_same_files_from_scratch_files(
        inputs, tmp_path, monkeypatch):
    from napari_lowdose.io import outputs

    assert _run(inputs, tmp_path / "in_memory") == 0
    monkeypatch.setattr(outputs, "IN_MEMORY_LIMIT_BYTES", 0)
    created = []
    real = np.lib.format.open_memmap

    def spy(path, *args, **kwargs):
        created.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "open_memmap", spy)
    assert _run(inputs, tmp_path / "on_disk") == 0
    assert len(created) == 2  # probabilities and masks went to scratch files
    for name in ("masks.tif", "probability.tif"):
        assert np.array_equal(np.asarray(read_series(tmp_path / "in_memory" / name).data),
                              np.asarray(read_series(tmp_path / "on_disk" / name).data))
    # The scratch files are gone; only the two output folders are left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in_memory", "on_disk"]


def test_frames_are_resampled_to_the_training_sampling_by_default(inputs, tmp_path, capsys):
    folder, series, _, _ = inputs
    trained_at = save_checkpoint(
        tmp_path / "card.safetensors", MSDNet(depth=3, width=2, kernel_size=3, max_dilation=2),
        arch="msdnet", metadata={"validation": {"f1": 0.5}, "dataset": {"card": {"recipe": {
            "structure": {"sampling_range_A": [2 * PIXEL_A, 2 * PIXEL_A]}}}}})
    common = ["segment", str(series), "--model", str(trained_at), "--device", "cpu",
              "--threshold", "0.5"]
    assert main([*common, "--no-match-sampling", "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert "network input: resampled ×0.5" in capsys.readouterr().out
    assert main([*common, "--match-sampling", "--out", str(tmp_path / "matched")]) == 0
    record = json.loads((tmp_path / "matched" / "summary.json").read_text())["run"]
    assert record["inference_zoom"] == pytest.approx(0.5)  # trained at twice the pixel size
    assert record["sampling"].startswith("resampled ×0.5")
    plain_record = json.loads((tmp_path / "plain" / "summary.json").read_text())["run"]
    assert plain_record["inference_zoom"] is None and "off" in plain_record["sampling"]
    plain = np.asarray(read_series(tmp_path / "plain" / "probability.tif").data)
    default = np.asarray(read_series(tmp_path / "default" / "probability.tif").data)
    matched = np.asarray(read_series(tmp_path / "matched" / "probability.tif").data)
    assert matched.shape == plain.shape and not np.allclose(matched, plain)
    assert np.array_equal(default, matched)
    capsys.readouterr()
    # a model that does not record its training sampling: as is by default, with the reason
    assert _run(inputs, tmp_path / "as-is") == 0
    assert "network input: frames as they are: the model does not record" in (
        capsys.readouterr().out)
    # ... and refused in one line when resampling is asked for
    assert _run(inputs, tmp_path / "none", "--match-sampling") == 1
    assert "sampling" in _one_line_error(capsys) and not (tmp_path / "none").exists()


def test_sampling_plan_resamples_only_within_four_times_the_training_sampling():
    from napari_lowdose.workflows.segmentation import SegmentError, sampling_plan

    metadata = {"dataset": {"card": {"recipe": {"structure": {
        "sampling_range_A": [0.07, 0.08]}}}}}
    assert sampling_plan(0.1, metadata).zoom == pytest.approx(0.1 / 0.075)
    assert sampling_plan(0.075, metadata).zoom is None  # already at the training's
    assert sampling_plan(0.1, metadata, match=False).zoom is None
    overview = sampling_plan(29.88, metadata)  # the real OneView pair: 2.988 nm/px
    assert overview.zoom is None and "beyond 4×" in overview.note
    with pytest.raises(SegmentError, match="beyond 4×"):
        sampling_plan(29.88, metadata, match=True)
    assert "unknown" in sampling_plan(None, metadata).note


def test_a_series_without_a_dose_is_segmented_and_says_what_is_missing(inputs, tmp_path,
                                                                       capsys):
    """No dose: the masks and probabilities are still worth having (the dock gives them
    too); the curve and its readouts are left out, in one warning and in the record."""
    import json

    import tifffile

    folder, _, _, model = inputs
    frames = np.random.default_rng(1).poisson(20.0, (4, SIZE, SIZE)).astype(np.float32)
    bare = write_series_tiff(tmp_path / "bare.tif", frames, PIXEL_A)
    out = tmp_path / "out"
    assert main(["segment", str(bare), "--model", str(model), "--device", "cpu",
                 "--threshold", "0.5", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no per-frame dose" in warnings[0]
    assert "4 frames segmented; no area against dose" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["masks.tif", "probability.tif",
                                                      "summary.json"]
    masks = tifffile.imread(out / "masks.tif")
    assert masks.shape == frames.shape
    summary = json.loads((out / "summary.json").read_text())
    assert summary["area_vs_dose"].startswith("the area-against-dose curve and its readouts")
    assert summary["area_px"] == [int(m.astype(bool).sum()) for m in masks]
    assert summary["run"]["dose"]["source"] == "none"


def test_exported_masks_open_again_as_a_mask_layer(inputs, tmp_path):
    """masks.tif of a run opens, through the plugin's reader, as a Labels layer with the
    series' scale and per-frame dose; probability.tif as an image."""
    from napari_lowdose._reader import napari_get_reader

    out = tmp_path / "out"
    assert _run(inputs, out) == 0
    (masks, mask_kwargs, mask_type), = napari_get_reader(str(out / "masks.tif"))(
        str(out / "masks.tif"))
    assert mask_type == "labels" and np.asarray(masks).dtype.kind in "ui"
    assert tuple(mask_kwargs["scale"])[-2:] == pytest.approx((PIXEL_A, PIXEL_A))
    assert mask_kwargs["metadata"]["lowdose"]["dose"] is not None
    (_, _, prob_type), = napari_get_reader(str(out / "probability.tif"))(
        str(out / "probability.tif"))
    assert prob_type == "image"


def test_reopened_masks_carry_their_run_s_curve_and_readouts(inputs, tmp_path):
    """A run exported and opened again gives back what the Segment dock had shown: the
    area-against-dose record (the same readouts as summary.json) and the features row."""
    from napari_lowdose._reader import napari_get_reader
    from napari_lowdose.analysis.area_record import analysis_from_record

    out = tmp_path / "out"
    assert _run(inputs, out) == 0
    summary = json.loads((out / "summary.json").read_text())
    (_, kwargs, kind), = napari_get_reader(str(out / "masks.tif"))(str(out / "masks.tif"))
    record = kwargs["metadata"]["lowdose"]["area_vs_dose"]
    assert kind == "labels" and record["label"] == "tiny"
    reopened = analysis_from_record(record)
    assert reopened.dose_e_per_A2 == pytest.approx(np.geomspace(10, 1e3, N_FRAMES))
    again = json.loads(json.dumps(reopened.summary(), default=str))
    for key in ("visibility_dose_e_per_A2", "convergence_dose_e_per_A2",
                "paper_dose_at_50pct_e_per_A2", "converged_area_px", "consensus_readout",
                "over_segmented_frames"):
        assert again[key] == summary[key], key
    csv_rows = (out / "area_vs_dose.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[3]) for r in csv_rows] == list(reopened.area_px)
    features = kwargs["features"]
    assert features["run"] == ["tiny"] and features["frames_analysed"] == [N_FRAMES]


def test_masks_of_a_frame_range_reopen_over_their_own_frames(tmp_path):
    """The dock exports only the frames it segmented: masks of frames 5–14 of a series
    reopen shifted to frames 5–14 (translate), not over frames 0–9."""
    from napari_lowdose._reader import napari_get_reader
    from napari_lowdose.analysis import analyse_area_vs_dose
    from napari_lowdose.workflows.segmentation import write_segmentation

    doses = np.geomspace(10, 1e3, 20)
    masks = np.zeros((10, SIZE, SIZE), np.uint8)
    masks[:, 10:25, 12:30] = 1
    frames = np.arange(5, 15)
    analysis = analyse_area_vs_dose(masks.astype(bool), doses[frames], PIXEL_A, frames=frames,
                                    series_dose_e_per_A2=doses)
    write_segmentation(tmp_path / "range", pixel_size_A=(PIXEL_A, PIXEL_A),
                       probabilities=masks.astype(np.float32), masks=masks,
                       analysis=analysis, summary=analysis.summary(), label="range",
                       overwrite=False)
    path = str(tmp_path / "range" / "masks.tif")
    (_, kwargs, kind), = napari_get_reader(path)(path)
    assert kind == "labels" and tuple(kwargs["translate"]) == (5.0, 0.0, 0.0)
    assert kwargs["metadata"]["lowdose"]["area_vs_dose"]["table"]["frame"] == list(range(5, 15))


def test_tiles_are_chosen_automatically_unless_given(inputs, tmp_path, capsys):
    """--tile defaults to 'auto' (whole frames unless too large: here the same masks as
    'none'); a side in px tiles the frames (exactness of the blend: test_tiling); a side
    under 16 px or a word it does not know is a usage error naming the option."""
    whole, tiled, auto = tmp_path / "whole", tmp_path / "tiled", tmp_path / "auto"
    assert _run(inputs, whole, "--tile", "none") == 0
    assert _run(inputs, tiled, "--tile", "32") == 0
    assert _run(inputs, auto) == 0
    masks = [np.asarray(read_series(d / "masks.tif").data) for d in (whole, tiled, auto)]
    assert np.array_equal(masks[0], masks[2]) and masks[1].shape == masks[0].shape
    capsys.readouterr()
    for bad in ("8", "big"):
        with pytest.raises(SystemExit) as exit_info:
            _run(inputs, tmp_path / f"bad-{bad}", "--tile", bad)
        assert exit_info.value.code == 2
        assert "--tile" in capsys.readouterr().err
        assert not (tmp_path / f"bad-{bad}").exists()


def test_a_frame_range_segments_only_those_frames(inputs, tmp_path, capsys):
    """--frames A:B: the network sees only frames A…B-1 (a few frames of a long series), the
    outputs hold them with their series numbers, and the cumulative dose counts the frames
    before A; the same frames as a whole run's."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _run(inputs, whole) == 0
    assert _run(inputs, part, "--frames", "1:4") == 0
    masks = np.asarray(read_series(part / "masks.tif").data)
    assert masks.shape == (3, SIZE, SIZE)
    np.testing.assert_array_equal(masks, np.asarray(read_series(whole / "masks.tif").data)[1:4])
    summary = json.loads((part / "summary.json").read_text())
    assert summary["run"]["frames"] == [1, 2, 3]
    rows = [r.split(",") for r in (part / "area_vs_dose.csv").read_text().splitlines()[1:]]
    doses = np.geomspace(10, 1e3, N_FRAMES)
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    np.testing.assert_allclose([float(r[2]) for r in rows], np.cumsum(doses)[1:4])
    capsys.readouterr()
    assert _run(inputs, tmp_path / "bad", "--frames", "4:9") == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "reaches past" in error


def test_evaluate_refuses_an_image_given_as_the_truth(inputs, tmp_path, capsys):
    """The series itself (or any micrograph) given as --truth gave plausible-looking F1;
    it is refused in one line, before the existing table is even looked at, and nothing is
    replaced. A frame range's table keeps its series frame numbers."""
    folder, series, truth, _ = inputs
    out = tmp_path / "run"
    assert _run(inputs, out, "--frames", "2:5") == 0
    assert main(["evaluate", str(out), "--truth", str(truth)]) == 0
    table = (out / "f1_vs_dose.csv").read_text()
    assert [line.split(",")[0] for line in table.splitlines()[1:]] == ["2", "3", "4"]
    counts = write_series_tiff(tmp_path / "counts.tif", np.random.default_rng(0).integers(
        0, 4000, (SIZE, SIZE)).astype(np.uint16), PIXEL_A)
    for wrong, message in ((series, "fractional values"), (counts, "distinct values")):
        capsys.readouterr()
        assert main(["evaluate", str(out), "--truth", str(wrong), "--overwrite"]) == 1
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and "is not a mask" in error and message in error
        assert main(["evaluate", str(out), "--truth", str(wrong)]) == 1
        assert "is not a mask" in capsys.readouterr().err  # not "exists; pass --overwrite"
    assert (out / "f1_vs_dose.csv").read_text() == table


def test_replacing_a_run_leaves_no_table_of_the_previous_masks(inputs, tmp_path):
    """segment --overwrite over an evaluated folder: the old f1_vs_dose.csv (F1 of the
    previous masks) goes; a file of the user's own stays."""
    _, _, truth, _ = inputs
    out = tmp_path / "run"
    assert _run(inputs, out) == 0
    assert main(["evaluate", str(out), "--truth", str(truth)]) == 0
    (out / "notes.txt").write_text("mine")
    assert _run(inputs, out, "--frames", "1:3", "--overwrite") == 0
    assert not (out / "f1_vs_dose.csv").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "masks.tif").is_file()
