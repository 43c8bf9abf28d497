"""A small runtime for graphs written by :func:`soi.export.export_onnx`: onnxruntime, no torch needed.

>>> stream = OnnxStreamer("exported/")          # manifest.json + g*.onnx + initial_state.npz
>>> for frame in frames:                          # numpy (B, C, n, F) float32
...     stream.prepare()                          # FP patterns: precompute now (between frames)
...     y = stream.step(frame)                    # only the rest of the work: arrival to output

The state lives in a dict of named numpy arrays; each call feeds the tensors its graph takes and
replaces the state with what the graph returns. The phase order (warm-up, then the cycle for ever)
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
            self._graphs[g["id"]] = {
                "session": sess,
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
        self.state: dict[str, np.ndarray] = {k: v.copy() for k, v in self._initial.items()}
        self._index = 0

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
        feeds = {f"state.{n}": self.state[n] for n in g["state_in"]}
        if kind == "step":
            feeds["x"] = x
        outs = g["session"].run(None, feeds)
        if kind == "step":
            y, rest = outs[0], outs[1:]
        else:
            y, rest = None, outs
        state = {n: self.state[n] for n in g["keep"]}
        state.update(zip(g["state_out"], rest))
        self.state = state
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
        return int(sum(v.nbytes for v in self.state.values()))
