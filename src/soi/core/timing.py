"""Timing and work as values: what every streaming module declares, and containers compose once.

A module's :class:`Timing`, in frames of its *input*::

    input  t:  0 1 2 3 4 5 6 ...
    output  :  produced for input frame t once frame t + delay has arrived,
               every `stride`-th frame, from the last `receptive_field` input frames

A :class:`Clock` says where a module sits in a model: it runs (once per output frame) at the
model's input frames ``offset, offset + period, offset + 2*period, ...``. Composition is the same
arithmetic everywhere, here and nowhere else: a module after another one runs on the clock
``clock.after(first.timing)``.

A :class:`Work` item is one module that multiplies, with its MACs per run and its clock. The cost
model (:mod:`soi.analysis.cost`) sums them; the run-time counter checks them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Timing", "Clock", "Work", "FrameShape", "axis_taps", "conv_macs"]

FrameShape = tuple[int, ...]
"""The shape of one frame of one stream: ``(C, *non_time_sizes)``."""


@dataclass(frozen=True)
class Timing:
    """Receptive field, look-ahead and time decimation of a module, in its input frames.

    ``a.then(b)`` is ``a`` followed by ``b``: delays add up (``b``'s in ``a``'s output frames, so
    scaled by ``a.stride``), strides multiply, receptive fields grow by ``b``'s scaled by ``a``'s
    stride.
    """

    receptive_field: int = 1
    delay: int = 0
    stride: int = 1

    def __post_init__(self) -> None:
        if self.receptive_field < 1 or self.delay < 0 or self.stride < 1:
            raise ValueError(f"Timing: invalid {self}")

    def then(self, later: Timing) -> Timing:
        return Timing(
            self.receptive_field + self.stride * (later.receptive_field - 1),
            self.delay + self.stride * later.delay,
            self.stride * later.stride,
        )

    @staticmethod
    def chain(timings: Iterable[Timing]) -> Timing:
        out = Timing()
        for t in timings:
            out = out.then(t)
        return out


@dataclass(frozen=True)
class Clock:
    """Where a module runs, in input frames of the whole model.

    Attributes:
        offset: the first model input frame at which it runs.
        period: it runs every ``period`` model input frames (the product of the strides before it).
        base_period: its period in the same network without SOI (strides inside S-CC pairs are
            compressions that the baseline does not have).
        precomputed: it runs in ``prepare`` (behind a fully predictive shift: needs only past frames).
        compressed: it is inside an S-CC pair (its strides do not exist in the baseline).
        phases: the states it cycles through, one per call (STMC's exact strided pair keeps one
            state per stride phase), so its pattern repeats every ``period * phases`` frames.
    """

    offset: int = 0
    period: int = 1
    base_period: int = 1
    precomputed: bool = False
    compressed: bool = False
    phases: int = 1

    def fires(self, t: int) -> bool:
        """Whether model input frame ``t`` is one of this clock's."""
        return t >= self.offset and (t - self.offset) % self.period == 0

    def after(self, timing: Timing) -> Clock:
        """The clock of what follows a module of ``timing`` that runs on this clock."""
        return dataclasses.replace(
            self,
            offset=self.offset + self.period * timing.delay,
            period=self.period * timing.stride,
            base_period=self.base_period * (1 if self.compressed else timing.stride),
        )

    def of_output(self, stride: int, phase: int = 0) -> Clock:
        """The clock of a module's own runs: once per output frame (every ``stride`` input frames,
        from its input frame ``phase``)."""
        return dataclasses.replace(
            self,
            offset=self.offset + self.period * phase,
            period=self.period * stride,
            base_period=self.base_period * (1 if self.compressed else stride),
        )


@dataclass
class Work:
    """A leaf module of a model: what one run of it costs, when it runs and when it is called.

    Attributes:
        module: the module (its name in a model is found by :func:`soi.cost`).
        kind: ``"conv"``, ``"conv_transpose"``, ``"linear"``, ``"upsample"`` or ``"op"``.
        macs: MACs per run (one output frame, one stream); 0 for modules that only move data.
        clock: where it runs, i.e. computes an output frame (:class:`Clock`).
        called: where it is called, i.e. receives frames (a time-strided layer is called on every
            frame of its input to keep its shift register, and runs on every ``stride``-th).
        shape: the shape ``(C, *frame)`` of one input frame.
        path: the module's name in the model (filled in by :func:`soi.cost` and the schedule).
    """

    module: nn.Module
    kind: str
    macs: int
    clock: Clock
    called: Clock
    shape: FrameShape
    path: str = ""

    def fires(self, t: int) -> bool:
        """Whether it runs at model input frame ``t``."""
        return self.clock.fires(t)


# ==================================================================================================
# What counts as a real multiplication (shared by the analytic model and the run-time counter)
# ==================================================================================================


@lru_cache(maxsize=4096)
def axis_taps(
    size: int, kernel: int, stride: int, padding: int, dilation: int, transposed: bool, output_padding: int = 0
) -> tuple[int, int, int]:
    """One axis of a convolution: ``(output size, real taps, dense taps)``.

    *Real taps*: (output position, kernel tap) pairs whose input is a real element, i.e. not zero
    padding and, for a transposed convolution, not an inserted zero nor landing in a cropped output.
    *Dense taps*: every output position times the kernel (the equivalent direct convolution over the
    padded, zero-inserted input).
    """
    if transposed:
        out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
        real = sum(1 for x in range(size) for i in range(kernel) if 0 <= x * stride - padding + i * dilation < out)
    else:
        out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
        real = sum(1 for o in range(out) for i in range(kernel) if 0 <= o * stride - padding + i * dilation < size)
    return out, real, out * kernel


def conv_macs(
    in_sizes: Sequence[int],
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    dense: bool,
) -> int:
    """MACs of one convolution for one batch element (``w_shape`` as torch: conv ``(C_out, C_in/g,
    k...)``, transposed ``(C_in, C_out/g, k...)``; either way ``w[0]*w[1]`` channel pairs), over
    the axes of ``in_sizes``."""
    total = w_shape[0] * w_shape[1]
    for ax, k in enumerate(w_shape[2:]):
        op = output_padding[ax] if transposed else 0
        _, real, dense_taps = axis_taps(in_sizes[ax], k, stride[ax], padding[ax], dilation[ax], transposed, op)
        total *= dense_taps if dense else real
    return total
