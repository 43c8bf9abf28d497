"""soi.scatter on the converted ResNet-10 3D (tests/video_resnets.py, causal=True): its third stage
(layer3: conv1 and the 1x1x1 shortcut, both strided, the add and the ReLU) wrapped in an S-CC pair
(and an SS-CC pair, shift=1). SOI changes the function, so the reference is the scattered model's
own offline forward: streamed frame by frame and in random chunks it must equal it in float64;
executed MACs per step equal the analytic cost, and fewer MACs per frame are executed than without
the pair. ONNX export with explicit state keeps parity; the fast streamer equals the plain step.
Bad spans are refused, saying why."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import soi
from soi.analysis.cost import analyze, measure_steps, schedule
from soi.scattered.scatter import Decimate, ScatterError
from soi.testing import assert_close, randomise_batchnorm, stream
from tests.video_resnets import r3d_10

START, END = "layer3_0_conv1_0", "layer3_0_relu"
T = 16


def _net(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return randomise_batchnorm(r3d_10().to(dtype).eval())


@pytest.fixture(scope="module")
def r3d():
    x = torch.randn(1, 3, T, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return x, soi.convert(_net(), x[:, :, :9], causal=True)


@pytest.mark.parametrize("shift", [0, 1], ids=["S-CC", "SS-CC"])
def test_scattered_r3d_streams_like_its_offline_forward(r3d, shift):
    x, model = r3d
    scattered = soi.scatter(model, start=START, end=END, stride=2, shift=shift)
    assert scattered.timing.stride == model.timing.stride == 8, "the pair restores the stage's rate"
    pairs = [m for m in scattered.modules() if isinstance(m, soi.SCCPair)]
    assert len(pairs) == 1 and pairs[0].scale == 4, "stage 3 strided by 2 and by the pair's 2"
    assert any(isinstance(m, Decimate) for m in scattered.modules())
    assert isinstance(scattered.nodes[f"scatter_{START}"][0], soi.SSCC if shift else soi.SCCPair)
    wiring = lambda g: [line.split("  timing")[0] for line in g.describe().splitlines()]
    inner = scattered.nodes[f"scatter_{START}"][0]
    inner = (inner.pair if shift else inner).inner
    assert wiring(inner) == [w.replace("layer2_0_relu", "input") for w in wiring(model)[8:12]], "the span rewired as it was"
    with torch.no_grad():
        offline = scattered(x)
        for chunk in (1, "random"):
            assert_close(stream(scattered, x, chunk), offline, f"scattered r3d (shift={shift}): streamed in chunks {chunk!r}", atol=1e-10)
        assert not torch.allclose(offline, model(x)), "SOI changes the function"
    assert sum(p.numel() for p in scattered.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("shift", [0, 1], ids=["S-CC", "SS-CC"])
def test_scattered_r3d_executes_the_analytic_macs_and_fewer(r3d, shift):
    x, model = r3d
    scattered = soi.scatter(model, start=START, end=END, stride=2, shift=shift)
    executed = measure_steps(scattered, x, chunk=1)
    analytic = schedule(analyze(scattered), T)
    for t, (e, a) in enumerate(zip(executed, analytic)):
        assert (e.step, e.prepare) == (a.step, a.prepare), f"step {t}: executed {e}, analytic {a}"
    before = sum(m.total for m in measure_steps(model, x, chunk=1)) / T
    after = sum(m.total for m in executed) / T
    assert after < before, f"MACs per frame: {after} scattered vs {before} without the pair"
    # stage 3 ran every 4th frame, now every 8th: what is saved is half of its work
    stage3 = sum(w.macs for w in analyze(model) if "layer3_0" in w.path and w.fires(0))
    assert before - after == pytest.approx(stage3 / 8, rel=0, abs=before * 1e-3)
    if shift:
        assert sum(a.prepare for a in analytic) > 0, "SS-CC: the pair's work needs only past frames"


def test_scatter_nests(r3d):
    """Stage 4 inside stage 3's pair: scatter the inner span first, then the outer one."""
    x, model = r3d
    inner = soi.scatter(model, start="layer4_0_conv1_0", end="layer4_0_relu")
    both = soi.scatter(inner, start=START, end="scatter_layer4_0_conv1_0")
    assert sum(isinstance(m, soi.SCCPair) for m in both.modules()) == 2
    with torch.no_grad():
        offline = both(x)
        assert_close(stream(both, x, "random"), offline, "nested pairs: streamed in random chunks", atol=1e-10)
    executed = measure_steps(both, x, chunk=1)
    analytic = schedule(analyze(both), T)
    assert [e.total for e in executed] == [a.total for a in analytic]
    assert sum(e.total for e in executed) < sum(e.total for e in measure_steps(inner, x, chunk=1))


def test_scatter_spans_is_repeated_scatter_with_one_copy(r3d):
    x, model = r3d
    spans = [("layer4_0_conv1_0", "layer4_0_relu"), (START, "scatter_layer4_0_conv1_0")]
    before = model.describe()
    together = soi.scatter_spans(model, spans)
    one_by_one = soi.scatter(soi.scatter(model, *spans[0]), *spans[1])
    assert together.describe() == one_by_one.describe(), "the same graph as scatter called span by span"
    with torch.no_grad():
        assert torch.equal(together(x), one_by_one(x)), "the same function as scatter called span by span"
    assert model.describe() == before, "the argument is left alone"
    with pytest.raises(ScatterError, match="at least one"):
        soi.scatter_spans(model, [])


def test_scatter_on_a_sequential():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv1d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 4, 3, padding=1)
    ).double()
    model = soi.convert(net, causal=True)
    scattered = soi.scatter(model, start="layers.2", end="layers.3", stride=3)
    x = torch.randn(2, 3, 20, dtype=torch.float64)
    with torch.no_grad():
        assert_close(stream(scattered, x, "random"), scattered(x), "scattered Sequential", atol=1e-10)
        # duplication: frames 3j..3j+2 of the pair's output are element j
        pair_out = scattered[2](scattered[1](scattered[0](x)))
        assert torch.equal(pair_out[:, :, 1], pair_out[:, :, 0]) and torch.equal(pair_out[:, :, 2], pair_out[:, :, 0])


def test_scattered_r3d_exports_to_onnx_and_streams_fast(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from soi.deploy import FastStreamer
    from soi.deploy.export import compare_export, export_onnx

    net = _net(torch.float32)
    model = soi.scatter(soi.convert(net, torch.randn(1, 3, 8, 32, 32), causal=True), START, END).eval()
    export_onnx(model, tmp_path, (1, 3, 8, 32, 32))
    parity = compare_export(model, tmp_path, steps=3)
    assert parity["max_abs"] <= 1e-5, parity

    x = torch.randn(1, 3, T, 32, 32)
    fs = FastStreamer(model, (1, 3, 1, 32, 32), backend="graph")
    outs = []
    for t in range(T):
        fs.prepare()
        outs.append(fs.step(x[:, :, t : t + 1]))
    got = torch.cat(outs, dim=2)
    with torch.no_grad():
        want = stream(model, x, 1)
    assert (got - want).abs().max() <= 1e-4


# -- bad spans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, match",
    [
        ("layer4_0_relu", "layer3_0_conv1_0", "comes after"),
        ("layer3_conv", "layer3_0_relu", r"unknown node name\(s\) \['layer3_conv'\]"),
        ("layer3_0_conv1_0", "layer3_0_downsample_0", "not a single-entry single-exit region"),  # two outputs
        ("layer3_0_downsample_0", "layer3_0_relu", "not a single-entry single-exit region"),  # conv1 lies before it
        ("layer1_0_relu", "layer1_0_relu", "cannot take a time stride"),
        ("layer1_0_relu", "layer2_0_relu", "cannot take a time stride"),
    ],
)
def test_bad_spans_are_refused(r3d, start, end, match):
    _, model = r3d
    with pytest.raises(ScatterError, match=match):
        soi.scatter(model, start=start, end=end)


def test_a_span_with_look_ahead_and_bad_arguments_are_refused():
    net = nn.Sequential(nn.Conv1d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 4, 3, padding=1))
    model = soi.convert(net)  # not causal: each convolution looks one frame ahead
    with pytest.raises(ScatterError, match="looks ahead"):
        soi.scatter(model, "layers.0", "layers.2")
    with pytest.raises(ScatterError, match="cannot take a time stride"):
        soi.scatter(soi.convert(net, causal=True), "layers.1", "layers.2")
    with pytest.raises(ScatterError, match="stride must be"):
        soi.scatter(model, "layers.0", "layers.2", stride=1)
    with pytest.raises(ScatterError, match="upsampler must be"):
        soi.scatter(model, "layers.0", "layers.2", upsampler="transposed")
