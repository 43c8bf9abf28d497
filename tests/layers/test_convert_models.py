"""soi.convert on a ResNet-10 3D laid out as torchvision's VideoResNet (r3d: BasicBlock, Conv3DSimple,
layers [1, 1, 1, 1], the stem Conv3d(3, 64, (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3)), 1x1x1
downsampling + BatchNorm, AdaptiveAvgPool3d + fc), written here as plain torch (torchvision does not
load beside this torch build). Its temporal padding is symmetric, so it converts with causal=True:
the same weights with left padding in time. Streamed == the causal torch model on every prefix
(float64), executed MACs per step == the analytic cost, ONNX export with explicit state. The same for
an R(2+1)D-18 (Conv2Plus1D blocks, layers [2, 2, 2, 2], R2Plus1dStem), and for a GhostNet 1.0x table at
width 0.25 (Han et al. 2020, tests/ghostnet.py) over (B, 1, T, mels)."""

from __future__ import annotations

import pytest
import torch

import soi
from soi.analysis.cost import analyze, measure_steps, schedule
from soi.layers.graph import CumulativePool
from soi.testing import assert_close, randomise_batchnorm, stream
from tests.ghostnet import causal_reference as ghost_causal_reference, ghostnet
from tests.video_resnets import causal_reference, r2plus1d_18, r3d_10


# The two VideoResNets: (name, builder, frame size, STMC convolutions after conversion). R(2+1)D-18:
# BasicBlock with Conv2Plus1D (a (1, 3, 3) spatial conv to torchvision's midplanes, BatchNorm, ReLU,
# a (3, 1, 1) temporal conv), layers [2, 2, 2, 2], R2Plus1dStem; 16x16 frames keep it fast.
VIDEO_RESNETS = {
    "r3d-10": (r3d_10, 32, 1 + 4 * 2 + 3),  # stem, two per block, three downsampling convolutions
    "r(2+1)d-18": (r2plus1d_18, 16, 2 + 8 * 2 * 2 + 3),  # stem (2+1)D, two (2+1)D convs per block, three downsampling
}


def _video_resnet(name: str):
    build, size, _ = VIDEO_RESNETS[name]
    torch.manual_seed(0)
    net = randomise_batchnorm(build().double().eval())
    x = torch.randn(1, 3, 9, size, size, dtype=torch.float64)
    return net, x, soi.convert(net, x, causal=True)


@pytest.fixture(scope="module", params=list(VIDEO_RESNETS), ids=str)
def video_resnet(request):
    return request.param, *_video_resnet(request.param)


@pytest.fixture(scope="module")
def r3d():
    return _video_resnet("r3d-10")


def test_video_resnet_converts_to_a_graph_of_soi_layers(video_resnet):
    name, net, _, model = video_resnet
    assert model.timing.stride == 8 and model.delay == 0, name
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in net.parameters()), name
    convs = [m for m in model.modules() if isinstance(m, soi.STMCConvNd)]
    assert len(convs) == VIDEO_RESNETS[name][2], f"{name}: {len(convs)} convolutions"
    assert all(c.lookahead == 0 for c in convs), f"{name}: causal=True, yet a convolution looks ahead"


def test_r3d_converts_as_it_is_too_with_look_ahead(r3d):
    """Without causal=True the model keeps its symmetric padding: 24 frames of look-ahead; each
    downsampling block's main path is 3 input frames behind its 1x1x1 shortcut at time stride 2, so
    the shortcut is delayed before its strided convolution. The last posterior is torch's."""
    net, x, _ = r3d
    model = soi.convert(net, x)
    assert model.delay == 1 + 2 + 3 + 6 + 12
    assert [d.lookahead for d in model.align] == [2, 3, 3, 3], "layer1: the identity waits 2 frames"
    with torch.no_grad():
        got = model(x)
        assert_close(got[:, :, -1], net(x), "r3d-10 as it is: the last posterior vs torch on the whole clip")
        assert_close(stream(model, x, "random"), got, "r3d-10 as it is: streamed in random chunks")


def test_video_resnet_streams_like_the_causal_torch_model(video_resnet):
    name, net, x, model = video_resnet
    ref = causal_reference(net)
    with torch.no_grad():
        # one posterior per 8 frames (the time stride): output j after frame 8j, on frames 0..8j
        want = torch.stack([ref(x[:, :, : 8 * j + 1]) for j in range(2)], dim=2)
        got = model(x)
        assert_close(got, want, f"{name}: converted vs causal torch on each prefix")
        for chunk in (1, "random"):
            assert_close(stream(model, x, chunk), got, f"{name}: streamed in chunks {chunk!r}")


def test_video_resnet_executes_the_analytic_macs_per_step(video_resnet):
    name, _, x, model = video_resnet
    executed = measure_steps(model, x[:, :, :8], chunk=1)
    analytic = schedule(analyze(model), 8)
    for t, (e, a) in enumerate(zip(executed, analytic)):
        assert e.step == a.step, f"{name}: step {t} executed {e.step} MACs, analytic {a.step}"
    assert len({a.step for a in analytic}) == 4, f"{name}: the deeper stages run every 2nd, 4th and 8th frame"


@pytest.mark.parametrize("name", list(VIDEO_RESNETS))
def test_video_resnet_exports_to_onnx(tmp_path, name):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from soi.deploy.export import compare_export, export_onnx

    build, size, _ = VIDEO_RESNETS[name]
    torch.manual_seed(1)
    shape = (1, 3, 8, size, size)
    model = soi.convert(build().eval(), torch.randn(shape), causal=True).eval()
    man = export_onnx(model, tmp_path, shape)  # chunks of 8 frames: one graph per step
    assert len(man["graphs"]) == 1, name
    parity = compare_export(model, tmp_path, steps=3)
    assert parity["max_abs"] <= 1e-5, (name, parity)


# GhostNet (Han et al. 2020) over (B, 1, T, mels): the paper's 1.0x cfgs at width 0.25, 2-d convolutions
# over (time, mel). GhostModule concatenates and slices channels (per frame), seven SE gates pool over
# (T, F) (causal cumulative means), five stride-2 stages: one posterior per 32 frames.


@pytest.fixture(scope="module")
def ghost():
    torch.manual_seed(0)
    net = randomise_batchnorm(ghostnet(width=0.25).double().eval())
    x = torch.randn(1, 1, 65, 32, dtype=torch.float64)
    return net, x, soi.convert(net, x, causal=True)


def test_ghostnet_converts_to_a_graph_of_soi_layers(ghost):
    net, _, model = ghost
    assert model.timing.stride == 32 and model.delay == 0
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in net.parameters())
    convs = [m for m in model.modules() if isinstance(m, soi.STMCConvNd)]
    assert convs and all(c.lookahead == 0 for c in convs), "causal=True: no convolution looks ahead"
    pools = [m for m in model.modules() if isinstance(m, CumulativePool)]
    assert len(pools) == 7 + 1, "seven SE pools and the global pool become cumulative means"


def test_ghostnet_streams_like_the_causal_torch_model(ghost):
    net, x, model = ghost
    ref = ghost_causal_reference(net)
    with torch.no_grad():
        # one posterior per 32 frames: output j after frame 32j, on frames 0..32j
        want = torch.stack([ref(x[:, :, : 32 * j + 1]) for j in range(3)], dim=2)
        got = model(x)
        assert_close(got, want, "ghostnet: converted vs causal torch on each prefix")
        for chunk in (1, "random"):
            assert_close(stream(model, x, chunk), got, f"ghostnet: streamed in chunks {chunk!r}")
        # torch's own SE on a prefix gates every earlier frame with the mean of the whole prefix:
        # no stream can (it needs later frames); so the reference pools the SEs causally
        plain = net(x[:, :, :65])
        assert not torch.allclose(plain, want[:, :, -1]), "the SEs' causal means change the function"


def test_ghostnet_executes_the_analytic_macs_per_step(ghost):
    _, x, model = ghost
    executed = measure_steps(model, x[:, :, :32], chunk=1)
    analytic = schedule(analyze(model), 32)
    for t, (e, a) in enumerate(zip(executed, analytic)):
        assert e.step == a.step, f"ghostnet: step {t} executed {e.step} MACs, analytic {a.step}"
    assert [a.step for a in analytic[:5]] == [522268, 0, 2584, 0, 8096], "the stem runs every 2nd frame"
    assert sum(a.step for a in analytic) == 682804


def test_ghostnet_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from soi.deploy.export import compare_export, export_onnx

    torch.manual_seed(1)
    net = ghostnet(width=0.25).eval()
    model = soi.convert(net, torch.randn(1, 1, 32, 32), causal=True).eval()
    man = export_onnx(model, tmp_path, (1, 1, 32, 32))  # chunks of 32 frames: one graph per step
    assert len(man["graphs"]) == 1
    parity = compare_export(model, tmp_path, steps=3)
    assert parity["max_abs"] <= 1e-5, parity
