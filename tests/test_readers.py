"""Readers open real microscope files lazily with the pixel size they state."""

import json

import dask.array as da
import numpy as np
import pytest

from napari_lowdose.io import SeriesReadError, UnsupportedFormatError, read_series
from napari_lowdose.io.writers import write_series_tiff
from real_files import REAL_FILES


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_shape_and_pixel_size(real_formats, name):
    shape, pixel_A = REAL_FILES[name]
    series = read_series(real_formats / name)
    assert tuple(series.data.shape) == shape
    if pixel_A is None:
        assert series.pixel_size_A is None
    else:
        assert series.pixel_size_A == pytest.approx((pixel_A, pixel_A), rel=1e-6)
        assert series.pixel_size_source
    json.dumps(series.source_metadata)  # metadata must be storable


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_files_open_lazily(real_formats, name):
    data = read_series(real_formats / name).data
    # Never an in-memory ndarray: a memory map, a dask array or an HDF5 dataset.
    assert isinstance(data, (np.memmap, da.Array)) or type(data).__module__.startswith("h5py")


def test_tia_pixels_equal_reference(real_formats):
    expected = np.load(real_formats / "tia_old_64x64_TEM_images_acquire.npy")
    for name in ("tia_old_64x64_TEM_images_acquire.emi", "tia_old_64x64_TEM_images_acquire_1.ser"):
        np.testing.assert_array_equal(np.asarray(read_series(real_formats / name).data), expected)


def test_tia_series_frames_match_ncempy(real_formats):
    from ncempy.io import ser

    ours = np.asarray(read_series(real_formats / "tia_old_64x64x5_TEM_preview.emi").data)
    theirs = ser.serReader(str(real_formats / "tia_old_64x64x5_TEM_preview_1.ser"))["data"]
    np.testing.assert_array_equal(ours, theirs)


def test_dm_stack_matches_ncempy(real_formats):
    from ncempy.io import dm

    for name in ("dm_3D_test-1.dm3", "dm_3D_test-1.dm4"):
        theirs = dm.dmReader(str(real_formats / name))["data"]
        np.testing.assert_array_equal(np.asarray(read_series(real_formats / name).data), theirs)


def test_de_movie_dose_from_rate_and_frame_time(real_formats):
    series = read_series(real_formats / "mrc_20241021_00405_movie.mrc")
    # info.txt: 212.755735 e-/pix/s, frame exposure 1427500 ns, 10 Å pixels.
    expected = 212.755735 * 1.4275e-3 / 100.0
    assert series.frame_dose.source == "rate_x_exposure"
    np.testing.assert_allclose(series.frame_dose.dose_e_per_A2, expected, rtol=1e-9)
    assert series.dose_hints.counts_per_electron == 51
    assert any("negative pixel size" in w for w in series.warnings)
    # What the info file says otherwise is not hidden: its pixel size (0.1 × 0.2 nm) and
    # that the frames are the patterns of an 8 × 4 scan.
    assert any("info file 1 × 2 Å/px" in w for w in series.warnings)
    assert any("8 × 4 scan" in w and "4D-STEM" in w for w in series.warnings)


def test_a_de_movie_without_a_header_pixel_size_takes_the_info_file_s(tmp_path,
                                                                      real_formats):
    """The info file's pixel size, named as the source (it was labelled the MRC header's)."""
    import shutil

    import mrcfile

    movie = tmp_path / "run_movie.mrc"
    shutil.copy(real_formats / "mrc_20241021_00405_movie.mrc", movie)
    shutil.copy(real_formats / "mrc_20241021_00405_info.txt", tmp_path / "run_info.txt")
    with mrcfile.open(movie, mode="r+") as handle:
        handle.voxel_size = 0.0
    series = read_series(movie)
    assert series.pixel_size_A == pytest.approx((2.0, 1.0))
    assert series.pixel_size_source == "Direct Electron info file 'Specimen Pixel Size'"


# -- files we write ourselves -------------------------------------------------------------


def test_tiff_round_trip_keeps_calibration_and_dose(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.random((4, 16, 12)).astype(np.float32)
    dose = [10.0, 20.0, 40.0, 80.0]
    path = write_series_tiff(tmp_path / "s.tif", data, 0.075, dose_e_per_A2=dose)
    series = read_series(path)
    np.testing.assert_array_equal(np.asarray(series.data), data)
    assert series.pixel_size_A == pytest.approx((0.075, 0.075))
    assert series.frame_dose.source == "metadata"
    np.testing.assert_allclose(series.frame_dose.dose_e_per_A2, dose)
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_imagej_resolution_without_our_metadata(tmp_path):
    import tifffile

    path = tmp_path / "ij.tif"
    data = np.zeros((3, 8, 8), np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.02, 1 / 0.02),
                     metadata={"axes": "TYX", "unit": "micron"})
    series = read_series(path)
    assert series.pixel_size_A == pytest.approx((200.0, 200.0), rel=1e-6)
    assert series.format == "ImageJ TIFF"
    assert series.frame_dose is None


def test_ome_tiff_physical_size(tmp_path):
    import tifffile

    path = tmp_path / "o.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.float32), ome=True,
                     metadata={"axes": "TYX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeY": 0.5, "PhysicalSizeYUnit": "nm"})
    series = read_series(path)
    assert series.pixel_size_A == pytest.approx((5.0, 5.0))
    assert series.data.shape == (2, 8, 8)


def test_compressed_tiff_opens_lazily(tmp_path):
    import tifffile

    path = tmp_path / "z.tif"
    data = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    tifffile.imwrite(path, data, compression="zlib", photometric="minisblack")
    series = read_series(path)
    assert isinstance(series.data, da.Array)
    np.testing.assert_array_equal(np.asarray(series.data), data)


def test_mrc_fei_extended_header_dose(tmp_path):
    import mrcfile
    from mrcfile.dtypes import get_ext_header_dtype

    path = tmp_path / "fei.mrc"
    data = np.zeros((3, 8, 8), np.float32)
    ext = np.zeros(3, dtype=get_ext_header_dtype(b"FEI1"))
    ext["Metadata size"] = ext.dtype.itemsize
    ext["Dose"] = np.array([1.0, 2.0, 3.0]) * 1e20  # e⁻/m², i.e. 1, 2, 3 e⁻/Å²
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 0.8
        mrc.header.exttyp = b"FEI1"
        mrc.set_extended_header(ext)
    series = read_series(path)
    assert series.pixel_size_A == pytest.approx((0.8, 0.8))
    assert series.frame_dose.source == "metadata"
    np.testing.assert_allclose(series.frame_dose.dose_e_per_A2, [1, 2, 3])


def test_velox_emd(tmp_path):
    import h5py

    path = tmp_path / "velox.emd"
    frames = np.arange(2 * 6 * 5, dtype=np.uint16).reshape(2, 6, 5)
    meta = {"BinaryResult": {"PixelSize": {"width": "1.5e-11", "height": "1.5e-11"},
                             "PixelUnitX": "m", "PixelUnitY": "m"}}
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with h5py.File(path, "w") as h5:
        group = h5.create_group("Data/Image/abc")
        group["Data"] = np.moveaxis(frames, 0, -1)  # Velox stores (y, x, frame)
        group["Metadata"] = np.repeat(raw[:, None], 2, axis=1)
    series = read_series(path)
    assert series.format == "EMD (Velox)"
    assert series.pixel_size_A == pytest.approx((0.15, 0.15))
    np.testing.assert_array_equal(np.asarray(series.data), frames)


# -- refusals -----------------------------------------------------------------------------

BAD_SUFFIXES = [".tif", ".dm3", ".dm4", ".ser", ".emi", ".emd", ".mrc"]


@pytest.mark.parametrize("suffix", BAD_SUFFIXES)
def test_garbage_and_empty_files_are_refused(tmp_path, suffix):
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    for path in (garbage, empty):
        with pytest.raises(SeriesReadError):
            read_series(path)


@pytest.mark.parametrize(
    "name",
    ["dm_3D_test-1.dm3", "dm_3D_test-1.dm4", "tia_old_64x64x5_TEM_preview_1.ser",
     "emd_Si100_2x1x1_3D.emd", "mrc_20241021_00405_movie.mrc",
     "tiff_test_loading_image_saved_with_DM.tif"],
)
def test_truncated_files_are_refused(real_formats, tmp_path, name):
    source = (real_formats / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(source[: len(source) * 2 // 3])
    with pytest.raises(SeriesReadError):
        series = read_series(path)
        np.asarray(series.data)  # a reader that opened it must at least read it


def test_unsupported_extension_and_directory(tmp_path):
    other = tmp_path / "notes.png"
    other.write_bytes(b"\x89PNG....")
    with pytest.raises(UnsupportedFormatError, match="unsupported"):
        read_series(other)
    with pytest.raises(UnsupportedFormatError, match="directory"):
        read_series(tmp_path)
    with pytest.raises(SeriesReadError, match="no such file"):
        read_series(tmp_path / "missing.tif")


def test_rgb_tiff_is_refused(tmp_path):
    import tifffile

    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(SeriesReadError, match="RGB"):
        read_series(path)


def test_a_compressed_tiff_read_lazily_is_closed_when_its_arrays_go(tmp_path):
    """Pages of a compressed TIFF are read on demand, so the file stays open while an array
    derived from it lives, and is closed (no "unclosed file" warning) once none does."""
    import gc
    import warnings

    import tifffile

    frames = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, frames, compression="zlib", photometric="minisblack")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = read_series(path)
        later = series.data[2]  # derived, still lazy
        del series
        gc.collect()
        np.testing.assert_array_equal(np.asarray(later), frames[2])  # still readable
        del later
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], \
        [str(w.message) for w in caught]


@pytest.mark.parametrize(("names", "shape", "pixel_A"), [
    (("R_x", "R_y"), (3, 5), (2.0, 1.0)),   # stored x first: shown transposed
    (("R_y", "R_x"), (5, 3), (1.0, 2.0)),   # stored y first: as it is
    (("", ""), (5, 3), (1.0, 2.0)),         # unnamed: as it is
])
def test_a_berkeley_emd_is_shown_as_its_dims_name_the_axes(tmp_path, names, shape, pixel_A):
    """py4DSTEM writes (R_x, R_y): the first axis is x. Shown as stored, the image was
    transposed (and its pixel sizes swapped)."""
    import h5py

    data = np.arange(15, dtype=np.float32).reshape(5, 3)
    path = tmp_path / "image.emd"
    with h5py.File(path, "w") as handle:
        handle.attrs["version_major"] = 0
        group = handle.create_group("data/image")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=data)
        for axis, (name, step) in enumerate(zip(names, (1.0, 2.0), strict=True), start=1):
            dim = group.create_dataset(f"dim{axis}", data=np.arange(data.shape[axis - 1]) * step)
            dim.attrs["name"], dim.attrs["units"] = name, "[n_m]"
    series = read_series(path)
    image = np.asarray(series.data)
    assert image.shape == shape
    expected = data.T if shape == (3, 5) else data
    np.testing.assert_array_equal(image, expected)
    assert series.pixel_size_A == pytest.approx(tuple(10 * v for v in pixel_A))
