"""In-situ mode core (the insitu package): ready-file detection, order, backlog and rate."""

import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_lowdose.errors import SeriesReadError
from napari_lowdose.insitu import (
    FolderWatcher,
    RateMeter,
    WatchSession,
    WatchStats,
    is_temporary_name,
    natural_key,
    read_frame,
    read_frames,
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t_s = 0.0

    def __call__(self) -> float:
        return self.t_s

    def advance(self, dt_s: float) -> None:
        self.t_s += dt_s


def tiff_bytes(data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, data)
    return buf.getvalue()


def npy_bytes(data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, data)
    return buf.getvalue()


def image(seed: int, shape=(16, 20), dtype=np.uint16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(dtype)


def write_chunks(path: Path, payload: bytes, n_chunks: int, pause_s: float) -> None:
    """Write a file in ``n_chunks`` pieces with a pause after each but the last."""
    bounds = np.linspace(0, len(payload), n_chunks + 1).astype(int)
    with open(path, "wb") as f:
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            f.write(payload[a:b])
            f.flush()
            if i < n_chunks - 1:
                time.sleep(pause_s)


def poll_for(watcher: FolderWatcher, clock: FakeClock, total_s: float, step_s: float = 0.1):
    """Poll repeatedly while moving the fake clock; return everything delivered."""
    out = []
    for _ in range(round(total_s / step_s)):
        out += watcher.poll()
        clock.advance(step_s)
    return out + watcher.poll()


# ---------------------------------------------------------------------------
# the watcher


def test_chunked_writer_thread_delivers_each_file_once_complete_and_in_order(tmp_path):
    settle_s, pause_s = 0.15, 0.04
    expected = {
        "frame_1.tif": image(1),
        "frame_2.npy": image(2, dtype=np.float32),
        "frame_10.tif": image(3),
    }
    finished_s: dict[str, float] = {}

    def writer() -> None:
        for name, data in expected.items():
            payload = tiff_bytes(data) if name.endswith(".tif") else npy_bytes(data)
            write_chunks(tmp_path / name, payload, n_chunks=4, pause_s=pause_s)
            finished_s[name] = time.monotonic()

    watcher = FolderWatcher(tmp_path, settle_s=settle_s, poll_s=0.01)
    thread = threading.Thread(target=writer)
    thread.start()
    delivered, contents, delivered_s = [], {}, {}
    deadline_s = time.monotonic() + 5.0
    while time.monotonic() < deadline_s and len(delivered) < 3:
        for path in watcher.poll():
            delivered_s[path.name] = time.monotonic()
            delivered.append(path.name)
            contents[path.name] = read_frame(path)[0]  # read at once, as a session would
        time.sleep(0.01)
    thread.join()
    # a few more polls after the writer is done: nothing is delivered twice
    for _ in range(3):
        time.sleep(0.02)
        delivered += [p.name for p in watcher.poll()]

    assert delivered == ["frame_1.tif", "frame_2.npy", "frame_10.tif"]
    for name, data in expected.items():
        assert delivered_s[name] >= finished_s[name], f"{name} delivered before it was complete"
        np.testing.assert_array_equal(contents[name], data)
        assert contents[name].dtype == data.dtype
    assert watcher.unreadable == {}
    assert watcher.n_delivered == 3


def test_not_ready_until_settled_and_parsable(tmp_path):
    clock = FakeClock()
    watcher = FolderWatcher(tmp_path, settle_s=0.5, clock=clock)
    data = image(4)
    payload = tiff_bytes(data)
    path = tmp_path / "frame_1.tif"
    path.write_bytes(payload[: len(payload) // 2])  # the writer pauses mid-file
    assert watcher.poll() == []
    clock.advance(0.4)
    assert watcher.poll() == []  # not settled yet
    clock.advance(0.2)
    assert watcher.poll() == []  # settled, but truncated: wait (maybe still being written)
    assert watcher.pending == [path]
    clock.advance(0.2)
    with open(path, "ab") as f:  # the writer resumes after a pause longer than settle_s
        f.write(payload[len(payload) // 2:])
    assert watcher.poll() == []  # changed: settle again
    clock.advance(0.49)
    assert watcher.poll() == []
    clock.advance(0.01)
    assert watcher.poll() == [path]
    clock.advance(5.0)
    assert watcher.poll() == []  # exactly once
    assert watcher.unreadable == {}
    np.testing.assert_array_equal(read_frame(path)[0], data)


def test_natural_name_order_and_mtime_order(tmp_path):
    names = ["frame_10.npy", "frame_2.npy", "frame_1.npy", "Frame_3.npy"]
    for i, name in enumerate(names):
        np.save(tmp_path / name, image(i))
        os.utime(tmp_path / name, ns=(10**9 * (100 + i),) * 2)  # mtime in the listed order
    assert sorted(names, key=natural_key) == [
        "frame_1.npy", "frame_2.npy", "Frame_3.npy", "frame_10.npy"]

    clock = FakeClock()
    by_name = FolderWatcher(tmp_path, settle_s=0.2, clock=clock)
    by_mtime = FolderWatcher(tmp_path, settle_s=0.2, clock=clock, order="mtime")
    assert by_name.poll() == [] and by_mtime.poll() == []
    clock.advance(0.2)
    assert [p.name for p in by_name.poll()] == [
        "frame_1.npy", "frame_2.npy", "Frame_3.npy", "frame_10.npy"]
    assert [p.name for p in by_mtime.poll()] == names


def test_late_file_sorting_earlier_is_delivered_once(tmp_path):
    clock = FakeClock()
    watcher = FolderWatcher(tmp_path, settle_s=0.2, clock=clock)
    np.save(tmp_path / "frame_5.npy", image(5))
    assert [p.name for p in poll_for(watcher, clock, 0.3)] == ["frame_5.npy"]
    np.save(tmp_path / "frame_4.npy", image(4))  # appears after a later name was delivered
    assert [p.name for p in poll_for(watcher, clock, 0.3)] == ["frame_4.npy"]
    assert poll_for(watcher, clock, 0.3) == []


def test_ready_file_waits_for_an_earlier_one_still_being_written(tmp_path):
    clock = FakeClock()
    watcher = FolderWatcher(tmp_path, settle_s=0.2, clock=clock, max_hold_s=5.0)
    payload = npy_bytes(image(1))
    early = tmp_path / "frame_1.npy"
    early.write_bytes(payload[:40])  # frame_1 is still being written ...
    np.save(tmp_path / "frame_2.npy", image(2))  # ... when frame_2 is already complete
    delivered = []
    for i in range(5):  # frame_1 grows every 0.1 s (pause < settle_s)
        delivered += watcher.poll()
        clock.advance(0.1)
        with open(early, "ab") as f:
            f.write(payload[40 + i: 41 + i])
    assert delivered == []  # frame_2 held back to keep the order
    early.write_bytes(payload)
    delivered += poll_for(watcher, clock, 0.4)
    assert [p.name for p in delivered] == ["frame_1.npy", "frame_2.npy"]


def test_held_back_file_is_released_after_max_hold_s(tmp_path):
    clock = FakeClock()
    watcher = FolderWatcher(tmp_path, settle_s=0.2, clock=clock, max_hold_s=1.0)
    (tmp_path / "frame_1.npy").write_bytes(b"")  # created, never written: never ready
    np.save(tmp_path / "frame_2.npy", image(2))
    assert poll_for(watcher, clock, 0.5) == []
    assert [p.name for p in poll_for(watcher, clock, 0.6)] == ["frame_2.npy"]
    assert watcher.pending == [tmp_path / "frame_1.npy"]


@pytest.mark.parametrize("existing", ["process", "skip"])
def test_files_present_at_start(tmp_path, existing):
    for name in ("frame_1.npy", "frame_2.npy"):
        np.save(tmp_path / name, image(1))
    clock = FakeClock()
    watcher = FolderWatcher(tmp_path, settle_s=0.2, clock=clock, existing=existing)
    np.save(tmp_path / "frame_3.npy", image(3))
    got = [p.name for p in poll_for(watcher, clock, 0.3)]
    if existing == "process":
        assert got == ["frame_1.npy", "frame_2.npy", "frame_3.npy"]
        assert watcher.skipped == []
    else:
        assert got == ["frame_3.npy"]
        assert [p.name for p in watcher.skipped] == ["frame_1.npy", "frame_2.npy"]


def test_temporary_and_hidden_names_ignored_and_rename_into_place(tmp_path):
    ignored = [".frame_1.tif", "frame_1.tif.tmp", "frame_1.tif.part", "frame_1.part.tif",
               "~frame_1.tif", "frame_1.tif~", "notes.txt", "frame_1.TMP"]
    for name in ignored:
        assert is_temporary_name(name) or not name.endswith((".tif", ".TMP"))
        (tmp_path / name).write_bytes(tiff_bytes(image(0)))
    (tmp_path / "sub.tif").mkdir()  # a folder matching a pattern is not a file
    clock = FakeClock()
    watcher = FolderWatcher(tmp_path, settle_s=0.2, clock=clock)
    assert poll_for(watcher, clock, 1.0) == []
    assert watcher.n_pending == 0

    data = image(7)
    temp = tmp_path / "frame_7.tif.part"
    payload = tiff_bytes(data)
    temp.write_bytes(payload[:100])
    assert poll_for(watcher, clock, 0.5) == []
    with open(temp, "ab") as f:
        f.write(payload[100:])
    os.replace(temp, tmp_path / "frame_7.tif")
    got = poll_for(watcher, clock, 0.5)
    assert got == [tmp_path / "frame_7.tif"]
    np.testing.assert_array_equal(read_frame(got[0])[0], data)
    # upper-case extensions are watched too
    (tmp_path / "frame_8.NPY").write_bytes(npy_bytes(image(8)))
    assert [p.name for p in poll_for(watcher, clock, 0.5)] == ["frame_8.NPY"]


def test_settled_corrupt_file_is_delivered_as_unreadable(tmp_path):
    clock = FakeClock()
    watcher = FolderWatcher(tmp_path, settle_s=0.2, clock=clock)
    bad = tmp_path / "frame_1.tif"
    bad.write_bytes(b"this is not a TIFF file at all" * 10)
    assert poll_for(watcher, clock, 0.2) == []  # parse failed once: wait for another settle_s
    assert poll_for(watcher, clock, 0.2) == [bad]
    assert bad in watcher.unreadable and "frame_1.tif" in watcher.unreadable[bad]
    assert poll_for(watcher, clock, 1.0) == []


def test_watcher_rejects_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        FolderWatcher(tmp_path / "missing")
    with pytest.raises(ValueError, match="existing"):
        FolderWatcher(tmp_path, existing="all")
    with pytest.raises(ValueError, match="order"):
        FolderWatcher(tmp_path, order="size")
    with pytest.raises(ValueError, match="poll_s"):
        FolderWatcher(tmp_path, poll_s=0)


def test_iter_ready_stops_on_idle_timeout(tmp_path):
    np.save(tmp_path / "frame_1.npy", image(1))
    watcher = FolderWatcher(tmp_path, settle_s=0.02, poll_s=0.01)
    t0_s = time.monotonic()
    got = list(watcher.iter_ready(timeout_s=0.1))
    assert [p.name for p in got] == ["frame_1.npy"]
    assert time.monotonic() - t0_s < 2.0
    assert list(watcher.iter_ready(should_stop=lambda: True)) == []


def test_an_empty_file_left_as_it_is_does_not_hold_the_idle_timeout(tmp_path):
    """A 0-byte frame a camera program gave up on kept `watch --idle-timeout-s` running for
    ever; a file that keeps growing still does."""
    np.save(tmp_path / "frame_1.npy", image(1))
    (tmp_path / "frame_2.npy").write_bytes(b"")
    watcher = FolderWatcher(tmp_path, settle_s=0.02, poll_s=0.01)
    t0_s = time.monotonic()
    got = list(watcher.iter_ready(timeout_s=0.2))
    assert [p.name for p in got] == ["frame_1.npy"] and time.monotonic() - t0_s < 3.0
    assert [p.name for p in watcher.pending] == ["frame_2.npy"]  # still not delivered
    clock = FakeClock()
    growing = FolderWatcher(tmp_path, settle_s=0.02, clock=clock, existing="skip")
    (tmp_path / "frame_3.npy").write_bytes(b"\x93NUMPY")
    growing.poll()
    clock.advance(5.0)
    assert growing.n_changing(1.0) == 0 and growing.n_pending == 1
    (tmp_path / "frame_3.npy").write_bytes(b"\x93NUMPY more")
    growing.poll()
    assert growing.n_changing(1.0) == 1


# ---------------------------------------------------------------------------
# reading


def test_read_frames_keeps_every_frame_and_dtype(tmp_path):
    stack = np.stack([image(i) for i in range(3)])
    tifffile.imwrite(tmp_path / "movie.tif", stack, photometric="minisblack")
    frames, meta = read_frames(tmp_path / "movie.tif")
    assert frames.shape == (3, 16, 20) and frames.dtype == np.uint16
    np.testing.assert_array_equal(frames, stack)
    assert meta["n_frames_in_file"] == 3 and meta["name"] == "movie.tif"
    with pytest.raises(SeriesReadError, match="3 frames"):
        read_frame(tmp_path / "movie.tif")
    np.save(tmp_path / "one.npy", stack[1])
    frame, meta = read_frame(tmp_path / "one.npy", as_float32=True)
    assert frame.dtype == np.float32 and frame.shape == (16, 20)
    assert meta["frame_index_in_file"] == 0 and meta["format"] == "NumPy .npy"
    np.save(tmp_path / "line.npy", np.arange(5))
    with pytest.raises(SeriesReadError, match="dimension"):
        read_frames(tmp_path / "line.npy")


# ---------------------------------------------------------------------------
# the session


def test_session_reports_unreadable_and_failed_frames_and_goes_on(tmp_path):
    np.save(tmp_path / "frame_1.npy", image(1))
    (tmp_path / "frame_2.tif").write_bytes(b"garbage" * 50)
    np.save(tmp_path / "frame_3.npy", image(3))
    np.save(tmp_path / "frame_4.npy", image(4))
    watcher = FolderWatcher(tmp_path, settle_s=0.03, poll_s=0.01)
    seen, written = [], []

    def process(frame, meta):
        if meta["name"] == "frame_3.npy":
            raise RuntimeError("model exploded")
        seen.append(meta["name"])
        return float(frame.mean())

    session = WatchSession(watcher, process, on_result=lambda r, m: written.append(m["name"]))
    events = list(session.run_iter(idle_timeout_s=0.15))
    stats = session.stats
    assert seen == written == ["frame_1.npy", "frame_4.npy"]
    assert [e.path.name for e in events] == [
        "frame_1.npy", "frame_2.tif", "frame_3.npy", "frame_4.npy"]
    assert [e.failed for e in events] == [False, True, True, False]
    assert events[0].result == pytest.approx(image(1).mean())
    assert [(f.path.name, f.stage) for f in stats.failures] == [
        ("frame_2.tif", "read"), ("frame_3.npy", "process")]
    assert "model exploded" in stats.failures[1].reason
    assert stats.frames_processed == 2 and stats.files_ready == 4 and stats.backlog == 0
    assert stats.summary().startswith("processed 2 frames, ")
    assert "1 unreadable" in stats.summary() and "1 failed" in stats.summary()


def test_session_counts_backlog_when_processing_is_slow(tmp_path):
    np.save(tmp_path / "a_1.npy", np.stack([image(i) for i in range(3)]))  # 3 frames
    for i in range(2, 6):
        np.save(tmp_path / f"a_{i}.npy", image(i))
    watcher = FolderWatcher(tmp_path, settle_s=0.02, poll_s=0.01)

    def slow(frame, meta):
        time.sleep(0.03)  # slower than arrival: everything is already there
        return meta["frame_index_in_file"]

    events = list(WatchSession(watcher, slow).run_iter(idle_timeout_s=0.1))
    assert [(e.path.name, e.frame_index) for e in events] == [
        ("a_1.npy", 0), ("a_1.npy", 1), ("a_1.npy", 2),
        ("a_2.npy", 0), ("a_3.npy", 0), ("a_4.npy", 0), ("a_5.npy", 0)]
    backlogs = [(e.stats.backlog_files, e.stats.backlog_frames) for e in events]
    assert backlogs == [(4, 2), (4, 1), (4, 0), (3, 0), (2, 0), (1, 0), (0, 0)]
    last = events[-1].stats
    assert last.max_backlog == 7  # 4 files waiting + 3 frames of a_1 before the first one
    assert last.frames_processed == last.frames_read == 7 and not last.failures
    assert last.mean_process_s >= 0.03

    # stopped early: what was not processed is still counted, not dropped
    watcher = FolderWatcher(tmp_path, settle_s=0.02, poll_s=0.01)
    session = WatchSession(watcher, slow)
    for event in session.run_iter(idle_timeout_s=0.1):
        if event.stats.frames_processed == 4:
            session.stop()
    assert session.stats.frames_processed == 4
    assert session.stats.backlog == 3
    assert "backlog 3" in session.stats.summary()


def test_session_idle_heartbeat_and_should_stop(tmp_path):
    watcher = FolderWatcher(tmp_path, settle_s=0.02, poll_s=0.01)
    stop = threading.Event()
    session = WatchSession(watcher, lambda f, m: None, should_stop=stop.is_set)
    beats = 0
    for event in session.run_iter(idle_yield_s=0.02):
        assert event.idle and event.stats.frames_processed == 0
        beats += 1
        if beats == 3:
            stop.set()
    assert beats == 3


# ---------------------------------------------------------------------------
# rate and summary


def test_rate_meter_on_a_fake_clock():
    clock = FakeClock()
    meter = RateMeter(window_s=10.0, clock=clock)
    assert meter.rate_per_s() == 0.0
    meter.tick()
    assert meter.rate_per_s() == 0.0  # one frame is no rate
    for _ in range(40):  # 8 frames/s
        clock.advance(0.125)
        meter.tick()
    assert meter.rate_per_s() == pytest.approx(8.0)
    for _ in range(30):  # slows to 2 frames/s for 15 s: the window forgets the fast part
        clock.advance(0.5)
        meter.tick()
    assert meter.rate_per_s() == pytest.approx(2.0)
    assert meter.count == 71
    clock.advance(10.0)  # acquisition stopped
    assert meter.rate_per_s() == 0.0
    with pytest.raises(ValueError):
        RateMeter(window_s=0)


def test_summary_line():
    stats = WatchStats(frames_processed=120, rate_per_s=7.93)
    assert stats.summary() == "processed 120 frames, 7.9 frames/s sustained, backlog 0"
    stats = WatchStats(frames_processed=1, backlog_files=2, backlog_frames=5, pending_files=1)
    assert stats.summary() == ("processed 1 frame, 0.0 frames/s sustained, "
                               "backlog 7 (2 files, 5 frames), 1 file being written")


def test_default_patterns_cover_every_format_the_readers_open():
    from napari_lowdose.insitu import DEFAULT_PATTERNS
    from napari_lowdose.io.readers import SUPPORTED_SUFFIXES

    for suffix in (*SUPPORTED_SUFFIXES, ".npy"):
        if suffix == ".emi":  # the .ser beside it holds the frames
            assert f"*{suffix}" not in DEFAULT_PATTERNS
        else:
            assert f"*{suffix}" in DEFAULT_PATTERNS  # .emd and .mrcs were missing
