"""Runtimes for graphs written by :func:`soi.deploy.litert.export_litert`: LiteRT
(``ai-edge-litert``) and TensorFlow Lite Micro (``tflite-micro``'s Python interpreter, its
reference kernels). Torch-free.

>>> stream = LiteRTStreamer("exported/")       # manifest.json + g*.tflite + initial_state.npz
>>> for frame in frames:                         # numpy (B, C, n, F) float32
...     stream.prepare()                         # FP patterns: precompute now (between frames)
...     y = stream.step(frame)

Both follow the manifest as :class:`soi.deploy.OnnxStreamer` does (warm-up, then the cycle; the
state after a call is what the graph wrote plus its ``keep``). A graph's ``i``-th input is the
manifest's ``inputs[i]`` and its ``i``-th output ``outputs[i]``. In an int8 export
(:func:`soi.deploy.quantize.quantize_litert`) a state tensor the graph takes as int8 is held as
int8 between calls, on the grid the manifest gives (the same in every graph).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .base import Call, PhaseStreamer
from .manifest import LITERT_FORMAT, GraphEntry, Manifest

__all__ = ["LiteRTStreamer", "TflmStreamer", "signature_io", "tflm_arena_bytes"]


Spec = tuple[Any, float, int]
"""How a graph takes or gives one tensor: ``(numpy dtype, scale, zero_point)``; scale 0 for float."""


def _spec(detail: dict) -> Spec:
    """The :data:`Spec` of a tensor's details as LiteRT and TFLM give them."""
    q = detail["quantization_parameters"]
    scales, zeros = np.asarray(q["scales"]).reshape(-1), np.asarray(q["zero_points"]).reshape(-1)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f" or scales.size == 0:
        return dtype, 0.0, 0
    return dtype, float(scales[0]), int(zeros[0])


def _convert(value: np.ndarray, src: Spec, dst: Spec) -> np.ndarray:
    """``value`` held as ``src``, given as ``dst`` (dequantized, quantized or requantized)."""
    if src == dst:
        return value
    real = value if src[1] == 0.0 else (value.astype(np.float32) - src[2]) * np.float32(src[1])
    if dst[1] == 0.0:
        return real.astype(dst[0])
    info = np.iinfo(dst[0])
    return np.clip(np.round(real / np.float32(dst[1])) + dst[2], info.min, info.max).astype(dst[0])


class _ManifestStreamer(PhaseStreamer):
    """A stream over a manifest's schedule where each graph is a function of arrays in the order
    of its manifest entry: ``_open(graph) -> (run, in_specs, out_specs)``, ``run(inputs) ->
    outputs``. A state tensor is held between calls as the manifest's ``quantization`` says (int8
    on its grid) or as float; where a graph takes or gives it otherwise, the streamer converts
    (:attr:`conversions` counts them per graph: the requantizations a device would also do)."""

    def _setup(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.read(self.directory, LITERT_FORMAT)
        man = self.manifest
        with np.load(self.directory / man.initial_state) as data:
            self._initial = {k: data[k] for k in data.files}
        self.input_shape = tuple(man.input.shape)
        self.dtype = np.dtype(man.input.dtype)
        float_spec: Spec = (self.dtype, 0.0, 0)
        self._held: dict[str, Spec] = {
            s.name: (np.dtype(s.quantization.dtype), s.quantization.scale, s.quantization.zero_point) if s.quantization else float_spec
            for s in man.state
        }
        self._state: dict[str, np.ndarray] = {}
        self.conversions: dict[int, list[str]] = {}
        calls = {g.id: self._bound(g, float_spec) for g in man.graphs}

        def call(gid: int | None, kind: str) -> Call:
            return (True, _nothing) if gid is None else (kind == "prepare", calls[gid])

        warmup = [call(g, k) for g, k in zip(man.warmup, man.warmup_kinds)]
        cycle = [call(g, k) for g, k in zip(man.cycle, man.cycle_kinds)]
        self._bind(warmup, cycle, man.state_bytes)
        self.reset()

    def _bound(self, graph: GraphEntry, float_spec: Spec) -> Callable[[np.ndarray | None], np.ndarray | None]:
        run, in_specs, out_specs = self._open(graph)
        held = self._held
        ins = [(None if n == "x" else n[len("state.") :], spec) for n, spec in zip(graph.inputs, in_specs)]
        outs = [(None if n == "y" else n[len("next.") :], spec) for n, spec in zip(graph.outputs, out_specs)]
        self.conversions[graph.id] = [n for n, spec in [*ins, *outs] if n is not None and spec != held[n]]
        keep = list(graph.keep)

        def bound(x: np.ndarray | None) -> np.ndarray | None:
            state = self._state
            args = [_convert(x, float_spec, spec) if n is None else _convert(state[n], held[n], spec) for n, spec in ins]
            results = run(args)
            new = {n: state[n] for n in keep}
            y = None
            for (n, spec), value in zip(outs, results):
                if n is None:
                    y = _convert(value, spec, float_spec)
                else:
                    new[n] = _convert(value, spec, held[n])
            self._state = new
            return y

        return bound

    def _open(self, graph: GraphEntry) -> tuple[Callable[[list[np.ndarray]], list[np.ndarray]], list[Spec], list[Spec]]:
        raise NotImplementedError

    def _restart(self) -> None:
        float_spec: Spec = (self.dtype, 0.0, 0)
        self._state = {n: _convert(v.astype(self.dtype), float_spec, self._held[n]) for n, v in self._initial.items()}

    def _chunk(self, x: Any) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return super()._chunk(np.ascontiguousarray(x, dtype=self.dtype))

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The current state as named arrays (copies; int8 where the export holds it so)."""
        return {k: v.copy() for k, v in self._state.items()}


def _nothing(x: Any) -> None:
    return None


class LiteRTStreamer(_ManifestStreamer):
    """Stream chunks through a LiteRT export with ``ai-edge-litert``'s interpreter (XNNPack for
    float graphs; ``threads`` of it).

    Args:
        directory: what :func:`soi.deploy.litert.export_litert` (or ``soi export --format litert``) wrote.
        threads: interpreter threads (1 for a deployment-like single core).
    """

    def __init__(self, directory: str | Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter
        self.threads = threads
        self._setup(directory)

    def _open(self, graph: GraphEntry):
        interp = self._interpreter(model_path=str(self.directory / graph.file), num_threads=self.threads)
        interp.allocate_tensors()
        # the subgraph's inputs and outputs, in the order of the signature's args_<i> / output_<i>
        # (the manifest's); in an int8 graph the signature's outputs can name intermediate tensors
        # (ai-edge-quantizer requantizes them into new subgraph outputs), so read the subgraph's
        ins, outs = dict(enumerate(interp.get_input_details())), dict(enumerate(interp.get_output_details()))
        if len(ins) != len(graph.inputs) or len(outs) != len(graph.outputs):
            raise ValueError(
                f"LiteRTStreamer: {graph.file} has {len(ins)} inputs and {len(outs)} outputs, "
                f"the manifest lists {len(graph.inputs)} and {len(graph.outputs)}"
            )

        in_idx = [ins[i]["index"] for i in range(len(ins))]
        out_idx = [outs[i]["index"] for i in range(len(outs))]
        set_tensor, get_tensor, invoke = interp.set_tensor, interp.get_tensor, interp.invoke

        def run(args: list[np.ndarray]) -> list[np.ndarray]:
            for idx, a in zip(in_idx, args):
                set_tensor(idx, a)
            invoke()
            return [get_tensor(idx) for idx in out_idx]

        return run, [_spec(ins[i]) for i in range(len(ins))], [_spec(outs[i]) for i in range(len(outs))]


def signature_io(interp: Any) -> tuple[dict[int, dict], dict[int, dict]]:
    """A LiteRT interpreter's signature inputs and outputs by position (``args_<i>``,
    ``output_<i>``: the manifest's ``inputs[i]`` and ``outputs[i]``), their details as LiteRT
    gives them (``index``, ``dtype``, ``quantization_parameters``, ...); tensors allocated."""
    interp.allocate_tensors()
    sig = interp.get_signature_runner()  # not kept: it holds the interpreter's buffers, and invoke refuses then
    ins = {int(k.rsplit("_", 1)[-1]): v for k, v in sig.get_input_details().items()}
    outs = {int(k.rsplit("_", 1)[-1]): v for k, v in sig.get_output_details().items()}
    return ins, outs


@contextlib.contextmanager
def _captured_stdout():
    """What C code prints to file descriptors 1 and 2 (TFLM's ``print_allocations``, its
    allocation failures), as a list of one string."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield out
        finally:
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


class TflmStreamer(_ManifestStreamer):
    """Stream chunks through a LiteRT export of ``target="micro"`` with TensorFlow Lite Micro's
    Python interpreter (``tflite-micro``: the reference kernels, as on a microcontroller without
    optimised kernels; one tensor arena per graph).

    Args:
        directory: a ``micro`` export (:func:`soi.deploy.litert.export_litert`).
        arena_bytes: the tensor arena of each graph (default: the smallest that allocates, by
            :func:`tflm_arena_bytes`, plus 1 KiB).
    """

    def __init__(self, directory: str | Path, arena_bytes: int | None = None) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self._runtime = runtime
        self._arena_request = arena_bytes
        self.arena_bytes: dict[int, int] = {}
        self._setup(directory)

    def _open(self, graph: GraphEntry):
        data = (self.directory / graph.file).read_bytes()
        arena = self._arena_request or tflm_arena_bytes(data) + 1024
        interp = self._runtime.Interpreter.from_bytes(data, arena_size=arena)
        self.arena_bytes[graph.id] = arena
        n_in, n_out = len(graph.inputs), len(graph.outputs)
        set_input, get_output, invoke = interp.set_input, interp.get_output, interp.invoke

        def run(args: list[np.ndarray]) -> list[np.ndarray]:
            for k, a in enumerate(args):
                set_input(a, k)
            invoke()
            return [get_output(k) for k in range(n_out)]

        return run, [_spec(interp.get_input_details(k)) for k in range(n_in)], [_spec(interp.get_output_details(k)) for k in range(n_out)]

    def allocations(self) -> dict[int, str]:
        """TFLM's ``print_allocations`` report of each graph (arena use by tensor kind)."""
        reports = {}
        for g in self.manifest.graphs:
            data = (self.directory / g.file).read_bytes()
            interp = self._runtime.Interpreter.from_bytes(data, arena_size=self.arena_bytes[g.id])
            with _captured_stdout() as out:
                interp.print_allocations()
            reports[g.id] = out[0] if out else ""
        return reports


def tflm_arena_bytes(model: bytes, low: int = 1024, high: int = 64 << 20) -> int:
    """The smallest tensor arena (to 256 bytes) in which TensorFlow Lite Micro allocates ``model``."""
    from tflite_micro.python.tflite_micro import runtime

    def fits(size: int) -> bool:
        with _captured_stdout():
            try:
                runtime.Interpreter.from_bytes(model, arena_size=size)
                return True
            except RuntimeError:
                return False

    if not fits(high):
        raise ValueError(f"tflm_arena_bytes: the model does not allocate in {high} bytes")
    while high - low > 256:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid
    return high

