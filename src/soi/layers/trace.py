"""Tracing a model into a :class:`~soi.layers.graph.StreamGraph` (the general path of
:func:`soi.convert`).

1. ``torch.fx`` traces ``forward`` (torch.nn layers and soi's streaming modules are leaves); where
   it cannot (Python control flow on a size), ``torch.export`` (non-strict, batch and time dynamic)
   does, and its graph is brought to the same form (:func:`_exported`); a branch on the sequence
   length is refused then, and when both fail the error says what each said.
2. The traced model runs on a random input like the example at two sequence lengths and two batch
   sizes: a value's time axis is the one whose size follows the length, its batch axis the one
   that follows the batch; values that depend on the input and have no time axis are pooled.
3. Each operation becomes a node (see :mod:`soi.layers.graph`); frame-wise operations are checked
   on the longer run: applied frame by frame they must give what torch gives.
4. Timing is composed in graph order; branches meeting at an operation are aligned with delays.

Every problem found on the way is collected and reported at once, with the node, the operation
and the reason.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ..core.containers import DelayLine, FrameWise, Sequential, frame_wise_problem
from ..core.state import StreamingModule
from ..core.timing import Timing, conv_macs
from .graph import (
    Constant,
    CumulativePool,
    Form,
    FrameOp,
    GraphOp,
    Ref,
    StreamGraph,
    TimeCrop,
    TracedRecurrent,
    map_refs,
    op_name,
    refs_in,
)

__all__ = ["convert_graph"]

_WINDOWS = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
)  # fmt: skip
_PAD_MODULES = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)
_ADAPTIVE = {
    nn.AdaptiveAvgPool1d: "avg", nn.AdaptiveAvgPool2d: "avg", nn.AdaptiveAvgPool3d: "avg",
    nn.AdaptiveMaxPool1d: "max", nn.AdaptiveMaxPool2d: "max", nn.AdaptiveMaxPool3d: "max",
}  # fmt: skip
_ADAPTIVE_FN = {
    F.adaptive_avg_pool1d: "avg", F.adaptive_avg_pool2d: "avg", F.adaptive_avg_pool3d: "avg",
    F.adaptive_max_pool1d: "max", F.adaptive_max_pool2d: "max", F.adaptive_max_pool3d: "max",
}  # fmt: skip
_REDUCE = {"mean": "avg", "sum": "sum", "amax": "max"}
_REDUCE_FN = {torch.mean: "avg", torch.sum: "sum", torch.amax: "max"}
_SIZE_METHODS = ("size", "dim")
_SIZE_ATTRS = ("shape", "ndim")
_DEFAULT_FRAME = 32
_DEFAULT_T = 16


class _Tracer(fx.Tracer):
    """torch.nn layers, subclasses of them that keep their ``forward`` (torchvision's
    ``Conv3DSimple``) and soi's streaming modules are leaves; everything else is traced through."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, StreamingModule):
            return True
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        forward = type(m).forward
        if forward is not nn.Module.forward and (getattr(forward, "__module__", "") or "").startswith("torch.nn"):
            return True
        return super().is_leaf_module(m, qualname)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]


# aten operations of an exported graph, as the torch calls the builder recognises (time padding,
# reductions, slices, sizes); every other aten operation is checked frame-wise as it is
_ATEN = torch.ops.aten
_INT_MAX = 2**62


def _as_torch(target: Any, args: tuple, kwargs: dict) -> tuple[str, Any, tuple, dict]:
    """``(op, target, args, kwargs)`` of an fx node doing what aten call ``target`` does."""
    if target is _ATEN.pad.default:
        return "call_function", F.pad, args[:2], {"mode": args[2] if len(args) > 2 else "constant", "value": args[3] if len(args) > 3 else None}
    if target is _ATEN.constant_pad_nd.default:
        return "call_function", F.pad, args[:2], {"value": args[2] if len(args) > 2 else 0.0}
    reduce = {_ATEN.mean.dim: torch.mean, _ATEN.sum.dim_IntList: torch.sum, _ATEN.amax.default: torch.amax}.get(target)
    if reduce is not None:
        return "call_function", reduce, args[:1], {"dim": tuple(args[1]) if len(args) > 1 else None, "keepdim": bool(args[2]) if len(args) > 2 else False}
    if target is _ATEN.slice.Tensor:
        dim, start, end, step = (*args[1:], *(0, None, None, 1)[len(args) - 1 :])
        end = None if isinstance(end, int) and end >= _INT_MAX else end
        start = None if start == 0 else start
        return "call_function", operator.getitem, (args[0], (slice(None),) * dim + (slice(start, end, step if step != 1 else None),)), {}
    if target is _ATEN.sym_size.int:
        return "call_method", "size", args, kwargs
    return "call_function", target, args, kwargs


def _exported(net: nn.Module, example_input: Tensor | None) -> tuple[fx.GraphModule, tuple[int, int | None]]:
    """``net``'s forward by ``torch.export`` (non-strict; batch and time dynamic, so control flow
    on them fails here, while that on the other sizes is resolved for the example's) as a graph of
    the same kind as the fx trace: leaf modules (:class:`_Tracer`'s) called by path, the code
    between them as torch operations; and the sequence lengths ``(min, max or None)`` the export
    holds for (a branch on the length bounds them)."""
    from torch.export import Dim, export, unflatten
    from torch.utils._sympy.numbers import int_oo

    if example_input is None:
        raise ValueError("needs example_input to export")
    x = example_input.expand(max(2, example_input.shape[0]), *example_input.shape[1:]).contiguous()  # batch 1 would be specialised
    program = export(net, (x,), dynamic_shapes=({0: Dim.AUTO, 2: Dim.AUTO},), strict=False)
    time = next(n for n in program.graph.nodes if n.name == program.graph_signature.user_inputs[0]).meta["val"].shape[2]
    lengths = program.range_constraints.get(time.node.expr) if hasattr(time, "node") else None
    if lengths is None:
        raise ValueError(f"it specialises the sequence length to {time} frames (control flow on x.shape[2], or an op that fixes it)")
    graph = fx.Graph()
    leaf = _Tracer().is_leaf_module

    def inline(gm: nn.Module, prefix: str, inputs: list) -> Any:
        env: dict[fx.Node, Any] = {}
        pending = iter(inputs)
        for n in gm.graph.nodes:
            args, kwargs = fx.map_arg(n.args, env.__getitem__), fx.map_arg(n.kwargs, env.__getitem__)
            if n.op == "placeholder":
                env[n] = next(pending)
            elif n.op == "get_attr":
                env[n] = graph.get_attr(prefix + n.target)
            elif n.op == "call_module" and leaf(net.get_submodule(prefix + n.target), prefix + n.target):
                env[n] = graph.call_module(prefix + n.target, args, kwargs)
            elif n.op == "call_module":
                env[n] = inline(gm.get_submodule(n.target), f"{prefix}{n.target}.", list(args))
            elif n.op in ("call_function", "call_method"):
                env[n] = graph.create_node(*_as_torch(n.target, args, kwargs) if n.op == "call_function" else (n.op, n.target, args, kwargs))
            elif n.op == "output":
                out = args[0]
                return out[0] if isinstance(out, (tuple, list)) and len(out) == 1 else out
        raise RuntimeError("internal: an exported graph without output")

    graph.output(inline(unflatten(program), "", [graph.placeholder("x")]))
    return fx.GraphModule(net, graph), (int(lengths.lower), None if lengths.upper == int_oo else int(lengths.upper))


class _ByName(dict):
    """Values of a run, keyed by node name (the float64 copy of the graph has nodes of its own)."""

    def __getitem__(self, n: fx.Node) -> Any:
        return super().__getitem__(n.name)


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values = _ByName()

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        # a copy: an in-place operation later in the graph (ReLU(inplace=True)) must not change it
        self.values[n.name] = out.clone() if isinstance(out, Tensor) else out
        return out


def _record(gm: fx.GraphModule, x: Tensor) -> _ByName:
    rec = _Recorder(gm)
    with torch.no_grad():
        rec.run(x)
    return rec.values


def _guess_input(gm: fx.GraphModule) -> tuple[int, ...] | None:
    """``(1, C, T, 32, ...)`` from the first layer that reads the input, if it says its channels."""
    x = next(n for n in gm.graph.nodes if n.op == "placeholder")
    seen, todo = set(), list(x.users)
    while todo:
        n = todo.pop(0)
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_module":
            m = gm.get_submodule(n.target)
            dims = next((d for d, cls in enumerate((nn.Conv1d, nn.Conv2d, nn.Conv3d), 1) if type(m) is cls), None)
            if dims is None:
                dims = next((d for d, cls in enumerate((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d), 1) if type(m) is cls), None)
                if dims is not None:
                    dims = None if dims == 1 else dims
            channels = getattr(m, "in_channels", getattr(m, "num_features", None))
            if dims is not None and channels is not None:
                return (1, channels, _DEFAULT_T, *([_DEFAULT_FRAME] * (dims - 1)))
        if n.op in ("call_function", "call_method") and len(n.args) and n.args[0] in seen | {x}:
            todo.extend(n.users)
    return None


def _holds_tensors(v: Any) -> bool:
    return isinstance(v, (tuple, list)) and any(isinstance(e, Tensor) or _holds_tensors(e) for e in v)


def _value(v: Any) -> Any:
    return v


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.shape != b.shape:
            return False
        if not a.numel():
            return True
        scale = max(1.0, float(b.abs().max()))
        return bool((a - b).abs().max() <= 1e-9 * scale)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return False


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - any failed comparison means "not the same"
        return False


class _Builder:
    def __init__(self, module: nn.Module, example_input: Tensor | None, causal: bool) -> None:
        from .convert import _Converter

        self.conv = _Converter(causal)
        self.problems = self.conv.problems
        self.module = module
        self.example_input = example_input

    def fail(self, where: str, what: str, reason: str) -> None:
        self.problems.append((where, f"{what}: {reason}" if what else reason))

    # -- 1-2: trace and record ----------------------------------------------------------------------
    def trace(self) -> bool:
        net = copy.deepcopy(self.module).eval()
        self.lengths: tuple[int, int | None] | None = None  # the lengths an export holds for
        try:
            tracer = _Tracer()
            graph = tracer.trace(net)
            self.gm = fx.GraphModule(tracer.root, graph)
        except Exception as fx_error:  # noqa: BLE001 - torch.export is tried next, then both are reported
            try:
                self.gm, self.lengths = _exported(net, self.example_input)
            except Exception as e:  # noqa: BLE001
                self.fail(
                    "<model>", f"{type(self.module).__name__}.forward",
                    f"torch.fx cannot trace it ({type(fx_error).__name__}: {_first_line(fx_error)}), nor torch.export "
                    f"(non-strict, batch and time dynamic) export it ({type(e).__name__}: {_first_line(e)}); "
                    "write the data-dependent part as a module of its own",
                )  # fmt: skip
                return False
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            self.fail("<model>", "forward", f"takes {len(placeholders)} inputs; a stream has one, (B, C, T, ...)")
            return False
        if self.example_input is not None:
            shape = tuple(self.example_input.shape)
        else:
            shape = _guess_input(self.gm)
            if shape is None:
                self.fail("<model>", "forward", "the input shape cannot be told from the first layer; pass example_input=(a tensor (B, C, T, ...))")
                return False
        if len(shape) < 3:
            self.fail("<model>", "example_input", f"shape {shape}: a stream is (B, C, T, ...), time in dimension 2")
            return False
        self.shape = shape
        b, t = shape[0], shape[2]
        g = torch.Generator().manual_seed(0)
        gm64 = copy.deepcopy(self.gm).double().eval()
        self.gm64 = gm64
        try:
            self.v1 = _record(gm64, torch.randn(shape, generator=g, dtype=torch.float64))
            self.v2 = _record(gm64, torch.randn((b, shape[1], 2 * t, *shape[3:]), generator=g, dtype=torch.float64))
            self.v3 = _record(gm64, torch.randn((b + 1, *shape[1:]), generator=g, dtype=torch.float64))
        except Exception as e:  # noqa: BLE001
            self.fail("<model>", "forward", f"fails on an input like the example at lengths {t} and {2 * t} and batch sizes {b} and {b + 1} ({type(e).__name__}: {e})")
            return False
        return True

    # -- classification ----------------------------------------------------------------------------
    def classify(self, n: fx.Node) -> tuple[str, int, int] | None:
        """``(kind, time axis, batch axis)``: kind ``"stream"``, ``"frame"`` (pooled),
        ``"const"``, ``"static"``, ``"timesize"`` (a Python value that depends on the length),
        ``"tuple"``; None (with the problem recorded) when the value mixes time or batch."""
        a, b, c = self.v1[n], self.v2[n], self.v3[n]
        if isinstance(a, Tensor):
            if not self.dep[n]:
                return ("const", -1, -1)
            if a.dim() != b.dim() or a.dim() != c.dim():
                self.fail(self.where(n), self.what(n), "its rank depends on the length or the batch size")
                return None
            times = [i for i in range(a.dim()) if a.shape[i] != b.shape[i]]
            batches = [i for i in range(a.dim()) if a.shape[i] != c.shape[i]]
            if len(batches) != 1 or batches[0] in times:
                self.fail(self.where(n), self.what(n), f"mixes the batch axis with others (shape {tuple(a.shape)}); soi streams keep the batch in an axis of its own")
                return None
            if len(times) > 1:
                self.fail(self.where(n), self.what(n), f"spreads time over axes {times} (shape {tuple(a.shape)}); a stream has time in one axis")
                return None
            if times:
                return ("stream", times[0], batches[0])
            return ("frame", -1, batches[0])
        if _holds_tensors(a):
            return ("tuple", -1, -1) if self.dep[n] else ("const", -1, -1)
        return ("static", -1, -1) if _same(a, b) else ("timesize", -1, -1)

    def where(self, n: fx.Node) -> str:
        return str(n.target) if n.op == "call_module" else n.name

    def what(self, n: fx.Node) -> str:
        if n.op == "call_module":
            return type(self.gm.get_submodule(n.target)).__name__
        if n.op in ("call_function", "call_method"):
            return op_name("function" if n.op == "call_function" else "method", n.target)
        return n.op

    # -- 3: nodes -----------------------------------------------------------------------------------
    def build(self) -> StreamGraph | None:
        graph = self.gm.graph
        nodes_list = list(graph.nodes)
        out_node = next(n for n in nodes_list if n.op == "output")
        live: set[fx.Node] = set()
        todo = [out_node]
        while todo:
            n = todo.pop()
            if n in live:
                continue
            live.add(n)
            todo.extend(n.all_input_nodes)
        self.dep: dict[fx.Node, bool] = {}
        for n in nodes_list:
            self.dep[n] = n.op == "placeholder" or any(self.dep[a] for a in n.all_input_nodes)

        self.ops: list[GraphOp] = []
        self.modules: dict[str, nn.Module] = {}
        self.index: dict[fx.Node, int] = {}
        self.pads: dict[fx.Node, tuple[fx.Node, Any]] = {}
        taken = set(dir(nn.ModuleDict()))
        self.names: dict[fx.Node, str] = {n: (n.name + "_" if n.name in taken else n.name) for n in nodes_list}

        for n in nodes_list:
            if n not in live or n.op == "output":
                continue
            if any(a not in self.index for a in n.all_input_nodes):
                continue  # after a node that failed: its own problem is reported
            try:
                self.node(n)
            except Exception as e:  # noqa: BLE001 - one node's failure is reported with the others
                self.fail(self.where(n), self.what(n), f"{type(e).__name__}: {e}")
        if self.problems:
            return None
        # the output
        out_arg = out_node.args[0]
        if not isinstance(out_arg, fx.Node) or out_arg not in self.index:
            self.fail("<output>", "return", "forward must return one tensor (B, C, T, ...)")
            return None
        out_ref = self.ref(out_arg)
        out_op = self.ops[out_ref.src]
        if not out_ref.form.timed or out_ref.form.ta != 2 or out_op.batch_axis != 0:
            self.fail("<output>", "return", f"the output {out_arg.name} has shape {tuple(self.v1[out_arg].shape)} with time in axis {out_ref.form.ta}; a stream returns (B, C, T, ...)")
            return None
        self.align_branches()
        if self.problems:
            return None
        remap = self.group_chains()
        if remap is not None:
            out_ref = Ref(remap[out_ref.src], out_ref.form, out_ref.align)
        order = [op.name for op in self.ops if op.name in self.modules]
        self.modules = {name: self.modules[name] for name in order}
        delay = self.ops[out_ref.src].timing.delay
        if self.lengths is not None and (self.lengths[1] is not None or self.lengths[0] > delay + 2):
            # (a window needs delay + 1 frames; torch.export treats one frame more as special)
            low, high = self.lengths
            self.fail("<model>", "forward", f"branches on the sequence length: torch.export found it the same function only for {low} to {high or 'any number of'} frames, and a stream grows from 1")
            return None
        return StreamGraph(self.ops, self.modules, self.aligns, out_ref, (self.shape[1], *self.shape[3:]), len(self.shape))

    def ref(self, n: fx.Node) -> Ref:
        k = self.index[n]
        form = self.ops[k].form
        if isinstance(form, tuple):
            raise TypeError(f"{n.name} is a tuple of values; index it first")
        return Ref(k, form)

    def template(self, n: fx.Node) -> tuple[Any, Any]:
        to_ref = lambda a: self.ref(a) if isinstance(a, fx.Node) else a
        conv = lambda v: tuple(conv(x) for x in v) if isinstance(v, tuple) else [conv(x) for x in v] if isinstance(v, list) else {k: conv(x) for k, x in v.items()} if isinstance(v, dict) else slice(conv(v.start), conv(v.stop), conv(v.step)) if isinstance(v, slice) else to_ref(v)
        return conv(tuple(n.args)), conv(dict(n.kwargs))

    def add(self, n: fx.Node, op: GraphOp, module: nn.Module | None = None) -> None:
        op.name = self.names[n]
        if module is not None:
            self.modules[op.name] = module
        self.index[n] = len(self.ops)
        self.ops.append(op)

    def empty_of(self, value: Tensor, form: Form, batch_axis: int) -> list[int]:
        shape = list(value.shape)
        shape[batch_axis] = -1
        if form.kind == "dropped":
            shape.insert(form.ta, 0)
        else:
            shape[form.ta] = 0
        return shape

    def static_op(self, n: fx.Node, call: str) -> GraphOp:
        template = self.template(n)
        return GraphOp("static", refs=tuple(refs_in(template)), form=Form("static"), call=call, target=n.target, template=template)

    def value_op(self, n: fx.Node, kind: str, form: Form | tuple, **kw: Any) -> GraphOp:
        v = self.v1[n]
        if isinstance(form, tuple):
            return GraphOp(kind, form=form, shape=(), batch_axis=0, empty=tuple(self.empty_of(e, f, 0) for e, f in zip(v, form)), **kw)
        cls = self.classify(n)
        batch = cls[2] if cls else 0
        return GraphOp(kind, form=form, shape=tuple(v.shape), batch_axis=batch, empty=self.empty_of(v, form, batch) if form.timed else None, **kw)

    def node(self, n: fx.Node) -> None:
        if n.op == "placeholder":
            cls = self.classify(n)
            if cls is None or cls[:2] != ("stream", 2) or cls[2] != 0:
                self.fail("<input>", "input", f"the example input {self.shape} must be (B, C, T, ...)")
                return
            self.add(n, GraphOp("input", form=Form("stream", 2), shape=tuple(self.v1[n].shape), batch_axis=0, timing=Timing()))
            return
        if n.op == "get_attr":
            value = self.gm
            for part in str(n.target).split("."):
                value = getattr(value, part)
            if isinstance(value, Tensor):
                self.add(n, GraphOp("const", form=Form("const"), shape=tuple(value.shape), batch_axis=-1), Constant(value))
            else:
                self.add(n, GraphOp("static", form=Form("static"), call="function", target=_value, template=((value,), {})))
            return
        cls = self.classify(n)
        if cls is None:
            return
        kind, ta, batch = cls
        args = [a for a in n.args]
        first = args[0] if args and isinstance(args[0], fx.Node) else None
        first_form = self.ops[self.index[first]].form if first is not None and first in self.index else None
        call = {"call_module": "module", "call_function": "function", "call_method": "method"}[n.op]
        module = self.gm.get_submodule(n.target) if n.op == "call_module" else None

        # tuple elements
        if call == "function" and n.target is operator.getitem and first is not None and first in self.index:
            src = self.index[first]
            i = args[1]
            if isinstance(first_form, tuple):
                f = first_form[i]
                self.add(n, GraphOp("alias", refs=(Ref(src, Form("const")),), form=f, shape=tuple(self.v1[n].shape), batch_axis=batch,
                                    empty=self.empty_of(self.v1[n], f, batch), index=i))  # fmt: skip
                return
            if isinstance(self.v1[first], tuple) and isinstance(self.modules.get(self.ops[src].name), TracedRecurrent):
                if i != 0:
                    self.fail(self.where(first), self.what(first), "its final hidden state covers the whole sequence, which a stream never has; use the output sequence (element 0)")
                    return
                op = self.ops[src]
                self.add(n, GraphOp("alias", refs=(Ref(src, op.form),), form=op.form, shape=op.shape, batch_axis=op.batch_axis, empty=op.empty))
                return

        if kind == "timesize":
            self.add(n, self.static_op(n, call))
            self.timesize = getattr(self, "timesize", set()) | {n}
            return
        timesize = getattr(self, "timesize", set())
        used = [a for a in n.all_input_nodes if a in timesize]
        if used and not (call == "function" and n.target is operator.getitem):
            self.fail(self.where(n), self.what(n), f"uses {used[0].name}, a size that depends on the sequence length (x.shape[2] / x.size(2)); a stream has no length")
            return
        if kind == "static":
            tensors = [a for a in n.all_input_nodes if isinstance(self.v1[a], Tensor)]
            size_query = (call == "method" and n.target in _SIZE_METHODS) or (call == "function" and n.target is getattr and len(args) > 1 and args[1] in _SIZE_ATTRS)
            if tensors and not size_query:
                self.fail(self.where(n), self.what(n), "turns a tensor into a Python value; a stream's values are not known when the graph is built")
                return
            self.add(n, self.static_op(n, call))
            return

        # pads folded into the window layer after them
        if self.pad_before_window(n, module, call, first_form):
            return
        if module is not None and isinstance(module, _WINDOWS) and first_form is not None and first_form == Form("stream", 2):
            self.window(n, module, kind, ta)
            return
        if module is not None and isinstance(module, (nn.GRU, nn.LSTM, nn.RNN)):
            self.recurrent(n, module, first_form)
            return
        if module is not None and isinstance(module, StreamingModule):
            if first_form != Form("stream", 2) or len(n.all_input_nodes) != 1 or kind != "stream" or ta != 2:
                self.fail(self.where(n), self.what(n), "a soi streaming module needs one input with time in dimension 2")
                return
            self.add(n, self.value_op(n, "stream", Form("stream", 2), refs=(self.ref(first),)), module)
            return
        if call == "function" and n.target is operator.getitem and isinstance(first_form, Form) and first_form.kind == "stream" and self.time_slice(n, first, first_form):
            return
        if kind == "frame" and first_form is not None and first_form.kind == "stream" and self.reduction(n, module, call, first, first_form):
            return
        streams_in = [a for a in n.all_input_nodes if a in self.index and isinstance(self.ops[self.index[a]].form, Form) and self.ops[self.index[a]].form.kind == "stream"]
        if kind == "frame" and streams_in:
            self.fail(self.where(n), self.what(n), "reduces over time; only a mean, a sum, an amax and adaptive pooling to one frame stream (as cumulative reductions)")
            return
        self.frame_op(n, call, module, kind, ta)

    # -- windows ---------------------------------------------------------------------------------
    def pad_before_window(self, n: fx.Node, module: nn.Module | None, call: str, first_form: Any) -> bool:
        is_pad_module = module is not None and isinstance(module, _PAD_MODULES)
        is_pad_fn = call == "function" and n.target is F.pad
        if not (is_pad_module or is_pad_fn) or first_form != Form("stream", 2):
            return False
        if is_pad_fn:
            mode = n.kwargs.get("mode", n.args[2] if len(n.args) > 2 else "constant")
            value = n.kwargs.get("value", n.args[3] if len(n.args) > 3 else 0.0)
            pad = n.args[1] if len(n.args) > 1 else n.kwargs.get("pad")
            if mode != "constant" or not isinstance(pad, (tuple, list)) or not all(isinstance(p, int) for p in pad):
                return False
            pad = tuple(pad)
        else:
            pad = module.padding
            value = getattr(module, "value", 0.0)
        rank = self.v1[n].dim()
        pad = (pad,) * (2 * (rank - 2)) if isinstance(pad, int) else tuple(pad)
        time_index = 2 * (rank - 3)  # F.pad order: last axis first
        pads_time = len(pad) > time_index and (pad[time_index] or pad[time_index + 1])
        if not pads_time:
            return False
        users = list(n.users)
        target = self.gm.get_submodule(users[0].target) if len(users) == 1 and users[0].op == "call_module" else None
        if target is None or not isinstance(target, _WINDOWS[:3] + _WINDOWS[6:]) or users[0].args[0] is not n:
            self.fail(self.where(n), self.what(n), "pads time; only a padding right before a convolution or pooling streams (it becomes that layer's look-ahead)")
            return True

        class _Pad:
            padding = pad

        _Pad.value = float(value or 0.0)
        self.pads[n] = (n.args[0], _Pad())
        src = self.index[n.args[0]]
        op = self.ops[src]
        self.add(n, GraphOp("alias", refs=(Ref(src, op.form),), form=op.form, shape=op.shape, batch_axis=op.batch_axis, empty=op.empty, timing=op.timing))
        return True

    def window(self, n: fx.Node, module: nn.Module, kind: str, ta: int) -> None:
        if kind != "stream" or ta != 2:
            self.fail(self.where(n), self.what(n), "pools or convolves the whole sequence into a fixed number of frames")
            return
        src = n.args[0]
        pad = None
        dims = module.weight.dim() - 2 if hasattr(module, "weight") else len(self.v1[n].shape) - 2
        if src in self.pads:
            real, pad_module = self.pads[src]
            pad = self.conv.pad_of(pad_module, dims, self.where(src))
            if pad is None:
                return
            src = real
        x = self.v1[src]
        frame = (x.shape[1], *x.shape[3:])
        before = len(self.problems)
        layer = self.conv.layer(module, self.where(n), pad, frame)
        if layer is None:
            if len(self.problems) == before:
                self.fail(self.where(n), self.what(n), "did not convert")
            return
        self.add(n, self.value_op(n, "stream", Form("stream", 2), refs=(self.ref(src),)), layer)

    def recurrent(self, n: fx.Node, module: nn.RNNBase, first_form: Any) -> None:
        want = 1 if module.batch_first else 0
        if len(n.all_input_nodes) != 1 or len(n.args) != 1 or n.kwargs:
            self.fail(self.where(n), self.what(n), "takes an initial hidden state; a stream starts from zeros (the soi state carries it on)")
            return
        if first_form != Form("stream", want):
            self.fail(self.where(n), self.what(n), f"its input must have time in axis {want} (batch_first={module.batch_first})")
            return
        try:
            layer = TracedRecurrent(module)
        except (TypeError, ValueError) as e:
            self.fail(self.where(n), self.what(n), str(e))
            return
        y = self.v1[n][0]
        src = self.index[n.args[0]]
        op = GraphOp("stream", refs=(Ref(src, first_form),), form=Form("stream", want), shape=tuple(y.shape), batch_axis=1 - want,
                     empty=self.empty_of(y, Form("stream", want), 1 - want))  # fmt: skip
        self.add(n, op, layer)

    # -- time slices ---------------------------------------------------------------------------------
    def time_slice(self, n: fx.Node, first: fx.Node, form: Form) -> bool:
        """``x[..., a : T - b, ...]`` on the time axis: a :class:`TimeCrop` (the slice is warm-up and
        delay, like a valid convolution's), or the reason it cannot stream. False when the index
        leaves time alone (then it is a frame-wise operation)."""
        items = n.args[1] if isinstance(n.args[1], tuple) else (n.args[1],)
        consuming = [j for j, i in enumerate(items) if i is not None]  # None adds an axis, reads none
        if any(i is Ellipsis for i in items) or len(consuming) <= form.ta:
            return False  # the frame-wise check decides
        ta = consuming[form.ta]
        t = items[ta]
        if isinstance(t, slice) and (t.start, t.stop, t.step) == (None, None, None):
            return False
        what = self.what(n)
        if not isinstance(t, slice):
            self.fail(self.where(n), what, "picks frames of the time axis; a stream has every frame, not chosen ones")
            return True
        if any(not (isinstance(i, slice) and (i.start, i.stop, i.step) == (None, None, None)) for j, i in enumerate(items) if j != ta):
            self.fail(self.where(n), what, "slices time and other axes in one index; slice time on its own (x[:, :, a:-b]), then the rest")
            return True
        crops = []
        for rec in (self.v1, self.v2):
            length = rec[first].shape[form.ta]
            start, stop, step = slice(*(rec[v] if isinstance(v, fx.Node) else v for v in (t.start, t.stop, t.step))).indices(length)
            crops.append((start, length - stop, step))
        (a, b, step), other = crops
        if step != 1 or other[2] != 1:
            self.fail(self.where(n), what, "slices time with a step; decimate time with a strided layer (a stream keeps every frame)")
        elif other != crops[0] or a + b >= self.v1[first].shape[form.ta]:
            t1, t2 = self.v1[first].shape[form.ta], self.v2[first].shape[form.ta]
            self.fail(
                self.where(n), what,
                f"slices time by the sequence length (frames {a}..{t1 - b} of {t1}, {other[0]}..{t2 - other[1]} of {t2}); only a crop of a fixed number "
                "of frames at the start and at the end streams (x[:, :, a:-b], x[:, :, a : x.shape[2] - b])",
            )  # fmt: skip
        elif form.ta != 2 or self.classify(first)[2] != 0:
            self.fail(self.where(n), what, "crops time in a value whose layout is not (B, C, T, ...)")
        else:
            x = self.v1[first]
            self.add(n, self.value_op(n, "stream", Form("stream", 2), refs=(self.ref(first),)), TimeCrop(a, b, x.shape[1], x.shape[3:]))
        return True

    # -- time reductions -----------------------------------------------------------------------------
    def reduction(self, n: fx.Node, module: nn.Module | None, call: str, first: fx.Node, first_form: Form) -> bool:
        x, y = self.v1[first], self.v1[n]
        ta = first_form.ta
        adaptive = None
        if module is not None and type(module) in _ADAPTIVE or call == "function" and n.target in _ADAPTIVE_FN:
            mode = _ADAPTIVE[type(module)] if module is not None else _ADAPTIVE_FN[n.target]
            if getattr(module, "return_indices", False) or n.kwargs.get("return_indices") or (call == "function" and len(n.args) > 2 and n.args[2]):
                self.fail(self.where(n), self.what(n), "return_indices is not supported")
                return True
            if ta != 2 or y.dim() != x.dim() or y.shape[2] != 1:
                self.fail(self.where(n), self.what(n), "adaptive pooling over time streams only to one frame (a cumulative pool)")
                return True
            adaptive = tuple(y.shape[3:])
            dims, keepdim = (), True
        elif (call == "method" and n.target in _REDUCE) or (call == "function" and n.target in _REDUCE_FN):
            mode = _REDUCE[n.target] if call == "method" else _REDUCE_FN[n.target]
            dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else None)
            keepdim = bool(n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False))
            if dim is None or not all(isinstance(d, int) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))):
                self.fail(self.where(n), self.what(n), "reduces over every axis, the batch too; name the axes (dim=...)")
                return True
            dims = {d % x.dim() for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
            if ta not in dims:
                return False
            batch = self.classify(first)[2]
            if batch in dims:
                self.fail(self.where(n), self.what(n), "reduces over the batch axis")
                return True
            dims = tuple(sorted(dims - {ta}))
        else:
            return False
        if keepdim:
            form = Form("kept", ta)
            total = [v for i, v in enumerate(y.shape) if i not in (0, ta)]
        else:
            out_ta = ta - sum(1 for d in dims if d < ta)
            form = Form("dropped", out_ta)
            total = list(y.shape[1:])
        if self.classify(first)[2] != 0:
            self.fail(self.where(n), self.what(n), "reduces over time a value whose batch is not in axis 0")
            return True
        pool = CumulativePool(mode, ta, dims, keepdim, total, adaptive)
        self.add(n, self.value_op(n, "stream", form, refs=(self.ref(first),)), pool)
        return True

    # -- frame-wise operations ----------------------------------------------------------------------
    def check_input(self, r: Ref, node: fx.Node, length: int) -> Any:
        v = self.v2[node]
        if r.form.kind == "kept":
            shape = list(v.shape)
            shape[r.form.ta] = length
            return v.expand(shape)
        if r.form.kind == "dropped":
            v = v.unsqueeze(r.form.ta)
            shape = list(v.shape)
            shape[r.form.ta] = length
            return v.expand(shape)
        return v

    def frame_op(self, n: fx.Node, call: str, module: nn.Module | None, kind: str, ta: int) -> None:
        args, kwargs = self.template(n)
        refs = refs_in((args, kwargs))
        timed = [r for r in refs if r.form.timed]
        nodes_of = {self.index[a]: a for a in n.all_input_nodes if a in self.index}
        if module is not None and getattr(module, "inplace", False):
            module.inplace = False  # another node may read the input it would overwrite
        if "inplace" in kwargs:
            kwargs = {**kwargs, "inplace": False}
        if not timed:
            form = Form("const")
            self.add(n, GraphOp("op", refs=tuple(refs), form=form, shape=(), batch_axis=0), FrameOp(call, module if module is not None else n.target, args, kwargs, form, module, direct=True))
            return
        # every timed input at one rate (the alignment pass checks strides; here the lengths)
        lengths = {self.v2[nodes_of[r.src]].shape[r.form.ta] for r in timed if r.form.kind == "stream"}
        if len(lengths) > 1:
            self.fail(self.where(n), self.what(n), f"combines streams of different lengths {sorted(lengths)} (different time strides)")
            return
        length = lengths.pop() if lengths else 2
        values = {r: self.check_input(r, nodes_of[r.src], length) if r.form.timed else self.v2[nodes_of[r.src]] for r in refs}
        module64 = self.gm64.get_submodule(n.target) if module is not None else None
        if module64 is not None and getattr(module64, "inplace", False):
            # the probes below run it on the same input twice (frame by frame, then whole): in place,
            # the first run would change the second's input, and an expanded input refuses it
            module64.inplace = False
        target = module if module is not None else n.target
        out = self.v2[n]

        def form_of(v: Any, kind_: str, ta_: int) -> Any:
            if isinstance(v, (tuple, list)):
                return tuple(form_of(e, self._elem_kind(e, i, n), self._elem_ta(n, i)) for i, e in enumerate(v))
            if kind_ == "stream":
                return Form("stream", ta_)
            return Form("dropped", min(2, v.dim()))

        def expected(v: Any, f: Any) -> Any:
            if isinstance(f, tuple):
                return tuple(expected(e, g) for e, g in zip(v, f))
            if f.kind == "stream":
                return v
            v = v.unsqueeze(f.ta) if f.kind == "dropped" else v
            shape = list(v.shape)
            shape[f.ta] = length
            return v.expand(shape)

        if kind == "tuple" or kind in ("stream", "frame"):
            form = form_of(out, kind, ta)
        else:
            self.fail(self.where(n), self.what(n), f"gives a {kind} value from a stream")
            return
        probe = FrameOp(call, target, args, kwargs, form, module64)
        try:
            got = probe.run(values, length)
        except Exception as e:  # noqa: BLE001
            self.fail(self.where(n), self.what(n), f"fails when applied to one frame at a time ({type(e).__name__}: {e})")
            return
        if not _close(got, expected(out, form)):
            if kind == "stream" and isinstance(out, Tensor) and out.shape[ta] != length:
                first_stream = next(r for r in timed if r.form.kind == "stream")
                frames_in = self.v1[nodes_of[first_stream.src]].shape[first_stream.form.ta]
                reason = f"changes the sequence length ({frames_in} frames in, {self.v1[n].shape[ta]} out); a stream gives one frame per frame"
            else:
                reason = "is not frame-wise: applied to each frame on its own it does not give what torch gives on the sequence (it reads other frames, or mixes time with other axes)"
            self.fail(self.where(n), self.what(n), reason)
            return
        # the whole chunk at once, where it gives the same (no dropped input: their layout is not torch's)
        direct = False
        if not isinstance(form, tuple) and not any(r.form.kind == "dropped" for r in timed):
            probe.direct = True
            candidates = [form] if form.kind == "stream" else [Form("kept", r.form.ta) for r in timed if r.form.kind == "kept" and out.dim() > r.form.ta and out.shape[r.form.ta] == 1]
            for cand in candidates:
                try:
                    ok = _close(probe.run(values, length), expected(out, cand))
                except Exception:  # noqa: BLE001
                    ok = False
                if ok:
                    form, direct = cand, True
                    break
        macs, work = self.macs_of(n, module, timed, nodes_of)
        if direct and module is not None and form == Form("stream", 2) and len(timed) == 1 and len(refs) == 1 and timed[0].form == Form("stream", 2) and not n.kwargs and len(n.args) == 1 and frame_wise_problem(module) is None:
            self.add(n, self.value_op(n, "stream", form, refs=(timed[0],)), FrameWise(module))
            return
        op = FrameOp(call, target, args, kwargs, form, module, direct=direct, macs=macs, kind=work)
        self.add(n, self.value_op(n, "op", form, refs=tuple(refs)), op)

    def _elem_kind(self, e: Tensor, i: int, n: fx.Node) -> str:
        return "stream" if e.dim() == self.v1[n][i].dim() and any(a != b for a, b in zip(self.v1[n][i].shape, self.v2[n][i].shape)) else "frame"

    def _elem_ta(self, n: fx.Node, i: int) -> int:
        a, b = self.v1[n][i], self.v2[n][i]
        return next((j for j in range(a.dim()) if a.shape[j] != b.shape[j]), -1)

    def macs_of(self, n: fx.Node, module: nn.Module | None, timed: list[Ref], nodes_of: dict) -> tuple[int, str]:
        """MACs of one run (one frame, one stream) of a frame-wise module that multiplies."""
        if module is None or not timed:
            return 0, "op"
        r = timed[0]
        x = self.v1[nodes_of[r.src]]
        shape = list(x.shape)
        shape[self.classify(nodes_of[r.src])[2]] = 1
        if r.form.kind in ("stream", "kept"):
            shape[r.form.ta] = 1
        if isinstance(module, nn.Linear):
            return module.in_features * module.out_features * math.prod(shape[1:-1]), "linear"
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and isinstance(module.padding, tuple):
            nd = module.weight.dim() - 2
            return conv_macs(shape[2:], tuple(module.weight.shape), module.stride, module.padding, module.dilation, False, (0,) * nd, False), "conv"
        return 0, "op"

    # -- 4: timing and alignment ----------------------------------------------------------------------
    def align_branches(self) -> None:
        self.aligns: list[DelayLine] = []
        users: dict[int, int] = {}
        for op in self.ops:
            for r in op.refs:
                users[r.src] = users.get(r.src, 0) + 1
        self.users = users
        for k, op in enumerate(self.ops):
            if op.kind in ("input", "const", "static"):
                continue
            if op.kind == "alias":
                op.timing = self.ops[op.refs[0].src].timing
                continue
            timed = [r for r in op.refs if r.form.timed]
            if not timed:
                continue
            rates = {_rate(self.ops[r.src].timing) for r in timed}
            if len(rates) > 1:
                self.fail(op.name, type(self.modules[op.name]).__name__, f"combines values at different rates ({_rates(rates)}); they must run at one rate, in the same groups of frames")
                continue
            delays = [self.ops[r.src].timing.delay for r in timed]
            late = max(delays)
            for r, d in zip(list(timed), delays):
                if d < late:
                    self.delay_ref(k, r, late - d)
            op.timing = self.timing_of(k)

    def timing_of(self, k: int) -> Timing:
        op = self.ops[k]
        timed = [r for r in op.refs if r.form.timed]
        timings = [self.ops[r.src].timing.then(self.aligns[r.align].timing) if r.align >= 0 else self.ops[r.src].timing for r in timed]
        if op.kind == "stream":
            return timings[0].then(self.modules[op.name].timing)
        return dataclasses.replace(timings[0], receptive_field=max(t.receptive_field for t in timings), delay=max(t.delay for t in timings))

    def delay_ref(self, k: int, r: Ref, lag: int) -> None:
        """Delay input ``r`` of op ``k`` by ``lag`` input frames of the graph: on that edge if its
        stride divides ``lag``, else further up its branch (where the branch has one user)."""
        op = self.ops[k]
        src = self.ops[r.src]
        stride = src.timing.stride
        frames = src.timing.frames_for_lag(lag)
        if frames is not None and r.form.ta == 2 and src.batch_axis == 0:
            shape = list(src.shape)
            if r.form.kind == "dropped":
                shape.insert(2, 1)
            line = DelayLine(frames, shape[1], shape[3:])
            self.aligns.append(line)
            new = Ref(r.src, r.form, len(self.aligns) - 1)
            self.replace_ref(k, r, new)
            return
        single = [q for q in src.refs if q.form.timed]
        if src.kind in ("stream", "op", "alias") and len(single) == 1 and self.users.get(r.src, 0) == 1:
            self.delay_ref(r.src, single[0], lag)
            src.timing = self.timing_of(r.src) if src.kind != "alias" else self.ops[src.refs[0].src].timing
            return
        self.fail(op.name or "<node>", "alignment", f"cannot delay its input {src.name or src.kind} by {lag} frames at time stride {stride}; "
                  "give the branches look-ahead that differs by a multiple of the stride")  # fmt: skip

    def replace_ref(self, k: int, old: Ref, new: Ref) -> None:
        op = self.ops[k]
        op.refs = tuple(new if q == old else q for q in op.refs)
        if op.kind == "op":
            node = self.modules[op.name]
            node.template = map_refs(node.template, lambda q: new if q == old else q)

    # -- chains of stream nodes become soi.Sequential --------------------------------------------------
    def group_chains(self) -> dict[int, int] | None:
        """Consecutive single-input stream nodes on time-in-axis-2 streams, each feeding only the
        next, become one :class:`soi.Sequential` (BatchNorm after a convolution then folds at export)."""
        users: dict[int, int] = {}
        for op in self.ops:
            for r in op.refs:
                users[r.src] = users.get(r.src, 0) + 1
        chainable = lambda op: op.kind == "stream" and op.refs[0].form == Form("stream", 2) and op.form == Form("stream", 2) and not isinstance(self.modules[op.name], (TracedRecurrent,))
        k = 0
        while k < len(self.ops):
            op = self.ops[k]
            if not chainable(op):
                k += 1
                continue
            chain = [k]
            while True:
                last = chain[-1]
                nxt = [j for j, o in enumerate(self.ops) if any(r.src == last for r in o.refs)]
                if users.get(last, 0) != 1 or len(nxt) != 1 or not chainable(self.ops[nxt[0]]) or nxt[0] != last + 1 or self.ops[nxt[0]].refs[0].align >= 0:
                    break
                chain.append(nxt[0])
            if len(chain) > 1:
                first, end = self.ops[chain[0]], self.ops[chain[-1]]
                seq = Sequential(*(self.modules.pop(self.ops[j].name) for j in chain))
                merged = dataclasses_replace(end, refs=first.refs, name=first.name, timing=end.timing)
                self.modules[first.name] = seq
                # the chain's inner values disappear: the last op takes the chain's place
                self.ops[chain[-1]] = merged
                for j in chain[:-1]:
                    self.ops[j] = GraphOp("alias", refs=first.refs, form=first.refs[0].form, shape=(), timing=None)  # unused placeholder
                    self.ops[j].kind = "dead"
            k = chain[-1] + 1
        # drop the dead placeholders, renumbering references
        keep = [j for j, o in enumerate(self.ops) if o.kind != "dead"]
        if len(keep) == len(self.ops):
            return None
        new_index = {j: i for i, j in enumerate(keep)}
        renumber = lambda r: Ref(new_index[r.src], r.form, r.align)
        ops = []
        for j in keep:
            o = self.ops[j]
            o.refs = tuple(renumber(r) for r in o.refs)
            if o.kind == "op":
                node = self.modules[o.name]
                node.template = map_refs(node.template, renumber)
            if o.kind == "static":
                o.template = map_refs(o.template, renumber)
            ops.append(o)
        self.ops = ops
        return new_index


def dataclasses_replace(op: GraphOp, **changes: Any) -> GraphOp:
    return dataclasses.replace(op, **changes)


def _rate(t: Timing) -> tuple[int, int, int]:
    """What branches meeting frame by frame must share: ``(stride, upsample, lead)``."""
    return (t.stride, t.upsample, t.lead)


def _rates(rates: set[tuple[int, int, int]]) -> str:
    """``_rate`` values as a reader's text: "1 frame per 2 input frames, ..."."""
    return ", ".join(
        f"{u} frame{'s' if u > 1 else ''} per {s} input frame{'s' if s > 1 else ''}" + (f" (first group {lead} short)" if lead else "")
        for s, u, lead in sorted(rates)
    )


def convert_graph(module: nn.Module, example_input: Tensor | None, causal: bool) -> tuple[StreamGraph | None, list[tuple[str, str]]]:
    """The :class:`StreamGraph` of ``module``, or ``None`` and the problems found."""
    b = _Builder(module, example_input, causal)
    if not b.trace():
        return None, b.problems
    graph = None
    try:
        graph = b.build()
    except Exception as e:  # noqa: BLE001 - an internal failure is reported, not raised half-built
        b.fail("<model>", "conversion", f"{type(e).__name__}: {e}")
    if b.problems:
        return None, b.problems
    return graph, []
