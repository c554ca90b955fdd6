"""``napari-lowdose simulate``: options, outputs, resume, regeneration and bad input."""

import numpy as np
import pytest

from napari_lowdose.cli import main
from napari_lowdose.noise.model import NoiseModel
from napari_lowdose.simulate.recipe import open_dataset, read_card

TINY_ARGS = ["--structures", "2", "--image-epochs", "2", "--size", "40",
             "--sampling-A", "0.3,0.3", "--diameter-A", "7,9", "--workers", "1",
             "--seed", "5", "--val-fraction", "0.5"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ds"
    code = main(["simulate", "--out", str(out), *TINY_ARGS, "--dose-range", "low"])
    return out, code


def test_simulate_writes_a_dataset_with_the_options_in_its_card(simulated, capsys):
    out, code = simulated
    assert code == 0
    assert (out / "card.json").is_file() and (out / "data.zarr").is_dir()
    assert (out / "train_params.csv").is_file() and (out / "val_params.csv").is_file()
    card = read_card(out)
    recipe = card["recipe"]
    assert recipe["n_structures"] == 2 and recipe["image_epochs"] == 2
    assert recipe["structure"]["size_px"] == 40
    assert recipe["dose_range_e_per_A2"] == [10.0, 1e4]
    assert recipe["noise_model"]["name"] == "MTF4"
    assert recipe["seed"] == 5
    train = open_dataset(out, "train")
    assert train["images"].shape == (2, 40, 40)
    doses = train["params"]["dose_e_per_A2"]
    assert np.all((doses >= 10) & (doses <= 1e4))


def test_rerunning_a_finished_dataset_recomputes_nothing(simulated, capsys):
    out, _ = simulated
    before = open_dataset(out, "train")["images"][:]
    assert main(["simulate", "--out", str(out), *TINY_ARGS, "--dose-range", "low"]) == 0
    assert "0 exit waves computed" in capsys.readouterr().out
    assert np.array_equal(open_dataset(out, "train")["images"][:], before)


def test_from_card_regenerates_the_same_images(simulated, tmp_path):
    out, _ = simulated
    again = tmp_path / "again"
    assert main(["simulate", "--out", str(again), "--from-card", str(out / "card.json"),
                 "--workers", "1"]) == 0
    assert np.array_equal(open_dataset(out, "val")["images"][:],
                          open_dataset(again, "val")["images"][:])


def test_a_noise_model_file_sets_the_noise(tmp_path):
    model = NoiseModel(name="my detector", c0_range=(0.3, 0.31), c3_range=(2.0, 2.1),
                       n0_range_e_per_px=(0.02, 0.03))
    path = model.to_json(tmp_path / "noise_model.json")
    out = tmp_path / "ds"
    args = TINY_ARGS[:1] + ["1"] + TINY_ARGS[2:]
    assert main(["simulate", "--out", str(out), *args, "--mtf", str(path)]) == 0
    assert read_card(out)["recipe"]["noise_model"]["name"] == "my detector"
    c0 = open_dataset(out, "train")["params"]["c0"]
    assert np.all((c0 >= 0.3) & (c0 <= 0.31))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mtf", "MTF9"], "unknown noise preset"),
        (["--mtf", "missing.json"], "does not exist"),
        (["--dose-range", "5"], "LO,HI"),
        (["--dose-range", "100,10"], "LO <= HI"),
        (["--structures", "0"], ">= 1"),
        (["--sampling-A", "0.08,0.07"], "LO <= HI"),
    ],
)
def test_bad_options_give_one_line_and_exit_1(tmp_path, capsys, extra, message):
    out = tmp_path / "ds"
    code = main(["simulate", "--out", str(out), *TINY_ARGS, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert message in err and len(err.splitlines()) == 1
    assert err.startswith("napari-lowdose: error:")
    assert not (out / "card.json").exists()


def test_an_existing_folder_of_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "thesis.docx").write_text("precious")
    assert main(["simulate", "--out", str(tmp_path), *TINY_ARGS]) == 1
    assert "not a napari-lowdose dataset" in capsys.readouterr().err
    assert (tmp_path / "thesis.docx").read_text() == "precious"


def test_the_noise_model_is_found_in_the_folder_fit_noise_wrote(tmp_path):
    """`--mtf FOLDER` (fit-noise's --out) takes its noise_model.json; a folder without one,
    or a file that is not a noise model, is named once in a line that says why."""
    from napari_lowdose.cli.simulate import SimulateUsageError, noise_model_argument

    model = NoiseModel(name="fitted", c0_range=(0.3, 0.31), c3_range=(2.0, 2.1),
                       n0_range_e_per_px=(0.02, 0.03))
    folder = tmp_path / "fit"
    folder.mkdir()
    model.to_json(folder / "noise_model.json")
    assert noise_model_argument(str(folder)).name == "fitted"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SimulateUsageError, match="without a noise_model.json"):
        noise_model_argument(str(empty))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SimulateUsageError) as info:
        noise_model_argument(str(bad))
    assert str(info.value).count(str(bad)) == 1 and "not a valid JSON" in str(info.value)


def test_train_says_what_is_wrong_with_data_that_is_not_a_dataset(tmp_path, capsys):
    frames = tmp_path / "series.tif"
    frames.write_bytes(b"II*\x00" + bytes(64))
    for data, message in ((frames, "is a file, not a dataset"),
                          (tmp_path / "nothing", "does not exist")):
        assert main(["train", "--data", str(data), "--out", str(tmp_path / "m")]) == 1
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and message in error


def test_an_implausible_noise_model_is_named_before_it_is_used(tmp_path, capsys):
    """A million electrons of readout noise per pixel (a unit or typing error) is used,
    but not silently."""
    from napari_lowdose.cli.simulate import noise_model_argument

    odd = NoiseModel(name="typo", c0_range=(0.3, 0.31), c3_range=(2.0, 2.1),
                     n0_range_e_per_px=(1e6, 1e7))
    assert odd.implausible() == ["readout noise N0 up to 1e+07 e⁻/px (Table 3 and direct "
                                 "detectors: 0.001–0.015)"]
    path = odd.to_json(tmp_path / "odd.json")
    assert noise_model_argument(str(path)).name == "typo"
    assert "N0 up to 1e+07" in capsys.readouterr().err
    from napari_lowdose.noise.presets import PRESETS

    assert all(not model.implausible() for model in PRESETS.values())
