"""Noise-model fits (Eqs. 2–4) against synthetic vacuum series of known truth."""

import csv
import io

import numpy as np
import pytest
import scipy.optimize

from napari_lowdose.noise import (
    NoiseFitResult,
    apply_detector_noise,
    eq2_plot_data,
    fit_noise,
    fit_noise_frame,
    fit_readout_noise,
    fit_spectra,
    paper_spectrum_model,
    physical_spectrum_model,
    radial_spectrum,
)
from napari_lowdose.noise.spectrum import RadialSpectrum

C0, C3, SAMPLING_A = 0.27, 2.25, 0.1
DOSES = np.geomspace(10.0, 1300.0, 24)  # N_D = 0.1 … 13 e⁻/px


def _series(n0: float, seed: int, size: int = 256) -> np.ndarray:
    return apply_detector_noise(
        np.ones((DOSES.size, size, size)),
        DOSES,
        SAMPLING_A,
        c0=C0,
        c3=C3,
        n0_e_per_px=n0,
        rng=np.random.default_rng(seed),
    )


@pytest.fixture(scope="module")
def series_large_n0() -> np.ndarray:
    # N0 = 0.5 e⁻/px is comparable to N_D at low dose, so C spans 0.2–0.9.
    return _series(0.5, seed=11)


@pytest.fixture(scope="module")
def series_paper_n0() -> np.ndarray:
    # The paper's N0 = 0.01 e⁻/px.
    return _series(0.01, seed=12)


# -- physical fit (Eq. 3) -----------------------------------------------------


@pytest.mark.parametrize("fixture", ["series_large_n0", "series_paper_n0"])
def test_physical_fit_recovers_c0_c3_n0(fixture, request):
    stack = request.getfixturevalue(fixture)
    n0_true = 0.5 if fixture == "series_large_n0" else 0.01
    res = fit_noise(stack, DOSES, SAMPLING_A, model="physical")
    assert res.spectrum_kind == "power" and res.model == "physical"
    assert res.ok.sum() >= 0.8 * DOSES.size
    assert abs(np.median(res.c0[res.ok]) - C0) < 0.03
    assert abs(np.median(res.c3[res.ok]) - C3) < 0.3
    assert abs(res.readout.n0_e_per_px / n0_true - 1) < 0.25
    assert res.readout.r2 > 0.9
    # Where shot noise dominates, every frame's c0 is right and N0 is per-frame sensible.
    high = res.ok & (DOSES >= 100)
    assert np.all(np.abs(res.c0[high] - C0) < 0.05)
    assert np.all(np.abs(np.log(res.n0_e_per_px[res.ok] / n0_true)) < np.log(2.5))
    # Reported floor obeys Eq. 2 by construction.
    np.testing.assert_allclose(
        res.floor_C**2,
        res.n0_e_per_px / (res.n0_e_per_px + res.frame_dose_e_per_px),
        rtol=1e-9,
    )


def test_physical_c0_unbiased_at_paper_n0(series_paper_n0):
    res = fit_noise(series_paper_n0, DOSES, SAMPLING_A, model="physical")
    assert res.ok.all()
    high = DOSES >= 100
    assert np.all(np.abs(res.c0[high] - C0) < 0.03)


# -- paper fit (Eq. 4) and Eq. 2 ----------------------------------------------


def test_paper_fit_floor_follows_eq2_magnitude(series_large_n0):
    res = fit_noise(series_large_n0, DOSES, SAMPLING_A, model="paper")
    assert res.spectrum_kind == "magnitude"
    assert res.ok.sum() >= 0.8 * DOSES.size
    np.testing.assert_allclose(res.floor_C, res.c2 / res.c1)
    assert abs(res.readout.n0_e_per_px / 0.5 - 1) < 0.3
    assert res.readout.r2 > 0.9
    n_d = DOSES * SAMPLING_A**2
    expected_c2 = 0.5 / (0.5 + n_d)
    assert np.all(np.abs(res.floor_C[res.ok] ** 2 - expected_c2[res.ok]) < 0.1)
    # C falls with dose (readout → shot-noise dominated).
    assert res.floor_C[0] > 0.8 and res.floor_C[-1] < 0.3


def test_paper_fit_power_spectrum_floor_is_c_not_c2(series_large_n0):
    res = fit_noise(series_large_n0, DOSES, SAMPLING_A, model="paper", spectrum_kind="power")
    assert res.spectrum_kind == "power"
    assert abs(res.readout.n0_e_per_px / 0.5 - 1) < 0.3
    # Interpreting the power floor with the magnitude form (C²) would be far off.
    wrong = fit_readout_noise(res.frame_dose_e_per_px[res.ok], res.floor_C[res.ok])
    assert wrong.n0_e_per_px < 0.25


@pytest.mark.parametrize(
    ("model", "kind", "quantity"),
    [("paper", "magnitude", "C²"), ("paper", "power", "C"), ("physical", "power", "C²")],
)
def test_eq2_panel_plots_the_quantity_n0_was_fitted_to(series_large_n0, model, kind, quantity):
    # The Eq. 2 panel of noise_fit.png (and of the Detector-noise dock) shows the
    # per-frame points N0 was fitted to: C for a paper fit of the power spectrum
    # (its amplitudes are powers already), C² otherwise. Plotting C² for the
    # paper/power fit put the points far below the drawn Eq. 2 curve.
    from napari_lowdose.plots.noise import noise_fit_figure

    res = fit_noise(series_large_n0, DOSES, SAMPLING_A, model=model, spectrum_kind=kind)
    eq2 = eq2_plot_data(res)
    assert eq2.quantity == quantity
    floor = res.floor_C**2 if quantity == "C²" else res.floor_C
    np.testing.assert_array_equal(eq2.y, floor)
    np.testing.assert_array_equal(eq2.used, res.ok)
    n0 = res.readout.n0_e_per_px
    np.testing.assert_allclose(eq2.curve, n0 / (n0 + eq2.grid))

    ax = noise_fit_figure(res).axes[2]
    x, y = (np.asarray(v, dtype=float) for v in ax.lines[0].get_data())
    np.testing.assert_array_equal(x, res.frame_dose_e_per_px)
    np.testing.assert_array_equal(y, floor)
    assert ax.get_ylabel() == quantity
    # The plotted points scatter about the plotted curve with the R² of the Eq. 2 fit.
    gx, gy = (np.asarray(v, dtype=float) for v in ax.lines[1].get_data())
    ok = res.ok
    y_curve = np.interp(np.log(x[ok]), np.log(gx), gy)
    r2 = 1 - np.sum((y[ok] - y_curve) ** 2) / np.sum((y[ok] - y[ok].mean()) ** 2)
    assert res.readout.r2 > 0.9
    assert r2 == pytest.approx(res.readout.r2, abs=0.02)


def test_paper_fit_biases_c0_low_when_readout_noise_matters(series_large_n0):
    """Larsen et al. Eq. 4 on blurred shot + white readout noise biases c0 low."""
    paper = fit_noise(series_large_n0, DOSES, SAMPLING_A, model="paper")
    phys = fit_noise(series_large_n0, DOSES, SAMPLING_A, model="physical")
    mid = paper.ok & phys.ok & (DOSES >= 50) & (DOSES <= 500)
    assert np.median(paper.c0[mid]) < C0 - 0.02
    assert abs(np.median(phys.c0[mid]) - C0) < 0.03


def test_paper_fit_paper_n0(series_paper_n0):
    res = fit_noise(series_paper_n0, DOSES, SAMPLING_A, model="paper")
    assert res.ok.all()
    assert abs(res.readout.n0_e_per_px / 0.01 - 1) < 0.3
    assert res.readout.r2 > 0.9
    assert np.all(res.r2[DOSES >= 100] > 0.95)


@pytest.mark.parametrize(
    ("c0", "c1", "c2", "c3"),
    [(0.20, 4353.29, 2207.83, 2.57), (0.28, 52887.32, 602.13, 2.25)],
    ids=["first-frame", "last-frame"],
)
def test_paper_reference_spectra_recovered(c0, c1, c2, c3):
    """The paper's SOI Fig. 6/7 fits, as spectra with 0.3 % noise, are recovered."""
    q = np.linspace(1 / 128, 1.0, 128)
    rng = np.random.default_rng(7)
    clean = paper_spectrum_model(q, c0, c1, c2, c3)
    values = clean * (1 + 0.003 * rng.standard_normal((3, q.size)))
    spec = RadialSpectrum(q, values, np.full(q.size, 500), "magnitude", (256, 256))
    res = fit_spectra(spec, model="paper")
    assert res.ok.all()
    np.testing.assert_allclose(res.c0, c0, rtol=0.02)
    np.testing.assert_allclose(res.c3, c3, rtol=0.03)
    np.testing.assert_allclose(res.c1, c1, rtol=0.02)
    np.testing.assert_allclose(res.c2, c2, rtol=0.05)  # floor barely reached at q̃ <= 1
    np.testing.assert_allclose(res.floor_C, c2 / c1, rtol=0.06)
    assert np.all(res.r2 > 0.99)


def test_batched_lm_reaches_least_squares_optimum():
    """Same objective minimised per frame with scipy gives the same parameters."""
    stack = _series(0.05, seed=3, size=128)[::6]
    spec = radial_spectrum(stack, kind="power")
    res = fit_spectra(spec, model="physical")
    from napari_lowdose.noise.solver import log_bias as _log_bias

    w = np.sqrt(spec.counts / spec.counts.mean())
    log_bias = _log_bias(spec.counts, "power")
    for i in range(spec.n_frames):
        log_y = np.log(spec.values[i]) - log_bias

        def resid(p, log_y=log_y):
            return w * (np.log(physical_spectrum_model(spec.q_norm, *p)) - log_y)

        x0 = [0.3, 2.5, spec.values[i, 0], spec.values[i, -1]]
        sol = scipy.optimize.least_squares(
            resid, x0, bounds=([0.01, 0.5, 0, 0], [1.5, 10, np.inf, np.inf]), x_scale="jac"
        )
        assert abs(sol.x[0] - res.c0[i]) < 2e-3
        assert abs(sol.x[1] - res.c3[i]) < 2e-2
        ours = 0.5 * np.sum(
            resid([res.c0[i], res.c3[i], res.amplitude_A[i], res.background_B[i]]) ** 2
        )
        assert ours <= sol.cost * (1 + 1e-6)


# -- Eq. 2 on its own ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["magnitude", "power"])
def test_fit_readout_noise_exact(kind):
    n_d = np.geomspace(0.1, 13, 30)
    frac = 0.02 / (0.02 + n_d)
    c = np.sqrt(frac) if kind == "magnitude" else frac
    fit = fit_readout_noise(n_d, c, spectrum_kind=kind)
    assert fit.n0_e_per_px == pytest.approx(0.02, rel=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.n_frames == 30


def test_fit_readout_noise_no_data():
    fit = fit_readout_noise(np.array([np.nan, 1.0]), np.array([0.5, np.nan]))
    assert np.isnan(fit.n0_e_per_px) and fit.n_frames == 0


# -- robustness and structure -------------------------------------------------


@pytest.mark.parametrize("model", ["paper", "physical"])
def test_bad_frames_give_nan_rows_not_exceptions(series_paper_n0, model):
    stack = series_paper_n0[:6, :128, :128].copy()
    stack[1, 10, 10] = np.nan
    stack[3] = 4.0
    stack[4] = np.inf
    res = fit_noise(stack, DOSES[:6], SAMPLING_A, model=model)
    for i in (1, 3, 4):
        assert not res.ok[i]
        assert res.message[i] != "ok"
        for col in ("c0", "c3", "floor_C", "r2", "n0_e_per_px"):
            assert np.isnan(getattr(res, col)[i])
    assert res.ok[[0, 2, 5]].all()
    assert np.isfinite(res.readout.n0_e_per_px)

    all_bad = fit_noise(np.full((2, 32, 32), np.nan), 10.0, SAMPLING_A, model=model)
    assert not all_bad.ok.any()
    assert np.isnan(all_bad.readout.n0_e_per_px)


def test_white_noise_does_not_raise():
    rng = np.random.default_rng(9)
    res = fit_noise(rng.normal(size=(3, 64, 64)), 100.0, SAMPLING_A, model="physical")
    assert res.n_frames == 3  # fitted or flagged, but no exception


def test_single_frame_fit(series_paper_n0):
    res = fit_noise_frame(series_paper_n0[-1], DOSES[-1], SAMPLING_A, model="physical")
    assert isinstance(res, NoiseFitResult) and res.n_frames == 1
    assert res.ok[0] and abs(res.c0[0] - C0) < 0.03
    assert abs(res.n0_e_per_px[0] / 0.01 - 1) < 0.5
    pred = res.predict(0)
    assert pred.shape == res.q_norm.shape
    with pytest.raises(ValueError, match="2-D"):
        fit_noise_frame(series_paper_n0[:2])


def test_table_outputs(series_paper_n0):
    res = fit_noise(series_paper_n0[:5, :64, :64], DOSES[:5], SAMPLING_A, model="paper")
    cols = res.to_columns()
    assert {len(v) for v in cols.values()} == {5}
    for key in ("frame", "dose_e_per_A2", "c0", "c1", "c2", "c3", "floor_C", "r2", "ok"):
        assert key in cols
    rows = res.to_rows()
    assert len(rows) == 5 and rows[2]["frame"] == 2
    assert isinstance(rows[0]["c0"], float) and isinstance(rows[0]["ok"], bool)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(cols))
    writer.writeheader()
    writer.writerows(rows)
    assert buf.getvalue().count("\n") == 6
    summary = res.summary()
    assert summary["model"] == "paper" and summary["spectrum_kind"] == "magnitude"
    assert summary["dose_range_e_per_A2"] == (DOSES[0], DOSES[4])


def test_without_dose_n0_is_nan(series_paper_n0):
    res = fit_noise(series_paper_n0[-3:, :128, :128], model="physical")
    assert res.ok.all()
    assert np.all(np.isnan(res.n0_e_per_px)) and np.isnan(res.readout.n0_e_per_px)


def test_argument_errors(series_paper_n0):
    stack = series_paper_n0[:3, :32, :32]
    with pytest.raises(ValueError, match="power"):
        fit_noise(stack, model="physical", spectrum_kind="magnitude")
    with pytest.raises(ValueError, match="model"):
        fit_noise(stack, model="lorentz")
    with pytest.raises(ValueError, match="3 frames"):
        fit_noise(stack, np.ones(4), SAMPLING_A)
