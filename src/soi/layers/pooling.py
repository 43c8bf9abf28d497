"""Streaming pooling: average and max pooling with a shift register along time, and a causal
cumulative global average for classifiers.

Arguments follow ``torch.nn.AvgPoolNd`` / ``MaxPoolNd`` with time first; ``padding`` is for the
non-time axes. The frames before the sequence count as padding: zeros for average pooling (like
``count_include_pad=True``) and ``-inf`` for max pooling (like ``torch.nn.MaxPoolNd``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.state import State, StreamingModule
from ..core.timing import FrameShape
from ..core.window import TemporalWindow, ntuple, repr_args, with_dims

__all__ = [
    "STMCAvgPoolNd",
    "STMCAvgPool1d",
    "STMCAvgPool2d",
    "STMCAvgPool3d",
    "STMCMaxPoolNd",
    "STMCMaxPool1d",
    "STMCMaxPool2d",
    "STMCMaxPool3d",
    "CumulativeAvgPool",
]

_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


class _STMCPoolNd(TemporalWindow):
    def __init__(
        self, dims: int, channels: int | None, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None, padding: int | Sequence[int],
        dilation: int | Sequence[int], lookahead: int, frame_size: Sequence[int] | None, fill_value: float,
    ) -> None:  # fmt: skip
        kernel_size = ntuple(kernel_size, dims, "kernel_size")
        # torch.nn pooling defaults the stride to the kernel size; in time that would drop frames
        # silently, so the time stride defaults to 1 and must be asked for.
        stride = ntuple(stride, dims, "stride") if stride is not None else (1, *kernel_size[1:])
        dilation = ntuple(dilation, dims, "dilation")
        padding = ntuple(padding, dims - 1, "padding (non-time axes)")
        super().__init__(dims, channels, kernel_size[0], dilation[0], stride[0], lookahead, frame_size, fill_value)
        self.kernel_size = kernel_size
        self.pool_stride = stride
        self.padding = padding
        self.dilation = dilation

    def out_frame_size(self, frame_size: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(frame_size, self.padding, self.dilation[1:], self.kernel_size[1:], self.pool_stride[1:])
        )

    def extra_repr(self) -> str:
        return repr_args(
            self.in_channels, kernel_size=self.kernel_size, stride=self.pool_stride, padding=self.padding,
            lookahead=self.lookahead or None,
        )


class STMCAvgPoolNd(_STMCPoolNd):
    """Streaming average pooling ``(B, C, T, ...)`` -> ``(B, C, ceil(T/s_t), ...)``.

    Args:
        dims: 1, 2 or 3 (time plus 0, 1 or 2 other axes).
        channels: channels of the input, if known (``None``: sized by the first chunk).
        kernel_size, stride: an int or a tuple with time first; the time stride defaults to 1
            (``torch.nn``'s default, the kernel size, would drop frames silently), the others to
            the kernel.
        padding, count_include_pad: of the non-time axes, as in ``torch.nn.AvgPoolNd``.
        lookahead: future frames per output (non-causal); 0 means causal.
        frame_size: the non-time input size if known (lets ``init_state`` build the whole state).

    Time dilation is not available (as in ``torch.nn.AvgPoolNd``).
    """

    def __init__(
        self, dims: int, channels: int | None, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0, count_include_pad: bool = True, lookahead: int = 0, frame_size: Sequence[int] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(dims, channels, kernel_size, stride, padding, 1, lookahead, frame_size, 0.0)
        self.count_include_pad = count_include_pad

    def window_op(self, window: Tensor) -> Tensor:
        return _AVG[self.dims](
            window, self.kernel_size, self.pool_stride, (0, *self.padding), False, self.count_include_pad
        )


class STMCMaxPoolNd(_STMCPoolNd):
    """Streaming max pooling ``(B, C, T, ...)`` -> ``(B, C, ceil(T/s_t), ...)``; frames before the
    sequence are ``-inf`` (``fill_value``), as ``torch.nn.MaxPoolNd`` pads.

    Args:
        dims: 1, 2 or 3 (time plus 0, 1 or 2 other axes).
        channels: channels of the input, if known (``None``: sized by the first chunk).
        kernel_size, stride, dilation: an int or a tuple with time first; the time stride
            defaults to 1, the others to the kernel (as ``torch.nn.MaxPoolNd``).
        padding: of the non-time axes.
        lookahead: future frames per output (non-causal); 0 means causal.
        frame_size: the non-time input size if known (lets ``init_state`` build the whole state).
        fill_value: the value of the frames before the sequence.
    """

    def __init__(
        self, dims: int, channels: int | None, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, lookahead: int = 0, frame_size: Sequence[int] | None = None,
        fill_value: float = float("-inf"),
    ) -> None:  # fmt: skip
        super().__init__(dims, channels, kernel_size, stride, padding, dilation, lookahead, frame_size, fill_value)

    def window_op(self, window: Tensor) -> Tensor:
        return _MAX[self.dims](window, self.kernel_size, self.pool_stride, (0, *self.padding), self.dilation)


STMCAvgPool1d = with_dims(STMCAvgPoolNd, 1, "Streaming average pooling over ``(B, C, T)``.")
STMCAvgPool2d = with_dims(STMCAvgPoolNd, 2, "Streaming average pooling over ``(B, C, T, F)``.")
STMCAvgPool3d = with_dims(STMCAvgPoolNd, 3, "Streaming average pooling over ``(B, C, T, H, W)``.")
STMCMaxPool1d = with_dims(STMCMaxPoolNd, 1, "Streaming max pooling over ``(B, C, T)``.")
STMCMaxPool2d = with_dims(STMCMaxPoolNd, 2, "Streaming max pooling over ``(B, C, T, F)``.")
STMCMaxPool3d = with_dims(STMCMaxPoolNd, 3, "Streaming max pooling over ``(B, C, T, H, W)``.")


@dataclass
class CumulativeState(State):
    total: Tensor  # (B, C) running sum over time of the frame means
    count: Tensor  # (B,) frames seen, per stream (so that reset(mask) restarts one stream)


class CumulativeAvgPool(StreamingModule):
    """Causal global average for classifiers: ``(B, C, T, ...)`` -> ``(B, C, T)``.

    Output ``t`` is the mean of input frames ``0..t`` over time and every non-time axis, so the
    last frame of an offline pass equals ``x.mean(dim=(2, 3, ...))``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        # every frame so far; reported as the current one's only (Timing's default)

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return (shape[0],)

    def init_state(self, batch_size: int, device=None, dtype=None) -> CumulativeState:
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        return CumulativeState(
            **self._new_state_args(batch_size),
            total=torch.zeros(batch_size, self.channels, device=device, dtype=dtype),
            count=torch.zeros(batch_size, device=device, dtype=dtype),
        )

    def step(self, x: Tensor, state: CumulativeState) -> tuple[Tensor, CumulativeState]:
        if x.dim() < 3 or x.shape[1] != self.channels:
            raise ValueError(f"CumulativeAvgPool.step: expected (B, {self.channels}, T, ...), got {tuple(x.shape)}")
        self._check_state(x, state)
        self._check_like(x, state.total)
        frame_means = x.flatten(3).mean(dim=3) if x.dim() > 3 else x  # (B, C, n)
        n = x.shape[2]
        sums = state.total.unsqueeze(2) + frame_means.cumsum(dim=2)
        counts = state.count.view(-1, 1, 1) + torch.arange(1, n + 1, device=x.device, dtype=x.dtype)
        y = sums / counts
        new_total = sums[:, :, -1] if n else state.total
        return y, dataclasses.replace(state, total=new_total, count=state.count + n)
