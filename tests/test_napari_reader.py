"""The npe2 reader: real files open in napari with calibrated axes; bad files give None."""

import numpy as np
import pytest

from napari_lowdose._reader import napari_get_reader
from real_files import REAL_FILES


@pytest.mark.gui
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_viewer_opens_real_file(make_napari_viewer, real_formats, name):
    shape, pixel_A = REAL_FILES[name]
    viewer = make_napari_viewer()
    layers = viewer.open(real_formats / name, plugin="napari-lowdose")
    assert len(layers) == 1
    layer = layers[0]
    assert tuple(layer.data.shape) == shape
    spatial_unit = "pixel" if pixel_A is None else "angstrom"
    assert [str(u) for u in layer.units[-2:]] == [spatial_unit, spatial_unit]
    assert tuple(layer.axis_labels) == (("frame", "y", "x") if len(shape) == 3 else ("y", "x"))
    if pixel_A is not None:
        np.testing.assert_allclose(layer.scale[-2:], [pixel_A, pixel_A], rtol=1e-6)
    lowdose = layer.metadata["lowdose"]
    assert lowdose["format"]
    assert "source_metadata" in layer.metadata


@pytest.mark.gui
def test_dose_travels_in_layer_metadata(make_napari_viewer, real_formats):
    viewer = make_napari_viewer()
    layer = viewer.open(real_formats / "mrc_20241021_00405_movie.mrc", plugin="napari-lowdose")[0]
    dose = layer.metadata["lowdose"]["dose"]
    assert dose["source"] == "rate_x_exposure"
    assert len(dose["dose_e_per_A2"]) == 32


@pytest.mark.parametrize("suffix", [".tif", ".dm3", ".ser", ".emi", ".emd", ".mrc"])
def test_reader_returns_none_for_bad_files(tmp_path, suffix):
    garbage = tmp_path / f"g{suffix}"
    garbage.write_bytes(b"not an image" * 50)
    empty = tmp_path / f"e{suffix}"
    empty.write_bytes(b"")
    assert napari_get_reader(str(garbage)) is None
    assert napari_get_reader(str(empty)) is None


def test_reader_returns_none_for_directory_truncated_and_unknown(tmp_path, real_formats):
    truncated = tmp_path / "t.mrc"
    truncated.write_bytes((real_formats / "mrc_20241021_00405_movie.mrc").read_bytes()[:1500])
    other = tmp_path / "a.png"
    other.write_bytes(b"\x89PNG")
    for path in (tmp_path, truncated, other, [str(other), str(truncated)]):
        assert napari_get_reader(path if isinstance(path, list) else str(path)) is None


@pytest.mark.gui
def test_sample_data_opens_with_dose_and_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-lowdose", "synthetic_dose_series")
    image, truth = viewer.layers["synthetic dose series"], viewer.layers["particle truth"]
    assert image.data.shape == (50, 256, 256)
    np.testing.assert_allclose(image.scale, [1, 0.3, 0.3])
    assert truth.data.shape == (256, 256)
    np.testing.assert_allclose(truth.scale, [0.3, 0.3])
    dose = image.metadata["lowdose"]["dose"]
    assert dose["source"] == "metadata"
    np.testing.assert_allclose([dose["dose_e_per_A2"][0], dose["dose_e_per_A2"][-1]], [10, 1e4])
