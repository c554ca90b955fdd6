"""The vacuum check of a noise fit and the most vacuum-like corner (noise/vacuum.py)."""

import numpy as np
import pytest

from napari_lowdose.noise import apply_detector_noise, fit_spectra, radial_spectrum
from napari_lowdose.noise.vacuum import (
    MIN_VACUUM_FRACTION,
    corner_scores,
    corner_squares,
    excess_scatter,
    vacuum_check,
    vacuum_corner,
)
from napari_lowdose.simulate.synthetic_series import make_synthetic_dose_series

KINDS = [("paper", "magnitude"), ("paper", "power"), ("physical", "power")]
SAMPLING_A = 0.3


@pytest.fixture(scope="module")
def demo():
    """The synthetic demo series (particle in the middle, vacuum in the corners)."""
    return make_synthetic_dose_series(n_frames=24)


def _check(block, dose, model, kind):
    spectrum = radial_spectrum(block, kind=kind)
    result = fit_spectra(spectrum, model=model, dose_e_per_A2=dose, sampling_A=SAMPLING_A)
    return result, vacuum_check(result, spectrum.counts)


def _particle_square(series, side):
    ys, xs = np.nonzero(series.particle_mask)
    cy, cx = int(ys.mean()), int(xs.mean())
    return np.s_[:, cy - side // 2:cy + side // 2, cx - side // 2:cx + side // 2]


@pytest.mark.parametrize(("model", "kind"), KINDS)
def test_genuine_vacuum_passes_every_model(demo, model, kind):
    block = demo.counts[:, 192:, 192:]  # bottom-right 64² px: vacuum
    assert demo.particle_mask[192:, 192:].sum() == 0
    result, check = _check(block, demo.dose_e_per_A2, model, kind)
    assert check.passed and check.warning() is None
    assert check.n_ok == check.n_frames == 24
    # The mean squared residual is the ring-average noise: about 1, not the old R² test.
    assert 0.5 < np.median(check.scatter) < 1.3
    if model == "physical":
        assert check.median_r2 < 0.9  # the former rule (median R² ≥ 0.9) refused this vacuum


@pytest.mark.parametrize(("model", "kind"), KINDS)
def test_particle_with_lattice_fails_every_model(demo, model, kind):
    result, check = _check(demo.counts[_particle_square(demo, 64)], demo.dose_e_per_A2,
                           model, kind)
    assert not check.passed
    assert check.n_ok < MIN_VACUUM_FRACTION * check.n_frames
    assert "not pure vacuum" in check.warning()
    assert f"{check.n_ok}/24" in check.warning()
    # The high-dose frames show the lattice; the low-dose ones cannot.
    assert not check.frame_ok[-6:].any()


def test_half_on_particle_edge_fails(demo):
    ys, xs = np.nonzero(demo.particle_mask)
    cy, cx = int(ys.mean()), int(xs.mean())
    radius = int(np.sqrt(demo.particle_mask.sum() / np.pi))
    block = demo.counts[:, cy - 48:cy + 48, cx + radius - 48:cx + radius + 48]
    _, check = _check(block, demo.dose_e_per_A2, "physical", "power")
    assert not check.passed


def test_one_frame_check_and_failed_fits():
    frame = apply_detector_noise(np.ones((1, 64, 64)), 300.0, SAMPLING_A, c0=0.27, c3=2.25,
                                 n0_e_per_px=0.01, rng=3)
    _, check = _check(frame, 300.0, "physical", "power")
    assert check.passed and check.summary().startswith("1/1 frame looks like vacuum")
    flat = np.full((2, 64, 64), 5.0)  # constant: no spectrum to fit
    _, check = _check(flat, None, "paper", "magnitude")
    assert not check.passed and check.n_ok == 0
    assert check.warning().startswith("No frame could be fitted")


def test_excess_scatter_needs_spectra_and_matching_rings():
    frame = apply_detector_noise(np.ones((1, 64, 64)), 100.0, SAMPLING_A, c0=0.27, c3=2.25,
                                 n0_e_per_px=0.01, rng=4)
    spectrum = radial_spectrum(frame, kind="power")
    result = fit_spectra(spectrum, model="physical", keep_spectra=False)
    with pytest.raises(ValueError, match="keep_spectra"):
        excess_scatter(result, spectrum.counts)
    result = fit_spectra(spectrum, model="physical")
    with pytest.raises(ValueError, match="ring counts"):
        excess_scatter(result, spectrum.counts[:-1])


# -- the most vacuum-like corner ------------------------------------------------------------
def _lattice(shape, centre, radius_px):
    """Clean intensity: a soft disk with Au-like fringes (period ~7.8 px) on vacuum 1."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    inside = np.hypot(y - centre[0], x - centre[1]) <= radius_px
    fringes = sum(np.cos(2 * np.pi / period * (x * np.cos(a) + y * np.sin(a)))
                  for a, period in ((0.3, 7.8), (1.53, 7.8), (2.5, 6.8)))
    return 1.0 - 0.35 * inside * (0.4 + 0.6 * (0.5 + fringes / 6.0))


def _frame(clean, dose=400.0, seed=0):
    return apply_detector_noise(clean, dose, SAMPLING_A, c0=0.27, c3=2.25, n0_e_per_px=0.01,
                                counts_per_electron=2.0, rng=seed)


def test_corner_squares_bounds():
    squares = corner_squares((200, 300), 64)
    assert squares["top-left"] == (0, 64, 0, 64)
    assert squares["bottom-right"] == (136, 200, 236, 300)
    with pytest.raises(ValueError, match="does not fit"):
        corner_squares((50, 300), 64)


@pytest.mark.parametrize("seed", [0, 1])
def test_vacuum_corner_avoids_a_lattice_corner(seed):
    clean = _lattice((256, 256), (20, 20), 90)  # a particle over the top-left corner
    frame = _frame(clean, seed=seed)
    bounds, score = vacuum_corner(frame, 64)
    assert bounds != (0, 64, 0, 64)
    assert clean[bounds[0]:bounds[1], bounds[2]:bounds[3]].min() == 1.0  # vacuum
    scores = corner_scores(frame, 64)
    assert scores["top-left"] > 3 * score
    assert score < 2


def test_vacuum_corner_finds_the_one_vacuum_corner():
    clean = np.ones((256, 256))
    for centre in ((0, 0), (0, 255), (255, 0)):  # lattice over three corners
        clean = np.minimum(clean, _lattice((256, 256), centre, 110))
    ramp = np.ones((256, 256))  # and a thickness ramp (no lattice) over the top-left
    ramp[:96, :96] -= 0.3 * np.linspace(0, 1, 96)[None, :]
    clean = np.minimum(clean, ramp)
    assert clean[192:, 192:].min() == 1.0
    bounds, _ = vacuum_corner(_frame(clean), 64)
    assert bounds == (192, 256, 192, 256)


def test_vacuum_corner_refuses_non_finite_frames():
    frame = _frame(np.ones((128, 128)))
    frame[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vacuum_corner(frame, 32)
