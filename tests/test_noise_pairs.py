"""Detector noise without vacuum: the noise model fitted to frame-pair differences."""

import numpy as np
import pytest

from napari_lowdose.noise import fit_spectra, radial_spectrum
from napari_lowdose.noise.pairs import (
    difference_spectrum,
    fit_noise_from_pairs,
    pair_difference,
    series_pairs,
)
from napari_lowdose.noise.vacuum import vacuum_check
from noise_data import C0, C3, GAIN, N0, SAMPLING_A, drifting_series


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    # N_D ≈ 18 e⁻/px on the particle (dose 2000 e⁻/Å², mean ψ ≈ 0.9), N0 = 1 e⁻/px.
    return drifting_series([2000.0] * 6)


def test_pairs_of_a_particle_field_recover_the_detector(series):
    pairs = [(series[i], series[j]) for i, j in series_pairs(len(series))]
    result, spectra = fit_noise_from_pairs(pairs, counts_per_electron=GAIN,
                                           sampling_A=SAMPLING_A)
    assert result.noise_source == "pairs" and result.model == "physical"
    assert spectra.groups == [[0, 1, 2]]  # equal doses: one averaged spectrum
    assert [p.shift_px for p in spectra.pairs] == [(1, -1)] * 3  # b moved back by the drift
    assert result.ok.all()
    assert abs(result.c0[0] - C0) < 0.02
    assert abs(result.c3[0] - C3) < 0.3
    assert abs(result.n0_e_per_px[0] / N0 - 1) < 0.2
    assert abs(result.readout.n0_e_per_px / N0 - 1) < 0.2
    # The dose is the frames' mean counts ÷ the gain (plus the synthesis' readout mean N0).
    expected = series[0].mean() / GAIN
    assert result.frame_dose_e_per_px[0] == pytest.approx(expected, rel=0.02)
    # The same frame fitted as if it were vacuum is refused by the vacuum check.
    single = radial_spectrum(series[0], kind="power")
    assert not vacuum_check(fit_spectra(single, model="physical"), single.counts).passed


def test_unequal_doses_scale_the_difference_and_start_new_rows():
    frames = drifting_series([2000.0, 1500.0, 1000.0, 1000.0], seed=1)
    pair = pair_difference(frames[0], frames[1], counts_per_electron=GAIN)
    m_a, m_b = pair.mean_counts
    r = m_a / m_b
    assert r == pytest.approx(4 / 3, rel=0.05)
    # No signal left: the scaled difference is as flat as noise of N_eff electrons.
    assert abs(pair.difference.mean()) < 0.05 * np.sqrt(pair.difference.var())
    assert pair.effective_e_per_px == pytest.approx(m_a / GAIN * (1 + r) / (1 + r * r))
    result, spectra = fit_noise_from_pairs([(frames[0], frames[1]), (frames[2], frames[3])],
                                           counts_per_electron=GAIN)
    assert spectra.groups == [[0], [1]]
    assert result.n_frames == 2 and result.ok.all()
    assert np.all(np.abs(result.c0 - C0) < 0.03)
    assert abs(result.readout.n0_e_per_px / N0 - 1) < 0.25


def test_without_gain_c0_is_fitted_and_n0_is_not(series):
    spectra = difference_spectrum([(series[0], series[1])], kind="power")
    result = fit_spectra(spectra.spectrum, model="physical")
    assert abs(result.c0[0] - C0) < 0.03
    assert np.isnan(spectra.frame_dose_e_per_px[0]) and np.isnan(result.n0_e_per_px[0])


def test_bad_pairs_are_refused():
    frame = np.ones((64, 64))
    with pytest.raises(ValueError, match="one shape"):
        pair_difference(frame, np.ones((64, 32)))
    with pytest.raises(ValueError, match="NaN"):
        pair_difference(frame, np.full((64, 64), np.nan))
    with pytest.raises(ValueError, match="at least two frames"):
        series_pairs(1)
    assert series_pairs(5) == [(0, 1), (2, 3)]


def test_real_oneview_pair_gives_a_physical_result(real_oneview):
    from napari_lowdose.io.readers import read_series

    a, b = (read_series(real_oneview / f"train_000{i}.tif") for i in (1, 2))
    gain = a.dose_hints.counts_per_electron
    result, spectra = fit_noise_from_pairs([(np.asarray(a.data), np.asarray(b.data))],
                                           counts_per_electron=gain,
                                           sampling_A=a.pixel_size_A[0])
    assert np.all(np.abs(spectra.pairs[0].shift_px) <= 1)
    assert 0 < result.c0[0] <= 1 and np.isfinite(result.c3[0])
    assert result.n0_e_per_px[0] > 0 and np.isfinite(result.n0_e_per_px[0])
    assert 4 < result.frame_dose_e_per_px[0] < 5.5  # ≈ 4.6 e⁻/px (README)
