"""soi.deploy.quantize: int8 QDQ of an ONNX export: every state tensor one grid in every graph
(the QuantizeLinear of ``state.<n>`` and the DequantizeLinear of ``next.<n>`` alike), the grid in
the manifest, the state a stream holds lies on it, the int8 stream stays close to float; the
calibration walk follows the schedule (SOI phases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soi.deploy import OnnxStreamer, export_onnx
from soi.deploy.manifest import Manifest
from soi.deploy.quantize import quantize_onnx, record_calls
from soi.models.unet import UNet, UNetConfig
from soi.testing import randomise_batchnorm

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TINY = {"freq_bins": 33, "in_channels": 2, "out_channels": 2, "channels": [4, 8, 8], "kernel": [2, 5], "freq_stride": 2, "lookahead": 0}
SHAPE = (1, 2, 1, 33)


def _chunks(n: int, seed: int) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=g).numpy() for _ in range(n)]


@pytest.fixture(scope="module", params=["STMC", "S-CC 2"], ids=["stmc", "scc2"])
def exported(request, tmp_path_factory):
    torch.manual_seed(2)
    model = randomise_batchnorm(UNet(UNetConfig(**TINY), request.param), mean=0.5).eval()
    root = tmp_path_factory.mktemp(request.param.replace(" ", ""))
    export_onnx(model, root / "float", SHAPE)
    man = quantize_onnx(root / "float", root / "int8", _chunks(120, 1))
    return request.param, root, man


def test_one_grid_per_state_tensor_in_every_graph(exported):
    pattern, root, man = exported
    assert man["quantization"]["calibration_chunks"] == 120
    grids = {s["name"]: s.get("quantization") for s in man["state"]}
    assert all(grids.values()), f"{pattern}: states left without a grid: {[n for n, q in grids.items() if not q]}"
    for g in man["graphs"]:
        model = onnx.load(str(root / "int8" / g["file"]))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        seen = 0
        for node in model.graph.node:
            if node.op_type == "QuantizeLinear" and node.input[0].startswith("state."):
                name = node.input[0][len("state.") :]
            elif node.op_type == "DequantizeLinear" and node.output[0].startswith("next."):
                name = node.output[0][len("next.") :]
            else:
                continue
            seen += 1
            scale, zero = float(inits[node.input[1]]), int(inits[node.input[2]])
            assert (scale, zero) == (grids[name]["scale"], grids[name]["zero_point"]), (
                f"{pattern} {g['file']}: {node.op_type} of {name} on ({scale}, {zero}), the manifest says {grids[name]}"
            )
        # a state a phase only passes on or copies needs no Q/DQ there; the others have one
        assert seen, f"{pattern} {g['file']}: no state tensor quantized"


def test_int8_stream_holds_its_state_on_the_grid_and_stays_close_to_float(exported):
    pattern, root, man = exported
    flo, q = OnnxStreamer(root / "float"), OnnxStreamer(root / "int8")
    grids = {s["name"]: s["quantization"] for s in man["state"]}
    ys_f, ys_q = [], []
    for x in _chunks(200, 2):
        ys_f.append(flo.step(x))
        ys_q.append(q.step(x))
    for name, v in q.state.items():
        levels = v / grids[name]["scale"] + grids[name]["zero_point"]
        assert np.abs(levels - np.round(levels)).max() < 1e-3, f"{pattern}: state {name} is off its int8 grid"
        assert levels.min() >= -128.001 and levels.max() <= 127.001, f"{pattern}: state {name} outside int8"
    yf, yq = np.concatenate(ys_f, 2), np.concatenate(ys_q, 2)
    snr = 10 * np.log10((yf**2).sum() / ((yq - yf) ** 2).sum())
    assert snr > 20, f"{pattern}: int8 output SNR against float {snr:.1f} dB"


def test_calibration_walk_follows_the_schedule(exported):
    pattern, root, _ = exported
    man = Manifest.read(root / "float")
    seen: list[int] = []

    def run(gid, feeds):
        g = man.graph(gid)
        seen.append(gid)
        assert set(feeds) == set(g.inputs), f"{pattern}: graph {gid} fed {sorted(feeds)}, it takes {g.inputs}"
        return {n: np.zeros(1, np.float32) if n == "y" else feeds.get(n.replace("next.", "state."), np.zeros(1, np.float32)) for n in g.outputs}

    with np.load(root / "float" / man.initial_state) as data:
        record_calls(man, {k: data[k] for k in data.files}, _chunks(5, 3), run)
    expected = [man.cycle[i % len(man.cycle)] for i in range(5)]
    assert seen == expected, f"{pattern}: calls {seen}, the schedule says {expected}"


def test_refuses_a_quantized_export_and_its_own_folder(exported, tmp_path):
    _, root, _ = exported
    with pytest.raises(ValueError, match="already quantized"):
        quantize_onnx(root / "int8", tmp_path / "again", _chunks(4, 0))
    with pytest.raises(ValueError, match="must not be the float export's folder"):
        quantize_onnx(root / "float", root / "float", _chunks(4, 0), overwrite=True)
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        quantize_onnx(root / "float", root / "int8", _chunks(4, 0))
