"""Timing and work as values: what every streaming module declares, and containers compose once.

A module's :class:`Timing`, in frames of its *input*::

    input  t:  0 1 2 3 4 5 6 ...
    output  :  produced for input frame t once frame t + delay has arrived,
               every `stride`-th frame, from the last `receptive_field` input frames

A module that upsamples time (a transposed convolution with a time stride ``u``) emits its
output frames in groups of ``upsample = u``, one group per ``stride`` input frames; output frame
``o`` is in group ``(o + lead) // upsample`` (the first group is ``lead`` frames short), and group
``j`` is produced when input frame ``stride*j + delay`` arrives. Without upsampling (``upsample =
1``, ``lead = 0``) a group is one frame and this is the picture above.

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


def _compose(first: tuple[int, int, int, int], later: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """``(stride, delay, upsample, lead)`` of ``later`` after ``first``, both in those terms (see
    :class:`Timing`): the one composition rule of timing, clocks and work.

    ``later``'s group ``i`` needs ``first``'s output frame ``m = s2*i + d2``, which is in
    ``first``'s group ``(m + lead1) // u1``, produced at input frame ``s1*that + d1``. That is one
    group every so many input frames when ``u1`` divides ``s2`` (several groups of ``first`` per
    group of ``later``) or ``s2`` divides ``u1`` (several groups of ``later`` per group of
    ``first``, merged into one); otherwise the groups do not recur regularly and it is refused.
    """
    s1, d1, u1, l1 = first
    s2, d2, u2, l2 = later
    if s2 % u1 == 0:
        return s1 * (s2 // u1), d1 + s1 * ((d2 + l1) // u1), u2, l2
    if u1 % s2 == 0:
        c = u1 // s2
        whole, part = divmod((d2 + l1) // s2, c)
        return s1, d1 + s1 * whole, c * u2, l2 + part * u2
    raise ValueError(
        f"Timing: {u1} output frames per step followed by a time stride {s2}: neither divides the other, "
        "so the steps of the second layer do not recur regularly"
    )


@dataclass(frozen=True)
class Timing:
    """Receptive field, look-ahead and time decimation (or upsampling) of a module, in its input
    frames (see the module docstring).

    ``a.then(b)`` is ``a`` followed by ``b``: delays add up (``b``'s in ``a``'s output frames, so
    scaled by ``a.stride``), strides multiply, receptive fields grow by ``b``'s scaled by ``a``'s
    stride; an upsampling ``a`` divides what follows it (:func:`_compose`).

    Attributes:
        receptive_field: input frames one output group sees (at most, after upsampling).
        delay: look-ahead: group ``j`` is produced when input frame ``stride*j + delay`` arrives.
        stride: input frames per output group.
        upsample: output frames per group.
        lead: frames the first group is short (``0 <= lead < upsample``).
    """

    receptive_field: int = 1
    delay: int = 0
    stride: int = 1
    upsample: int = 1
    lead: int = 0

    def __post_init__(self) -> None:
        if self.receptive_field < 1 or self.delay < 0 or self.stride < 1 or self.upsample < 1 or not 0 <= self.lead < self.upsample:
            raise ValueError(f"Timing: invalid {self}")

    @property
    def steps(self) -> tuple[int, int, int, int]:
        """``(stride, delay, upsample, lead)``: what :func:`_compose` composes."""
        return (self.stride, self.delay, self.upsample, self.lead)

    def then(self, later: Timing) -> Timing:
        stride, delay, upsample, lead = _compose(self.steps, later.steps)
        # later's receptive field spans at most this many of self's groups
        groups = (later.receptive_field + self.upsample - 2) // self.upsample + 1
        return Timing(self.receptive_field + self.stride * (groups - 1), delay, stride, upsample, lead)

    def frames_for_lag(self, lag: int) -> int | None:
        """How many output frames to delay this module's output by so that it comes ``lag`` input
        frames later (a :class:`~soi.DelayLine` of that many frames after it), or ``None`` when
        the stride does not divide ``lag``."""
        if lag % self.stride:
            return None
        return lag // self.stride * self.upsample

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
        burst: runs (or frames) at each of those frames: more than one behind an upsampling layer,
            which hands on several frames per step.
        lead: runs missing from the first burst (``0 <= lead < burst``).
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
    burst: int = 1
    lead: int = 0

    def runs(self, t: int) -> int:
        """How many times it runs at model input frame ``t``."""
        if t < self.offset or (t - self.offset) % self.period:
            return 0
        return self.burst - self.lead if t == self.offset else self.burst

    def fires(self, t: int) -> bool:
        """Whether model input frame ``t`` is one of this clock's."""
        return self.runs(t) > 0

    @property
    def rate(self) -> float:
        """Runs per model input frame, on average."""
        return self.burst / self.period

    def _then(self, steps: tuple[int, int, int, int]) -> Clock:
        period, offset, burst, lead = _compose((self.period, self.offset, self.burst, self.lead), steps)
        base = self.base_period * (1 if self.compressed else period // self.period)
        return dataclasses.replace(self, offset=offset, period=period, burst=burst, lead=lead, base_period=base)

    def after(self, timing: Timing) -> Clock:
        """The clock of what follows a module of ``timing`` that runs on this clock."""
        return self._then(timing.steps)

    def of_output(self, stride: int, phase: int = 0) -> Clock:
        """The clock of a module's own runs: once per output group (every ``stride`` input frames,
        from its input frame ``phase``)."""
        return self._then((stride, phase, 1, 0))


@dataclass
class Work:
    """A leaf module of a model: what one run of it costs, when it runs and when it is called.

    Attributes:
        module: the module (its name in a model is found by :func:`soi.cost`).
        kind: ``"conv"``, ``"conv_transpose"``, ``"linear"``, ``"upsample"`` or ``"op"``.
        macs: MACs per run (one output group, one stream); 0 for modules that only move data.
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

    def macs_at(self, t: int) -> int:
        """MACs it executes at model input frame ``t`` (one stream)."""
        return self.macs * self.clock.runs(t)

    @property
    def macs_per_frame(self) -> float:
        """MACs per model input frame, on average."""
        return self.macs * self.clock.rate


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
