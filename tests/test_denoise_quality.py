"""The quality readout with no clean reference (unbiased MSE from a pair), against truth."""

import numpy as np
import pytest
from scipy import ndimage

from napari_lowdose.analysis.denoise_quality import (
    best_gaussian,
    noise_variance_from_pair,
    psnr_from_mse,
    quality_readout,
    unbiased_mse,
)
from napari_lowdose.analysis.denoise_quality_runs import series_quality


def _field(shape=(256, 256), seed=0) -> np.ndarray:
    """A smooth positive field: blobs on a background (expected electrons per pixel)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 2.0)
    field = (field - field.min()) / (field.max() - field.min())
    return 2.0 + 8.0 * field


@pytest.fixture(scope="module")
def pair():
    clean = _field((512, 512))
    rng = np.random.default_rng(1)
    gain = 3.0
    a = rng.poisson(clean).astype(float) * gain
    b = rng.poisson(clean).astype(float) * gain
    return clean * gain, a, b


def test_the_pair_gives_the_noise_variance_of_the_second_frame(pair):
    clean, a, b = pair
    truth = float(np.mean((b - clean) ** 2))
    assert noise_variance_from_pair(a, b) == pytest.approx(truth, rel=0.03)


def test_unequal_doses_give_the_scaled_frames_noise_variance():
    clean = _field(seed=3)
    rng = np.random.default_rng(4)
    a = rng.poisson(2.0 * clean).astype(float)
    b = rng.poisson(clean).astype(float)
    r = float(a.mean() / b.mean())
    truth = float(np.mean((r * b - 2.0 * clean) ** 2))
    assert noise_variance_from_pair(a, b) == pytest.approx(truth, rel=0.04)


@pytest.mark.parametrize("sigma", [0.0, 0.7, 1.0, 2.5])
def test_the_unbiased_mse_matches_the_true_mse_against_the_clean_image(pair, sigma):
    clean, a, b = pair
    estimate = ndimage.gaussian_filter(a, sigma) if sigma else a
    true_mse = float(np.mean((estimate - clean) ** 2))
    variance = noise_variance_from_pair(a, b)
    found = unbiased_mse(estimate, b, variance)
    # Its statistical error is about var(noise) · √(2 / pixels), whatever the estimate.
    assert abs(found - true_mse) < 3 * variance * np.sqrt(2 / a.size)
    if sigma < 1:  # an MSE not far below the noise variance: within a few %
        assert found == pytest.approx(true_mse, rel=0.05)


def test_the_gaussian_search_finds_the_width_the_clean_image_prefers(pair):
    clean, a, b = pair
    sigmas = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    variance = noise_variance_from_pair(a, b)
    sigma, mse = best_gaussian(a, b, variance, sigmas_px=sigmas)
    truths = {s: float(np.mean((ndimage.gaussian_filter(a, s, mode="reflect") - clean) ** 2))
              for s in sigmas}
    best = min(truths, key=truths.get)
    assert abs(sigmas.index(sigma) - sigmas.index(best)) <= 1
    assert abs(mse - truths[sigma]) < 3 * variance * np.sqrt(2 / a.size)
    assert 1.0 <= sigma <= 4.0


def test_the_readout_ranks_raw_gaussian_and_a_better_estimate(pair):
    clean, a, b = pair
    shifted = np.roll(b, (3, -2), axis=(0, 1))  # the second exposure drifted
    # An estimate better than any Gaussian: half the way from the best Gaussian to truth.
    readout = quality_readout(a, None, shifted)
    sigma = readout.gaussian.sigma_px
    better = 0.5 * (ndimage.gaussian_filter(a, sigma) + clean)
    readout = quality_readout(a, better, shifted)
    assert readout.shift_px == (-3, 2)
    cut = (slice(0, 509), slice(2, 512))
    assert readout.raw.mse == pytest.approx(np.mean((a - clean)[cut] ** 2), rel=0.05)
    error = 3 * readout.noise_variance * np.sqrt(2 / readout.n_px)
    assert abs(readout.denoised.mse - np.mean((better - clean)[cut] ** 2)) < error
    assert readout.raw.mse > readout.gaussian.mse > readout.denoised.mse
    assert 0.1 < readout.ratio_to_gaussian < 0.6
    assert readout.peak == pytest.approx(a[cut].mean())
    assert readout.raw.psnr_db == pytest.approx(psnr_from_mse(readout.raw.mse, readout.peak))
    assert readout.raw.mse_normalised == pytest.approx(readout.raw.mse / readout.peak**2)
    record = readout.to_dict()
    assert record["denoised"]["mse"] == readout.denoised.mse and "method" in record
    assert "Gaussian" in readout.summary()


def test_a_box_judges_only_its_pixels(pair):
    clean, a, b = pair
    noisy_half = a.copy()
    noisy_half[:256] = clean[:256]  # a perfect estimate on the top half only
    top = quality_readout(a, noisy_half, b, box=(0, 256, 0, 512), register=False)
    bottom = quality_readout(a, noisy_half, b, box=(256, 512, 0, 512), register=False)
    assert abs(top.denoised.mse) < 3 * top.noise_variance * np.sqrt(2 / top.n_px)
    assert abs(top.denoised.mse) < 0.2 * top.gaussian.mse
    assert bottom.denoised.mse == pytest.approx(bottom.raw.mse)
    assert top.n_px == bottom.n_px == 256 * 512


def test_a_series_is_judged_frame_against_next():
    clean = _field((256, 256), seed=5)
    rng = np.random.default_rng(6)
    frames = np.stack([rng.poisson(clean).astype(float) for _ in range(4)])
    denoised = np.stack([ndimage.gaussian_filter(f, 1.5) for f in frames])
    readout = series_quality(frames, denoised)
    assert readout.n_pairs == 3
    true_mse = np.mean([(d - clean) ** 2 for d in denoised[:3]])
    assert readout.shift_px == (0, 0)
    error = 3 * readout.noise_variance * np.sqrt(2 / readout.n_px)
    assert abs(readout.denoised.mse - true_mse) < error < 0.3 * true_mse
    assert series_quality(np.stack([frames[0], 5 * frames[1]]), None) is None


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        quality_readout(np.ones((16, 16)), None, np.ones((16, 17)))
    with pytest.raises(ValueError, match="positive"):
        noise_variance_from_pair(np.zeros((16, 16)), np.ones((16, 16)))


def test_the_standard_error_grows_with_correlated_noise(pair):
    clean, a, b = pair
    white = quality_readout(a, None, b, register=False)
    assert white.standard_error == pytest.approx(
        white.noise_variance * np.sqrt(2 / white.n_px), rel=0.1)
    rng = np.random.default_rng(9)
    # Noise blurred over ~2 px: fewer independent pixels, a larger error for the same variance.
    blurred = [clean + ndimage.gaussian_filter(rng.normal(size=clean.shape), 1.0) * 20
               for _ in range(2)]
    correlated = quality_readout(*blurred[:1], None, blurred[1], register=False)
    ratio = correlated.standard_error / correlated.noise_variance
    assert ratio > 2 * white.standard_error / white.noise_variance  # √(Σρ²) ≈ 2.5


def test_the_summary_says_when_a_score_is_below_the_readouts_precision():
    from napari_lowdose.analysis.denoise_quality import QualityReadout, Score

    def score(mse, sigma=None):
        return Score(mse, mse / 100.0**2, psnr_from_mse(mse, 100.0), sigma)

    readout = QualityReadout(raw=score(8000.0), gaussian=score(-226.0, 3.0),
                             denoised=score(150.0), ratio_to_gaussian=None,
                             noise_variance=8000.0, peak=100.0, shift_px=(0, 0),
                             dose_ratio=1.0, n_px=10_000, standard_error=280.0)
    line = readout.summary()
    assert "inf dB" not in line and "nan" not in line
    assert line.count("not resolved") == 2  # the Gaussian (negative) and the denoiser
    assert "denoised" in line and "800 (" in line  # raw: 8000 / 100² × 10³


def test_the_ratio_is_given_with_the_range_the_offset_s_error_allows(pair):
    """The ratio to the Gaussian moves with the common offset of both MSEs: the readout
    gives the range over ±1 standard error, which holds the true ratio (against the clean
    image) on a small judged region, and is printed in the summary, the record and the
    training log's line."""
    from napari_lowdose.analysis.denoise_quality import ratio_interval
    from napari_lowdose.train.denoiser import readout_line

    clean, a, b = pair
    box = (0, 64, 0, 64)  # a small region: a wide range
    sigma = quality_readout(a, None, b, register=False, box=box).gaussian.sigma_px
    gaussian = ndimage.gaussian_filter(a, sigma)
    better = 0.7 * gaussian + 0.3 * clean  # truly 0.7² = 0.49× the Gaussian's MSE
    readout = quality_readout(a, better, b, register=False, box=box)
    low, high = readout.ratio_interval
    cut = (slice(0, 64), slice(0, 64))
    true_ratio = (np.mean((better - clean)[cut] ** 2)
                  / np.mean((gaussian - clean)[cut] ** 2))
    assert true_ratio == pytest.approx(0.49)
    assert low < readout.ratio_to_gaussian < high and low < true_ratio < high
    assert abs(readout.ratio_to_gaussian - true_ratio) > 0.05  # the point alone misleads
    assert f"({low:.2f}–{high:.2f} within the offset's error)" in readout.summary()
    record = readout.to_dict()
    assert record["ratio_interval"] == [low, high]
    assert f"({low:.2f}–{high:.2f}" in readout_line(record)
    # No range when the Gaussian's MSE is within the error of zero.
    assert ratio_interval(10.0, 50.0, 60.0) is None
    assert ratio_interval(-5.0, 200.0, 10.0)[0] < 0 < ratio_interval(-5.0, 200.0, 10.0)[1]
