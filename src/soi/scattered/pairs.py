"""Scattered Online Inference (SOI): S-CC pairs, shifts (SC), SS-CC, and STMC's exact strided pair.

An **S-CC pair** wraps an ``inner`` streaming module whose time stride is ``s`` (a strided
convolution followed by the layers that run at the reduced rate) and an **upsampler** that brings the
compressed sequence back to full rate::

    input t:      0  1  2  3  4  5 ...         (pair input, full rate)
    inner:        e0    e1    e2   ...         element j covers input frames ..s*j, made at frame s*j
    upsampler:    y0 y1 y2 y3 y4 y5 ...        exactly one output per input frame

The layers inside ``inner`` run only when a compressed element is due (every ``s``-th frame); on the
other frames they are not called with any data, so they do no work. Alignment (``DESIGN.md`` §3):

* **PP** duplication (:class:`Duplicate`): output ``t`` is element ``floor(t/s)``.
* **FP**: wrap the pair in :class:`SC` (one frame of shift, zeros first): output ``t`` is element
  ``floor((t-1)/s)``. :class:`SSCC` is that combination. Everything behind a shift depends only on
  past frames, so it can run *between* frames: ``step`` leaves it pending and :meth:`prepare` (or the
  next ``step``) runs it.
* Interpolating upsamplers (:class:`Interpolate`) need the *next* element too, so they add latency,
  reported as :attr:`Upsampler.delay` and included in the pair's ``delay``; containers
  (``soi.Concat``) align the skip connection automatically.

:class:`STMCStridedPair` is STMC's own exact treatment of the same strided network, for comparison:
every frame is treated as an aligned frame, with one deep state per stride phase (memory grows as
``s**N`` for ``N`` nested strided levels) and no computation saved.

Chunks of any length ``n >= 0`` work everywhere; outputs never depend on how the stream is cut.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from ..core.containers import Sequential, as_streaming
from ..core.state import State, StreamingModule
from ..core.timing import Clock, FrameShape, Timing, Work
from ..core.window import DelayWindow, TemporalWindow, push
from .upsample import UPSAMPLERS, Upsampler, UpsampleState, factory_defaults, make_upsampler

__all__ = [
    "Shift",
    "SC",
    "SCState",
    "SCCPair",
    "SCCState",
    "SSCC",
    "STMCStridedPair",
    "STMCStridedState",
]


# ==================================================================================================
# Shift (SC)
# ==================================================================================================


class Shift(DelayWindow):
    """SC's shift: output ``t`` is input ``t - frames`` (zeros for ``t < frames``).

    A plain layer. To have the work *before* a shift done ahead of time, wrap that work in
    :class:`SC` instead.
    """

    def __init__(self, frames: int = 1, channels: int | None = None, frame_size: Sequence[int] | None = None) -> None:
        if frames < 0:
            raise ValueError(f"Shift: frames must be >= 0, got {frames}")
        super().__init__(None, channels, frames + 1, 1, 1, 0, None)
        self.frame_size = tuple(int(v) for v in frame_size) if frame_size is not None else None
        self.frames = frames

    def extra_repr(self) -> str:
        return f"frames={self.frames}"


@dataclass
class SCState(State):
    """State of :class:`SC`.

    Attributes:
        pending_frames: input frames handed to ``step`` whose processing by the body was deferred
            (``prepare`` runs them).
        buffered: body outputs computed but not yet emitted (``frames`` at the start: the zeros).
        skip: warm-up outputs still to drop (only when the body's look-ahead exceeds the shift).
        body: the body's state.
        out: the buffered body outputs ``(B, C, buffered, ...)``.
        pending: the deferred input frames ``(B, C_in, pending_frames, ...)`` or ``None``.
    """

    pending_frames: int
    buffered: int
    skip: int
    body: State
    out: Tensor | None
    pending: Tensor | None


class SC(StreamingModule):
    """Shifted convolution: ``body`` followed by a shift of ``frames`` frames (zeros first).

    Output ``t`` is ``body``'s output ``t - frames``, so it is known before input frame ``t``
    arrives whenever ``frames > body.delay``: ``step`` then returns it at once and only *stores* the
    new input; the body processes it in :meth:`prepare` (call it between frames, when the runtime is
    idle) or, if you do not, at the start of the next ``step``. Either way the outputs are the same;
    only the latency from a frame's arrival to its output changes.

    ``body`` must not change the time rate (``stride == 1``); inside an S-CC pair that is the
    compressed rate, so ``frames`` counts compressed frames there.

    Args:
        body: the streaming module whose output is shifted.
        frames: the shift.
        channels, frame_size: the body's output channels and non-time size, if known (lets
            ``init_state`` build the whole state).
    """

    def __init__(
        self, body: nn.Module, frames: int = 1, channels: int | None = None, frame_size: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        body = as_streaming(body)
        if not isinstance(body, StreamingModule):
            raise TypeError(f"SC: body must be a streaming module, got {type(body).__name__}")
        if frames < 1:
            raise ValueError(f"SC: frames must be >= 1, got {frames}")
        if body.stride != 1:
            raise ValueError(f"SC: the body must keep the time rate (stride 1), got stride {body.stride}")
        self.body = body
        self.frames = frames
        self.channels = channels
        self.frame_size = tuple(int(v) for v in frame_size) if frame_size is not None else None
        self.deferrable = frames > body.delay
        """Whether the body's work needs only past frames (``frames > body.delay``)."""
        self.timing = Timing(body.receptive_field + frames, max(0, body.delay - frames), 1)

    @property
    def input_frame_shape(self) -> FrameShape | None:
        return self.body.input_frame_shape

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        return self.body.works(shape, dataclasses.replace(clock, precomputed=clock.precomputed or self.deferrable), dense)

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return self.body.out_shape(shape)

    def init_state(self, batch_size: int, device=None, dtype=None) -> SCState:
        device, dtype = factory_defaults(self, device, dtype)
        out = None
        if self.channels is not None and self.frame_size is not None:
            out = torch.zeros((batch_size, self.channels, self.frames, *self.frame_size), device=device, dtype=dtype)
        return SCState(
            **self._new_state_args(batch_size),
            pending_frames=0,
            buffered=self.frames,
            skip=self.delay,
            body=self.body.init_state(batch_size, device, dtype),
            out=out,
            pending=None,
        )

    def _append(self, state: SCState, y: Tensor) -> Tensor:
        out = state.out
        if out is None:
            out = y.new_zeros((y.shape[0], y.shape[1], state.buffered, *y.shape[3:]))
        return torch.cat([out, y], dim=2) if y.shape[2] else out

    def _run_pending(self, state: SCState) -> SCState:
        if not state.pending_frames:
            return state
        y, body = self.body.step(state.pending, state.body)
        out = self._append(state, y)
        return dataclasses.replace(state, pending_frames=0, buffered=out.shape[2], body=body, out=out, pending=None)

    def prepare(self, state: SCState) -> SCState:
        """Do the deferred work (the body on the stored frames), so that the next ``step`` only has
        to return what is already computed."""
        state = self._run_pending(state)
        return dataclasses.replace(state, body=self.body.prepare(state.body))

    def step(self, x: Tensor, state: SCState) -> tuple[Tensor, SCState]:
        self._check_state(x, state)
        self._check_like(x, state.out)
        state = self._run_pending(state)
        k = x.shape[2]
        drop = min(state.skip, k)
        need = k - drop
        if k and self.deferrable and state.out is not None and need <= state.buffered:
            out = state.out
            return out[:, :, :need], dataclasses.replace(
                # a copy: a runtime may reuse its input buffer for the next frame
                state, pending_frames=k, buffered=out.shape[2] - need, out=out[:, :, need:], pending=x.clone()
            )
        y, body = self.body.step(x, state.body)
        out = self._append(state, y)
        if out.shape[2] < need:
            raise RuntimeError("internal: SC has fewer body outputs than it owes")
        return out[:, :, :need], dataclasses.replace(
            state, buffered=out.shape[2] - need, skip=state.skip - drop, body=body, out=out[:, :, need:]
        )

    def flush(self, state: SCState) -> tuple[Tensor | None, SCState]:
        owed = self.delay - state.skip
        if owed == 0:
            return None, state
        state = self._run_pending(state)
        tail, body = self.body.flush(state.body)
        out = state.out if tail is None else self._append(state, tail)
        return out[:, :, :owed], dataclasses.replace(state, buffered=out.shape[2] - owed, body=body, out=out[:, :, owed:])

    def extra_repr(self) -> str:
        return f"frames={self.frames}"


# ==================================================================================================
# S-CC pair
# ==================================================================================================


@dataclass
class SCCState(State):
    """State of :class:`SCCPair`: ``skip`` = warm-up outputs still to drop (the pair's delay)."""

    skip: int
    inner: State
    up: UpsampleState


def _as_upsampler(upsampler: Upsampler | str, scale: int) -> Upsampler:
    if isinstance(upsampler, str):
        return make_upsampler(upsampler, scale)
    if not isinstance(upsampler, Upsampler):
        raise TypeError(f"upsampler must be a soi Upsampler or one of {UPSAMPLERS}, got {type(upsampler).__name__}")
    if upsampler.scale != scale:
        raise ValueError(f"the upsampler's scale ({upsampler.scale}) must equal the inner module's time stride ({scale})")
    return upsampler


class _Upsampled(StreamingModule):
    """What both ways of running a strided network and its upsampler share: ``inner`` (the
    strided network) and ``upsampler`` (scale ``s``, the inner time stride)."""

    inner: StreamingModule
    upsampler: Upsampler

    @property
    def scale(self) -> int:
        return self.upsampler.scale

    @property
    def input_frame_shape(self) -> FrameShape | None:
        return self.inner.input_frame_shape

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return self.upsampler.out_shape(self.inner.out_shape(shape))


class SCCPair(_Upsampled):
    """Strided-Cloned Convolution pair: ``inner`` at the reduced rate, then an upsampler back to full rate.

    ``inner`` starts with a time-strided layer (stride ``s``; it may contain further nested pairs);
    the layers in it run only when a compressed element is due. The pair keeps the time rate
    (``stride == 1``); its ``delay`` is ``inner.delay + upsampler.delay``.

    Args:
        inner: a streaming module with time stride ``s``, e.g.
            ``soi.Sequential(STMCConv2d(..., stride=(2, 2)), ..., STMCConvTranspose2d(...))``.
        upsampler: an :class:`Upsampler` with ``scale == s`` or a name from :data:`UPSAMPLERS`
            other than ``"transposed"`` (default ``"duplicate"``: PP extrapolation).
    """

    def __init__(self, inner: nn.Module, upsampler: Upsampler | str = "duplicate") -> None:
        super().__init__()
        inner = as_streaming(inner)
        if not isinstance(inner, StreamingModule):
            raise TypeError(f"{type(self).__name__}: inner must be a streaming module, got {type(inner).__name__}")
        self.inner = inner
        self.upsampler = _as_upsampler(upsampler, inner.stride)
        up = self.upsampler
        self.timing = Timing(inner.receptive_field + up.scale * (up.past + up.future), inner.delay + up.delay, 1)

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        elem, out = self.inner.works(shape, dataclasses.replace(clock, compressed=True), dense)
        # called on every input frame; it emits its first frame once the pair's delay has passed
        shape, w = self.upsampler.works(elem, clock, dense)
        for item in w:
            item.clock = dataclasses.replace(clock, offset=clock.offset + clock.period * self.delay)
        return shape, out + w

    def init_state(self, batch_size: int, device=None, dtype=None) -> SCCState:
        device, dtype = factory_defaults(self, device, dtype)
        return SCCState(
            **self._new_state_args(batch_size),
            skip=self.delay,
            inner=self.inner.init_state(batch_size, device, dtype),
            up=self.upsampler.init_state(batch_size, device, dtype),
        )

    def step(self, x: Tensor, state: SCCState) -> tuple[Tensor, SCCState]:
        self._check_state(x, state)
        elements, inner = self.inner.step(x, state.inner)
        n = x.shape[2]
        drop = min(state.skip, n)
        y, up = self.upsampler.step(elements, state.up, n - drop)
        return y, dataclasses.replace(state, skip=state.skip - drop, inner=inner, up=up)

    def prepare(self, state: SCCState) -> SCCState:
        return dataclasses.replace(state, inner=self.inner.prepare(state.inner))

    def flush(self, state: SCCState) -> tuple[Tensor | None, SCCState]:
        owed = self.delay - state.skip
        if owed == 0:
            return None, state
        tail, inner = self.inner.flush(state.inner)
        if tail is None:
            elems = state.up.elems
            if elems is None:
                raise ValueError(f"{type(self).__name__}.flush: nothing was streamed, so nothing is owed")
            tail = elems[:, :, :0]
        y, up = self.upsampler.step(tail, state.up, owed, final=True)
        return y, dataclasses.replace(state, skip=state.skip + owed, inner=inner, up=up)


class SSCC(SC):
    """Shifted Strided-Cloned Convolution: an :class:`SCCPair` whose output is shifted by ``frames``
    (FP): with duplication, output ``t`` is element ``floor((t-1)/s)``, so the whole pair can be
    computed between frames (see :class:`SC`)."""

    def __init__(
        self,
        inner: nn.Module,
        upsampler: Upsampler | str = "duplicate",
        frames: int = 1,
        channels: int | None = None,
        frame_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__(SCCPair(inner, upsampler), frames, channels, frame_size)

    @property
    def pair(self) -> SCCPair:
        return self.body


# ==================================================================================================
# STMC's exact treatment of strided networks (for comparison)
# ==================================================================================================


@dataclass
class STMCStridedState(State):
    """State of :class:`STMCStridedPair`: the stride phase of the next frame, the strided layer's
    shift register, and per stride phase the states of the layers after it and the upsampler's
    last elements (``None`` when it needs none)."""

    phase: int
    history: Tensor | None
    body: tuple[tuple[State, ...], ...]
    up: tuple[Tensor | None, ...]


class STMCStridedPair(_Upsampled):
    """The same strided network as :class:`SCCPair`, run as STMC does: exactly, at every frame.

    Every input frame is treated as an aligned frame: the strided layer computes an element at every
    frame, and the element of frame ``t`` goes through the layers after it with the states of stride
    phase ``t mod s`` (one set per phase; nested strided levels multiply: ``s**N`` states). The
    output at frame ``t`` is what the SOI pair would give at an aligned frame ``t``, with no
    extrapolation and no upsampling latency; nothing is saved: the deep layers run at every frame.

    Same constructor and parameter names as :class:`SCCPair`, so weights load across the two.
    ``inner`` must be a :class:`~soi.Sequential` whose first layer is the time-strided window layer
    (no look-ahead), followed by layers of stride 1 and no look-ahead.
    """

    def __init__(self, inner: nn.Module, upsampler: Upsampler | str = "duplicate") -> None:
        super().__init__()
        if not isinstance(inner, Sequential) or len(inner) == 0:
            raise TypeError(
                f"{type(self).__name__}: inner must be a soi.Sequential starting with the strided layer, got {type(inner).__name__}"
            )
        down = inner[0]
        if not isinstance(down, TemporalWindow) or down.time_stride < 1 or down.lookahead:
            raise ValueError(f"{type(self).__name__}: the first layer of inner must be a time-strided window layer without look-ahead")
        body = Timing.chain(m.timing for m in inner.layers[1:])
        if body.stride != 1 or body.delay != 0:
            raise ValueError(
                f"{type(self).__name__}: the layers after the strided one must have stride 1 and no look-ahead "
                f"(got stride {body.stride}, delay {body.delay})"
            )
        self.inner = inner
        self.upsampler = _as_upsampler(upsampler, down.time_stride)
        s = down.time_stride
        self.timing = Timing(down.receptive_field + s * (body.receptive_field - 1 + self.upsampler.aligned_past), 0, 1)

    @property
    def down(self) -> TemporalWindow:
        return self.inner[0]

    @property
    def body(self) -> list[StreamingModule]:
        """The layers after the strided one (run once per frame, with the state of its phase)."""
        return list(self.inner.layers)[1:]

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        # every frame aligned: the strided layer, the layers after it and the upsampler run at every
        # frame, the last two with the state of the frame's stride phase
        clock = dataclasses.replace(clock, phases=clock.phases * self.scale)
        down = self.down
        out = [Work(down, down.work_kind, down.macs(shape, dense), clock, clock, shape)]
        shape = down.out_shape(shape)
        body_clock = dataclasses.replace(clock, compressed=True)
        for layer in self.body:
            shape, w = layer.works(shape, body_clock, dense)
            out.extend(w)
        up = self.upsampler
        out.append(Work(up, up.work_kind, up.aligned_macs(shape), clock, clock, shape))
        return up.out_shape(shape), out

    def init_state(self, batch_size: int, device=None, dtype=None) -> STMCStridedState:
        device, dtype = factory_defaults(self, device, dtype)
        down_state = self.down.init_state(batch_size, device, dtype)
        s, a = self.scale, self.upsampler.aligned_past
        return STMCStridedState(
            **self._new_state_args(batch_size),
            phase=0,
            history=down_state.history,
            body=tuple(tuple(m.init_state(batch_size, device, dtype) for m in self.body) for _ in range(s)),
            up=tuple(self.upsampler.zero_elements(batch_size, a, device, dtype) if a else None for _ in range(s)),
        )

    def _aligned(self, y: Tensor, held: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The upsampler's aligned outputs (``r = 0``) for elements ``y`` after the ``held`` ones."""
        a = self.upsampler.aligned_past
        if a == 0:
            return self.upsampler.combine(y.unsqueeze(3), [0] * y.shape[2]), held
        if held is None:
            held = y.new_zeros((y.shape[0], y.shape[1], a, *y.shape[3:]))
        window, held = push(held, y, a)
        m = y.shape[2]
        index = torch.tensor([i + k for i in range(m) for k in range(a + 1)], device=window.device)
        return self.upsampler.combine(window.index_select(2, index).unflatten(2, (m, a + 1)), [0] * m), held

    def step(self, x: Tensor, state: STMCStridedState) -> tuple[Tensor, STMCStridedState]:
        self._check_state(x, state)
        self._check_like(x, state.history)
        down = self.down
        if down.in_channels is not None and x.shape[1] != down.in_channels:
            raise ValueError(f"{type(self).__name__}.step: expected {down.in_channels} channels, got {x.shape[1]}")
        n = x.shape[2]
        h = down.history_frames
        hist = state.history
        if hist is None:
            hist = x.new_full((x.shape[0], x.shape[1], h, *x.shape[3:]), down.fill_value)
        if n == 0:
            shape = self.out_shape((x.shape[1], *x.shape[3:]))
            return x.new_zeros((x.shape[0], shape[0], 0, *shape[1:])), dataclasses.replace(state, history=hist)
        full, new_hist = push(hist, x, h)
        s = self.scale
        bodies, ups = list(state.body), list(state.up)
        outs = []
        for i in range(n):
            p = (state.phase + i) % s
            y = down.window_op(full[:, :, i : i + h + 1])
            layer_states = list(bodies[p])
            for j, layer in enumerate(self.body):
                y, layer_states[j] = layer.step(y, layer_states[j])
            bodies[p] = tuple(layer_states)
            y, ups[p] = self._aligned(y, ups[p])
            outs.append(y)
        y = torch.cat(outs, dim=2) if n > 1 else outs[0]
        return y, dataclasses.replace(state, phase=(state.phase + n) % s, history=new_hist, body=tuple(bodies), up=tuple(ups))

    def prepare(self, state: STMCStridedState) -> STMCStridedState:
        bodies = tuple(tuple(m.prepare(st) for m, st in zip(self.body, phase)) for phase in state.body)
        return dataclasses.replace(state, body=bodies)
