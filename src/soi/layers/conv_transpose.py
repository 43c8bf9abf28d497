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
from torch import Tensor

from ..core.window import with_dims
from .conv import ConvWindow

__all__ = ["STMCConvTransposeNd", "STMCConvTranspose1d", "STMCConvTranspose2d", "STMCConvTranspose3d"]

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class STMCConvTransposeNd(ConvWindow):
    """Streaming transposed convolution ``(B, C_in, T, ...)`` -> ``(B, C_out, T, ...)``.

    Args as ``torch.nn.ConvTransposeNd`` with time first; ``stride[0]`` must be 1 (time upsampling
    is done by :mod:`soi.scattered`'s upsamplers); ``padding`` and ``output_padding`` are for the
    non-time axes. ``lookahead=f`` makes output ``t`` use input up to ``t+f``.

    Offline output = ``torch.nn.ConvTransposeNd`` (time padding ``f``) cropped to its first ``T``
    frames.
    """

    transposed = True
    work_kind = "conv_transpose"

    def __init__(
        self, dims: int, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0, output_padding: int | Sequence[int] = 0, groups: int = 1, bias: bool = True,
        dilation: int | Sequence[int] = 1, lookahead: int = 0, frame_size: Sequence[int] | None = None,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            dims, in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, groups, bias,
            lookahead, frame_size, device, dtype,
        )  # fmt: skip

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


STMCConvTranspose1d = with_dims(STMCConvTransposeNd, 1, "tSTMC over ``(B, C, T)``.")
STMCConvTranspose2d = with_dims(STMCConvTransposeNd, 2, "tSTMC over ``(B, C, T, F)``.")
STMCConvTranspose3d = with_dims(STMCConvTransposeNd, 3, "tSTMC over ``(B, C, T, H, W)``.")
