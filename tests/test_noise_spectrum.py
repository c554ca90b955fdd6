"""Radial (azimuthally averaged) noise spectra: normalisation, binning, edge cases."""

import numpy as np
import pytest

from napari_lowdose.noise import (
    apply_detector_noise,
    mtf_normalised,
    normalised_frequency_grid,
    radial_spectrum,
)


def _reference_full_plane(frame: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Plain per-frame reference: full fft2, integer-radius rings, q̃ <= 1."""
    ny, nx = frame.shape
    f = np.fft.fft2(frame - frame.mean())
    vals = np.abs(f) ** 2 / frame.size if kind == "power" else np.abs(f) / np.sqrt(frame.size)
    q = normalised_frequency_grid(frame.shape)
    dq = 2.0 / min(ny, nx)
    k = np.rint(q / dq).astype(int)
    k_max = int(np.floor(1.0 / dq + 1e-9))
    sel = (k >= 1) & (k <= k_max)
    sums = np.bincount(k[sel] - 1, weights=vals[sel], minlength=k_max)
    n = np.bincount(k[sel] - 1, minlength=k_max)
    qs = np.bincount(k[sel] - 1, weights=q[sel], minlength=k_max)
    return qs / n, sums / n


@pytest.mark.parametrize("kind", ["power", "magnitude"])
@pytest.mark.parametrize("shape", [(64, 64), (48, 80), (63, 65)])
def test_matches_full_plane_reference(kind, shape):
    rng = np.random.default_rng(0)
    stack = rng.normal(3.0, 1.5, size=(3, *shape))
    spec = radial_spectrum(stack, kind=kind)
    for i in range(3):
        q_ref, ref = _reference_full_plane(stack[i], kind)
        np.testing.assert_allclose(spec.q_norm, q_ref, rtol=1e-12)
        np.testing.assert_allclose(spec.values[i], ref, rtol=1e-5)


def test_white_noise_power_level_and_flat():
    sigma = 2.0
    rng = np.random.default_rng(1)
    stack = rng.normal(10.0, sigma, size=(16, 128, 128))
    spec = radial_spectrum(stack, kind="power")
    mean_spec = spec.values.mean(axis=0)
    # Flat at σ²: every ring within 5 standard errors, overall mean within 1 %.
    assert abs(mean_spec.mean() / sigma**2 - 1) < 0.01
    n_indep = 16 * spec.counts / 2
    assert np.all(np.abs(mean_spec / sigma**2 - 1) < 5 / np.sqrt(n_indep))
    slope = np.polyfit(spec.q_norm, mean_spec / sigma**2, 1)[0]
    assert abs(slope) < 0.02


def test_white_noise_magnitude_level():
    sigma = 3.0
    rng = np.random.default_rng(2)
    spec = radial_spectrum(rng.normal(0.0, sigma, size=(8, 128, 128)), kind="magnitude")
    expected = sigma * np.sqrt(np.pi) / 2  # mean of a Rayleigh variable
    assert abs(spec.values.mean() / expected - 1) < 0.01


def test_eq3_power_spectrum_is_nd_mtf2_plus_n0():
    dose, sampling, n0 = 1000.0, 0.1, 0.5  # N_D = 10 e⁻/px
    stack = apply_detector_noise(
        np.ones((32, 128, 128)), dose, sampling, c0=0.27, c3=2.25, n0_e_per_px=n0, rng=3
    )
    spec = radial_spectrum(stack, kind="power")
    model = dose * sampling**2 * mtf_normalised(spec.q_norm, 0.27, 2.25) ** 2 + n0
    rel = spec.values.mean(axis=0) / model - 1
    assert abs(np.mean(rel)) < 0.02
    assert np.all(np.abs(rel[spec.counts >= 100]) < 0.1)


def test_q_range_bins_and_single_frame():
    rng = np.random.default_rng(4)
    img = rng.normal(size=(256, 256))
    spec = radial_spectrum(img)
    assert spec.values.shape == (1, 128)
    assert spec.kind == "magnitude" and spec.frame_shape == (256, 256)
    assert np.all(np.diff(spec.q_norm) > 0)
    assert spec.q_norm[0] > 0 and spec.q_norm[-1] <= 1.0 + 1.0 / 256
    corners = radial_spectrum(img, q_max=np.sqrt(2))
    assert corners.values.shape[1] == 181
    assert corners.q_norm[-1] > 1.4
    coarse = radial_spectrum(img, n_bins=32)
    assert coarse.values.shape == (1, 32)
    # Ring counts add up to the full plane inside q̃ <= 1 (minus DC).
    assert spec.counts.sum() < 256 * 256


def test_chunking_does_not_change_result():
    rng = np.random.default_rng(5)
    stack = rng.poisson(3.0, size=(10, 64, 64)).astype(np.float32)
    a = radial_spectrum(stack, chunk_frames=3)
    b = radial_spectrum(stack, chunk_frames=64)
    np.testing.assert_array_equal(a.values, b.values)


def test_nan_and_constant_frames():
    rng = np.random.default_rng(6)
    stack = rng.normal(5.0, 1.0, size=(4, 64, 64))
    stack[1, 3, 7] = np.nan
    stack[2] = 0.1  # constant in float64: must give exact zeros, not rounding noise
    spec = radial_spectrum(stack, kind="power")
    assert np.all(np.isnan(spec.values[1]))
    assert np.all(spec.values[2] == 0)
    assert np.all(np.isfinite(spec.values[[0, 3]])) and np.all(spec.values[[0, 3]] > 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        radial_spectrum(np.zeros((8, 8)), kind="psd")
    with pytest.raises(ValueError, match="shape"):
        radial_spectrum(np.zeros((2, 2, 8, 8)))
    with pytest.raises(ValueError, match="too small"):
        radial_spectrum(np.zeros((2, 8)))
