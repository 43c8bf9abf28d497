"""ONNX export of a streaming model: one graph per phase of its static schedule, the state explicit.

A deployed stream is a loop that a phone or a microcontroller can run without Python::

    state = initial_state                       # initial_state.npz, named tensors
    for call in warmup + cycle + cycle + ...:   # manifest.json: graph ids in order
        graph = graphs[call]                    # g<id>_<kind>.onnx
        y, state = graph(x, state)              # "x", "state.<name>"... -> "y", "next.<name>"...

Every graph is straight-line code (no control flow): the Python ``int`` fields of a state (stride
phase, look-ahead frames still to skip, frames pending in an FP shift) are the static schedule and
are baked into the graph of each phase (:func:`soi.deploy.discover_schedule`). STMC has one phase; an
S-CC pair of stride 2 has two; FP patterns add ``prepare`` graphs (the work that needs only past
frames, to run between frames) before each ``step``. A look-ahead or an FP shift adds *warm-up*
phases that run once at the start of a stream (a ``null`` entry is a ``prepare`` with nothing to do) (their ``y`` may have fewer frames: the outputs held
back by look-ahead); ``warmup`` then ``cycle`` repeated is the whole schedule.

Every state tensor is a named graph input ``state.<path>`` and, when the call changes it, output
``next.<path>`` (``path`` as in :func:`soi.state_tensors`). The state after a call is the graph's
``next.*`` outputs plus the tensors listed in the graph's ``keep`` (passed through unchanged, e.g.
the deep layers of an S-CC pair on a skipped frame: no copy); any other tensor is dropped (an FP
shift's pending frame after ``prepare``).

``manifest.json`` records the phase order, the graphs and their inputs/outputs, every state
tensor's shape, dtype and initial fill value, the chunk shape, and for speech checkpoints the sample
rate, hop, FFT size and latency. :class:`soi.deploy.OnnxStreamer` runs the directory; :mod:`soi.deploy.manifest` describes the manifest.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.state import StreamingModule, state_tensors
from .graph import StepGraph, discover_schedule
from .lean import lean
from .manifest import (
    FORMAT,
    LITERT_FORMAT,
    GraphEntry,
    InputEntry,
    Manifest,
    StateEntry,
)

__all__ = ["compare_export", "export_onnx", "export_phases"]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _fill_value(t: torch.Tensor) -> float | None:
    if t.numel() == 0:
        return 0.0
    first = t.reshape(-1)[0]
    if bool((t == first).all()) or (bool(torch.isinf(first)) and bool((t == first).all())):
        v = float(first)
        return v
    return None


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Silence the exporter's progress lines and its notes about optional operator sets."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def export_onnx(
    model: StreamingModule,
    out_dir: str | Path,
    input_shape: Sequence[int],
    *,
    fold_bn: bool = True,
    prepare: bool | None = None,
    opset: int | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    verbose: bool = False,
) -> dict[str, Any]:
    """Export ``model`` (eval mode) for chunks of shape ``input_shape = (B, C, n, ...)`` to ``out_dir``.

    Writes one ``g<id>_<kind>.onnx`` per distinct phase of the schedule, ``initial_state.npz`` and
    ``manifest.json`` (returned as a dict). ``metadata`` is merged into the manifest (e.g. sample
    rate, hop, latency). ``fold_bn`` folds BatchNorm into the convolutions first; ``prepare``
    forces (or suppresses) separate FP ``prepare`` graphs (default: when the model defers work).
    """

    def write(graph: StepGraph, args: tuple[torch.Tensor, ...], in_names: list[str], out_names: list[str], path: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad(), _quiet(verbose):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                args,
                str(path),
                input_names=in_names,
                output_names=out_names,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=verbose,
            )

    return export_phases(model, out_dir, input_shape, write, suffix=".onnx", fold_bn=fold_bn, prepare=prepare, metadata=metadata, overwrite=overwrite)


GraphWriter = Callable[[StepGraph, tuple[torch.Tensor, ...], list[str], list[str], Path], None]
"""Writes one phase's graph: ``(graph, example_args, input_names, output_names, path)``."""


def export_phases(
    model: StreamingModule,
    out_dir: str | Path,
    input_shape: Sequence[int],
    write: GraphWriter,
    *,
    suffix: str,
    format: str = FORMAT,
    fold_bn: bool = True,
    prepare: bool | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    swap: Callable[[nn.Module], nn.Module] | None = None,
) -> dict[str, Any]:
    """What every exporter shares: the lean copy of ``model`` (``swap`` may replace modules of it
    further, e.g. an activation a runtime lacks), its static schedule, one ``write`` per distinct
    phase to ``g<id>_<kind><suffix>``, ``initial_state.npz`` and the manifest (``format``)."""
    if model.training:
        raise ValueError("export: the model is in training mode; call model.eval() first")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"export: {out_dir} exists and is not empty (use overwrite=True / --force)")
    out_dir.mkdir(parents=True, exist_ok=True)
    input_shape = tuple(int(v) for v in input_shape)
    net = lean(model, fold_bn=fold_bn, target="onnx")
    if swap is not None:
        net = swap(net)
    for p in net.parameters():
        p.requires_grad_(False)
    sched = discover_schedule(net, input_shape, prepare=prepare)
    dtype = next(net.parameters()).dtype

    graphs: list[GraphEntry] = []
    noop_ids = {gid for gid, ph in sched.graphs.items() if ph.kind == "prepare" and ph.noop}
    for gid, ph in sorted(sched.graphs.items()):
        if gid in noop_ids:
            continue  # a prepare with nothing to do (FP warm-up): listed as null, nothing to run
        graph = StepGraph(net, ph.in_template, ph.kind, ph.out_template, ph.changed).eval()
        # contiguous examples: a state template can hold a view (a window's history is a slice)
        state_in = tuple(t.contiguous() for _, t in state_tensors(ph.in_template))
        in_names = [f"state.{n}" for n in ph.in_names]
        out_names = [f"next.{n}" for n in graph.out_names]
        if ph.kind == "step":
            x = torch.zeros(input_shape, dtype=dtype)
            args = (x, *state_in)
            in_names = ["x", *in_names]
            out_names = ["y", *out_names]
            with torch.no_grad():
                y = graph(*args)[0]
            y_shape = list(y.shape)
        else:
            args = state_in
            y_shape = None
        file = f"g{gid}_{ph.kind}{suffix}"
        write(graph, args, in_names, out_names, out_dir / file)
        graphs.append(GraphEntry(gid, file, ph.kind, in_names, out_names, ph.kept, y_shape))

    # Every state tensor that ever exists, with its shape, dtype and initial value.
    states: dict[str, StateEntry] = {}
    for ph in [*sched.warmup, *sched.cycle]:
        for name, t in [*state_tensors(ph.in_template), *state_tensors(ph.out_template)]:
            states.setdefault(name, StateEntry(name, list(t.shape), _dtype_name(t.dtype)))
    initial = dict(state_tensors(sched.initial))
    for name, entry in states.items():
        entry.initial = name in initial
        entry.fill = _fill_value(initial[name]) if entry.initial else None
    manifest = Manifest(
        model=type(model).__name__,
        input=InputEntry(list(input_shape), _dtype_name(dtype)),
        warmup=[None if ph.graph_id in noop_ids else ph.graph_id for ph in sched.warmup],
        cycle=[None if ph.graph_id in noop_ids else ph.graph_id for ph in sched.cycle],
        warmup_kinds=[ph.kind for ph in sched.warmup],
        cycle_kinds=[ph.kind for ph in sched.cycle],
        graphs=graphs,
        state=list(states.values()),
        state_bytes=max(
            sum(t.numel() * t.element_size() for _, t in state_tensors(ph.in_template)) for ph in [*sched.warmup, *sched.cycle]
        ),
        delay_frames=int(getattr(model, "delay", 0)),
        receptive_field_frames=int(getattr(model, "receptive_field", 1)),
        fold_bn=fold_bn,
        torch_version=torch.__version__,
        format=format,
        metadata=dict(metadata or {}),
    )
    np.savez(out_dir / manifest.initial_state, **{n: t.detach().cpu().numpy() for n, t in initial.items()})
    return manifest.write(out_dir)


def compare_export(model: StreamingModule, out_dir: str | Path, steps: int = 64, seed: int = 0, threads: int = 1) -> dict[str, float]:
    """``{"max_abs", "max_ref", "max_rel"}``: the largest absolute difference between ``model.step``
    and the exported graphs (ONNX Runtime or LiteRT, as the manifest's format says) over ``steps``
    random chunks, the largest output magnitude, and their ratio (float32 rounding grows with the
    output's scale)."""
    if Manifest.read(out_dir).format == LITERT_FORMAT:
        from .edge_runtime import LiteRTStreamer

        stream: Any = LiteRTStreamer(out_dir, threads=threads)
    else:
        from .runtime import OnnxStreamer

        stream = OnnxStreamer(out_dir, threads=threads)
    shape = tuple(stream.input_shape)
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    state = model.init_state(shape[0], dtype=dtype)
    err, ref = 0.0, 0.0
    with torch.no_grad():
        for _ in range(steps):
            x = torch.randn(shape, generator=g, dtype=dtype)
            y_ref, state = model.step(x, state)
            stream.prepare()
            y = stream.step(x.numpy())
            if y.shape != tuple(y_ref.shape):
                raise AssertionError(f"exported output shape {y.shape} != PyTorch {tuple(y_ref.shape)}")
            if y.size:
                err = max(err, float(np.abs(y - y_ref.numpy()).max()))
                ref = max(ref, float(y_ref.abs().max()))
    return {"max_abs": err, "max_ref": ref, "max_rel": err / ref if ref else 0.0}
