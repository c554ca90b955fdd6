"""Model files (models/checkpoint.py): safetensors round trip, metadata, refusals."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_lowdose import __version__
from napari_lowdose.errors import LowdoseError
from napari_lowdose.models import MSDNet, UNet
from napari_lowdose.models.checkpoint import (
    ARCHITECTURES,
    FORMAT,
    METADATA_KEY,
    CheckpointError,
    build_model,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
    sidecar_path,
)
from napari_lowdose.models.normalisation import NORMALISATION, standardise

METADATA = {
    "normalisation": NORMALISATION,
    "dataset": {"path": "/data/set.zarr", "card": {"structures": 3, "dose": [10.0, 20.0]}},
    "noise_model": {"kind": "poisson", "mtf": {"a": 0.5, "b": [1, 2]}},
    "validation": {"f1": np.float32(0.875), "epoch": np.int64(7), "loss": 0.25},
    "training": {"epochs": 8, "lr": 1e-3, "optimiser": "Adam(amsgrad)"},
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _msdnet():
    return MSDNet(depth=4, width=2, kernel_size=3, max_dilation=3, dilation_seed=5)


def _unet():
    torch.manual_seed(3)
    return UNet(base_channels=2, levels=2, kernel_size=3)


@pytest.fixture(params=["msdnet", "unet"])
def saved(request, tmp_path):
    model = _msdnet() if request.param == "msdnet" else _unet()
    with torch.no_grad():  # make the weights differ from a fresh build
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_checkpoint(
        tmp_path / "model.safetensors", model, arch=request.param, metadata=METADATA
    )
    return request.param, model, path


def test_round_trip_gives_the_same_outputs(saved):
    arch, model, path = saved
    loaded, meta = load_checkpoint(path, arch=arch)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config == model.config
    x = torch.randn(2, 1, 24, 19)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert meta["arch"] == arch and meta["format"] == FORMAT


def test_metadata_is_kept_and_the_sidecar_matches(saved):
    arch, model, path = saved
    meta = read_checkpoint_metadata(path)
    assert meta["format_version"] == 1
    assert meta["package_version"] == __version__
    assert meta["config"] == json.loads(json.dumps(model.config))
    assert meta["dataset"] == METADATA["dataset"]
    assert meta["noise_model"]["mtf"] == {"a": 0.5, "b": [1, 2]}
    assert meta["validation"] == {"f1": 0.875, "epoch": 7, "loss": 0.25}
    assert meta["normalisation"] == NORMALISATION
    assert json.loads(sidecar_path(path).read_text()) == meta
    assert sidecar_path(path).name == "model.json"
    assert load_checkpoint(path)[1] == meta


def test_no_temporary_files_are_left(saved):
    _, _, path = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.json", "model.safetensors"]


def test_normalisation_defaults_to_the_shared_one(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _msdnet(), arch="msdnet", metadata={})
    assert read_checkpoint_metadata(path)["normalisation"] == NORMALISATION


def test_load_never_unpickles(saved, monkeypatch):
    arch, _, path = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", forbidden)
    model, _ = load_checkpoint(path, arch=arch)
    assert not model.training


def test_shared_and_non_contiguous_tensors_are_saved(tmp_path):
    model = _unet()
    conv = model.encoder[0].layers[1][0]
    w = conv.weight.detach()
    # Same values, transposed strides: not contiguous.
    conv.weight = torch.nn.Parameter(w.transpose(2, 3).contiguous().transpose(2, 3))
    assert not conv.weight.is_contiguous() and torch.equal(conv.weight, w)
    # Two names for one tensor: shared storage, which safetensors refuses as such.
    model.encoder[1].layers[1][1].weight = model.encoder[1].layers[0][1].weight
    path = save_checkpoint(tmp_path / "u.safetensors", model, arch="unet", metadata={})
    loaded, _ = load_checkpoint(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_build_model():
    assert set(ARCHITECTURES) == {"msdnet", "unet", "denoiser"}
    assert isinstance(build_model("unet", {"base_channels": 2, "levels": 1}), UNet)
    assert isinstance(build_model("msdnet", _msdnet().config), MSDNet)
    with pytest.raises(ValueError,
                       match="unknown architecture 'resnet'; known: denoiser, msdnet, unet"):
        build_model("resnet", {})


def test_save_refuses_bad_requests(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(
            tmp_path / "m.safetensors", _msdnet(), arch="msdnet", metadata={"arch": "unet"}
        )
    with pytest.raises(ValueError, match="unknown architecture"):
        save_checkpoint(tmp_path / "m.safetensors", _msdnet(), arch="resnet", metadata={})
    with pytest.raises(CheckpointError, match="do not match its unet config"):
        save_checkpoint(tmp_path / "m.safetensors", _msdnet(), arch="unet", metadata={})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        save_checkpoint(
            tmp_path / "m.safetensors", _msdnet(), arch="msdnet", metadata={"x": object()}
        )
    assert list(tmp_path.iterdir()) == []


def _refusal(path, match, **kwargs):
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    assert isinstance(info.value, LowdoseError)
    return message


def test_missing_file_is_refused(tmp_path):
    _refusal(tmp_path / "nope.safetensors", "does not exist")
    _refusal(tmp_path, "is a folder")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint_metadata(tmp_path / "nope.safetensors")


def test_garbage_is_refused(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00\x01not a safetensors file at all" * 10)
    _refusal(path, "not a readable safetensors file")
    path.write_bytes(b"")
    _refusal(path, "not a readable safetensors file")


@pytest.mark.parametrize("keep", [0.5, 0.99, 20])
def test_truncated_file_is_refused(saved, keep):
    _, _, path = saved
    data = path.read_bytes()
    n = int(len(data) * keep) if keep < 1 else keep
    path.write_bytes(data[:n])
    _refusal(path, "corrupt or truncated")


def test_plain_safetensors_is_not_a_model(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    _refusal(path, "not a napari-lowdose model")
    save_file({"w": torch.zeros(3)}, str(path), metadata={"other": "x"})
    _refusal(path, "not a napari-lowdose model")
    save_file({"w": torch.zeros(3)}, str(path), metadata={METADATA_KEY: "{bad json"})
    _refusal(path, "not valid JSON")


def _rewrite(path, change):
    """Rewrite a model file with its tensors or metadata changed."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    meta = read_checkpoint_metadata(path)
    tensors, meta = change(tensors, meta)
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})


def test_other_format_version_is_refused(saved):
    _, _, path = saved
    _rewrite(path, lambda t, m: (t, {**m, "format_version": 2}))
    _refusal(path, "format version 2; napari-lowdose .* reads version 1")
    with pytest.raises(CheckpointError, match="format version 2"):
        read_checkpoint_metadata(path)


def test_wrong_architecture_is_refused(saved):
    arch, _, path = saved
    other = "unet" if arch == "msdnet" else "msdnet"
    message = _refusal(path, "this file holds", arch=other)
    expected = {"msdnet": "an msdnet, not a unet", "unet": "a unet, not an msdnet"}[arch]
    assert message.endswith(expected)


def test_weights_not_matching_the_config_are_refused(saved):
    arch, _, path = saved
    key = "final.bias" if arch == "msdnet" else "head.bias"

    def drop(tensors, meta):
        tensors.pop(key)
        return tensors, meta

    _rewrite(path, drop)
    _refusal(path, rf"1 missing tensor\(s\) \(e.g. {key}\)")


def test_wrong_shapes_are_refused(saved):
    arch, _, path = saved
    key = "final.bias" if arch == "msdnet" else "head.bias"

    def reshape(tensors, meta):
        tensors[key] = torch.zeros(5)
        tensors["surplus"] = torch.zeros(1)
        return tensors, meta

    _rewrite(path, reshape)
    message = _refusal(path, "wrong shape")
    assert "[5] instead of [1]" in message and "unexpected" in message


def test_config_changed_under_the_weights_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _unet(), arch="unet", metadata={})
    _rewrite(path, lambda t, m: (t, {**m, "config": {**m["config"], "base_channels": 3}}))
    _refusal(path, "do not match the unet config")
    _rewrite(path, lambda t, m: (t, {**m, "config": {**m["config"], "kernel_size": 4}}))
    _refusal(path, "cannot build a unet")


def test_non_finite_weights_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _msdnet(), arch="msdnet", metadata={})

    def poison(tensors, meta):
        tensors["final.bias"] = torch.full_like(tensors["final.bias"], math.nan)
        return tensors, meta

    _rewrite(path, poison)
    _refusal(path, "NaN or inf")


def test_standardise():
    frames = torch.arange(2 * 5 * 7, dtype=torch.float64).reshape(2, 5, 7) ** 1.5
    out = standardise(frames)
    assert out.dtype == torch.float32 and out.shape == frames.shape
    assert torch.allclose(out.mean(dim=(-2, -1)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(out.std(dim=(-2, -1), correction=0), torch.ones(2), atol=1e-5)
    one = frames[1].numpy()
    expected = (one - one.mean()) / (one.std() + 1e-6)
    np.testing.assert_allclose(standardise(frames[1]).numpy(), expected, rtol=1e-5)
    assert torch.equal(standardise(torch.full((4, 4), 3.0)), torch.zeros(4, 4))
    assert "standard deviation (+1e-6)" in NORMALISATION["description"]
    with pytest.raises(ValueError):
        standardise(torch.zeros(5))
