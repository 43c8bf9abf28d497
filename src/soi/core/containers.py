"""Containers that compose streaming modules and their timing.

* :class:`Sequential` chains modules: delays add up (in input frames) and strides multiply.
* :class:`Concat` runs branches on the same input and concatenates their outputs along channels;
  :class:`Residual` adds a body's output to its input. Branches with different look-ahead are
  aligned automatically by delaying the faster ones (:class:`DelayLine`).
* :class:`FrameWise` streams a module that acts on every frame on its own (activations, BatchNorm in
  eval mode, dropout, ``nn.Linear`` over channels). Containers wrap such modules automatically.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .state import State, StreamingModule
from .timing import Clock, FrameShape, Timing, Work
from .window import DelayWindow

__all__ = [
    "FrameWise",
    "ChannelLinear",
    "DelayLine",
    "Sequential",
    "Concat",
    "Residual",
    "Wrapper",
    "as_streaming",
    "FRAME_WISE_TYPES",
]

FRAME_WISE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Softshrink, nn.Hardshrink,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.Linear,
)  # fmt: skip
"""``torch.nn`` modules that act on each frame independently (Softmax/LogSoftmax/GLU qualify
when their ``dim`` is 1, the channels)."""


def frame_wise_problem(module: nn.Module) -> str | None:
    """Why ``module`` cannot be streamed frame by frame, or ``None`` if it can.

    A module of your own that treats every frame on its own can say so with a class attribute
    ``frame_wise = True``.
    """
    if getattr(module, "frame_wise", False):
        return None
    if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.GLU)):
        return None if module.dim == 1 else f"{type(module).__name__}(dim={module.dim}) mixes frames; only dim=1 (channels) streams"
    if isinstance(module, FRAME_WISE_TYPES):
        return None
    return f"{type(module).__name__} is not a known frame-wise module"


@dataclass
class EmptyState(State):
    pass


class FrameWise(StreamingModule):
    """Streams a module that treats every frame on its own; no state.

    ``nn.Linear`` acts on the last axis as in torch, so it streams only when that is not time;
    :class:`ChannelLinear` maps channels. BatchNorm must be in eval mode for
    streaming to equal offline (in training mode it uses the statistics of the chunk it is given).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        problem = frame_wise_problem(module)
        if problem:
            raise TypeError(f"FrameWise: {problem}")
        self.module = module

    @property
    def work_kind(self) -> str:  # type: ignore[override]
        return "linear" if isinstance(self.module, nn.Linear) else "op"

    def out_shape(self, shape: FrameShape) -> FrameShape:
        m = self.module
        if isinstance(m, ChannelLinear):
            return (m.out_features, *shape[1:])
        if isinstance(m, nn.Linear):
            return (*shape[:-1], m.out_features)
        if isinstance(m, nn.GLU):
            return (shape[0] // 2, *shape[1:])
        return shape

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        m = self.module
        if isinstance(m, ChannelLinear):
            return m.in_features * m.out_features * math.prod(shape[1:])
        if isinstance(m, nn.Linear):
            return m.in_features * m.out_features * math.prod(shape[:-1])
        return 0

    def init_state(self, batch_size: int, device=None, dtype=None) -> EmptyState:
        return EmptyState(**self._new_state_args(batch_size))

    def step(self, x: Tensor, state: EmptyState) -> tuple[Tensor, EmptyState]:
        self._check_state(x, state)
        if type(self.module) is nn.Linear and x.dim() == 3:
            raise ValueError(
                "FrameWise(nn.Linear): on (B, C, T) input nn.Linear mixes the time axis (its last); "
                "use soi.ChannelLinear for a linear map over channels"
            )
        if x.shape[2] == 0 and isinstance(self.module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            return x, state  # BatchNorm refuses empty inputs in training mode
        return self.module(x), state


class ChannelLinear(nn.Linear):
    """``nn.Linear`` over the channel axis: ``(B, C_in, T, ...)`` -> ``(B, C_out, T, ...)``.

    Parameters are those of ``nn.Linear(C_in, C_out)``; frame-wise, so containers stream it.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[1] != self.in_features:
            raise ValueError(f"ChannelLinear: expected (B, {self.in_features}, T, ...), got {tuple(x.shape)}")
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class DelayLine(DelayWindow):
    """Delays a stream by ``frames`` frames: output ``t`` is input ``t`` once ``t + frames`` arrived.

    Used to align branches of different look-ahead; it is an identity with look-ahead, so offline it
    returns its input unchanged.
    """

    def __init__(self, frames: int, channels: int | None = None, frame_size: Sequence[int] | None = None) -> None:
        super().__init__(None, channels, frames + 1, 1, 1, lookahead=frames)
        self.frame_size = tuple(int(v) for v in frame_size) if frame_size is not None else None

    def extra_repr(self) -> str:
        return f"frames={self.lookahead}"


def as_streaming(module: nn.Module) -> nn.Module:
    """``module`` itself if it streams, wrapped in :class:`FrameWise` if it acts frame by frame,
    else unchanged (a container holding it refuses to step until :func:`soi.convert` converts it)."""
    if isinstance(module, StreamingModule):
        return module
    if frame_wise_problem(module) is None:
        return FrameWise(module)
    return module


def _not_streaming(owner: str, children: Iterable[tuple[str, nn.Module]]) -> str | None:
    raw = [f"{name} ({type(m).__name__})" for name, m in children if not isinstance(m, StreamingModule)]
    if raw:
        return f"{owner}: these children are not streaming modules: {', '.join(raw)}; convert the model with soi.convert()"
    return None


class _Container(StreamingModule):
    """A streaming module made of children: its timing is composed from theirs once, at
    construction (:meth:`_compose`). Children that do not stream yet (before :func:`soi.convert`)
    leave it without timing: using it then says which children to convert."""

    _timing: Timing | None = None
    _problem: str | None = None

    @property
    def timing(self) -> Timing:  # type: ignore[override]
        if self._timing is None:
            raise TypeError(self._problem or f"{type(self).__name__}: no timing")
        return self._timing


@dataclass
class SequentialState(State):
    children: tuple[State, ...]


class Sequential(_Container):
    """Chain of streaming modules, like ``torch.nn.Sequential``.

    Timing composes: ``delay = d1 + s1*d2 + ...``, ``stride = s1*s2*...``,
    ``receptive_field = r1 + s1*(r2-1) + s1*s2*(r3-1) + ...``.

    A layer that returns no frame for a chunk (a time-strided layer between its output frames)
    ends the chain for that call: the layers after it are not called, and the chain returns an
    empty chunk of its output shape. A chunk of no frames given to the chain itself goes through
    every layer (that is how lazily sized states get their size).
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(as_streaming(m) for m in modules)
        self._empty_shapes: dict[tuple, FrameShape] = {}
        self._problem = _not_streaming(type(self).__name__, ((f"layers.{i}", m) for i, m in enumerate(self.layers)))
        if self._problem is None:
            self._timing = Timing.chain(m.timing for m in self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> nn.Module:
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    @property
    def input_frame_shape(self) -> FrameShape | None:
        return next((m.input_frame_shape for m in self.layers[:1] if isinstance(m, StreamingModule)), None)

    def out_shape(self, shape: FrameShape) -> FrameShape:
        for m in self.layers:
            shape = m.out_shape(shape)
        return shape

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        out: list[Work] = []
        for m in self.layers:
            shape, w = m.works(shape, clock, dense)
            out.extend(w)
            clock = clock.after(m.timing)
        return shape, out

    def init_state(self, batch_size: int, device=None, dtype=None) -> SequentialState:
        self.timing  # noqa: B018 - raises if a child does not stream
        return SequentialState(
            **self._new_state_args(batch_size),
            children=tuple(m.init_state(batch_size, device, dtype) for m in self.layers),
        )

    def _empty_after(self, i: int, x: Tensor) -> Tensor:
        """What layers ``i..`` return for the empty chunk ``x``, without calling them."""
        key = (i, tuple(x.shape[1:]))
        shape = self._empty_shapes.get(key)
        if shape is None:
            shape = tuple(x.shape[1:2]) + tuple(x.shape[3:])
            for m in self.layers[i:]:
                shape = m.out_shape(shape)
            self._empty_shapes[key] = shape
        return x.new_zeros((x.shape[0], shape[0], 0, *shape[1:]))

    def step(self, x: Tensor, state: SequentialState) -> tuple[Tensor, SequentialState]:
        self._check_state(x, state)
        new = list(state.children)
        given = x.shape[2]
        for i, m in enumerate(self.layers):
            if given and not x.shape[2]:
                x = self._empty_after(i, x)
                break
            x, new[i] = m.step(x, new[i])
        return x, SequentialState(state.owner, state.batch_size, tuple(new))

    def prepare(self, state: SequentialState) -> SequentialState:
        return SequentialState(state.owner, state.batch_size, tuple(m.prepare(s) for m, s in zip(self.layers, state.children)))

    def flush(self, state: SequentialState) -> tuple[Tensor | None, SequentialState]:
        # Each layer first processes what the layers before it still owed, then owes its own tail:
        # the same as torch.nn layers that each zero-pad their own input.
        tail: Tensor | None = None
        new = []
        for m, s in zip(self.layers, state.children):
            if tail is not None:
                tail, s = m.step(tail, s)
            own, s = m.flush(s)
            if own is not None:
                tail = own if tail is None else torch.cat([tail, own], dim=2)
            new.append(s)
        return tail, SequentialState(state.owner, state.batch_size, tuple(new))


@dataclass
class ParallelState(State):
    """State of a parallel container: one per branch, and one per alignment delay."""

    children: tuple[State, ...]
    align: tuple[State, ...]


class _Parallel(_Container):
    """Branches on the same input, aligned to the largest delay, combined frame by frame.

    A branch with less look-ahead than the slowest one is followed by a :class:`DelayLine`
    (registered in :attr:`align`, built once at construction).
    """

    def __init__(self, branches: Iterable[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(as_streaming(b) for b in branches)
        self.align = nn.ModuleList()
        self._align_of: tuple[int, ...] = ()
        self._lagged = False
        self._problem = _not_streaming(type(self).__name__, ((f"branches.{i}", b) for i, b in enumerate(self.branches)))
        if self._problem is not None:
            return
        # branches combine frame by frame: one rate, and the same groups of frames
        rates = {(b.stride, b.timing.upsample, b.timing.lead) for b in self.branches}
        if len(rates) > 1:
            raise ValueError(f"{type(self).__name__}: branches have different time strides or upsampling, (stride, upsample, lead) = {sorted(rates)}")
        delays = [b.delay for b in self.branches]
        index = []
        timings = []
        for b, d in zip(self.branches, delays):
            lag = max(delays) - d
            frames = b.timing.frames_for_lag(lag)
            if frames is None:
                raise ValueError(f"{type(self).__name__}: cannot align delays {delays} at stride {b.stride}")
            if lag:
                index.append(len(self.align))
                self.align.append(DelayLine(frames))
                timings.append(b.timing.then(self.align[-1].timing))
            else:
                index.append(-1)
                timings.append(b.timing)
        self._align_of = tuple(index)
        self._lagged = any(a >= 0 for a in index)
        self._timing = dataclasses.replace(timings[0], receptive_field=max(t.receptive_field for t in timings), delay=max(delays))

    def _combine(self, outputs: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def _combine_shapes(self, shapes: list[FrameShape]) -> FrameShape:
        """Output frame shape for the branches' output shapes (elementwise combinations: the first)."""
        return shapes[0]

    @property
    def input_frame_shape(self) -> FrameShape | None:
        return next((b.input_frame_shape for b in self.branches if b.input_frame_shape is not None), None)

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return self._combine_shapes([b.out_shape(shape) for b in self.branches])

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        shapes, out = [], []
        for b in self.branches:
            s, w = b.works(shape, clock, dense)
            shapes.append(s)
            out.extend(w)
        return self._combine_shapes(shapes), out

    def init_state(self, batch_size: int, device=None, dtype=None) -> ParallelState:
        self.timing  # noqa: B018 - raises if a branch does not stream
        return ParallelState(
            **self._new_state_args(batch_size),
            children=tuple(b.init_state(batch_size, device, dtype) for b in self.branches),
            align=tuple(d.init_state(batch_size, device, dtype) for d in self.align),
        )

    def _outputs(self, ys: list[Tensor | None], state: ParallelState) -> tuple[State, ...]:
        """Pass the branch outputs ``ys`` (in place) through their alignment delays; their new states."""
        align = list(state.align)
        for i, a in enumerate(self._align_of):
            if a >= 0 and ys[i] is not None:
                ys[i], align[a] = self.align[a].step(ys[i], align[a])
        return tuple(align)

    def step(self, x: Tensor, state: ParallelState) -> tuple[Tensor, ParallelState]:
        self._check_state(x, state)
        ys, new = [], []
        for b, s in zip(self.branches, state.children):
            y, s = b.step(x, s)
            ys.append(y)
            new.append(s)
        align = self._outputs(ys, state) if self._lagged else state.align
        return self._combine(ys), ParallelState(state.owner, state.batch_size, tuple(new), align)

    def prepare(self, state: ParallelState) -> ParallelState:
        children = tuple(b.prepare(s) for b, s in zip(self.branches, state.children))
        return dataclasses.replace(state, children=children)

    def flush(self, state: ParallelState) -> tuple[Tensor | None, ParallelState]:
        ys, new = [], []
        for b, s in zip(self.branches, state.children):
            y, s = b.flush(s)
            ys.append(y)
            new.append(s)
        align = self._outputs(ys, state)
        tails = []
        for i, a in enumerate(self._align_of):
            tail = None
            if a >= 0:
                tail, align_a = self.align[a].flush(align[a])
                align = (*align[:a], align_a, *align[a + 1 :])
            y = ys[i]
            tails.append(tail if y is None else y if tail is None else torch.cat([y, tail], dim=2))
        if all(t is None for t in tails):
            return None, state
        if any(t is None for t in tails):
            raise RuntimeError("internal: aligned branches owe different numbers of frames")
        return self._combine(tails), ParallelState(state.owner, state.batch_size, tuple(new), align)

class Concat(_Parallel):
    """Runs every branch on the input and concatenates the outputs along channels (a U-Net skip).

    ``soi.Concat(nn.Identity(), body)`` is the concatenating skip connection around ``body``.
    """

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__(branches)

    def _combine(self, outputs: list[Tensor]) -> Tensor:
        ref = outputs[0]
        # Compared element by element (not as a set of tuples) so that tracing sees plain sizes.
        if any(o.shape[0] != ref.shape[0] or o.shape[2:] != ref.shape[2:] for o in outputs[1:]):
            raise ValueError(f"Concat: branch outputs differ outside the channel axis: {[tuple(o.shape) for o in outputs]}")
        return torch.cat(outputs, dim=1)

    def _combine_shapes(self, shapes: list[FrameShape]) -> FrameShape:
        return (sum(s[0] for s in shapes), *shapes[0][1:])


class Residual(_Parallel):
    """``y = x + body(x)``, the input delayed to match the body's look-ahead."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__([nn.Identity(), body])

    @property
    def body(self) -> nn.Module:
        return self.branches[1]

    def _combine(self, outputs: list[Tensor]) -> Tensor:
        skip, y = outputs
        if skip.shape != y.shape:
            raise ValueError(f"Residual: the body maps {tuple(skip.shape)} to {tuple(y.shape)}; shapes must match to add")
        return skip + y


class Wrapper(StreamingModule):
    """A streaming module whose protocol and timing are those of one inner module.

    Subclasses hold the inner module under a name of their own (it is part of their state-dict
    keys), return it from :attr:`inner`, and add what is theirs: construction, input checks,
    defaults.
    """

    @property
    def inner(self) -> StreamingModule:
        raise NotImplementedError

    @property
    def timing(self) -> Timing:  # type: ignore[override]
        return self.inner.timing

    @property
    def input_frame_shape(self) -> FrameShape | None:
        return self.inner.input_frame_shape

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return self.inner.out_shape(shape)

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        return self.inner.works(shape, clock, dense)

    def init_state(self, batch_size: int, device=None, dtype=None) -> State:
        return self.inner.init_state(batch_size, device, dtype)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return self.inner.step(x, state)

    def flush(self, state: State) -> tuple[Tensor | None, State]:
        return self.inner.flush(state)

    def prepare(self, state: State) -> State:
        return self.inner.prepare(state)
