"""Containers that compose streaming modules and their timing.

* :class:`Sequential` chains modules: delays add up (in input frames) and strides multiply.
* :class:`Concat` runs branches on the same input and concatenates their outputs along channels;
  :class:`Residual` adds a body's output to its input. Branches with different look-ahead are
  aligned automatically by delaying the faster ones (:class:`DelayLine`).
* :class:`FrameWise` streams a module that acts on every frame on its own (activations, BatchNorm in
  eval mode, dropout, ``nn.Linear`` over channels). Containers wrap such modules automatically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from .state import State, StreamingModule
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

    def __init__(self, frames: int) -> None:
        super().__init__(None, None, frames + 1, 1, 1, lookahead=frames)

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


def _require_streaming(owner: str, children: Iterable[tuple[str, nn.Module]]) -> None:
    raw = [f"{name} ({type(m).__name__})" for name, m in children if not isinstance(m, StreamingModule)]
    if raw:
        raise TypeError(f"{owner}: these children are not streaming modules: {', '.join(raw)}; convert the model with soi.convert()")


@dataclass
class SequentialState(State):
    children: tuple[State, ...]


class Sequential(StreamingModule):
    """Chain of streaming modules, like ``torch.nn.Sequential``.

    Timing composes: ``delay = d1 + s1*d2 + ...``, ``stride = s1*s2*...``,
    ``receptive_field = r1 + s1*(r2-1) + s1*s2*(r3-1) + ...``.
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(as_streaming(m) for m in modules)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> nn.Module:
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def _streaming_layers(self) -> list[StreamingModule]:
        _require_streaming(type(self).__name__, ((f"layers.{i}", m) for i, m in enumerate(self.layers)))
        return list(self.layers)

    @property
    def receptive_field(self) -> int:
        rf, scale = 1, 1
        for m in self._streaming_layers():
            rf += scale * (m.receptive_field - 1)
            scale *= m.stride
        return rf

    @property
    def delay(self) -> int:
        d, scale = 0, 1
        for m in self._streaming_layers():
            d += scale * m.delay
            scale *= m.stride
        return d

    @property
    def stride(self) -> int:
        return math.prod(m.stride for m in self._streaming_layers())

    def init_state(self, batch_size: int, device=None, dtype=None) -> SequentialState:
        return SequentialState(
            **self._new_state_args(batch_size),
            children=tuple(m.init_state(batch_size, device, dtype) for m in self._streaming_layers()),
        )

    def step(self, x: Tensor, state: SequentialState) -> tuple[Tensor, SequentialState]:
        self._check_state(x, state)
        new = []
        for m, s in zip(self.layers, state.children):
            x, s = m.step(x, s)
            new.append(s)
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


class _Parallel(StreamingModule):
    """Branches on the same input, aligned to the largest delay, combined frame by frame."""

    def __init__(self, branches: Iterable[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(as_streaming(b) for b in branches)
        self._aligned: nn.ModuleList | None = None

    def _combine(self, outputs: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def _paths(self) -> nn.ModuleList:
        """Each branch followed by the delay that aligns it with the slowest one (built once)."""
        if self._aligned is None:
            _require_streaming(type(self).__name__, ((f"branches.{i}", b) for i, b in enumerate(self.branches)))
            strides = {b.stride for b in self.branches}
            if len(strides) > 1:
                raise ValueError(f"{type(self).__name__}: branches have different time strides {sorted(strides)}")
            stride = strides.pop()
            delays = [b.delay for b in self.branches]
            paths = []
            for b, d in zip(self.branches, delays):
                lag = max(delays) - d
                if lag % stride:
                    raise ValueError(f"{type(self).__name__}: cannot align delays {delays} at stride {stride}")
                paths.append(Sequential(b, DelayLine(lag // stride)) if lag else b)
            # Not registered as submodules: the branches are, and the delay lines have no weights.
            object.__setattr__(self, "_aligned", paths)
        return self._aligned

    def _apply(self, fn, recurse=True):
        object.__setattr__(self, "_aligned", None)  # rebuilt lazily after .to()/.double()
        return super()._apply(fn, recurse)

    @property
    def receptive_field(self) -> int:
        return max(p.receptive_field for p in self._paths())

    @property
    def delay(self) -> int:
        return max(b.delay for b in self.branches)

    @property
    def stride(self) -> int:
        return self._paths()[0].stride

    def init_state(self, batch_size: int, device=None, dtype=None) -> SequentialState:
        return SequentialState(
            **self._new_state_args(batch_size),
            children=tuple(p.init_state(batch_size, device, dtype) for p in self._paths()),
        )

    def step(self, x: Tensor, state: SequentialState) -> tuple[Tensor, SequentialState]:
        self._check_state(x, state)
        outs, new = [], []
        for p, s in zip(self._paths(), state.children):
            y, s = p.step(x, s)
            outs.append(y)
            new.append(s)
        return self._combine(outs), SequentialState(state.owner, state.batch_size, tuple(new))

    def prepare(self, state: SequentialState) -> SequentialState:
        return SequentialState(state.owner, state.batch_size, tuple(p.prepare(s) for p, s in zip(self._paths(), state.children)))

    def flush(self, state: SequentialState) -> tuple[Tensor | None, SequentialState]:
        outs, new = [], []
        for p, s in zip(self._paths(), state.children):
            y, s = p.flush(s)
            outs.append(y)
            new.append(s)
        if all(o is None for o in outs):
            return None, state
        if any(o is None for o in outs):
            raise RuntimeError("internal: aligned branches owe different numbers of frames")
        return self._combine(outs), SequentialState(state.owner, state.batch_size, tuple(new))


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
    def receptive_field(self) -> int:
        return self.inner.receptive_field

    @property
    def delay(self) -> int:
        return self.inner.delay

    @property
    def stride(self) -> int:
        return self.inner.stride

    def init_state(self, batch_size: int, device=None, dtype=None) -> State:
        return self.inner.init_state(batch_size, device, dtype)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return self.inner.step(x, state)

    def flush(self, state: State) -> tuple[Tensor | None, State]:
        return self.inner.flush(state)

    def prepare(self, state: State) -> State:
        return self.inner.prepare(state)
