"""The shift register shared by every temporal window operation (convolution, transposed
convolution, pooling): one generic N-d implementation, specialised by the operation it applies.

A window layer with time kernel ``k``, time dilation ``d`` and time stride ``s`` keeps the last
``H = (k-1)*d`` input frames. A chunk of ``n`` new frames costs only the outputs it completes::

    history (H frames)        new chunk (n frames)
    [ h h h h ][ x0 x1 x2 ... ]  --op over time, no time padding-->  outputs for the aligned frames

Causal by default: output ``t`` covers input frames ``t-H .. t``. With ``lookahead=f`` it covers
``t-H+f .. t+f`` (the time padding of a ``torch.nn`` layer with ``H-f`` frames on the left and
``f`` on the right); the stream then emits output ``t`` when frame ``t+f`` arrives, skips the
``f`` warm-up outputs that would lie before the sequence, and :meth:`flush` emits the last ``f``
outputs as if zeros followed the sequence.

With a time stride ``s``, output ``j`` covers input frames ``s*j-H+f .. s*j+f`` and is produced
when input frame ``s*j+f`` arrives (a ResNet's stride-2 convolution with padding 1: ``f = 1``,
outputs at frames 1, 3, 5, ...); a chunk yields between ``0`` and ``ceil(n/s)`` outputs.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from .state import State, StreamingModule
from .timing import FrameShape, Timing

__all__ = ["WindowState", "TemporalWindow", "DelayWindow", "push", "ntuple", "with_dims"]


def with_dims(base: type, dims: int, doc: str) -> type:
    """The thin ``1d``/``2d``/``3d`` name of an N-d layer: ``base`` with its first argument,
    ``dims``, fixed. ``help()`` and ``inspect.signature`` show ``base``'s real arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, dims, *args, **kwargs)

    signature = inspect.signature(base.__init__)
    __init__.__signature__ = signature.replace(parameters=[p for n, p in signature.parameters.items() if n != "dims"])
    name = f"{base.__name__[:-2]}{dims}d"
    __init__.__qualname__ = f"{name}.__init__"
    doc = f"{doc}\n\nArguments as :class:`{base.__name__}`, without ``dims``.\n\n{inspect.cleandoc(base.__doc__ or '')}"
    return type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": base.__module__, "__qualname__": name})


def ntuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """``value`` as an ``n``-tuple (time first); a bare int is repeated."""
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{name}: expected an int or {n} values (time first), got {len(value)}: {value}")
    return value


def repr_args(*args: object, **options: object) -> str:
    """``extra_repr`` text: ``args`` as they are, then ``name=value`` for every option that is not
    ``None`` (pass ``None`` for a value at its default, to leave it out)."""
    return ", ".join([*map(str, args), *(f"{k}={v}" for k, v in options.items() if v is not None)])


def push(history: Tensor, x: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """The shift register: ``history (B, C, H, ...)`` followed by the new frames ``x (B, C, n,
    ...)``. Returns the window ``[history, x]`` along time and the new history, its last ``keep``
    frames (sliced from ``x`` itself when ``x`` is that long, so the concatenation feeds only
    the window's user; the history itself when nothing arrived).

    Every shift register of soi is this one function: window layers (convolutions, transposed
    convolutions, pooling, delays), the upsamplers' held elements, STMC's exact strided pair."""
    n = x.shape[2]
    if n == 0:
        return history, history
    window = torch.cat([history, x], dim=2) if history.shape[2] else x
    if keep == 0:
        return window, history
    if n >= keep:
        return window, x[:, :, n - keep :]
    return window, window[:, :, window.shape[2] - keep :]


@dataclass
class WindowState(State):
    """State of a window layer.

    Attributes:
        history: the last ``H`` input frames, ``(B, C, H, ...)``; ``None`` until the non-time size
            is known (first step) when the layer was built without ``frame_size``.
        phase: input frames seen modulo the time stride (static schedule).
        skip: warm-up outputs still to drop because of look-ahead (static schedule).
        fill_value: the value the history starts with (0, or -inf for max pooling).
    """

    history: Tensor | None
    phase: int
    skip: int
    fill_value: float


class TemporalWindow(StreamingModule):
    """Generic N-d shift-register layer. Subclasses give the operation in :meth:`_op`.

    Args:
        dims: number of spatial dimensions including time (1, 2 or 3; ``None``: any).
        in_channels: channels expected in dimension 1 (``None``: any, sized by the first chunk).
        time_kernel, time_dilation, time_stride: the window along time.
        lookahead: future frames each output may see (``0 <= lookahead <= (k-1)*d``).
        frame_size: the non-time input size ``(F,)`` or ``(H, W)``, if known, so that the state is
            created in full by ``init_state`` (export needs it); otherwise it is sized by the first
            chunk and later chunks must match.
        fill_value: value of the frames before the sequence (zero padding, or -inf for max pool).
    """

    def __init__(
        self,
        dims: int | None,
        in_channels: int | None,
        time_kernel: int,
        time_dilation: int = 1,
        time_stride: int = 1,
        lookahead: int = 0,
        frame_size: Sequence[int] | None = None,
        fill_value: float = 0.0,
    ) -> None:
        super().__init__()
        if dims not in (1, 2, 3, None):
            raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
        for name, v in (("kernel_size[0]", time_kernel), ("dilation[0]", time_dilation), ("stride[0]", time_stride)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.dims = dims
        self.in_channels = in_channels
        self.time_kernel = time_kernel
        self.time_dilation = time_dilation
        self.time_stride = time_stride
        self.history_frames = (time_kernel - 1) * time_dilation
        if not 0 <= lookahead <= self.history_frames:
            raise ValueError(
                f"lookahead must be between 0 and (kernel_size[0]-1)*dilation[0] = {self.history_frames}, got {lookahead}"
            )
        self.lookahead = lookahead
        if frame_size is not None:
            frame_size = tuple(int(v) for v in frame_size)
            if dims is not None and len(frame_size) != dims - 1:
                raise ValueError(f"frame_size: expected {dims - 1} non-time sizes, got {frame_size}")
        elif dims == 1:
            frame_size = ()
        self.frame_size: tuple[int, ...] | None = frame_size
        self.fill_value = float(fill_value)
        self.timing = Timing(self.history_frames + 1, lookahead, time_stride)

    # -- shapes -----------------------------------------------------------------------------------
    @property
    def input_frame_shape(self) -> FrameShape | None:
        if self.in_channels is None or self.frame_size is None:
            return None
        return (self.in_channels, *self.frame_size)

    @property
    def output_phase(self) -> int:
        return self.lookahead % self.time_stride

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return (getattr(self, "out_channels", shape[0]), *self.out_frame_size(tuple(shape[1:])))

    # -- the operation ----------------------------------------------------------------------------
    def window_op(self, window: Tensor) -> Tensor:
        """Apply the operation with time stride ``s`` and no time padding: ``(B, C, L, ...)`` ->
        ``(B, C', floor((L-H-1)/s)+1, ...)``."""
        raise NotImplementedError

    def out_frame_size(self, frame_size: tuple[int, ...]) -> tuple[int, ...]:
        """Non-time output size for a non-time input size."""
        raise NotImplementedError

    # -- protocol ---------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device=None, dtype=None) -> WindowState:
        args = self._new_state_args(batch_size)
        history = None
        if self.frame_size is not None and self.in_channels is not None:
            dtype = dtype if dtype is not None else self._param_dtype()
            history = torch.full(
                (batch_size, self.in_channels, self.history_frames, *self.frame_size),
                self.fill_value,
                device=device,
                dtype=dtype,
            )
        # With look-ahead f, output j ends at input frame s*j + f: the stride grid starts at frame
        # f mod s, and the f // s outputs on it before frame f lie before the sequence.
        s, f = self.time_stride, self.lookahead
        return WindowState(**args, history=history, phase=-f % s, skip=f // s, fill_value=self.fill_value)

    def _param_dtype(self) -> torch.dtype:
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.get_default_dtype()

    def _check_input(self, x: Tensor, state: WindowState) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}.step: expected a tensor, got {type(x).__name__}")
        if (x.dim() != self.dims + 2) if self.dims is not None else (x.dim() < 3):
            raise ValueError(
                f"{name}.step: expected a {f'{self.dims + 2}-d' if self.dims else '3-d or larger'} input "
                f"(B, C, T{', ...' if self.dims != 1 else ''}), "
                f"got shape {tuple(x.shape)}"
            )
        self._check_state(x, state)
        if self.in_channels is not None and x.shape[1] != self.in_channels:
            raise ValueError(f"{name}.step: expected {self.in_channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        hist = state.history
        expected_rest = tuple(hist.shape[3:]) if hist is not None else self.frame_size
        if expected_rest is not None and tuple(x.shape[3:]) != expected_rest:
            raise ValueError(
                f"{name}.step: expected non-time size {expected_rest}, got {tuple(x.shape[3:])} (shape {tuple(x.shape)})"
            )
        self._check_like(x, hist)
        weight = getattr(self, "weight", None)
        if weight is not None and weight.dtype != x.dtype:
            raise ValueError(
                f"{name}.step: the input is {x.dtype} but the weights are {weight.dtype}; convert one to the other "
                f"(model.to({x.dtype}) or x.to({weight.dtype}))"
            )

    def step(self, x: Tensor, state: WindowState) -> tuple[Tensor, WindowState]:
        self._check_input(x, state)
        return self.advance(x, state)

    def advance(self, x: Tensor, state: WindowState) -> tuple[Tensor, WindowState]:
        """The step without input checks (a compiled or exported graph has fixed shapes).

        A chunk of 0 frames is no work; the shift register is :func:`push`.
        """
        n = x.shape[2]
        h = self.history_frames
        hist = state.history
        if hist is None:
            hist = x.new_full((x.shape[0], x.shape[1], h, *x.shape[3:]), self.fill_value)
        s = self.time_stride
        first = (s - state.phase) % s  # first frame of the chunk on the stride grid
        outputs = max(0, math.ceil((n - first) / s))
        new_phase = (state.phase + n) % s
        if outputs == 0:
            out_channels = getattr(self, "out_channels", x.shape[1])
            y = x.new_zeros((x.shape[0], out_channels, 0, *self.out_frame_size(tuple(x.shape[3:]))))
            if n == 0:
                return y, dataclasses.replace(state, history=hist)
        full, new_hist = push(hist, x, h)
        if outputs == 0:
            return y, dataclasses.replace(state, history=new_hist, phase=new_phase)
        y = self.window_op(full[:, :, first:] if first else full)
        skip = state.skip
        if skip:
            dropped = min(skip, y.shape[2])
            y = y[:, :, dropped:]
            skip -= dropped
        return y, dataclasses.replace(state, history=new_hist, phase=new_phase, skip=skip)

    def flush(self, state: WindowState) -> tuple[Tensor | None, WindowState]:
        if self.lookahead == 0:
            return None, state
        hist = state.history
        if hist is None:
            raise ValueError(f"{type(self).__name__}.flush: nothing was streamed, so nothing is owed")
        # The end of the sequence is padded like its start, as torch.nn layers do.
        pad = hist.new_full((hist.shape[0], hist.shape[1], self.lookahead, *hist.shape[3:]), self.fill_value)
        return self.step(pad, state)

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        if self.lookahead:
            extra += f", lookahead={self.lookahead}"
        return extra


class DelayWindow(TemporalWindow):
    """A shift register with nothing to compute: the output is the input, ``history_frames``
    frames later (base of :class:`soi.DelayLine` and :class:`soi.Shift`, which differ in whether
    the delay is declared as look-ahead)."""

    def window_op(self, window: Tensor) -> Tensor:
        return window[:, :, : window.shape[2] - self.history_frames]

    def out_frame_size(self, frame_size: tuple[int, ...]) -> tuple[int, ...]:
        return frame_size
