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
