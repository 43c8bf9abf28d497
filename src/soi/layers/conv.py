"""STMC convolutions: ``torch.nn.ConvNd`` with a shift register along time (dimension 2).

One generic N-d implementation, :class:`STMCConvNd`; :class:`STMCConv1d`, :class:`STMCConv2d` and
:class:`STMCConv3d` only name the number of dimensions. Parameters are named and shaped as in
``torch.nn`` (``weight (C_out, C_in/groups, k_t, ...)``, ``bias (C_out,)``), so state dicts load both
ways. Time padding is not an argument: a layer is causal unless ``lookahead`` asks for future frames.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.timing import FrameShape, conv_macs
from ..core.window import TemporalWindow, ntuple

__all__ = ["STMCConvNd", "STMCConv1d", "STMCConv2d", "STMCConv3d"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _init_like_torch(weight: Tensor, bias: Tensor | None, fan_in: int) -> None:
    # The same initialisation as torch.nn.ConvNd, so that training recipes carry over.
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None and fan_in > 0:
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(bias, -bound, bound)


def window_macs(
    layer: TemporalWindow, shape: FrameShape, output_padding: Sequence[int], transposed: bool, dense: bool
) -> int:
    """MACs of one output frame of an STMC convolution or tSTMC: every time tap is real (the zero
    history at the start of a stream is state), the non-time axes as :func:`conv_macs` counts."""
    w = tuple(layer.weight.shape)
    per_tap = conv_macs(
        shape[1:], (1, 1, *w[3:]), layer.conv_stride[1:], layer.padding, layer.dilation[1:], transposed, output_padding, dense
    )
    return w[0] * w[1] * layer.time_kernel * per_tap


class STMCConvNd(TemporalWindow):
    """Streaming convolution over ``(B, C_in, T, ...)`` -> ``(B, C_out, T', ...)``.

    Args:
        dims: 1, 2 or 3 (time plus 0, 1 or 2 other axes).
        in_channels, out_channels, groups, bias: as in ``torch.nn.ConvNd``.
        kernel_size, stride, dilation: an int or a tuple with time first.
        padding: padding of the *non-time* axes only (an int or ``dims-1`` values).
        lookahead: future frames per output (non-causal); 0 means causal.
        frame_size: the non-time input size if known (lets ``init_state`` build the whole state).

    Offline, ``T' = ceil(T / stride[0])`` and the output equals ``torch.nn.ConvNd`` on the same
    weights with time padding ``((k_t-1)*d_t - lookahead, lookahead)``.
    """

    work_kind = "conv"

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        lookahead: int = 0,
        frame_size: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        kernel_size = ntuple(kernel_size, dims, "kernel_size")
        stride = ntuple(stride, dims, "stride")
        dilation = ntuple(dilation, dims, "dilation")
        padding = ntuple(padding, dims - 1, "padding (non-time axes)")
        super().__init__(dims, in_channels, kernel_size[0], dilation[0], stride[0], lookahead, frame_size)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})")
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.conv_stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _init_like_torch(self.weight, self.bias, self.weight[0].numel())

    def window_op(self, window: Tensor) -> Tensor:
        return _CONV[self.dims](
            window, self.weight, self.bias, self.conv_stride, (0, *self.padding), self.dilation, self.groups
        )

    def out_frame_size(self, frame_size: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(frame_size, self.padding, self.dilation[1:], self.kernel_size[1:], self.conv_stride[1:])
        )

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        return window_macs(self, shape, (0,) * (self.dims - 1), False, dense)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.conv_stride}, padding={self.padding}, dilation={self.dilation}"
        )
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.lookahead:
            s += f", lookahead={self.lookahead}"
        return s


class STMCConv1d(STMCConvNd):
    """STMC convolution over ``(B, C, T)``. See :class:`STMCConvNd`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, **kwargs) -> None:
        super().__init__(1, in_channels, out_channels, kernel_size, **kwargs)


class STMCConv2d(STMCConvNd):
    """STMC convolution over ``(B, C, T, F)``. See :class:`STMCConvNd`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, **kwargs) -> None:
        super().__init__(2, in_channels, out_channels, kernel_size, **kwargs)


class STMCConv3d(STMCConvNd):
    """STMC convolution over ``(B, C, T, H, W)``. See :class:`STMCConvNd`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, **kwargs) -> None:
        super().__init__(3, in_channels, out_channels, kernel_size, **kwargs)
