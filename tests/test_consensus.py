"""Readouts against the consensus of the highest-dose frames: recovered from series with a
known particle, fooled neither by false detections nor by drift."""

import numpy as np
import pytest

from napari_lowdose.analysis.consensus import (
    consensus_readout,
    estimate_drift,
    lowest_dose_holding,
)

N, SIZE = 30, 64
DOSES = np.geomspace(10.0, 1e4, N)


def _disk(cy=32.0, cx=32.0, r=10.0):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def _series(visible_from: float, converged_from: float, *, false_blob_below: float):
    """Masks: nothing found below ``visible_from``, a 60 % disk up to ``converged_from``,
    the whole disk above; a large false detection in the vacuum below ``false_blob_below``."""
    truth = _disk()
    masks = np.zeros((N, SIZE, SIZE), dtype=bool)
    for i, dose in enumerate(DOSES):
        if dose >= converged_from:
            masks[i] = truth
        elif dose >= visible_from:
            masks[i] = truth & (np.mgrid[:SIZE, :SIZE][1] < 36)  # ~60 % of the particle
        if dose < false_blob_below:
            masks[i, 2:20, 44:62] = True  # noise-triggered detection, larger than the particle
    return masks


def test_doses_from_a_known_series():
    masks = _series(visible_from=50.0, converged_from=500.0, false_blob_below=20.0)
    readout = consensus_readout(masks, DOSES)
    assert readout.available and readout.consensus.sum() == _disk().sum()
    first_visible = DOSES[DOSES >= 50.0][0]
    first_converged = DOSES[DOSES >= 500.0][0]
    assert readout.visibility_dose_e_per_A2 == pytest.approx(first_visible)
    assert readout.convergence_dose_e_per_A2 == pytest.approx(first_converged)
    # The false detections at the lowest doses are over-segmentation, not found area.
    assert np.all(readout.over_segmented[DOSES < 20.0])
    assert not np.any(readout.over_segmented[DOSES >= 20.0])
    assert readout.summary()["over_segmented_frames"] == list(np.flatnonzero(DOSES < 20.0))


def test_false_detections_do_not_make_the_particle_visible():
    """The area-only readout's trap: at the lowest doses a false blob has ~half the area."""
    masks = _series(visible_from=300.0, converged_from=1000.0, false_blob_below=100.0)
    readout = consensus_readout(masks, DOSES)
    assert readout.visibility_dose_e_per_A2 == pytest.approx(DOSES[DOSES >= 300.0][0])


def test_visible_means_f1_at_least_half_against_the_consensus():
    """A frame that finds 40 % of the particle and nothing else (F1 0.57) is visible; one
    that finds it all plus a false blob of twice its area (F1 0.5 > precision 0.33) is
    visible and over-segmented; one that finds it all plus three times its area is not."""
    truth = _disk()
    area = int(truth.sum())
    partial = truth & (np.arange(SIZE)[None, :] < np.sort(np.flatnonzero(truth.any(0)))[0]
                       + 0.4 * (2 * 10 + 1))
    base = np.stack([truth] * N)
    for extra, index, visible in ((0, 0, True), (2, 1, True), (3, 2, False)):
        masks = base.copy()
        if extra:
            frame = truth.copy()
            free = np.flatnonzero(~truth.ravel())[: extra * area]
            frame.ravel()[free] = True
            masks[index] = frame
        else:
            masks[index] = partial
        readout = consensus_readout(masks, DOSES)
        f1 = readout.f1[index]
        assert (f1 >= 0.5) == visible
        assert readout.visibility_dose_e_per_A2 == pytest.approx(
            DOSES[0] if visible else DOSES[index + 1])
        assert readout.over_segmented[index] == bool(extra)


def test_no_readout_and_why():
    masks = _series(visible_from=50.0, converged_from=500.0, false_blob_below=20.0)
    cancelled = consensus_readout(masks[:12], DOSES[:12], series_max_dose_e_per_A2=DOSES[-1])
    assert not cancelled.available and "not segmented yet" in cancelled.reason
    assert cancelled.visibility_dose_e_per_A2 is None
    assert np.all(np.isnan(cancelled.f1))
    few = consensus_readout(masks[-4:], DOSES[-4:])
    assert "too few" in few.reason
    noisy = masks.copy()
    rng = np.random.default_rng(0)
    noisy[-3:] = rng.random((3, SIZE, SIZE)) < 0.3  # the last frames disagree
    assert "not converged" in consensus_readout(noisy, DOSES).reason
    assert "nothing is segmented" in consensus_readout(np.zeros_like(masks), DOSES).reason


def test_lowest_dose_holding():
    dose = np.array([40.0, 10.0, 20.0, 30.0])  # any order
    assert lowest_dose_holding(dose, np.array([True, False, True, True])) == 20.0
    assert lowest_dose_holding(dose, np.array([True, True, True, True])) == 10.0
    assert lowest_dose_holding(dose, np.array([False, True, True, True])) is None


def test_drift_is_estimated_and_followed():
    """A particle drifting 0.3 px per frame: registered, the readout is as without drift."""
    rng = np.random.default_rng(1)
    drift = np.column_stack([0.3 * np.arange(N), -0.2 * np.arange(N)])
    drift -= drift[-1]  # relative to the highest-dose (last) frame
    images, masks = [], []
    for i, dose in enumerate(DOSES):
        disk = _disk(32 + drift[i, 0], 32 + drift[i, 1])
        e_per_px = dose * 0.01
        images.append(rng.poisson(e_per_px * (1.0 + 1.0 * disk)).astype(np.float32))
        masks.append(disk if dose >= 100.0 else np.zeros_like(disk))
    shifts = estimate_drift(np.array(images), DOSES)
    assert np.abs(shifts - drift).max() < 1.0
    with_drift = consensus_readout(np.array(masks), DOSES, shifts_px=shifts)
    assert with_drift.convergence_dose_e_per_A2 == pytest.approx(DOSES[DOSES >= 100.0][0])
    without = consensus_readout(np.array(masks), DOSES)
    assert without.convergence_dose_e_per_A2 > with_drift.convergence_dose_e_per_A2


def test_rose_dose_of_a_known_particle():
    """A particle 20 % brighter than its background, 314 px of 0.1 Å: k²/(C²·A)."""
    from napari_lowdose.analysis.rose import particle_contrast, rose_dose_e_per_A2

    disk = _disk(r=10.0)
    frame = np.where(disk, 1.2, 1.0) * 1000.0
    contrast = particle_contrast(frame, disk)
    assert contrast == pytest.approx(0.2 * 1000.0 / frame.mean(), rel=1e-6)
    area_A2 = disk.sum() * 0.01
    assert rose_dose_e_per_A2(contrast, area_A2) == pytest.approx(25 / (contrast**2 * area_A2))
    # A smaller object of the same contrast needs more dose; no contrast, never visible.
    assert rose_dose_e_per_A2(contrast, 100.0) < rose_dose_e_per_A2(contrast, 10.0)
    assert rose_dose_e_per_A2(0.0, 100.0) == float("inf")
    assert np.isnan(particle_contrast(frame, np.zeros_like(disk)))


def test_the_rose_ring_is_set_in_angstrom_and_skips_the_edge_fringe():
    """At 0.1 Å/px a bright Fresnel fringe hugs the particle: a ring a few pixels out
    measures the fringe; the ring in Å (1 Å gap, 4 Å wide) measures the background."""
    from napari_lowdose.analysis.rose import ROSE_GAP_A, particle_contrast

    yy, xx = np.mgrid[:160, :160]
    r = np.hypot(yy - 80, xx - 80)
    disk = r <= 30
    frame = np.where(disk, 0.9, 1.0)
    frame = np.where((r > 30) & (r <= 30 + 0.5 * ROSE_GAP_A / 0.1), 1.3, frame)  # fringe
    in_pixels = particle_contrast(frame, disk, ring_px=4, gap_px=1)
    in_angstrom = particle_contrast(frame, disk, pixel_size_A=0.1)
    assert in_angstrom == pytest.approx(-0.1 / frame.mean(), rel=1e-6)
    assert abs(in_pixels) > 2 * abs(in_angstrom)


def test_each_particle_gets_its_own_readout():
    """Two particles, one found from a lower dose than the other; one particle: the field."""
    from napari_lowdose.analysis.consensus import particle_readouts

    big, small = _disk(20, 20, 9), _disk(46, 46, 6)
    masks = np.zeros((N, SIZE, SIZE), dtype=bool)
    for i, dose in enumerate(DOSES):
        if dose >= 50.0:
            masks[i] |= big
        if dose >= 800.0:
            masks[i] |= small
    readout = consensus_readout(masks, DOSES)
    particles = particle_readouts(readout, masks, DOSES)
    assert [p["particle"] for p in particles] == [1, 2]
    assert particles[0]["area_px"] == big.sum() and particles[1]["area_px"] == small.sum()
    assert particles[0]["visibility_dose_e_per_A2"] == pytest.approx(DOSES[DOSES >= 50][0])
    assert particles[1]["visibility_dose_e_per_A2"] == pytest.approx(DOSES[DOSES >= 800][0])
    assert particles[0]["centre_px"] == pytest.approx([20, 20], abs=0.1)
    # One particle in the field: the same doses as the whole-field readout.
    single = _series(visible_from=50.0, converged_from=500.0, false_blob_below=20.0)
    whole = consensus_readout(single, DOSES)
    (only,) = particle_readouts(whole, single, DOSES)
    assert only["visibility_dose_e_per_A2"] == whole.visibility_dose_e_per_A2
    assert only["convergence_dose_e_per_A2"] == whole.convergence_dose_e_per_A2


def test_specks_of_the_consensus_are_not_particles():
    """A few pixels the high-dose frames agree on beside a particle are not a second
    particle (the demo's MSD-net consensus had 7-px ones, with a Rose dose of 10⁵)."""
    from napari_lowdose.analysis.consensus import particle_labels

    consensus = _disk(30, 30, 10)
    consensus[5:7, 55:57] = True  # 4 px
    labels, n = particle_labels(consensus)
    assert n == 1 and labels[30, 30] == 1 and labels[5, 55] == 0
    consensus |= _disk(50, 10, 3)  # 29 px: a small particle, ≥ 2 % of the large one
    labels, n = particle_labels(consensus)
    assert n == 2 and labels[50, 10] == 2


def test_a_frame_range_names_its_consensus_frames_by_series_index():
    """A run of frames 40–69 of a longer series: the summary names the consensus frames as
    it names the high-dose frames (series indices), and a record read back still finds
    their rows."""
    from napari_lowdose.analysis.area_record import analysis_from_record, area_record
    from napari_lowdose.analysis.area_vs_dose import analyse_area_vs_dose

    masks = _series(visible_from=50.0, converged_from=500.0, false_blob_below=20.0)
    series_frames = np.arange(40, 40 + N)
    series_dose = np.concatenate([np.full(40, 5.0), DOSES])  # 40 earlier frames of 5 e⁻/Å²
    analysis = analyse_area_vs_dose(masks, DOSES, (0.5, 0.5), frames=series_frames,
                                    series_dose_e_per_A2=series_dose)
    assert analysis.frame.tolist() == series_frames.tolist()
    # The dose received counts the 40 frames before the range.
    np.testing.assert_allclose(analysis.cumulative_dose_e_per_A2, 200.0 + np.cumsum(DOSES))
    summary = analysis.summary()
    rows = analysis.consensus.reference_frames
    assert summary["consensus_frames"] == [int(f) for f in series_frames[rows]]
    # Both are the highest-dose frames by the same rule: the same series indices.
    assert summary["consensus_frames"] == summary["high_dose_frames"] == [67, 68, 69]
    back = analysis_from_record(area_record(analysis, label="run"))
    assert back.consensus.reference_frames.tolist() == rows.tolist()


def test_too_few_frames_give_no_area_readout_and_say_why(capsys):
    """One frame (or five) cannot show a dose 'from which' the area converged."""
    from pathlib import Path

    from napari_lowdose.analysis.area_record import analysis_from_record, area_record
    from napari_lowdose.analysis.area_vs_dose import analyse_area_vs_dose
    from napari_lowdose.cli.segment import _print_summary

    one = analyse_area_vs_dose(_disk()[None], DOSES[:1], (0.5, 0.5))
    summary = one.summary()
    assert summary["paper_convergence_dose_e_per_A2"] is None
    assert summary["paper_dose_at_50pct_e_per_A2"] is None
    assert summary["paper_readout"].startswith("too few segmented frames (1; at least 6)")
    assert analysis_from_record(area_record(one, label="x")).paper_reason == \
        summary["paper_readout"]
    _print_summary(one, Path("out"))
    printed = capsys.readouterr().out
    assert "area only (the paper's method): no readout: too few segmented frames" in printed
    assert "converged from" not in printed
    six = analyse_area_vs_dose(np.repeat(_disk()[None], 6, axis=0), DOSES[:6], (0.5, 0.5))
    assert six.summary()["paper_readout"] == "ok"


def test_a_readout_at_the_lowest_dose_is_printed_as_a_bound(capsys):
    from pathlib import Path

    from napari_lowdose.analysis.area_vs_dose import analyse_area_vs_dose, readout_text
    from napari_lowdose.cli.segment import _print_summary

    assert readout_text(None) == readout_text(float("inf")) == "not reached"
    assert readout_text(12.345) == "12.3 e⁻/Å²"
    assert readout_text(10.0, 10.0) == "≤ 10 e⁻/Å² (the lowest dose segmented)"
    # Frames 20–29 of the series: the particle is already whole in the first of them.
    masks = np.repeat(_disk()[None], 10, axis=0)
    analysis = analyse_area_vs_dose(masks, DOSES[20:], (0.5, 0.5))
    _print_summary(analysis, Path("out"))
    printed = capsys.readouterr().out
    assert f"visible (F1 ≥ 0.5) from ≤ {DOSES[20]:.3g} e⁻/Å² (the lowest dose segmented)" \
        in printed
