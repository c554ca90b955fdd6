"""The device kit (issue 17) on the CPU: every stage end to end at tiny sizes, so that the
command a lent GPU machine runs cannot rot."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_lowdose.kit.budget import Deadline, run_stage
from napari_lowdose.kit.config import tiny_config
from napari_lowdose.kit.run import MAX_FILE_BYTES, MAX_FILES, run_kit

ROOT = Path(__file__).resolve().parents[1]
# Packages the carried wheels leave out (scripts/check_device_wheels.py NOT_NEEDED): the kit
# must run with them missing.
NOT_CARRIED = ("zarr", "numcodecs", "donfig", "google_crc32c", "jedi", "parso",
               "widgetsnbextension")


def _check_results(out: Path, command_word: str) -> dict:
    from napari_lowdose.models.registry import load_denoiser, load_model

    files = sorted(p for p in out.iterdir())
    assert all(p.is_file() for p in files)
    assert len(files) <= MAX_FILES
    assert all(p.stat().st_size <= MAX_FILE_BYTES for p in files)
    report = json.loads((out / "kit.json").read_text())
    assert {k: v["status"] for k, v in report["stages"].items()} == {
        "waves": "ok", "train_msdnet": "ok", "train_unet": "ok", "train_denoiser": "ok",
        "evaluate": "ok", "benchmark": "ok"}
    assert set(report["returned_models"]) == {"msdnet", "unet", "denoiser"}
    for name in ("msdnet", "unet"):
        model, metadata = load_model(out / f"kit-{name}.safetensors")
        assert metadata["arch"] == name and command_word in metadata["command"]
        assert 0 < metadata["validation"]["calibrated_threshold"] < 1
        assert metadata["training"]["steps"] in (2, 3)  # the best of the validations
    denoiser, metadata = load_denoiser(out / "kit-denoiser.safetensors")
    assert command_word in metadata["kit"]["command"]
    assert metadata["source"]["trained_e_per_px_range"] == [0.05, 100.0]
    # The battery scored every new and shipped segmentation network on its series.
    table = report["battery"]["table"]
    assert {"kit-msdnet", "kit-unet", "unet-au-ceo2-low"} <= {r["model"] for r in table}
    rows = report["battery"]["rows"]
    assert all(len(r["f1"]) == 3 and all(0 <= f <= 1 for f in r["f1"]) for r in rows)
    psnr = report["denoiser_psnr"]["table"]
    assert {"raw", "kit-denoiser", "denoiser-au-ceo2"} <= {r["model"] for r in psnr}
    assert {(r["network"], r["status"]) for r in report["benchmark"]} == {
        ("msdnet", "ok"), ("unet", "ok"), ("denoiser", "ok")}
    markdown = (out / "kit.md").read_text()
    assert "| kit-unet | soi-fig9 |" in markdown and "frames/s" in markdown
    assert "stage benchmark: done" in (out / "kit.log").read_text()
    return report


def test_the_kit_runs_every_stage_on_the_cpu_without_the_packages_it_does_not_carry(tmp_path):
    """Fast dry run: tiny sizes, 60 s budget, in a fresh process with the not-carried
    packages made unimportable."""
    code = ("import sys\n"
            f"for name in {NOT_CARRIED!r}: sys.modules[name] = None\n"
            "from napari_lowdose.kit.__main__ import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    # The kit keeps its own budget (elapsed_s, below); the process's start-up and imports
    # depend on how busy this machine is, so the timeout only guards against a hang.
    subprocess.run([sys.executable, "-c", code, "--tiny", "--out", str(tmp_path / "out"),
                    "--work", str(tmp_path / "work")], check=True, env=env, timeout=240,
                   capture_output=True)
    report = _check_results(tmp_path / "out", "napari_lowdose.kit")
    assert report["elapsed_s"] <= 60


def test_a_failing_stage_is_recorded_and_the_rest_still_write_their_results(tmp_path):
    # One structure is too few to train on: the waves stage fails, the trainings say why,
    # evaluation and benchmark still run, and the results are written.
    config = tiny_config(n_structures=1, shipped=False, budget_s=30)
    report = run_kit(config, tmp_path / "out", tmp_path / "work", command="test")
    stages = report["stages"]
    assert stages["waves"]["status"] == "failed" and "exit waves" in stages["waves"]["error"]
    assert stages["train_unet"]["status"] == "failed"
    assert stages["evaluate"]["status"] == "ok" and stages["benchmark"]["status"] == "ok"
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"kit.json", "kit.md", "kit.log"}
    assert "failed" in (tmp_path / "out" / "kit.md").read_text()


def test_deadline_shares_never_outlast_their_parent():
    now = [0.0]
    parent = Deadline(100, clock=lambda: now[0])
    child = parent.share(0.3)
    assert child.left_s() == pytest.approx(30)
    now[0] = 90.0
    assert parent.left_s() == pytest.approx(10) and child.expired()
    late = parent.share(1.0, of_s=50)
    assert late.left_s() == pytest.approx(10)
    assert parent.expired(reserve_s=10) and not parent.expired(reserve_s=5)


def test_run_stage_records_a_failure_and_returns_none(caplog):
    import logging

    record: dict = {}
    log = logging.getLogger("test-kit")
    assert run_stage("good", lambda: 3, log, record) == 3
    assert run_stage("bad", lambda: 1 / 0, log, record) is None
    assert record["good"]["status"] == "ok"
    assert record["bad"]["status"] == "failed" and "ZeroDivisionError" in record["bad"]["error"]


def test_forced_precision_changes_inference_precision_through_the_cli_function():
    from napari_lowdose.models.inference import predict_probabilities
    from napari_lowdose.models.streaming import forced_precision
    from napari_lowdose.models.unet import UNet

    torch.manual_seed(0)
    model = UNet(base_channels=4, levels=2)
    frames = np.random.default_rng(0).poisson(20, size=(2, 32, 32)).astype(np.float32)

    def run():
        return np.stack([p for _, p in predict_probabilities(model, frames, device="cpu")])

    fp32 = run()
    with forced_precision("bf16"):
        bf16 = run()
    assert np.array_equal(run(), fp32)  # the override ends with the block
    difference = np.abs(bf16 - fp32).max()
    assert 0 < difference < 0.05
    with pytest.raises(ValueError, match="precision"), forced_precision("int8"):
        pass


@pytest.mark.slow
def test_the_documented_command_runs_the_kit_within_its_budget(tmp_path):
    """The shell entry (docs/device-kit.md) with a budget far too small for the tiny run's
    waves: it still ends in time and writes its files."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    subprocess.run(["bash", str(ROOT / "scripts" / "device-kit.sh"), "--tiny", "--work",
                    str(tmp_path / "work")], check=True, env=env, timeout=300,
                   capture_output=True)
    _check_results(tmp_path / "out", "scripts/device-kit.sh")
    assert time.monotonic() - start < 120
    start = time.monotonic()
    out2 = tmp_path / "out2"
    subprocess.run(["bash", str(ROOT / "scripts" / "device-kit.sh"), "--tiny", "--budget-s",
                    "12", "--work", str(tmp_path / "work2")],
                   env={**env, "OUT": str(out2)}, timeout=120, capture_output=True)
    assert time.monotonic() - start < 12 + 45
    assert {"kit.json", "kit.md", "kit.log"} <= {p.name for p in out2.iterdir()}
