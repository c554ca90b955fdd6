"""Real Gatan OneView frames (DigitalMicrograph, Japanese locale, LZW-compressed TIFF):
read, calibrated as the files state (shared/data/real-oneview/README.md)."""

import json

import numpy as np
import pytest

from napari_lowdose.cli import main
from napari_lowdose.errors import SeriesReadError
from napari_lowdose.io.readers import read_series
from napari_lowdose.io.units import length_to_angstrom_factor


@pytest.mark.parametrize("name", ["train_0001.tif", "train_0002.tif"])
def test_the_lzw_frames_open_with_the_stated_pixel_size(real_oneview, name):
    series = read_series(real_oneview / name)
    frame = np.asarray(series.data)
    assert frame.shape == (512, 512) and frame.dtype == np.uint16
    # 0.0029884567 µm per pixel, the unit stored in the Japanese code page.
    assert series.pixel_size_A == pytest.approx((29.884567, 29.884567), rel=1e-6)
    assert 150 < frame.mean() < 250  # about 200 counts (≈ 4.6 e⁻/px at 0.0227 e⁻/count)


def test_info_reports_the_calibration(real_oneview, capsys):
    assert main(["info", str(real_oneview / "train_0001.tif"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pixel_size_A"] == pytest.approx([29.884567, 29.884567], rel=1e-6)
    assert not any("not a length" in w for w in info["warnings"])


@pytest.mark.parametrize("unit", ["ƒÊm", b"\x83\xcam", "µm", "μm", "um"])
def test_micrometres_in_any_encoding_gms_writes(unit):
    """Shift-JIS µ (83 CA) read as Windows-1252 shows as 'ƒÊ'."""
    assert length_to_angstrom_factor(unit) == 1e4


def test_an_undecodable_compression_is_one_line_naming_it(real_oneview, monkeypatch, capsys):
    import tifffile

    def no_codec(self, *args, **kwargs):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_codec)
    with pytest.raises(SeriesReadError, match="LZW compression cannot be decoded"):
        read_series(real_oneview / "train_0001.tif")
    assert main(["info", str(real_oneview / "train_0001.tif")]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "LZW" in error and "internal error" not in error


def test_the_gain_is_the_files_intensity_calibration(real_oneview, capsys):
    """0.0227273 e⁻ per count (GMS tag 65025): 44 counts/e⁻, ≈ 4.6 e⁻/px per frame."""
    series = read_series(real_oneview / "train_0001.tif")
    assert series.dose_hints.counts_per_electron == pytest.approx(1 / 0.0227273, rel=1e-5)
    assert main(["info", str(real_oneview / "train_0001.tif"), "--dose-source", "counts",
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    area_A2 = info["pixel_size_A"][0] * info["pixel_size_A"][1]
    e_per_px = info["dose"]["dose_e_per_A2"][0] * area_A2
    assert e_per_px == pytest.approx(4.6, abs=0.15)


# -- the frames open calibrated with no option: pixel size, gain, exposure, dose ------------

MEAN_COUNTS = {}


def _mean_counts(path) -> float:
    if path not in MEAN_COUNTS:
        MEAN_COUNTS[path] = float(np.asarray(read_series(path).data, dtype=np.float64).mean())
    return MEAN_COUNTS[path]


@pytest.mark.parametrize("name", ["train_0001.tif", "train_0002.tif"])
def test_info_with_no_option_gives_the_files_own_calibration(real_oneview, capsys, name):
    path = real_oneview / name
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pixel_size_A"] == pytest.approx([29.884567] * 2, rel=1e-6)  # 2.988 nm/px
    assert info["counts_per_electron"] == pytest.approx(44.0, rel=1e-5)
    assert info["exposure_s"] == pytest.approx(0.003309568, rel=1e-9)  # GMS tag tree (65027)
    dose = info["dose"]
    assert dose["source"] == "file_calibration"
    assert dose["source_label"] == "the file's intensity calibration"
    e_per_px = dose["dose_e_per_A2"][0] * 29.884567**2
    assert e_per_px == pytest.approx(_mean_counts(path) / 44.0, rel=1e-5)
    assert e_per_px == pytest.approx(4.6, abs=0.15)
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    for shown in ("(2.988 nm/px)", "exposure:    3.31 ms per frame", "gain:        44 counts/e⁻",
                  "dose source: file_calibration (the file's intensity calibration: "
                  "mean counts ÷ 44"):
        assert shown in text


def test_explicit_options_override_the_files_calibration(real_oneview, capsys):
    path = str(real_oneview / "train_0001.tif")
    per_px = {}
    for case, options in {"gain": ["--counts-per-electron", "22"],
                          "forced counts": ["--dose-source", "counts"],
                          "rate": ["--dose-rate", "100"],
                          "pixel": ["--pixel-size-A", "10"]}.items():
        assert main(["info", path, "--json", *options]) == 0
        dose = json.loads(capsys.readouterr().out)["dose"]
        per_px[case] = (dose["source"], dose["dose_e_per_A2"][0])
    mean = _mean_counts(real_oneview / "train_0001.tif")
    area = 29.884567**2
    assert per_px["gain"][0] == "counts"
    assert per_px["gain"][1] * area == pytest.approx(mean / 22.0, rel=1e-5)
    assert per_px["forced counts"][0] == "counts"
    assert per_px["forced counts"][1] * area == pytest.approx(mean / 44.0, rel=1e-5)
    # --dose-rate with the exposure the file states (3.31 ms).
    assert per_px["rate"] == ("rate_x_exposure", pytest.approx(100 * 0.003309568))
    # Another pixel size: the same electrons per pixel, spread over 10 × 10 Å².
    assert per_px["pixel"][0] == "file_calibration"
    assert per_px["pixel"][1] * 100.0 == pytest.approx(mean / 44.0, rel=1e-5)


def test_the_napari_reader_gives_the_same_calibration(real_oneview):
    from napari_lowdose._reader import napari_get_reader

    path = str(real_oneview / "train_0001.tif")
    [(data, kwargs, kind)] = napari_get_reader(path)(path)
    assert kind == "image" and data.shape == (512, 512)
    assert kwargs["scale"] == pytest.approx((29.884567, 29.884567), rel=1e-6)
    assert kwargs["units"] == ("angstrom", "angstrom")
    lowdose = kwargs["metadata"]["lowdose"]
    assert lowdose["dose"]["source"] == "file_calibration"
    assert lowdose["dose"]["dose_e_per_A2"][0] * 29.884567**2 == pytest.approx(
        _mean_counts(real_oneview / "train_0001.tif") / 44.0, rel=1e-5)
    assert lowdose["dose_hints"]["counts_per_electron"] == pytest.approx(44.0, rel=1e-5)
    assert lowdose["dose_hints"]["exposure_time_s"] == pytest.approx(0.003309568)
    gms = kwargs["metadata"]["source_metadata"]["gatan_tags"]
    assert gms[".Acquisition.Device.Name"] == "OneView"


@pytest.mark.gui
def test_the_frames_open_calibrated_in_napari(make_napari_viewer, real_oneview):
    viewer = make_napari_viewer()
    layer = viewer.open(real_oneview / "train_0002.tif", plugin="napari-lowdose")[0]
    np.testing.assert_allclose(layer.scale, [29.884567, 29.884567], rtol=1e-6)
    assert [str(u) for u in layer.units] == ["angstrom", "angstrom"]
    dose = layer.metadata["lowdose"]["dose"]
    assert dose["source"] == "file_calibration"
    assert dose["dose_e_per_A2"][0] * 29.884567**2 == pytest.approx(4.6, abs=0.15)


def test_denoise_with_no_option_normalises_by_the_files_dose(real_oneview, tmp_path,
                                                            one_torch_thread):
    import torch

    from napari_lowdose.models.checkpoint import save_checkpoint
    from napari_lowdose.models.denoiser import DenoiserUNet

    model = save_checkpoint(tmp_path / "den.safetensors", DenoiserUNet(base_channels=2, levels=1),
                            arch="denoiser", metadata={})
    torch.manual_seed(0)
    out = tmp_path / "out"
    path = real_oneview / "train_0001.tif"
    assert main(["denoise", str(path), "--model", str(model), "--device", "cpu",
                 "--out", str(out)]) == 0
    record = json.loads((out / "denoise.json").read_text())
    assert record["dose"]["source"] == "file_calibration"
    assert record["normalisation"]["counts_per_electron"] == pytest.approx(44.0, rel=1e-5)
    assert record["normalisation"]["expected_e_per_px"][0] == pytest.approx(
        _mean_counts(path) / 44.0, rel=1e-5)
    assert "file_calibration" in record["normalisation"]["from"]


# -- your own data: fine-tuning on half the field, judged on the other half ----------------


def _fine_tune(real_oneview, tmp_path, epochs: int, init: tuple[str, ...] = ()) -> dict:
    from napari_lowdose.models.registry import load_denoiser

    out = tmp_path / "own.safetensors"
    assert main(["train-denoiser", "--source", "own", "--frames",
                 str(real_oneview / "train_0001.tif"), str(real_oneview / "train_0002.tif"),
                 "--val-fraction", "0.5", "--lr", "1e-3", "--epochs", str(epochs),
                 "--device", "cpu", "--out", str(out), *init]) == 0
    return load_denoiser(out)[1]


def _check_held_out(meta: dict) -> tuple[dict, dict]:
    start, end = meta["validation_start"]["readout"], meta["validation"]["readout"]
    assert meta["validation"]["set"]["rows"] == [256, 512]  # judged on the bottom half
    source = meta["source"]  # the field's pairs, phantom pairs mixed in (the default)
    field = source["sources"][0] if source["kind"] == "mixed" else source
    assert field["rows"] == [0, 256]  # trained on the top half
    assert start["n_pairs"] == end["n_pairs"] == 2  # A against B and B against A
    assert start["gaussian"]["mse"] == pytest.approx(end["gaussian"]["mse"])
    return start, end


def test_a_short_fine_tune_on_half_the_field_closes_most_of_the_gap(real_oneview, tmp_path,
                                                                   one_torch_thread):
    """≈ 55 s on one CPU thread: 3 epochs at 10⁻³ from the HR-TEM-only denoiser, which is
    far behind the best Gaussian filter on these frames."""
    start, end = _check_held_out(_fine_tune(real_oneview, tmp_path, 3,
                                            ("--init", "denoiser-au-ceo2")))
    assert start["ratio_to_gaussian"] > 2.5
    assert end["denoised"]["mse"] < 0.5 * start["denoised"]["mse"]
    assert end["ratio_to_gaussian"] < 1.4


@pytest.mark.slow
def test_a_fine_tune_on_half_the_field_beats_the_best_gaussian_on_the_other(real_oneview,
                                                                           tmp_path,
                                                                           one_torch_thread):
    """≈ 4 min on one CPU thread, from the default denoiser (docs/models.md: it starts at
    0.87× the best Gaussian on the held-out half, and reaches 0.78× at epoch 10)."""
    start, end = _check_held_out(_fine_tune(real_oneview, tmp_path, 20))
    assert start["ratio_to_gaussian"] < 1.0
    assert end["ratio_to_gaussian"] < 1.0
