"""A small runtime for graphs written by :func:`soi.deploy.export_onnx`: onnxruntime, no torch needed.

>>> stream = OnnxStreamer("exported/")          # manifest.json + g*.onnx + initial_state.npz
>>> for frame in frames:                          # numpy (B, C, n, F) float32
...     stream.prepare()                          # FP patterns: precompute now (between frames)
...     y = stream.step(frame)                    # only the rest of the work: arrival to output

The whole schedule is bound ahead of time: every state tensor has two preallocated buffers and
each call reads one and writes the other (I/O binding, no allocation, no conversion), so a step is
one copy of the frame in, one ``run_with_iobinding`` and one copy of ``y`` out. The state after a
call is what the graph wrote plus what it passes through (the manifest's ``keep``). The phase order
(warm-up, then the cycle for ever) comes from the manifest (:class:`soi.deploy.manifest.Manifest`),
so the runtime has no knowledge of the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import Call, PhaseStreamer
from .manifest import FORMAT, Manifest

__all__ = ["OnnxStreamer"]


class OnnxStreamer(PhaseStreamer):
    """Stream chunks through an exported directory.

    Args:
        directory: what :func:`soi.deploy.export_onnx` (or ``soi export``) wrote.
        threads: onnxruntime intra-op threads (1 for a deployment-like single core).
        providers: onnxruntime execution providers (default CPU).
        optimize: onnxruntime graph optimisation level ``"all"``, ``"extended"``, ``"basic"`` or ``"none"``.
        flush_denormals: treat denormal floats as zero (faster on x86 when a state decays towards
            zero; changes results below ~1e-38).
    """

    def __init__(
        self,
        directory: str | Path,
        threads: int = 1,
        providers: list[str] | None = None,
        optimize: str = "all",
        flush_denormals: bool = False,
    ) -> None:
        import onnxruntime as ort

        self.directory = Path(directory)
        self.manifest = Manifest.read(self.directory, FORMAT)
        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = levels[optimize]
        opts.log_severity_level = 3
        if flush_denormals:
            opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        providers = providers or ["CPUExecutionProvider"]
        man = self.manifest
        self._sessions = {g.id: ort.InferenceSession(str(self.directory / g.file), opts, providers=providers) for g in man.graphs}
        with np.load(self.directory / man.initial_state) as data:
            self._initial = {k: data[k] for k in data.files}
        self.input_shape = tuple(man.input.shape)
        self.dtype = np.dtype(man.input.dtype)
        self._plan(ort, {s.name: tuple(s.shape) for s in man.state})
        self.reset()

    # -- the static plan ------------------------------------------------------------------------------
    def _plan(self, ort: Any, shapes: dict[str, tuple[int, ...]]) -> None:
        """Bind every call of the schedule once, ahead of time.

        Each state tensor has two preallocated buffers per shape; a call reads the current one and
        writes the other (double buffering), so the bindings of the whole schedule are fixed: a
        call is then one copy of the new frame into the input buffer, one ``run_with_iobinding``
        and one copy of ``y`` out. The buffer assignment repeats after at most two cycles."""
        pools: dict[tuple[str, tuple[int, ...]], list[np.ndarray]] = {}
        values: dict[int, Any] = {}

        def ortvalue(arr: np.ndarray) -> Any:
            v = values.get(id(arr))
            if v is None:
                v = values[id(arr)] = ort.OrtValue.ortvalue_from_numpy(arr)
            return v

        def buffers(name: str, shape: tuple[int, ...]) -> list[np.ndarray]:
            key = (name, shape)
            if key not in pools:
                pools[key] = [np.zeros(shape, dtype=self.dtype), np.zeros(shape, dtype=self.dtype)]
            return pools[key]

        self._x = np.zeros(self.input_shape, dtype=self.dtype)
        x_value = ortvalue(self._x)
        current: dict[str, np.ndarray] = {}
        for name, arr in self._initial.items():
            buf = buffers(name, tuple(arr.shape))[0]
            current[name] = buf
        self._initial_buffers = dict(current)
        self._current = [dict(current)]  # the state buffers after the last call
        y_buffers: dict[int, np.ndarray] = {}

        def bind(gid: int) -> tuple[Any, Any, np.ndarray | None, dict[str, np.ndarray]]:
            g = self.manifest.graph(gid)
            sess = self._sessions[gid]
            io = sess.io_binding()
            for name in g.state_in:
                io.bind_ortvalue_input(f"state.{name}", ortvalue(current[name]))
            y = None
            if g.kind == "step":
                io.bind_ortvalue_input("x", x_value)
                out = sess.get_outputs()[0]
                if gid not in y_buffers:
                    y_buffers[gid] = np.zeros(tuple(g.output_shape), dtype=self.dtype)
                y = y_buffers[gid]
                io.bind_ortvalue_output(out.name, ortvalue(y))
            new = {n: current[n] for n in g.keep}
            for name in g.state_out:
                shape = shapes[name]
                for o in sess.get_outputs():
                    if o.name == f"next.{name}":
                        shape = tuple(d if isinstance(d, int) else shapes[name][k] for k, d in enumerate(o.shape))
                a, b = buffers(name, shape)
                target = b if current.get(name) is a else a
                io.bind_ortvalue_output(f"next.{name}", ortvalue(target))
                new[name] = target
            return sess, io, y, new

        def call(gid: int | None, kind: str) -> Call:
            nonlocal current
            if gid is None:  # a prepare with nothing to do
                return True, _nothing
            sess, io, y, current = bind(gid)
            return kind == "prepare", _run_bound(sess, io, y, current, self._x, self._current)

        def key(index: int) -> tuple:
            return (index, tuple(sorted((n, id(a)) for n, a in current.items())))

        man = self.manifest
        warmup = list(zip(man.warmup, man.warmup_kinds))
        cycle = list(zip(man.cycle, man.cycle_kinds))
        plan = [call(gid, kind) for gid, kind in warmup]
        seen: dict[tuple, int] = {}
        pos = 0
        while True:
            k = key(pos % len(cycle))
            if k in seen:
                loop_start = seen[k]
                break
            seen[k] = len(plan)
            plan.append(call(*cycle[pos % len(cycle)]))
            pos += 1
            if pos > 4 * len(cycle) + 4:
                raise RuntimeError("internal: the buffer plan of the schedule did not repeat")
        # the bound calls repeat from loop_start on (at most two cycles: double buffers)
        self._bind(plan[:loop_start], plan[loop_start:], man.state_bytes)
        self._values = values  # keep the OrtValues (and so the buffers) alive
        self._pools = pools

    # -- stream ---------------------------------------------------------------------------------------
    def _restart(self) -> None:
        for name, arr in self._initial.items():
            np.copyto(self._initial_buffers[name], arr)
        self._current[0] = dict(self._initial_buffers)

    def _chunk(self, x: Any) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return super()._chunk(np.ascontiguousarray(x, dtype=self.dtype))

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The current state as named numpy arrays (copies)."""
        return {k: v.copy() for k, v in self._current[0].items()}


def _nothing(x: Any) -> None:
    return None


def _run_bound(
    sess: Any, io: Any, y: np.ndarray | None, names: dict[str, np.ndarray], x_buffer: np.ndarray, current: list
) -> Callable[[np.ndarray | None], np.ndarray | None]:
    """One bound call: the frame copied into the bound input buffer, one ``run_with_iobinding``,
    a copy of ``y`` out; ``current[0]`` becomes the state buffers after the call."""

    def run(x: np.ndarray | None) -> np.ndarray | None:
        if x is not None:
            np.copyto(x_buffer, x)
        sess.run_with_iobinding(io)
        current[0] = names
        return None if y is None else y.copy()

    return run
