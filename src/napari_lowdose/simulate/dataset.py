"""Simulated training datasets on disk: zarr images, masks and parameters, with a card.

A dataset follows the recipe (:class:`~.recipe.DatasetRecipe`) of Larsen et al.
(2023), Section 2 and Table 1: ``n_structures`` supported particles
(:mod:`.structures`), one exit wave each (:mod:`.exitwaves`, cached), and
``image_epochs`` images per wave with fresh optics, dose and detector noise
(:mod:`.imaging`, Eqs. 1–3). The paper's set is 1000 structures × 10 image
epochs.

Layout of ``DATASET/``::

    card.json             the dataset card: recipe, seeds, split, versions, status
    data.zarr/            zarr v3 group
      train/images        float32 (n, size, size), electrons per pixel, one chunk per image
      train/masks         uint8   (n, size, size), 1 = Au particle
      train/params/<col>  one 1-D array per recorded parameter (see PARAMETER_COLUMNS)
      val/...             the same for the validation structures
    train_params.csv      the per-image parameter tables, also as CSV
    val_params.csv
    cache/s000000/...     exit wave, structure (ASE .traj), mask per structure
    fftw_wisdom.json      FFTW plans shared by all workers (see :mod:`.exitwaves`)
    records/s000000.json  the parameters of the images of a finished structure

Image ``j`` of structure ``i`` sits in row ``local(i) · image_epochs + j`` of its
split, where ``local(i)`` counts the structures of that split in order. The
validation split is the last ``n_val`` structures (structures are drawn
independently, so this is a random split by structure, not by image).

Every random draw comes from ``SeedSequence(seed, spawn_key=...)`` keyed by the
structure and epoch numbers, never by worker or order: any number of workers,
and a run interrupted and resumed, give the same dataset bit for bit. The card
holds the whole recipe, so :func:`generate_dataset` with
``DatasetRecipe.from_dict(card["recipe"])`` regenerates the dataset.

Work is spread over structures with dask.distributed: local worker processes by
default, or an existing cluster given its scheduler address (the output folder
must then be on a file system the workers share).
"""

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.tables import table_to_csv
from ..io.writers import atomic_write_text
from .exitwaves import (
    FFTW_WISDOM_FILE,
    ExitWaveCache,
    cell_sizes,
    load_fftw_wisdom,
    plan_fftw_wisdom,
    software_versions,
)
from .imaging import iter_images
from .recipe import (
    CARD_FORMAT,
    CARD_VERSION,
    PARAMETER_COLUMNS,
    SPLITS,
    DatasetError,
    DatasetRecipe,
    read_card,
)

__all__ = [
    "DatasetSummary",
    "generate_dataset",
    "image_rng",
    "process_structure",
]

_INT_COLUMNS = {"structure_index", "epoch"}


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`generate_dataset` did.

    Attributes
    ----------
    path : Path
        Dataset folder.
    complete : bool
        All structures done and the tables written.
    n_done, n_total : int
        Structures finished (including earlier runs) and in the recipe.
    n_waves_computed : int
        Exit waves computed by this call (the rest came from the cache).
    elapsed_s : float
        Wall time of this call.
    """

    path: Path
    complete: bool
    n_done: int
    n_total: int
    n_waves_computed: int
    elapsed_s: float


def image_rng(seed: int, index: int, epoch: int) -> np.random.Generator:
    """Generator of image ``epoch`` of structure ``index``.

    ``SeedSequence(seed, spawn_key=(index, 1, epoch))``: independent of workers and order.
    """
    key = (int(index), 1, int(epoch))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


def generate_dataset(
    out_dir: str | os.PathLike,
    recipe: DatasetRecipe,
    *,
    workers: int = 1,
    scheduler_address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    command: str | None = None,
    fftw_wisdom: str | os.PathLike | None = None,
    waves_from: str | os.PathLike | None = None,
) -> DatasetSummary:
    """Simulate ``recipe`` into ``out_dir``, resuming a run that was interrupted.

    Parameters
    ----------
    out_dir : str or Path
        Dataset folder. If it holds a card of the same recipe, finished
        structures are skipped and cached exit waves reused.
    recipe : DatasetRecipe
        What to simulate.
    workers : int
        Local worker processes (dask.distributed ``LocalCluster``); 1 runs in
        this process without dask.
    scheduler_address : str, optional
        Address of a running dask.distributed scheduler (``tcp://host:8786``);
        the workers must see ``out_dir``. Overrides ``workers``.
    progress : callable, optional
        ``progress(done, total)`` after each structure (and once at the start).
    should_stop : callable, optional
        Polled between structures; when it returns True, no new structure is
        started and the call returns with ``complete=False``.
    command : str, optional
        Command line recorded in the card.
    fftw_wisdom : str or Path, optional
        FFTW wisdom of another dataset (its ``fftw_wisdom.json``) to use instead
        of planning anew: a dataset regenerated from a card with the original
        wisdom is identical bit for bit.
    waves_from : str or Path, optional
        Another dataset made with the same seed, structure recipe and
        multislice settings (it may differ in dose range, optics, detector
        noise, image epochs or structure count): its cached exit waves are
        linked into this dataset instead of being computed again, and its
        FFTW wisdom is used. This is how the "high" and "low" dose sets of
        Table 2 share their structures.

    Returns
    -------
    DatasetSummary

    Raises
    ------
    DatasetError
        The folder holds another dataset or a different recipe, or is not
        writable, or ``waves_from`` holds other structures.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    source = None
    if waves_from is not None:
        source = _wave_source(Path(waves_from), recipe)
        if fftw_wisdom is None:
            fftw_wisdom = source / FFTW_WISDOM_FILE
    _prepare(out, recipe, command, fftw_wisdom)
    if source is not None:
        _link_waves(source, out, recipe.n_structures)
    done = _done_structures(out, recipe)
    todo = [i for i in range(recipe.n_structures) if i not in done]
    total = recipe.n_structures
    if progress is not None:
        progress(len(done), total)
    stop = should_stop or (lambda: False)
    computed = 0
    recipe_dict = recipe.to_dict()
    if todo and (scheduler_address or workers > 1):
        results = _run_distributed(out, recipe_dict, todo, workers, scheduler_address, stop)
    else:
        results = _run_local(out, recipe_dict, todo, stop)
    for result in results:
        done.add(result["index"])
        computed += int(result["wave_computed"])
        if progress is not None:
            progress(len(done), total)
    complete = len(done) == total
    if complete:
        _finalise(out, recipe)
    return DatasetSummary(out, complete, len(done), total, computed,
                          time.perf_counter() - started)


def process_structure(out_dir: str, recipe_dict: dict[str, Any], index: int) -> dict[str, Any]:
    """Make and store all images of structure ``index`` (runs in a worker).

    The exit wave comes from the cache or is computed and cached; the image
    records are written last, so a structure with a record file is complete.
    """
    import scipy.fft
    import zarr

    out = Path(out_dir)
    recipe = DatasetRecipe.from_dict(recipe_dict)
    cache = ExitWaveCache(out / "cache")
    had_wave = cache.has(index)
    planning = "measure" if load_fftw_wisdom(out / FFTW_WISDOM_FILE) else "estimate"
    t0 = time.perf_counter()
    cached = cache.get_or_compute(index, recipe.seed, recipe.structure, recipe.multislice,
                                  fftw_planning=planning)
    t_wave = time.perf_counter() - t0
    split, row0 = recipe.split_of(index)
    group = zarr.open_group(out / "data.zarr", mode="r+")[split]
    geometry = cached.geometry
    rows = []
    images = iter_images(
        cached.exit_wave,
        geometry.sampling_A,
        geometry.crop,
        (image_rng(recipe.seed, index, epoch) for epoch in range(recipe.image_epochs)),
        optics_ranges=recipe.optics,
        dose_range_e_per_A2=recipe.dose_range_e_per_A2,
        noise_model=recipe.noise_model,
        workers=recipe.multislice.fftw_threads,
    )
    with scipy.fft.set_workers(recipe.multislice.fftw_threads):
        for epoch, (image, record) in enumerate(images):
            group["images"][row0 + epoch] = image
            group["masks"][row0 + epoch] = cached.mask
            row = {name: record[name] for name in PARAMETER_COLUMNS if name in record}
            row.update(structure_index=index, epoch=epoch,
                       mask_fraction=float(cached.mask.mean()))
            rows.append(row)
    atomic_write_text(out / "records" / f"s{index:06d}.json", json.dumps(rows))
    return {
        "index": index,
        "wave_computed": not had_wave,
        "wave_s": t_wave,
        "images_s": time.perf_counter() - t0 - t_wave,
    }


def _run_local(out: Path, recipe_dict: dict[str, Any], todo: list[int],
               stop: Callable[[], bool]):
    for index in todo:
        if stop():
            return
        yield process_structure(str(out), recipe_dict, index)


def _run_distributed(out: Path, recipe_dict: dict[str, Any], todo: list[int], workers: int,
                     scheduler_address: str | None, stop: Callable[[], bool]):
    from distributed import Client, LocalCluster, as_completed

    if scheduler_address:
        client = Client(scheduler_address)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(process_structure, str(out), recipe_dict, index,
                                 key=f"lowdose-structure-{index}", pure=False)
                   for index in todo]
        completed = as_completed(futures)
        for future in completed:
            yield future.result()
            if stop():
                for pending in futures:
                    if not pending.done():
                        pending.cancel()
                return
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _wave_source(source: Path, recipe: DatasetRecipe) -> Path:
    """Check that dataset ``source`` holds the structures ``recipe`` draws."""
    theirs = DatasetRecipe.from_dict(read_card(source)["recipe"])
    mine_ms, theirs_ms = recipe.multislice.to_dict(), theirs.multislice.to_dict()
    for values in (mine_ms, theirs_ms):
        values.pop("fftw_threads", None)
    if (theirs.seed != recipe.seed or theirs.structure != recipe.structure
            or mine_ms != theirs_ms):
        raise DatasetError(
            f"{source} was made with another seed, structure recipe or multislice settings; "
            "its exit waves cannot be reused"
        )
    return source


def _link_waves(source: Path, out: Path, n_structures: int) -> int:
    """Hard-link (or copy) the cached entries of ``source`` missing in ``out``."""
    theirs, mine = ExitWaveCache(source / "cache"), ExitWaveCache(out / "cache")
    linked = 0
    for index in range(n_structures):
        if mine.has(index) or not theirs.has(index):
            continue
        final = mine.entry_path(index)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            for path in theirs.entry_path(index).iterdir():
                try:
                    os.link(path, tmp / path.name)
                except OSError:
                    shutil.copy2(path, tmp / path.name)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        linked += 1
    return linked


def _prepare(out: Path, recipe: DatasetRecipe, command: str | None,
             fftw_wisdom: str | os.PathLike | None = None) -> None:
    """Create the folder, card and zarr arrays, or check that they match ``recipe``."""
    import zarr

    card_path = out / "card.json"
    if card_path.exists():
        card = read_card(out)
        existing = DatasetRecipe.from_dict(card["recipe"])
        if not existing.same_images_as(recipe):
            raise DatasetError(
                f"{out} holds a dataset made with another recipe; choose another folder "
                "(or resume it with the same options)"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not a napari-lowdose dataset; "
                           "choose a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "records").mkdir(exist_ok=True)
        root = zarr.open_group(out / "data.zarr", mode="w")
        size = recipe.structure.size_px
        for split in SPLITS:
            group = root.create_group(split)
            n = recipe.n_images(split)
            group.create_array("images", shape=(n, size, size), chunks=(1, size, size),
                               dtype="float32", fill_value=np.nan)
            group.create_array("masks", shape=(n, size, size), chunks=(1, size, size),
                               dtype="uint8", fill_value=0)
            group.create_group("params")
        if fftw_wisdom is not None and Path(fftw_wisdom).is_file():
            shutil.copyfile(fftw_wisdom, out / FFTW_WISDOM_FILE)
        else:
            plan_fftw_wisdom(out / FFTW_WISDOM_FILE, cell_sizes(recipe.structure),
                             recipe.multislice)
    except OSError as error:
        raise DatasetError(f"cannot create dataset in {out}: {error}") from error
    _write_card(out, recipe, status="incomplete", command=command)


def _write_card(out: Path, recipe: DatasetRecipe, *, status: str,
                command: str | None = None, extra: dict[str, Any] | None = None) -> None:
    previous = read_card(out) if (out / "card.json").exists() else {}
    card = {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "status": status,
        "description": (
            "Simulated HR-TEM images of CeO2-supported Au particles after Larsen et al. "
            "(2023), Sec. 2 and Table 1: abTEM multislice exit waves, Table 1 optics, "
            "log-uniform dose, detector noise Eq. 3 with the noise model below."
        ),
        "created": previous.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": previous.get("command") or command,
        "recipe": recipe.to_dict(),
        "fftw": {
            "planning": "FFTW_MEASURE with the plans in fftw_wisdom.json",
            "cell_sizes_px": cell_sizes(recipe.structure),
        },
        "seeding": (
            "structure i: SeedSequence(seed, spawn_key=(i, 0)); image epoch j of "
            "structure i: SeedSequence(seed, spawn_key=(i, 1, j))"
        ),
        "split": {
            "by": "structure",
            "val_structures": [i for i in range(recipe.n_structures)
                               if recipe.split_of(i)[0] == "val"],
            "n_train_images": recipe.n_images("train"),
            "n_val_images": recipe.n_images("val"),
        },
        "layout": {
            "images": "data.zarr/{split}/images float32 (n, y, x), electrons per pixel",
            "masks": "data.zarr/{split}/masks uint8 (n, y, x), 1 = Au particle",
            "params": "data.zarr/{split}/params/<column> and {split}_params.csv",
            "row": "local structure number * image_epochs + epoch",
        },
        "parameter_columns": list(PARAMETER_COLUMNS),
        "versions": software_versions(),
    }
    card.update(extra or {})
    atomic_write_text(out / "card.json", json.dumps(card, indent=2))


def _done_structures(out: Path, recipe: DatasetRecipe) -> set[int]:
    done = set()
    for index in range(recipe.n_structures):
        if (out / "records" / f"s{index:06d}.json").is_file():
            done.add(index)
    return done


def _finalise(out: Path, recipe: DatasetRecipe) -> None:
    """Gather the per-structure records into the parameter tables; mark the card complete."""
    import zarr

    rows: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for index in range(recipe.n_structures):
        records = json.loads((out / "records" / f"s{index:06d}.json").read_text("utf-8"))
        rows[recipe.split_of(index)[0]].extend(records)
    root = zarr.open_group(out / "data.zarr", mode="r+")
    for split in SPLITS:
        table = {
            name: np.asarray([row.get(name, np.nan) for row in rows[split]],
                             dtype=np.int64 if name in _INT_COLUMNS else np.float64)
            for name in PARAMETER_COLUMNS
        }
        params = root[split]["params"]
        for name, values in table.items():
            params.create_array(name, shape=values.shape, dtype=values.dtype, overwrite=True)
            params[name][...] = values
        atomic_write_text(out / f"{split}_params.csv", table_to_csv(table))
    _write_card(out, recipe, status="complete",
                extra={"completed": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
