"""Streaming inference (models/inference.py): probabilities, batching, tiling, stopping."""

import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from napari_lowdose.models import MSDNet, UNet
from napari_lowdose.models.inference import predict_frame, predict_probabilities
from napari_lowdose.models.normalisation import standardise
from napari_lowdose.models.tiling import plan_tiles


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _msdnet():
    # Receptive-field radius: sum of dilations · (k − 1) / 2 = 4 px.
    return MSDNet(depth=3, width=2, kernel_size=3, dilations=[1, 2, 1], init_seed=1)


def _unet():
    torch.manual_seed(2)
    return UNet(base_channels=2, levels=1, kernel_size=3)


def _frames(n=4, shape=(33, 47), seed=0):
    rng = np.random.default_rng(seed)
    return (100 + 10 * rng.normal(size=(n, *shape))).astype(np.float32)


def _collect(model, frames, **kwargs):
    kwargs.setdefault("device", "cpu")
    return list(predict_probabilities(model, frames, **kwargs))


@pytest.mark.parametrize("shape", [(33, 47), (31, 31), (40, 9)])
@pytest.mark.parametrize("make", [_msdnet, _unet])
def test_probabilities_keep_the_frame_shape(make, shape):
    frames = _frames(2, shape)
    out = _collect(make(), frames)
    assert [i for i, _ in out] == [0, 1]
    for _, prob in out:
        assert prob.shape == shape and prob.dtype == np.float32
        assert np.all((prob >= 0) & (prob <= 1)) and np.isfinite(prob).all()


def test_matches_the_network_on_standardised_frames():
    model, frames = _msdnet(), _frames(2)
    out = dict(_collect(model, frames))
    with torch.no_grad():
        expected = torch.sigmoid(model(standardise(torch.from_numpy(frames))[:, None]))[:, 0]
    np.testing.assert_allclose(np.stack([out[0], out[1]]), expected.numpy(), atol=1e-6)


def test_single_frame_and_predict_frame():
    model, frames = _msdnet(), _frames(3)
    ((index, prob),) = _collect(model, frames[1])
    assert index == 0
    np.testing.assert_allclose(prob, dict(_collect(model, frames))[1], atol=1e-6)
    np.testing.assert_allclose(predict_frame(model, frames[1], device="cpu"), prob, atol=1e-6)
    with pytest.raises(ValueError, match="one"):
        predict_frame(model, frames)


def test_numpy_dask_and_zarr_give_the_same_result():
    model, frames = _msdnet(), _frames(4)
    expected = _collect(model, frames)
    lazy = da.from_array(frames, chunks=(1, 33, 47))
    stored = zarr.array(frames, chunks=(1, 33, 47))
    for other in (_collect(model, lazy), _collect(model, stored)):
        assert [i for i, _ in other] == [i for i, _ in expected]
        for (_, a), (_, b) in zip(expected, other, strict=True):
            np.testing.assert_array_equal(a, b)


class _CountingFrames:
    """An (n, y, x) array that records which frames are read."""

    def __init__(self, data):
        self.data, self.shape, self.read = data, data.shape, []

    def __getitem__(self, key):
        rows = range(*key.indices(self.shape[0])) if isinstance(key, slice) else [key]
        self.read.extend(rows)
        return self.data[key]


def test_frame_indices_subset_reads_only_those_frames():
    model, frames = _msdnet(), _frames(6)
    counting = _CountingFrames(frames)
    full = dict(_collect(model, frames))
    out = _collect(model, counting, frame_indices=[4, 1, -1], batch_size=2)
    assert [i for i, _ in out] == [4, 1, 5]
    assert sorted(set(counting.read)) == [1, 4, 5]
    for i, prob in out:
        np.testing.assert_allclose(prob, full[i], atol=1e-6)
    with pytest.raises(IndexError, match="out of range"):
        predict_probabilities(model, frames, device="cpu", frame_indices=[6])


def test_batch_size_does_not_change_the_result():
    model, frames = _unet(), _frames(5, (30, 21))
    one = _collect(model, frames, batch_size=1)
    three = _collect(model, frames, batch_size=3)
    assert [i for i, _ in one] == [i for i, _ in three] == list(range(5))
    for (_, a), (_, b) in zip(one, three, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_progress_is_reported_after_each_frame():
    calls = []
    _collect(_msdnet(), _frames(3), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("batch_size", [1, 2])
def test_should_stop_ends_the_stream_and_keeps_yielded_frames(batch_size):
    frames = _frames(6)
    got = []
    for index, prob in predict_probabilities(
        _msdnet(),
        frames,
        device="cpu",
        batch_size=batch_size,
        should_stop=lambda: len(got) >= 3,
    ):
        got.append((index, prob))
    assert [i for i, _ in got] == [0, 1, 2]


def test_should_stop_interrupts_tiled_frames():
    polls = []

    def stop():
        polls.append(1)
        return len(polls) > 3

    # 3 × 3 tiles per frame; polled before the frame, then before every tile batch.
    out = _collect(_msdnet(), _frames(2, (64, 64)), tile_px=32, overlap_px=8, should_stop=stop)
    assert out == [] and len(polls) == 4
    out = []
    for item in predict_probabilities(
        _msdnet(),
        _frames(2, (64, 64)),
        device="cpu",
        tile_px=32,
        overlap_px=8,
        should_stop=lambda: len(out) >= 1,
    ):
        out.append(item)
    assert [i for i, _ in out] == [0]


def test_model_mode_is_restored():
    model = _msdnet()
    assert model.training
    _collect(model, _frames(1))
    assert model.training


@pytest.mark.parametrize(
    ("make", "shape", "tile_px", "overlap_px"),
    [
        (_msdnet, (100, 77), 40, 12),  # radius 4 <= overlap // 2
        (_msdnet, (150, 97), 80, 32),  # the default overlap
        (_unet, (150, 131), 96, 32),  # tiles start on the U-net's pooling grid
    ],
)
def test_tiled_matches_untiled(make, shape, tile_px, overlap_px):
    model, frames = make(), _frames(2, shape)
    whole = _collect(model, frames)
    tiled = _collect(model, frames, tile_px=tile_px, overlap_px=overlap_px, batch_size=3)
    for (i, a), (j, b) in zip(whole, tiled, strict=True):
        assert i == j and b.shape == shape
        inner = (slice(overlap_px, -overlap_px), slice(overlap_px, -overlap_px))
        assert np.abs(a[inner] - b[inner]).max() < 1e-4
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_tiles_cover_the_frame_with_smooth_weights():
    shape = (150, 131)
    tiles = plan_tiles(shape, 64, 16, align=4)
    total = np.zeros(shape)
    for rows, cols, weight in tiles:
        assert rows.start % 4 == 0 and cols.start % 4 == 0
        assert weight.shape == (rows.stop - rows.start, cols.stop - cols.start)
        total[rows, cols] += weight
    assert len(tiles) > 4 and total.min() > 0.5
    assert plan_tiles((30, 20), 64, 16)[0][2].min() == 1  # one tile, no ramp
    with pytest.raises(ValueError, match="too small for overlap_px"):
        plan_tiles((100, 100), 64, 32)


def test_small_frames_and_bad_arguments_are_refused():
    model = MSDNet(depth=2, kernel_size=9, dilations=[1, 3])  # min_size 13
    with pytest.raises(ValueError, match="smaller than this network's minimum of 13×13"):
        predict_probabilities(model, np.zeros((2, 12, 40)), device="cpu")
    with pytest.raises(ValueError, match="shape"):
        predict_probabilities(model, np.zeros((2, 2, 20, 20)), device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        predict_probabilities(model, np.zeros((20, 20)), device="cpu", batch_size=0)
    with pytest.raises(ValueError, match="1 output channel"):
        _collect(MSDNet(depth=1, kernel_size=3, out_channels=2), np.zeros((20, 20)))


def test_tiles_are_at_least_the_minimum_size():
    model = MSDNet(depth=2, kernel_size=9, dilations=[1, 3], init_seed=4)  # min_size 13
    frames = _frames(1, (40, 30))
    whole = _collect(model, frames)[0][1]
    tiled = _collect(model, frames, tile_px=8, overlap_px=0)[0][1]
    assert tiled.shape == whole.shape and np.isfinite(tiled).all()


@pytest.mark.parametrize("zoom", [0.5, 1.5])
def test_a_zoom_resamples_for_the_network_and_maps_back(zoom):
    from scipy import ndimage

    model, frames = _msdnet(), _frames(3, (40, 52))
    done = []
    out = _collect(model, frames, zoom=zoom, frame_indices=[2, 0],
                   progress=lambda k, n: done.append((k, n)))
    assert [i for i, _ in out] == [2, 0] and done == [(1, 2), (2, 2)]
    for index, prob in out:
        assert prob.shape == (40, 52) and prob.dtype == np.float32
        small = ndimage.zoom(frames[index], zoom, order=1)
        seen = predict_frame(model, small, device="cpu")  # what the network saw
        back = ndimage.zoom(seen, (40 / seen.shape[0], 52 / seen.shape[1]), order=1)
        np.testing.assert_allclose(prob, back[:40, :52], atol=1e-5)
    # A zoom of 1 is the plain path, bit for bit.
    plain = dict(_collect(model, frames))
    same = dict(_collect(model, frames, zoom=1.0))
    np.testing.assert_array_equal(plain[1], same[1])
    with pytest.raises(ValueError, match="zoom"):
        _collect(model, frames, zoom=-1.0)


def test_inference_zoom_takes_the_models_training_sampling():
    from napari_lowdose.models.registry import load_model
    from napari_lowdose.workflows.segmentation import inference_zoom, training_sampling_A

    _, metadata = load_model("unet-au-ceo2-low", device="cpu")
    assert training_sampling_A(metadata) == pytest.approx(0.075)  # Table 1: 0.07–0.08
    assert inference_zoom(0.05, metadata) == pytest.approx(0.05 / 0.075)
    assert inference_zoom((0.1, 0.1), metadata) == pytest.approx(0.1 / 0.075)
    assert inference_zoom(None, metadata) is None and inference_zoom(0.05, {}) is None
