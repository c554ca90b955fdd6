"""Several particles in one field: each particle's own area-against-dose curve and readouts,
recovered from a synthetic series, written to area_vs_dose.csv and read back; one particle
gives the whole-field rows unchanged."""

import csv
import io

import numpy as np
import pytest

from napari_lowdose.analysis import (
    AREA_TABLE_COLUMNS,
    PARTICLE_COLUMN,
    WHOLE_FIELD,
    analyse_area_vs_dose,
    table_blocks,
)
from napari_lowdose.analysis.consensus import CONSENSUS_COLUMNS
from napari_lowdose.io.tables import table_to_csv

N, SIZE, PIXEL_A = 30, 96, 0.5
DOSES = np.geomspace(10.0, 1e4, N)
#: (centre y, centre x, radius px, found from e⁻/Å²): three particles of different sizes.
PARTICLES = ((26.0, 26.0, 12.0, 40.0), (70.0, 66.0, 8.0, 300.0), (24.0, 74.0, 5.0, 2000.0))
#: Below this dose the network also fires on noise.
FALSE_DETECTIONS_BELOW = 25.0


def _disk(cy, cx, r):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def multi_particle_masks(particles=PARTICLES, seed=0):
    """Masks of a series: each disk found whole from its dose on (a partial, ~half-disk
    detection for the three frames before it), speckles of false detections at the lowest
    doses."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((N, SIZE, SIZE), dtype=bool)
    xx = np.mgrid[:SIZE, :SIZE][1]
    for cy, cx, r, found_from in particles:
        disk = _disk(cy, cx, r)
        first = int(np.flatnonzero(DOSES >= found_from)[0])
        masks[first:] |= disk
        masks[max(first - 3, 0):first] |= disk & (xx < cx - r / 3)  # < half the particle
    for i in np.flatnonzero(DOSES < FALSE_DETECTIONS_BELOW):
        masks[i] |= rng.random((SIZE, SIZE)) < 0.03
    return masks


@pytest.fixture(scope="module")
def analysis():
    return analyse_area_vs_dose(multi_particle_masks(), DOSES, PIXEL_A)


def test_each_particle_is_recovered_with_its_own_doses(analysis):
    assert analysis.n_particles == 3
    visible = []
    for number, (cy, cx, r, found_from) in enumerate(PARTICLES, start=1):  # largest first
        particle = analysis.particle(number)
        disk = _disk(cy, cx, r)
        first_found = DOSES[DOSES >= found_from][0]
        readout = particle.consensus
        assert readout.visibility_dose_e_per_A2 == pytest.approx(first_found)
        assert readout.convergence_dose_e_per_A2 == pytest.approx(first_found)
        # Its own area: the disk once found, nothing of the other particles.
        assert np.all(particle.area_px[DOSES >= first_found] == disk.sum())
        assert particle.converged_area_px == disk.sum()
        assert particle.area_nm2 == pytest.approx(particle.area_px * PIXEL_A**2 / 100)
        assert np.all(particle.in_band[DOSES >= first_found])
        assert not particle.in_band[DOSES < first_found].any()
        visible.append(readout.visibility_dose_e_per_A2)
    assert visible == sorted(visible) and len(set(visible)) == 3  # later → higher dose
    # The speckles alone (before any particle is found) over-segment every particle;
    # nothing is over-segmented once the speckles are gone.
    speckles_only = DOSES < 20.0
    for number in (1, 2, 3):
        over = analysis.particle(number).consensus.over_segmented
        assert over[speckles_only].all() and not over[DOSES >= FALSE_DETECTIONS_BELOW].any()
    # The whole field, dominated by the largest particle, looks visible from the first
    # particle's dose: the two smaller ones are not found before their own doses.
    assert analysis.consensus.visibility_dose_e_per_A2 == pytest.approx(visible[0])
    # The particles' areas add up to the whole field's in every frame.
    total = sum(analysis.particle(k).area_px for k in (1, 2, 3))
    assert np.array_equal(total, analysis.area_px)
    with pytest.raises(ValueError, match="no particle 4"):
        analysis.particle(4)


def test_the_csv_has_a_block_per_particle_and_round_trips(analysis, tmp_path):
    from napari_lowdose.workflows.segmentation import write_segmentation

    masks = multi_particle_masks().astype(np.uint8)
    write_segmentation(tmp_path / "run", pixel_size_A=(PIXEL_A, PIXEL_A),
                       probabilities=masks.astype(np.float32), masks=masks,
                       analysis=analysis, summary=analysis.summary(), label="synthetic",
                       overwrite=False)
    text = (tmp_path / "run" / "area_vs_dose.csv").read_text()
    header, *lines = text.splitlines()
    assert header.split(",") == [*AREA_TABLE_COLUMNS, *CONSENSUS_COLUMNS, PARTICLE_COLUMN]
    assert len(lines) == 4 * N
    rows = list(csv.DictReader(io.StringIO(text)))
    blocks = table_blocks({key: [row[key] for row in rows] for key in rows[0]})
    assert list(blocks) == [WHOLE_FIELD, "1", "2", "3"]
    # The whole-field rows are the table of before, cell for cell.
    assert table_to_csv(blocks[WHOLE_FIELD]) == table_to_csv(analysis.table())
    for number in (1, 2, 3):
        particle, block = analysis.particle(number), blocks[str(number)]
        assert [int(v) for v in block["frame"]] == list(range(N))
        assert [int(v) for v in block["area_px"]] == particle.area_px.tolist()
        np.testing.assert_allclose([float(v) for v in block["dose_e_per_A2"]], DOSES)
        for key, values in (("recall", particle.consensus.recall),
                            ("f1_consensus", particle.consensus.f1),
                            ("area_nm2", particle.area_nm2)):
            np.testing.assert_array_equal([float(v) for v in block[key]], values)
        assert block["over_segmented"] == [
            str(v).lower() for v in particle.consensus.over_segmented.tolist()]


def test_one_particle_gives_the_rows_of_before():
    """One particle (with false detections and drift): no particle column, the same file,
    and the particle's own analysis equals the whole field's."""
    drift = np.column_stack([0.2 * np.arange(N), -0.1 * np.arange(N)])
    drift -= drift[-1]
    masks = np.zeros((N, SIZE, SIZE), dtype=bool)
    rng = np.random.default_rng(1)
    for i, dose in enumerate(DOSES):
        if dose >= 100.0:
            masks[i] = _disk(48 + drift[i, 0], 48 + drift[i, 1], 14)
        if dose < FALSE_DETECTIONS_BELOW:
            masks[i] |= rng.random((SIZE, SIZE)) < 0.03
    analysis = analyse_area_vs_dose(masks, DOSES, PIXEL_A, shifts_px=drift)
    assert analysis.n_particles == 1
    table = analysis.export_table()
    assert PARTICLE_COLUMN not in table
    assert table_to_csv(table) == table_to_csv(analysis.table())
    assert table_to_csv(analysis.particle(1).table()) == table_to_csv(analysis.table())
    only = analysis.particle(1)
    assert only.band_px == analysis.band_px
    assert only.consensus.visibility_dose_e_per_A2 == analysis.consensus.visibility_dose_e_per_A2
    assert only.dose_at_50pct_e_per_A2 == analysis.dose_at_50pct_e_per_A2


def _mask_layer(viewer, analysis, *, label, name):
    """A mask layer as 'Segment' leaves it: the analysis recorded in its metadata."""
    from napari_lowdose.analysis.area_record import area_record
    from napari_lowdose.io.layers import LOWDOSE_KEY
    from napari_lowdose.widgets.area_plot import AREA_KEY

    return viewer.add_labels(np.zeros((N, 8, 8), dtype=np.uint8), name=name,
                             metadata={LOWDOSE_KEY: {AREA_KEY: area_record(analysis,
                                                                           label=label)}})


def _readout_lines(ax) -> dict[str, float]:
    """Line style → dose of the vertical readout lines on an axis."""
    return {line.get_linestyle(): float(line.get_xdata()[0]) for line in ax.lines
            if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]}


@pytest.mark.gui
def test_the_dock_draws_the_particle_chosen(make_napari_viewer, analysis):
    from napari_lowdose.analysis.area_record import analysis_from_record, area_record
    from napari_lowdose.io.layers import LOWDOSE_KEY
    from napari_lowdose.widgets.area_plot import ALL_PARTICLES, AREA_KEY, AreaPlotWidget
    from napari_lowdose.widgets.segment_results import summary_features

    viewer = make_napari_viewer()
    layer = _mask_layer(viewer, analysis, label="synthetic", name="mask")
    # The layer's record gives back every particle's analysis, row for row.
    rebuilt = analysis_from_record(layer.metadata[LOWDOSE_KEY][AREA_KEY])
    assert rebuilt.n_particles == 3
    for number in (1, 2, 3):
        assert (table_to_csv(rebuilt.particle(number).table())
                == table_to_csv(analysis.particle(number).table()))
    # The layer's features: each particle's doses.
    features = summary_features(analysis, None, "synthetic")
    assert features["particles"] == [3]
    assert features["particle_3_visibility_dose_e_per_A2"] == [
        analysis.particle(3).consensus.visibility_dose_e_per_A2]
    plot = AreaPlotWidget(viewer)
    viewer.window.add_dock_widget(plot)
    combo = plot.particle_combo
    assert not combo.native.isHidden()
    assert list(combo.choices) == [ALL_PARTICLES, "Particle 1", "Particle 2", "Particle 3"]
    # All particles: the whole field, as without particles.
    dose, area = plot.plotted_runs()["synthetic"]
    np.testing.assert_allclose(area, analysis.area_nm2)
    whole = analysis.consensus
    assert _readout_lines(plot.ax_area) == pytest.approx(
        {"-": whole.convergence_dose_e_per_A2, "--": whole.visibility_dose_e_per_A2})
    # Particle 3 (the smallest, found last): its own curve, lines, legend and status.
    combo.value = "Particle 3"
    third = analysis.particle(3)
    (label,) = plot.plotted_runs()
    assert label == "synthetic · particle 3"
    np.testing.assert_allclose(plot.plotted_runs()[label][1], third.area_nm2)
    visible = third.consensus.visibility_dose_e_per_A2
    assert visible > whole.visibility_dose_e_per_A2
    assert _readout_lines(plot.ax_area) == pytest.approx(
        {"-": third.consensus.convergence_dose_e_per_A2, "--": visible})
    assert label in [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert plot.status.value.startswith(f"{label}: visible from {visible:.3g} e⁻/Å²")
    # Kept while the same layer stays selected (a redraw, another layer added)...
    viewer.layers.selection.active = layer
    plot.refresh()
    viewer.add_image(np.zeros((N, 8, 8)), name="image")
    viewer.layers.selection.active = layer
    assert combo.value == "Particle 3" and label in plot.plotted_runs()
    # ...back to all particles when the number of particles changes (a new threshold),
    two = analyse_area_vs_dose(multi_particle_masks(PARTICLES[:2]), DOSES, PIXEL_A)
    layer.metadata = {LOWDOSE_KEY: {AREA_KEY: area_record(two, label="synthetic")}}
    plot.refresh()
    assert combo.value == ALL_PARTICLES and len(combo.choices) == 3
    assert set(plot.plotted_runs()) == {"synthetic"}
    # ...or when another mask layer is selected; one particle: no choice shown.
    combo.value = "Particle 2"
    one = analyse_area_vs_dose(multi_particle_masks(PARTICLES[:1]), DOSES, PIXEL_A)
    single = _mask_layer(viewer, one, label="single", name="single mask")
    viewer.layers.selection.active = single
    assert combo.native.isHidden() and combo.value == ALL_PARTICLES
    assert set(plot.plotted_runs()) == {"synthetic", "single"}


@pytest.mark.gui
def test_an_exported_run_plots_again_when_its_masks_are_opened(make_napari_viewer, analysis,
                                                                tmp_path):
    """Export, close, reopen masks.tif in napari: the Area-vs-dose dock draws the run with
    its particles, and the mask layer has its features row again."""
    from napari_lowdose.widgets.area_plot import AreaPlotWidget
    from napari_lowdose.workflows.segmentation import write_segmentation

    masks = multi_particle_masks().astype(np.uint8)
    write_segmentation(tmp_path / "run", pixel_size_A=(PIXEL_A, PIXEL_A),
                       probabilities=masks.astype(np.float32), masks=masks,
                       analysis=analysis, summary=analysis.summary(), label="exported",
                       overwrite=False)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "run" / "masks.tif"), plugin="napari-lowdose")
    assert layer.__class__.__name__ == "Labels"
    assert layer.features["particles"].tolist() == [3]
    plot = AreaPlotWidget(viewer)
    viewer.window.add_dock_widget(plot)
    dose, area = plot.plotted_runs()["exported"]
    np.testing.assert_allclose(dose, DOSES)
    np.testing.assert_allclose(area, analysis.area_nm2)
    assert len(plot.particle_combo.choices) == 4
    plot.particle_combo.value = "Particle 2"
    np.testing.assert_allclose(plot.plotted_runs()["exported · particle 2"][1],
                               analysis.particle(2).area_nm2)
