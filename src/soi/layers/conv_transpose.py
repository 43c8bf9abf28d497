"""tSTMC: transposed convolution in every axis except time, an ordinary causal convolution in time.

A ``torch.nn.ConvTransposeNd`` with time kernel ``k`` appends ``(k-1)*d`` frames that depend on the
future (anti-causal). tSTMC computes only the first ``T`` output frames: frame ``t`` is
``sum_j w[j] x[t - j*d]`` in time, transposed in the other axes, from a shift register of
``(k-1)*d`` past input frames. Weights are shaped as in ``torch.nn``:
``weight (C_in, C_out/groups, k_t, ...)``.

A time stride ``u`` upsamples: each input frame ``i`` gives the ``u`` output frames ``u*i ..
u*i + u-1`` of the full transposed convolution, whose inputs have all arrived. Output phase ``r``
reads only the taps ``j`` with ``j*d = r (mod u)``, at input lags ``(j*d - r) / u``: it is a causal
convolution at the input rate with those taps (polyphase decomposition), so each kernel tap is one
multiplication per input frame and none lands on an inserted zero::

    full output  m = u*i + r  =  sum over j with j*d = r (mod u) of  w[j] x[i - (j*d - r)/u]
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.timing import Timing
from ..core.window import WindowState, with_dims
from .conv import ConvWindow

__all__ = ["STMCConvTransposeNd", "STMCConvTranspose1d", "STMCConvTranspose2d", "STMCConvTranspose3d"]

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class STMCConvTransposeNd(ConvWindow):
    """Streaming transposed convolution ``(B, C_in, T, ...)`` -> ``(B, C_out, u*T, ...)``, ``u =
    stride[0]``.

    Args as ``torch.nn.ConvTransposeNd`` with time first; ``padding`` and ``output_padding`` are
    for the non-time axes. ``lookahead=f`` is torch's time padding: output ``o`` is frame ``o + f``
    of the full transposed convolution, so it uses input up to ``(o + f) // u``; the first ``f``
    frames of a stream are held back and :meth:`flush` emits the last ``f`` as if zeros followed.

    A step of ``n`` frames gives ``u*n`` frames (after the first ``f``). Offline output = frames
    ``f .. f + u*T - 1`` of ``torch.nn.ConvTransposeNd`` without time padding: torch's output with
    time padding ``f`` where that is ``u*T`` frames long (``(k-1)*d + 1 + output_padding - 2f = u``,
    as in cached_conv's and most decoders' kernel ``2u``, padding ``u/2``).
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
        u, k, d = self.conv_stride[0], self.time_kernel, self.time_dilation
        if u < 1:
            raise ValueError(f"stride[0] must be >= 1, got {u}")
        # output phase r: its taps (in order of growing lag) and the lag of the first; consecutive
        # taps of a phase are phase_dilation input frames apart
        step = u // math.gcd(d, u)
        self.phase_taps = tuple(tuple(j for j in range(k) if (j * d - r) % u == 0) for r in range(u))
        self.phase_lags = tuple(((taps[0] * d - r) // u if taps else 0) for r, taps in enumerate(self.phase_taps))
        self.phase_dilation = d * step // u
        self.history_frames = (k - 1) * d // u
        self.timing = Timing(self.history_frames + 1, lookahead // u, 1, u, lookahead % u)

    @property
    def upsample(self) -> int:
        """Output frames per input frame (the time stride)."""
        return self.conv_stride[0]

    def window_op(self, window: Tensor) -> Tensor:
        if self.upsample == 1:
            return self._phase(window, self.weight, 0, self.time_kernel)
        # one causal convolution per output phase, interleaved: frame u*i + r is phase r's frame i
        ys = [
            self._phase(window, self.weight[:, :, list(taps)], lag, len(taps)) if taps else None
            for taps, lag in zip(self.phase_taps, self.phase_lags)
        ]
        like = next(y for y in ys if y is not None)
        # a phase without taps (kernel shorter than the stride) is the bias alone
        empty = like.new_zeros(like.shape) if self.bias is None else self.bias.view(1, -1, *[1] * (like.dim() - 2)).expand(like.shape)
        return torch.stack([y if y is not None else empty for y in ys], dim=3).flatten(2, 3)

    def _phase(self, window: Tensor, weight: Tensor, lag: int, taps: int) -> Tensor:
        """The causal convolution in time of ``taps`` taps ``phase_dilation`` apart, the newest
        ``lag`` frames before each new frame (transposed in the other axes): one frame per new
        frame. Time padding crops the anti-causal tail, so none of it is computed."""
        span = (taps - 1) * self.phase_dilation
        return _CONV_T[self.dims](
            window[:, :, self.history_frames - lag - span : window.shape[2] - lag],
            weight,
            self.bias,
            (1, *self.conv_stride[1:]),
            (span, *self.padding),
            (0, *self.output_padding),
            self.groups,
            (self.phase_dilation, *self.dilation[1:]),
        )

    def flush(self, state: WindowState) -> tuple[Tensor | None, WindowState]:
        """The last ``lookahead`` frames, as if zeros followed the sequence."""
        f, u = self.lookahead, self.upsample
        if f == 0:
            return None, state
        hist = state.history
        if hist is None:
            raise ValueError(f"{type(self).__name__}.flush: nothing was streamed, so nothing is owed")
        pad = hist.new_zeros((hist.shape[0], hist.shape[1], -(-f // u), *hist.shape[3:]))
        y, state = self.step(pad, state)
        return y[:, :, :f], state

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
