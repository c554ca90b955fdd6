"""The physics next to the network (issue 15): each particle's contrast and Rose-criterion
doses, recovered from a synthetic series of known contrasts, in the analysis, its record,
``summary.json``, the command's print, the mask layer's features and the Area dock."""

import json

import numpy as np
import pytest

from napari_lowdose.analysis import analyse_area_vs_dose
from napari_lowdose.analysis.rose import ROSE_K, particle_contrast

N, SIZE, PIXEL_A = 8, 96, 0.5
DOSES = np.geomspace(10.0, 1e3, N)
BACKGROUND = 1000.0
#: (centre y, centre x, radius px, contrast against the background), largest first: the
#: third sits in the first one's background ring (5 px apart; the ring is 2 px out, 8 px
#: wide).
PARTICLES = ((30.0, 30.0, 12.0, 0.2), (72.0, 66.0, 8.0, 0.1), (30.0, 53.0, 6.0, -0.3))


def _disk(cy, cx, r):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def _truth_image():
    image = np.full((SIZE, SIZE), BACKGROUND)
    for cy, cx, r, contrast in PARTICLES:
        image[_disk(cy, cx, r)] = BACKGROUND * (1 + contrast)
    return image


def _series():
    """Frames (intensity ∝ dose, no noise: the contrast is exact) and masks (every particle
    found in every frame)."""
    image = _truth_image()
    frames = np.stack([image * dose / DOSES[-1] for dose in DOSES]).astype(np.float32)
    union = np.zeros((SIZE, SIZE), dtype=bool)
    for cy, cx, r, _ in PARTICLES:
        union |= _disk(cy, cx, r)
    return frames, np.repeat(union[None], N, axis=0)


def _expected():
    """(contrast, area Å², k²/(C²A) for the particle, for 1 nm²) of each particle, and of
    all particles together (their ring is background only)."""
    mean = _truth_image().mean()
    rows, union_px, signal = [], 0, 0.0
    for cy, cx, r, contrast in PARTICLES:
        px = int(_disk(cy, cx, r).sum())
        c = contrast * BACKGROUND / mean
        area = px * PIXEL_A**2
        rows.append((c, area, ROSE_K**2 / (c * c * area), ROSE_K**2 / (c * c * 100.0)))
        union_px += px
        signal += contrast * BACKGROUND * px
    c = signal / union_px / mean
    area = union_px * PIXEL_A**2
    return rows, (c, area, ROSE_K**2 / (c * c * area), ROSE_K**2 / (c * c * 100.0))


def _check(entry, expected):
    c, area, whole, patch = expected
    assert entry["particle_contrast"] == pytest.approx(c, rel=1e-6)
    assert entry["particle_area_nm2"] == pytest.approx(area / 100.0)
    assert entry["rose_dose_particle_e_per_A2"] == pytest.approx(whole, rel=1e-6)
    assert entry["rose_dose_1nm2_e_per_A2"] == pytest.approx(patch, rel=1e-6)


@pytest.fixture(scope="module")
def analysis():
    from napari_lowdose.workflows.segmentation import with_rose

    frames, masks = _series()
    plain = analyse_area_vs_dose(masks, DOSES, PIXEL_A)
    return with_rose(frames, plain, (PIXEL_A, PIXEL_A))


def test_each_particle_gets_the_rose_dose_of_its_size_and_contrast(analysis):
    rows, whole = _expected()
    assert analysis.n_particles == 3
    rose = analysis.rose
    _check(rose, whole)  # the whole field: every particle as one mask
    assert [p["particle"] for p in rose["particles"]] == [1, 2, 3]  # numbered by size
    for number, expected in enumerate(rows, start=1):
        _check(rose["particles"][number - 1], expected)
        own = analysis.particle(number)
        _check(own.rose, expected)
        assert own.summary()["rose"] == own.rose
        # The particle's own centre: the same numbering as the consensus readouts.
        cy, cx = analysis.consensus.particles[number - 1]["centre_px"]
        assert (cy, cx) == pytest.approx(PARTICLES[number - 1][:2], abs=0.01)
    # Particle 3 lies in particle 1's ring: counted as background it would spoil the
    # contrast; the ring leaves it out.
    frame = _truth_image()
    big = _disk(*PARTICLES[0][:3])
    spoiled = particle_contrast(frame, big, pixel_size_A=PIXEL_A)
    assert abs(spoiled - rows[0][0]) > 0.01
    # A fainter particle needs more dose (particle 2: half the contrast, under half the
    # area of particle 1).
    assert rows[1][2] > rows[0][2] and rows[1][3] == pytest.approx(4 * rows[0][3])


def test_the_rose_readout_survives_the_record_and_goes_in_the_features(analysis):
    from napari_lowdose.analysis.area_record import analysis_from_record, area_record
    from napari_lowdose.widgets.segment_results import summary_features

    rebuilt = analysis_from_record(json.loads(json.dumps(area_record(analysis, label="x"))))
    assert rebuilt.rose == analysis.rose
    assert rebuilt.particle(3).rose == analysis.particle(3).rose
    rows, whole = _expected()
    features = summary_features(analysis, None, "x")
    assert features["rose_dose_particle_e_per_A2"] == [pytest.approx(whole[2], rel=1e-6)]
    assert features["particle_contrast"] == [pytest.approx(whole[0], rel=1e-6)]
    for number, (c, _, particle_dose, patch_dose) in enumerate(rows, start=1):
        assert features[f"particle_{number}_contrast"] == [pytest.approx(c, rel=1e-6)]
        assert features[f"particle_{number}_rose_dose_particle_e_per_A2"] == [
            pytest.approx(particle_dose, rel=1e-6)]
        assert features[f"particle_{number}_rose_dose_1nm2_e_per_A2"] == [
            pytest.approx(patch_dose, rel=1e-6)]


def test_no_pixel_size_gives_the_contrasts_only():
    from napari_lowdose.workflows.segmentation import rose_of_run

    frames, masks = _series()
    rose = rose_of_run(frames, analyse_area_vs_dose(masks, DOSES), None)
    rows, whole = _expected()
    assert rose["rose_dose_particle_e_per_A2"] is None
    for entry, expected in zip(rose["particles"], rows, strict=True):
        assert entry["rose_dose_1nm2_e_per_A2"] is None
        # In pixels the ring (2 px out, 6 wide) of particle 1 still skips particle 2.
        assert entry["particle_contrast"] == pytest.approx(expected[0], rel=1e-6)


def _oracle(masks):
    """A network that finds exactly ``masks`` (the command's probability stream)."""

    def predict(model, frames, *, device=None, batch_size=None, tile_px=None,
                frame_indices=None, should_stop=None, zoom=None):
        assert zoom is None  # segment without --match-sampling
        for index in range(len(frames)) if frame_indices is None else frame_indices:
            yield index, masks[index].astype(np.float32)

    return predict


def test_segment_writes_and_prints_each_particles_rose_doses(tmp_path, monkeypatch, capsys):
    from napari_lowdose.cli import main
    from napari_lowdose.io.writers import write_series_tiff
    from napari_lowdose.models import inference
    from napari_lowdose.models.checkpoint import save_checkpoint
    from napari_lowdose.models.msdnet import MSDNet

    frames, masks = _series()
    series = write_series_tiff(tmp_path / "series.tif", frames, PIXEL_A, dose_e_per_A2=DOSES)
    model = save_checkpoint(tmp_path / "tiny.safetensors",
                            MSDNet(depth=1, width=1, kernel_size=3, max_dilation=1),
                            arch="msdnet", metadata={})
    monkeypatch.setattr(inference, "predict_probabilities", _oracle(masks))
    out = tmp_path / "run"
    assert main(["segment", str(series), "--model", str(model), "--device", "cpu",
                 "--threshold", "0.5", "--out", str(out)]) == 0
    rose = json.loads((out / "summary.json").read_text())["rose"]
    rows, whole = _expected()
    _check(rose, whole)
    assert len(rose["particles"]) == 3
    for entry, expected in zip(rose["particles"], rows, strict=True):
        _check(entry, expected)
    printed = capsys.readouterr().out
    assert (f"all particles together (contrast {whole[0]:.3g}, {whole[1] / 100:.3g} nm²) needs "
            f"{whole[2]:.3g} e⁻/Å², a 1 nm² patch of it {whole[3]:.3g} e⁻/Å²") in printed
    for number, (_, _, particle_dose, patch_dose) in enumerate(rows, start=1):
        assert (f"  particle {number} (contrast {rows[number - 1][0]:.3g}," in printed
                and f"needs {particle_dose:.3g} e⁻/Å², a 1 nm² patch of it "
                    f"{patch_dose:.3g} e⁻/Å²" in printed)


def _rose_lines(ax) -> dict[str, float]:
    """Line style → dose of the vertical Rose lines (dotted, dash-dotted) on an axis."""
    return {line.get_linestyle(): float(line.get_xdata()[0]) for line in ax.lines
            if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
            and line.get_linestyle() in (":", "-.")}


def _shows(plot, label, rose) -> None:
    """The dock draws ``rose``'s two doses and names them in its status."""
    whole, patch = rose["rose_dose_particle_e_per_A2"], rose["rose_dose_1nm2_e_per_A2"]
    assert _rose_lines(plot.ax_area) == pytest.approx({":": whole, "-.": patch})
    assert (f"{label}: visible from " in plot.status.value
            and f"; Rose: particle {whole:.3g} e⁻/Å², 1 nm² {patch:.3g} e⁻/Å²"
            in plot.status.value)
    legend = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert {"Rose, whole particle", "Rose, 1 nm² patch"} <= set(legend)


@pytest.mark.gui
def test_the_area_dock_draws_the_rose_doses_of_the_particle_chosen(make_napari_viewer,
                                                                   analysis):
    from napari_lowdose.analysis.area_record import area_record
    from napari_lowdose.io.layers import LOWDOSE_KEY
    from napari_lowdose.widgets.area_plot import AREA_KEY, AreaPlotWidget

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((N, 8, 8), dtype=np.uint8), name="mask",
                      metadata={LOWDOSE_KEY: {AREA_KEY: area_record(analysis, label="run")}})
    plot = AreaPlotWidget(viewer)
    viewer.window.add_dock_widget(plot)
    _shows(plot, "run", analysis.rose)  # all particles: the whole field
    for number in (3, 2):
        plot.particle_combo.value = f"Particle {number}"
        _shows(plot, f"run · particle {number}", analysis.rose["particles"][number - 1])


@pytest.mark.gui
def test_the_segment_dock_run_measures_the_rose_doses_as_the_command(make_napari_viewer,
                                                                     monkeypatch, tmp_path):
    from napari_lowdose.io.dose import FrameDose
    from napari_lowdose.io.layers import LOWDOSE_KEY, image_layer_kwargs
    from napari_lowdose.models import inference
    from napari_lowdose.models.checkpoint import save_checkpoint
    from napari_lowdose.models.msdnet import MSDNet
    from napari_lowdose.widgets.area_plot import AREA_KEY
    from napari_lowdose.widgets.segment import FILE_CHOICE, SegmentWidget

    frames, masks = _series()
    model = save_checkpoint(tmp_path / "tiny.safetensors",
                            MSDNet(depth=1, width=1, kernel_size=3, max_dilation=1),
                            arch="msdnet", metadata={})
    monkeypatch.setattr(inference, "predict_probabilities", _oracle(masks))
    viewer = make_napari_viewer()
    image = viewer.add_image(
        frames, name="series",
        metadata={LOWDOSE_KEY: {"dose": FrameDose(DOSES, "metadata", "t").to_metadata(),
                                "pixel_size_A": [PIXEL_A] * 2}},
        **image_layer_kwargs((PIXEL_A, PIXEL_A), 3))
    widget = SegmentWidget(viewer, use_thread=False)
    viewer.window.add_dock_widget(widget, name="Segment")
    widget.layer_combo.value = image
    widget.model.value = FILE_CHOICE
    widget.model_file.value = model
    widget.device.value = "cpu"
    widget.threshold.value = 0.5
    widget.keep_largest.value, widget.fill_holes.value, widget.min_area.value = False, False, 0
    widget.scope.value = "all"
    widget.run()
    mask = widget._run.mask_layer
    rose = mask.metadata[LOWDOSE_KEY][AREA_KEY]["summary"]["rose"]
    rows, whole = _expected()
    _check(rose, whole)
    for entry, expected in zip(rose["particles"], rows, strict=True):
        _check(entry, expected)
    features = mask.features
    assert features["rose_dose_1nm2_e_per_A2"][0] == pytest.approx(whole[3], rel=1e-6)
    assert features["particle_2_rose_dose_particle_e_per_A2"][0] == pytest.approx(
        rows[1][2], rel=1e-6)
    plot = widget.plot_widget
    _shows(plot, next(iter(plot.drawn)), rose)
    plot.particle_combo.value = "Particle 1"
    _shows(plot, next(iter(plot.drawn)), rose["particles"][0])
    # Its export writes the Rose readout in summary.json, as the command does.
    written = widget.export(tmp_path / "export", overwrite=False)
    summary = json.loads(next(p for p in written if p.name == "summary.json").read_text())
    assert summary["rose"] == json.loads(json.dumps(rose))


def test_the_consensus_frames_are_aligned_for_the_contrast():
    """A drifting series (whole-pixel drift, the readout given it) measures the contrasts
    of the still one; left unaligned, the mean frame blurs the particles."""
    from napari_lowdose.workflows.segmentation import rose_of_run

    frames, masks = _series()
    drift = np.column_stack([3 * np.arange(N) - 3 * (N - 1), np.zeros(N)])  # 3 px per frame
    moved_frames = np.stack([np.roll(f, int(d), axis=0) for f, d in zip(frames, drift[:, 0],
                                                                        strict=True)])
    moved_masks = np.stack([np.roll(m, int(d), axis=0) for m, d in zip(masks, drift[:, 0],
                                                                       strict=True)])
    aligned = analyse_area_vs_dose(moved_masks, DOSES, PIXEL_A, shifts_px=drift)
    rose = rose_of_run(moved_frames, aligned, (PIXEL_A, PIXEL_A))
    rows, whole = _expected()
    for entry, expected in zip(rose["particles"], rows, strict=True):
        _check(entry, expected)
    blurred = rose_of_run(moved_frames, analyse_area_vs_dose(moved_masks, DOSES, PIXEL_A),
                          (PIXEL_A, PIXEL_A))
    assert abs(blurred["particles"][0]["particle_contrast"] - rows[0][0]) > 0.01
