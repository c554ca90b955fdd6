"""Output folders: all files or none, and no silent overwrite."""

import pytest

from napari_lowdose.io.outputs import OutputExistsError, write_output_folder


def _text(content):
    return lambda path: path.write_text(content)


def test_all_files_land_together(tmp_path):
    out = tmp_path / "run"
    written = write_output_folder(out, {"a.csv": _text("1"), "b.json": _text("{}")})
    assert [p.name for p in written] == ["a.csv", "b.json"]
    assert (out / "a.csv").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging left behind


def test_a_failing_writer_leaves_nothing(tmp_path):
    out = tmp_path / "run"

    def broken(path):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_output_folder(out, {"a.csv": _text("1"), "b.png": broken})
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_output_folder(out, {"a.csv": _text("1")})
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    write_output_folder(out, {"a.csv": _text("2")}, overwrite=True)
    assert (out / "a.csv").read_text() == "2" and (out / "notes.txt").read_text() == "mine"


def test_names_must_be_plain(tmp_path):
    with pytest.raises(ValueError, match="plain file names"):
        write_output_folder(tmp_path / "x", {"../evil.txt": _text("")})


def test_atomic_files_get_normal_permissions(tmp_path):
    import os

    from napari_lowdose.io.writers import atomic_write_text

    atomic_write_text(tmp_path / "table.csv", "a\n")
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o666 & ~mask


def test_result_array_is_in_memory_when_small_and_a_removed_scratch_file_when_large(tmp_path):
    import numpy as np

    from napari_lowdose.io.outputs import result_array

    with result_array((2, 3), np.float32, tmp_path / "out", fill=np.nan) as small:
        assert type(small) is np.ndarray and np.isnan(small).all()
    with result_array((2, 3), np.uint8, tmp_path / "out", fill=7,
                      in_memory_limit_bytes=4) as large:
        assert isinstance(large, np.memmap) and (large == 7).all()
        scratch = [p for p in tmp_path.iterdir() if p.name.startswith(".lowdose-scratch-")]
        assert len(scratch) == 1
        large[1] = 3
        assert large.sum() == 7 * 3 + 3 * 3
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch):
    """Read-only or not a folder: one sentence naming the folder, at the check (before a
    long run), not a temporary file's name after it."""
    import tempfile

    from napari_lowdose.io.outputs import OutputNotWritableError, check_output_folder

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputNotWritableError, match="a-file is not a folder"):
        check_output_folder(tmp_path / "a-file" / "run")

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OutputNotWritableError) as info:
        check_output_folder(tmp_path / "new" / "run")
    assert str(info.value) == (f"cannot write to {tmp_path / 'new' / 'run'} (made in "
                               f"{tmp_path}): Read-only file system")
    assert not (tmp_path / "new").exists()
