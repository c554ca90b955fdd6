"""The one tiling rule (models/tiling.py): how many tiles, what they cost, and no seams."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_lowdose.models import MSDNet
from napari_lowdose.models.denoising import denoise_frame
from napari_lowdose.models.inference import predict_probabilities
from napari_lowdose.models.registry import load_denoiser
from napari_lowdose.models.tiling import (
    AUTO_TILE_MAX_PIXELS,
    AUTO_TILE_PX,
    model_tile_plan,
    plan_tiles,
    tile_plan,
)

sys.path.insert(0, str(Path(__file__).parent))
from denoise_data import clean_lattice, noisy_copies  # noqa: E402


@pytest.fixture(scope="module")
def denoiser():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, _ = load_denoiser("denoiser-au-ceo2")
    yield model
    torch.set_num_threads(threads)


def test_a_384_frame_in_128_tiles_costs_under_one_and_a_half_passes(denoiser):
    plan = model_tile_plan(denoiser, (384, 384), 128)
    # The former rule (48 px overlap, fixed step) made 81 tiles: ~9× the work.
    assert plan.n_tiles == 16 and plan.largest_tile_px <= 128
    assert 1.0 < plan.work < 1.5
    assert plan.describe() == (
        f"16 tiles of ≤ {plan.largest_tile_px} px ({plan.overlap_px} px overlap), "
        f"{plan.work:.2f}× the work of one pass")
    whole = model_tile_plan(denoiser, (384, 384), 512)
    assert whole.tiles is None and whole.work == 1.0 and "whole frames" in whole.describe()


@pytest.mark.parametrize("tile_px", [128, 192, 256, 512, 1024])
@pytest.mark.parametrize("length", [300, 384, 777, 1024, 2048, 4096])
def test_the_default_overlap_keeps_the_extra_work_small(denoiser, tile_px, length):
    plan = model_tile_plan(denoiser, (length, length - 37), tile_px)
    if plan.tiles is not None:
        assert plan.work < 1.5
        assert plan.largest_tile_px <= tile_px


@pytest.mark.parametrize("seed", range(20))
def test_tiles_cover_every_pixel_on_the_pooling_grid(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(40, 600, 2))
    tile = int(rng.integers(40, 300))
    align = int(rng.choice([1, 4, 8]))
    overlap = int(rng.integers(0, (tile - align) // 2))
    total = np.zeros(shape)
    for rows, cols, weight in plan_tiles(shape, tile, overlap, align=align):
        assert rows.start % align == 0 and cols.start % align == 0
        assert rows.stop - rows.start <= tile and cols.stop - cols.start <= tile
        total[rows, cols] += weight
    assert total.min() > 0.1


def test_auto_tiles_only_frames_that_do_not_fit():
    side = int(np.sqrt(AUTO_TILE_MAX_PIXELS))
    assert tile_plan((side, side), "auto").tiles is None
    plan = tile_plan((side + 8, side), "auto", align=8, radius_px=58)
    assert plan.tile_px == AUTO_TILE_PX and plan.n_tiles == 9 and plan.work < 1.5
    with pytest.raises(ValueError, match="'auto' or None"):
        tile_plan((10, 10), "big")


def test_tiled_denoising_matches_the_whole_frame_within_its_own_error(denoiser):
    clean = clean_lattice((384, 384))
    e_per_px = 5.0
    frame = noisy_copies(clean, e_per_px, 1)[0]
    whole = denoise_frame(denoiser, frame, expected_e_per_px=e_per_px, device="cpu")
    tiled = denoise_frame(denoiser, frame, expected_e_per_px=e_per_px, device="cpu",
                          tile_px=128)
    error = np.sqrt(np.mean((whole - e_per_px * clean) ** 2))
    error_tiled = np.sqrt(np.mean((tiled - e_per_px * clean) ** 2))
    seams = tiled - whole
    assert not np.array_equal(tiled, whole)  # really tiled
    assert np.sqrt(np.mean(seams**2)) < 0.15 * error  # far below the denoiser's own error
    assert np.abs(seams).max() < 0.06 * np.ptp(whole)
    assert error_tiled < 1.02 * error


def test_segmentation_uses_the_same_rule_and_is_exact_within_the_receptive_field():
    # Receptive-field radius 4 px: the default overlap of 100-px tiles (8 px) covers it.
    model = MSDNet(depth=3, width=2, kernel_size=3, dilations=[1, 2, 1], init_seed=1)
    rng = np.random.default_rng(0)
    frames = (100 + 10 * rng.normal(size=(1, 230, 190))).astype(np.float32)
    plan = model_tile_plan(model, frames.shape[1:], 100)
    assert plan.overlap_px == 8 and plan.n_tiles == 9
    whole = dict(predict_probabilities(model, frames, device="cpu"))[0]
    tiled = dict(predict_probabilities(model, frames, device="cpu", tile_px=100))[0]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
