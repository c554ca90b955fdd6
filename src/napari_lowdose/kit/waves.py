"""Exit waves for the kit's training: abTEM multislice on the machine's CPU cores.

Exit waves are the expensive part of Larsen et al.'s simulation (Sec. 2, Table 1); images
(optics, dose, Eq. 3 noise) are cheap and drawn fresh at every training step
(:mod:`.images`). Waves are computed by a pool of single-threaded processes into an
:class:`~napari_lowdose.simulate.exitwaves.ExitWaveCache` (one entry per structure,
written atomically), until the count is reached or the deadline passes; then the pool is
terminated and the finished entries are used.
"""

import logging
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..simulate.exitwaves import ExitWaveCache, MultisliceSettings
from ..simulate.structures import StructureGeometry, StructureRecipe
from .budget import Deadline

__all__ = ["Wave", "load_waves", "simulate_waves"]


def _one(root: str, index: int, seed: int, recipe: dict) -> int:
    cache = ExitWaveCache(root)
    cache.get_or_compute(index, seed, StructureRecipe.from_dict(recipe), MultisliceSettings())
    return index


def simulate_waves(root: Path, n_structures: int, recipe: StructureRecipe, *, seed: int,
                   workers: int, deadline: Deadline, log: logging.Logger) -> list[int]:
    """Compute (or find cached) exit waves ``0 … n_structures-1`` until ``deadline``.

    Parameters
    ----------
    root : Path
        Cache folder.
    n_structures : int
        Structures wanted.
    recipe : StructureRecipe
        Ranges of the structures (Table 1, or wider).
    seed : int
        Master seed (structure ``i`` draws from ``SeedSequence(seed, spawn_key=(i, 0))``).
    workers : int
        Worker processes (1: in this process).
    deadline : Deadline
        When to stop: running workers are terminated, finished entries kept.
    log : logging.Logger

    Returns
    -------
    list of int
        Indices with a finished entry, sorted.
    """
    cache = ExitWaveCache(root)
    todo = [i for i in range(int(n_structures)) if not cache.has(i)]
    start = time.monotonic()
    args = (str(root), seed, recipe.to_dict())
    if int(workers) <= 1:
        for index in todo:
            if deadline.expired():
                break
            _one(args[0], index, seed, args[2])
    elif todo:
        context = multiprocessing.get_context("spawn")
        pool = context.Pool(int(workers), maxtasksperchild=50)
        try:
            pending = [pool.apply_async(_one, (args[0], i, seed, args[2])) for i in todo]
            while not deadline.expired() and not all(p.ready() for p in pending):
                time.sleep(min(0.5, max(0.01, deadline.left_s())))
            failed = [i for i, job in zip(todo, pending, strict=True)
                      if job.ready() and not job.successful()]
            if failed:
                try:
                    pending[todo.index(failed[0])].get()
                except Exception as error:  # noqa: BLE001 - reported, the others are used
                    log.error("exit waves: %d structures failed (first, %d: %s)",
                              len(failed), failed[0], error)
        finally:
            pool.terminate()
            pool.join()
    done = [i for i in range(int(n_structures)) if cache.has(i)]
    log.info("exit waves: %d of %d ready (%d computed in %.0f s with %d workers)",
             len(done), n_structures, len(done) - (n_structures - len(todo)),
             time.monotonic() - start, workers)
    return done


@dataclass(frozen=True)
class Wave:
    """One cached exit wave, its geometry and its truth mask."""

    index: int
    wave: np.ndarray
    mask: np.ndarray
    geometry: StructureGeometry


def load_waves(root: Path, indices: list[int]) -> list[Wave]:
    """Read cached exit waves into memory (complex64; 1 000 waves of 700² are ~4 GB)."""
    cache = ExitWaveCache(root)
    waves = []
    for index in indices:
        entry = cache.load(index)
        waves.append(Wave(index, entry.exit_wave, entry.mask, entry.geometry))
    return waves
