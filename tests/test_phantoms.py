"""Phantom fields, scintillator excess noise and the phantom training source (issue 16)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from denoise_data import fake_simulated_dataset
from napari_lowdose.noise.synthesis import apply_detector_noise
from napari_lowdose.simulate.phantoms import PHANTOM_KINDS, phantom_image
from napari_lowdose.train.denoise_phantoms import ExcessNoise, MixedPairs, PhantomPairs
from napari_lowdose.train.denoise_simulated import SimulatedPairs
from napari_lowdose.train.loop import TrainingError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("kind", [*PHANTOM_KINDS, None])
def test_phantoms_have_the_shape_range_and_seed_they_are_asked_for(kind):
    image = phantom_image((70, 90), 3, kind=kind)
    assert image.shape == (70, 90) and image.dtype == np.float32
    assert np.all(np.isfinite(image)) and image.min() >= 0.02
    assert np.array_equal(image, phantom_image((70, 90), 3, kind=kind))
    assert not np.array_equal(image, phantom_image((70, 90), 4, kind=kind))


def test_phantom_statistics_vacuum_is_one_and_matter_darkens():
    images = [phantom_image((128, 128), seed) for seed in range(40)]
    vacuum = [np.mean(np.abs(im - 1.0) < 1e-3) for im in images]
    # Many fields show vacuum (intensity exactly 1 away from matter) ...
    assert sum(v > 0.2 for v in vacuum) >= 8
    # ... and mass-thickness contrast only darkens: no field is brighter than vacuum overall.
    assert all(np.median(im) <= 1.01 for im in images)
    assert sum(im.min() < 0.7 for im in images) >= 10  # thick particles are dark


def test_aggregates_are_clusters_of_particles_of_2_to_30_px():
    sizes = []
    for seed in range(10):
        image = phantom_image((256, 256), seed, kind="aggregates")
        background = np.median(image)
        labels, n = ndimage.label(image < background - 0.05)
        sizes += list(np.bincount(labels.ravel())[1:])
    diameters = 2 * np.sqrt(np.array(sizes) / np.pi)
    assert len(diameters) >= 10
    assert np.median(diameters) >= 2 and np.percentile(diameters, 25) <= 30


def test_support_fields_carry_smooth_texture():
    for seed in range(5):
        image = phantom_image((128, 128), seed, kind="support")
        smooth = ndimage.gaussian_filter(image, 3.0)
        assert image.std() > 0.005 and smooth.std() > 0.3 * image.std()


def test_phantom_refuses_tiny_frames_and_unknown_kinds():
    with pytest.raises(ValueError, match="8×8"):
        phantom_image((4, 64), 0)
    with pytest.raises(ValueError, match="unknown phantom kind"):
        phantom_image((32, 32), 0, kind="lattices")


# --- excess noise (beyond Eq. 3) ------------------------------------------------------------


def _flat_noise(n_d, **options):
    # c0 = 50: an MTF of ~1 up to the corners, so only the excess shapes the noise.
    frames = apply_detector_noise(np.ones((4, 128, 128)), n_d, 1.0, c0=50.0, c3=5.0,
                                  n0_e_per_px=0.0, rng=1, workers=1, **options)
    return frames.mean(), frames.var()


@pytest.mark.parametrize("options,factor", [({}, 1.0), ({"gain_spread": 1.5}, 2.5),
                                            ({"white_excess": 2.0}, 3.0),
                                            ({"gain_spread": 1.0, "white_excess": 1.0}, 3.0)])
def test_excess_noise_scales_the_variance_and_keeps_the_mean(options, factor):
    mean, var = _flat_noise(20.0, **options)
    assert mean == pytest.approx(20.0, rel=0.01)
    assert var / 20.0 == pytest.approx(factor, rel=0.05)


def test_excess_noise_reproduces_the_oneview_pair():
    """c0 0.7, c3 1, γ 1.5, κ 2: pixel variance ≈ 2.6 N_D, power at Nyquist ≈ 0.55 of
    the low-frequency power (shared/data/real-oneview/README.md)."""
    n_d = 4.6
    frames = apply_detector_noise(np.ones((6, 256, 256)), n_d, 1.0, c0=0.7, c3=1.0,
                                  n0_e_per_px=0.01, rng=2, workers=1, gain_spread=1.5,
                                  white_excess=2.0)
    assert frames.var() / n_d == pytest.approx(2.6, rel=0.1)
    power = np.mean([np.abs(np.fft.fft2(f - f.mean())) ** 2 for f in frames], axis=0)
    q = 2 * np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    low, nyquist = power[(q > 0.02) & (q < 0.1)].mean(), power[(q > 0.95) & (q < 1)].mean()
    assert nyquist / low == pytest.approx(0.55, abs=0.08)
    # Eq. 3 alone at the same MTF: a far smaller pixel variance, a steeper spectrum.
    plain = apply_detector_noise(np.ones((256, 256)), n_d, 1.0, c0=0.7, c3=1.0,
                                 n0_e_per_px=0.01, rng=2, workers=1)
    assert plain.var() / n_d < 0.5


def test_excess_noise_options_must_be_non_negative():
    with pytest.raises(ValueError, match="non-negative"):
        apply_detector_noise(np.ones((8, 8)), 1.0, 1.0, c0=0.5, c3=2, n0_e_per_px=0,
                             gain_spread=-1)


# --- the phantom training source ------------------------------------------------------------


def test_phantom_pairs_are_noisy_frames_of_their_targets_in_e_per_px():
    source = PhantomPairs(24, e_per_px_range=(20.0, 40.0), crop_px=48, seed=5)
    assert len(source) == 24
    noisy, target, e_per_px = source[3]
    assert noisy.shape == target.shape == (1, 48, 48) and noisy.dtype == torch.float32
    # The target: the phantom × e⁻/px, vacuum at most ~40 e⁻/px.
    assert 0 < float(target.max()) <= 40.0 * 1.4 and float(target.min()) > 0
    means = [(float(source[i][0].mean()), float(source[i][1].mean())) for i in range(24)]
    noisy_means, target_means = np.array(means).T
    assert np.mean(noisy_means / target_means) == pytest.approx(1.0, abs=0.03)
    assert 10.0 <= float(e_per_px) <= 60.0


def test_phantom_pairs_draw_anew_each_epoch_and_validation_is_fixed():
    train = PhantomPairs(4, crop_px=32, seed=1)
    first = train[0][0]
    train.set_epoch(1)
    assert not torch.equal(first, train[0][0])
    val = PhantomPairs(4, crop_px=None, augment=False, seed=2)
    a = val[1][0]
    val.set_epoch(3)
    assert torch.equal(a, val[1][0]) and a.shape == (1, 256, 256)


def test_plain_fraction_one_is_eq3_alone():
    rng = np.random.default_rng(0)
    assert ExcessNoise(plain_fraction=1.0).sample(rng) == (0.0, 0.0)
    spread, white = ExcessNoise(plain_fraction=0.0).sample(rng)
    assert 0 <= spread <= 2 and 0 <= white <= 4
    with pytest.raises(TrainingError):
        ExcessNoise(gain_spread_range=(2.0, 1.0))


def test_mixed_pairs_interleave_sources_and_describe_them(tmp_path):
    data = fake_simulated_dataset(tmp_path / "ds")
    phantoms = PhantomPairs(5, crop_px=32, seed=0)
    waves = SimulatedPairs(data, "train", crop_px=32, images_per_wave=1)
    mixed = MixedPairs([phantoms, waves])
    assert len(mixed) == 5 + len(waves)
    assert torch.equal(mixed[0][0], phantoms[0][0]) and torch.equal(mixed[1][0], waves[0][0])
    mixed.set_epoch(2)
    assert phantoms.epoch == 2 and waves.epoch == 2
    described = mixed.describe()
    assert [s["kind"] for s in described["sources"]] == ["phantoms", "simulated"]
    assert described["trained_e_per_px_range"] == [0.05, 100.0]
    assert described["path"] == str(data.resolve()) and mixed.card == waves.card
