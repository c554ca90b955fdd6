"""DigitalMicrograph metadata and the dose of a file's own intensity calibration: the DM
tag-tree parser (GMS's TIFF tag 65027), units in the encodings GMS writes, the gain of DM
and Velox files, and the ``file_calibration`` dose source with its priority."""

import json
import struct

import numpy as np
import pytest

from napari_lowdose.cli import main
from napari_lowdose.errors import DoseCalibrationError
from napari_lowdose.io import dose_calibration
from napari_lowdose.io.dose_calibration import calibrate_frame_dose
from napari_lowdose.io.readers import read_series
from napari_lowdose.io.readers.dm import _dm_dose_hints
from napari_lowdose.io.readers.dm_tags import (
    gatan_tag_calibration,
    intensity_gain,
    parse_dm_tag_tree,
)
from napari_lowdose.io.units import length_to_angstrom_factor

# -- a tiny DM3/DM4 tag-tree writer (the layout parse_dm_tag_tree documents) ---------------


def _head(kind: int, name: bytes, body: bytes, dm4: bool) -> bytes:
    size = len(body).to_bytes(8, "big") if dm4 else b""
    return bytes([kind]) + len(name).to_bytes(2, "big") + name + size + body


def _data(name: bytes, info: list[int], payload: bytes, dm4: bool) -> bytes:
    word = 8 if dm4 else 4
    body = (b"%%%%" + len(info).to_bytes(word, "big")
            + b"".join(i.to_bytes(word, "big") for i in info) + payload)
    return _head(21, name, body, dm4)


def _group(name: bytes, entries: list[bytes], dm4: bool) -> bytes:
    word = 8 if dm4 else 4
    return _head(20, name, b"\x01\x00" + len(entries).to_bytes(word, "big") + b"".join(entries),
                 dm4)


def _tree(entries: list[bytes], *, dm4: bool, little: bool) -> bytes:
    word = 8 if dm4 else 4
    root = b"\x01\x00" + len(entries).to_bytes(word, "big") + b"".join(entries)
    return ((4 if dm4 else 3).to_bytes(4, "big") + len(root).to_bytes(word, "big")
            + (1 if little else 0).to_bytes(4, "big") + root)


def _example_tree(*, dm4: bool, little: bool) -> bytes:
    o = "<" if little else ">"
    utf16 = "utf-16-le" if little else "utf-16-be"
    return _tree([
        _group(b"Acquisition", [
            _group(b"Parameters", [
                _group(b"High Level", [
                    _data(b"Exposure (s)", [7], struct.pack(o + "d", 0.003309568), dm4),
                    _data(b"Binning", [15, 0, 2, 0, 3, 0, 3], struct.pack(o + "ii", 8, 8), dm4),
                ], dm4),
            ], dm4),
        ], dm4),
        _group(b"Items", [
            _data(b"", [3], struct.pack(o + "i", -7), dm4),
            _data(b"", [20, 4, 2], "µm".encode(utf16), dm4),  # UTF-16 text
        ], dm4),
        _data(b"Name", [18, 7], b"OneView", dm4),
        _data(b"Flip", [8], b"\x01", dm4),
        _data(b"Table", [20, 6, 3], struct.pack(o + "fff", 1.0, 2.5, -1.0), dm4),
    ], dm4=dm4, little=little)


@pytest.mark.parametrize("dm4", [True, False], ids=["dm4", "dm3"])
@pytest.mark.parametrize("little", [True, False], ids=["little", "big"])
def test_the_tag_tree_parser_reads_back_what_was_written(dm4, little):
    tags = parse_dm_tag_tree(_example_tree(dm4=dm4, little=little))
    assert tags == {
        ".Acquisition.Parameters.High Level.Exposure (s)": 0.003309568,
        ".Acquisition.Parameters.High Level.Binning": (8, 8),
        ".Items.1": -7,
        ".Items.2": "µm",
        ".Name": "OneView",
        ".Flip": True,
        ".Table": (1.0, 2.5, -1.0),
    }


def test_a_truncated_tree_keeps_what_was_read_and_garbage_gives_nothing():
    whole = _example_tree(dm4=True, little=True)
    cut = parse_dm_tag_tree(whole[: len(whole) - 30])
    assert cut[".Acquisition.Parameters.High Level.Exposure (s)"] == 0.003309568
    assert ".Table" not in cut
    assert parse_dm_tag_tree(b"not a tag tree at all") == {}
    assert parse_dm_tag_tree(b"") == {}


def test_the_calibration_of_a_dm_image_from_its_tags():
    """ncempy's flat layout of a .dm4: image 2 (image 1 is the thumbnail)."""
    base = ".ImageList.2.ImageData.Calibrations"
    tags = {
        ".ImageList.1.ImageTags.Acquisition.Parameters.High Level.Exposure (s)": 9.0,
        ".ImageList.2.ImageTags.Acquisition.Parameters.High Level.Exposure (s)": 0.25,
        f"{base}.Brightness.Scale": 0.05, f"{base}.Brightness.Origin": 10.0,
        f"{base}.Brightness.Units": "e-",
        f"{base}.Dimension.1.Scale": 0.2, f"{base}.Dimension.1.Units": "nm",
        f"{base}.Dimension.2.Scale": 0.3, f"{base}.Dimension.2.Units": "µm",
    }
    calibration = gatan_tag_calibration(tags, image=".ImageList.2")
    assert calibration.exposure_s == 0.25
    assert calibration.pixel_scale == (0.3, 0.2) and calibration.pixel_units == ("µm", "nm")
    warn: list[str] = []
    hints = _dm_dose_hints(tags, ".ImageList.2", warn)
    assert hints.counts_per_electron == pytest.approx(20.0) and hints.counts_offset == 10.0
    assert hints.exposure_time_s == 0.25
    assert any("offset of 10 counts" in w for w in warn)


@pytest.mark.parametrize("unit", ["e-", "e⁻", "e−", "electrons", " [e-] "])
def test_an_intensity_calibration_in_electrons_states_the_gain(unit):
    assert intensity_gain(0.0227273, 0.0, unit) == pytest.approx((44.0, 0.0), rel=1e-5)


@pytest.mark.parametrize("unit,scale", [("counts", 0.5), ("", 0.5), ("e-", 0.0), ("e-", -1.0),
                                        ("e-", "nan")])
def test_other_intensity_calibrations_state_no_gain(unit, scale):
    assert intensity_gain(scale, 0.0, unit) is None


@pytest.mark.parametrize("unit,factor", [
    ("µm".encode("utf-16-le"), 1e4),   # UTF-16 (GMS's own strings)
    ("Å".encode("utf-16-le"), 1.0),
    ("nm".encode("utf-16-le"), 10.0),
    (b"\xb5m", 1e4),                   # Windows-1252 micro sign
    ("\u03bcm", 1e4),                  # Greek small mu
    ("\u00b5m", 1e4),                  # micro sign
    ("ƒÊm", 1e4),                      # Shift-JIS µ read as Windows-1252
    (b"\x83\xcam", 1e4),               # the Shift-JIS bytes themselves
    ("um", 1e4),
    ("nm", 10.0),
    ("Å", 1.0),
    (b"\xc5", 1.0),                    # Windows-1252 Å
    ("Å".encode(), 1.0),               # UTF-8 Å
])
def test_lengths_in_the_encodings_gms_writes(unit, factor):
    assert length_to_angstrom_factor(unit) == factor


@pytest.mark.parametrize("unit", ["1/nm", "counts", "", b"\x00\x00"])
def test_non_lengths_stay_uncalibrated(unit):
    assert length_to_angstrom_factor(unit) is None


# -- the file_calibration source -----------------------------------------------------------

FRAMES = np.stack([np.full((6, 8), 110.0), np.full((6, 8), 210.0)])
HINTS = {"counts_per_electron": 20.0, "counts_offset": 10.0,
         "counts_per_electron_key": "test calibration"}


def test_the_files_calibration_subtracts_its_offset():
    dose = calibrate_frame_dose(FRAMES, pixel_area_A2=4.0, hints=HINTS)
    assert dose.source == "file_calibration"
    np.testing.assert_allclose(dose.dose_e_per_A2, [100 / 20 / 4, 200 / 20 / 4])
    assert "test calibration" in dose.detail and "− 10" in dose.detail


def test_explicit_choices_override_the_files_calibration(tmp_path):
    given = calibrate_frame_dose(FRAMES, pixel_area_A2=4.0, hints=HINTS, counts_per_electron=5.0)
    assert given.source == "counts"
    np.testing.assert_allclose(given.dose_e_per_A2, [110 / 5 / 4, 210 / 5 / 4])
    forced = calibrate_frame_dose(FRAMES, pixel_area_A2=4.0, hints=HINTS, source="counts")
    assert forced.source == "counts"  # the file's gain, no offset: the plain counts rule
    np.testing.assert_allclose(forced.dose_e_per_A2, [110 / 20 / 4, 210 / 20 / 4])
    rate = calibrate_frame_dose(FRAMES, pixel_area_A2=4.0, hints={**HINTS, "exposure_time_s": 0.5},
                                dose_rate_e_per_A2_s=3.0)
    assert rate.source == "rate_x_exposure"
    np.testing.assert_allclose(rate.dose_e_per_A2, [1.5, 1.5])
    with pytest.raises(DoseCalibrationError, match="gain stated by the file"):
        calibrate_frame_dose(FRAMES, pixel_area_A2=4.0, hints={}, source="file_calibration")
    assert calibrate_frame_dose(FRAMES, pixel_area_A2=None, hints=HINTS) is None


def _velox(path, frames, binary):
    import h5py

    meta = {"BinaryResult": {"PixelSize": {"width": "2e-10", "height": "2e-10"},
                             "PixelUnitX": "m", "PixelUnitY": "m", **binary}}
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with h5py.File(path, "w") as h5:
        group = h5.create_group("Data/Image/abc")
        group["Data"] = np.moveaxis(frames, 0, -1)
        group["Metadata"] = np.repeat(raw[:, None], 2, axis=1)
    return path


def test_a_velox_file_opens_with_the_dose_of_its_counts_to_electrons(tmp_path):
    frames = np.stack([np.full((6, 5), 40, np.uint16), np.full((6, 5), 80, np.uint16)])
    path = _velox(tmp_path / "v.emd", frames, {"CountsToElectrons": "0.05",
                                               "PixelValueToCameraCounts": "2",
                                               "ExposureTime": "0.25"})
    series = read_series(path)
    assert series.dose_hints.counts_per_electron == pytest.approx(10.0)
    assert series.dose_hints.exposure_time_s == 0.25
    assert series.frame_dose.source == "file_calibration"
    np.testing.assert_allclose(series.frame_dose.dose_e_per_px(series.pixel_size_A), [4.0, 8.0])


def test_a_long_series_gets_the_files_dose_when_an_analysis_asks(tmp_path, monkeypatch, capsys):
    """Past the size read at opening, opening reads no frame; the command line computes it."""
    frames = np.stack([np.full((6, 5), 40, np.uint16), np.full((6, 5), 80, np.uint16)])
    path = _velox(tmp_path / "v.emd", frames, {"CountsToElectrons": "0.1"})
    monkeypatch.setattr(dose_calibration, "OPEN_READ_LIMIT_PX", 10)
    series = read_series(path)
    assert series.frame_dose is None
    assert any("needs every frame read" in n for n in series.dose_hints.notes)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dose"]["source"] == "file_calibration"
    np.testing.assert_allclose(np.asarray(info["dose"]["dose_e_per_A2"]) * 4.0, [4.0, 8.0])
