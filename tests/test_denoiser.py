"""The low-dose denoiser network, its normalisation, inference and checkpoints (issue 7)."""

import math

import numpy as np
import pytest
import torch

from napari_lowdose.io.units import electrons_per_pixel
from napari_lowdose.models import registry
from napari_lowdose.models.checkpoint import (
    ARCHITECTURES,
    CheckpointError,
    build_model,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from napari_lowdose.models.denoiser import DenoiserUNet
from napari_lowdose.models.denoising import denoise_frame, denoise_frames
from napari_lowdose.models.msdnet import MSDNet
from napari_lowdose.models.normalisation import (
    denoiser_normalisation,
    normalise_counts,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_head(model: DenoiserUNet, seed: int = 0) -> DenoiserUNet:
    """An untrained denoiser is the identity (zero last layer); give it a random one."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.weight.copy_(0.1 * torch.randn(model.head.weight.shape, generator=generator))
        model.head.bias.fill_(0.05)
    return model


def _poisson_frames(n=3, shape=(37, 53), e_per_px=5.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(e_per_px, size=(n, *shape)).astype(np.float32)


def test_denoiser_is_registered_and_built_from_its_config():
    assert ARCHITECTURES["denoiser"] is DenoiserUNet
    model = build_model("denoiser", {"base_channels": 4, "levels": 2})
    assert isinstance(model, DenoiserUNet)
    assert model.config["base_channels"] == 4 and model.config["kernel_size"] == 3
    assert model.size_multiple == 4
    with pytest.raises(ValueError, match="unknown denoiser settings"):
        DenoiserUNet(width=3)
    with pytest.raises(ValueError, match="clip_percentiles"):
        DenoiserUNet(clip_percentiles=[50, 10])


@pytest.mark.parametrize("shape", [(37, 53), (16, 16), (5, 3), (64, 31)])
def test_shapes_are_kept_for_odd_and_non_square_frames(shape):
    model = _random_head(DenoiserUNet(base_channels=4, levels=3))
    x = torch.rand(2, 2, *shape)
    assert model(x).shape == (2, 1, *shape)
    frames = _poisson_frames(2, shape)
    out = list(denoise_frames(model, frames, device="cpu", expected_e_per_px=5.0))
    assert [i for i, _ in out] == [0, 1]
    assert all(o.shape == shape and o.dtype == np.float32 for _, o in out)
    assert denoise_frame(model, frames[0], device="cpu").shape == shape


def test_normalisation_by_expected_electrons_and_noise_level_channel():
    counts = torch.full((2, 8, 8), 10.0)
    counts[1] *= 3
    inputs, scale = normalise_counts(counts, torch.tensor([5.0, 15.0]), counts_per_electron=2.0,
                                     clip_percentiles=(0, 100))
    assert inputs.shape == (2, 2, 8, 8)
    # 10 counts at 5 e⁻/px and 2 counts/e⁻ is vacuum: x = 1.
    assert torch.allclose(inputs[:, 0], torch.ones(2, 8, 8))
    assert scale.flatten().tolist() == [10.0, 30.0]
    lo, hi = -2.0, 4.0
    expected = [(math.log10(5.0) - lo) / (hi - lo), (math.log10(15.0) - lo) / (hi - lo)]
    assert inputs[:, 1, 0, 0].tolist() == pytest.approx(expected)
    # Without a dose the frame mean / gain is the expected dose.
    same, same_scale = normalise_counts(counts, None, counts_per_electron=2.0,
                                        clip_percentiles=(0, 100))
    assert torch.allclose(same, inputs) and torch.allclose(same_scale, scale)
    assert electrons_per_pixel([100.0, 400.0], 0.05).tolist() == pytest.approx(
        [0.25, 1.0])
    with pytest.raises(ValueError, match="positive"):
        normalise_counts(torch.zeros(1, 4, 4), None)


def test_percentile_clipping_removes_a_hot_pixel():
    frames = torch.from_numpy(_poisson_frames(1, (64, 64), 5.0))
    frames[0, 10, 10] = 1e4
    inputs, _ = normalise_counts(frames, torch.tensor([5.0]))
    assert float(inputs[0, 0].max()) < 5.0
    raw, _ = normalise_counts(frames, torch.tensor([5.0]), clip_percentiles=(0, 100))
    assert float(raw[0, 0, 10, 10]) == pytest.approx(2000.0)


def test_an_untrained_denoiser_round_trips_the_counts():
    model = DenoiserUNet(base_channels=4, levels=2, clip_percentiles=[0, 100])
    frames = _poisson_frames(3, (24, 40), 7.0) * 2.5 + 1.0
    for doses in (None, 7.0, [7.0, 8.0, 9.0]):
        out = dict(denoise_frames(model, frames, expected_e_per_px=doses,
                                  counts_per_electron=2.5, device="cpu", batch_size=2))
        for i in range(3):
            np.testing.assert_allclose(out[i], frames[i], rtol=1e-5)
    # With clipping, only the clipped pixels change.
    clipped = denoise_frame(DenoiserUNet(base_channels=4, levels=2), frames[0], device="cpu")
    changed = np.abs(clipped - frames[0]) > 1e-3
    assert 0 < changed.mean() < 0.02


def test_streaming_accepts_dask_subsets_stops_and_checks_doses():
    import dask.array as da

    model = _random_head(DenoiserUNet(base_channels=4, levels=1))
    frames = _poisson_frames(5, (20, 28))
    stack = da.from_array(frames, chunks=(1, 20, 28))
    out = list(denoise_frames(model, stack, expected_e_per_px=np.arange(1, 6.0),
                              frame_indices=[3, 1], device="cpu"))
    assert [i for i, _ in out] == [3, 1]
    ref = denoise_frame(model, frames[3], expected_e_per_px=4.0, device="cpu")
    np.testing.assert_allclose(out[0][1], ref, rtol=1e-5, atol=1e-5)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    assert len(list(denoise_frames(model, frames, device="cpu", should_stop=stop))) < 5
    with pytest.raises(ValueError, match="2 expected doses given for 5"):
        denoise_frames(model, frames, expected_e_per_px=[1.0, 2.0], device="cpu")
    with pytest.raises(TypeError, match="DenoiserUNet"):
        denoise_frames(MSDNet(depth=2, width=1, kernel_size=3), frames, device="cpu")


def test_tiled_inference_matches_whole_frames():
    model = _random_head(DenoiserUNet(base_channels=4, levels=2))
    frames = _poisson_frames(1, (150, 90), 3.0)
    whole = denoise_frame(model, frames[0], expected_e_per_px=3.0, device="cpu")
    tiled = denoise_frame(model, frames[0], expected_e_per_px=3.0, device="cpu", tile_px=64,
                          overlap_px=24, batch_size=3)
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-3)


def test_checkpoint_round_trip_keeps_weights_and_normalisation(tmp_path):
    model = _random_head(DenoiserUNet(base_channels=4, levels=2, clip_percentiles=[0.5, 99.5]))
    path = save_checkpoint(tmp_path / "d.safetensors", model, arch="denoiser",
                           metadata={"validation": {"psnr_db": 30.0}})
    meta = read_checkpoint_metadata(path)
    assert meta["arch"] == "denoiser"
    assert meta["normalisation"] == denoiser_normalisation(model.config)
    assert meta["normalisation"]["clip_percentiles"] == [0.5, 99.5]
    loaded, _ = registry.load_denoiser(path)
    assert isinstance(loaded, DenoiserUNet) and not loaded.training
    frame = _poisson_frames(1, (33, 47))[0]
    np.testing.assert_array_equal(denoise_frame(loaded, frame, device="cpu"),
                                  denoise_frame(model, frame, device="cpu"))


def test_the_wrong_kind_of_model_is_refused_both_ways(tmp_path):
    seg = save_checkpoint(tmp_path / "seg.safetensors", MSDNet(depth=2, width=1, kernel_size=3),
                          arch="msdnet", metadata={})
    den = save_checkpoint(tmp_path / "den.safetensors", DenoiserUNet(base_channels=2, levels=1),
                          arch="denoiser", metadata={})
    with pytest.raises(CheckpointError, match="holds an msdnet, not a denoiser"):
        registry.load_denoiser(seg)
    with pytest.raises(CheckpointError, match="holds a denoiser, not a segmentation model"):
        registry.load_model(den)
    with pytest.raises(CheckpointError, match="not a unet"):
        load_checkpoint(den, arch="unet")
    model, meta = registry.load_model(seg)
    assert meta["arch"] == "msdnet"


def test_shipped_denoisers_are_listed_only_when_installed(monkeypatch, tmp_path):
    assert registry.DEFAULT_DENOISER in registry.SHIPPED_DENOISERS
    monkeypatch.setattr(registry, "PRETRAINED_DIR", tmp_path)
    assert registry.available_denoisers() == []
    with pytest.raises(CheckpointError, match="is not installed"):
        registry.load_denoiser(registry.DEFAULT_DENOISER)
    with pytest.raises(CheckpointError, match=r"neither a shipped denoiser \(none installed\)"):
        registry.resolve_denoiser("no-such-denoiser")
    save_checkpoint(tmp_path / registry.SHIPPED_DENOISERS[registry.DEFAULT_DENOISER],
                    DenoiserUNet(base_channels=2, levels=1), arch="denoiser", metadata={})
    assert registry.available_denoisers() == [registry.DEFAULT_DENOISER]
    model, _ = registry.load_denoiser(registry.DEFAULT_DENOISER)
    assert isinstance(model, DenoiserUNet)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_autocast_on_cuda_keeps_float32_output():
    model = _random_head(DenoiserUNet(base_channels=8, levels=2))
    frames = _poisson_frames(2, (64, 96), 5.0)
    cpu = dict(denoise_frames(model, frames, device="cpu", expected_e_per_px=5.0))
    gpu = dict(denoise_frames(model, frames, device="cuda", expected_e_per_px=5.0))
    for i in cpu:
        assert gpu[i].dtype == np.float32
        np.testing.assert_allclose(gpu[i], cpu[i], atol=0.05 * float(np.abs(cpu[i]).max()))


@pytest.mark.parametrize("tile_px", [None, 24])
def test_the_dihedral_average_is_the_mean_over_the_eight_orientations(tile_px):
    """A non-square frame, whole or tiled: each orientation is denoised and turned back."""
    model = _random_head(DenoiserUNet(base_channels=4, levels=2))
    frame = _poisson_frames(1, shape=(37, 53))[0]
    averaged = denoise_frame(model, frame, expected_e_per_px=5.0, device="cpu",
                             tile_px=tile_px, dihedral_average=True)
    assert averaged.shape == frame.shape and averaged.dtype == np.float32
    by_hand = []
    for turns in range(4):
        for flip in (False, True):
            moved = np.rot90(frame, turns)
            moved = moved[:, ::-1] if flip else moved
            out = denoise_frame(model, np.ascontiguousarray(moved), expected_e_per_px=5.0,
                                device="cpu", tile_px=tile_px)
            out = out[:, ::-1] if flip else out
            by_hand.append(np.rot90(out, -turns))
    np.testing.assert_allclose(averaged, np.mean(by_hand, axis=0), rtol=1e-5, atol=1e-4)
    plain = denoise_frame(model, frame, expected_e_per_px=5.0, device="cpu", tile_px=tile_px)
    assert not np.allclose(plain, averaged)  # the random network is not symmetric
