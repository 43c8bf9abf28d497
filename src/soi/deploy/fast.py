"""Lean streaming inference: BatchNorm folding, a flat-tensor step graph, its static schedule, and a
streamer that runs the step compiled.

The pure protocol ``y, state = model.step(x, state)`` is what training and the reference stream use.
For deployment it has two costs that have nothing to do with the network's arithmetic: Python
(dataclass states, shape checks, one interpreter round trip per layer) and layers that only exist
for training (BatchNorm). This module removes both without changing a single output value:

* :func:`fold_batchnorm` returns a copy of a model whose eval-mode BatchNorms are folded into the
  STMC convolution or tSTMC before them (the BatchNorm becomes an identity).
* :class:`StepGraph` is one step as a function of tensors only,
  ``forward(x, *state_tensors) -> (y, *new_state_tensors)``: what ``torch.compile``,
  ``torch.export`` and ``torch.onnx`` take. The Python ``int`` fields of a state (a stride phase,
  look-ahead frames still to skip, frames pending in an FP shift) are the *static schedule*: one
  graph per distinct set of them, with no control flow inside.
* :func:`discover_schedule` walks the schedule once (a few zero frames through the eager step): the
  warm-up phases (look-ahead, FP shifts filling up) and the cycle that then repeats for ever (one
  phase for STMC, ``s`` for an S-CC pair of stride ``s``, twice that for FP with ``prepare``).
* :class:`FastStreamer` holds the state in buffers allocated once (the compiled graphs update them
  in place; :func:`inplace_names`), walks the schedule, and calls one compiled graph per phase
  (:data:`BACKENDS`: ``"script"`` TorchScript, ``"aoti"`` AOTInductor C++, ``"export"``,
  ``"compile"``, ``"graph"``, and ``"eager"``, the reference, which runs the plain step). Its
  outputs equal ``model.step``'s (tested).

Preallocated state buffers versus concatenation were measured (``docs/deploy.md``): inside a step,
concatenating ``[history, frame]`` costs 2-6 us per layer against 11-30 us for updating a
preallocated window in place (and the in-place update makes the step impure), so concatenation is
kept and the lean step drops the remaining slice copy; between steps, preallocated buffers win:
:class:`soi.runtime.OnnxStreamer` binds double buffers, :class:`FastStreamer` updates its buffers in
place.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import shutil
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ..core.containers import FrameWise
from ..layers.conv import STMCConvNd
from ..layers.conv_transpose import STMCConvTransposeNd
from ..core.state import State, StreamingModule, replace_state_tensors, state_tensors
from ..core.window import TemporalWindow

__all__ = [
    "fold_batchnorm",
    "lean",
    "schedule_key",
    "Phase",
    "Schedule",
    "discover_schedule",
    "StepGraph",
    "inplace_names",
    "FastStreamer",
    "BACKENDS",
]

BACKENDS = ("eager", "graph", "export", "script", "compile", "aoti")
"""Ways :class:`FastStreamer` runs a phase: ``"eager"`` (the plain ``model.step``, the reference),
``"graph"`` (:class:`StepGraph` eagerly: flat tensors, same Python), ``"export"``
(``torch.export``: a graph of ATen operators without the Python of the layers, run op by op from
Python), ``"script"`` (that graph traced to TorchScript and frozen: run by the C++ interpreter, no
Python per operator), ``"compile"`` (``torch.compile`` with Inductor; slow to build, and its
per-call guards cost more than a small step), ``"aoti"`` (AOTInductor: the exported graph compiled
ahead of time to a C++ library per phase, elementwise work fused into loops, every convolution an
im2col + matrix product; needs a C++ compiler and ~10-30 s per phase to build; the fastest torch
form here, ``docs/deploy.md``)."""

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# ==================================================================================================
# BatchNorm folding
# ==================================================================================================


def _bn_of(module: nn.Module) -> nn.Module | None:
    inner = module.module if isinstance(module, FrameWise) else module
    return inner if isinstance(inner, _BN) else None


@torch.no_grad()
def _fold_into(conv: nn.Module, bn: nn.Module) -> None:
    if bn.training:
        raise ValueError("fold_batchnorm: BatchNorm is in training mode; call model.eval() first")
    if not bn.track_running_stats or bn.running_mean is None:
        raise ValueError("fold_batchnorm: BatchNorm without running statistics cannot be folded")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    w = conv.weight
    if isinstance(conv, STMCConvTransposeNd):
        # weight (C_in, C_out/groups, ...): output channel g*C_out/g + j sits in group g's rows, column j.
        g = conv.groups
        view = w.view(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
        view.mul_(scale.to(w).view(g, 1, w.shape[1], *([1] * (w.dim() - 2))))
    else:
        w.mul_(scale.to(w).view(-1, *([1] * (w.dim() - 1))))
    if conv.bias is None:
        conv.bias = nn.Parameter(shift.to(w))
    else:
        conv.bias.mul_(scale.to(w)).add_(shift.to(w))


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm that directly follows an STMC
    convolution or tSTMC in a soi container folded into that layer's weights and bias.

    The folded BatchNorm is replaced by an identity, so the state layout and every output stay the
    same (up to float rounding). BatchNorms elsewhere are left alone. ``inplace=True`` folds into
    ``model`` itself.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    seen: set[int] = set()
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if not isinstance(layers, nn.ModuleList):
            continue
        items = list(layers)
        for prev, cur in zip(items, items[1:]):
            bn = _bn_of(cur)
            if bn is None or id(bn) in seen or not isinstance(prev, (STMCConvNd, STMCConvTransposeNd)):
                continue
            if bn.num_features != prev.out_channels:
                continue
            _fold_into(prev, bn)
            seen.add(id(bn))
            if isinstance(cur, FrameWise):
                cur.module = nn.Identity()  # shared with any other container holding this layer
            else:
                idx = items.index(cur)
                layers[idx] = FrameWise(nn.Identity())
    return model


# ==================================================================================================
# Lean layers: polyphase tSTMC, im2col convolutions
# ==================================================================================================


def _polyphase(m: STMCConvTransposeNd) -> tuple[Tensor, Tensor | None, int, int, int]:
    """A 2-d tSTMC (transposed in frequency with stride ``s``) as one ordinary convolution with
    ``s * C_out`` output channels, one group per output phase (polyphase decomposition): weight
    ``(s*C_out, C_in, k_t, L)`` (time flipped: causal correlation over the window), bias, and the
    frequency offsets ``(Ulo, Uhi, L)``. Output ``f = s*q + r`` is phase ``r`` at position ``q``."""
    w = m.weight.detach()
    c_in, c_out, kt, kf = w.shape
    s, p = m.conv_stride[1], m.padding[0]
    info = []
    for r in range(s):
        c = r + p
        info.append((c % s, c // s, len(range(c % s, kf, s))))
    lo = min(cq - n + 1 for _, cq, n in info)
    hi = max(cq for _, cq, _ in info)
    length = hi - lo + 1
    out = w.new_zeros(c_out, s, c_in, kt, length)
    wt = w.flip(2).permute(1, 0, 2, 3)  # (C_out, C_in, kt, kf), time flipped
    for r, (c0, cq, n) in enumerate(info):
        for j in range(n):
            out[:, r, :, :, cq - j - lo] = wt[:, :, :, s * j + c0]
    bias = m.bias.detach().repeat_interleave(s) if m.bias is not None else None
    return out.reshape(c_out * s, c_in, kt, length), bias, lo, hi, length


def _poly_transpose_op(self: STMCConvTransposeNd, window: Tensor) -> Tensor:
    w, b, lo, hi, _ = self._lean_poly
    s, c_out = self.conv_stride[1], self.out_channels
    f_in = window.shape[3]
    f_out = self.out_frame_size((f_in,))[0]
    q = -(-f_out // s)
    pad = max(0, -lo, q - 1 + hi - (f_in - 1))
    y = _conv2d(self, window, w, b, (1, 1), pad)
    y = y[..., lo + pad : lo + pad + q]
    bsz, _, t, _ = y.shape
    y = y.reshape(bsz, c_out, s, t, q).permute(0, 1, 3, 4, 2).reshape(bsz, c_out, t, q * s)
    return y[..., :f_out]


def _product(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` with one operand a weight matrix ``(M, K)`` and the other ``(B, ., .)``: for one
    stream a 2-d product (``mm``) instead of a batched one."""
    if a.dim() == 3 and a.shape[0] == 1:
        return (a[0] @ b).unsqueeze(0)
    if b.dim() == 3 and b.shape[0] == 1:
        return (a @ b[0]).unsqueeze(0)
    return a @ b


def _conv2d(self: nn.Module, window: Tensor, w: Tensor, b: Tensor | None, stride: tuple[int, int], pad: int) -> Tensor:
    """2-d correlation, no time padding, frequency padding ``pad``: ``F.conv2d`` or, for the torch
    and inductor forms, one matrix product. The product is oriented so that its result has the
    longer side as columns: ``cols^T @ W^T`` (frames x positions rows) normally, ``W @ cols`` when
    the layer has at most :data:`CHANNEL_MAJOR_MAX_OUT` output channels; BLAS small-matrix kernels
    are 2.5-4x slower on a product only 4-8 columns wide (measured in ``docs/deploy.md``).

    Layers prepared with taps (:func:`_taps_conv2d`) multiply first and shift after; the others
    gather an im2col matrix ``cols`` ``(B, C_in*k_t*k_f, T*F)`` first. The inductor form pads the
    window with zero columns first: Inductor then gathers from a buffer without bounds checks
    (its masked gathers are scalar loops)."""
    if not getattr(self, "_lean_matmul", False):
        return torch.nn.functional.conv2d(window, w, b, stride, (0, pad))
    if self._lean_taps is not None:
        return _taps_conv2d(self, window, b, stride[0], pad)
    c_out, _, kt, kf = w.shape
    bsz, _, t, f = window.shape
    t_out = (t - kt) // stride[0] + 1
    f_out = (f + 2 * pad - kf) // stride[1] + 1
    # Inductor fuses a separate bias add into the next elementwise kernel; ATen's addmm instead
    # saves an operator (measured both ways, docs/deploy.md).
    fuse_bias = self._lean_target == "inductor"
    if fuse_bias and pad:
        zeros = window.new_zeros(bsz, window.shape[1], t, pad)
        window, pad = torch.cat([zeros, window, zeros], dim=3), 0
    cols = torch.nn.functional.unfold(window, (kt, kf), padding=(0, pad), stride=stride)  # (B, K, T*F)
    if c_out <= CHANNEL_MAJOR_MAX_OUT < t_out * f_out:
        wm, bcol = self._lean_wm, self._lean_bcol  # (C_out, K), (C_out, 1): prepared once by lean()
        if fuse_bias:
            y = _product(wm, cols) + bcol
        else:
            y = torch.addmm(bcol, wm, cols[0]).unsqueeze(0) if bsz == 1 else torch.baddbmm(bcol, wm.expand(bsz, -1, -1), cols)
        return y.reshape(bsz, c_out, t_out, f_out)
    wt = self._lean_wt  # (K, C_out), prepared once by lean()
    if bsz == 1 and b is not None and not fuse_bias:  # a transposed view: the BLAS reads it as is, no copy
        y = torch.addmm(b, cols[0].t(), wt).unsqueeze(0)
    else:
        y = _product(cols.transpose(1, 2), wt)  # (B, T*F, C_out)
        if b is not None:
            y = y + b
    return y.transpose(1, 2).reshape(bsz, c_out, t_out, f_out)


def _taps_conv2d(self: nn.Module, window: Tensor, b: Tensor | None, t_stride: int, pad: int) -> Tensor:
    """Frequency stride 1, "taps" form: one product of all ``k_f`` taps' weights ``(k_f*C_out,
    C_in*k_t)`` with the window's frames as they are, then the taps' rows summed at their shifts::

        y[j] = W[..., j] @ window          (k_f*C_out rows, every input position)
        out[f] = sum_j y[j][f + j - pad]   (zero outside)

    Same products as im2col, but it writes and re-reads ``k_f*C_out`` values per position instead
    of gathering ``C_in*k_t*k_f``: fewer when ``C_out < C_in*k_t``, as in every decoder layer
    (concatenated skip channels, polyphase groups of 2*C_out), and no gather for one frame."""
    kf, c_out, kt = self._lean_taps
    channel_major = c_out <= CHANNEL_MAJOR_MAX_OUT
    if pad and self._lean_target == "inductor" and not channel_major:
        # Rows of positions are summed at shifts: with zero columns in the window (zero rows of the
        # product) Inductor's sum reads without bounds checks (masked loads are scalar loops). Along
        # a channel-major product's contiguous rows the checks are cheap, the extra copy is not
        # (measured both ways, docs/deploy.md).
        zeros = window.new_zeros(*window.shape[:3], pad)
        window, pad = torch.cat([zeros, window, zeros], dim=3), 0
    bsz, c_in, t, f = window.shape
    t_out = (t - kt) // t_stride + 1
    f_out = f + 2 * pad - kf + 1
    if t == kt:  # one output frame: the window is the product's input as it lies
        cols = window.reshape(bsz, c_in * kt, f)
    else:
        cols = torch.nn.functional.unfold(window, (kt, 1), stride=(t_stride, 1))  # (B, C_in*k_t, T_out*F)
    if channel_major:
        y = _product(self._lean_wm, cols).reshape(bsz, kf, c_out, t_out, f)
    else:
        y = _product(cols.transpose(1, 2), self._lean_wt).reshape(bsz, t_out, f, kf, c_out).permute(0, 3, 4, 1, 2)
    if pad:
        y = torch.nn.functional.pad(y, (pad, pad))
    out = y[:, 0, ..., :f_out]
    for j in range(1, kf):
        out = out + y[:, j, ..., j : j + f_out]
    return out if b is None else out + b[:, None, None]


def _mm_conv_op(self: STMCConvNd, window: Tensor) -> Tensor:
    return _conv2d(self, window, self.weight, self.bias, (self.conv_stride[0], self.conv_stride[1]), self.padding[0])


MATMUL_MIN_WEIGHTS = 65536
"""Torch form: layers with at least this many weights run as im2col + matrix product (measured:
ATen's direct convolution wins below, the matrix product by 2-4x above, on one-frame windows).
The inductor form runs every layer as a product: Inductor fuses the im2col into its own loops."""

CHANNEL_MAJOR_MAX_OUT = 8
"""Products for layers with at most this many output channels (per polyphase group: ``s*C_out``
for a tSTMC) are computed as ``W @ cols`` (see :func:`_conv2d`)."""

LEAN_TARGETS = ("torch", "inductor", "onnx")


def _prepare_matmul(m: nn.Module, w: Tensor, b: Tensor | None, target: str, stride: int) -> None:
    """Weights of the product :func:`_conv2d` runs, arranged once: im2col rows ``(C_out, C_in*k_t*
    k_f)``, or for the taps form (frequency stride 1, ``C_out < C_in*k_t``) ``(k_f*C_out, C_in*k_t)``."""
    c_out, c_in, kt, kf = w.shape
    m._lean_matmul = True
    m._lean_target = target
    m._lean_taps = (kf, c_out, kt) if stride == 1 and c_out < c_in * kt else None
    wm = w.permute(3, 0, 1, 2).reshape(kf * c_out, c_in * kt) if m._lean_taps else w.reshape(c_out, -1)
    m._lean_wm = wm.contiguous()
    m._lean_wt = wm.t().contiguous()
    m._lean_bcol = (b.detach() if b is not None else w.new_zeros(c_out))[:, None].contiguous()


def _fast_ops_apply(m: nn.Module, target: str, polyphase: bool) -> None:
    if getattr(m, "dims", None) != 2 or getattr(m, "groups", 1) != 1:
        return
    if any(d != 1 for d in m.dilation):
        return
    min_weights = {"torch": MATMUL_MIN_WEIGHTS, "inductor": 0}.get(target)
    matmul = min_weights is not None and m.weight.numel() >= min_weights
    if target == "torch":  # only where the matrix product carries it
        polyphase = matmul
    if isinstance(m, STMCConvNd) and matmul:
        _prepare_matmul(m, m.weight.detach(), m.bias, target, m.conv_stride[1])
        m.window_op = types.MethodType(_mm_conv_op, m)
    elif isinstance(m, STMCConvTransposeNd) and polyphase and m.conv_stride[1] > 1:
        m._lean_poly = _polyphase(m)
        if matmul:
            _prepare_matmul(m, m._lean_poly[0], m._lean_poly[1], target, 1)
        m.window_op = types.MethodType(_poly_transpose_op, m)


def lean(model: nn.Module, fold_bn: bool = True, target: str = "torch", polyphase: bool = True) -> nn.Module:
    """A copy of ``model`` for inference; outputs and states equal ``model``'s (up to float
    rounding).

    * BatchNorm folded into the convolution before it (:func:`fold_batchnorm`);
    * every shift register uses the lean step (``TemporalWindow.advance``: no Python checks, no work
      for empty chunks, the history sliced from the chunk);
    * 2-d tSTMC with a frequency stride become one ordinary convolution (polyphase: ``s*C_out``
      output channels, then the phases interleaved), which both ATen and onnxruntime run faster
      than a transposed convolution;
    * ``target="torch"`` (TorchScript): 2-d convolutions with at least :data:`MATMUL_MIN_WEIGHTS`
      weights run as im2col + one matrix product (ATen's direct convolution is slow for one-frame
      windows); ``target="inductor"`` (AOTInductor): every 2-d convolution does;
      ``target="onnx"`` keeps ``Conv`` nodes.
    """
    if target not in LEAN_TARGETS:
        raise ValueError(f"lean: target must be one of {', '.join(map(repr, LEAN_TARGETS))}, got {target!r}")
    model = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    for m in _all_modules(model):
        if isinstance(m, TemporalWindow) and type(m).step is TemporalWindow.step:
            m.step = m.advance
        if isinstance(m, (STMCConvNd, STMCConvTransposeNd)):
            _fast_ops_apply(m, target, polyphase)
    return model


def _all_modules(model: nn.Module) -> list[nn.Module]:
    """Every module reachable from ``model``, including the ones containers hold without
    registering them (e.g. the alignment delays of ``Concat`` and a U-Net's ``graph``)."""
    seen: dict[int, nn.Module] = {}
    stack: list[Any] = [model]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen[id(m)] = m
        stack.extend(m.children())
        for v in vars(m).values():
            if isinstance(v, nn.Module):
                stack.append(v)
            elif isinstance(v, (list, tuple)):
                stack.extend(u for u in v if isinstance(u, nn.Module))
    return list(seen.values())


# ==================================================================================================
# The static schedule
# ==================================================================================================


def _leaf_values(value: Any, out: list) -> None:
    if isinstance(value, Tensor):
        out.append(("T", tuple(value.shape)))
    elif isinstance(value, State):
        for f in dataclasses.fields(value):
            if f.name != "owner":
                _leaf_values(getattr(value, f.name), out)
    elif isinstance(value, tuple):
        out.append(("(", len(value)))
        for v in value:
            _leaf_values(v, out)
    else:
        out.append(value)


def schedule_key(state: State) -> tuple:
    """The static part of a state: every Python value (phases, counters, ``None`` fields) and the
    shape of every tensor. Two states with the same key run the same graph."""
    out: list = []
    _leaf_values(state, out)
    return tuple(out)


@dataclass
class Phase:
    """One call of a schedule: ``kind`` is ``"step"`` or ``"prepare"``; the state layout it reads
    (``in_names``) and writes (``out_names``), its templates, and the graph it shares with other
    phases of the same key (``graph_id``)."""

    kind: str
    graph_id: int
    in_template: State
    out_template: State
    in_names: list[str]
    out_names: list[str]
    changed: list[str] = field(default_factory=list)
    noop: bool = False

    @property
    def kept(self) -> list[str]:
        """State tensors the call passes through unchanged (not outputs of its graph)."""
        changed = set(self.changed)
        return [n for n in self.out_names if n not in changed]


@dataclass
class Schedule:
    """The phases of a stream: ``warmup`` once, then ``cycle`` for ever."""

    warmup: list[Phase]
    cycle: list[Phase]
    frames_per_step: int
    input_shape: tuple[int, ...]
    initial: State
    graphs: dict[int, Phase] = field(default_factory=dict)  # graph_id -> first phase using it

    def phase(self, index: int) -> Phase:
        """The phase of call ``index`` (0-based) of the stream."""
        if index < len(self.warmup):
            return self.warmup[index]
        return self.cycle[(index - len(self.warmup)) % len(self.cycle)]

    @property
    def steps_per_cycle(self) -> int:
        return sum(p.kind == "step" for p in self.cycle)


def _materialize(model: StreamingModule, state: State, x: Tensor) -> State:
    """Create the lazily sized parts of a state (a zero-frame step changes nothing else)."""
    if all(t is not None for t in _tensor_slots(state)):
        return state
    _, state = model.step(x[:, :, :0], state)
    return state


def _tensor_slots(value: Any) -> list:
    out: list = []
    if isinstance(value, State):
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if isinstance(v, (State, tuple)):
                out.extend(_tensor_slots(v))
            elif v is None and f.name in ("history", "elems", "out"):
                out.append(None)
            elif isinstance(v, Tensor):
                out.append(v)
    elif isinstance(value, tuple):
        for v in value:
            out.extend(_tensor_slots(v))
    return out


@torch.no_grad()
def discover_schedule(
    model: StreamingModule,
    input_shape: Sequence[int],
    *,
    prepare: bool | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    max_calls: int = 10_000,
) -> Schedule:
    """Walk the static schedule of ``model`` for chunks of shape ``input_shape = (B, C, n, ...)``.

    Zero chunks go through the eager ``step`` (and ``prepare`` before each step when ``prepare`` is
    true; by default when ``prepare`` does any work, i.e. an FP pattern) until the state's
    :func:`schedule_key` repeats. Returns the warm-up phases and the repeating cycle.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) < 3:
        raise ValueError(f"discover_schedule: input_shape must be (B, C, n, ...), got {input_shape}")
    if dtype is None or device is None:
        p = next(model.parameters(), None)
        dtype = dtype or (p.dtype if p is not None else torch.get_default_dtype())
        device = device or (p.device if p is not None else None)
    x = torch.zeros(input_shape, dtype=dtype, device=device)
    state = model.init_state(input_shape[0], device=device, dtype=dtype)
    state = _materialize(model, state, x)
    initial = state
    auto = prepare is None
    if auto:
        prepare = True
    calls: list[Phase] = []
    graph_ids: dict[tuple, int] = {}
    graphs: dict[int, Phase] = {}
    frame_start: dict[tuple, int] = {}

    def record(kind: str, before: State, after: State) -> None:
        old = dict(state_tensors(before))
        new = state_tensors(after)
        changed = [n for n, t in new if old.get(n) is not t]
        key = (kind, schedule_key(before), schedule_key(after), tuple(changed))
        gid = graph_ids.setdefault(key, len(graph_ids))
        ph = Phase(kind, gid, before, after, list(old), [n for n, _ in new], changed)
        ph.noop = key[1] == key[2] and not changed
        graphs.setdefault(gid, ph)
        calls.append(ph)

    while len(calls) < max_calls:
        key = schedule_key(state)
        if key in frame_start:
            start = frame_start[key]
            if auto and not any(ph.kind == "prepare" and not ph.noop for ph in calls):
                # Nothing is ever deferred (not an FP model): no prepare phases.
                return discover_schedule(model, input_shape, prepare=False, dtype=dtype, device=device, max_calls=max_calls)
            return Schedule(calls[:start], calls[start:], input_shape[2], input_shape, initial, graphs)
        frame_start[key] = len(calls)
        if prepare:
            new = model.prepare(state)
            record("prepare", state, new)
            state = new
        _, new = model.step(x.clone(), state)  # a fresh input each call: a history may alias it
        record("step", state, new)
        state = new
    raise RuntimeError(f"discover_schedule: the schedule did not repeat within {max_calls} calls")


# ==================================================================================================
# The flat-tensor step
# ==================================================================================================


class StepGraph(nn.Module):
    """One phase of a stream as a function of tensors only.

    ``StepGraph(model, template)`` with ``kind="step"``: ``forward(x, *state_tensors) -> (y,
    *new_state_tensors)``; with ``kind="prepare"``: ``forward(*state_tensors) ->
    (*new_state_tensors)``. The tensors are in :func:`soi.state_tensors` order of ``template``
    (input) and of the state the step returns (output, :attr:`out_names`). The template's Python
    fields (the static schedule) are baked in: use one graph per schedule phase
    (:func:`discover_schedule`).

    Usable by ``torch.compile``, ``torch.export`` and ``torch.onnx.export``. ``contiguous=True``
    returns every output contiguous: a graph compiled ahead of time (AOTInductor) assumes the
    strides of its example inputs, and state tensors are fed back as inputs.

    ``inplace`` names state tensors (of both the input and the output) whose new values are
    copied into the input tensors instead of being returned: the caller's state buffers are
    updated where they lie, and the compiled graph neither allocates nor returns them. Their new
    values must not alias an input tensor (:func:`inplace_names` checks this).
    """

    def __init__(
        self,
        model: StreamingModule,
        template: State,
        kind: str = "step",
        out_template: State | None = None,
        outputs: Sequence[str] | None = None,
        contiguous: bool = False,
        inplace: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.contiguous = contiguous
        if kind not in ("step", "prepare"):
            raise ValueError(f"StepGraph: kind must be 'step' or 'prepare', got {kind!r}")
        self.model = model
        self.kind = kind
        object.__setattr__(self, "template", template)
        self.in_names = [n for n, _ in state_tensors(template)]
        self.out_names = list(self.in_names) if out_template is None else [n for n, _ in state_tensors(out_template)]
        both = set(self.in_names) & set(self.out_names)
        if outputs is not None:
            unknown = set(outputs) - set(self.out_names)
            if unknown:
                raise ValueError(f"StepGraph: outputs {sorted(unknown)} are not tensors of the new state")
            self.out_names = [n for n in self.out_names if n in set(outputs)]
        if not set(inplace) <= both:
            raise ValueError(f"StepGraph: inplace names {sorted(set(inplace) - both)} are not tensors of both states")
        self._inplace = {n: self.in_names.index(n) for n in inplace}
        self.out_names = [n for n in self.out_names if n not in self._inplace]
        self._out_set = set(self.out_names)

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        if self.kind == "step":
            x, tensors = args[0], list(args[1:])
        else:
            x, tensors = None, list(args)
        if len(tensors) != len(self.in_names):
            raise ValueError(f"StepGraph: expected {len(self.in_names)} state tensors, got {len(tensors)}")
        state = replace_state_tensors(self.template, tensors)
        if self.kind == "step":
            y, new = self.model.step(x, state)
        else:
            y, new = None, self.model.prepare(state)
        out = []
        for n, t in state_tensors(new):
            if n in self._inplace:
                tensors[self._inplace[n]].copy_(t)
            elif n in self._out_set:
                out.append(t)
        if self.kind == "step":
            # the output may be a view of a state tensor (an upsampler repeating its held element),
            # and updated buffers are overwritten by the next call: hand out a copy
            out = [y.clone() if self._inplace else y, *out]
        return tuple(t.contiguous() for t in out) if self.contiguous else tuple(out)


# ==================================================================================================
# The streamer
# ==================================================================================================


def inplace_names(schedule: Schedule) -> set[str]:
    """State tensors a compiled stream can keep in fixed buffers updated in place: present with
    one shape and dtype in every phase's input and output, and never computed as a view of a
    state tensor (an in-place update would then read what another update already overwrote).
    Tensors that appear or change shape from phase to phase (an FP pattern's pending output) are
    passed in and out instead."""
    phases = [*schedule.warmup, *schedule.cycle]
    names: set[str] | None = None
    layout: dict[str, tuple] = {}
    unsafe: set[str] = set()
    for ph in phases:
        ins, outs = dict(state_tensors(ph.in_template)), dict(state_tensors(ph.out_template))
        for n, t in [*ins.items(), *outs.items()]:
            if layout.setdefault(n, (t.shape, t.dtype)) != (t.shape, t.dtype):
                unsafe.add(n)
        names = (set(ins) & set(outs)) if names is None else names & set(ins) & set(outs)
        storages = {t.untyped_storage().data_ptr() for t in ins.values() if t.numel()}
        unsafe.update(n for n in ph.changed if outs[n].numel() and outs[n].untyped_storage().data_ptr() in storages)
    return (names or set()) - unsafe


_Passed = dict[str, Tensor]


def _compiled_call(
    run: Callable[[list], Sequence[Tensor]], argv: list, passed: list[tuple[str, int]], step: bool
) -> Callable[[Tensor | None, _Passed], tuple[Tensor | None, _Passed]]:
    """One phase's compiled call, bound up front: ``call(x, held) -> (y, next_held)``. ``run``
    takes the argument list ``argv``: slot 0 the input chunk of a step, then the state, that is
    the buffers (which the graph updates in place) and the names of the tensors passed from call
    to call (looked up in ``held``). ``passed`` says where each passed tensor of the next state
    comes from: an index into the graph's outputs after ``y``, or ``-1`` (the same tensor as
    before). A step of a small model takes tens of microseconds, so the Python per call is kept
    to a few operations."""
    first = 1 if step else 0
    empty: _Passed = {}
    if not passed and not any(isinstance(a, str) for a in argv):  # the whole state in buffers
        if step:

            def step_buffered(x: Tensor | None, held: _Passed) -> tuple[Tensor | None, _Passed]:
                argv[0] = x
                out = run(argv)
                argv[0] = None  # hold no reference to the caller's chunk
                return out[0], empty

            return step_buffered

        def prepare_buffered(x: Tensor | None, held: _Passed) -> tuple[Tensor | None, _Passed]:
            run(argv)
            return None, empty

        return prepare_buffered

    def call_passing(x: Tensor | None, held: _Passed) -> tuple[Tensor | None, _Passed]:
        args = [held[a] if isinstance(a, str) else a for a in argv]
        if step:
            args[0] = x
        out = run(args)
        return (out[0] if step else None), {n: out[first + i] if i >= 0 else held[n] for n, i in passed}

    return call_passing


def _cxx_compiler() -> str | None:
    return next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)


def _build_runner(
    graph: nn.Module, example: tuple[Tensor, ...], backend: str, build_dir: Path | None = None, name: str = "g"
) -> Callable[[list], Sequence[Tensor]]:
    """``graph`` (a :class:`StepGraph`, or any module of tensors) ready to run in ``backend``, as a
    function of the list of its inputs (AOTInductor's calling convention: no packing per call)."""
    if backend == "aoti":
        return _aoti_runner(graph, example, build_dir, name)
    module = _build_module(graph, example, backend)
    return lambda args: module(*args)


def _build_module(graph: nn.Module, example: tuple[Tensor, ...], backend: str) -> Callable[..., Sequence[Tensor]]:
    if backend == "graph":
        return graph
    if backend in ("export", "script"):
        with torch.no_grad():
            ep = torch.export.export(graph, example, strict=False)
        if backend == "export":
            module = ep.module()
            for p in module.parameters():  # the stream runs with autograd on: record nothing
                p.requires_grad_(False)
            return module
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(ep.module(), example, check_trace=False, strict=False)
            return torch.jit.freeze(traced.eval())
    if backend == "compile":
        return torch.compile(graph, fullgraph=True, dynamic=False)
    raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")


AOTI_CONFIG = {"memory_planning": True}
"""Inductor options of the ``"aoti"`` backend. ``memory_planning``: a call's intermediate tensors
share one pooled allocation instead of one allocation each (the small U-Net's STMC step 0.285 ->
0.272 ms, same-process A/B; docs/deploy.md)."""


def _aoti_runner(graph: nn.Module, example: tuple[Tensor, ...], build_dir: Path | None, name: str) -> Callable[[list], Sequence[Tensor]]:
    if _cxx_compiler() is None:
        raise RuntimeError(
            "FastStreamer: backend 'aoti' compiles C++ and needs a C++ compiler on PATH (c++, g++ or "
            "clang++; Debian: apt-get install g++); other backends: " + ", ".join(b for b in BACKENDS if b != "aoti")
        )
    assert build_dir is not None
    with torch.no_grad():
        ep = torch.export.export(graph, example, strict=False)
        path = torch._inductor.aoti_compile_and_package(
            ep, package_path=str(build_dir / f"{name}.pt2"), inductor_configs=AOTI_CONFIG
        )
    compiled = torch._inductor.aoti_load_package(path, run_single_threaded=True)
    # The package's __call__ re-parses its pytree specs from JSON on every call (~35 us here, a
    # tenth of a small step); inputs and outputs are flat tensor lists already, so call the
    # loader directly.
    loader = getattr(compiled, "loader", None)
    if loader is None:  # pragma: no cover - other torch versions
        return lambda args: compiled(*args)
    return loader.run


class FastStreamer:
    """Runs a streaming model chunk by chunk through compiled per-phase graphs.

    Args:
        model: a streaming module in eval mode (e.g. :class:`soi.speech.SpectralMasker`,
            :class:`soi.models.UNet`).
        input_shape: ``(B, C, n, ...)`` of every chunk (``n`` frames per call, usually 1).
        backend: one of :data:`BACKENDS`.
        fold_bn: fold BatchNorm into the convolutions first (:func:`fold_batchnorm`).
        lean_steps: shift registers use the lean step (:func:`lean`); the ``"eager"`` backend
            always runs the plain step (the reference).
        prepare: run FP ``prepare`` as its own phase (default: when the model defers work).
        build_dir: ``"aoti"``: where the compiled per-phase packages ``g<id>.pt2`` are written
            (replacing packages of those names; they load with
            ``torch._inductor.aoti_load_package``, also from C++); default: a temporary directory
            removed with the streamer. Inductor's parallel loops are compiled for the current
            ``torch.get_num_threads()``: set it before building.
        inplace: compiled backends keep the state in buffers allocated once, which every call
            updates in place (:func:`inplace_names`); ``False``: every call returns its new state
            tensors (as the exported ONNX graphs do). The ``"eager"`` backend is always functional.

    ``step(x)`` returns what ``model.step`` would; ``prepare()`` (FP patterns) does the work that
    needs only past frames now, so that the next ``step`` is short; ``step`` runs it first if it
    was not called. ``reset()`` restarts the stream; ``state`` rebuilds the soi state.
    """

    def __init__(
        self,
        model: StreamingModule,
        input_shape: Sequence[int],
        backend: str = "script",
        fold_bn: bool = True,
        prepare: bool | None = None,
        dtype: torch.dtype | None = None,
        lean_steps: bool = True,
        build_dir: str | Path | None = None,
        inplace: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"FastStreamer: unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if model.training:
            raise ValueError("FastStreamer: the model is in training mode; call model.eval() first")
        self.reference = model
        if lean_steps and backend != "eager":
            self.model = lean(model, fold_bn=fold_bn, target="inductor" if backend in ("aoti", "compile") else "torch")
        else:
            self.model = fold_batchnorm(model) if fold_bn else model
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.backend = backend
        self.input_shape = tuple(int(v) for v in input_shape)
        self.schedule = discover_schedule(self.model, self.input_shape, prepare=prepare, dtype=dtype)
        runners: dict[int, Callable[[list], Sequence[Tensor]]] = {}
        self._tmp = None  # owns the default build directory: removed with the streamer
        self.build_dir: Path | None = None
        if backend == "aoti":
            if build_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="soi-aoti-")
                build_dir = self._tmp.name
            self.build_dir = Path(build_dir)
            self.build_dir.mkdir(parents=True, exist_ok=True)
        # The state: fixed buffers (updated in place by the graphs) and tensors passed by name.
        self.buffered = inplace_names(self.schedule) if inplace and backend != "eager" else set()
        initial = state_tensors(self.schedule.initial)
        self._buffers = {n: t.clone(memory_format=torch.contiguous_format) for n, t in initial if n in self.buffered}

        def returned(ph: Phase) -> list[str]:  # new state tensors a phase's graph returns (not updated in place)
            return [n for n in ph.changed if n not in self.buffered]

        for gid, ph in self.schedule.graphs.items():
            if backend == "eager":
                continue
            updated = [n for n in ph.changed if n in self.buffered]
            graph = StepGraph(self.model, ph.in_template, ph.kind, ph.out_template, returned(ph), backend == "aoti", updated)
            # contiguous examples: a graph compiled ahead of time assumes its example's strides, and
            # templates can hold views (a window's history slice); the stream feeds contiguous
            # tensors. Copies: tracing runs the graph, which updates its state inputs in place.
            example = tuple(t.clone(memory_format=torch.contiguous_format) for _, t in state_tensors(ph.in_template))
            if ph.kind == "step":
                x = torch.zeros(self.input_shape, dtype=example[0].dtype if example else torch.get_default_dtype())
                example = (x, *example)
            runners[gid] = _build_runner(graph, example, backend, self.build_dir, f"g{gid}")
        # Per call of the stream: (prepare?, the bound call); the warm-up calls, then the cycle.
        entries = {}
        for ph in [*self.schedule.warmup, *self.schedule.cycle]:
            if backend == "eager":
                call = functools.partial(self._eager_call, ph)
            else:
                out = returned(ph)
                argv: list = [self._buffers.get(n, n) for n in ph.in_names]
                if ph.kind == "step":
                    argv.insert(0, None)
                passed = [(n, out.index(n) if n in out else -1) for n in ph.out_names if n not in self.buffered]
                call = _compiled_call(runners[ph.graph_id], argv, passed, ph.kind == "step")
            entries[id(ph)] = (ph.kind == "prepare", call)
        self._warmup_calls = [entries[id(ph)] for ph in self.schedule.warmup]
        self._cycle_calls = [entries[id(ph)] for ph in self.schedule.cycle]
        self.reset()

    # -- stream ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Restart the stream from the schedule's initial (zero) state."""
        self._index = 0
        self._passed: dict[str, Tensor] = {}
        for n, t in state_tensors(self.schedule.initial):
            if n in self._buffers:
                self._buffers[n].copy_(t)
            else:
                self._passed[n] = t.clone(memory_format=torch.contiguous_format)

    @property
    def calls(self) -> int:
        """Phases run so far."""
        return self._index

    @property
    def next_phase(self) -> Phase:
        return self.schedule.phase(self._index)

    @property
    def state(self) -> State:
        """A copy of the current state as a soi state (for inspection or to continue with
        ``model.step``)."""
        ph = self.next_phase
        tensors = [self._buffers[n].clone() if n in self._buffers else self._passed[n] for n in ph.in_names]
        return replace_state_tensors(ph.in_template, tensors)

    def _eager_call(self, ph: Phase, x: Tensor | None, held: _Passed) -> tuple[Tensor | None, _Passed]:
        state = replace_state_tensors(ph.in_template, [held[n] for n in ph.in_names])
        with torch.no_grad():
            if ph.kind == "step":
                y, new = self.model.step(x, state)
            else:
                y, new = None, self.model.prepare(state)
        return y, dict(state_tensors(new))

    def _entry(self, index: int) -> tuple[bool, Callable[[Tensor | None, _Passed], tuple[Tensor | None, _Passed]]]:
        warm = self._warmup_calls
        if index < len(warm):
            return warm[index]
        cycle = self._cycle_calls
        return cycle[(index - len(warm)) % len(cycle)]

    # The compiled graphs record no autograd (their parameters are frozen), so the hot path skips a
    # no_grad context: entering and leaving one is about a third of its Python time.
    def prepare(self) -> None:
        """FP: run the precomputable work of the next frame now (no-op when already done or when
        the model has nothing to prepare)."""
        is_prepare, call = self._entry(self._index)
        if is_prepare:
            _, self._passed = call(None, self._passed)
            self._index += 1

    def step(self, x: Tensor) -> Tensor:
        """One chunk ``(B, C, n, ...)`` of the shape given at construction -> the model's output."""
        if x.shape != self.input_shape:
            raise ValueError(f"FastStreamer.step: expected a chunk of shape {self.input_shape}, got {tuple(x.shape)}")
        is_prepare, call = self._entry(self._index)
        if is_prepare:
            _, self._passed = call(None, self._passed)
            self._index += 1
            _, call = self._entry(self._index)
        y, self._passed = call(x.contiguous(), self._passed)
        self._index += 1
        return y

    def __call__(self, x: Tensor) -> Tensor:
        return self.step(x)

    # -- facts --------------------------------------------------------------------------------------
    def state_bytes(self) -> int:
        """Bytes of the state tensors held between calls (the largest over the schedule)."""
        sched = self.schedule
        return max(
            sum(t.numel() * t.element_size() for _, t in state_tensors(ph.in_template))
            for ph in [*sched.warmup, *sched.cycle]
        )
