"""Simulated datasets on disk: layout, split, card, resume and regeneration (issue 4)."""

import json

import numpy as np
import pytest

from napari_lowdose.simulate import exitwaves
from napari_lowdose.simulate.dataset import generate_dataset
from napari_lowdose.simulate.recipe import (
    CARD_FORMAT,
    PARAMETER_COLUMNS,
    DatasetError,
    DatasetRecipe,
    open_dataset,
    read_card,
)
from napari_lowdose.simulate.structures import StructureRecipe

TINY = StructureRecipe(
    size_px=48,
    sampling_range_A=(0.25, 0.3),
    diameter_range_A=(8.0, 10.0),
    support_thickness_range_A=(6.0, 8.0),
    margin_A=3.0,
)
RECIPE = DatasetRecipe(n_structures=4, image_epochs=3, seed=11, structure=TINY,
                       val_fraction=0.25)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "dataset"
    summary = generate_dataset(out, RECIPE)
    return out, summary


def _arrays(path):
    result = {}
    for split in ("train", "val"):
        data = open_dataset(path, split)
        result[split] = (data["images"][:], data["masks"][:], data["params"])
    return result


def test_dataset_holds_images_masks_and_parameters_per_split(dataset):
    out, summary = dataset
    assert summary.complete and summary.n_done == 4 and summary.n_waves_computed == 4
    train = open_dataset(out, "train")
    val = open_dataset(out, "val")
    assert train["images"].shape == (9, 48, 48) and val["images"].shape == (3, 48, 48)
    assert train["images"].dtype == np.float32 and train["masks"].dtype == np.uint8
    images = train["images"][:]
    assert np.isfinite(images).all() and images.min() >= 0
    # Split by structure: no structure in both.
    train_structures = set(train["params"]["structure_index"].tolist())
    val_structures = set(val["params"]["structure_index"].tolist())
    assert train_structures == {0, 1, 2} and val_structures == {3}
    # Every image of a structure has that structure's cached mask.
    cache = exitwaves.ExitWaveCache(out / "cache")
    for row, index in enumerate(train["params"]["structure_index"]):
        assert np.array_equal(train["masks"][row], cache.load(int(index)).mask)
    assert set(train["params"]) == set(PARAMETER_COLUMNS)
    # Image brightness follows the recorded dose: electrons per pixel ≈ dose · s².
    expected = train["params"]["dose_e_per_A2"] * train["params"]["sampling_A"] ** 2
    assert np.allclose(train["params"]["electrons_per_px"], expected)
    ratio = images.mean(axis=(1, 2)) / expected
    assert np.all((ratio > 0.8) & (ratio < 1.2))


def test_parameter_csv_matches_the_zarr_table(dataset):
    out, _ = dataset
    train = open_dataset(out, "train")
    lines = (out / "train_params.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header == list(PARAMETER_COLUMNS)
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    for i, name in enumerate(header):
        assert np.allclose(table[:, i], train["params"][name])


def test_card_records_the_recipe_split_and_versions(dataset):
    out, _ = dataset
    card = read_card(out)
    assert card["format"] == CARD_FORMAT and card["status"] == "complete"
    assert DatasetRecipe.from_dict(card["recipe"]).same_images_as(RECIPE)
    assert card["split"]["val_structures"] == [3]
    assert card["split"]["n_train_images"] == 9
    assert {"abtem", "ase", "numpy", "napari-lowdose"} <= set(card["versions"])
    assert card["recipe"]["noise_model"]["name"] == "MTF4"
    json.dumps(card)


def test_regenerating_from_the_card_gives_the_same_dataset(dataset, tmp_path):
    out, _ = dataset
    recipe = DatasetRecipe.from_dict(read_card(out)["recipe"])
    generate_dataset(tmp_path / "again", recipe)
    first, second = _arrays(out), _arrays(tmp_path / "again")
    for split in ("train", "val"):
        assert np.array_equal(first[split][0], second[split][0])
        assert np.array_equal(first[split][1], second[split][1])
        for name in PARAMETER_COLUMNS:
            assert np.array_equal(first[split][2][name], second[split][2][name])


def test_an_interrupted_run_resumes_without_recomputing_waves(dataset, tmp_path, monkeypatch):
    out, _ = dataset
    target = tmp_path / "resumed"
    calls = {"n": 0}
    summary = generate_dataset(target, RECIPE, should_stop=lambda: calls.__setitem__(
        "n", calls["n"] + 1) or calls["n"] > 2)
    assert not summary.complete and summary.n_done == 2
    assert read_card(target)["status"] == "incomplete"
    # Simulate a crash after an exit wave was cached but before its images were stored.
    exitwaves.ExitWaveCache(target / "cache").get_or_compute(2, RECIPE.seed, TINY)

    computed = []
    real = exitwaves.compute_exit_wave

    def counting(particle, settings=None, **kwargs):
        computed.append(kwargs.get("fftw_planning"))
        return real(particle, settings, **kwargs)

    monkeypatch.setattr(exitwaves, "compute_exit_wave", counting)
    progress = []
    summary = generate_dataset(target, RECIPE, progress=lambda d, t: progress.append((d, t)))
    assert summary.complete and summary.n_waves_computed == 1
    # One wave computed, with the dataset's shared FFTW plans.
    assert computed == ["measure"]
    assert (target / "fftw_wisdom.json").is_file()
    assert progress[0] == (2, 4) and progress[-1] == (4, 4)
    first, resumed = _arrays(out), _arrays(target)
    for split in ("train", "val"):
        assert np.array_equal(first[split][0], resumed[split][0])
        assert np.array_equal(first[split][1], resumed[split][1])


def test_a_folder_of_another_recipe_or_other_files_is_refused(dataset, tmp_path):
    out, _ = dataset
    other = DatasetRecipe(n_structures=4, image_epochs=3, seed=12, structure=TINY)
    with pytest.raises(DatasetError, match="another recipe"):
        generate_dataset(out, other)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a napari-lowdose dataset"):
        generate_dataset(tmp_path, RECIPE)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_recipe_validation():
    with pytest.raises(DatasetError):
        DatasetRecipe(n_structures=0, image_epochs=1)
    with pytest.raises(DatasetError):
        DatasetRecipe(n_structures=1, image_epochs=1, dose_range_e_per_A2=(10.0, 1.0))
    assert DatasetRecipe(n_structures=1000, image_epochs=10).n_val_structures == 50
    assert DatasetRecipe(n_structures=1, image_epochs=10).n_val_structures == 0


@pytest.mark.slow
def test_two_local_worker_processes_give_the_same_dataset(dataset, tmp_path):
    out, _ = dataset
    summary = generate_dataset(tmp_path / "parallel", RECIPE, workers=2)
    assert summary.complete
    first, parallel = _arrays(out), _arrays(tmp_path / "parallel")
    for split in ("train", "val"):
        assert np.array_equal(first[split][0], parallel[split][0])


def test_a_dask_scheduler_address_runs_the_same_dataset(dataset, tmp_path):
    """``--scheduler ADDRESS``: the work goes to an existing dask.distributed cluster."""
    from distributed import LocalCluster

    out, _ = dataset
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        summary = generate_dataset(tmp_path / "cluster", RECIPE,
                                   scheduler_address=cluster.scheduler_address)
    assert summary.complete
    first, clustered = _arrays(out), _arrays(tmp_path / "cluster")
    for split in ("train", "val"):
        assert np.array_equal(first[split][0], clustered[split][0])


def test_waves_from_another_dataset_are_reused_for_another_dose_range(dataset, tmp_path,
                                                                      monkeypatch):
    out, _ = dataset
    low = DatasetRecipe(n_structures=4, image_epochs=2, seed=11, structure=TINY,
                        dose_range_e_per_A2=(10.0, 1e4))

    def fail(*args, **kwargs):
        raise AssertionError("an exit wave was computed although it could be reused")

    monkeypatch.setattr(exitwaves, "compute_exit_wave", fail)
    summary = generate_dataset(tmp_path / "low", low, waves_from=out)
    assert summary.complete and summary.n_waves_computed == 0
    high_data, low_data = open_dataset(out, "train"), open_dataset(tmp_path / "low", "train")
    # Same structures, so the same masks; other doses, so other images.
    assert np.array_equal(np.asarray(high_data["masks"][0]), np.asarray(low_data["masks"][0]))
    assert low_data["params"]["dose_e_per_A2"].max() <= 1e4
    assert (tmp_path / "low" / "fftw_wisdom.json").read_text() == (
        out / "fftw_wisdom.json").read_text()


def test_waves_from_other_structures_are_refused(dataset, tmp_path):
    out, _ = dataset
    other_seed = DatasetRecipe(n_structures=4, image_epochs=2, seed=12, structure=TINY)
    with pytest.raises(DatasetError, match="another seed, structure recipe"):
        generate_dataset(tmp_path / "other", other_seed, waves_from=out)
    assert not (tmp_path / "other").exists()
