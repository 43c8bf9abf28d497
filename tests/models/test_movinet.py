"""MoViNet A0 (Kondratyuk et al. 2021, the reference's block table) in its streaming patterns: STMC
(the causal stream-buffer form: convert with causal=True, every squeeze-excitation and the head's
pool the cumulative mean over time) and SOI (every bottleneck of blocks 4 and 5 in an S-CC pair)
stream exactly like their offline forward in float64 (frame by frame, chunks of 3, random chunks);
executed MACs per step equal the analytic cost; SOI's pairs run on even frames only."""

import pytest
import torch
from torch import nn

import soi
from soi.analysis.cost import analyze, measure_steps, schedule
from soi.layers.graph import CumulativePool
from soi.models.movinet import PATTERNS, SPECS, movinet, soi_spans, streaming_movinet
from soi.scattered.pairs import SCCPair
from soi.testing import assert_streams_like_offline, randomise_batchnorm

SIZE = 48  # five spatial halvings; block 5's pooled shortcut needs 3x3 at its input


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    net = randomise_batchnorm(movinet("a0", num_classes=5).double().eval())
    for b in net.modules():  # ReZero starts at 0: the residual branches would not be tested
        if hasattr(b, "rezero"):
            nn.init.uniform_(b.rezero, 0.5, 1.5)
    nn.init.normal_(net.classifier.weight, 0, 0.2)
    return net, {p: streaming_movinet(net, p, (SIZE, SIZE)).eval() for p in PATTERNS}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_streams_exactly_like_offline_in_float64(nets, pattern):
    _, models = nets
    model = models[pattern]
    x = torch.randn(1, 3, 9, SIZE, SIZE, dtype=torch.float64)
    assert model.timing.stride == 1 and model.delay == 0, "a posterior every frame, no look-ahead"
    assert model(x).shape == (1, 5, 9)
    assert_streams_like_offline(model, x, chunks=(1, 3, "random"), atol=1e-10, case=f"MoViNet A0 {pattern}")


def test_stmc_is_causal_with_cumulative_pools(nets):
    net, models = nets
    pools = [m for m in models["STMC"].modules() if isinstance(m, CumulativePool)]
    assert len(pools) == sum(len(b.expand_filters) for b in SPECS["a0"].blocks) + 1, "one per SE and the head's"
    x = torch.randn(1, 3, 8, SIZE, SIZE, dtype=torch.float64)
    y = x.clone()
    y[:, :, 5:] = torch.randn_like(y[:, :, 5:])
    with torch.no_grad():
        a, b = models["STMC"](x), models["STMC"](y)
    assert torch.equal(a[:, :, :5], b[:, :, :5]), "a posterior depends on no later frame"
    assert not torch.allclose(a[:, :, 5:], b[:, :, 5:])
    assert sum(p.numel() for p in models["SOI"].parameters()) == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("pattern", PATTERNS)
def test_executes_the_analytic_macs_per_step(nets, pattern):
    net, models = nets
    model = models[pattern]
    x = torch.randn(1, 3, 6, SIZE, SIZE, dtype=torch.float64)
    executed = measure_steps(model, x, chunk=1)
    analytic = schedule(analyze(model), 6)
    for t, (e, a) in enumerate(zip(executed, analytic, strict=True)):
        assert e.step == a.step, f"MoViNet A0 {pattern}: step {t} executed {e.step} MACs, analytic {a.step}"
    if pattern == "SOI":
        steps = [a.step for a in analytic]
        assert steps[0] == steps[2] == steps[4] > steps[1] == steps[3] == steps[5], "blocks 4 and 5 on even frames only"
        assert sum(isinstance(m, SCCPair) for m in model.modules()) == len(soi_spans(net)) == 8
        assert soi.cost(model).macs_per_frame < 0.85 * soi.cost(models["STMC"]).macs_per_frame


def test_block_tables_and_refusals():
    a1 = movinet("a1")
    assert [len(b) for b in a1.blocks] == [2, 4, 5, 6, 7] and a1.head.out_channels == 2048
    assert [len(b) for b in movinet("a0").blocks] == [1, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="model_id must be one of a0, a1, got 'a9'"):
        movinet("a9")
    with pytest.raises(ValueError, match="pattern must be one of STMC, SOI, got 'baseline'"):
        streaming_movinet(movinet("a0"), "baseline", (SIZE, SIZE))
