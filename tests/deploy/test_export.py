"""soi.deploy.export + soi.deploy.runtime: one ONNX graph per schedule phase, explicit named state, a manifest, and
onnxruntime streams equal to the PyTorch stream (<= 1e-5 over a long random stream)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import soi
from soi.deploy import OnnxStreamer, export_onnx
from soi.models.unet import UNet, UNetConfig
from soi.testing import randomise_batchnorm

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

F = 17


def _model(lookahead=0, time_stride=1):
    torch.manual_seed(0)
    net = soi.Sequential(
        soi.STMCConv2d(2, 4, (3, 3), stride=(1, 2), padding=1, lookahead=lookahead, frame_size=(F,)),
        nn.BatchNorm2d(4),
        nn.ELU(),
        soi.Concat(nn.Identity(), soi.Sequential(soi.STMCConv2d(4, 4, (2, 3), padding=1, frame_size=(9,)), nn.ELU())),
        soi.STMCConvTranspose2d(8, 2, (2, 3), stride=(1, 2), padding=1, frame_size=(9,)),
        soi.STMCConv2d(2, 2, (2, 1), stride=(time_stride, 1), frame_size=(F,)),
    )
    return randomise_batchnorm(net, mean=0.5).eval()


def _parity(model, out_dir, shape, frames=300, seed=0):
    stream = OnnxStreamer(out_dir)
    g = torch.Generator().manual_seed(seed)
    state = model.init_state(shape[0])
    err, outs = 0.0, 0
    with torch.no_grad():
        for i in range(frames):
            x = torch.randn(shape, generator=g)
            ref, state = model.step(x, state)
            if i % 3 == 0:
                stream.prepare()  # sometimes between frames, sometimes left to step()
            y = stream.step(x.numpy())
            assert y.shape == tuple(ref.shape), f"frame {i}: ONNX {y.shape} vs PyTorch {tuple(ref.shape)}"
            if y.size:
                err = max(err, float(np.abs(y - ref.numpy()).max()))
                outs += y.shape[2]
    return err, outs


def test_stmc_one_graph_named_state_and_manifest(tmp_path):
    model = _model()
    man = export_onnx(model, tmp_path, (1, 2, 1, F))
    assert man["warmup"] == [] and man["cycle"] == [0] and len(man["graphs"]) == 1
    g = man["graphs"][0]
    names = {s["name"] for s in man["state"]}
    assert g["inputs"][0] == "x" and g["outputs"][0] == "y"
    assert {n[len("state.") :] for n in g["inputs"][1:]} == names
    assert all(n.startswith("next.") for n in g["outputs"][1:])
    for s in man["state"]:
        assert s["dtype"] == "float32" and s["fill"] == 0.0 and s["initial"]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["input"]["shape"] == [1, 2, 1, F]
    import onnx

    m = onnx.load(str(tmp_path / g["file"]))
    assert not {n.op_type for n in m.graph.node} & {"If", "Loop", "Scan"}, "graphs must be straight-line"
    assert [i.name for i in m.graph.input] == g["inputs"]
    err, outs = _parity(model, tmp_path, (1, 2, 1, F))
    assert outs == 300 and err <= 1e-5, err


def test_time_strided_two_phases_and_lookahead_warmup(tmp_path):
    model = _model(lookahead=2, time_stride=2)
    man = export_onnx(model, tmp_path, (2, 2, 1, F))
    assert len(man["warmup"]) == 2 and len(man["cycle"]) == 2
    err, outs = _parity(model, tmp_path, (2, 2, 1, F))
    assert err <= 1e-5, err
    assert outs == (300 - 2 + 1) // 2  # look-ahead holds 2 frames back; stride 2 halves the rest


def test_refuses_to_overwrite_and_training_mode(tmp_path):
    model = _model()
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        export_onnx(model, tmp_path, (1, 2, 1, F))
    with pytest.raises(ValueError, match="training mode"):
        export_onnx(model.train(), tmp_path / "new", (1, 2, 1, F))


TINY = {"freq_bins": 33, "in_channels": 2, "out_channels": 2, "channels": [4, 8, 8], "kernel": [2, 5], "freq_stride": 2, "lookahead": 0}


@pytest.mark.parametrize("pattern, n_cycle", [("S-CC 2", 2), ("SS-CC 2", 4)])
def test_soi_patterns_phase_graphs_and_parity(tmp_path, pattern, n_cycle):
    torch.manual_seed(2)
    model = UNet(UNetConfig(**TINY), pattern).eval()
    man = export_onnx(model, tmp_path, (1, 2, 1, 33))
    assert len(man["cycle"]) == n_cycle
    kinds = man["cycle_kinds"]
    assert ("prepare" in kinds) == pattern.startswith("SS")
    err, outs = _parity(model, tmp_path, (1, 2, 1, 33), frames=400)
    assert outs == 400 and err <= 1e-5, err
