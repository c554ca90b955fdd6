"""Streaming a simulated dataset (issue 4's zarr layout) into training batches.

Each item is one image epoch of one structure: the frame is standardised as a
whole (the same normalisation as at inference:
:func:`napari_lowdose.models.normalisation.standardise`), then — for training —
cut to a random ``crop_px`` square and flipped / rotated by a random multiple
of 90° (Larsen et al. 2023: random flips and 90° rotations), the same
for the mask. Validation items are the central ``crop_px`` square (or the whole
frame) without augmentation.

Randomness comes from ``SeedSequence(seed, spawn_key=(epoch, index))``: the same
seed and epoch give the same batches whatever the number of loader workers.
Frames are read from zarr one chunk (one image) at a time, so a dataset larger
than memory streams.
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..models.normalisation import standardise
from ..simulate.recipe import DatasetError, open_dataset

__all__ = ["SegmentationDataset"]


class SegmentationDataset(Dataset):
    """Images and masks of one split of a simulated dataset.

    Parameters
    ----------
    path : str or Path
        Dataset folder (with ``card.json`` and ``data.zarr``).
    split : {"train", "val"}
        Which split.
    crop_px : int or None
        Side of the square crop; None uses the whole frame.
    augment : bool
        Random crop position, flips and 90° rotations (training); otherwise
        the central crop.
    seed : int
        Seed of the augmentation.
    max_items : int or None
        Use only the first ``max_items`` images (e.g. a quick validation).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        *,
        crop_px: int | None = 128,
        augment: bool = True,
        seed: int = 0,
        max_items: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.split = split
        opened = open_dataset(self.path, split)
        self.card: dict[str, Any] = opened["card"]
        if self.card.get("status") != "complete":
            raise DatasetError(f"{self.path} is not a finished dataset (status "
                               f"{self.card.get('status')!r}); finish it with 'simulate' first")
        n_images, height, width = opened["images"].shape
        self.frame_shape = (int(height), int(width))
        self.n_items = n_images if max_items is None else min(n_images, int(max_items))
        if crop_px is not None and (crop_px < 8 or crop_px > min(height, width)):
            raise DatasetError(
                f"crop of {crop_px} px does not fit the {height}×{width} images of {self.path}"
            )
        self.crop_px = crop_px
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self._arrays: tuple[Any, Any] | None = None

    def __len__(self) -> int:
        return self.n_items

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draws of ``epoch``."""
        self.epoch = int(epoch)

    def _open(self) -> tuple[Any, Any]:
        # Opened lazily so that each loader worker process opens its own handles.
        if self._arrays is None:
            opened = open_dataset(self.path, self.split)
            self._arrays = (opened["images"], opened["masks"])
        return self._arrays

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = self._open()
        image = standardise(torch.from_numpy(np.array(images[index], dtype=np.float32))).numpy()
        mask = np.asarray(masks[index], dtype=np.float32)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed,
                                                           spawn_key=(self.epoch, index)))
        image, mask = self._crop(image, mask, rng)
        if self.augment:
            k = int(rng.integers(4))
            flip = bool(rng.integers(2))
            image, mask = np.rot90(image, k), np.rot90(mask, k)
            if flip:
                image, mask = image[:, ::-1], mask[:, ::-1]
        return (torch.from_numpy(np.ascontiguousarray(image))[None],
                torch.from_numpy(np.ascontiguousarray(mask))[None])

    def _crop(self, image: np.ndarray, mask: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.crop_px is None:
            return image, mask
        height, width = image.shape
        c = self.crop_px
        if self.augment:
            y0, x0 = int(rng.integers(height - c + 1)), int(rng.integers(width - c + 1))
        else:
            y0, x0 = (height - c) // 2, (width - c) // 2
        return image[y0:y0 + c, x0:x0 + c], mask[y0:y0 + c, x0:x0 + c]
