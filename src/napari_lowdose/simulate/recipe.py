"""The recipe of a simulated training dataset, its card, and reading a finished dataset.

A :class:`DatasetRecipe` holds everything a dataset of Larsen et al. (2023),
Section 2 and Tables 1–3, is made from: the number of structures and image
epochs, the master seed, the structure, multislice, optics (Table 1), dose
(Table 2) and detector-noise (Table 3) settings, and the validation split. The
dataset card (``card.json``, :data:`CARD_FORMAT`) stores it, so
``DatasetRecipe.from_dict(card["recipe"])`` regenerates the dataset with
:func:`~.dataset.generate_dataset`, which also describes the folder layout.

:func:`read_card` and :func:`open_dataset` read a dataset folder.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LowdoseError
from ..noise.model import NoiseModel
from ..noise.presets import preset
from .exitwaves import MultisliceSettings
from .optics import DOSE_RANGES_E_PER_A2, TABLE1_OPTICS, OpticsRanges
from .structures import StructureRecipe

__all__ = [
    "CARD_FORMAT",
    "PARAMETER_COLUMNS",
    "DatasetError",
    "DatasetRecipe",
    "open_dataset",
    "read_card",
]

CARD_FORMAT = "napari-lowdose/simulated-dataset"
CARD_VERSION = 1
SPLITS = ("train", "val")
#: Per-image parameter columns (the image record of :func:`.imaging.make_image`
#: plus where the image comes from).
PARAMETER_COLUMNS: tuple[str, ...] = (
    "structure_index",
    "epoch",
    "sampling_A",
    "dose_e_per_A2",
    "electrons_per_px",
    "defocus_A",
    "cs_A",
    "focal_spread_A",
    "blur_A",
    "energy_eV",
    "c0",
    "c3",
    "n0_e_per_px",
    "mask_fraction",
)


class DatasetError(LowdoseError, ValueError):
    """A dataset folder cannot be written or read as asked."""


@dataclass(frozen=True)
class DatasetRecipe:
    """Everything a simulated dataset is made from; the card stores it.

    Parameters
    ----------
    n_structures : int
        Number of structures (exit waves).
    image_epochs : int
        Images per structure, each with fresh optics, dose and noise.
    seed : int
        Master seed.
    structure : StructureRecipe
        Particle, support and grid ranges (``structure.size_px`` is the image size).
    multislice : MultisliceSettings
        Exit-wave settings (300 keV).
    optics : OpticsRanges
        Table 1 optics ranges.
    dose_range_e_per_A2 : (float, float)
        Log-uniform frame-dose range (Table 2: high 10²–10⁶, low 10¹–10⁴).
    noise_model : NoiseModel
        Detector noise ranges (Table 3 preset or a fitted model).
    val_fraction : float
        Fraction of structures held out for validation.
    """

    n_structures: int
    image_epochs: int
    seed: int = 0
    structure: StructureRecipe = field(default_factory=StructureRecipe)
    multislice: MultisliceSettings = field(default_factory=MultisliceSettings)
    optics: OpticsRanges = TABLE1_OPTICS
    dose_range_e_per_A2: tuple[float, float] = DOSE_RANGES_E_PER_A2["high"]
    noise_model: NoiseModel = field(default_factory=lambda: preset("MTF 4"))
    val_fraction: float = 0.05

    def __post_init__(self) -> None:
        if int(self.n_structures) < 1 or int(self.image_epochs) < 1:
            raise DatasetError("the number of structures and of image epochs must be >= 1")
        low, high = self.dose_range_e_per_A2
        if not 0 < low <= high:
            raise DatasetError(f"dose range must satisfy 0 < low <= high, got {(low, high)}")
        if not 0 <= self.val_fraction < 1:
            raise DatasetError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if int(self.seed) < 0:
            raise DatasetError(f"seed must be >= 0, got {self.seed}")

    @property
    def n_val_structures(self) -> int:
        """Validation structures: ``round(val_fraction · n)``, at least 1 when asked for any."""
        if self.val_fraction == 0 or self.n_structures < 2:
            return 0
        n_val = max(1, round(self.val_fraction * self.n_structures))
        return int(min(self.n_structures - 1, n_val))

    def split_of(self, index: int) -> tuple[str, int]:
        """Split name and first row of structure ``index``'s images in that split."""
        n_train = self.n_structures - self.n_val_structures
        if index < n_train:
            return "train", index * self.image_epochs
        return "val", (index - n_train) * self.image_epochs

    def n_images(self, split: str) -> int:
        """Number of images in ``split``."""
        n_val = self.n_val_structures
        n = n_val if split == "val" else self.n_structures - n_val
        return n * self.image_epochs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the ``recipe`` of the card)."""
        return {
            "n_structures": int(self.n_structures),
            "image_epochs": int(self.image_epochs),
            "seed": int(self.seed),
            "structure": self.structure.to_dict(),
            "multislice": self.multislice.to_dict(),
            "optics": self.optics.to_dict(),
            "dose_range_e_per_A2": [float(v) for v in self.dose_range_e_per_A2],
            "noise_model": self.noise_model.to_dict(),
            "val_fraction": float(self.val_fraction),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DatasetRecipe":
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                n_structures=int(values["n_structures"]),
                image_epochs=int(values["image_epochs"]),
                seed=int(values["seed"]),
                structure=StructureRecipe.from_dict(values["structure"]),
                multislice=MultisliceSettings(**values["multislice"]),
                optics=OpticsRanges.from_dict(values["optics"]),
                dose_range_e_per_A2=tuple(float(v) for v in values["dose_range_e_per_A2"]),
                noise_model=NoiseModel.from_dict(values["noise_model"]),
                val_fraction=float(values["val_fraction"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"invalid dataset recipe: {error}") from error

    def same_images_as(self, other: "DatasetRecipe") -> bool:
        """Whether two recipes make the same images (worker threads do not matter)."""
        mine, theirs = self.to_dict(), other.to_dict()
        for values in (mine, theirs):
            values["multislice"].pop("fftw_threads", None)
        return json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True)


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``card.json`` of a dataset folder (or the card file itself)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist; give a dataset folder made with "
                           "'napari-lowdose simulate'")
    card_path = path / "card.json" if path.is_dir() else path
    if not card_path.is_file():
        raise DatasetError(f"{path} has no dataset card (card.json); make a dataset with "
                           "'napari-lowdose simulate'")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        if not path.is_dir() and card_path.suffix.lower() != ".json":
            raise DatasetError(f"{path} is a file, not a dataset: give a dataset folder made "
                               "with 'napari-lowdose simulate'") from error
        raise DatasetError(f"cannot read dataset card {card_path}: {error}") from error
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise DatasetError(f"{card_path} is not a napari-lowdose dataset card")
    return card


def open_dataset(path: str | os.PathLike, split: str = "train") -> dict[str, Any]:
    """Open one split of a finished dataset for reading (lazy zarr arrays).

    Returns
    -------
    dict
        ``images`` and ``masks`` (zarr arrays), ``params`` (dict of 1-D numpy
        arrays) and ``card``.
    """
    import zarr

    card = read_card(path)
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
    group = zarr.open_group(Path(path) / "data.zarr", mode="r")[split]
    params = {name: np.asarray(group["params"][name]) for name in PARAMETER_COLUMNS}
    return {"images": group["images"], "masks": group["masks"], "params": params, "card": card}
