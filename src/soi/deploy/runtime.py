"""A small runtime for graphs written by :func:`soi.export.export_onnx`: onnxruntime, no torch needed.

>>> stream = OnnxStreamer("exported/")          # manifest.json + g*.onnx + initial_state.npz
>>> for frame in frames:                          # numpy (B, C, n, F) float32
...     stream.prepare()                          # FP patterns: precompute now (between frames)
...     y = stream.step(frame)                    # only the rest of the work: arrival to output

The whole schedule is bound ahead of time: every state tensor has two preallocated buffers and
each call reads one and writes the other (I/O binding, no allocation, no conversion), so a step is
one copy of the frame in, one ``run_with_iobinding`` and one copy of ``y`` out. The state after a
call is what the graph wrote plus what it passes through (the manifest's ``keep``). The phase order (warm-up, then the cycle for ever)
comes from the manifest, so the runtime has no knowledge of the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OnnxStreamer"]


class OnnxStreamer:
    """Stream chunks through an exported directory.

    Args:
        directory: what :func:`soi.export.export_onnx` (or ``soi export``) wrote.
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
        manifest_path = self.directory / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"OnnxStreamer: no manifest.json in {self.directory} (write one with soi export)")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != "soi-onnx-v1":
            raise ValueError(f"OnnxStreamer: {manifest_path} is not a soi ONNX manifest")
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
        self._graphs: dict[int, dict[str, Any]] = {}
        for g in self.manifest["graphs"]:
            sess = ort.InferenceSession(str(self.directory / g["file"]), opts, providers=providers)
            self._graphs[g["id"]] = {
                "session": sess,
                "kind": g["kind"],
                "state_in": [n[len("state.") :] for n in g["inputs"] if n.startswith("state.")],
                "state_out": [n[len("next.") :] for n in g["outputs"] if n.startswith("next.")],
                "keep": list(g.get("keep", [])),
                "output_shape": g.get("output_shape"),
            }
        shapes = {s["name"]: tuple(s["shape"]) for s in self.manifest["state"]}

        def kinds(ids: list, names: list) -> list[tuple[int | None, str]]:
            return [(gid, self._graphs[gid]["kind"] if gid is not None else kind) for gid, kind in zip(ids, names)]

        self._warmup = kinds(self.manifest["warmup"], self.manifest["warmup_kinds"])
        self._cycle = kinds(self.manifest["cycle"], self.manifest["cycle_kinds"])
        with np.load(self.directory / self.manifest["initial_state"]) as data:
            self._initial = {k: data[k] for k in data.files}
        self.input_shape = tuple(self.manifest["input"]["shape"])
        self.dtype = np.dtype(self.manifest["input"]["dtype"])
        self._plan(ort, shapes)
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
        y_buffers: dict[int, np.ndarray] = {}

        def bind(gid: int) -> tuple[Any, Any, np.ndarray | None, dict[str, np.ndarray]]:
            g = self._graphs[gid]
            sess = g["session"]
            io = sess.io_binding()
            for name in g["state_in"]:
                io.bind_ortvalue_input(f"state.{name}", ortvalue(current[name]))
            y = None
            if g["kind"] == "step":
                io.bind_ortvalue_input("x", x_value)
                out = sess.get_outputs()[0]
                if gid not in y_buffers:
                    y_buffers[gid] = np.zeros(tuple(g["output_shape"]), dtype=self.dtype)
                y = y_buffers[gid]
                io.bind_ortvalue_output(out.name, ortvalue(y))
            new = {n: current[n] for n in g["keep"]}
            for name in g["state_out"]:
                shape = shapes[name]
                for o in sess.get_outputs():
                    if o.name == f"next.{name}":
                        shape = tuple(d if isinstance(d, int) else shapes[name][k] for k, d in enumerate(o.shape))
                a, b = buffers(name, shape)
                target = b if current.get(name) is a else a
                io.bind_ortvalue_output(f"next.{name}", ortvalue(target))
                new[name] = target
            return sess, io, y, new

        def key(index: int) -> tuple:
            return (index, tuple(sorted((n, id(a)) for n, a in current.items())))

        plan: list[tuple[Any, Any, np.ndarray | None, dict[str, np.ndarray]] | None] = []
        for gid, _ in self._warmup:
            if gid is None:
                plan.append(None)
                continue
            sess, io, y, current = bind(gid)
            plan.append((sess, io, y, current))
        seen: dict[tuple, int] = {}
        pos = 0
        while True:
            k = key(pos % len(self._cycle))
            if k in seen:
                self._loop_start = seen[k]
                break
            seen[k] = len(plan)
            gid = self._cycle[pos % len(self._cycle)][0]
            if gid is None:
                plan.append(None)
            else:
                sess, io, y, current = bind(gid)
                plan.append((sess, io, y, current))
            pos += 1
            if pos > 4 * len(self._cycle) + 4:
                raise RuntimeError("internal: the buffer plan of the schedule did not repeat")
        self._plan_calls = plan
        self._values = values  # keep the OrtValues (and so the buffers) alive
        self._pools = pools

    # -- stream ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Restart the stream from the initial state."""
        for name, arr in self._initial.items():
            np.copyto(self._initial_buffers[name], arr)
        self._index = 0
        self._names = dict(self._initial_buffers)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The current state as named numpy arrays (copies)."""
        return {k: v.copy() for k, v in self._names.items()}

    def _phase(self, index: int) -> tuple[int | None, str]:
        if index < len(self._warmup):
            return self._warmup[index]
        return self._cycle[(index - len(self._warmup)) % len(self._cycle)]

    def _plan_index(self, index: int) -> int:
        n = len(self._plan_calls)
        if index < n:
            return index
        loop = n - self._loop_start
        return self._loop_start + (index - self._loop_start) % loop

    @property
    def next_kind(self) -> str:
        return self._phase(self._index)[1]

    def _run(self, x: np.ndarray | None) -> np.ndarray | None:
        gid, kind = self._phase(self._index)
        call = self._plan_calls[self._plan_index(self._index)]
        self._index += 1
        if call is None:  # a prepare with nothing to do
            return None
        sess, io, y, names = call
        if x is not None:
            np.copyto(self._x, x)
        sess.run_with_iobinding(io)
        self._names = names
        return None if y is None else y.copy()

    def prepare(self) -> None:
        """FP: run the precomputable part of the next frame now (no-op if there is none)."""
        if self.next_kind == "prepare":
            self._run(None)

    def step(self, x: Any) -> np.ndarray:
        """One chunk (numpy or torch, shape ``input_shape``) -> the model's output frames."""
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if x.shape != self.input_shape:
            raise ValueError(f"OnnxStreamer.step: expected a chunk of shape {self.input_shape}, got {x.shape}")
        self.prepare()
        return self._run(x)

    __call__ = step

    @property
    def state_bytes(self) -> int:
        """Bytes of the current state (the preallocated double buffers hold twice this or more)."""
        return int(sum(v.nbytes for v in self._names.values()))
