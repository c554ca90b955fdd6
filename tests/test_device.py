"""Device choice and description (device.py)."""

import pytest
import torch

from napari_lowdose.device import (
    DeviceError,
    autocast_dtype,
    describe_device,
    select_device,
)
from napari_lowdose.errors import LowdoseError


def test_auto_picks_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    assert select_device() == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto").type == "cuda"


def test_cpu_is_always_available():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")
    assert select_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_unavailable_cuda_is_refused_clearly(name):
    with pytest.raises(DeviceError, match=r"CUDA was requested but torch\.cuda\.is_available"):
        select_device(name)
    assert issubclass(DeviceError, LowdoseError)


def test_cpu_only_build_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(DeviceError, match="CPU-only"):
        select_device("cuda")


def test_missing_cuda_index_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match="only 1 CUDA device"):
        select_device("cuda:1")


def test_unavailable_mps_is_refused(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="MPS was requested"):
        select_device("mps")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "meta"])
def test_unknown_names_are_refused(name):
    with pytest.raises(DeviceError, match="cpu"):
        select_device(name)


def test_describe_device():
    assert describe_device("cpu") == f"CPU ({torch.get_num_threads()} threads)"
    assert describe_device(torch.device("mps")) == "MPS"


def test_describe_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    assert describe_device("cuda") == "CUDA: NVIDIA H100"


def test_autocast_dtype(monkeypatch):
    assert autocast_dtype("cpu") is None
    assert autocast_dtype("mps") is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert autocast_dtype("cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert autocast_dtype("cuda:0") == torch.float16
