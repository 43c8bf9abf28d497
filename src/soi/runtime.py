"""A small runtime for graphs written by :func:`soi.export.export_onnx`: onnxruntime, no torch needed.

>>> stream = OnnxStreamer("exported/")          # manifest.json + g*.onnx + initial_state.npz
>>> for frame in frames:                          # numpy (B, C, n, F) float32
...     stream.prepare()                          # FP patterns: precompute now (between frames)
...     y = stream.step(frame)                    # only the rest of the work: arrival to output

The state lives in a dict of named onnxruntime tensors (``OrtValue``, bound with I/O binding: no
conversion to numpy between calls); each call binds the tensors its graph takes and replaces the
state with what the graph returns plus what it passes through (the manifest's ``keep``). The phase order (warm-up, then the cycle for ever)
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
    """

    def __init__(self, directory: str | Path, threads: int = 1, providers: list[str] | None = None, optimize: str = "all") -> None:
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
        providers = providers or ["CPUExecutionProvider"]
        self._graphs: dict[int, dict[str, Any]] = {}
        for g in self.manifest["graphs"]:
            sess = ort.InferenceSession(str(self.directory / g["file"]), opts, providers=providers)
            state_in = [n[len("state.") :] for n in g["inputs"] if n.startswith("state.")]
            self._graphs[g["id"]] = {
                "session": sess,
                "binding": sess.io_binding(),
                "feeds": [(f"state.{n}", n) for n in state_in],
                "kind": g["kind"],
                "state_in": [n[len("state.") :] for n in g["inputs"] if n.startswith("state.")],
                "outputs": list(g["outputs"]),
                "state_out": [n[len("next.") :] for n in g["outputs"] if n.startswith("next.")],
                "keep": list(g.get("keep", [])),
            }
        def kinds(ids: list, names: list) -> list[tuple[int | None, str]]:
            return [(gid, self._graphs[gid]["kind"] if gid is not None else kind) for gid, kind in zip(ids, names)]

        self._warmup = kinds(self.manifest["warmup"], self.manifest["warmup_kinds"])
        self._cycle = kinds(self.manifest["cycle"], self.manifest["cycle_kinds"])
        with np.load(self.directory / self.manifest["initial_state"]) as data:
            self._initial = {k: data[k] for k in data.files}
        self.input_shape = tuple(self.manifest["input"]["shape"])
        self.dtype = np.dtype(self.manifest["input"]["dtype"])
        self.reset()

    # -- stream ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Restart the stream from the initial state."""
        import onnxruntime as ort

        # The state stays in onnxruntime's own tensors (OrtValue) between calls: no conversions.
        self._state = {k: ort.OrtValue.ortvalue_from_numpy(v.copy()) for k, v in self._initial.items()}
        self._index = 0

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The current state as named numpy arrays (copies)."""
        return {k: v.numpy() for k, v in self._state.items()}

    def _phase(self, index: int) -> tuple[int, str]:
        if index < len(self._warmup):
            return self._warmup[index]
        return self._cycle[(index - len(self._warmup)) % len(self._cycle)]

    @property
    def next_kind(self) -> str:
        return self._phase(self._index)[1]

    def _run(self, x: np.ndarray | None) -> np.ndarray | None:
        gid, kind = self._phase(self._index)
        if gid is None:  # a prepare with nothing to do
            self._index += 1
            return None
        g = self._graphs[gid]
        io = g["binding"]
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        state = self._state
        for feed, name in g["feeds"]:
            io.bind_ortvalue_input(feed, state[name])
        if kind == "step":
            io.bind_cpu_input("x", x)
        for name in g["outputs"]:
            io.bind_output(name, "cpu")
        g["session"].run_with_iobinding(io)
        outs = io.get_outputs()
        if kind == "step":
            y, rest = outs[0].numpy(), outs[1:]
        else:
            y, rest = None, outs
        new = {n: state[n] for n in g["keep"]}
        new.update(zip(g["state_out"], rest))
        self._state = new
        self._index += 1
        return y

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
        return int(sum(v.tensor_size_in_bytes() for v in self._state.values()))
