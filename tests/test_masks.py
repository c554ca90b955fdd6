"""Thresholding and clean-up of probability maps (analysis.masks)."""

import numpy as np
import pytest

from napari_lowdose.analysis.masks import MaskCleaning, clean_mask, probability_mask


def _disk(shape, centre, radius):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


@pytest.fixture
def noisy_particle():
    """A particle (disk with a hole) plus two false-positive blobs, and the truth."""
    truth = _disk((96, 80), (50, 40), 20)
    mask = truth.copy()
    mask[48:52, 38:42] = False  # a hole inside the particle
    mask[2:6, 2:6] = True  # 16-px blob
    mask[85:95, 60:78] = True  # 180-px blob
    return mask, truth


def test_no_cleaning_is_plain_threshold():
    rng = np.random.default_rng(0)
    probability = rng.random((33, 47)).astype(np.float32)
    np.testing.assert_array_equal(probability_mask(probability, 0.7), probability >= 0.7)
    np.testing.assert_array_equal(
        probability_mask(probability, 0.7, MaskCleaning()), probability >= 0.7)


def test_keep_largest_and_fill_holes_recover_the_particle(noisy_particle):
    mask, truth = noisy_particle
    before = mask.copy()
    cleaned = clean_mask(mask, MaskCleaning(keep_largest=True, fill_holes=True))
    np.testing.assert_array_equal(cleaned, truth)
    np.testing.assert_array_equal(mask, before)  # the input is not modified


def test_min_area_drops_only_small_regions(noisy_particle):
    mask, truth = noisy_particle
    cleaned = clean_mask(mask, MaskCleaning(min_area_px=17))
    expected = mask.copy()
    expected[2:6, 2:6] = False  # 16 px < 17: dropped; the 180-px blob and the hole stay
    np.testing.assert_array_equal(cleaned, expected)
    np.testing.assert_array_equal(clean_mask(mask, MaskCleaning(min_area_px=16)), mask)


def test_diagonal_neighbours_are_one_region():
    mask = np.zeros((10, 10), bool)
    mask[np.arange(6), np.arange(6)] = True  # a 6-px diagonal line
    mask[8, 0] = True
    cleaned = clean_mask(mask, MaskCleaning(keep_largest=True))
    assert cleaned.sum() == 6 and not cleaned[8, 0]


def test_empty_mask_stays_empty():
    empty = np.zeros((16, 16), bool)
    for rules in (MaskCleaning(keep_largest=True, fill_holes=True), MaskCleaning(min_area_px=5)):
        assert not clean_mask(empty, rules).any()


def test_min_area_from_nm2_uses_pixel_size():
    rules = MaskCleaning.from_area_nm2(0.01, pixel_size_A=0.5, keep_largest=True)
    assert rules.min_area_px == 4 and rules.keep_largest  # 0.01 nm² / 0.0025 nm² per px
    assert MaskCleaning.from_area_nm2(0.0, None).min_area_px == 0
    with pytest.raises(ValueError, match="pixel size"):
        MaskCleaning.from_area_nm2(0.5, None)
    with pytest.raises(ValueError, match=">= 0"):
        MaskCleaning.from_area_nm2(-1.0, 0.5)


def test_settings_round_trip_through_dict():
    rules = MaskCleaning(keep_largest=True, fill_holes=False, min_area_px=12)
    assert MaskCleaning.from_dict(rules.to_dict()) == rules
    assert MaskCleaning.from_dict(None) == MaskCleaning()
    assert not MaskCleaning().active and MaskCleaning(fill_holes=True).active
