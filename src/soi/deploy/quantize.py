"""Post-training static int8 quantization of an exported stream, for ONNX Runtime (QDQ,
``onnxruntime.quantization``) and LiteRT (``ai-edge-quantizer``): int8 weights per output channel
(symmetric), int8 activations per tensor (asymmetric, min/max over calibration frames).

Calibration walks the *float* export over the calibration chunks exactly as a runtime does
(:func:`record_calls`: warm-up, then the cycle, every graph fed the state the previous calls left),
so each phase graph is calibrated on the inputs it meets in a stream.

A state tensor keeps **one grid** in every graph that reads or writes it: its range is the union
of what it held over all calls (as the input of one graph and the output of another), and both
tools are told that range for the input and for the output (ORT: ``TensorQuantOverrides``;
ai-edge-quantizer: the calibration result). A device can therefore hold it as int8 between calls
with no requantization, except where a graph gives a state tensor out of an operator the tool left
in float (the streamer then quantizes it; :attr:`soi.deploy.edge_runtime.LiteRTStreamer.conversions`).
The grid is written into the manifest (``state[i].quantization``) with how the export was quantized
(``quantization``).

What stays float is the caller's choice of graph: for speech, export the U-Net alone and do the
power-law compression and the complex-mask multiply on the host in float (``docs/edge.md``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import FORMAT, LITERT_FORMAT, Manifest, Quantization

__all__ = ["RecordedCall", "quantize_litert", "quantize_onnx", "record_calls", "state_ranges"]

RecordedCall = tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]]
"""One call of a stream: ``(graph id, inputs by name, outputs by name)``."""

Runner = Callable[[int, dict[str, np.ndarray]], dict[str, np.ndarray]]


def record_calls(manifest: Manifest, initial: dict[str, np.ndarray], chunks: Iterable[np.ndarray], run: Runner) -> list[RecordedCall]:
    """Stream ``chunks`` through the graphs of ``manifest`` (``run(graph_id, inputs) -> outputs``,
    by the manifest's names) from the ``initial`` state; every call with its inputs and outputs."""
    calls: list[RecordedCall] = []
    state = {k: np.asarray(v, dtype=np.float32) for k, v in initial.items()}
    order = list(zip(manifest.warmup, manifest.warmup_kinds))
    cycle = list(zip(manifest.cycle, manifest.cycle_kinds))
    index = 0

    def entry(i: int) -> tuple[int | None, str]:
        return order[i] if i < len(order) else cycle[(i - len(order)) % len(cycle)]

    def call(gid: int | None, x: np.ndarray | None) -> None:
        nonlocal state
        if gid is None:
            return
        g = manifest.graph(gid)
        feeds = {f"state.{n}": state[n] for n in g.state_in}
        if x is not None:
            feeds["x"] = x
        outs = run(gid, feeds)
        calls.append((gid, feeds, outs))
        state = {**{n: state[n] for n in g.keep}, **{n: outs[f"next.{n}"] for n in g.state_out}}

    for x in chunks:
        gid, kind = entry(index)
        if kind == "prepare":
            call(gid, None)
            index += 1
            gid, kind = entry(index)
        call(gid, np.asarray(x, dtype=np.float32))
        index += 1
    return calls


def state_ranges(calls: list[RecordedCall]) -> dict[str, tuple[float, float]]:
    """Each state tensor's ``(min, max)`` over every call, as input and as output (0 included:
    the initial state and a zero-point that lands on a grid point)."""
    ranges: dict[str, tuple[float, float]] = {}
    for _, feeds, outs in calls:
        for key, v in [*feeds.items(), *outs.items()]:
            if key.startswith(("state.", "next.")) and v.size:
                name = key.split(".", 1)[1]
                lo, hi = ranges.get(name, (0.0, 0.0))
                ranges[name] = (min(lo, float(v.min())), max(hi, float(v.max())))
    return ranges


def _prepare_output(float_dir: Path, out_dir: Path, overwrite: bool, fmt: str) -> Manifest:
    man = Manifest.read(float_dir, fmt)
    if any(s.quantization for s in man.state):
        raise ValueError(f"quantize: {float_dir} is already quantized")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"quantize: {out_dir} exists and is not empty (use overwrite=True / --force)")
    if out_dir.resolve() == float_dir.resolve():
        raise ValueError("quantize: the output folder must not be the float export's folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(float_dir / man.initial_state, out_dir / man.initial_state)
    return man


def _finish(man: Manifest, out_dir: Path, grids: dict[str, Quantization], info: dict[str, Any]) -> dict[str, Any]:
    for s in man.state:
        s.quantization = grids.get(s.name)
    held = [s for s in man.state if s.quantization is not None]
    info["state_int8"] = len(held)
    info["state_float"] = len(man.state) - len(held)
    shapes = {s.name: int(np.prod(s.shape)) for s in man.state}
    info["state_bytes_int8_held"] = sum(shapes[s.name] * (1 if s.quantization else 4) for s in man.state if s.initial)
    man.metadata["quantization"] = info
    return man.write(out_dir)


# ==================================================================================================
# ONNX Runtime
# ==================================================================================================


def quantize_onnx(
    float_dir: str | Path, out_dir: str | Path, calibration: Iterable[np.ndarray], *, overwrite: bool = False
) -> dict[str, Any]:
    """int8 QDQ copy of the ONNX export ``float_dir`` in ``out_dir``, calibrated on the chunks
    ``calibration`` (each of the export's input shape); returns the manifest. Graph inputs and
    outputs stay float (a ``QuantizeLinear`` after each input, a ``DequantizeLinear`` before each
    output), and every state tensor's pair of them has the one grid of the manifest."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    float_dir, out_dir = Path(float_dir), Path(out_dir)
    man = _prepare_output(float_dir, out_dir, overwrite, FORMAT)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sessions = {g.id: ort.InferenceSession(str(float_dir / g.file), opts, providers=["CPUExecutionProvider"]) for g in man.graphs}

    def run(gid: int, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = man.graph(gid)
        return dict(zip(g.outputs, sessions[gid].run(None, feeds)))

    with np.load(float_dir / man.initial_state) as data:
        initial = {k: data[k] for k in data.files}
    calls = record_calls(man, initial, calibration, run)
    ranges = state_ranges(calls)

    class Reader(CalibrationDataReader):
        def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    for g in man.graphs:
        feeds = [f for gid, f, _ in calls if gid == g.id]
        if not feeds:
            raise ValueError(f"quantize_onnx: the calibration chunks never reach graph {g.file}; give at least one full cycle")
        overrides = {
            f"{prefix}.{n}": [{"rmin": np.float32(ranges[n][0]), "rmax": np.float32(ranges[n][1])}]
            for prefix, names in (("state", g.state_in), ("next", g.state_out))
            for n in names
            if n in ranges
        }
        quantize_static(
            str(float_dir / g.file), str(out_dir / g.file), Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            extra_options={"TensorQuantOverrides": overrides, "ActivationSymmetric": False, "WeightSymmetric": True},
        )  # fmt: skip

    # the grid each state tensor got, read back from the graphs (and checked to be one)
    grids: dict[str, Quantization] = {}
    for g in man.graphs:
        model = onnx.load(str(out_dir / g.file))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "QuantizeLinear" and node.input[0].startswith("state."):
                name = node.input[0][len("state.") :]
            elif node.op_type == "DequantizeLinear" and node.output[0].startswith("next."):
                name = node.output[0][len("next.") :]
            else:
                continue
            grid = Quantization(float(inits[node.input[1]]), int(inits[node.input[2]]), str(inits[node.input[2]].dtype))
            if grids.setdefault(name, grid) != grid:
                raise RuntimeError(f"quantize_onnx: state {name} got two grids ({grids[name]} and {grid}) in {g.file}")
    info = {
        "tool": f"onnxruntime.quantization {ort.__version__} (QDQ)",
        "weights": "int8, per output channel, symmetric",
        "activations": "int8, per tensor, asymmetric, min/max over the calibration",
        "calibration_chunks": sum(1 for _, f, _ in calls if "x" in f),
    }
    return _finish(man, out_dir, grids, info)


# ==================================================================================================
# LiteRT
# ==================================================================================================


def quantize_litert(
    float_dir: str | Path, out_dir: str | Path, calibration: Iterable[np.ndarray], *, overwrite: bool = False
) -> dict[str, Any]:
    """int8 copy of the LiteRT export ``float_dir`` in ``out_dir`` (``ai-edge-quantizer``'s
    static int8 recipe), calibrated on the chunks ``calibration``; returns the manifest. The
    graphs take and give int8 tensors (``x`` and ``y`` too, with their grids in the graph);
    operators the tool leaves in float have ``DEQUANTIZE``/``QUANTIZE`` around them."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    from .edge_runtime import signature_io

    float_dir, out_dir = Path(float_dir), Path(out_dir)
    man = _prepare_output(float_dir, out_dir, overwrite, LITERT_FORMAT)
    interps, names = {}, {}
    for g in man.graphs:
        it = Interpreter(model_path=str(float_dir / g.file))
        ins, outs = ({i: d["index"] for i, d in io.items()} for io in signature_io(it))
        tensor_names = {d["index"]: d["name"] for d in it.get_tensor_details()}
        interps[g.id] = (it, ins, outs)
        # manifest name -> (signature key, tensor name)
        names[g.id] = {
            **{n: (f"args_{i}", tensor_names[ins[i]]) for i, n in enumerate(g.inputs)},
            **{n: (f"output_{i}", tensor_names[outs[i]]) for i, n in enumerate(g.outputs)},
        }

    def run(gid: int, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        it, ins, outs = interps[gid]
        g = man.graph(gid)
        for i, n in enumerate(g.inputs):
            it.set_tensor(ins[i], feeds[n])
        it.invoke()
        return {n: it.get_tensor(outs[i]) for i, n in enumerate(g.outputs)}

    with np.load(float_dir / man.initial_state) as data:
        initial = {k: data[k] for k in data.files}
    calls = record_calls(man, initial, calibration, run)
    ranges = state_ranges(calls)
    grids: dict[str, Quantization] = {}
    models: dict[int, bytes] = {}
    for g in man.graphs:
        feeds = [{names[g.id][n][0]: v for n, v in f.items()} for gid, f, _ in calls if gid == g.id]
        if not feeds:
            raise ValueError(f"quantize_litert: the calibration chunks never reach graph {g.file}; give at least one full cycle")
        qt = quantizer.Quantizer(str(float_dir / g.file))
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        # min/max over every call: Quantizer.calibrate keeps a moving average (factor 0.95) of each
        # call's min/max, i.e. the ranges of the last ~20 calls, which clipped the medium speech
        # model's activations to a third of their range
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(recipe.static_wi8_ai8())
        calib = calibrator.Calibrator((float_dir / g.file).read_bytes(), num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        calib.calibrate({"serving_default": feeds}, manager)
        qsv = calib.get_model_qsvs()
        for exp, sub, elu in _elu_tensors((float_dir / g.file).read_bytes()):
            if qsv.get(exp) and qsv.get(sub) and qsv.get(elu):
                qsv[exp] = {**qsv[exp], "max": np.minimum(qsv[exp]["max"], 1.0)}
                qsv[sub] = {**qsv[sub], "min": qsv[elu]["min"], "max": qsv[elu]["max"]}
        for key, (_, tensor) in names[g.id].items():
            if key.startswith(("state.", "next.")) and tensor in qsv and qsv[tensor]:
                lo, hi = ranges[key.split(".", 1)[1]]
                qsv[tensor] = {**qsv[tensor], "min": np.full_like(qsv[tensor]["min"], lo), "max": np.full_like(qsv[tensor]["max"], hi)}
        models[g.id] = model = bytes(qt.quantize(qsv, enable_progress_report=False).quantized_model)
        # the grid each state input got (the subgraph's inputs, in the manifest's order)
        q_in = Interpreter(model_path=None, model_content=model).get_input_details()
        for n, d in zip(g.inputs, q_in):
            scales, zeros = d["quantization_parameters"]["scales"], d["quantization_parameters"]["zero_points"]
            if n.startswith("state.") and np.dtype(d["dtype"]).kind != "f" and len(scales):
                grids.setdefault(n[len("state.") :], Quantization(float(scales[0]), int(zeros[0]), str(np.dtype(d["dtype"]))))
    for g in man.graphs:
        def on_grid(names: list[str], prefix: str) -> dict[int, Quantization]:
            return {i: grids[n[len(prefix) :]] for i, n in enumerate(names) if n.startswith(prefix) and n[len(prefix) :] in grids}

        (out_dir / g.file).write_bytes(_regrid_io(models[g.id], on_grid(g.inputs, "state."), on_grid(g.outputs, "next.")))
    import ai_edge_quantizer

    info = {
        "tool": f"ai-edge-quantizer {getattr(ai_edge_quantizer, '__version__', '')} (static_wi8_ai8)".replace("  ", " "),
        "weights": "int8, per output channel, symmetric",
        "activations": "int8, per tensor, asymmetric, min/max over the calibration",
        "calibration_chunks": sum(1 for _, f, _ in calls if "x" in f),
    }
    return _finish(man, out_dir, grids, info)


def _elu_tensors(model: bytes) -> list[tuple[str, str, str]]:
    """``(exp, sub, elu)`` tensor names of each ``nn.ELU`` as the converter lowers it,
    ``elu = select(x >= 0, x, sub)`` with ``sub = exp(x) - 1``: an ``EXP`` read only by a ``SUB``
    read only by a ``SELECT``. Only ``exp(x)`` for ``x < 0`` reaches ``elu``, but min/max
    calibration sees ``exp`` of the largest ``x`` too (``e^6.4 = 600`` in the medium speech
    model): on that int8 grid (step 2.4) every negative ``x`` rounds to ``exp = 0`` or ``2.4``,
    so the ELU's negative half is lost; and ai-edge-quantizer gives ``SELECT`` the grid of
    ``sub`` (``[-1, e^max - 1]``), much wider than ``elu``'s own range. The caller clamps
    ``exp`` to ``[min, 1]`` and gives ``sub`` the range of ``elu``."""
    from ai_edge_litert import schema_py_generated as fb

    sg = (m := fb.ModelT.InitFromPackedBuf(model, 0)).subgraphs[0]

    def builtin(op: Any) -> int:
        code = m.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    def name(t: int) -> str:
        n = sg.tensors[t].name
        return n.decode() if isinstance(n, bytes) else str(n)

    readers: dict[int, list[Any]] = {}
    for op in sg.operators:
        for t in op.inputs if op.inputs is not None else []:
            readers.setdefault(int(t), []).append(op)
    graph_outputs = {int(t) for t in sg.outputs}

    def only_reader(t: int, kinds: set[int]) -> Any | None:
        ops = readers.get(t, [])
        return ops[0] if len(ops) == 1 and builtin(ops[0]) in kinds and t not in graph_outputs else None

    found = []
    for op in sg.operators:
        if builtin(op) != fb.BuiltinOperator.EXP:
            continue
        exp = int(op.outputs[0])
        sub = only_reader(exp, {fb.BuiltinOperator.SUB})
        select = None if sub is None else only_reader(int(sub.outputs[0]), {fb.BuiltinOperator.SELECT, fb.BuiltinOperator.SELECT_V2})
        if select is not None:
            found.append((name(exp), name(int(sub.outputs[0])), name(int(select.outputs[0]))))
    return found


def _regrid_io(model: bytes, inputs: dict[int, Quantization], outputs: dict[int, Quantization]) -> bytes:
    """``model`` taking the subgraph inputs and giving the outputs at the positions of ``inputs``
    and ``outputs`` as int8 on those grids. ai-edge-quantizer gives a state out on the grid of the
    operator that made it (or of a ``Concat`` it also feeds), and takes a state another graph
    uses on its own grid (or in float, when nothing here quantizes it); there a ``QUANTIZE``
    (which requantizes an int8 input to its output's grid) or a ``DEQUANTIZE`` is added between
    the new int8 input or output and the old tensor, so the graph itself converts and a state
    keeps one grid between calls."""
    import copy

    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(model, 0)
    for buf in m.buffers or []:
        if buf.offset and buf.offset > 1:  # data stored after the flatbuffer: inline it, repacking moves the end
            buf.data = np.frombuffer(model, np.uint8, count=buf.size, offset=buf.offset).copy()
            buf.offset, buf.size = 0, 0
    sg = m.subgraphs[0]
    sg.inputs = [int(t) for t in sg.inputs]  # unpacked as read-only arrays
    sg.outputs = [int(t) for t in sg.outputs]

    def opcode(builtin: int) -> int:
        codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
        if builtin in codes:
            return codes.index(builtin)
        code = fb.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin
        code.version = 1
        m.operatorCodes.append(code)
        return len(m.operatorCodes) - 1

    def matches(t: int, grid: Quantization) -> bool:
        q = sg.tensors[t].quantization
        if sg.tensors[t].type != fb.TensorType.INT8 or q is None or q.scale is None or len(q.scale) != 1 or q.zeroPoint is None:
            return False
        return bool(np.float32(q.scale[0]) == np.float32(grid.scale)) and int(q.zeroPoint[0]) == grid.zero_point

    def int8_twin(t: int, grid: Quantization, suffix: str) -> int:
        new = copy.deepcopy(sg.tensors[t])
        new.name = (new.name.decode() if isinstance(new.name, bytes) else str(new.name)) + suffix
        new.type = fb.TensorType.INT8
        new.buffer = 0
        new.quantization = fb.QuantizationParametersT()
        new.quantization.scale = [grid.scale]
        new.quantization.zeroPoint = [grid.zero_point]
        sg.tensors.append(new)
        return len(sg.tensors) - 1

    def operator(builtin: int, src: int, dst: int) -> Any:
        op = fb.OperatorT()
        op.opcodeIndex = opcode(builtin)
        op.inputs, op.outputs = [src], [dst]
        return op

    renamed_in: dict[int, int] = {}
    first: list[Any] = []
    for pos, grid in inputs.items():
        t = sg.inputs[pos]
        if matches(t, grid):
            continue
        new = int8_twin(t, grid, "_state_grid")
        builtin = fb.BuiltinOperator.DEQUANTIZE if sg.tensors[t].type == fb.TensorType.FLOAT32 else fb.BuiltinOperator.QUANTIZE
        first.append(operator(builtin, new, t))
        sg.inputs[pos] = renamed_in[t] = new
    renamed_out: dict[int, int] = {}
    for pos, grid in outputs.items():
        t = sg.outputs[pos]
        if matches(t, grid):
            continue
        new = int8_twin(t, grid, "_state_grid")
        sg.operators.append(operator(fb.BuiltinOperator.QUANTIZE, t, new))
        sg.outputs[pos] = renamed_out[t] = new
    sg.operators = first + list(sg.operators)
    for sig in m.signatureDefs or []:
        for entry in sig.inputs or []:
            entry.tensorIndex = renamed_in.get(entry.tensorIndex, entry.tensorIndex)
        for entry in sig.outputs or []:
            entry.tensorIndex = renamed_out.get(entry.tensorIndex, entry.tensorIndex)
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
