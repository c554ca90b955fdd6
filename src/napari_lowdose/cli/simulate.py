"""``napari-lowdose simulate``: a simulated training dataset (Larsen et al., Sec. 2, Table 1).

Kept apart from :mod:`napari_lowdose.cli` so that the other commands start
without importing abTEM and dask.distributed.
"""

import argparse
import os
import shlex
import sys
from pathlib import Path

from ..errors import LowdoseError, one_line
from ._common import progress_bar

__all__ = ["add_simulate_parser", "cmd_simulate"]


class SimulateUsageError(LowdoseError):
    """A simulate option has a bad value."""


def _pair(text: str, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise SimulateUsageError(f"{name} {text!r} must look like LO,HI") from None
    if not 0 < low <= high:
        raise SimulateUsageError(f"{name} {text!r} must satisfy 0 < LO <= HI")
    return low, high


def dose_range_argument(text: str) -> tuple[float, float]:
    """``high``/``low`` (Table 2) or ``LO,HI`` in e⁻/Å²."""
    from ..simulate.optics import DOSE_RANGES_E_PER_A2

    if text.lower() in DOSE_RANGES_E_PER_A2:
        return DOSE_RANGES_E_PER_A2[text.lower()]
    return _pair(text, "--dose-range")


def noise_model_argument(text: str):
    """A preset name (``MTF4``, ``"MTF 4"``, ``DIRECT``, ``WIDE``) or a ``noise_model.json``
    file."""
    from ..noise.model import NoiseModel
    from ..noise.presets import preset

    path = Path(text)
    if path.is_dir():  # the folder fit-noise wrote: its noise model
        if not (path / "noise_model.json").is_file():
            raise SimulateUsageError(f"{text} is a folder without a noise_model.json (the file "
                                     "napari-lowdose fit-noise writes)")
        path = path / "noise_model.json"
    if path.suffix.lower() == ".json" or os.sep in text or path.name != text:
        if not path.is_file():
            raise SimulateUsageError(f"noise model file {text} does not exist")
        try:
            model = NoiseModel.from_json(path)
        except (OSError, ValueError, KeyError) as error:
            reason = one_line(error).removeprefix(f"{path}: ")
            raise SimulateUsageError(f"{path} is not a noise model file: {reason}") from None
        for note in model.implausible():
            print(f"napari-lowdose: warning: {path}: {note}: is this the detector you mean?",
                  file=sys.stderr)
        return model
    try:
        return preset(text)
    except ValueError as error:
        raise SimulateUsageError(str(error)) from None


def add_simulate_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``simulate`` subcommand."""
    sim = sub.add_parser(
        "simulate",
        help="simulate a training dataset of CeO2-supported Au particles",
        description="Simulate images and masks after Larsen et al. (2023): ASE structures, "
                    "abTEM exit waves (cached), Table 1 optics, detector noise. Rerun the "
                    "same command to resume an interrupted run.",
    )
    sim.add_argument("--out", type=Path, required=True, metavar="DATASET",
                     help="dataset folder (card.json, data.zarr, cache/)")
    sim.add_argument("--structures", type=int, default=100, metavar="N",
                     help="number of structures / exit waves (default 100; paper 1000)")
    sim.add_argument("--image-epochs", type=int, default=10, metavar="K",
                     help="images per structure (default 10)")
    sim.add_argument("--size", type=int, default=640, metavar="PX",
                     help="image side in pixels (default 640)")
    sim.add_argument("--dose-range", default="high", metavar="LO,HI",
                     help="frame dose range in e⁻/Å², log-uniform, or high (10²–10⁶) / "
                          "low (10¹–10⁴) from Table 2 (default high)")
    sim.add_argument("--mtf", default="MTF4", metavar="MTF4|noise_model.json",
                     help="detector noise: preset MTF1–MTF5 (Table 3), DIRECT (a direct "
                          "detector), WIDE (all of these) or a noise model file from "
                          "fit-noise / the Detector noise widget (default MTF4)")
    sim.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    sim.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="W",
                     help="local worker processes (default: all cores; 1 = no dask)")
    sim.add_argument("--scheduler", metavar="ADDRESS",
                     help="dask.distributed scheduler address (e.g. tcp://head:8786); "
                          "the workers must see --out")
    sim.add_argument("--sampling-A", default="0.07,0.08", metavar="LO,HI",
                     help="pixel size range in Å/px (default 0.07,0.08, Table 1)")
    sim.add_argument("--diameter-A", default="15,40", metavar="LO,HI",
                     help="Au particle diameter range in Å (default 15,40)")
    sim.add_argument("--val-fraction", type=float, default=0.05, metavar="F",
                     help="fraction of structures held out for validation (default 0.05)")
    sim.add_argument("--waves-from", type=Path, metavar="DATASET",
                     help="reuse the exit waves of another dataset with the same seed and "
                          "structure options (e.g. to image the same structures at another "
                          "dose range or detector)")
    sim.add_argument("--from-card", type=Path, metavar="CARD",
                     help="regenerate the dataset described by a card.json "
                          "(the other recipe options are ignored)")
    sim.set_defaults(func=cmd_simulate)


def recipe_from_args(args: argparse.Namespace):
    """The :class:`~napari_lowdose.simulate.recipe.DatasetRecipe` that the options describe."""
    from ..simulate.recipe import DatasetRecipe, read_card
    from ..simulate.structures import StructureRecipe

    if args.from_card is not None:
        return DatasetRecipe.from_dict(read_card(args.from_card)["recipe"])
    try:
        structure = StructureRecipe(
            size_px=args.size,
            sampling_range_A=_pair(args.sampling_A, "--sampling-A"),
            diameter_range_A=_pair(args.diameter_A, "--diameter-A"),
        )
    except ValueError as error:
        raise SimulateUsageError(str(error)) from None
    if structure.diameter_note():
        print(f"napari-lowdose: warning: {structure.diameter_note()}", file=sys.stderr)
    return DatasetRecipe(
        n_structures=args.structures,
        image_epochs=args.image_epochs,
        seed=args.seed,
        structure=structure,
        dose_range_e_per_A2=dose_range_argument(args.dose_range),
        noise_model=noise_model_argument(args.mtf),
        val_fraction=args.val_fraction,
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate (or resume) a dataset with a progress bar on stderr."""
    from ..simulate.dataset import generate_dataset
    from ..simulate.exitwaves import FFTW_WISDOM_FILE

    if args.workers < 1:
        raise SimulateUsageError("--workers must be at least 1")
    recipe = recipe_from_args(args)
    command = shlex.join(["napari-lowdose", *sys.argv[1:]]) if sys.argv else None
    bar = progress_bar(recipe.n_structures, unit="structure", desc="simulate")

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        wisdom = None
        if args.from_card is not None:
            card_dir = args.from_card if args.from_card.is_dir() else args.from_card.parent
            wisdom = card_dir / FFTW_WISDOM_FILE
        summary = generate_dataset(args.out, recipe, workers=args.workers,
                                   scheduler_address=args.scheduler, progress=progress,
                                   command=command, fftw_wisdom=wisdom,
                                   waves_from=args.waves_from)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: rerun the same command to resume into {args.out}",
              file=sys.stderr)
        raise
    bar.close()
    n_images = recipe.n_structures * recipe.image_epochs
    print(f"{args.out}: {summary.n_done}/{summary.n_total} structures, {n_images} images "
          f"({recipe.n_images('train')} train, {recipe.n_images('val')} val), "
          f"{summary.n_waves_computed} exit waves computed, {summary.elapsed_s:.1f} s")
    return 0 if summary.complete else 1
