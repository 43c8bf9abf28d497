"""ResNet-10 3D (torchvision's VideoResNet layout, layers [1, 1, 1, 1]) in its streaming patterns:
STMC (converted with causal=True) and SOI (block 3's main branch in an S-CC pair, its shortcut the
full-rate skip) stream exactly like their offline forward in float64 (frame by frame, chunks of 3,
random chunks), the STMC posterior is the causal torch model's, executed MACs per step equal the
analytic cost, and SOI's skipped frames do no work in block 3."""

import pytest
import torch
from torch import nn

import soi
from soi.analysis.cost import analyze, measure_steps, schedule
from soi.models.resnet3d import PATTERNS, WIDTHS, resnet10, streaming_resnet3d
from soi.scattered.pairs import SCCPair
from soi.testing import assert_close, assert_streams_like_offline, randomise_batchnorm
from tests.video_resnets import causal_reference

SIZE = 16  # four spatial halvings: block 4 sees 1x1


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    net = randomise_batchnorm(resnet10("tiny", num_classes=5).double().eval())
    nn.init.normal_(net.fc.weight, 0, 0.2)  # torchvision's 0.01 would hide a wrong posterior
    return net, {p: streaming_resnet3d(net, p, (SIZE, SIZE)).eval() for p in PATTERNS}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_streams_exactly_like_offline_in_float64(nets, pattern):
    _, models = nets
    model = models[pattern]
    x = torch.randn(1, 3, 11, SIZE, SIZE, dtype=torch.float64)
    assert model.timing.stride == 1 and model.delay == 0, "a posterior every frame, no look-ahead"
    assert model(x).shape == (1, 5, 11)
    assert_streams_like_offline(model, x, chunks=(1, 3, "random"), atol=1e-10, case=f"ResNet-10 tiny {pattern}")


def test_stmc_is_the_causal_torch_model_on_every_prefix(nets):
    net, models = nets
    x = torch.randn(1, 3, 6, SIZE, SIZE, dtype=torch.float64)
    ref = causal_reference(net)
    with torch.no_grad():
        want = torch.stack([ref(x[:, :, : t + 1]) for t in range(6)], dim=2)
        assert_close(models["STMC"](x), want, "ResNet-10 STMC vs causal torch on each prefix")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_executes_the_analytic_macs_per_step(nets, pattern):
    _, models = nets
    model = models[pattern]
    x = torch.randn(1, 3, 6, SIZE, SIZE, dtype=torch.float64)
    executed = measure_steps(model, x, chunk=1)
    analytic = schedule(analyze(model), 6)
    for t, (e, a) in enumerate(zip(executed, analytic, strict=True)):
        assert e.step == a.step, f"ResNet-10 {pattern}: step {t} executed {e.step} MACs, analytic {a.step}"
    if pattern == "SOI":
        steps = [a.step for a in analytic]
        assert steps[0] == steps[2] == steps[4] > steps[1] == steps[3] == steps[5], "block 3 runs on even frames only"
        block3 = sum(w.macs for w in analyze(models["STMC"]) if w.path.startswith("nodes.layer3_conv1_0"))
        saved = soi.cost(models["STMC"]).macs_per_frame - soi.cost(model).macs_per_frame
        assert saved == pytest.approx(block3 / 2), f"SOI saves half of block 3's main branch: {saved} vs {block3 / 2}"


def test_soi_wraps_block_3_main_branch_only(nets):
    net, models = nets
    pairs = [m for m in models["SOI"].modules() if isinstance(m, SCCPair)]
    assert len(pairs) == 1
    convs = [m for m in pairs[0].modules() if isinstance(m, soi.STMCConvNd)]
    assert len(convs) == 2, f"conv1 and conv2 of block 3 in the pair, the shortcut outside: {len(convs)}"
    assert sum(p.numel() for p in models["SOI"].parameters()) == sum(p.numel() for p in net.parameters())


def test_widths_and_refusals():
    assert WIDTHS == {"regular": 64, "small": 32, "tiny": 16}
    assert resnet10("small").fc.in_features == 256
    with pytest.raises(ValueError, match="size must be one of regular, small, tiny, got 'huge'"):
        resnet10("huge")
    with pytest.raises(ValueError, match="pattern must be one of STMC, SOI, got 'S-CC 2'"):
        streaming_resnet3d(resnet10("tiny"), "S-CC 2", (SIZE, SIZE))
