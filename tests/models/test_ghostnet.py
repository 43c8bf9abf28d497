"""The scene GhostNets (Han et al. 2020, frequency strides only) in their streaming patterns: STMC
(converted with causal=True) and SOI (soi.scatter around every processing block) stream exactly like
their offline forward in float64 (frame by frame, chunks of 3, random chunks), execute exactly the
analytic MACs on every step, and SOI's skipped frames do no work in the scattered blocks."""

import pytest
import torch

import soi
from soi.analysis.cost import analyze, measure_steps, schedule
from soi.models.ghostnet import (
    PATTERNS,
    SIZES,
    bottleneck_spans,
    ghostnet,
    streaming_ghostnet,
)
from soi.scattered.pairs import SCCPair
from soi.testing import assert_streams_like_offline, randomise_batchnorm

MELS = 32


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    net = randomise_batchnorm(
        ghostnet(width=0.2, num_classes=5, time_strides=False).double().eval()
    )
    return net, {
        p: streaming_ghostnet(net, p, (1, MELS)).eval() for p in ("STMC", "SOI")
    }


@pytest.mark.parametrize("pattern", ["STMC", "SOI"])
def test_streams_exactly_like_offline_in_float64(nets, pattern):
    _, models = nets
    x = torch.randn(2, 1, 23, MELS, dtype=torch.float64)
    model = models[pattern]
    assert model.timing.stride == 1 and model.delay == 0, (
        "a posterior every frame, no look-ahead"
    )
    assert model(x).shape == (2, 5, 23)
    assert_streams_like_offline(
        model, x, chunks=(1, 3, "random"), atol=1e-10, case=f"GhostNet {pattern}"
    )


def test_stmc_is_the_causal_torch_model_on_the_last_frame(nets):
    from tests.ghostnet import causal_reference

    net, models = nets
    x = torch.randn(1, 1, 12, MELS, dtype=torch.float64)
    with torch.no_grad():
        got = models["STMC"](x)[:, :, -1]
        want = causal_reference(net)(x)
    assert torch.allclose(got, want, atol=1e-10, rtol=0), (
        "the last posterior is torch's on the whole (causal) clip"
    )


@pytest.mark.parametrize("pattern", ["STMC", "SOI"])
def test_executes_the_analytic_macs_per_step(nets, pattern):
    _, models = nets
    model = models[pattern]
    x = torch.randn(1, 1, 6, MELS, dtype=torch.float64)
    executed = measure_steps(model, x, chunk=1)
    analytic = schedule(analyze(model), 6)
    for t, (e, a) in enumerate(zip(executed, analytic)):
        assert e.step == a.step, (
            f"GhostNet {pattern}: step {t} executed {e.step} MACs, analytic {a.step}"
        )
    if pattern == "SOI":
        steps = [a.step for a in analytic]
        assert steps[0] == steps[2] == steps[4] > steps[1] == steps[3] == steps[5], (
            "scattered blocks run on even frames only"
        )
        stmc = soi.cost(models["STMC"]).macs_per_frame
        assert soi.cost(model).macs_per_frame < 0.85 * stmc


def test_soi_wraps_every_processing_block_in_an_scc_pair(nets):
    net, models = nets
    spans = bottleneck_spans(net)
    assert len(spans) == 16 + 1, "16 bottlenecks and the final ConvBnAct"
    assert sum(isinstance(m, SCCPair) for m in models["SOI"].modules()) == len(spans)
    assert sum(p.numel() for p in models["SOI"].parameters()) == sum(
        p.numel() for p in net.parameters()
    )


def test_sizes_and_refusals():
    assert len(SIZES) == 7 and PATTERNS == ("baseline", "STMC", "SOI")
    net = ghostnet(width=0.2, time_strides=False)
    with pytest.raises(ValueError, match="baseline pads 'same'"):
        streaming_ghostnet(net, "baseline", (1, MELS))
    with pytest.raises(
        ValueError, match="pattern must be one of baseline, STMC, SOI, got 'S-CC 2'"
    ):
        streaming_ghostnet(net, "S-CC 2", (1, MELS))
    with pytest.raises(ValueError, match="expected a GhostNet with time_strides=False"):
        streaming_ghostnet(ghostnet(width=0.2), "STMC", (1, MELS))
