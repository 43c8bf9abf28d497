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
from ..core.window import TemporalWindow, ntuple, repr_args, with_dims

__all__ = ["ConvWindow", "STMCConvNd", "STMCConv1d", "STMCConv2d", "STMCConv3d", "ModePaddedConvNd"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def conv_parameters(
    in_channels: int, out_channels: int, groups: int, kernel: Sequence[int], transposed: bool, bias: bool,
    device: torch.device | str | None, dtype: torch.dtype | None, who: str,
) -> tuple[nn.Parameter, nn.Parameter | None]:  # fmt: skip
    """``(weight, bias)`` shaped as ``torch.nn``'s convolution (``transposed``: ``(C_in,
    C_out/groups, *kernel)``, else ``(C_out, C_in/groups, *kernel)``) and initialised as it does
    (fan-in from weight dim 1 for both), so that training recipes carry over."""
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{who}: in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})")
    pair = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
    weight = nn.Parameter(torch.empty(*pair, *kernel, device=device, dtype=dtype))
    b = nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)) if bias else None
    reset_conv_parameters(weight, b)
    return weight, b


def reset_conv_parameters(weight: Tensor, bias: Tensor | None) -> None:
    """``torch.nn.ConvNd``'s initialisation of ``weight`` and ``bias``, in place."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    fan_in = weight.shape[1] * weight[0, 0].numel()
    if bias is not None and fan_in > 0:
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(bias, -bound, bound)


class ConvWindow(TemporalWindow):
    """What an STMC convolution and a tSTMC share: channels, groups, a kernel with time first,
    weights and bias shaped and initialised as in ``torch.nn`` (``transposed``: ``(C_in,
    C_out/groups, k...)``, else ``(C_out, C_in/groups, k...)``), their MACs and their repr.
    ``padding`` and ``output_padding`` are for the non-time axes."""

    transposed = False

    def __init__(
        self, dims: int, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], stride: int | Sequence[int], padding: int | Sequence[int],
        output_padding: int | Sequence[int], dilation: int | Sequence[int], groups: int, bias: bool, lookahead: int,
        frame_size: Sequence[int] | None, device: torch.device | str | None, dtype: torch.dtype | None,
    ) -> None:  # fmt: skip
        kernel_size = ntuple(kernel_size, dims, "kernel_size")
        stride = ntuple(stride, dims, "stride")
        dilation = ntuple(dilation, dims, "dilation")
        padding = ntuple(padding, dims - 1, "padding (non-time axes)")
        output_padding = ntuple(output_padding, dims - 1, "output_padding (non-time axes)")
        # A transposed convolution's time stride upsamples: its window is read at every frame.
        super().__init__(dims, in_channels, kernel_size[0], dilation[0], 1 if self.transposed else stride[0], lookahead, frame_size)
        self.weight, self.bias = conv_parameters(
            in_channels, out_channels, groups, kernel_size, self.transposed, bias, device, dtype, type(self).__name__
        )
        self.out_channels, self.groups = out_channels, groups
        self.kernel_size, self.conv_stride, self.dilation = kernel_size, stride, dilation
        self.padding, self.output_padding = padding, output_padding

    def reset_parameters(self) -> None:
        reset_conv_parameters(self.weight, self.bias)

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        """Every time tap is real (the zero history at the start of a stream is state); the
        non-time axes as :func:`~soi.core.timing.conv_macs` counts them."""
        w = tuple(self.weight.shape)
        per_tap = conv_macs(
            shape[1:], (1, 1, *w[3:]), self.conv_stride[1:], self.padding, self.dilation[1:], self.transposed,
            self.output_padding, dense,
        )  # fmt: skip
        return w[0] * w[1] * self.time_kernel * per_tap

    def extra_repr(self) -> str:
        return repr_args(
            self.in_channels, self.out_channels, kernel_size=self.kernel_size, stride=self.conv_stride,
            padding=self.padding, dilation=self.dilation,
            output_padding=self.output_padding if any(self.output_padding) else None,
            groups=self.groups if self.groups != 1 else None, bias=False if self.bias is None else None,
            lookahead=self.lookahead or None,
        )  # fmt: skip


class STMCConvNd(ConvWindow):
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
        self, dims: int, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True,
        lookahead: int = 0, frame_size: Sequence[int] | None = None,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            dims, in_channels, out_channels, kernel_size, stride, padding, 0, dilation, groups, bias, lookahead,
            frame_size, device, dtype,
        )  # fmt: skip

    def window_op(self, window: Tensor) -> Tensor:
        return _CONV[self.dims](
            window, self.weight, self.bias, self.conv_stride, (0, *self.padding), self.dilation, self.groups
        )

    def out_frame_size(self, frame_size: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(frame_size, self.padding, self.dilation[1:], self.kernel_size[1:], self.conv_stride[1:])
        )


STMCConv1d = with_dims(STMCConvNd, 1, "STMC convolution over ``(B, C, T)``.")
STMCConv2d = with_dims(STMCConvNd, 2, "STMC convolution over ``(B, C, T, F)``.")
STMCConv3d = with_dims(STMCConvNd, 3, "STMC convolution over ``(B, C, T, H, W)``.")


class ModePaddedConvNd(STMCConvNd):
    """An STMC convolution whose non-time axes are padded in ``padding_mode`` (``'reflect'``,
    ``'replicate'`` or ``'circular'``), as ``torch.nn.ConvNd(padding_mode=...)`` pads them:
    ``F.pad`` of each window's non-time axes, then the convolution unpadded. Time is never padded
    by the mode (a reflected, replicated or wrapped border in time needs frames after the start or
    the sequence end; ``soi.convert`` refuses it). Its own ``window_op``, so the lean deployment
    form and ``soi.scatter``'s re-striding leave it as it is."""

    MODES = ("reflect", "replicate", "circular")

    def __init__(self, dims: int, *args, padding_mode: str = "reflect", **kwargs) -> None:
        super().__init__(dims, *args, **kwargs)
        if padding_mode not in self.MODES:
            raise ValueError(f"ModePaddedConvNd: padding_mode must be one of {self.MODES}, got {padding_mode!r}")
        if dims < 2:
            raise ValueError("ModePaddedConvNd: a 1-d convolution has no non-time axis to pad")
        self.padding_mode = padding_mode
        # F.pad order: last axis first; time (dimension 2) is the last pair and is not padded
        self._mode_pad = tuple(q for p in reversed(self.padding) for q in (p, p)) + (0, 0)

    def window_op(self, window: Tensor) -> Tensor:
        x = F.pad(window, self._mode_pad, mode=self.padding_mode)
        return _CONV[self.dims](x, self.weight, self.bias, self.conv_stride, 0, self.dilation, self.groups)

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        """Every tap is a real product: the border holds input values, not zeros."""
        w = tuple(self.weight.shape)
        padded = tuple(n + 2 * p for n, p in zip(shape[1:], self.padding))
        per_tap = conv_macs(padded, (1, 1, *w[3:]), self.conv_stride[1:], (0,) * len(self.padding), self.dilation[1:], False, (0,) * len(self.padding), dense)
        return w[0] * w[1] * self.time_kernel * per_tap

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, padding_mode={self.padding_mode!r}"
