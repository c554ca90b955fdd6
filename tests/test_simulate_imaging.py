"""Imaging of exit waves (Larsen et al. 2023, Section 2, Tables 1–3) against abTEM and truth."""

import math

import numpy as np
import pytest
from scipy import stats

from napari_lowdose.noise import NoiseDraw, NoiseModel, fit_noise, preset
from napari_lowdose.simulate.ctf import ctf_array
from napari_lowdose.simulate.imaging import clean_image, make_dose_series, make_image, noisy_image
from napari_lowdose.simulate.optics import (
    DOSE_RANGES_E_PER_A2,
    ENERGY_EV,
    SERIES_OPTICS,
    TABLE1_OPTICS,
    Optics,
    OpticsRanges,
    draw_dose_e_per_A2,
    draw_optics,
    electron_wavelength_A,
)

RECORD_KEYS = {
    "defocus_A",
    "cs_A",
    "focal_spread_A",
    "blur_A",
    "energy_eV",
    "dose_e_per_A2",
    "electrons_per_px",
    "sampling_A",
    "c0",
    "c3",
    "n0_e_per_px",
    "noise_model",
}
# A non-square, odd/even cell (y, x) so that swapped axes or mirrored
# frequencies would show.
SHAPE = (45, 64)
SAMPLING_A = 0.1
OPTICS_CASES = [
    Optics(defocus_A=49.0, cs_A=7.5e4, focal_spread_A=5.5, blur_A=0.0),  # SOI Fig. 9
    Optics(defocus_A=-180.0, cs_A=12.45e4, focal_spread_A=20.0, blur_A=0.0),
    Optics(defocus_A=120.0, cs_A=0.0, focal_spread_A=0.0, blur_A=0.0),
]


def _random_wave(shape=SHAPE, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return (1.0 + 0.3 * noise).astype(np.complex64)


def _vacuum_model(c0: float = 0.35, c3: float = 2.5, n0: float = 0.01) -> NoiseModel:
    return NoiseModel("narrow", c0_range=(c0, c0), c3_range=(c3, c3), n0_range_e_per_px=(n0, n0))


# -- wavelength and the objective lens vs abTEM --------------------------------


def test_wavelength_300kev():
    abtem = pytest.importorskip("abtem")
    assert electron_wavelength_A(ENERGY_EV) == pytest.approx(0.019687, abs=5e-7)
    assert electron_wavelength_A(ENERGY_EV) == pytest.approx(
        abtem.core.energy.energy2wavelength(ENERGY_EV), rel=1e-7
    )
    assert Optics(0, 0, 0, 0).wavelength_A == electron_wavelength_A(300e3)


@pytest.mark.parametrize("optics", OPTICS_CASES, ids=["series", "table1-edge", "defocus-only"])
def test_ctf_array_equals_abtem_ctf(optics):
    """abTEM's CTF, read back by imaging a point (FFT of a delta is 1), equals ours."""
    abtem = pytest.importorskip("abtem")
    delta = np.zeros(SHAPE, dtype=np.complex64)
    delta[0, 0] = 1.0
    waves = abtem.Waves(delta.T.copy(), sampling=SAMPLING_A, energy=ENERGY_EV)
    ctf = abtem.CTF(
        defocus=optics.defocus_A,
        Cs=optics.cs_A,
        focal_spread=optics.focal_spread_A,
        energy=ENERGY_EV,
    )
    theirs = np.fft.fft2(np.asarray(waves.apply_ctf(ctf).compute().array).T)
    ours = ctf_array(SHAPE, SAMPLING_A, optics)
    assert ours.shape == SHAPE and ours.dtype == np.complex64
    assert ours[0, 0] == 1
    # abTEM evaluates χ in float32: |χ| reaches ~10³ rad at the grid edge here.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


@pytest.mark.parametrize("optics", OPTICS_CASES, ids=["series", "table1-edge", "defocus-only"])
def test_clean_image_equals_abtem_apply_ctf_intensity(optics):
    abtem = pytest.importorskip("abtem")
    wave = _random_wave()
    waves = abtem.Waves(wave.T.copy(), sampling=SAMPLING_A, energy=ENERGY_EV)
    ctf = abtem.CTF(
        defocus=optics.defocus_A,
        Cs=optics.cs_A,
        focal_spread=optics.focal_spread_A,
        energy=ENERGY_EV,
    )
    theirs = np.asarray(waves.apply_ctf(ctf).intensity().compute().array).T
    ours = clean_image(wave, SAMPLING_A, optics)
    assert ours.dtype == np.float32 and ours.shape == SHAPE
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.max())


def test_blur_is_gaussian_of_std_blur_A_like_abtem():
    """Fourier-space blur = abTEM's periodic Gaussian filter with sigma in Å."""
    abtem = pytest.importorskip("abtem")
    wave = _random_wave(seed=3)
    sharp = Optics(defocus_A=60.0, cs_A=5e4, focal_spread_A=8.0, blur_A=0.0)
    blurred = Optics(**{**sharp.to_dict(), "blur_A": 0.5})
    images = abtem.Images(clean_image(wave, SAMPLING_A, sharp).T.copy(), sampling=SAMPLING_A)
    theirs = np.asarray(images.gaussian_filter(0.5).array).T
    ours = clean_image(wave, SAMPLING_A, blurred)
    np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=1e-4)
    assert ours.std() < 0.5 * clean_image(wave, SAMPLING_A, sharp).std()


def test_vacuum_is_one_for_any_optics():
    rng = np.random.default_rng(1)
    wave = np.full((64, 80), np.exp(0.7j), dtype=np.complex64)  # uniform, any phase
    crop = (slice(8, 56), slice(8, 72))
    for _ in range(5):
        img = clean_image(wave, 0.075, draw_optics(rng, TABLE1_OPTICS), crop)
        assert img.shape == (48, 64) and img.dtype == np.float32
        np.testing.assert_allclose(img, 1.0, atol=1e-5)


def test_crop_is_taken_after_imaging_the_whole_cell():
    wave = _random_wave(shape=(48, 60), seed=4)
    optics = Optics(defocus_A=150.0, cs_A=1e5, focal_spread_A=10.0, blur_A=0.3)
    crop = (slice(5, 40), slice(10, 50))
    full = clean_image(wave, SAMPLING_A, optics)
    np.testing.assert_array_equal(clean_image(wave, SAMPLING_A, optics, crop), full[crop])
    assert full.min() >= 0


# -- detector noise -----------------------------------------------------------


@pytest.mark.parametrize("dose", [15.0, 100.0, 2e3, 1e6])
def test_noisy_vacuum_mean_is_dose_times_pixel_area(dose):
    sampling, n0, shape = 0.075, 0.01, (256, 256)
    noise = NoiseDraw(c0=0.3, c3=2.5, n0_e_per_px=n0)
    img = noisy_image(np.ones(shape, np.float32), dose, sampling, noise, np.random.default_rng(2))
    assert img.dtype == np.float32 and img.shape == shape
    expected = dose * sampling**2 + n0  # the MTF keeps the mean (MTF(0) = 1)
    std_error = math.sqrt(expected / img.size)
    assert abs(img.mean(dtype=np.float64) - expected) < 5 * std_error


@pytest.mark.parametrize("dose", [5.0, 60.0], ids=["sparse-thinning", "dense"])
def test_counts_are_poisson_in_every_pixel(dose):
    """Without MTF blur (c0 ≫ 1) and readout, counts are Poisson(N_D ψ) per pixel."""
    rng = np.random.default_rng(6)
    clean = rng.uniform(0.0, 2.0, size=(384, 384)).astype(np.float32)
    noise = NoiseDraw(c0=1e4, c3=4.0, n0_e_per_px=0.0)
    img = noisy_image(clean, dose, 0.1, noise, rng)
    counts = np.rint(img)
    np.testing.assert_allclose(img, counts, atol=1e-3)
    lam = dose * 0.01 * clean
    for k in range(3):
        p = stats.poisson.pmf(k, lam)
        observed, expected = np.count_nonzero(counts == k), p.sum()
        assert abs(observed - expected) < 5 * math.sqrt(np.sum(p * (1 - p)))


def test_fitted_c0_of_simulated_vacuum_is_the_requested_one():
    model = _vacuum_model(c0=0.35, c3=2.5)
    wave = np.ones((160, 160), dtype=np.complex64)
    crop = (slice(16, 144), slice(16, 144))
    rng = np.random.default_rng(8)
    frames, records = zip(
        *(
            make_image(wave, 0.075, crop, rng, dose_range_e_per_A2=(5e3, 5e3), noise_model=model)
            for _ in range(6)
        ),
        strict=True,
    )
    assert all(r["c0"] == 0.35 for r in records)
    res = fit_noise(np.stack(frames), 5e3, 0.075, model="physical")
    assert res.ok.all()
    assert abs(np.median(res.c0) - 0.35) < 0.03
    assert abs(np.median(res.c3) - 2.5) < 0.5


def test_result_does_not_depend_on_threads():
    """Poisson blocks are seeded from the generator, not per thread."""
    wave = _random_wave(shape=(400, 400), seed=10)  # > 2 blocks of dense draws
    kwargs = {"dose_range_e_per_A2": (1e4, 1e4), "noise_model": preset("MTF4")}
    one, rec_one = make_image(wave, 0.075, None, np.random.default_rng(3), workers=1, **kwargs)
    two, rec_two = make_image(wave, 0.075, None, np.random.default_rng(3), workers=2, **kwargs)
    np.testing.assert_array_equal(one, two)
    assert rec_one == rec_two


# -- image epochs and series ----------------------------------------------------


def test_make_image_reproducible_and_recorded():
    wave = _random_wave(shape=(64, 64), seed=9)
    crop = (slice(8, 56), slice(8, 56))
    model = preset("MTF 4")
    a, rec_a = make_image(wave, 0.08, crop, np.random.default_rng(11), noise_model=model)
    b, rec_b = make_image(wave, 0.08, crop, np.random.default_rng(11), noise_model=model)
    c, rec_c = make_image(wave, 0.08, crop, np.random.default_rng(12), noise_model=model)
    np.testing.assert_array_equal(a, b)
    assert rec_a == rec_b
    assert not np.array_equal(a, c) and rec_a != rec_c
    assert a.shape == (48, 48) and a.dtype == np.float32
    assert set(rec_a) == RECORD_KEYS
    assert rec_a["noise_model"] == "MTF4" and rec_a["energy_eV"] == ENERGY_EV
    assert rec_a["electrons_per_px"] == pytest.approx(rec_a["dose_e_per_A2"] * 0.08**2)
    # The record rebuilds the clean image the frame was made from.
    clean = clean_image(wave, 0.08, Optics.from_dict(rec_a), crop)
    assert abs(a.mean() / clean.mean() / rec_a["electrons_per_px"] - 1) < 0.05


def test_records_lie_in_their_ranges():
    rng = np.random.default_rng(13)
    wave = np.ones((32, 32), np.complex64)
    model = preset("MTF3")
    for _ in range(20):
        _, rec = make_image(wave, 0.075, None, rng, noise_model=model)
        for name, (lo, hi) in TABLE1_OPTICS.to_dict().items():
            assert lo <= rec[name] <= hi
        assert 1e2 <= rec["dose_e_per_A2"] <= 1e6
        assert model.c0_range[0] <= rec["c0"] <= model.c0_range[1]
        assert model.c3_range[0] <= rec["c3"] <= model.c3_range[1]
        assert model.n0_range_e_per_px[0] <= rec["n0_e_per_px"] <= model.n0_range_e_per_px[1]


def test_draws_are_uniform_and_dose_log_uniform():
    rng = np.random.default_rng(14)
    optics = [draw_optics(rng, TABLE1_OPTICS) for _ in range(3000)]
    for name, (lo, hi) in TABLE1_OPTICS.to_dict().items():
        vals = np.array([getattr(o, name) for o in optics])
        assert vals.min() >= lo and vals.max() <= hi
        assert abs(vals.mean() - (lo + hi) / 2) < 0.03 * (hi - lo)
    for key, (lo, hi) in DOSE_RANGES_E_PER_A2.items():
        doses = np.array([draw_dose_e_per_A2(rng, (lo, hi)) for _ in range(3000)])
        assert doses.min() >= lo and doses.max() <= hi, key
        # Log-uniform: median at the geometric mean, log-dose uniform.
        assert abs(np.log10(np.median(doses)) - np.log10(math.sqrt(lo * hi))) < 0.1
        log_uniform = stats.uniform(np.log(lo), np.log(hi / lo))
        assert stats.kstest(np.log(doses), log_uniform.cdf).pvalue > 1e-3


def test_make_dose_series_like_soi_fig9():
    wave = _random_wave(shape=(72, 72), seed=15)
    crop = (slice(8, 64), slice(8, 64))
    doses = np.geomspace(10.0, 1e4, 7)
    model = preset("MTF3")
    noisy, clean, records = make_dose_series(wave, 0.075, crop, doses, np.random.default_rng(16),
                                             noise_model=model)
    assert noisy.shape == clean.shape == (7, 56, 56)
    assert noisy.dtype == clean.dtype == np.float32
    assert [r["frame"] for r in records] == list(range(7))
    np.testing.assert_array_equal([r["dose_e_per_A2"] for r in records], doses)
    # One detector: the same noise parameters in every frame, drawn from MTF 3.
    assert len({(r["c0"], r["c3"], r["n0_e_per_px"]) for r in records}) == 1
    assert 0.2 <= records[0]["c0"] <= 0.3
    # Optics drawn per frame from the narrow series ranges.
    for name, (lo, hi) in SERIES_OPTICS.to_dict().items():
        vals = [r[name] for r in records]
        assert all(lo <= v <= hi for v in vals) and len(set(vals)) == 7
    for i in (0, 6):
        expected = clean_image(wave, 0.075, Optics.from_dict(records[i]), crop)
        np.testing.assert_allclose(clean[i], expected, rtol=1e-5, atol=1e-6)
    mean_e = noisy.mean(axis=(1, 2)) / clean.mean(axis=(1, 2))
    np.testing.assert_allclose(mean_e, doses * 0.075**2, rtol=0.15, atol=0.02)
    again = make_dose_series(
        wave, 0.075, crop, doses, np.random.default_rng(16), noise_model=model
    )
    np.testing.assert_array_equal(again[0], noisy)
    assert again[2] == records


# -- parameters and validation ----------------------------------------------------


def test_optics_ranges_defaults_round_trip_and_validation():
    assert TABLE1_OPTICS.defocus_A == (-200.0, 200.0)
    assert TABLE1_OPTICS.cs_A == (0.0, 12.45e4)
    assert TABLE1_OPTICS.focal_spread_A == (5.0, 20.0)
    assert TABLE1_OPTICS.blur_A == (0.1, 0.8)
    assert SERIES_OPTICS.cs_A == (7e4, 8e4) and SERIES_OPTICS.defocus_A == (48.0, 50.0)
    assert OpticsRanges.from_dict(SERIES_OPTICS.to_dict()) == SERIES_OPTICS
    assert OpticsRanges.from_dict({"blur_A": [0.2, 0.2]}).cs_A == TABLE1_OPTICS.cs_A
    with pytest.raises(ValueError, match="low <= high"):
        OpticsRanges(defocus_A=(10.0, -10.0))
    with pytest.raises(ValueError, match="non-negative"):
        OpticsRanges(cs_A=(-1.0, 5.0))
    with pytest.raises(ValueError, match="unknown"):
        OpticsRanges.from_dict({"defocus": (0, 1)})
    fixed = draw_optics(np.random.default_rng(0), OpticsRanges((5, 5), (1, 1), (2, 2), (0, 0)))
    assert fixed == Optics(5.0, 1.0, 2.0, 0.0)
    with pytest.raises(ValueError):
        Optics(defocus_A=0.0, cs_A=0.0, focal_spread_A=0.0, blur_A=-0.1)
    with pytest.raises(ValueError):
        draw_dose_e_per_A2(np.random.default_rng(0), (0.0, 10.0))
    with pytest.raises(ValueError):
        clean_image(np.ones((4, 4, 4), np.complex64), 0.1, fixed)
    with pytest.raises(ValueError):
        noisy_image(np.ones((8, 8)), 10.0, 0.1, preset("MTF4").sample(0, size=2),
                    np.random.default_rng(0))
