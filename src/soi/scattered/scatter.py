"""``soi.scatter``: Scattered Online Inference applied by name to a converted model.

:func:`scatter` wraps a span of a :class:`soi.StreamGraph` (graph node names) or of a
:class:`soi.Sequential` (its layers' names) in an S-CC pair (``shift=0``) or an SS-CC pair
(``shift >= 1``):

* every layer of the span that reads the span's input (its *entry layers*: one in a chain, both
  branches of a ResNet block) is rebuilt with its time stride multiplied by ``stride`` (same
  weights), so the whole span runs at ``1/stride`` of its former rate;
* an upsampler (:data:`soi.scattered.UPSAMPLERS`) restores the rate the span had. A span that did
  not stride in time is exactly an :class:`~soi.scattered.pairs.SCCPair`. A span that already
  strided by ``s`` (a ResNet stage: ``s = 2``) becomes an S-CC pair of scale ``s * stride`` over the
  span's input followed by a decimation by ``s`` (:class:`Decimate`, no work): with
  ``"duplicate"`` that is duplication by ``stride`` at the span's output rate (output ``j`` is
  element ``floor(j / stride)``; with ``shift=1``, ``floor((j - 1) / stride)``), and the layers after
  the span see the rate they saw before;
* whatever bypasses the span (a skip connection from before it to after it) is delay-aligned
  (a :class:`soi.DelayLine`) where the upsampler adds latency.

The span must be a single-entry single-exit region of the graph, its input and output streams with
time in axis 2, and it must not look ahead (convert with ``causal=True``); its entry layers must be
STMC convolutions (or pools) that can take a time stride. Scatter the inner span first to nest
pairs (``scatter(scatter(m, "a", "b"), "c", "d")`` with ``a..b`` inside ``c..d``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

from torch import Tensor, nn

from ..core.containers import DelayLine, Sequential
from ..core.state import StreamingModule
from ..core.timing import Timing
from ..core.window import TemporalWindow
from ..layers.conv import STMCConvNd
from ..layers.graph import Form, GraphOp, Ref, StreamGraph, map_refs
from ..layers.pooling import STMCAvgPoolNd, STMCMaxPoolNd
from .pairs import SSCC, SCCPair
from .upsample import UPSAMPLERS, make_upsampler

__all__ = ["Decimate", "ScatterError", "scatter"]


class ScatterError(ValueError):
    """A span that :func:`scatter` cannot wrap in an S-CC pair, and why."""


class Decimate(TemporalWindow):
    """Keeps every ``factor``-th frame (frames ``0, s, 2s, ...``); nothing is computed.

    After an S-CC pair whose scale is ``factor * stride`` it brings the pair's output back to the
    rate the scattered span had (see :mod:`soi.scattered.scatter`)."""

    work_kind = "copy"

    def __init__(self, factor: int, channels: int | None = None, frame_size=None) -> None:
        super().__init__(None, channels, 1, 1, factor, 0, frame_size)
        self.factor = factor

    def window_op(self, window: Tensor) -> Tensor:
        return window[:, :, :: self.factor]

    def out_frame_size(self, frame_size: tuple[int, ...]) -> tuple[int, ...]:
        return frame_size

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


# ==================================================================================================
# The strided entry layer
# ==================================================================================================


def _strided(layer: nn.Module, stride: int, where: str) -> nn.Module:
    """``layer`` with its time stride multiplied by ``stride``, the same parameters."""
    if isinstance(layer, Sequential):
        if len(layer) == 0:
            raise ScatterError(f"soi.scatter: the span's first layer {where} is an empty soi.Sequential")
        layers = list(layer.layers)
        return Sequential(_strided(layers[0], stride, f"{where}.layers.0"), *layers[1:])
    if isinstance(layer, STMCConvNd) and type(layer).window_op is STMCConvNd.window_op and type(layer).step is TemporalWindow.step:
        if layer.lookahead:
            raise ScatterError(f"soi.scatter: the span's first layer {where} looks ahead ({layer.lookahead} frames); scatter causal layers (soi.convert(..., causal=True))")
        new = STMCConvNd(
            layer.dims, layer.in_channels, layer.out_channels, layer.kernel_size, (layer.conv_stride[0] * stride, *layer.conv_stride[1:]),
            layer.padding, layer.dilation, layer.groups, layer.bias is not None, 0, layer.frame_size,
            device=layer.weight.device, dtype=layer.weight.dtype,
        )  # fmt: skip
        new.weight = layer.weight
        if layer.bias is not None:
            new.bias = layer.bias
        return new
    if isinstance(layer, (STMCAvgPoolNd, STMCMaxPoolNd)) and type(layer).step is TemporalWindow.step:
        if layer.lookahead:
            raise ScatterError(f"soi.scatter: the span's first layer {where} looks ahead ({layer.lookahead} frames); scatter causal layers (soi.convert(..., causal=True))")
        new = copy.copy(layer)
        new.__dict__ = dict(layer.__dict__)
        new.time_stride = layer.time_stride * stride
        new.timing = Timing(layer.timing.receptive_field, 0, new.time_stride)
        if hasattr(layer, "pool_stride"):
            new.pool_stride = (layer.pool_stride[0] * stride, *layer.pool_stride[1:])
        return new
    raise ScatterError(
        f"soi.scatter: the span's first layer {where} ({type(layer).__name__}) cannot take a time stride; "
        "the span must start with an STMC convolution or pool (a strided convolution in time is what an S-CC pair begins with)"
    )


def _pair(inner: StreamingModule, span_stride: int, stride: int, upsampler, shift: int, channels: int, frame: tuple) -> nn.Module:
    if isinstance(upsampler, str):  # sized, so that init_state builds the whole state (export needs it)
        upsampler = make_upsampler(upsampler, inner.stride, channels, frame)
    if shift:
        pair: nn.Module = SSCC(inner, upsampler, frames=shift, channels=channels, frame_size=frame)
    else:
        pair = SCCPair(inner, upsampler)
    if span_stride == 1:
        return pair
    return Sequential(pair, Decimate(span_stride, channels, frame))


def _check_args(stride: int, upsampler, shift: int) -> None:
    if not isinstance(stride, int) or stride < 2:
        raise ScatterError(f"soi.scatter: stride must be an int >= 2, got {stride!r}")
    if isinstance(upsampler, str) and upsampler not in UPSAMPLERS or upsampler == "transposed":
        raise ScatterError(f"soi.scatter: upsampler must be one of {tuple(u for u in UPSAMPLERS if u != 'transposed')}, got {upsampler!r}")
    if not isinstance(shift, int) or shift < 0:
        raise ScatterError(f"soi.scatter: shift must be an int >= 0, got {shift!r}")


# ==================================================================================================
# soi.Sequential
# ==================================================================================================


def _scatter_sequential(model: Sequential, start: str, end: str, stride: int, upsampler, shift: int) -> Sequential:
    layers = list(model.layers)
    names = {}
    for i in range(len(layers)):
        names[str(i)] = i
        names[f"layers.{i}"] = i
    unknown = [n for n in (start, end) if n not in names]
    if unknown:
        raise ScatterError(f"soi.scatter: unknown layer name(s) {unknown}; a soi.Sequential's layers are {sorted(names, key=lambda n: (len(n), n))[:len(layers)]} (or layers.<i>)")
    i, j = names[start], names[end]
    if i > j:
        raise ScatterError(f"soi.scatter: start {start!r} comes after end {end!r}")
    span = layers[i : j + 1]
    timing = Timing.chain(m.timing for m in span)
    if timing.delay:
        raise ScatterError(f"soi.scatter: the span {start}..{end} looks ahead ({timing.delay} frames); scatter causal spans (soi.convert(..., causal=True))")
    inner = Sequential(_strided(span[0], stride, start), *span[1:])
    shape = model.input_frame_shape
    for m in layers[:i]:
        shape = m.out_shape(shape) if shape is not None else None
    out = None
    if shape is not None:
        for m in span:
            shape = m.out_shape(shape)
        out = shape
    channels, frame = (out[0], tuple(out[1:])) if out is not None else (None, None)
    pair = _pair(inner, timing.stride, stride, upsampler, shift, channels, frame)
    return Sequential(*layers[:i], pair, *layers[j + 1 :])


# ==================================================================================================
# soi.StreamGraph
# ==================================================================================================


def _node_name(graph: StreamGraph, name: str) -> str:
    return name.removeprefix("nodes.")


def _retime(ops: list[GraphOp], nodes: dict[str, nn.Module], align: list[DelayLine]) -> None:
    """Every value's timing from the graph's input, in graph order; branches meeting with
    different delays get a DelayLine on the faster input (where its stride divides the lag)."""

    def ref_timing(r: Ref) -> Timing:
        t = ops[r.src].timing
        return t.then(align[r.align].timing) if r.align >= 0 else t

    for k, op in enumerate(ops):
        if op.kind == "input":
            op.timing = Timing()
        elif op.kind == "alias":
            op.timing = ops[op.refs[0].src].timing
        elif op.kind == "stream":
            op.timing = ref_timing(op.refs[0]).then(nodes[op.name].timing)
        elif op.kind == "op":
            timed = [r for r in op.refs if r.form.timed]
            if not timed:
                continue
            times = [ref_timing(r) for r in timed]
            if len({t.stride for t in times}) > 1:
                raise ScatterError(f"soi.scatter: {op.name} would combine values at time strides {sorted({t.stride for t in times})}")
            late = max(t.delay for t in times)
            for r, t in zip(timed, times):
                if t.delay < late:
                    lag = late - t.delay
                    src = ops[r.src]
                    if lag % t.stride or r.form.ta != 2 or src.batch_axis != 0 or r.align >= 0:
                        raise ScatterError(f"soi.scatter: cannot align input {src.name or src.kind} of {op.name} by {lag} frames at time stride {t.stride}")
                    shape = list(src.shape)
                    if r.form.kind == "dropped":
                        shape.insert(2, 1)
                    align.append(DelayLine(lag // t.stride, shape[1], shape[3:]))
                    new = Ref(r.src, r.form, len(align) - 1)
                    op.refs = tuple(new if q == r else q for q in op.refs)
                    node = nodes[op.name]
                    node.template = map_refs(node.template, lambda q, r=r, new=new: new if q == r else q)
            times = [ref_timing(r) for r in op.refs if r.form.timed]
            op.timing = Timing(max(t.receptive_field for t in times), max(t.delay for t in times), times[0].stride)


def _scatter_graph(model: StreamGraph, start: str, end: str, stride: int, upsampler, shift: int) -> StreamGraph:
    ops: list[GraphOp] = model._ops
    index = {op.name: k for k, op in enumerate(ops) if op.kind in ("stream", "op") and op.name}
    s_name, e_name = _node_name(model, start), _node_name(model, end)
    unknown = [n for n, m in ((start, s_name), (end, e_name)) if m not in index]
    if unknown:
        raise ScatterError(f"soi.scatter: unknown node name(s) {unknown}; the graph's nodes are {list(index)}")
    i, j = index[s_name], index[e_name]
    if i > j:
        raise ScatterError(f"soi.scatter: start {start!r} comes after end {end!r} in the graph's order")
    region = [k for k in range(i, j + 1) if ops[k].kind in ("stream", "op", "alias")]
    inside = set(region)
    # the region's inputs and outputs
    entries: set[int] = set()
    for k in region:
        for r in ops[k].refs:
            if r.src not in inside:
                if not r.form.timed or ops[r.src].kind in ("const", "static"):
                    raise ScatterError(f"soi.scatter: {ops[k].name} in the span reads {ops[r.src].name or ops[r.src].kind}, a constant or size from outside it; only spans whose one input is a stream scatter")
                entries.add(r.src)
            elif r.align >= 0:
                raise ScatterError(f"soi.scatter: the span {start}..{end} aligns branches inside it ({ops[k].name}); scatter a span without alignment delays")
    exits = {r.src for k, op in enumerate(ops) if k not in inside for r in op.refs if r.src in inside}
    if model._output.src in inside:
        exits.add(model._output.src)
    if len(entries) != 1 or exits != {j}:
        raise ScatterError(
            f"soi.scatter: the span {start}..{end} is not a single-entry single-exit region of the graph: it reads "
            f"{[ops[e].name or ops[e].kind for e in sorted(entries)]} from outside and "
            f"{[ops[e].name or ops[e].kind for e in sorted(exits)]} of it are read after it; its only output must be {e_name!r}"
        )
    (entry,) = entries
    ent, ext = ops[entry], ops[j]
    if ent.form != Form("stream", 2) or ent.batch_axis != 0 or ext.form != Form("stream", 2) or ext.batch_axis != 0:
        raise ScatterError(f"soi.scatter: the span's input and output must be streams (B, C, T, ...); {start}..{end} is not")
    t_in, t_out = ent.timing, ext.timing
    if t_out.stride % t_in.stride:
        raise ScatterError(f"soi.scatter: the span {start}..{end} changes the time rate by a non-integer factor")
    span_stride = t_out.stride // t_in.stride
    if t_out.delay != t_in.delay:
        raise ScatterError(f"soi.scatter: the span {start}..{end} looks ahead ({t_out.delay - t_in.delay} frames); scatter causal spans (soi.convert(..., causal=True))")
    nodes = dict(model.nodes.items())
    # the inner graph: the region, from a new input
    sub_index = {entry: 0}
    sub_ops = [GraphOp("input", form=ent.form, shape=ent.shape, batch_axis=0, empty=ent.empty, timing=Timing())]
    sub_nodes: dict[str, nn.Module] = {}
    first = [k for k in region if any(r.src == entry for r in ops[k].refs)]
    for n, k in enumerate(region):
        sub_index[k] = n + 1
    renumber = lambda r: Ref(sub_index[r.src], r.form, -1)
    for k in region:
        op = dataclasses.replace(ops[k])
        op.refs = tuple(renumber(r) for r in op.refs)
        if op.kind == "stream":
            node = nodes[op.name]
            if k in first:
                node = _strided(node, stride, f"nodes.{op.name}")
            sub_nodes[op.name] = node
        elif op.kind == "op":
            if k in first:
                raise ScatterError(f"soi.scatter: the span's first layer {op.name} ({nodes[op.name].extra_repr()}) cannot take a time stride; start the span at a convolution or pool")
            node = copy.copy(nodes[op.name])
            node.template = map_refs(node.template, renumber)
            sub_nodes[op.name] = node
        sub_ops.append(op)
    frame = StreamGraph._frame(ent.shape, ent.form, 0)
    out_ref = Ref(sub_index[j], ext.form, -1)
    _retime(sub_ops, sub_nodes, [])
    inner = StreamGraph(sub_ops, sub_nodes, [], out_ref, frame, len(ent.shape))
    out_frame = StreamGraph._frame(ext.shape, ext.form, 0)
    pair = _pair(inner, span_stride, stride, upsampler, shift, out_frame[0], tuple(out_frame[1:]))
    # the outer graph: the region becomes one node
    name = f"scatter_{s_name}"
    while name in nodes:
        name += "_"
    keep = [k for k in range(len(ops)) if k not in inside or k == j]
    new_index = {k: n for n, k in enumerate(keep)}
    outer_renumber = lambda r: Ref(new_index[r.src], r.form, r.align)
    align = [copy.copy(a) for a in model.align]
    new_ops: list[GraphOp] = []
    new_nodes: dict[str, nn.Module] = {}
    for k in keep:
        if k == j:
            op = GraphOp("stream", name=name, refs=(Ref(new_index[entry], ent.form, -1),), form=ext.form, shape=ext.shape, batch_axis=0, empty=ext.empty)
            new_nodes[name] = pair
        else:
            op = dataclasses.replace(ops[k])
            op.refs = tuple(outer_renumber(r) for r in op.refs)
            if op.kind == "op":
                node = copy.copy(nodes[op.name])
                node.template = map_refs(node.template, outer_renumber)
                new_nodes[op.name] = node
            elif op.kind in ("stream", "const"):
                new_nodes[op.name] = nodes[op.name]
            if op.kind == "static":
                op.template = map_refs(op.template, outer_renumber)
        new_ops.append(op)
    _retime(new_ops, new_nodes, align)
    out = model._output
    return StreamGraph(new_ops, new_nodes, align, Ref(new_index[out.src], out.form, out.align), model._input_frame_shape, model._rank)


# ==================================================================================================
# soi.scatter
# ==================================================================================================


def scatter(model: nn.Module, start: str, end: str, stride: int = 2, upsampler="duplicate", shift: int = 0) -> StreamingModule:
    """``model`` (a :class:`soi.StreamGraph` or :class:`soi.Sequential`) with the span ``start..end``
    wrapped in an S-CC pair (``shift=0``) or an SS-CC pair (``shift >= 1``: the pair's output is
    ``shift`` frames of the span's input late, so its work needs only past frames).

    Args:
        model: a converted model; it is left alone (the result is a deep copy).
        start, end: the first and last node of the span: graph node names (``model.describe()``,
            with or without the ``nodes.`` of ``named_modules()``), or a ``soi.Sequential``'s layer
            indices (``"2"`` or ``"layers.2"``).
        stride: the time stride the span's entry layers gain.
        upsampler: a name from :data:`soi.scattered.UPSAMPLERS` (not ``"transposed"``: its learned
            weights do not exist in a converted model) or an :class:`~soi.scattered.Upsampler`.
        shift: 0 (S-CC, PP) or the frames of the SS-CC shift (FP).

    Raises:
        ScatterError: the span cannot be scattered (unknown names, start after end, not a
            single-entry single-exit region, a first layer that cannot take a time stride, look-ahead).
    """
    return scatter_spans(model, [(start, end)], stride, upsampler, shift)


def scatter_spans(
    model: nn.Module, spans: Sequence[tuple[str, str]], stride: int = 2, upsampler="duplicate", shift: int = 0
) -> StreamingModule:
    """:func:`scatter` of every ``(start, end)`` of ``spans`` in turn, as repeated :func:`scatter`
    calls would (spans that do not overlap, each an S-CC or SS-CC pair of its own, each named as the
    spans before it left the model), the model deep-copied once rather than once per span
    (a converted network copied per span made scattering a deep network cost seconds a span).

    Raises:
        ScatterError: no spans, or a span that cannot be scattered (see :func:`scatter`).
    """
    _check_args(stride, upsampler, shift)
    if not spans:
        raise ScatterError("soi.scatter_spans: expected at least one (start, end) span, got none")
    if not isinstance(model, (StreamGraph, Sequential)):
        raise ScatterError(f"soi.scatter: expected a soi.StreamGraph or soi.Sequential (convert the model with soi.convert first), got {type(model).__name__}")
    model = copy.deepcopy(model)
    one = _scatter_graph if isinstance(model, StreamGraph) else _scatter_sequential
    for start, end in spans:
        model = one(model, start, end, stride, upsampler, shift)
    return model
