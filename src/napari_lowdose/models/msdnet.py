"""Mixed-scale dense network (MSD-net) with a memory-efficient dense block.

The MSD-net of Pelt & Sethian (2018), as adapted by Larsen et al. (2023) for
segmenting nanoparticles in low-dose TEM images: ``depth`` layers at full
resolution; layer ``i`` convolves the concatenation of the input channels and the
outputs of all earlier layers with one dilated ``kernel_size × kernel_size``
convolution (dilation drawn uniformly from ``1 … max_dilation`` with a fixed seed),
reflection padding, bias and ReLU, producing ``width`` channels; a final ``1 × 1``
convolution over all ``in_channels + depth · width`` channels gives the logits.

Two implementations with identical parameters (and ``state_dict`` keys) are given:

* :class:`NaiveMSDNet` concatenates with :func:`torch.cat` at every layer. Autograd
  then stores a copy of the growing stack at every layer, about ``depth² / 2``
  feature maps, which is what limited the network size in Larsen et al. (2023).
* :class:`MSDNet` writes every layer's output in place into one preallocated
  feature buffer of shape ``(N, in_channels + depth · width, H, W)``; a custom
  :class:`torch.autograd.Function` for the whole dense block saves only that buffer
  and the weights, and its backward pass walks the layers in reverse, accumulating
  the gradient with respect to the buffer in one preallocated gradient buffer.

References
----------
.. [1] D. M. Pelt and J. A. Sethian, "A mixed-scale dense convolutional neural
   network for image analysis", PNAS 115 (2), 254–259 (2018).
.. [2] M. H. L. Larsen et al., "Quantifying noise limitations of neural network
   segmentations in high-resolution transmission electron microscopy",
   Ultramicroscopy (2023).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MSDNet", "NaiveMSDNet", "draw_dilations"]


def draw_dilations(depth: int, seed: int = 0, max_dilation: int = 10) -> list[int]:
    """Draw the per-layer dilations of an MSD-net.

    Dilations are drawn uniformly from the integers ``1 … max_dilation`` with
    :func:`numpy.random.default_rng`, so a seed fixes them (reproducible models,
    Pelt & Sethian 2018; Larsen et al. 2023).

    Parameters
    ----------
    depth : int
        Number of dense layers.
    seed : int, optional
        Seed of the random generator.
    max_dilation : int, optional
        Largest dilation (inclusive).

    Returns
    -------
    list of int
        ``depth`` dilations in ``1 … max_dilation``.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if max_dilation < 1:
        raise ValueError(f"max_dilation must be >= 1, got {max_dilation}")
    rng = np.random.default_rng(seed)
    return [int(d) for d in rng.integers(1, max_dilation + 1, size=depth)]


def _reflect_pad(d: int, kernel_size: int) -> int:
    return d * (kernel_size - 1) // 2


class _MSDBase(nn.Module):
    """Parameters, configuration and checks shared by both MSD-net variants.

    Parameters
    ----------
    in_channels : int, optional
        Number of input channels.
    out_channels : int, optional
        Number of output channels (logits).
    depth : int, optional
        Number of dense layers (50 in Larsen et al. 2023).
    width : int, optional
        Channels produced by each dense layer.
    kernel_size : int, optional
        Odd side of the square convolution kernels (9 in Larsen et al. 2023).
    max_dilation : int, optional
        Dilations are drawn from ``1 … max_dilation``.
    dilation_seed : int, optional
        Seed of :func:`draw_dilations`.
    dilations : sequence of int, optional
        Explicit dilations (length ``depth``); overrides the seeded draw.
    init_seed : int, optional
        Seed of the weight initialisation; defaults to ``dilation_seed`` so that one
        seed fixes the whole model.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 50,
        width: int = 1,
        kernel_size: int = 9,
        max_dilation: int = 10,
        dilation_seed: int = 0,
        dilations: Sequence[int] | None = None,
        init_seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("depth", depth),
            ("width", width),
            ("kernel_size", kernel_size),
            ("max_dilation", max_dilation),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if dilations is None:
            dilations = draw_dilations(depth, dilation_seed, max_dilation)
        dilations = [int(d) for d in dilations]
        if len(dilations) != depth:
            raise ValueError(f"{len(dilations)} dilations given for depth {depth}")
        if any(d < 1 for d in dilations):
            raise ValueError(f"dilations must be >= 1, got {dilations}")
        if init_seed is None:
            init_seed = dilation_seed
        self.config: dict[str, Any] = {
            "in_channels": int(in_channels),
            "out_channels": int(out_channels),
            "depth": int(depth),
            "width": int(width),
            "kernel_size": int(kernel_size),
            "max_dilation": int(max_dilation),
            "dilation_seed": int(dilation_seed),
            "dilations": dilations,
            "init_seed": int(init_seed),
        }
        self.dilations = dilations
        self.layers = nn.ModuleList(
            nn.Conv2d(in_channels + i * width, width, kernel_size, dilation=d, bias=True)
            for i, d in enumerate(dilations)
        )
        self.final = nn.Conv2d(in_channels + depth * width, out_channels, 1, bias=True)
        self._init_weights(int(init_seed))

    @torch.no_grad()
    def _init_weights(self, seed: int) -> None:
        # Pelt & Sethian (2018): normal weights with std sqrt(2 / fan_in), zero bias.
        gen = torch.Generator().manual_seed(seed)
        for conv in [*self.layers, self.final]:
            fan_in = conv.weight[0].numel()
            std = math.sqrt(2.0 / fan_in)
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
            conv.bias.zero_()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> _MSDBase:
        """Build a network from a :attr:`config` dictionary (e.g. from a checkpoint).

        Parameters
        ----------
        config : mapping
            Keys as in :attr:`config`; ``dilations`` (if present) are used as is.

        Returns
        -------
        MSDNet or NaiveMSDNet
            A new, freshly initialised network of the calling class.
        """
        keys = (
            "in_channels",
            "out_channels",
            "depth",
            "width",
            "kernel_size",
            "max_dilation",
            "dilation_seed",
            "dilations",
            "init_seed",
        )
        return cls(**{k: config[k] for k in keys if k in config})

    @property
    def max_padding(self) -> int:
        """Largest reflection padding of any layer, ``max(d_i) · (k − 1) / 2``."""
        return _reflect_pad(max(self.dilations), self.config["kernel_size"])

    @property
    def min_size(self) -> int:
        """Smallest height and width accepted (reflection padding must be valid)."""
        return self.max_padding + 1

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"expected an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.config["in_channels"]:
            raise ValueError(
                f"expected {self.config['in_channels']} input channels, got {x.shape[1]}"
            )
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise ValueError(
                f"input of {h}×{w} pixels is too small for this MSD-net: reflection "
                f"padding of {self.max_padding} px (kernel_size="
                f"{self.config['kernel_size']}, max dilation {max(self.dilations)}) "
                f"needs H and W of at least {self.min_size} pixels"
            )

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel probabilities, ``sigmoid(forward(x))``, without autograd.

        Parameters
        ----------
        x : torch.Tensor
            Input of shape ``(N, in_channels, H, W)``.

        Returns
        -------
        torch.Tensor
            Probabilities of shape ``(N, out_channels, H, W)``.
        """
        with torch.no_grad():
            return torch.sigmoid(self(x))


class NaiveMSDNet(_MSDBase):
    """Reference MSD-net that concatenates with :func:`torch.cat` at every layer.

    Same parameters, configuration and ``state_dict`` keys as :class:`MSDNet`
    (Pelt & Sethian 2018; Larsen et al. 2023), but autograd stores the growing
    concatenated stack at every layer (``~depth² / 2`` feature maps). Meant as a
    reference for tests and benchmarks. See :class:`_MSDBase` for the parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits of shape ``(N, out_channels, H, W)``."""
        self._check_input(x)
        k = self.config["kernel_size"]
        feats = x
        for conv, d in zip(self.layers, self.dilations, strict=True):
            p = _reflect_pad(d, k)
            out = F.relu(conv(F.pad(feats, (p, p, p, p), mode="reflect")))
            feats = torch.cat([feats, out], dim=1)
        return self.final(feats)


def _fill_buffer(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    dilations: Sequence[int],
    kernel_size: int,
) -> torch.Tensor:
    """Run the dense block without autograd, writing each layer into one buffer."""
    n, c_in, h, w = x.shape
    width = weights[0].shape[0]
    buf = x.new_empty((n, c_in + len(weights) * width, h, w))
    buf[:, :c_in].copy_(x)
    c = c_in
    for wt, b, d in zip(weights, biases, dilations, strict=True):
        p = _reflect_pad(d, kernel_size)
        # channels_last: oneDNN's convolution with few output channels is 10–25 % faster
        # on CPU in this layout (benchmarks/bench_msdnet.py); the copy is cheap.
        padded = F.pad(buf[:, :c], (p, p, p, p), mode="reflect").contiguous(
            memory_format=torch.channels_last
        )
        out = F.conv2d(padded, wt, b, dilation=d)
        del padded
        buf[:, c : c + width] = out.relu_()
        c += width
    return buf


class _DenseBlockFunction(torch.autograd.Function):
    """Dense block of an MSD-net writing in place into one feature buffer.

    Forward returns the full buffer ``(N, in + depth · width, H, W)`` and saves only
    it and the weights; backward recomputes each layer's reflection-padded input
    from the buffer, one layer at a time, in reverse order.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        dilations: tuple[int, ...],
        kernel_size: int,
        *params: torch.Tensor,
    ) -> torch.Tensor:
        weights, biases = params[0::2], params[1::2]
        buf = _fill_buffer(x, weights, biases, dilations, kernel_size)
        ctx.dilations = dilations
        ctx.kernel_size = kernel_size
        ctx.c_in = x.shape[1]
        ctx.save_for_backward(buf, *weights)
        return buf

    @staticmethod
    def backward(ctx: Any, grad_buf_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        buf, *weights = ctx.saved_tensors
        dilations, k, c_in = ctx.dilations, ctx.kernel_size, ctx.c_in
        need_x = ctx.needs_input_grad[0]
        width = weights[0].shape[0]
        # One gradient buffer, accumulated in place while walking back the layers.
        grad_buf = grad_buf_out.clone(memory_format=torch.contiguous_format)
        grads: list[torch.Tensor | None] = [None] * (2 * len(weights))
        for i in reversed(range(len(weights))):
            c = c_in + i * width
            d = dilations[i]
            p = _reflect_pad(d, k)
            wt = weights[i]
            need_w = ctx.needs_input_grad[3 + 2 * i]
            need_b = ctx.needs_input_grad[4 + 2 * i]
            need_in = i > 0 or need_x
            if not (need_w or need_b or need_in):
                continue
            # ReLU backward from the stored output (same rule as torch: out <= 0 -> 0).
            g = torch.ops.aten.threshold_backward(
                grad_buf[:, c : c + width], buf[:, c : c + width], 0
            )
            inp = buf[:, :c]
            padded = F.pad(inp, (p, p, p, p), mode="reflect")
            g_pad, g_w, g_b = torch.ops.aten.convolution_backward(
                g,
                padded,
                wt,
                [width],
                [1, 1],
                [0, 0],
                [d, d],
                False,
                [0, 0],
                1,
                [need_in, need_w, need_b],
            )
            del padded
            if need_in:
                grad_buf[:, :c] += torch.ops.aten.reflection_pad2d_backward(
                    g_pad, inp, [p, p, p, p]
                )
            grads[2 * i] = g_w if need_w else None
            grads[2 * i + 1] = g_b if need_b else None
        grad_x = grad_buf[:, :c_in] if need_x else None
        return (grad_x, None, None, *grads)


class MSDNet(_MSDBase):
    """Memory-efficient mixed-scale dense network (Pelt & Sethian 2018).

    As adapted by Larsen et al. (2023): ``depth`` full-resolution layers,
    layer ``i`` applying a dilated ``kernel_size × kernel_size`` convolution with
    reflection padding, bias and ReLU to all earlier feature maps (input included)
    and producing ``width`` channels; a final ``1 × 1`` convolution gives
    ``out_channels`` logits. The dense block writes into one preallocated buffer and
    has a custom backward, so the autograd graph holds ``in + depth · width``
    feature maps instead of ``~depth² / 2`` for :class:`NaiveMSDNet`.

    Parameters
    ----------
    in_channels : int, optional
        Number of input channels.
    out_channels : int, optional
        Number of output channels (logits; apply a sigmoid for probabilities).
    depth : int, optional
        Number of dense layers (default 50).
    width : int, optional
        Channels produced by each dense layer (default 1).
    kernel_size : int, optional
        Odd kernel side (default 9).
    max_dilation : int, optional
        Dilations are drawn uniformly from ``1 … max_dilation`` (default 10).
    dilation_seed : int, optional
        Seed of :func:`draw_dilations` (default 0).
    dilations : sequence of int, optional
        Explicit dilations, overriding the seeded draw.
    init_seed : int, optional
        Seed of the weight initialisation (default: ``dilation_seed``).

    Attributes
    ----------
    config : dict
        Hyper-parameters, enough to rebuild the network with :meth:`from_config`.
    dilations : list of int
        Dilation of each dense layer.

    Notes
    -----
    Inputs must be at least :attr:`min_size` pixels high and wide, since reflection
    padding by ``d · (k − 1) / 2`` needs more pixels than the padding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits of shape ``(N, out_channels, H, W)``."""
        self._check_input(x)
        k = self.config["kernel_size"]
        weights = [conv.weight for conv in self.layers]
        biases = [conv.bias for conv in self.layers]
        needs_graph = torch.is_grad_enabled() and (
            x.requires_grad or any(t.requires_grad for t in (*weights, *biases))
        )
        if needs_graph:
            params = [t for pair in zip(weights, biases, strict=True) for t in pair]
            buf = _DenseBlockFunction.apply(x, tuple(self.dilations), k, *params)
        else:
            buf = _fill_buffer(x, weights, biases, self.dilations, k)
        return self.final(buf)
