"""Scattered Online Inference (SOI): S-CC pairs, shifts (SC), SS-CC and the upsamplers.

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
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from ..core.containers import Sequential, as_streaming
from ..core.state import State, StreamingModule
from ..core.timing import Clock, FrameShape, Timing, Work
from ..core.window import DelayWindow, TemporalWindow, push

__all__ = [
    "Upsampler",
    "UpsampleState",
    "Duplicate",
    "Interpolate",
    "TransposedUpsample",
    "make_upsampler",
    "UPSAMPLERS",
    "Shift",
    "SC",
    "SCState",
    "SCCPair",
    "SCCState",
    "SSCC",
    "STMCStridedPair",
    "STMCStridedState",
]

UPSAMPLERS = ("duplicate", "transposed", "nearest", "linear", "cubic")
"""Names accepted by :func:`make_upsampler` (and by ``soi.models.UNet(upsampler=...)``)."""


def _factory(module: nn.Module, device, dtype) -> tuple:
    """``device``/``dtype`` defaulting to the module's parameters (then to torch's defaults)."""
    p = next(module.parameters(), None)
    if device is None and p is not None:
        device = p.device
    if dtype is None:
        dtype = p.dtype if p is not None and p.is_floating_point() else torch.get_default_dtype()
    return device, dtype


# ==================================================================================================
# Upsamplers
# ==================================================================================================


@dataclass
class UpsampleState(State):
    """State of an upsampler inside an S-CC pair.

    Attributes:
        phase: position of the next output inside its element's period, ``0 <= phase < s``.
        ahead: index of the newest element received minus the element index of the next output
            (``-1``: the element the next output starts from has not arrived yet).
        elems: the last ``K`` elements received, ``(B, C, K, ...)``; zeros stand for the elements
            before the start. ``None`` until the size is known when built without ``frame_size``.
    """

    phase: int
    ahead: int
    elems: Tensor | None


class Upsampler(StreamingModule):
    """Base of the upsamplers that return an S-CC pair to full rate.

    A *polyphase* filter over the compressed elements: output ``t = s*j + r`` is a combination of
    elements ``j - past .. j + future`` with weights that depend on the phase ``r``. Subclasses set
    :attr:`past`, :attr:`future` and implement :meth:`combine`; an upsampler that waits for later
    elements declares that latency as its timing's ``delay`` (in full-rate frames).

    A streaming module whose ``step`` takes, besides the new elements, how many full-rate frames
    to emit (``frames``): the elements alone cannot say it, since frames between two elements
    receive none. :class:`SCCPair` passes its chunk length, so that it emits exactly one frame per
    input frame. Offline, ``forward(e)`` returns ``s * len(e)`` frames.

    Args:
        scale: the stride ``s`` of the pair.
        channels: channels of the elements (lets ``init_state`` build the whole state).
        frame_size: non-time size of the elements, e.g. ``(F,)``.
    """

    past: int = 0
    future: int = 0
    work_kind = "upsample"

    def __init__(self, scale: int, channels: int | None = None, frame_size: Sequence[int] | None = None) -> None:
        super().__init__()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"{type(self).__name__}: scale must be a positive int, got {scale!r}")
        self.scale = scale
        self.channels = channels
        self.frame_size = tuple(int(v) for v in frame_size) if frame_size is not None else None

    # -- description ------------------------------------------------------------------------------
    @property
    def out_channels(self) -> int | None:
        return self.channels

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return (self.out_channels or shape[0], *shape[1:])

    def aligned_macs(self, shape: FrameShape) -> int:
        """MACs of one aligned output (``r = 0``, exact STMC mode)."""
        return self.macs(shape)

    @property
    def history_elements(self) -> int:
        """``K``: elements kept between steps. With the uniform delay of an S-CC pair, the newest
        element is at most ``max(0, (delay + s - 2) // s)`` ahead of the next output's."""
        ahead_max = max(0, (self.delay + self.scale - 2) // self.scale)
        return self.past + 1 + ahead_max

    @property
    def aligned_past(self) -> int:
        """Past elements an *aligned* output (``r = 0``) needs (exact STMC mode)."""
        return self.past

    def _needed(self, r: int) -> tuple[int, int]:
        """Taps (relative element indices) with a non-zero weight at phase ``r``."""
        return -self.past, self.future

    def combine(self, gathered: Tensor, phases: list[int]) -> Tensor:
        """``gathered (B, C, n, taps, ...)`` (taps ``-past..future``, or only ``-aligned_past..0``
        for aligned outputs) -> ``(B, C', n, ...)``, output ``i`` at phase ``phases[i]``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"scale={self.scale}"

    # -- protocol ---------------------------------------------------------------------------------
    def zero_elements(self, batch_size: int, count: int, device=None, dtype=None) -> Tensor | None:
        """``count`` zero elements (the ones before the start), or ``None`` when not sized yet."""
        if self.channels is None or self.frame_size is None:
            return None
        device, dtype = _factory(self, device, dtype)
        return torch.zeros((batch_size, self.channels, count, *self.frame_size), device=device, dtype=dtype)

    def init_state(self, batch_size: int, device=None, dtype=None) -> UpsampleState:
        return UpsampleState(
            **self._new_state_args(batch_size),
            phase=0,
            ahead=-1,
            elems=self.zero_elements(batch_size, self.history_elements, device, dtype),
        )

    def _check(self, x: Tensor, state: UpsampleState) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() < 3:
            raise ValueError(f"{name}.step: expected elements (B, C, m, ...), got {getattr(x, 'shape', type(x).__name__)}")
        self._check_state(x, state)
        if self.channels is not None and x.shape[1] != self.channels:
            raise ValueError(f"{name}.step: expected {self.channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        if state.elems is not None and (
            tuple(state.elems.shape[3:]) != tuple(x.shape[3:]) or state.elems.shape[1] != x.shape[1]
        ):
            raise ValueError(
                f"{name}.step: elements of shape {tuple(x.shape)} do not match the state's "
                f"{tuple(state.elems.shape)} outside the time axis"
            )

    def step(self, x: Tensor, state: UpsampleState, frames: int = 0, final: bool = False) -> tuple[Tensor, UpsampleState]:  # type: ignore[override]
        """Receive the ``m = x.shape[2]`` new elements and emit the next ``frames`` output frames.

        ``final=True`` (end of stream) treats the elements after the last one as copies of it.
        Without it, every element an output needs must have arrived (:class:`SCCPair` guarantees
        this through its ``delay``); an internal error is raised otherwise.
        """
        self._check(x, state)
        n = frames
        s, a = self.scale, self.past
        m = x.shape[2]
        elems = state.elems
        if elems is None:
            elems = x.new_zeros((x.shape[0], x.shape[1], self.history_elements, *x.shape[3:]))
        keep = elems.shape[2]
        big, held = push(elems, x, keep)
        length = big.shape[2]
        base = length - 1 - (state.ahead + m)  # position of the next output's element in `big`
        r0 = state.phase
        if n > 0:
            taps = range(-a, self.future + 1)
            positions, phases = [], []
            for i in range(n):
                u = r0 + i
                p, r = base + u // s, u % s
                lo, hi = self._needed(r)
                if p + lo < 0 or (p + hi > length - 1 and not final):
                    raise RuntimeError(
                        f"internal: {type(self).__name__} asked for output phase {r} before its elements "
                        f"arrived (position {p}, taps {lo}..{hi}, {length} elements held)"
                    )
                positions.extend(min(max(p + k, 0), length - 1) for k in taps)
                phases.append(r)
            if positions == list(range(positions[0], positions[0] + len(positions))):
                # one run of consecutive elements (a one-frame step): a view, which compilers and
                # ONNX runtimes handle without an indexed gather
                gathered = big.narrow(2, positions[0], len(positions))
            else:
                gathered = big.index_select(2, torch.tensor(positions, device=big.device))
            gathered = gathered.unflatten(2, (n, len(taps)))
            y = self.combine(gathered, phases)
        else:
            out_c = self.out_channels if self.out_channels is not None else x.shape[1]
            y = x.new_zeros((x.shape[0], out_c, 0, *x.shape[3:]))
        advance = (r0 + n) // s
        if not final and base + advance - a < length - keep:
            raise RuntimeError(f"internal: {type(self).__name__} would drop an element it still needs")
        # no element arrived: push keeps the held elements the same tensor (not a view of it), so
        # a compiled stream sees them unchanged
        new = dataclasses.replace(state, phase=(r0 + n) % s, ahead=state.ahead + m - advance, elems=held)
        return y, new

    def forward(self, x: Tensor) -> Tensor:
        """Offline: ``(B, C, J, ...)`` elements -> ``(B, C', s*J, ...)`` frames (the end held)."""
        state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        y, _ = self.step(x, state, self.scale * x.shape[2], final=True)
        return y


class Duplicate(Upsampler):
    """Clone the last element (the paper's default extrapolation): output ``t`` is element
    ``floor(t/s)``. No multiplications, no latency."""

    past = 0
    future = 0

    def combine(self, gathered: Tensor, phases: list[int]) -> Tensor:
        return gathered[:, :, :, 0]


def _keys_cubic(x: float, a: float = -0.75) -> tuple[float, float, float, float]:
    """Keys' cubic convolution weights (torch's bicubic, ``A = -0.75``) for taps -1, 0, 1, 2."""

    def near(t: float) -> float:  # |t| <= 1
        return ((a + 2) * t - (a + 3)) * t * t + 1

    def far(t: float) -> float:  # 1 < |t| < 2
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

    return far(x + 1), near(x), near(1 - x), far(2 - x)


class Interpolate(Upsampler):
    """Interpolation between consecutive elements; element ``j`` sits at frame ``s*j`` (the last
    input frame it covers), so frames in between wait for element ``j+1`` (appendix D of the paper).

    Modes and the latency they add (``delay``, in full-rate frames):

    * ``"nearest"``: the closer of elements ``j``, ``j+1`` (ties to ``j+1``); ``floor(s/2)``.
    * ``"linear"``: ``(1 - r/s) e_j + (r/s) e_{j+1}``; ``s - 1``.
    * ``"cubic"``: Keys' cubic convolution (``A = -0.75``, as torch's bicubic) over elements
      ``j-1 .. j+2``; ``2s - 1``.

    Elements before the start are zeros (like every history in soi); after the end of the stream
    the last element is held. Aligned frames (``r = 0``) are the element itself.
    """

    MODES = ("nearest", "linear", "cubic")

    def __init__(self, scale: int, mode: str = "linear", channels: int | None = None, frame_size=None) -> None:
        if mode not in self.MODES:
            raise ValueError(f"Interpolate: mode must be one of {self.MODES}, got {mode!r}")
        super().__init__(scale, channels, frame_size)
        self.mode = mode
        self.past, self.future = {"nearest": (0, 1), "linear": (0, 1), "cubic": (1, 2)}[mode]
        s = scale
        if mode == "nearest":
            self._table = [(1.0, 0.0) if 2 * r < s else (0.0, 1.0) for r in range(s)]
        elif mode == "linear":
            self._table = [(1 - r / s, r / s) for r in range(s)]
        else:
            self._table = [_keys_cubic(r / s) for r in range(s)]
        latency = 0 if s == 1 else {"nearest": s // 2, "linear": s - 1, "cubic": 2 * s - 1}[mode]
        self.timing = Timing(delay=latency)

    @property
    def aligned_past(self) -> int:
        return 0  # an aligned frame is the element itself

    def _needed(self, r: int) -> tuple[int, int]:
        nz = [k - self.past for k, w in enumerate(self._table[r]) if w != 0.0]
        return min(nz), max(nz)

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        if self.mode == "nearest":
            return 0
        return (self.past + 1 + self.future) * math.prod(shape)

    def aligned_macs(self, shape: FrameShape) -> int:
        return 0

    def combine(self, gathered: Tensor, phases: list[int]) -> Tensor:
        if gathered.shape[3] == 1:  # aligned: the element itself
            return gathered[:, :, :, 0]
        if self.mode == "nearest":
            pick = torch.tensor([self._table[r].index(1.0) for r in phases], device=gathered.device)
            return gathered[:, :, torch.arange(len(phases), device=gathered.device), pick]
        w = torch.tensor([self._table[r] for r in phases], dtype=gathered.dtype, device=gathered.device)
        return torch.einsum("bcnk...,nk->bcn...", gathered, w)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode!r}"


class TransposedUpsample(Upsampler):
    """Learned upsampling: a transposed convolution in time with stride ``s`` (``kernel = s *
    elements``), applied at every non-time position, causal (no anti-causal tail, no latency).

    Output ``t = s*j + r`` is ``sum_q W[:, :, r + s*q]^T e_{j-q}`` for ``q < elements`` (+ bias):
    only real multiplications are done, none with the zeros a transposed convolution inserts.
    Offline it equals ``torch.nn.ConvTransposeNd`` with kernel ``(s*elements, 1, ...)`` and stride
    ``(s, 1, ...)`` cropped to its first ``s*J`` frames. ``weight`` is ``(C_in, C_out/groups, s*elements)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        scale: int = 2,
        elements: int = 1,
        groups: int = 1,
        bias: bool = True,
        frame_size: Sequence[int] | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(scale, in_channels, frame_size)
        out_channels = in_channels if out_channels is None else out_channels
        if elements < 1:
            raise ValueError(f"TransposedUpsample: elements must be >= 1, got {elements}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"TransposedUpsample: channels ({in_channels}, {out_channels}) must be divisible by groups ({groups})")
        self.in_channels = in_channels
        self._out_channels = out_channels
        self.elements = elements
        self.groups = groups
        self.past = elements - 1
        self.future = 0
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels // groups, scale * elements, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As torch.nn.ConvTransposeNd: fan-in computed from weight dim 1.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def out_channels(self) -> int:
        return self._out_channels

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        return self.elements * self.in_channels * (self._out_channels // self.groups) * math.prod(shape[1:])

    def combine(self, gathered: Tensor, phases: list[int]) -> Tensor:
        s, a, g = self.scale, self.past, self.groups
        b_, c = gathered.shape[:2]
        n, taps = gathered.shape[2], gathered.shape[3]
        rest = gathered.shape[4:]
        # tap t (element j - a + t) uses kernel index r + s*(a - t)
        kidx = torch.tensor([[r + s * (a - t) for t in range(taps)] for r in phases], device=gathered.device)
        w = self.weight[:, :, kidx]  # (C_in, C_out/g, n, taps)
        w = w.view(g, c // g, w.shape[1], n, taps)
        x = gathered.view(b_, g, c // g, n, taps, *rest)
        y = torch.einsum("bgcnq...,gcdnq->bgdn...", x, w).flatten(1, 2)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, *([1] * (y.dim() - 2)))
        return y

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self._out_channels}, scale={self.scale}, elements={self.elements}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


def make_upsampler(
    name: str, scale: int, channels: int | None = None, frame_size: Sequence[int] | None = None, **kwargs
) -> Upsampler:
    """An upsampler by name: one of :data:`UPSAMPLERS` (``"transposed"`` needs ``channels``)."""
    if name == "duplicate":
        return Duplicate(scale, channels, frame_size)
    if name in Interpolate.MODES:
        return Interpolate(scale, name, channels, frame_size)
    if name == "transposed":
        if channels is None:
            raise ValueError("make_upsampler('transposed') needs channels= (it has learned weights)")
        return TransposedUpsample(channels, scale=scale, frame_size=frame_size, **kwargs)
    raise ValueError(f"unknown upsampler {name!r}; valid: {', '.join(UPSAMPLERS)}")


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

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return self.body.out_shape(shape)

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        return self.body.works(shape, dataclasses.replace(clock, precomputed=clock.precomputed or self.deferrable), dense)

    def init_state(self, batch_size: int, device=None, dtype=None) -> SCState:
        device, dtype = _factory(self, device, dtype)
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


class SCCPair(StreamingModule):
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

    @property
    def scale(self) -> int:
        return self.upsampler.scale

    @property
    def input_frame_shape(self) -> FrameShape | None:
        return self.inner.input_frame_shape

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return self.upsampler.out_shape(self.inner.out_shape(shape))

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        elem, out = self.inner.works(shape, dataclasses.replace(clock, compressed=True), dense)
        # one upsampled frame per input frame, the first once the pair's delay has passed
        up_clock = dataclasses.replace(clock, offset=clock.offset + clock.period * self.delay)
        shape, w = self.upsampler.works(elem, up_clock, dense)
        return shape, out + w

    def init_state(self, batch_size: int, device=None, dtype=None) -> SCCState:
        device, dtype = _factory(self, device, dtype)
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


class STMCStridedPair(StreamingModule):
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

    @property
    def scale(self) -> int:
        return self.down.time_stride

    @property
    def input_frame_shape(self) -> FrameShape | None:
        return self.down.input_frame_shape

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return self.upsampler.out_shape(self.inner.out_shape(shape))

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        # every frame aligned: the strided layer, the layers after it and the upsampler run at every frame
        down = self.down
        out = [Work(down, down.work_kind, m, clock)] if (m := down.macs(shape, dense)) else []
        shape = down.out_shape(shape)
        body_clock = dataclasses.replace(clock, compressed=True)
        for layer in self.body:
            shape, w = layer.works(shape, body_clock, dense)
            out.extend(w)
        up = self.upsampler
        if macs := up.aligned_macs(shape):
            out.append(Work(up, up.work_kind, macs, clock))
        return up.out_shape(shape), out

    def init_state(self, batch_size: int, device=None, dtype=None) -> STMCStridedState:
        device, dtype = _factory(self, device, dtype)
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
