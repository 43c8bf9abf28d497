"""The schedule of a streaming model, derived from its modules' declared clocks.

Every leaf module reports (:meth:`~soi.StreamingModule.works`) the clock on which it is *called*
(frames reach it) and whether it sits behind a fully predictive shift (its work is done in
``prepare``, between frames). From those alone, for one frame per step::

    frame t:   step     the leaves called when frame t arrives
               prepare  the leaves called after it, before frame t+1 (FP: work on past frames only)

Every leaf is on its cycle from frame ``warmup`` (the latest first call) on, and the pattern
repeats every ``period`` frames (the least common multiple of the leaves' periods, and of the
state phases STMC's exact strided pair cycles through). An S-CC 2
U-Net, for instance, calls every layer on even frames and only the full-rate layers (and the
strided layer, which keeps its shift register) on odd ones::

    frame:      0     1     2     3   ...
    enc_1      run   run   run   run
    enc_2(s=2) run   call  run   call      (called every frame, computes on even ones)
    deeper     run    -    run    -        (not called on odd frames)
    upsampler  run   run   run   run       (duplicates the held element on odd frames)

The eager step needs no table: each module's step follows from its own state, and a chain stops
at a layer that returns no frame (:class:`soi.Sequential`), which is what this schedule says.
Cost accounting sums the same declarations (:func:`soi.cost`); the deployment streamers build one
graph per phase of this schedule; tests check it against the calls a real stream makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Sequence

from .timing import Clock

if TYPE_CHECKING:
    from .state import StreamingModule

__all__ = ["FramePlan", "Schedule", "derive_schedule"]


@dataclass(frozen=True)
class FramePlan:
    """The leaves (by path in the model) called for one frame: when it arrives, and in the
    ``prepare`` after it."""

    step: tuple[str, ...]
    prepare: tuple[str, ...]


@dataclass(frozen=True)
class Schedule:
    """Which leaf module is called at which frame: ``frames[t]`` for ``t < warmup + period``,
    then ``frames[warmup + (t - warmup) % period]``.

    Attributes:
        warmup: frames before every leaf is on its cycle.
        period: frames per cycle.
        prepare: whether any work runs in ``prepare`` (a fully predictive pattern).
        frames: one :class:`FramePlan` per frame of the warm-up and of one cycle.
    """

    warmup: int
    period: int
    prepare: bool
    frames: tuple[FramePlan, ...]

    def at(self, t: int) -> FramePlan:
        """The plan of frame ``t`` (0-based) of a stream."""
        if t < self.warmup:
            return self.frames[t]
        return self.frames[self.warmup + (t - self.warmup) % self.period]


def derive_schedule(model: StreamingModule, input_shape: Sequence[int] | None = None) -> Schedule:
    """The :class:`Schedule` of ``model`` for one frame per step, from its declared clocks
    (``input_shape = (C, *frame)``; default: what the model declares)."""
    if input_shape is None:
        input_shape = model.input_frame_shape
        if input_shape is None:
            raise ValueError("derive_schedule: cannot tell the input frame shape of this model; pass input_shape=(C, *frame_size)")
    _, works = model.works(tuple(input_shape), Clock())
    names = {id(m): name for name, m in model.named_modules()}
    calls = [(names[id(w.module)], w.called, w.clock.precomputed) for w in works]
    warmup = max((c.offset for _, c, _ in calls), default=0)
    period = reduce(math.lcm, (c.period * c.phases for _, c, _ in calls), 1)
    period = reduce(math.lcm, (w.clock.period for w in works), period)

    frames = tuple(
        FramePlan(
            step=tuple(p for p, c, pre in calls if not pre and c.fires(t)),
            prepare=tuple(p for p, c, pre in calls if pre and c.fires(t)),
        )
        for t in range(warmup + period)
    )
    return Schedule(warmup, period, any(pre for _, _, pre in calls), frames)
