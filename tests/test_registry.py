"""Shipped models by name, or checkpoint files by path."""

import pytest
import torch

from napari_lowdose.models import registry
from napari_lowdose.models.checkpoint import CheckpointError, save_checkpoint
from napari_lowdose.models.msdnet import MSDNet


def test_a_path_resolves_to_itself_and_loads(tmp_path):
    path = save_checkpoint(tmp_path / "mine.safetensors", MSDNet(depth=3, width=1, kernel_size=3),
                           arch="msdnet", metadata={})
    assert registry.resolve_model(str(path)) == path
    model, metadata = registry.load_model(path, arch="msdnet")
    assert metadata["arch"] == "msdnet" and isinstance(model, torch.nn.Module)


def test_unknown_names_are_refused_with_the_choices(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="neither a shipped model .none installed."):
        registry.resolve_model("resnet-gold")
    with pytest.raises(CheckpointError, match="missing from this installation"):
        registry.resolve_model("msdnet-au-ceo2")
    (tmp_path / "msdnet_au_ceo2.safetensors").write_bytes(b"")
    assert registry.available_models() == ["msdnet-au-ceo2"]
    with pytest.raises(CheckpointError, match="msdnet-au-ceo2"):
        registry.resolve_model("resnet-gold")


def test_the_default_model_is_a_shipped_name():
    assert registry.DEFAULT_MODEL in registry.SHIPPED_MODELS


def test_cli_models_describes_a_model_file(tmp_path, capsys):
    import json

    from napari_lowdose.cli import main

    path = save_checkpoint(tmp_path / "m.safetensors", MSDNet(depth=3, width=2, kernel_size=3),
                           arch="msdnet", metadata={"validation": {"f1": 0.8125,
                                                                   "threshold": 0.9}})
    assert main(["models", str(path)]) == 0
    out = capsys.readouterr().out
    assert "MSD-net depth 3, width 2, 3×3" in out and "validation F1 0.812" in out
    assert main(["models", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["depth"] == 3
    assert main(["models", "no-such-model"]) == 1
    assert "neither a shipped model" in capsys.readouterr().err
    # --json without a name: every shipped model's record, by name (it printed text)
    assert main(["models", "--json"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert set(shipped) == set(registry.available_models()) | set(
        registry.available_denoisers())
    assert shipped[registry.DEFAULT_MODEL]["arch"] in ("msdnet", "unet")


@pytest.mark.parametrize("name", list(registry.SHIPPED_MODELS))
def test_shipped_models_load_and_segment(name):
    import numpy as np

    from napari_lowdose.models.inference import predict_frame

    assert name in registry.available_models()
    model, metadata = registry.load_model(name)
    assert metadata["arch"] == name.split("-")[0]
    # Made by the project's own simulate + train commands: the card and the record are there.
    assert metadata["dataset"]["card"]["recipe"]["noise_model"]["name"] == "MTF4"
    # (The low-dose validation sets reach down to 10 e⁻/Å², where no network sees much.)
    assert metadata["validation"]["f1"] > 0.4
    # Calibrated (napari-lowdose calibrate): its best threshold is at least as good as 0.9.
    validation = metadata["validation"]
    assert 0 < validation["calibrated_threshold"] < 1
    assert validation["calibrated_f1"] >= validation["f1_by_threshold"]["0.90"]
    frame = np.random.default_rng(0).poisson(50.0, (67, 90)).astype(np.float32)
    probability = predict_frame(model, frame, device="cpu")
    assert probability.shape == (67, 90) and 0 <= probability.min() <= probability.max() <= 1


def test_cli_models_describes_a_denoiser_and_lists_shipped_denoisers(tmp_path, monkeypatch,
                                                                     capsys):
    from napari_lowdose.cli import main
    from napari_lowdose.models.denoiser import DenoiserUNet

    path = save_checkpoint(tmp_path / "d.safetensors", DenoiserUNet(base_channels=4, levels=1),
                           arch="denoiser", metadata={"validation": {"psnr_db": 21.5,
                                                                     "input_psnr_db": 12.25}})
    assert main(["models", str(path)]) == 0
    out = capsys.readouterr().out
    assert "denoiser (residual U-net) 1 levels, 4 base channels" in out
    assert "validation PSNR 21.50 dB (input 12.25 dB)" in out
    monkeypatch.setattr(registry, "PRETRAINED_DIR", tmp_path)
    path.rename(tmp_path / registry.SHIPPED_DENOISERS[registry.DEFAULT_DENOISER])
    assert main(["models"]) == 0
    assert registry.DEFAULT_DENOISER in capsys.readouterr().out
    assert main(["models", registry.DEFAULT_DENOISER]) == 0
    assert "PSNR 21.50" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(registry.SHIPPED_DENOISERS))
def test_shipped_denoisers_improve_an_unseen_simulated_frame(name):
    from napari_lowdose.analysis.image_quality import psnr
    from napari_lowdose.models.denoising import denoise_frame
    from napari_lowdose.simulate.series import simulate_dose_series

    assert name in registry.available_denoisers()
    model, metadata = registry.load_denoiser(name)
    assert metadata["dataset"]["card"]["format"] == "napari-lowdose/simulated-dataset"
    assert metadata["validation"]["psnr_db"] > metadata["validation"]["input_psnr_db"] + 5
    # A particle never used in training, imaged at ~2 e⁻/px (MTF 3, another detector).
    series = simulate_dose_series(7, n_frames=1, size_px=160,
                                  dose_range_e_per_A2=(2.0 / 0.075**2, 2.0 / 0.075**2))
    e_per_px = float(series.dose_e_per_A2[0]) * series.sampling_A**2
    reference = series.clean[0] * e_per_px
    denoised = denoise_frame(model, series.frames[0], expected_e_per_px=e_per_px, device="cpu")
    assert denoised.shape == series.frames[0].shape
    assert psnr(denoised, reference) > psnr(series.frames[0], reference) + 3.0


def _documented_battery_table():
    """The battery table docs/models.md shows, as committed beside it (docs/images)."""
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "images" / "battery.csv"
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_defaults_are_the_documented_best():
    import argparse
    import re
    from pathlib import Path

    from napari_lowdose.cli.demo import add_demo_parser
    from napari_lowdose.cli.segment import add_segment_parser
    from napari_lowdose.models.registry import (
        DEFAULT_MODEL,
        RECOMMENDED_MATCH_SAMPLING,
        RECOMMENDED_MODEL,
        RECOMMENDED_THRESHOLD,
        SHIPPED_MODELS,
        load_model,
    )
    from napari_lowdose.workflows.battery import BATTERY
    from napari_lowdose.workflows.battery_runs import model_ranking
    from napari_lowdose.workflows.segmentation import resolve_threshold

    # The table is measured as the defaults run: resampled to the training sampling
    # (rows MODEL@sampling, eval_battery.py --match-sampling) when that is the default.
    suffix = "@sampling" if RECOMMENDED_MATCH_SAMPLING else ""
    table = _documented_battery_table()
    labels = {f"{model}{suffix}" for model in SHIPPED_MODELS}
    assert {row["model"] for row in table} == labels  # every shipped model
    for label in labels:  # ... measured on every condition
        assert {r["condition"] for r in table if r["model"] == label} == {
            c.name for c in BATTERY}
    best = model_ranking(table)[0][0].removesuffix(suffix)  # the rule of docs/models.md
    marker = re.search(r"<!-- recommended: (\S+) (\S+) -->",
                       (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text())
    assert marker.groups() == (best, RECOMMENDED_THRESHOLD)
    assert RECOMMENDED_MODEL == DEFAULT_MODEL == best

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_segment_parser(sub)
    add_demo_parser(sub)
    segment = parser.parse_args(["segment", "S", "--out", "O"])
    demo = parser.parse_args(["demo"])
    assert segment.model == demo.model == best
    assert segment.match_sampling is None  # sampling_plan's default: the registry's choice
    _, metadata = load_model(best, device="cpu")
    calibrated = metadata["validation"]["calibrated_threshold"]
    assert resolve_threshold(segment.threshold, metadata, best) == calibrated
    assert resolve_threshold(demo.threshold, metadata, best) == calibrated
