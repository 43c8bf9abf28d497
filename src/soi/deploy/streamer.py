"""Compiled streams: :class:`FastStreamer` runs a streaming model chunk by chunk through one compiled
graph per phase of its static schedule, on state buffers allocated once.

The pure protocol ``y, state = model.step(x, state)`` is what training and the reference stream use.
For deployment it has two costs that have nothing to do with the network's arithmetic: Python
(dataclass states, shape checks, one interpreter round trip per layer) and layers that only exist
for training (BatchNorm). :class:`FastStreamer` removes both without changing an output value: a
lean copy of the model (:func:`soi.deploy.lean`), its schedule (:func:`soi.deploy.discover_schedule`),
one :class:`soi.deploy.StepGraph` per distinct phase compiled by a backend (:data:`BACKENDS`), and
the state in buffers that the compiled graphs update in place (:func:`soi.deploy.inplace_names`).

Preallocated state buffers versus concatenation were measured (``docs/deploy.md``): inside a step,
concatenating ``[history, frame]`` costs 2-6 us per layer against 11-30 us for updating a
preallocated window in place (and the in-place update makes the step impure), so concatenation is
kept and the lean step drops the remaining slice copy; between steps, preallocated buffers win:
:class:`soi.deploy.OnnxStreamer` binds double buffers, :class:`FastStreamer` updates its buffers in
place.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..core.state import State, StateLayout, StreamingModule, replace_state_tensors, state_tensors
from .base import Call, PhaseStreamer
from .fold import fold_batchnorm
from .graph import Phase, StepGraph, discover_schedule, inplace_names
from .lean import lean

__all__ = ["FastStreamer", "BACKENDS", "AOTI_CONFIG", "build_runner"]

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

_Held = dict[str, Tensor]


def _compiled_call(
    run: Callable[[list], Sequence[Tensor]], argv: list, passed: list[tuple[str, int]], step: bool, held: _Held
) -> Callable[[Tensor | None], Tensor | None]:
    """One phase's compiled call, bound up front: ``call(x) -> y`` (``None`` for a prepare).
    ``run`` takes the argument list ``argv``: slot 0 the input chunk of a step, then the state,
    that is the buffers (which the graph updates in place) and the names of the tensors passed
    from call to call (looked up in ``held``, the streamer's dict of them, updated in place).
    ``passed`` says where each passed tensor of the next state comes from: an index into the
    graph's outputs after ``y``, or ``-1`` (the same tensor as before). A step of a small model
    takes tens of microseconds, so the Python per call is kept to a few operations."""
    first = 1 if step else 0
    if not passed and not any(isinstance(a, str) for a in argv):  # the whole state in buffers
        if step:

            def step_buffered(x: Tensor | None) -> Tensor | None:
                argv[0] = x
                out = run(argv)
                argv[0] = None  # hold no reference to the caller's chunk
                return out[0]

            return step_buffered

        def prepare_buffered(x: Tensor | None) -> Tensor | None:
            run(argv)
            return None

        return prepare_buffered

    def call_passing(x: Tensor | None) -> Tensor | None:
        args = [held[a] if isinstance(a, str) else a for a in argv]
        if step:
            args[0] = x
        out = run(args)
        new = {n: out[first + i] if i >= 0 else held[n] for n, i in passed}
        held.clear()
        held.update(new)
        return out[0] if step else None

    return call_passing


def _eager_call(model: StreamingModule, ph: Phase, held: _Held) -> Callable[[Tensor | None], Tensor | None]:
    """The plain step (or prepare) of phase ``ph`` on the soi state rebuilt from ``held``."""

    into, out = StateLayout(ph.in_template), StateLayout(ph.out_template)

    def call(x: Tensor | None) -> Tensor | None:
        state = into.rebuild([held[n] for n in ph.in_names])
        with torch.no_grad():
            if ph.kind == "step":
                y, new = model.step(x, state)
            else:
                y, new = None, model.prepare(state)
        held.clear()
        held.update(zip(out.names, out.tensors(new)))
        return y

    return call


def _cxx_compiler() -> str | None:
    return next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)


def build_runner(
    graph: nn.Module, example: tuple[Tensor, ...], backend: str, build_dir: Path | None = None, name: str = "g"
) -> Callable[[list], Sequence[Tensor]]:
    """``graph`` (a :class:`StepGraph`, or any module of tensors) ready to run in ``backend``, as a
    function of the list of its inputs (AOTInductor's calling convention: no packing per call)."""
    if backend == "aoti":
        return _aoti_runner(graph, example, build_dir, name)
    module = _build_module(graph, example, backend)
    if backend != "script":
        return lambda args: module(*args)
    # TorchScript dispatches every operator through autograd's keys and bumps version counters;
    # inference mode skips both: the dilated 1-d stack's step 157 -> 121 us (ONNX Runtime: 50 us),
    # same-process A/B. Its outputs are inference tensors (read them; modifying one in place
    # outside inference mode raises). One guard object, entered per call (not re-entrant).
    # The bound forward skips nn.Module's call machinery (hooks it does not have): ~2 us a call.
    mode, forward = torch.inference_mode(), module.forward

    def run_script(args: list) -> Sequence[Tensor]:
        with mode:
            return forward(*args)

    return run_script


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


class FastStreamer(PhaseStreamer):
    """Runs a streaming model chunk by chunk through compiled per-phase graphs.

    Args:
        model: a streaming module in eval mode (e.g. :class:`soi.tasks.speech.SpectralMasker`,
            :class:`soi.models.UNet`).
        input_shape: ``(B, C, n, ...)`` of every chunk (``n`` frames per call, usually 1).
        backend: one of :data:`BACKENDS`.
        fold_bn: fold BatchNorm into the convolutions first (:func:`soi.deploy.fold_batchnorm`).
        lean_steps: run the lean copy of the model (:func:`soi.deploy.lean`, for the backend's
            compiler: ``target="inductor"`` for ``"aoti"`` and ``"compile"``, ``"torch"`` for the
            others); the ``"eager"`` backend always runs the plain step (the reference).
        prepare: run FP ``prepare`` as its own phase (default: when the model defers work).
        build_dir: ``"aoti"``: where the compiled per-phase packages ``g<id>.pt2`` are written
            (replacing packages of those names; they load with
            ``torch._inductor.aoti_load_package``, also from C++); default: a temporary directory
            removed with the streamer. Inductor's parallel loops are compiled for the current
            ``torch.get_num_threads()``: set it before building.
        inplace: compiled backends keep the state in buffers allocated once, which every call
            updates in place (:func:`soi.deploy.graph.inplace_names`); ``False``: every call returns its
            new state tensors (as the exported ONNX graphs do). The ``"eager"`` backend is always
            functional.

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
        self._passed: _Held = {}
        self._runners: dict[int, Callable[[list], Sequence[Tensor]]] = {}
        sched = self.schedule
        phases = [*sched.warmup, *sched.cycle]
        calls = {id(ph): self._bind_phase(ph) for ph in phases}
        state_bytes = max(sum(t.numel() * t.element_size() for _, t in state_tensors(ph.in_template)) for ph in phases)
        self._bind([calls[id(ph)] for ph in sched.warmup], [calls[id(ph)] for ph in sched.cycle], state_bytes)
        self.reset()

    def _bind_phase(self, ph: Phase) -> Call:
        """The bound call of phase ``ph``; its graph is built once per graph id."""
        if self.backend == "eager":
            return ph.kind == "prepare", _eager_call(self.model, ph, self._passed)
        runners = self._runners
        returned = [n for n in ph.changed if n not in self.buffered]  # new state tensors the graph returns
        if ph.graph_id not in runners:
            updated = [n for n in ph.changed if n in self.buffered]
            graph = StepGraph(self.model, ph.in_template, ph.kind, ph.out_template, returned, self.backend == "aoti", updated)
            # contiguous examples: a graph compiled ahead of time assumes its example's strides, and
            # templates can hold views (a window's history slice); the stream feeds contiguous
            # tensors. Copies: tracing runs the graph, which updates its state inputs in place.
            example = tuple(t.clone(memory_format=torch.contiguous_format) for _, t in state_tensors(ph.in_template))
            if ph.kind == "step":
                x = torch.zeros(self.input_shape, dtype=example[0].dtype if example else torch.get_default_dtype())
                example = (x, *example)
            runners[ph.graph_id] = build_runner(graph, example, self.backend, self.build_dir, f"g{ph.graph_id}")
        argv: list = [self._buffers.get(n, n) for n in ph.in_names]
        if ph.kind == "step":
            argv.insert(0, None)
        passed = [(n, returned.index(n) if n in returned else -1) for n in ph.out_names if n not in self.buffered]
        return ph.kind == "prepare", _compiled_call(runners[ph.graph_id], argv, passed, ph.kind == "step", self._passed)

    # -- stream ---------------------------------------------------------------------------------
    def _restart(self) -> None:
        self._passed.clear()
        for n, t in state_tensors(self.schedule.initial):
            if n in self._buffers:
                self._buffers[n].copy_(t)
            else:
                self._passed[n] = t.clone(memory_format=torch.contiguous_format)

    # The compiled graphs record no autograd (their parameters are frozen), so the hot path skips a
    # no_grad context: entering and leaving one is about a third of its Python time.
    def _chunk(self, x: Tensor) -> Tensor:
        if x.shape != self.input_shape:
            raise ValueError(f"FastStreamer.step: expected a chunk of shape {self.input_shape}, got {tuple(x.shape)}")
        return x.contiguous()

    @property
    def next_phase(self) -> Phase:
        return self.schedule.phase(self._index)

    @property
    def state(self) -> State:
        """A copy of the current state as a soi state (for inspection or to continue with
        ``model.step``)."""
        ph = self.next_phase
        # copies (also of the passed tensors: under the script backend they are inference tensors)
        tensors = [(self._buffers[n] if n in self._buffers else self._passed[n]).clone() for n in ph.in_names]
        return replace_state_tensors(ph.in_template, tensors)
