"""Denoiser training pairs, registration, quality metrics and training (issue 7)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from denoise_data import clean_lattice, fake_simulated_dataset, noisy_copies
from napari_lowdose.analysis.image_quality import psnr, ssim
from napari_lowdose.analysis.registration import register_translation, shift_image
from napari_lowdose.models.denoiser import DenoiserUNet
from napari_lowdose.models.denoising import denoise_frame
from napari_lowdose.models.registry import load_denoiser
from napari_lowdose.train.denoise_measured import Noise2NoiseSeries, PairedExposures
from napari_lowdose.train.denoise_simulated import SimulatedPairs
from napari_lowdose.train.denoiser import DenoiserSettings, train_denoiser
from napari_lowdose.train.loop import TrainingError

TINY = {"base_channels": 8, "levels": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fourier_shift(image, shift):
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift)).real


def _smooth_random(shape, seed=0):
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.normal(size=shape), 2.0, mode="wrap")
    return np.clip(1.0 + 0.2 * image / image.std(), 0.0, None)


# --- registration and metrics -------------------------------------------------------------


@pytest.mark.parametrize("shift", [(2.3, -1.6), (-0.45, 0.8), (0.0, 0.0)])
def test_registration_recovers_a_known_subpixel_shift(shift):
    reference = _smooth_random((96, 128))
    moving = _fourier_shift(reference, (-shift[0], -shift[1]))
    found = register_translation(reference, moving, upsample=20)
    assert found == pytest.approx(shift, abs=0.08)
    aligned = shift_image(moving, found)
    assert np.abs(aligned - reference)[8:-8, 8:-8].max() < 0.05


def test_registration_works_on_noisy_frames():
    reference = _smooth_random((128, 128), seed=1)
    rng = np.random.default_rng(0)
    moving = _fourier_shift(reference, (1.7, -2.2))
    noisy_ref = rng.poisson(20 * reference) / 20
    noisy_mov = rng.poisson(20 * np.clip(moving, 0, None)) / 20
    assert register_translation(noisy_ref, noisy_mov) == pytest.approx((-1.7, 2.2), abs=0.15)
    with pytest.raises(ValueError, match="different shapes"):
        register_translation(reference, reference[:-1])


def test_psnr_and_ssim():
    reference = _smooth_random((64, 64))
    span = float(reference.max() - reference.min())
    assert psnr(reference, reference) == float("inf")
    assert ssim(reference, reference) == pytest.approx(1.0)
    noisy = reference + 0.1 * span
    assert psnr(noisy, reference) == pytest.approx(20.0)
    rng = np.random.default_rng(0)
    worse = reference + rng.normal(scale=0.2 * span, size=reference.shape)
    better = reference + rng.normal(scale=0.05 * span, size=reference.shape)
    assert psnr(better, reference) > psnr(worse, reference)
    assert 0 < ssim(worse, reference) < ssim(better, reference) < 1
    with pytest.raises(ValueError, match="data range"):
        psnr(reference, np.ones((64, 64)))


# --- the three pair sources ---------------------------------------------------------------


def test_paired_exposures_register_resample_and_scale_the_long_exposure():
    clean = _smooth_random((128, 128), seed=3)
    short = noisy_copies(clean.astype(np.float32), 10.0, 2, seed=1)  # 10 e⁻/px, electrons
    # The long exposure: shifted by (1.5, -2.25) px, 2× binned, 400 e⁻ per binned px.
    moved = _fourier_shift(clean, (-1.5, 2.25))
    long = 400.0 * moved.reshape(64, 2, 64, 2).mean(axis=(1, 3))
    pairs = PairedExposures(short, long, crop_px=32, crops_per_pair=3, seed=5,
                            short_e_per_px=10.0, long_e_per_px=400.0)
    assert len(pairs) == 6
    for shift in pairs.shifts:
        assert shift == pytest.approx((1.5, -2.25), abs=0.25)
    assert pairs.scales == pytest.approx([10.0 / 400.0] * 2)
    box = pairs.boxes[0]
    inner = (slice(box[0], box[1]), slice(box[2], box[3]))
    target = pairs.target[0][inner]
    assert np.corrcoef(target.ravel(), 10.0 * clean[inner].ravel())[0, 1] > 0.95
    assert target.mean() == pytest.approx(10.0 * clean[inner].mean(), rel=0.02)
    noisy, tgt, e = pairs[0]
    assert noisy.shape == tgt.shape == (1, 32, 32) and float(e) == 10.0
    again = PairedExposures(short, long, crop_px=32, crops_per_pair=3, seed=5,
                            short_e_per_px=10.0, long_e_per_px=400.0)
    assert torch.equal(again[0][0], noisy)
    pairs.set_epoch(1)
    assert not torch.equal(pairs[0][0], noisy)
    # Without doses the long exposure is scaled by the ratio of the means.
    by_means = PairedExposures(short, long, crop_px=32)
    assert by_means.dose_scaling == "means"
    assert by_means.target[0][inner].mean() == pytest.approx(short[0][inner].mean(), rel=0.01)
    with pytest.raises(TrainingError, match="one long exposure per short one"):
        PairedExposures(short, np.stack([long] * 3))
    with pytest.raises(TrainingError, match="does not fit"):
        PairedExposures(short, long, crop_px=127)[0]


def test_simulated_pairs_image_cached_waves_on_the_fly(tmp_path):
    data = fake_simulated_dataset(tmp_path / "ds")
    train = SimulatedPairs(data, "train", crop_px=32, e_per_px_range=(2.0, 2.0),
                           images_per_wave=3, seed=1)
    val = SimulatedPairs(data, "val", crop_px=None, augment=False)
    assert (len(train), len(val)) == (6, 4)  # 2 train waves × 3, 1 val wave × 4
    noisy, target, e = train[4]
    assert noisy.shape == target.shape == (1, 32, 32)
    assert float(e) == pytest.approx(2.0)
    # Target: the noise-free image at the same electrons per pixel as the input.
    assert float(target.mean()) == pytest.approx(float(noisy.mean()), rel=0.2)
    assert float((noisy - target).std()) > 0.5 * np.sqrt(2.0) * 0.3  # noisy, MTF-blurred
    assert float(target.std()) < float(noisy.std())
    assert torch.equal(SimulatedPairs(data, "train", crop_px=32, e_per_px_range=(2.0, 2.0),
                                      images_per_wave=3, seed=1)[4][0], noisy)
    train.set_epoch(1)
    assert not torch.equal(train[4][0], noisy)
    assert val[0][0].shape == (1, 48, 48)
    doses = SimulatedPairs(data, crop_px=16, dose_range_e_per_A2=(160.0, 160.0))
    assert float(doses[0][2]) == pytest.approx(160.0 * 0.25**2)
    assert doses.describe()["kind"] == "simulated"
    assert doses.describe()["trained_e_per_px_range"] == pytest.approx([10.0, 10.0])
    assert train.describe()["trained_e_per_px_range"] == [2.0, 2.0]
    (data / "cache" / "s000001" / "exit_wave.npy").unlink()
    with pytest.raises(TrainingError, match="not cached"):
        SimulatedPairs(data, "train")


def test_noise2noise_pairs_are_registered_and_scaled():
    clean = clean_lattice((96, 96))
    frames = noisy_copies(clean, 200.0, 3, seed=2)
    drift = [(0.0, 0.0), (1.25, -0.5), (-2.3, 1.65)]
    frames = np.stack([_fourier_shift(f, d) for f, d in zip(frames, drift, strict=True)])
    frames[2] *= 2.0  # twice the dose
    series = Noise2NoiseSeries(frames, crop_px=32, crops_per_pair=2, max_frame_gap=2)
    assert len(series.pairs) == 6 and len(series) == 12
    relative = np.subtract(series.shifts[1], series.shifts[0])
    assert relative == pytest.approx((-1.25, 0.5), abs=0.15)
    relative = np.subtract(series.shifts[2], series.shifts[0])
    assert relative == pytest.approx((2.3, -1.65), abs=0.15)
    index = series.pairs.index((0, 2)) * 2
    noisy, target, e = series[index]
    # The target is frame 2 shifted onto frame 0's grid, at frame 0's dose.
    series.augment = False
    _, plain, _ = series[index]
    shift = np.subtract(series.shifts[2], series.shifts[0])
    expected = shift_image(frames[2], shift) * series.e_per_px[0] / series.e_per_px[2]
    y0 = series.box[0] + (series.box[1] - series.box[0] - 32) // 2
    x0 = series.box[2] + (series.box[3] - series.box[2] - 32) // 2
    np.testing.assert_allclose(plain[0].numpy(), expected[y0:y0 + 32, x0:x0 + 32], rtol=1e-3,
                               atol=1e-3)
    series.augment = True
    assert float(target.mean()) == pytest.approx(float(noisy.mean()), rel=0.02)
    assert np.corrcoef(noisy.ravel(), target.ravel())[0, 1] > 0.8
    with pytest.raises(TrainingError, match="at least 2 frames"):
        Noise2NoiseSeries(frames[:1])


# --- training -------------------------------------------------------------------------------


def _evaluate(model, clean, e_per_px, seed):
    noisy = noisy_copies(clean, e_per_px, 1, seed=seed)[0]
    estimate = denoise_frame(model, noisy, expected_e_per_px=e_per_px, device="cpu")
    reference = clean * e_per_px
    return psnr(estimate, reference), psnr(noisy, reference)


def test_a_short_training_on_simulated_pairs_beats_the_noisy_input(tmp_path):
    clean = clean_lattice((96, 96))
    e_per_px = 4.0
    frames = noisy_copies(clean, e_per_px, 8, seed=0)
    long = clean * 1000.0
    train = PairedExposures(frames[:6], long, short_e_per_px=e_per_px, long_e_per_px=1000.0,
                            crop_px=48, crops_per_pair=8, register=False, seed=1)
    val = PairedExposures(frames[6:], long, short_e_per_px=e_per_px, long_e_per_px=1000.0,
                          crop_px=None, crops_per_pair=1, augment=False, register=False)
    settings = DenoiserSettings(model_config=TINY, epochs=8, batch_size=8, learning_rate=3e-3,
                                device="cpu", seed=0)
    out = tmp_path / "den.safetensors"
    epochs = []
    summary = train_denoiser(train, val, out, settings, on_epoch=epochs.append)
    assert summary.best_epoch >= 1 and out.is_file()
    assert epochs[-1].val_psnr_db > epochs[0].input_psnr_db + 2.0
    model, meta = load_denoiser(out)
    assert meta["source"]["kind"] == "pairs"
    assert meta["validation"]["psnr_db"] == pytest.approx(summary.best_psnr_db)
    assert meta["training"]["settings"]["learning_rate"] == 3e-3
    assert meta["normalisation"]["method"] == "expected electrons per pixel"
    denoised_db, noisy_db = _evaluate(model, clean, e_per_px, seed=99)
    assert denoised_db > noisy_db + 2.0
    # Resuming with more epochs continues; other settings are refused.
    more = DenoiserSettings(**{**settings.to_dict(), "epochs": 9})
    assert train_denoiser(train, val, out, more).epochs_done == 9
    other = DenoiserSettings(**{**settings.to_dict(), "learning_rate": 1e-3})
    with pytest.raises(TrainingError, match="other settings"):
        train_denoiser(train, val, out, other)


def test_noise2noise_training_on_two_noisy_copies_beats_the_noisy_input(tmp_path):
    clean = clean_lattice((96, 96))
    e_per_px = 4.0
    frames = noisy_copies(clean, e_per_px, 2, seed=3)
    train = Noise2NoiseSeries(frames, crop_px=48, crops_per_pair=24, seed=2,
                              expected_e_per_px=e_per_px, register=False)
    val = Noise2NoiseSeries(frames, crop_px=None, crops_per_pair=1, augment=False,
                            expected_e_per_px=e_per_px, register=False)
    settings = DenoiserSettings(model_config=TINY, epochs=12, batch_size=8,
                                learning_rate=3e-3, loss="l2", device="cpu", seed=0)
    summary = train_denoiser(train, val, tmp_path / "n2n.safetensors", settings)
    model, meta = load_denoiser(summary.checkpoint)
    assert meta["source"]["kind"] == "series" and meta["training"]["settings"]["loss"] == "l2"
    denoised_db, noisy_db = _evaluate(model, clean, e_per_px, seed=98)
    assert denoised_db > noisy_db + 1.5


def test_training_can_be_stopped_and_checks_its_inputs(tmp_path):
    clean = clean_lattice((64, 64))
    frames = noisy_copies(clean, 3.0, 2, seed=0)
    pairs = Noise2NoiseSeries(frames, crop_px=32, register=False)
    settings = DenoiserSettings(model_config={"base_channels": 2, "levels": 1}, epochs=2,
                                device="cpu")
    summary = train_denoiser(pairs, pairs, tmp_path / "s.safetensors", settings,
                             should_stop=lambda: True)
    assert summary.stopped and summary.best_epoch == 0
    assert not (tmp_path / "s.safetensors").exists()
    with pytest.raises(TrainingError, match="loss"):
        DenoiserSettings(loss="huber")
    with pytest.raises(TrainingError, match="bad denoiser settings"):
        train_denoiser(pairs, pairs, tmp_path / "b.safetensors",
                       DenoiserSettings(model_config={"width": 3}, device="cpu"))
    assert isinstance(DenoiserUNet.from_config({"levels": 1}), DenoiserUNet)


def test_noise_weighted_loss_counts_errors_in_units_of_the_shot_noise():
    import torch

    from napari_lowdose.train.denoiser import _noise_weighted_loss

    # Two crops whose errors are each one shot-noise standard deviation (1/√e) weigh
    # the same: the loss is the mean of |error|·√e, not dominated by the noisy crop.
    e = torch.tensor([1.0, 100.0])
    error = (1.0 / e.sqrt()).reshape(2, 1, 1, 1).expand(2, 1, 4, 4)
    loss = _noise_weighted_loss(error, torch.zeros_like(error), e, "l1")
    plain = error.abs().mean()
    assert float(loss) == pytest.approx(2.0 / 11.0)  # (1·1 + 0.1·10) / (1 + 10)
    assert float(plain) == pytest.approx(0.55)
    l2 = _noise_weighted_loss(error, torch.zeros_like(error), e, "l2")
    assert float(l2) == pytest.approx((1.0 * 1 + 0.01 * 100) / 101)


def test_fine_tuning_a_denoiser_starts_from_its_weights(tmp_path):
    clean = clean_lattice((64, 64))
    frames = noisy_copies(clean, 4.0, 4, seed=5)
    pairs = PairedExposures(frames[:3], clean * 1000.0, short_e_per_px=4.0,
                            long_e_per_px=1000.0, crop_px=32, crops_per_pair=4,
                            register=False, seed=1)
    val = PairedExposures(frames[3:], clean * 1000.0, short_e_per_px=4.0,
                          long_e_per_px=1000.0, crop_px=None, crops_per_pair=1,
                          augment=False, register=False)
    first = train_denoiser(pairs, val, tmp_path / "a.safetensors",
                           DenoiserSettings(model_config=TINY, epochs=2, batch_size=4,
                                            learning_rate=3e-3, device="cpu"))
    trained, _ = load_denoiser(first.checkpoint)
    tuned = train_denoiser(pairs, val, tmp_path / "b.safetensors",
                           DenoiserSettings(model_config=TINY, epochs=1, batch_size=4,
                                            learning_rate=1e-12, device="cpu",
                                            noise_weighted=True,
                                            init_from=str(first.checkpoint)))
    model, meta = load_denoiser(tuned.checkpoint)
    for (name, value), (_, start) in zip(model.state_dict().items(),
                                         trained.state_dict().items(), strict=True):
        assert np.allclose(value.numpy(), start.numpy(), atol=1e-6), name
    assert meta["training"]["settings"]["noise_weighted"] is True
    with pytest.raises(TrainingError, match="other settings"):
        train_denoiser(pairs, val, tmp_path / "c.safetensors",
                       DenoiserSettings(model_config={**TINY, "base_channels": 3}, epochs=1,
                                        device="cpu", init_from=str(first.checkpoint)))
