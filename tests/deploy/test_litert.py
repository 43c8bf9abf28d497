"""soi.deploy.litert + soi.deploy.edge_runtime: one .tflite per schedule phase with the state
explicit; streaming through LiteRT equals the PyTorch stream (<= 1e-4 relative over 400 frames)
for STMC, S-CC 2 and SS-CC 5 of the small U-Net; a ``micro`` export holds only TensorFlow Lite
Micro builtins and TFLM's stream equals LiteRT's.

Needs the ``edge`` extra (litert-torch, ai-edge-litert, tflite-micro); each conversion takes
10-30 s, so the exports are made once per module."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from soi.deploy.manifest import LITERT_FORMAT, Manifest
from soi.models.unet import UNet, UNetConfig
from soi.testing import randomise_batchnorm

pytest.importorskip("litert_torch", reason="litert-torch is not installed (pip install --pre 'soi[edge]': tflite-micro has only pre-releases)")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install --pre 'soi[edge]': tflite-micro has only pre-releases)")

from soi.deploy.edge_runtime import LiteRTStreamer, TflmStreamer
from soi.deploy.litert import MICRO_OPS, export_litert, graph_ops

SHAPE = (1, 2, 1, 513)
FRAMES = 400


def _small(pattern: str) -> UNet:
    from importlib.resources import files

    cfg = UNetConfig(**json.loads(files("soi").joinpath("assets/unet_small.json").read_text()))
    torch.manual_seed(5)
    return randomise_batchnorm(UNet(cfg, pattern), mean=0.5).eval()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """pattern -> (model, export directory), made once."""
    made = {}

    def get(pattern: str, target: str = "mobile"):
        key = (pattern, target)
        if key not in made:
            model = _small(pattern)
            out = tmp_path_factory.mktemp(f"{pattern.replace(' ', '')}_{target}")
            export_litert(model, out, SHAPE, target=target)
            made[key] = model, out
        return made[key]

    return get


def _stream(stream, x: torch.Tensor) -> np.ndarray:
    ys = []
    for t in range(x.shape[2]):
        if t % 3 == 0:
            stream.prepare()  # sometimes between frames, sometimes left to step()
        ys.append(stream.step(x[:, :, t : t + 1].numpy()))
    return np.concatenate(ys, axis=2)


def _reference(model, x: torch.Tensor) -> np.ndarray:
    state = model.init_state(x.shape[0])
    ys = []
    with torch.no_grad():
        for t in range(x.shape[2]):
            y, state = model.step(x[:, :, t : t + 1], state)
            ys.append(y)
    return torch.cat(ys, dim=2).numpy()


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE[0], SHAPE[1], FRAMES, SHAPE[3], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pattern, n_graphs", [("STMC", 1), ("S-CC 2", 2), ("SS-CC 5", 4)], ids=["stmc", "scc2", "sscc5"])
def test_litert_stream_equals_pytorch(exports, pattern, n_graphs):
    model, out = exports(pattern)
    man = Manifest.read(out, LITERT_FORMAT)
    assert len(man.graphs) == n_graphs, f"{pattern}: {len(man.graphs)} graphs, expected {n_graphs}"
    assert all(g.file.endswith(".tflite") and (out / g.file).is_file() for g in man.graphs)
    assert man.metadata["target"] == "mobile"
    x = _x()
    ref = _reference(model, x)
    y = _stream(LiteRTStreamer(out), x)
    assert y.shape == ref.shape, f"{pattern}: LiteRT {y.shape} vs PyTorch {ref.shape}"
    rel = float(np.abs(y - ref).max() / np.abs(ref).max())
    assert rel <= 1e-4, f"{pattern}: LiteRT differs from PyTorch by {rel:.2e} of the largest output over {FRAMES} frames"


def test_litert_reset_restarts_the_stream(exports):
    _, out = exports("S-CC 2")
    stream = LiteRTStreamer(out)
    x = _x(1)[:, :, :7]
    first = _stream(stream, x)
    stream.reset()
    assert stream.calls == 0
    np.testing.assert_array_equal(_stream(stream, x), first)


def test_litert_streamer_refuses_an_onnx_export_and_a_wrong_chunk(exports, tmp_path):
    _, out = exports("STMC")
    with pytest.raises(ValueError, match=r"expected a chunk of shape \(1, 2, 1, 513\), got \(1, 2, 2, 513\)"):
        LiteRTStreamer(out).step(np.zeros((1, 2, 2, 513), np.float32))
    data = json.loads((out / "manifest.json").read_text())
    data["format"] = "soi-onnx-v1"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"describes ONNX .* not LiteRT"):
        LiteRTStreamer(tmp_path)


def test_export_litert_refuses_a_bad_target_and_float64(tmp_path):
    model = _small("STMC")
    with pytest.raises(ValueError, match="target must be one of mobile, micro, got 'mcu'"):
        export_litert(model, tmp_path / "a", SHAPE, target="mcu")
    with pytest.raises(ValueError, match="float32; the model is torch.float64"):
        export_litert(model.double(), tmp_path / "b", SHAPE)


def test_micro_graph_has_only_tflm_builtins_and_tflm_equals_litert(exports):
    pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install --pre 'soi[edge]')")
    model, out = exports("STMC", "micro")
    for g in Manifest.read(out).graphs:
        ops = graph_ops(out / g.file)
        assert "SELECT" not in ops and ops <= MICRO_OPS, f"{g.file}: operators outside TFLM's builtins: {sorted(ops - MICRO_OPS)}"
    x = _x(2)[:, :, :60]  # TFLM's reference kernels take ~10 ms a frame
    lite = _stream(LiteRTStreamer(out), x)
    tflm_stream = TflmStreamer(out)
    micro = _stream(tflm_stream, x)
    rel = float(np.abs(micro - lite).max() / np.abs(lite).max())
    assert rel <= 1e-4, f"TFLM differs from LiteRT float by {rel:.2e} of the largest output"
    rel_torch = float(np.abs(micro - _reference(model, x)).max() / np.abs(lite).max())
    assert rel_torch <= 1e-4, f"TFLM differs from PyTorch by {rel_torch:.2e}"
    report = tflm_stream.allocations()[0]
    assert "Arena allocation total" in report, report[:300]


def test_int8_state_held_on_one_grid_with_no_host_requantization(exports, tmp_path):
    pytest.importorskip("ai_edge_quantizer", reason="ai-edge-quantizer is not installed (pip install --pre 'soi[edge]': tflite-micro has only pre-releases)")
    from soi.deploy.quantize import quantize_litert

    _, out = exports("S-CC 2")
    x = _x(3)
    calibration = [x[:, :, t : t + 1].numpy() for t in range(40)]
    man = quantize_litert(out, tmp_path / "int8", calibration)
    assert man["quantization"]["calibration_chunks"] == 40
    assert all(s.get("quantization") for s in man["state"]), "every state tensor has its grid"
    flo, q = LiteRTStreamer(out), LiteRTStreamer(tmp_path / "int8")
    assert all(not c for c in q.conversions.values()), f"states the graphs give on another grid: {q.conversions}"
    test = x[:, :, 40:140]
    yf, yq = _stream(flo, test), _stream(q, test)
    assert all(v.dtype == np.int8 for v in q.state.values()), "the int8 stream holds its state as int8"
    snr = 10 * np.log10((yf**2).sum() / ((yq - yf) ** 2).sum())
    assert snr > 10, f"int8 output SNR against float {snr:.1f} dB"
