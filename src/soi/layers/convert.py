"""Turn a plain PyTorch model into its streaming twin, with the same weights.

Supported: ``nn.Conv{1,2,3}d``, ``nn.ConvTranspose{1,2,3}d`` (a time stride upsamples), ``nn.AvgPool{1,2,3}d``,
``nn.MaxPool{1,2,3}d``, frame-wise modules (activations, BatchNorm, dropout, ``nn.Linear`` over
channels), inside ``nn.Sequential`` or ``soi``'s containers. Time padding is read from the model:

* an explicit ``nn.ZeroPad*d`` / ``nn.ConstantPad*d`` right before a convolution or pooling, padding
  time by ``(left, right)`` with ``left + right = (k-1)*d``: causal when ``right = 0``, otherwise
  ``right`` frames of look-ahead;
* symmetric time padding ``p`` on the layer itself with ``2p = (k-1)*d`` ("same" length): ``p``
  frames of look-ahead.

Anything else cannot stream frame by frame with the same output; :func:`convert` then raises one
``ValueError`` listing every such module and why.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from ..core.containers import (
    Concat,
    FrameWise,
    Residual,
    Sequential,
    Wrapper,
    frame_wise_problem,
)
from ..core.state import StreamingModule
from ..core.window import TemporalWindow, WindowState
from .conv import ModePaddedConvNd, STMCConvNd
from .conv_transpose import STMCConvTransposeNd
from .pooling import STMCAvgPoolNd, STMCMaxPoolNd

__all__ = ["ConversionError", "EndPadded", "convert"]

_CONVS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_CONV_TS = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}
_AVGS = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}
_MAXS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
_PADS = {
    nn.ZeroPad1d: 1, nn.ZeroPad2d: 2, nn.ZeroPad3d: 3,
    nn.ConstantPad1d: 1, nn.ConstantPad2d: 2, nn.ConstantPad3d: 3,
}  # fmt: skip


class ConversionError(ValueError):
    """Raised by :func:`convert`; ``problems`` lists ``(path, reason)`` for every unsupported
    module (its path in the model) or traced node (the module's path, or the node's name for a
    function or method, the reason starting with the operation)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {path}: {reason}" for path, reason in problems)
        super().__init__(f"cannot convert {len(problems)} part(s) of the model to streaming:\n{lines}")


class EndPadded(Wrapper):
    """A window layer whose stream ends with ``frames`` frames of padding instead of its look-ahead:
    a torch layer padded less than ``(k-1)*d`` in time (``padding=0``, "valid"), whose output is
    shorter than its input.

    The layer's look-ahead is ``(k-1)*d - left``: its outputs begin once the window is full (the
    warm-up is its ``delay``), output ``j`` equals torch's output ``j`` frame for frame, and
    :meth:`flush` emits only the outputs that torch's ``right`` frames of end padding give.
    """

    def __init__(self, layer: TemporalWindow, frames: int) -> None:
        super().__init__()
        if not 0 <= frames < layer.lookahead:
            raise ValueError(f"EndPadded: frames must be from 0 to the look-ahead - 1 = {layer.lookahead - 1}, got {frames}")
        self.layer = layer
        self.frames = frames

    @property
    def inner(self) -> StreamingModule:
        return self.layer

    def flush(self, state: WindowState) -> tuple[Tensor | None, WindowState]:
        if self.frames == 0:
            return None, state
        hist = state.history
        if hist is None:
            raise ValueError("EndPadded.flush: nothing was streamed, so nothing is owed")
        pad = hist.new_full((hist.shape[0], hist.shape[1], self.frames, *hist.shape[3:]), self.layer.fill_value)
        return self.layer.step(pad, state)

    def extra_repr(self) -> str:
        return f"end_padding={self.frames}"


def _dims(module: nn.Module, table: dict[type, int]) -> int | None:
    """The dimensions of ``module`` if it is one of ``table``'s classes, or a subclass that keeps
    its ``forward`` (torchvision's ``Conv3DSimple`` only changes ``__init__``)."""
    for cls, dims in table.items():
        if type(module) is cls or (isinstance(module, cls) and type(module).forward is cls.forward):
            return dims
    return None


class _Converter:
    def __init__(self, causal: bool = False) -> None:
        self.problems: list[tuple[str, str]] = []
        self.causal = causal

    def fail(self, path: str, reason: str) -> None:
        self.problems.append((path or "<model>", reason))

    # -- time padding ---------------------------------------------------------------------------
    def pad_of(self, pad: nn.Module, dims: int, path: str) -> tuple[tuple[int, int], tuple[int, ...], float] | None:
        """(time (left, right), symmetric non-time padding, value) of a pad module, or None."""
        p = pad.padding
        p = (p,) * (2 * dims) if isinstance(p, int) else tuple(p)
        if len(p) != 2 * dims:
            self.fail(path, f"{type(pad).__name__} pads {len(p) // 2} axes but the next layer has {dims}")
            return None
        # F.pad order: last axis first, so time (dimension 2) is the last pair.
        pairs = [(p[2 * i], p[2 * i + 1]) for i in range(dims)][::-1]
        time_pad, rest = pairs[0], pairs[1:]
        if any(left != right for left, right in rest):
            self.fail(path, f"asymmetric padding of a non-time axis {rest} is not supported")
            return None
        return time_pad, tuple(left for left, _ in rest), float(getattr(pad, "value", 0.0))

    def lookahead(self, path: str, history: int, time_pad: tuple[int, int]) -> tuple[int, int] | None:
        """``(look-ahead, end padding)`` of a window layer padded ``(left, right)`` in time.

        ``left + right = (k-1)*d`` keeps the length: the look-ahead is ``right``. Less padding
        (a "valid" layer: none) shortens the sequence as torch does: the outputs begin once the
        window is full (the look-ahead ``(k-1)*d - left`` is the warm-up) and the end of the
        stream is padded with ``right`` frames only. More padding lengthens it: refused.
        """
        left, right = time_pad
        if self.causal:
            left, right = left + right, 0
        if left + right > history:
            self.fail(
                path,
                f"time padding ({left}, {right}) changes the sequence length; streaming needs "
                f"left + right <= (k-1)*d = {history} (causal: ({history}, 0); valid: (0, 0))",
            )
            return None
        return history - left, right

    def layer(
        self, m: nn.Module, path: str, pad: tuple[tuple[int, int], tuple[int, ...], float] | None, frame: tuple[int, ...] | None = None
    ) -> nn.Module | None:
        """A conv/transposed conv/pool converted, or None (with the reason recorded); ``frame``:
        the ``(C, *non-time sizes)`` of its input frames, when known (the state is then built whole)."""
        for table, kind in ((_CONVS, "conv"), (_CONV_TS, "convT"), (_AVGS, "avg"), (_MAXS, "max")):
            dims = _dims(m, table)
            if dims is not None:
                break
        k = m.kernel_size if not isinstance(m.kernel_size, int) else (m.kernel_size,) * dims
        same_time: tuple[int, int] | None = None
        if kind in ("avg", "max"):
            s = m.stride if not isinstance(m.stride, int) else (m.stride,) * dims
            own_pad = m.padding if not isinstance(m.padding, int) else (m.padding,) * dims
            d = getattr(m, "dilation", 1)
            d = d if not isinstance(d, int) else (d,) * dims
        else:
            s, d = tuple(m.stride), tuple(m.dilation)
            if m.padding == "valid":
                own_pad = (0,) * dims
            elif m.padding == "same":
                # torch pads (k-1)*d in total, the odd frame on the right: in time that is a
                # look-ahead of the right half; the other axes must split it evenly
                totals = [di * (ki - 1) for ki, di in zip(k, d)]
                odd = [ax for ax, t in enumerate(totals[1:], start=1) if t % 2]
                if odd:
                    self.fail(path, f"padding='same' with an even kernel in non-time axis {odd[0]} pads it unevenly; soi's layers pad the non-time axes symmetrically")
                    return None
                same_time = (totals[0] // 2, totals[0] - totals[0] // 2)
                own_pad = (0, *(t // 2 for t in totals[1:]))
            else:
                own_pad = tuple(m.padding)
        history = (k[0] - 1) * d[0]
        mode = getattr(m, "padding_mode", "zeros") if kind == "conv" else "zeros"
        if mode != "zeros":
            # torch pads every axis in the mode; a stream can pad the non-time axes of each frame so
            if own_pad[0] or (same_time is not None and any(same_time)):
                self.fail(
                    path,
                    f"padding_mode={mode!r} pads time too: a {mode} border in time is made of frames after the "
                    "first (or, for 'circular', the sequence end), which a stream does not have when it starts; "
                    "pad time with zeros (nn.ZeroPad / F.pad before it, or padding 0 in time) and keep the mode "
                    "for the other axes",
                )
                return None
            if pad is not None and any(pad[1]):
                self.fail(path, f"a zero pad module of the non-time axes before a convolution with padding_mode={mode!r} is not supported")
                return None
        fill = float("-inf") if kind == "max" else 0.0
        if pad is not None:
            time_pad, rest_pad, value = pad
            if own_pad[0] or same_time:
                self.fail(path, "time padded both by the pad module before it and by the layer itself")
                return None
            if kind == "max":
                fill = value
            elif value != 0.0:
                self.fail(path, f"constant padding with {value} before a {type(m).__name__}; only zero padding streams")
                return None
            if kind == "convT":
                self.fail(path, "a pad module before a transposed convolution is not supported")
                return None
            rest_pad = tuple(a + b for a, b in zip(rest_pad, own_pad[1:]))
        elif same_time is not None:
            time_pad, rest_pad = same_time, tuple(own_pad[1:])
        else:
            time_pad, rest_pad = (own_pad[0], own_pad[0]), tuple(own_pad[1:])
        if kind == "convT":
            # The torch output has u*T + H + 1 + output_padding - 2p - u frames; a stream gives u
            # frames per frame (the first p of them held back), so only u*T streams.
            u, p, op = s[0], own_pad[0], m.output_padding[0]
            extra = history + 1 + op - 2 * p - u
            if extra:
                self.fail(
                    path,
                    f"transposed convolution with time stride {u}, padding {p} and output_padding {op} gives {u}*T {extra:+d} "
                    f"frames; a stream gives {u} per frame, so it needs (k-1)*d + 1 + output_padding - 2*padding = stride",
                )
                return None
            time_pad = (history - p, p) if not self.causal else (history, 0)
        if kind == "avg" and not m.count_include_pad and any(time_pad):
            self.fail(path, "count_include_pad=False with time padding: the frames before a stream are zeros in its history, and they count; pad non-time axes only, or count the padding")
            return None
        ends = self.lookahead(path, history, time_pad)
        if ends is None:
            return None
        f, end = ends
        if kind == "conv":
            modal = mode != "zeros" and any(rest_pad)
            new = (ModePaddedConvNd if modal else STMCConvNd)(
                dims, m.in_channels, m.out_channels, k, stride=s, padding=rest_pad, dilation=d,
                groups=m.groups, bias=m.bias is not None, lookahead=f,
                device=m.weight.device, dtype=m.weight.dtype, **({"padding_mode": mode} if modal else {}),
            )  # fmt: skip
        elif kind == "convT":
            new = STMCConvTransposeNd(
                dims, m.in_channels, m.out_channels, k, stride=s, padding=rest_pad,
                output_padding=tuple(m.output_padding[1:]), groups=m.groups, bias=m.bias is not None,
                dilation=d, lookahead=f, device=m.weight.device, dtype=m.weight.dtype,
            )  # fmt: skip
        elif kind == "avg":
            if m.ceil_mode or getattr(m, "divisor_override", None):
                self.fail(path, "ceil_mode / divisor_override are not supported")
                return None
            new = STMCAvgPoolNd(dims, None, k, stride=s, padding=rest_pad, count_include_pad=m.count_include_pad, lookahead=f)
        else:
            if m.ceil_mode or m.return_indices:
                self.fail(path, "ceil_mode / return_indices are not supported")
                return None
            new = STMCMaxPoolNd(dims, None, k, stride=s, padding=rest_pad, dilation=d, lookahead=f, fill_value=fill)
        if kind in ("conv", "convT"):
            new.load_state_dict(m.state_dict())
        if frame is not None:
            new.in_channels, new.frame_size = frame[0], tuple(frame[1:])
        return new if end == f else EndPadded(new, end)

    # -- structure --------------------------------------------------------------------------------
    def sequence(self, modules: list[tuple[str, nn.Module]]) -> list[nn.Module]:
        out: list[nn.Module] = []
        pending_pad: tuple[Any, str] | None = None
        for path, m in modules:
            pad_dims = _dims(m, _PADS)
            if pad_dims is not None:
                if pending_pad is not None:
                    self.fail(pending_pad[1], "two pad modules in a row")
                pending_pad = (m, path)
                continue
            pad = None
            if pending_pad is not None:
                pad_module, pad_path = pending_pad
                pending_pad = None
                target_dims = next((_dims(m, t) for t in (_CONVS, _CONV_TS, _AVGS, _MAXS) if _dims(m, t)), None)
                if target_dims is None:
                    self.fail(pad_path, f"a pad module must be followed by a convolution or pooling, not {type(m).__name__}")
                else:
                    pad = self.pad_of(pad_module, target_dims, pad_path)
                    if pad is None:
                        continue
            out.append(self.module(m, path, pad))
        if pending_pad is not None:
            self.fail(pending_pad[1], "a pad module at the end of a sequence pads the output; it cannot stream")
        return out

    def module(self, m: nn.Module, path: str, pad=None) -> nn.Module:
        try:
            return self._module(m, path, pad)
        except ValueError as e:  # a container whose children's timings do not compose (Timing says why)
            self.fail(path, str(e))
            return m

    def _module(self, m: nn.Module, path: str, pad=None) -> nn.Module:
        if any(_dims(m, t) for t in (_CONVS, _CONV_TS, _AVGS, _MAXS)):
            layer = self.layer(m, path, pad)
            return layer if layer is not None else m  # a failure is already recorded
        if isinstance(m, FrameWise):
            return m
        if isinstance(m, (nn.Sequential, Sequential)):
            items = m.layers if isinstance(m, Sequential) else m
            prefix = f"{path}." if path else ""
            sub = "layers." if isinstance(m, Sequential) else ""
            return Sequential(*self.sequence([(f"{prefix}{sub}{name}", c) for name, c in items.named_children()]))
        if isinstance(m, Residual):
            return Residual(self.module(m.body, f"{path}.branches.1"))
        if isinstance(m, Concat):
            return Concat(*(self.module(b, f"{path}.branches.{i}") for i, b in enumerate(m.branches)))
        if isinstance(m, StreamingModule):
            return m
        problem = frame_wise_problem(m)
        if problem is None:
            return FrameWise(m)
        if _dims(m, _PADS) is None and type(m).__name__.endswith(("Pad1d", "Pad2d", "Pad3d")):
            problem = f"{type(m).__name__} reads future or mirrored frames; only zero/constant padding streams"
        elif type(m).forward is not nn.Module.forward and list(m.children()):
            problem = f"{type(m).__name__} has a custom forward(); rebuild it from soi containers (Sequential, Concat, Residual)"
        self.fail(path, problem)
        return m


def _module_path(module: nn.Module, causal: bool) -> tuple[nn.Module | None, list[tuple[str, str]]]:
    conv = _Converter(causal)
    # Work on a copy so that the original and its twin never share modules (BatchNorm statistics).
    out = conv.module(copy.deepcopy(module), "")
    if not conv.problems and not isinstance(out, StreamingModule):
        conv.fail("", f"{type(module).__name__} did not convert to a streaming module")
    return out, conv.problems


def convert(module: nn.Module, example_input: Tensor | None = None, *, causal: bool = False) -> StreamingModule:
    """The streaming twin of ``module`` with the same weights (``module`` is left unchanged).

    ``nn.Sequential`` models and soi's containers convert module by module. Any other model (a
    ``forward`` that adds a residual, concatenates branches, gates, pools globally, runs a
    recurrent layer) is traced with ``torch.fx`` and rebuilt as a :class:`~soi.layers.graph.
    StreamGraph` (see :mod:`soi.layers.graph`); ``example_input`` ``(B, C, T, ...)`` gives the
    frame shape it streams (without it, the shape is guessed from the first layer: channels and
    32 in every non-time axis). A mean over time becomes the causal cumulative mean: frame ``t``
    holds what the model computes on frames ``0..t``.

    ``causal=True`` is a *different function*: every symmetric (or right) time padding becomes
    left padding, so no layer looks ahead, for models to be trained causal as the STMC variants of
    the SOI paper are. The default keeps the model's function exactly (look-ahead where it pads
    on the right).

    Raises:
        ConversionError: listing every module or traced node that cannot be converted, with the
            operation and the reason, all at once.

    >>> net = nn.Sequential(nn.ZeroPad1d((2, 0)), nn.Conv1d(1, 8, 3), nn.ReLU())
    >>> stream = soi.convert(net).eval()
    >>> torch.equal(stream(x), net(x))   # offline: the same function
    """
    sequential = isinstance(module, (nn.Sequential, Sequential, Concat, Residual, StreamingModule))
    # Module by module first, for a bare layer too (nn.Conv1d, nn.GRU): tracing its forward would
    # only see the functional op.
    out, problems = _module_path(module, causal)
    if not problems:
        return out.train(module.training)
    custom = any("custom forward()" in reason for _, reason in problems)
    if isinstance(module, StreamingModule) and not custom:
        raise ConversionError(problems)
    from .trace import convert_graph

    graph, graph_problems = convert_graph(module, example_input, causal)
    if graph is not None:
        return graph.train(module.training)
    if sequential and not custom:
        raise ConversionError(problems)
    raise ConversionError(graph_problems)
