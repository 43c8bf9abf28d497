"""The manifest of an exported stream (``manifest.json``): the one description of the format that
:func:`soi.deploy.export_onnx` and :func:`soi.deploy.litert.export_litert` write and
:class:`soi.deploy.OnnxStreamer` and :class:`soi.deploy.edge_runtime.LiteRTStreamer` read. Torch-free
(dataclasses and JSON), so a runtime can use it without PyTorch.

The JSON object (keys in this order; ``docs/deploy.md`` has the table)::

    format, model, input {name, shape, dtype}, frames_per_step,
    warmup, cycle, warmup_kinds, cycle_kinds,          # graph ids in call order (null: nothing to run)
    graphs [{id, file, kind, inputs, outputs, keep, output_shape}],
    state [{name, shape, dtype, initial, fill, quantization?}],  # fill: the constant initial value, if any;
                                                       # quantization {scale, zero_point, dtype}: int8 exports
    initial_state, state_bytes, delay_frames, receptive_field_frames, fold_bn, torch_version,
    ... metadata (e.g. sample_rate, hop, n_fft, latency, pattern for speech checkpoints; target for
    LiteRT; quantization {tool, weights, activations, calibration_chunks, ...} for int8 exports)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "FORMATS", "INITIAL_STATE", "LITERT_FORMAT", "MANIFEST", "GraphEntry", "InputEntry", "Manifest", "Quantization", "StateEntry"]

FORMAT = "soi-onnx-v1"
LITERT_FORMAT = "soi-litert-v1"
FORMATS = {FORMAT: "ONNX (soi.deploy.OnnxStreamer)", LITERT_FORMAT: "LiteRT .tflite (soi.deploy.LiteRTStreamer)"}
"""The layouts a manifest describes: the same keys, graphs of another file type."""
MANIFEST = "manifest.json"
INITIAL_STATE = "initial_state.npz"


@dataclass
class GraphEntry:
    """One graph file: ``kind`` ``"step"`` (inputs ``x`` then ``state.<name>``..., outputs ``y``
    then ``next.<name>``...) or ``"prepare"`` (state only); ``keep``: the state tensors it passes
    through unchanged; ``output_shape``: the shape of ``y`` (steps)."""

    id: int
    file: str
    kind: str
    inputs: list[str]
    outputs: list[str]
    keep: list[str] = field(default_factory=list)
    output_shape: list[int] | None = None

    @property
    def state_in(self) -> list[str]:
        """Names of the state tensors it reads."""
        return [n[len("state.") :] for n in self.inputs if n.startswith("state.")]

    @property
    def state_out(self) -> list[str]:
        """Names of the state tensors it writes."""
        return [n[len("next.") :] for n in self.outputs if n.startswith("next.")]


@dataclass
class Quantization:
    """The affine grid of a quantized tensor: ``real = scale * (q - zero_point)``, ``q`` of ``dtype``
    (``"int8"``). A state tensor's grid is the same in every graph that reads or writes it, so a
    runtime may hold it as ``dtype`` between calls."""

    scale: float
    zero_point: int
    dtype: str = "int8"


@dataclass
class StateEntry:
    """One state tensor that exists in some phase: ``initial`` when it is in the initial state
    (``initial_state.npz``), ``fill`` its value there when constant (``None`` otherwise);
    ``quantization`` its grid in an int8 export (``None``: float)."""

    name: str
    shape: list[int]
    dtype: str
    initial: bool = True
    fill: float | None = None
    quantization: Quantization | None = None

    def __post_init__(self) -> None:
        if isinstance(self.quantization, dict):
            self.quantization = Quantization(**self.quantization)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "initial": self.initial}
        if self.initial:
            out["fill"] = self.fill
        if self.quantization is not None:
            out["quantization"] = dataclasses.asdict(self.quantization)
        return out


@dataclass
class InputEntry:
    """The chunk every ``step`` takes: ``(B, C, n, ...)``."""

    shape: list[int]
    dtype: str
    name: str = "x"


@dataclass
class Manifest:
    """An exported stream: warm-up calls once, then the cycle for ever (graph ids, ``None`` for a
    ``prepare`` with nothing to do), the graphs, the state tensors and facts. ``metadata``: further
    top-level keys (written after the others)."""

    model: str
    input: InputEntry
    warmup: list[int | None]
    cycle: list[int | None]
    warmup_kinds: list[str]
    cycle_kinds: list[str]
    graphs: list[GraphEntry]
    state: list[StateEntry]
    state_bytes: int
    delay_frames: int = 0
    receptive_field_frames: int = 1
    fold_bn: bool = True
    torch_version: str | None = None
    initial_state: str = INITIAL_STATE
    format: str = FORMAT
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_step(self) -> int:
        return int(self.input.shape[2])

    def graph(self, gid: int) -> GraphEntry:
        """The graph with id ``gid``."""
        for g in self.graphs:
            if g.id == gid:
                return g
        raise KeyError(f"Manifest: no graph with id {gid}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        out: dict[str, Any] = {
            "format": self.format,
            "model": self.model,
            "input": {"name": self.input.name, "shape": list(self.input.shape), "dtype": self.input.dtype},
            "frames_per_step": self.frames_per_step,
            "warmup": list(self.warmup),
            "cycle": list(self.cycle),
            "warmup_kinds": list(self.warmup_kinds),
            "cycle_kinds": list(self.cycle_kinds),
            "graphs": [dataclasses.asdict(g) for g in self.graphs],
            "state": [s.to_dict() for s in self.state],
            "initial_state": self.initial_state,
            "state_bytes": self.state_bytes,
            "delay_frames": self.delay_frames,
            "receptive_field_frames": self.receptive_field_frames,
            "fold_bn": self.fold_bn,
            "torch_version": self.torch_version,
        }
        out.update(self.metadata)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") not in FORMATS:
            raise ValueError(f"Manifest: format {data.get('format')!r} is none of {', '.join(map(repr, FORMATS))}")
        names = {f.name for f in dataclasses.fields(cls)} - {"metadata"}
        known = {k: v for k, v in data.items() if k in names}
        known["input"] = InputEntry(**data["input"])
        known["graphs"] = [GraphEntry(**g) for g in data["graphs"]]
        known["state"] = [StateEntry(**s) for s in data["state"]]
        metadata = {k: v for k, v in data.items() if k not in names and k != "frames_per_step"}
        return cls(**known, metadata=metadata)

    def write(self, directory: str | Path) -> dict[str, Any]:
        """Write ``directory/manifest.json``; returns the JSON object."""
        data = self.to_dict()
        (Path(directory) / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")
        return data

    @classmethod
    def read(cls, directory: str | Path, format: str | None = None) -> Manifest:
        """Read ``directory/manifest.json``; with ``format``, refuse a manifest of another one."""
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"no {MANIFEST} in {directory} (write one with soi export)")
        try:
            man = cls.from_dict(json.loads(path.read_text()))
        except ValueError as e:
            raise ValueError(f"{path} is not a soi ONNX manifest: {e}") from None
        if format is not None and man.format != format:
            raise ValueError(f"{path} describes {FORMATS[man.format]}, not {FORMATS[format]}")
        return man
