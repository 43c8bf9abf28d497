"""The upsamplers that return an S-CC pair to full rate: duplication (the paper's PP default),
interpolation (nearest, linear, cubic: appendix D, they add latency) and learned transposed
convolution in time (appendix C).

Element ``j`` of a pair of stride ``s`` is made at input frame ``s*j``; an upsampler emits exactly
one output per input frame::

    elements:   e0          e1          e2
    outputs:    y0 y1 .. ys-1  ys ..       (duplication: y_t = e_floor(t/s))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from ..core.state import State, StreamingModule
from ..core.timing import FrameShape, Timing
from ..core.window import push
from ..layers.conv import conv_parameters, reset_conv_parameters

__all__ = [
    "Upsampler",
    "UpsampleState",
    "Duplicate",
    "Interpolate",
    "TransposedUpsample",
    "make_upsampler",
    "UPSAMPLERS",
    "factory_defaults",
]

UPSAMPLERS = ("duplicate", "transposed", "nearest", "linear", "cubic")
"""Names accepted by :func:`make_upsampler` (and by ``soi.models.UNet(upsampler=...)``)."""


def factory_defaults(module: nn.Module, device, dtype) -> tuple:
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
        device, dtype = factory_defaults(self, device, dtype)
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
        self._check_like(x, state.elems)
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
        self.weight, self.bias = conv_parameters(
            in_channels, out_channels, groups, (scale * elements,), True, bias, device, dtype, "TransposedUpsample"
        )
        self.in_channels, self._out_channels, self.groups = in_channels, out_channels, groups
        self.elements, self.past, self.future = elements, elements - 1, 0

    def reset_parameters(self) -> None:
        reset_conv_parameters(self.weight, self.bias)

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


