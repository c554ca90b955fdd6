"""The built-in synthetic dose series: known dose, known noise, known particle."""

import numpy as np

from napari_lowdose.noise import mtf_normalised
from napari_lowdose.simulate.synthetic_series import make_synthetic_dose_series


def test_synthetic_series_truth():
    series = make_synthetic_dose_series()
    p = series.parameters
    assert series.counts.shape == (50, 256, 256)
    assert series.counts.dtype == np.float32
    np.testing.assert_allclose(series.dose_e_per_A2[[0, -1]], [10, 1e4])
    # Mean counts in vacuum = gain × (dose × pixel area + N0).
    vacuum = series.particle_mask == 0
    mean = series.counts[:, vacuum].mean(axis=1)
    expected = p.counts_per_electron * (series.dose_e_per_A2 * p.sampling_A**2 + p.n0_e_per_px)
    np.testing.assert_allclose(mean, expected, rtol=0.02)
    # The particle is darker than vacuum, and covers a disk of about the set radius.
    assert series.clean_intensity[series.particle_mask == 1].mean() < 0.9
    area_A2 = series.particle_mask.sum() * p.sampling_A**2
    assert abs(area_A2 / (np.pi * p.particle_radius_A**2) - 1) < 0.05


def test_seed_reproduces_and_differs():
    a = make_synthetic_dose_series(n_frames=3, shape=(32, 32), seed=1).counts
    b = make_synthetic_dose_series(n_frames=3, shape=(32, 32), seed=1).counts
    c = make_synthetic_dose_series(n_frames=3, shape=(32, 32), seed=2).counts
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_noise_spectrum_follows_mtf():
    # High-dose vacuum: the power spectrum falls as MTF² (Eq. 3), readout negligible.
    series = make_synthetic_dose_series(n_frames=8, shape=(256, 256), dose_min_e_per_A2=1e4,
                                        dose_max_e_per_A2=1e4, particle_contrast=0.0)
    frames = series.counts - series.counts.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(frames)) ** 2).mean(axis=0)
    q = 2 * np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    low_band, high_band = (q > 0.05) & (q < 0.1), (q > 0.5) & (q < 0.55)
    mtf2 = mtf_normalised(q, series.parameters.c0, series.parameters.c3) ** 2
    expected = mtf2[high_band].mean() / mtf2[low_band].mean()
    low, high = power[low_band].mean(), power[high_band].mean()
    assert abs(high / low / expected - 1) < 0.1
