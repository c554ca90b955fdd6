"""Choice and description of the torch device used for training and inference.

``"auto"`` prefers a CUDA GPU, then Apple's MPS, then the CPU. An explicitly
requested device that is not available is refused with a one-line
:class:`DeviceError` saying why, instead of torch's own error deep inside a
forward pass.
"""

from __future__ import annotations

import torch

from .errors import LowdoseError

__all__ = ["DeviceError", "autocast_dtype", "describe_device", "select_device"]

_DEVICE_HINT = "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


class DeviceError(LowdoseError):
    """A requested torch device does not exist or is not available."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _check_cuda(device: torch.device) -> None:
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            why = "this torch build is CPU-only"
        else:
            why = f"torch was built for CUDA {torch.version.cuda} but no usable GPU was found"
        raise DeviceError(f"CUDA was requested but torch.cuda.is_available() is False; {why}")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"{device} was requested but only {count} CUDA device(s) are visible "
            f"(cuda:0 … cuda:{count - 1})"
        )


def _check_mps() -> None:
    if _mps_available():
        return
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        why = "this torch build has no MPS support"
    else:
        why = "this machine has no usable Apple GPU (macOS 12.3+ is needed)"
    raise DeviceError(f"MPS was requested but torch.backends.mps.is_available() is False; {why}")


def select_device(name: str | torch.device = "auto") -> torch.device:
    """Return the torch device to compute on.

    Parameters
    ----------
    name : str or torch.device, optional
        ``"auto"`` (CUDA if available, else MPS, else CPU), or an explicit device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Returns
    -------
    torch.device
        The device; explicit requests are returned as given once validated.

    Raises
    ------
    DeviceError
        If ``name`` is not a device name, or the device is not available here
        (e.g. CUDA on a CPU-only torch build).
    """
    if isinstance(name, str) and name.strip().lower() in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name.strip().lower() if isinstance(name, str) else name)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {name!r}; {_DEVICE_HINT}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        _check_cuda(device)
        return device
    if device.type == "mps":
        _check_mps()
        return device
    raise DeviceError(f"device type {device.type!r} is not supported; {_DEVICE_HINT}")


def describe_device(device: str | torch.device) -> str:
    """Describe a device for people, e.g. ``"CPU (2 threads)"``.

    Parameters
    ----------
    device : str or torch.device
        The device (as returned by :func:`select_device`).

    Returns
    -------
    str
        ``"CPU (N threads)"``, ``"CUDA: <GPU name>"`` or ``"MPS"``.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return f"CPU ({torch.get_num_threads()} threads)"
    if device.type == "cuda":
        try:
            name = torch.cuda.get_device_name(device)
        except (RuntimeError, AssertionError, AttributeError):
            name = "unavailable GPU"
        suffix = f" (cuda:{device.index})" if device.index not in (None, 0) else ""
        return f"CUDA: {name}{suffix}"
    if device.type == "mps":
        return "MPS"
    return str(device)


def autocast_dtype(device: str | torch.device) -> torch.dtype | None:
    """Mixed-precision dtype for :func:`torch.autocast` on ``device``.

    Parameters
    ----------
    device : str or torch.device
        The compute device.

    Returns
    -------
    torch.dtype or None
        ``torch.bfloat16`` on CUDA GPUs that support it (compute capability 8.0+,
        i.e. Ampere and newer), ``torch.float16`` on older CUDA GPUs, ``None`` on
        CPU and MPS (full float32 precision).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    try:
        major, _ = torch.cuda.get_device_capability(device)
    except (RuntimeError, AssertionError):
        return torch.float16
    return torch.bfloat16 if major >= 8 else torch.float16
