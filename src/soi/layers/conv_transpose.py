"""tSTMC: transposed convolution in every axis except time, an ordinary causal convolution in time.

A ``torch.nn.ConvTransposeNd`` with time kernel ``k`` appends ``(k-1)*d`` frames that depend on the
future (anti-causal). tSTMC computes only the first ``T`` output frames: frame ``t`` is
``sum_j w[j] x[t - j*d]`` in time, transposed in the other axes, from a shift register of
``(k-1)*d`` past input frames. Weights are shaped as in ``torch.nn``:
``weight (C_in, C_out/groups, k_t, ...)``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.timing import FrameShape
from .conv import _init_like_torch, window_macs
from ..core.window import TemporalWindow, ntuple

__all__ = ["STMCConvTransposeNd", "STMCConvTranspose1d", "STMCConvTranspose2d", "STMCConvTranspose3d"]

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class STMCConvTransposeNd(TemporalWindow):
    """Streaming transposed convolution ``(B, C_in, T, ...)`` -> ``(B, C_out, T, ...)``.

    Args as ``torch.nn.ConvTransposeNd`` with time first; ``stride[0]`` must be 1 (time upsampling
    is done by :mod:`soi.scattered`'s upsamplers); ``padding`` and ``output_padding`` are for the
    non-time axes. ``lookahead=f`` makes output ``t`` use input up to ``t+f``.

    Offline output = ``torch.nn.ConvTransposeNd`` (time padding ``f``) cropped to its first ``T``
    frames.
    """

    work_kind = "conv_transpose"

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        lookahead: int = 0,
        frame_size: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        kernel_size = ntuple(kernel_size, dims, "kernel_size")
        stride = ntuple(stride, dims, "stride")
        dilation = ntuple(dilation, dims, "dilation")
        padding = ntuple(padding, dims - 1, "padding (non-time axes)")
        output_padding = ntuple(output_padding, dims - 1, "output_padding (non-time axes)")
        if stride[0] != 1:
            raise ValueError(
                f"STMCConvTranspose: stride[0] (time) must be 1, got {stride[0]}; upsample time with "
                "soi.TransposedUpsample or soi.Duplicate inside an S-CC pair"
            )
        super().__init__(dims, in_channels, kernel_size[0], dilation[0], 1, lookahead, frame_size)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})")
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.conv_stride = stride
        self.padding = padding
        self.output_padding = output_padding
        self.dilation = dilation
        self.groups = groups
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels // groups, *kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch.nn.ConvTransposeNd computes fan-in from weight dim 1.
        _init_like_torch(self.weight, self.bias, self.weight.shape[1] * self.weight[0, 0].numel())

    def window_op(self, window: Tensor) -> Tensor:
        # Time padding H turns the transposed convolution in time into the causal one: exactly
        # n output frames for H + n window frames, none of the anti-causal tail computed.
        return _CONV_T[self.dims](
            window,
            self.weight,
            self.bias,
            self.conv_stride,
            (self.history_frames, *self.padding),
            (0, *self.output_padding),
            self.groups,
            self.dilation,
        )

    def out_frame_size(self, frame_size: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            for n, s, p, d, k, op in zip(
                frame_size, self.conv_stride[1:], self.padding, self.dilation[1:], self.kernel_size[1:], self.output_padding
            )
        )

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        return window_macs(self, shape, self.output_padding, True, dense)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.conv_stride}, padding={self.padding}"
        )
        if any(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.lookahead:
            s += f", lookahead={self.lookahead}"
        return s


class STMCConvTranspose1d(STMCConvTransposeNd):
    """tSTMC over ``(B, C, T)``. See :class:`STMCConvTransposeNd`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, **kwargs) -> None:
        super().__init__(1, in_channels, out_channels, kernel_size, **kwargs)


class STMCConvTranspose2d(STMCConvTransposeNd):
    """tSTMC over ``(B, C, T, F)``. See :class:`STMCConvTransposeNd`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, **kwargs) -> None:
        super().__init__(2, in_channels, out_channels, kernel_size, **kwargs)


class STMCConvTranspose3d(STMCConvTransposeNd):
    """tSTMC over ``(B, C, T, H, W)``. See :class:`STMCConvTransposeNd`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, **kwargs) -> None:
        super().__init__(3, in_channels, out_channels, kernel_size, **kwargs)
