"""Noise models: Table 3 presets, the MTF 4 training recipe, sampling, JSON I/O."""

import json
import os

import numpy as np
import pytest

from napari_lowdose.noise import (
    PRESETS,
    NoiseModel,
    apply_detector_noise,
    fit_noise,
    preset,
    training_model_from_fit,
)
from napari_lowdose.noise.model_io import FORMAT

TABLE_3 = {
    "MTF1": ((0.4, 0.6), (2.0, 3.0)),
    "MTF2": ((0.4, 0.6), (1.0, 5.0)),
    "MTF3": ((0.2, 0.3), (1.0, 5.0)),
    "MTF4": ((0.25, 0.6), (2.0, 5.0)),
    "MTF5": ((0.6, 0.8), (2.0, 5.0)),
}
DOSES = np.geomspace(10.0, 1300.0, 12)
SAMPLING_A = 0.1


@pytest.fixture(scope="module")
def fit_result():
    stack = apply_detector_noise(
        np.ones((DOSES.size, 128, 128)),
        DOSES,
        SAMPLING_A,
        c0=0.27,
        c3=2.25,
        n0_e_per_px=0.01,
        rng=np.random.default_rng(21),
    )
    stack[4, 0, 0] = np.nan  # one failed frame: NaN row in the table
    return fit_noise(stack, DOSES, SAMPLING_A, model="physical")


def test_presets_match_table_3():
    assert list(PRESETS)[:5] == list(TABLE_3)
    for name, (c0, c3) in TABLE_3.items():
        m = PRESETS[name]
        assert m.c0_range == c0 and m.c3_range == c3
        assert m.n0_range_e_per_px == (0.005, 0.015)
        assert m.source == "preset"
    assert preset("MTF 4") is PRESETS["MTF4"]
    assert preset("mtf2") is PRESETS["MTF2"] and preset("5") is PRESETS["MTF5"]
    with pytest.raises(ValueError, match="unknown"):
        preset("MTF9")


def test_the_wide_preset_spans_table_3_and_the_direct_detector():
    wide, direct = preset("wide"), preset("Direct")
    assert direct.c0_range[0] >= 0.7 and direct.n0_range_e_per_px[1] < 0.002
    for model in [*(PRESETS[name] for name in TABLE_3), direct]:
        assert wide.c0_range[0] <= model.c0_range[0] and model.c0_range[1] <= wide.c0_range[1]
        assert wide.c3_range[0] <= model.c3_range[0] and model.c3_range[1] <= wide.c3_range[1]
        assert (wide.n0_range_e_per_px[0] <= model.n0_range_e_per_px[0]
                and model.n0_range_e_per_px[1] <= wide.n0_range_e_per_px[1])


def test_training_recipe_reproduces_paper_n0_and_widens_c0():
    fitted = NoiseModel(
        name="fit",
        c0_range=(0.2, 0.28),
        c3_range=(2.0, 2.6),
        n0_range_e_per_px=(0.01, 0.01),
        n0_e_per_px=0.01,
        source="fit",
    )
    train = fitted.training_model()
    assert train.c0_range == (0.2, 0.5)
    assert train.c3_range == (2.0, 2.6)
    assert train.n0_range_e_per_px == pytest.approx((0.005, 0.015))  # Table 3's N0
    assert train.source == "training" and "MTF 4" in train.description
    # A range that already reaches past half-Nyquist is kept.
    wide = NoiseModel("w", (0.25, 0.6), (2, 5), (0.01, 0.01), n0_e_per_px=0.01)
    assert wide.training_model().c0_range == (0.25, 0.6)
    assert fitted.training_model(c0_upper_at_least=0.55).c0_range[1] == 0.55


def test_from_fit_and_training_model_from_fit(fit_result):
    m = NoiseModel.from_fit(fit_result, name="series")
    ok = fit_result.ok
    assert ok.sum() == DOSES.size - 1
    assert m.source == "fit" and m.model_kind == "physical" and m.spectrum_kind == "power"
    assert m.sampling_A == SAMPLING_A
    assert m.dose_range_e_per_A2 == (DOSES[0], DOSES[-1])
    assert fit_result.c0[ok].min() <= m.c0_range[0] <= m.c0_range[1] <= fit_result.c0[ok].max()
    assert 0.22 < m.c0_range[0] and m.c0_range[1] < 0.32
    assert m.n0_e_per_px == fit_result.readout.n0_e_per_px
    assert abs(m.n0_e_per_px / 0.01 - 1) < 0.25
    assert len(m.frames["c0"]) == DOSES.size
    train = training_model_from_fit(fit_result)
    assert train.c0_range == (m.c0_range[0], 0.5)
    assert train.n0_range_e_per_px == pytest.approx((0.5 * m.n0_e_per_px, 1.5 * m.n0_e_per_px))


def test_from_fit_without_good_frames_raises():
    res = fit_noise(np.full((2, 32, 32), np.nan), 10.0, SAMPLING_A)
    with pytest.raises(ValueError, match="no frame of the region could be fitted"):
        NoiseModel.from_fit(res)


def test_sample_is_seeded_uniform_and_in_range():
    m = PRESETS["MTF4"]
    a = m.sample(np.random.default_rng(5), size=2000)
    b = m.sample(5, size=2000)
    np.testing.assert_array_equal(a.c0, b.c0)
    for vals, (lo, hi) in (
        (a.c0, m.c0_range),
        (a.c3, m.c3_range),
        (a.n0_e_per_px, m.n0_range_e_per_px),
    ):
        assert vals.min() >= lo and vals.max() <= hi
        assert abs(vals.mean() - (lo + hi) / 2) < 0.03 * (hi - lo)  # uniform
    one = m.sample(1)
    assert isinstance(one.c0, float)
    img = apply_detector_noise(np.ones((32, 32)), 100.0, SAMPLING_A, **one.as_kwargs(), rng=0)
    assert img.shape == (32, 32)


def test_json_round_trip_exact(tmp_path, fit_result):
    for model in (
        PRESETS["MTF3"],
        NoiseModel.from_fit(fit_result, name="séries ünïcode"),
        training_model_from_fit(fit_result),
    ):
        path = tmp_path / "model.json"
        assert model.to_json(path) == path
        back = NoiseModel.from_json(path)
        assert back == model
        assert back.to_dict() == model.to_dict()
        text = path.read_text(encoding="utf-8")
        back.to_json(path)
        assert path.read_text(encoding="utf-8") == text
        if model.frames is not None:
            assert np.isnan(back.frames["c0"][4]) and not back.frames["ok"][4]
            assert back.frames["ok"].dtype == bool and back.frames["frame"].dtype == np.int64
    assert NoiseModel.from_fit(fit_result, name="a") != NoiseModel.from_fit(fit_result, name="b")
    assert sorted(os.listdir(tmp_path)) == ["model.json"]  # no temporary files left


def test_json_is_standard(tmp_path, fit_result):
    path = NoiseModel.from_fit(fit_result).to_json(tmp_path / "m.json")
    text = path.read_text(encoding="utf-8")

    def reject(const):
        raise AssertionError(f"non-standard JSON constant {const}")

    data = json.loads(text, parse_constant=reject)
    assert data["format"] == FORMAT and data["n_frames"] == DOSES.size


def _write(tmp_path, data) -> str:
    p = tmp_path / "bad.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(p)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(format="something-else"), "not a napari-lowdose noise model"),
        (lambda d: d.update(version=99), "newer"),
        (lambda d: d.pop("c0_range"), "missing"),
        (lambda d: d.update(c0_range=[0.6, 0.2]), "low <= high"),
        (lambda d: d.update(c3_range=[1.0]), "pair"),
        (lambda d: d.update(n0_range_e_per_px=[-1, 0.1]), "non-negative"),
        (lambda d: d.update(model_kind="physical", spectrum_kind="magnitude"), "power"),
        (lambda d: d.update(spectrum_kind="psd"), "spectrum_kind"),
        (lambda d: d.update(surprise=1), "unknown keys"),
        (lambda d: d.update(n_frames=3, frames={"c0": [0.1, 0.2]}), "rows"),
        (lambda d: d.update(frames={"c0": [0.1, 0.2], "r2": [0.9]}), "equal length"),
        (lambda d: d.update(sampling_A=-0.1), "sampling_A"),
    ],
)
def test_from_json_rejects_bad_files(tmp_path, mutate, match):
    data = PRESETS["MTF1"].to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=match):
        NoiseModel.from_json(_write(tmp_path, data))


def test_from_json_rejects_non_json(tmp_path):
    with pytest.raises(ValueError, match="not a valid JSON"):
        NoiseModel.from_json(_write(tmp_path, "{not json"))
    with pytest.raises(ValueError, match="JSON object"):
        NoiseModel.from_json(_write(tmp_path, "[1, 2]"))
