"""Streaming graphs: a model's traced ``forward`` rebuilt from streaming nodes.

:func:`soi.convert` traces a model whose ``forward`` is more than a chain (a residual add, a
``torch.cat`` of branches, a squeeze-excitation gate, a global pool and a linear head, a recurrent
layer between convolutions) with ``torch.fx`` and rebuilds it as a :class:`StreamGraph`: one
registered node per operation, run in topological order on every chunk.

What each value of the traced graph is, in a stream, follows from running the model on the example
input at two sequence lengths and two batch sizes (the axis whose size follows the length is time):

* a **stream** (its torch form has a time axis; streamed, that axis holds the chunk's frames);
* a **pooled** value, time-free in torch (``x.mean(dim=(2, 3))``, ``AdaptiveAvgPool3d(1)``): the
  mean over time becomes the causal *cumulative* mean, so frame ``t`` of the stream holds the
  value the torch model computes on frames ``0..t`` (the last frame equals the offline value). Its
  stream has a time axis of its own: in place of torch's size-1 axis (*kept*) or inserted where
  torch has none (*dropped*);
* a **constant** (a parameter read with ``self.weight``) or a **static** Python value (sizes read
  with ``x.shape`` or ``x.size(0)``; a size of the time axis is refused: a stream has no length).

Nodes:

* window layers (convolutions, transposed convolutions, pooling) and frame-wise modules on streams
  become soi's own layers (consecutive ones a :class:`soi.Sequential`, so BatchNorm folds at
  export); recurrent layers a :class:`~soi.layers.recurrent.Recurrent`;
* a time reduction becomes a :class:`CumulativePool`;
* a time slice that crops a fixed number of frames at the start and the end (``x[:, :, a:-b]``,
  ``x[:, :, a : x.shape[2] - b]``) becomes a :class:`TimeCrop`;
* every other operation is a :class:`FrameOp`, applied to each frame on its own (or to the whole
  chunk at once where that gives the same result), checked at conversion: on the example input it
  must give what torch gives, or it is reported as mixing frames;
* branches meeting at an operation (``+``, ``*``, ``torch.cat``) are aligned at construction: the
  input with less look-ahead goes through a :class:`soi.DelayLine` (registered in ``align``).

The graph streams frames of the example input's frame shape (its non-time sizes): the shapes of
every node are fixed when it is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.containers import DelayLine
from ..core.state import State, StreamingModule
from ..core.timing import Clock, FrameShape, Timing, Work
from ..core.window import DelayWindow, WindowState
from .recurrent import Recurrent, RecurrentState

__all__ = ["Constant", "CumulativePool", "Form", "FrameOp", "GraphState", "Ref", "StreamGraph", "TimeCrop", "TracedRecurrent"]


# ==================================================================================================
# Values: what a traced value is in a stream
# ==================================================================================================


@dataclass(frozen=True)
class Form:
    """How a traced value lives in a stream.

    ``kind``: ``"stream"`` (the torch value has time in axis ``ta``), ``"kept"`` (time-free in
    torch with a size-1 axis ``ta``, which the stream fills with frames), ``"dropped"`` (time-free,
    the stream inserts time as axis ``ta``), ``"const"`` or ``"static"`` (no frames).
    """

    kind: str
    ta: int = -1

    @property
    def timed(self) -> bool:
        return self.kind in ("stream", "kept", "dropped")


@dataclass(frozen=True)
class Ref:
    """An input of a node: value ``src`` of the graph, in form ``form``, through alignment delay
    ``align`` (an index into :attr:`StreamGraph.align`; -1 for none)."""

    src: int
    form: Form
    align: int = -1


def map_refs(obj: Any, fn: Callable[[Ref], Any]) -> Any:
    """``obj`` (nested tuples, lists, dicts, slices) with every :class:`Ref` replaced by ``fn(ref)``."""
    if isinstance(obj, Ref):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(map_refs(o, fn) for o in obj)
    if isinstance(obj, list):
        return [map_refs(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: map_refs(v, fn) for k, v in obj.items()}
    if isinstance(obj, slice):
        return slice(map_refs(obj.start, fn), map_refs(obj.stop, fn), map_refs(obj.step, fn))
    return obj


def refs_in(obj: Any) -> list[Ref]:
    out: list[Ref] = []
    map_refs(obj, lambda r: out.append(r))
    return out


def frames_in(value: Any, form: Form, n: int) -> list[Any]:
    """The ``n`` frames of a streamed value in their torch form (a one-frame sequence for a stream),
    cut in one call: its backward assembles the gradient once, where ``n`` single-frame slices
    would each write a zero tensor of the whole value (quadratic in the length)."""
    if form.kind in ("stream", "kept"):
        return list(value.split(1, dim=form.ta))
    if form.kind == "dropped":
        return list(value.unbind(form.ta))
    return [value] * n


def frames_of(value: Any, form: Form) -> int:
    return value.shape[form.ta]


def assemble(outs: list[Any], form: Form | tuple) -> Any:
    """The frames ``outs`` (torch forms, one per frame) as one streamed value of ``form``."""
    if isinstance(form, tuple):
        return tuple(assemble([o[i] for o in outs], f) for i, f in enumerate(form))
    if form.kind in ("stream", "kept"):
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=form.ta)
    return torch.stack(outs, dim=form.ta)


class _Shaped:
    """What a size query (``x.shape``, ``x.size(d)``, ``x.dim()``) sees of a value, without the
    value: its torch shape for the batch at hand. Time sizes are never read (refused at conversion)."""

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = torch.Size(shape)
        self.ndim = len(shape)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.ndim


def _invoke(call: str, target: Any, module: nn.Module | None, args: Any, kwargs: Any) -> Any:
    if call == "module":
        return module(*args, **kwargs)
    if call == "method":
        return getattr(args[0], target)(*args[1:], **kwargs)
    return target(*args, **kwargs)


def op_name(call: str, target: Any) -> str:
    if call == "method":
        return f".{target}()"
    if call == "module":
        return type(target).__name__ if isinstance(target, nn.Module) else str(target)
    mod = getattr(target, "__module__", "") or ""
    name = getattr(target, "__name__", repr(target))
    if mod.startswith("torch.nn.functional"):
        return f"F.{name}"
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch"):
        return f"torch.{name}"
    return name


# ==================================================================================================
# Nodes
# ==================================================================================================


class Constant(nn.Module):
    """A tensor the traced model reads from itself (``self.scale``): a parameter or buffer here."""

    def __init__(self, value: Tensor) -> None:
        super().__init__()
        if isinstance(value, nn.Parameter):
            self.value = value
        else:
            self.register_buffer("value", value)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.value.shape)}"


class FrameOp(StreamingModule):
    """One traced operation applied to each frame on its own: ``call`` is ``"function"``,
    ``"method"`` or ``"module"`` (then ``module`` is registered). The graph resolves its inputs;
    :meth:`run` applies it frame by frame (``direct``: to the whole chunk at once, where conversion
    found that to give the same result). No state; its timing is its inputs' (aligned)."""

    def __init__(
        self, call: str, target: Any, args: Any, kwargs: Any, out_form: Form | tuple, module: nn.Module | None = None,
        direct: bool = False, macs: int = 0, kind: str = "op",
    ) -> None:  # fmt: skip
        super().__init__()
        self.call = call
        self.target = target if call != "module" else None
        if module is not None:
            self.module = module
        self.template = (args, kwargs)
        self.out_form = out_form
        self.direct = direct
        self._macs = macs
        self.work_kind = kind

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        return self._macs

    def run(self, values: dict[Ref, Any], n: int) -> Any:
        args, kwargs = self.template
        module = getattr(self, "module", None)
        if self.direct:
            a, k = map_refs((args, kwargs), values.__getitem__)
            return _invoke(self.call, self.target, module, a, k)
        frames = {r: frames_in(values[r], r.form, n) for r in refs_in((args, kwargs))}
        outs = []
        for t in range(n):
            a, k = map_refs((args, kwargs), lambda r, t=t: frames[r][t])
            outs.append(_invoke(self.call, self.target, module, a, k))
        return assemble(outs, self.out_form)

    def init_state(self, batch_size: int, device=None, dtype=None) -> State:  # not used: the graph calls run()
        raise TypeError("FrameOp is a node of a StreamGraph; it has no state of its own")

    def extra_repr(self) -> str:
        what = op_name(self.call, self.target) if self.call != "module" else "module"
        return f"{what}, {'whole chunk' if self.direct else 'per frame'}"


@dataclass
class CumulativeState(State):
    """Running sum (and count) or running maximum of a :class:`CumulativePool`."""

    total: Tensor
    count: Tensor | None


class CumulativePool(StreamingModule):
    """A reduction over time, made causal: output frame ``t`` reduces input frames ``0..t``.

    ``mode`` is ``"avg"``, ``"sum"`` or ``"max"``; ``dims`` are the non-time axes reduced with it
    (torch-form axes of the input); ``adaptive``: first an adaptive pooling of the non-time axes to
    these sizes (``AdaptiveAvgPool3d((1, 2, 2))``); ``keepdim``: the torch value keeps the reduced
    axes (the output's time axis then replaces torch's size-1 one). Time is axis ``ta`` of the
    input; ``total_shape`` is the running value's shape for one stream.
    """

    def __init__(
        self, mode: str, ta: int, dims: Sequence[int], keepdim: bool, total_shape: Sequence[int],
        adaptive: Sequence[int] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if mode not in ("avg", "sum", "max"):
            raise ValueError(f"CumulativePool: mode must be 'avg', 'sum' or 'max', got {mode!r}")
        self.mode, self.ta, self.dims, self.keepdim = mode, ta, tuple(sorted(dims)), keepdim
        self.total_shape = tuple(total_shape)
        self.adaptive = tuple(adaptive) if adaptive is not None else None

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return self.total_shape

    def init_state(self, batch_size: int, device=None, dtype=None) -> CumulativeState:
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        fill = float("-inf") if self.mode == "max" else 0.0
        total = torch.full((batch_size, *self.total_shape), fill, device=device, dtype=dtype)
        count = torch.zeros(batch_size, device=device, dtype=dtype) if self.mode == "avg" else None
        return CumulativeState(**self._new_state_args(batch_size), total=total, count=count)

    def step(self, x: Tensor, state: CumulativeState) -> tuple[Tensor, CumulativeState]:
        self._check_state(x, state)
        self._check_like(x, state.total)
        ta, n = self.ta, x.shape[self.ta]
        y = x
        if self.adaptive is not None and n == 0:  # torch's adaptive pools refuse an empty input
            y = x.new_zeros((*x.shape[: x.dim() - len(self.adaptive)], *self.adaptive))
        elif self.adaptive is not None and all(s == 1 for s in self.adaptive):
            # to size 1 is a plain reduction of those axes: the same values, and far faster than an
            # adaptive pool that keeps the time axis (None) as it is
            axes = tuple(range(x.dim() - len(self.adaptive), x.dim()))
            y = y.amax(dim=axes, keepdim=True) if self.mode == "max" else y.mean(dim=axes, keepdim=True)
        elif self.adaptive is not None:
            size = (None, *self.adaptive)
            y = getattr(torch.nn.functional, f"adaptive_{'max' if self.mode == 'max' else 'avg'}_pool{len(size)}d")(y, size)
        if self.dims:
            y = y.amax(dim=self.dims, keepdim=True) if self.mode == "max" else y.sum(dim=self.dims, keepdim=True) if self.mode == "sum" else y.mean(dim=self.dims, keepdim=True)
        if not self.keepdim and self.dims:
            y = y.squeeze(self.dims)
        out_ta = ta - sum(1 for d in self.dims if d < ta) if not self.keepdim else ta
        if n == 0:
            return y, state
        held = state.total.unsqueeze(out_ta)
        if self.mode == "max":
            y = torch.maximum(torch.cummax(y, dim=out_ta).values, held)
            return y, dataclasses.replace(state, total=y.select(out_ta, n - 1))
        sums = y.cumsum(dim=out_ta) + held
        total = sums.select(out_ta, n - 1)
        if self.mode == "sum":
            return sums, dataclasses.replace(state, total=total)
        shape = [1] * sums.dim()
        shape[out_ta] = n
        frames = torch.arange(1, n + 1, device=x.device, dtype=x.dtype).view(shape)
        counts = state.count.view(-1, *([1] * (sums.dim() - 1))) + frames
        return sums / counts, dataclasses.replace(state, total=total, count=state.count + n)

    def extra_repr(self) -> str:
        return f"{self.mode}, time axis {self.ta}, also over {self.dims}" + (f", adaptive {self.adaptive}" if self.adaptive else "")


class TimeCrop(DelayWindow):
    """A traced time slice ``x[:, :, start : T - end]``: output ``o`` is input frame ``o + start``,
    emitted once frame ``o + start + end`` has arrived (so the last ``end`` frames, which the slice
    drops, are never emitted). Alignment: the warm-up and the held-back frames are its delay, as a
    valid convolution's are, so ``x[:, :, 1:-1]`` meets a valid 3-tap convolution of ``x`` frame
    for frame."""

    def __init__(self, start: int, end: int, channels: int | None = None, frame_size: Sequence[int] | None = None) -> None:
        if start < 0 or end < 0:
            raise ValueError(f"TimeCrop: start and end must be >= 0, got {start}, {end}")
        super().__init__(None, channels, end + 1, 1, 1, lookahead=end)
        self.frame_size = tuple(int(v) for v in frame_size) if frame_size is not None else None
        self.start, self.end = start, end
        self.timing = Timing(start + end + 1, start + end, 1)

    def init_state(self, batch_size: int, device=None, dtype=None) -> WindowState:
        state = super().init_state(batch_size, device, dtype)
        return dataclasses.replace(state, skip=state.skip + self.start)

    def flush(self, state: WindowState) -> tuple[Tensor | None, WindowState]:
        return None, state  # the frames held back are the ones the slice crops

    def extra_repr(self) -> str:
        return f"start={self.start}, end={self.end}"


class TracedRecurrent(Recurrent):
    """:class:`~soi.layers.recurrent.Recurrent` on a value laid out as torch's recurrent layers
    take it: ``(B, T, C)`` (``batch_first``) or ``(T, B, C)``; it returns the output sequence in
    the same layout (the final hidden state of a whole sequence does not exist in a stream)."""

    def step(self, x: Tensor, state: RecurrentState) -> tuple[Tensor, RecurrentState]:
        seq = x.transpose(1, 2) if self._batch_first else x.permute(1, 2, 0)
        y, state = super().step(seq, state)
        return (y.transpose(1, 2) if self._batch_first else y.permute(2, 0, 1)), state


# ==================================================================================================
# The graph
# ==================================================================================================


@dataclass
class GraphOp:
    """One value of a :class:`StreamGraph`: how it is computed.

    ``kind``: ``"input"``, ``"const"`` (node ``name``, a :class:`Constant`), ``"static"`` (a
    Python value: ``call``/``target``/``template`` applied to sizes), ``"alias"`` (element
    ``index`` of value ``refs[0].src``, or the value itself), ``"stream"`` (node ``name``, a
    streaming module with one input ``refs[0]``, state slot ``slot``) or ``"op"`` (node ``name``,
    a :class:`FrameOp` over ``refs``). ``form``, ``shape`` (torch shape on the example batch),
    ``batch_axis``, ``empty`` (the streamed shape of no frames, batch ``-1``) and ``timing`` (from
    the graph's input) describe the value.
    """

    kind: str
    name: str = ""
    refs: tuple[Ref, ...] = ()
    form: Form | tuple = Form("const")
    shape: tuple = ()
    batch_axis: int = 0
    empty: Any = None
    timing: Timing | None = None
    slot: int = -1
    index: int | None = None
    call: str = ""
    target: Any = None
    template: Any = None


@dataclass
class GraphState(State):
    """State of a :class:`StreamGraph`: one per stateful node, in graph order, and one per
    alignment delay."""

    nodes: tuple[State, ...]
    align: tuple[State, ...]


class StreamGraph(StreamingModule):
    """A traced model as a streaming graph (see the module docstring); made by :func:`soi.convert`.

    ``nodes`` holds every node under its traced name, ``align`` the alignment delays; the wiring
    (which value feeds which node) is fixed at construction and listed by :meth:`describe`.
    """

    def __init__(self, ops: list[GraphOp], nodes: dict[str, nn.Module], align: list[DelayLine], output: Ref, input_frame_shape: FrameShape, rank: int) -> None:
        super().__init__()
        self.nodes = nn.ModuleDict(nodes)
        self.align = nn.ModuleList(align)
        self._ops = ops
        # the time-carrying inputs of each node, found once rather than on every step
        self._timed = [tuple(r for r in op.refs if r.form.timed) for op in ops]
        self._output = output
        self._input_frame_shape = tuple(input_frame_shape)
        self._rank = rank
        self._stateful = [i for i, op in enumerate(ops) if op.kind == "stream"]
        out = ops[output.src]
        self.timing = out.timing if out.timing is not None else Timing()
        self._out_frame_shape = self._frame(out.shape, output.form, out.batch_axis)

    @staticmethod
    def _frame(shape: Sequence[int], form: Form, batch_axis: int) -> FrameShape:
        """``(C, *rest)`` of one streamed frame: the streamed shape without batch and time."""
        s = list(shape)
        if form.kind == "dropped":
            s.insert(form.ta, 1)
        return tuple(v for i, v in enumerate(s) if i not in (batch_axis, form.ta))

    # -- shapes and work ----------------------------------------------------------------------
    @property
    def input_frame_shape(self) -> FrameShape | None:
        return self._input_frame_shape

    def _check_frame(self, shape: FrameShape) -> None:
        if tuple(shape) != self._input_frame_shape:
            raise ValueError(
                f"StreamGraph: converted for frames of shape {self._input_frame_shape} (the example input), got {tuple(shape)}; "
                "convert again with an example input of that shape"
            )

    def out_shape(self, shape: FrameShape) -> FrameShape:
        self._check_frame(shape)
        return self._out_frame_shape

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        self._check_frame(shape)
        out: list[Work] = []
        for k, op in enumerate(self._ops):
            if op.kind not in ("stream", "op"):
                continue
            for r in op.refs:
                if r.align >= 0:
                    src = self._ops[r.src]
                    _, w = self.align[r.align].works(self._frame(src.shape, r.form, src.batch_axis), clock.after(src.timing), dense)
                    out.extend(w)
            node = self.nodes[op.name]
            if op.kind == "stream":
                r = op.refs[0]
                src = self._ops[r.src]
                t_in = self._ref_timing(r)
                _, w = node.works(self._frame(src.shape, r.form, src.batch_axis), clock.after(t_in), dense)
            else:
                if op.timing is None:
                    continue
                _, w = node.works((), clock.after(op.timing), dense)
            out.extend(w)
        return self._out_frame_shape, out

    def _ref_timing(self, r: Ref) -> Timing:
        t = self._ops[r.src].timing
        return t.then(self.align[r.align].timing) if r.align >= 0 else t

    # -- protocol -----------------------------------------------------------------------------
    def init_state(self, batch_size: int, device=None, dtype=None) -> GraphState:
        if dtype is None:
            p = next(self.parameters(), None)
            dtype = p.dtype if p is not None else None
        return GraphState(
            **self._new_state_args(batch_size),
            nodes=tuple(self.nodes[self._ops[i].name].init_state(batch_size, device, dtype) for i in self._stateful),
            align=tuple(a.init_state(batch_size, device, dtype) for a in self.align),
        )

    def _empty(self, op: GraphOp, like: Tensor, batch: int) -> Any:
        if isinstance(op.empty, tuple):
            return tuple(like.new_zeros([batch if v < 0 else v for v in e]) for e in op.empty)
        return like.new_zeros([batch if v < 0 else v for v in op.empty])

    def _static(self, op: GraphOp, vals: list, batch: int) -> Any:
        def value(r: Ref) -> Any:
            src = self._ops[r.src]
            if r.form.kind == "static":
                return vals[r.src]
            shape = list(src.shape)
            if src.batch_axis >= 0:
                shape[src.batch_axis] = batch
            return _Shaped(shape)

        args, kwargs = map_refs(op.template, value)
        return _invoke(op.call, op.target, None, args, kwargs)

    def _run(self, x: Tensor, state: GraphState, tails: bool) -> tuple[Any, GraphState]:
        """One step (``tails=False``: ``x`` is the chunk) or the flush (``tails=True``)."""
        batch = state.batch_size
        given = x.shape[2] if x is not None else 0
        nodes = list(state.nodes)
        align = list(state.align)
        vals: list[Any] = [None] * len(self._ops)
        like = x
        slot = 0
        for k, op in enumerate(self._ops):
            kind = op.kind
            if kind == "input":
                vals[k] = None if tails else x
                continue
            if kind == "const":
                vals[k] = self.nodes[op.name].value
                continue
            if kind == "static":
                vals[k] = self._static(op, vals, batch)
                continue
            if kind == "alias":
                v = vals[op.refs[0].src]
                vals[k] = v if op.index is None or v is None else v[op.index]
                continue
            # resolve the inputs, through their alignment delays
            got: dict[Ref, Any] = {}
            for r in op.refs:
                v = vals[r.src]
                if r.align >= 0 and r.form.timed:
                    delay = self.align[r.align]
                    if tails:
                        y = None
                        if v is not None:
                            y, align[r.align] = delay.step(v, align[r.align])
                        own, align[r.align] = delay.flush(align[r.align])
                        v = y if own is None else own if y is None else torch.cat([y, own], dim=r.form.ta)
                    elif not (given and v.shape[r.form.ta] == 0):
                        v, align[r.align] = delay.step(v, align[r.align])
                got[r] = v
            if kind == "stream":
                node = self.nodes[op.name]
                s = nodes[slot]
                v = got[op.refs[0]]
                if tails:
                    y = None
                    if v is not None and v.shape[op.refs[0].form.ta]:
                        y, s = node.step(v, s)
                    own, s = node.flush(s)
                    vals[k] = y if own is None else own if y is None else torch.cat([y, own], dim=op.form.ta)
                elif given and v.shape[op.refs[0].form.ta] == 0:
                    vals[k] = self._empty(op, v, batch)  # a strided layer before it returned no frame: not called
                else:
                    vals[k], s = node.step(v, s)
                nodes[slot] = s
                slot += 1
                if like is None and isinstance(vals[k], Tensor):
                    like = vals[k]
                continue
            # a frame-wise operation
            timed = self._timed[k]
            if not timed:
                vals[k] = self.nodes[op.name].run(got, 0)
                continue
            present = [got[r] for r in timed if got[r] is not None]
            if tails and not present:
                vals[k] = None
                continue
            if len(present) != len(timed):
                raise RuntimeError(f"internal: the inputs of {op.name} owe different numbers of frames at the end of the stream")
            n = present[0].shape[timed[0].form.ta]
            if n == 0:
                vals[k] = self._empty(op, present[0], batch)
            else:
                vals[k] = self.nodes[op.name].run(got, n)
        out = vals[self._output.src]
        return out, GraphState(state.owner, state.batch_size, tuple(nodes), tuple(align))

    def step(self, x: Tensor, state: GraphState) -> tuple[Tensor, GraphState]:
        self._check_state(x, state)
        if x.dim() != self._rank or (x.shape[1], *x.shape[3:]) != self._input_frame_shape:
            raise ValueError(
                f"StreamGraph.step: converted for chunks (B, {', '.join(map(str, self._input_frame_shape[:1]))}, n"
                f"{''.join(', ' + str(v) for v in self._input_frame_shape[1:])}) (the example input's frame), got {tuple(x.shape)}"
            )
        return self._run(x, state, tails=False)

    def flush(self, state: GraphState) -> tuple[Tensor | None, GraphState]:
        tail, new = self._run(None, state, tails=True)
        if tail is None or tail.shape[2] == 0:
            return None, new
        return tail, new

    def prepare(self, state: GraphState) -> GraphState:
        nodes = tuple(self.nodes[self._ops[i].name].prepare(s) for i, s in zip(self._stateful, state.nodes))
        return dataclasses.replace(state, nodes=nodes)

    # -- reading the graph ------------------------------------------------------------------------
    def describe(self) -> str:
        """One line per node: its name, what it computes and from which values."""
        names = [op.name or op.kind for op in self._ops]
        lines = []
        for op in self._ops:
            if op.kind not in ("stream", "op"):
                continue
            ins = ", ".join(names[r.src] + (f" (+{self.align[r.align].lookahead} frames)" if r.align >= 0 else "") for r in op.refs if r.form.timed)
            lines.append(f"{op.name}: {type(self.nodes[op.name]).__name__} <- {ins}  timing={op.timing}")
        return "\n".join(lines)
