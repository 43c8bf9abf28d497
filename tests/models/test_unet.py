"""soi.models.UNet: config, pattern names, streaming == offline for every pattern, executed MACs per
step == the analytic schedule (skipped layers really skipped), exact-strided mode, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import soi
import soi.testing
from soi.testing import randomise_batchnorm
from soi.analysis.cost import analyze, measure_steps, schedule
from soi.models import UNet, UNetConfig, parse_pattern
from soi.scattered import UPSAMPLERS
from tests.unet_cases import PATTERNS, TINY, TINY_LOOKAHEAD

DT = torch.float64
CHUNKS = (1, 2, 3, 5, "whole")




def make(pattern, upsampler="duplicate", mode="soi", config=TINY, seed=0):
    torch.manual_seed(seed)
    model = UNet(config, pattern, upsampler=upsampler, strided_mode=mode).double()
    # non-trivial BatchNorm statistics, then eval: streaming uses running statistics
    return randomise_batchnorm(model, weight=(0.5, 1.5), bias=0.2).eval()


def stream(module, x, chunk, prepare=False):
    return soi.testing.stream(module, x, chunk, prepare=prepare)


def check_close(got, want, case, atol=1e-12):
    soi.testing.assert_close(got, want, case, atol)


# ==================================================================================================
# Config
# ==================================================================================================


def test_config_json_round_trip(tmp_path):
    path = tmp_path / "unet.json"
    TINY_LOOKAHEAD.to_json(path)
    assert UNetConfig.from_json(path) == TINY_LOOKAHEAD
    assert UNetConfig.from_json(TINY.to_json()) == TINY
    assert json.loads(TINY.to_json())["channels"] == [3, 4, 4]


def test_shipped_configs():
    paper, small = UNetConfig.preset("paper"), UNetConfig.preset("small")
    assert paper.depth == 7 and paper.freq_bins == 513 and paper.freq_sizes == (513, 257, 129, 65, 33, 17, 9, 5)
    assert small.freq_bins == 513 and UNetConfig.from_json("small") == small


@pytest.mark.parametrize(
    "change,match",
    [
        ({"wrong": 1}, "unknown keys"),
        ({"lookahead": 2}, "lookahead"),
        ({"channels": []}, "channels"),
        ({"freq_bins": 17, "kernel": [2, 4], "channels": [4] * 5}, "fewer levels"),
        ({"freq_stride": 0}, "freq_stride"),
    ],
    ids=["unknown-key", "lookahead-too-big", "no-levels", "too-deep", "bad-stride"],
)
def test_config_errors(change, match):
    data = {**TINY.to_dict(), **change}
    with pytest.raises(ValueError, match=match):
        UNetConfig.from_dict(data)


# ==================================================================================================
# Patterns
# ==================================================================================================


@pytest.mark.parametrize(
    "text,canonical,pairs,shifts",
    [
        ("STMC", "STMC", (), ()),
        ("predictive  2", "Predictive 2", (), ((1, 2),)),
        ("S-CC 5", "S-CC 5", (5,), ()),
        ("2xS-CC 1 3", "2xS-CC 1 3", (1, 3), ()),
        ("3xs-cc 2 4 6", "3xS-CC 2 4 6", (2, 4, 6), ()),
        ("SS-CC 2", "SS-CC 2", (2,), ((2, 1),)),
        ("SS-CC 1 3", "SS-CC 1 3", (1,), ((3, 1),)),
    ],
    ids=lambda v: str(v),
)
def test_pattern_grammar(text, canonical, pairs, shifts):
    p = parse_pattern(text, 7)
    assert (p.text, p.pairs, p.shifts) == (canonical, pairs, shifts)


@pytest.mark.parametrize(
    "text,why",
    [("S-CC 8", "level 8 is outside"), ("SS-CC 0", "level 0 is outside"), ("Fancy 2", "unknown pattern"),
     ("2xS-CC 3", "needs 2 levels"), ("2xS-CC 3 2", "must increase"), ("Predictive 0", "at least 1")],
    ids=["level-too-deep", "level-zero", "unknown", "missing-level", "not-increasing", "predict-0"],
)  # fmt: skip
def test_bad_patterns_list_the_valid_forms(text, why):
    with pytest.raises(ValueError, match=why) as err:
        UNet(UNetConfig.preset("small"), text)
    msg = str(err.value)
    for form in ("'STMC'", "'Predictive n'", "'S-CC k'", "'2xS-CC a b'", "'SS-CC k'", "'SS-CC a b'", "levels 1..7"):
        assert form in msg, f"the error for {text!r} should list {form}: {msg}"


def test_lookahead_cannot_sit_in_a_strided_first_level():
    with pytest.raises(ValueError, match="lookahead"):
        UNet(TINY_LOOKAHEAD, "S-CC 1")


# ==================================================================================================
# Streaming == offline
# ==================================================================================================


STREAM_CASES = [(p, "duplicate", "soi") for p in PATTERNS]
STREAM_CASES += [(p, u, "soi") for p in ("S-CC 2", "2xS-CC 1 3", "SS-CC 1 3") for u in UPSAMPLERS if u != "duplicate"]
STREAM_CASES += [(p, u, "stmc") for p in ("S-CC 2", "2xS-CC 1 3", "SS-CC 2 3") for u in ("duplicate", "transposed", "cubic")]


@pytest.mark.parametrize("pattern,upsampler,mode", STREAM_CASES, ids=[f"{p}-{u}-{m}" for p, u, m in STREAM_CASES])
def test_streaming_equals_offline(pattern, upsampler, mode):
    model = make(pattern, upsampler, mode)
    x = torch.randn(2, 2, 14, 17, dtype=DT)
    want = model(x)
    assert want.shape == (2, 2, 14, 17), f"{pattern}: output shape {tuple(want.shape)}"
    fp = bool(model.spec.shifts)
    for chunk in CHUNKS:
        for prep in (False, True) if fp else (False,):
            check_close(stream(model, x, chunk, prep), want, f"{pattern} {upsampler} {mode} chunk={chunk} prepare={prep}")


@pytest.mark.parametrize("pattern", ["STMC", "Predictive 1", "S-CC 2", "SS-CC 3", "2xS-CC 2 3"])
def test_lookahead_model_streams_like_offline(pattern):
    model = make(pattern, config=TINY_LOOKAHEAD)
    assert model.delay == (0 if pattern == "Predictive 1" else 1), f"{pattern}: delay {model.delay}"
    x = torch.randn(1, 2, 12, 17, dtype=DT)
    want = model(x)
    for chunk in (1, 3, "whole"):
        check_close(stream(model, x, chunk, prepare=True), want, f"lookahead {pattern} chunk={chunk}")


def test_predictive_is_the_stmc_output_shifted():
    stmc = make("STMC")
    x = torch.randn(1, 2, 10, 17, dtype=DT)
    for n in (1, 2):
        pred = stmc.with_pattern(f"Predictive {n}")
        y = pred(x)
        assert torch.equal(y[:, :, :n], torch.zeros_like(y[:, :, :n])), f"Predictive {n}: zeros first"
        check_close(y[:, :, n:], stmc(x)[:, :, :-n], f"Predictive {n} = STMC shifted")


def test_every_pattern_builds_its_whole_state_up_front():
    for pattern in PATTERNS:
        for mode in ("soi", "stmc"):
            model = UNet(TINY, pattern, upsampler="linear", strided_mode=mode)
            state = model.init_state(2)
            tensors = soi.state_tensors(state)
            assert tensors, pattern
            lazy = [n for n, v in soi.core.state.state_leaves(state) if v is None and n.endswith(("history", "elems", "out"))]
            assert not lazy, f"{pattern} {mode}: lazily sized state fields {lazy}"


# ==================================================================================================
# Executed MACs == analytic schedule, step by step
# ==================================================================================================


MAC_CASES = [(p, "duplicate", "soi", TINY) for p in PATTERNS]
MAC_CASES += [(p, u, "soi", TINY) for p in ("2xS-CC 1 3", "SS-CC 2 3") for u in ("transposed", "linear", "cubic")]
MAC_CASES += [(p, u, "stmc", TINY) for p in ("2xS-CC 1 3", "SS-CC 3 1") for u in ("duplicate", "transposed")]
MAC_CASES += [(p, "duplicate", "soi", TINY_LOOKAHEAD) for p in ("Predictive 1", "S-CC 2", "SS-CC 2")]


@pytest.mark.parametrize(
    "pattern,upsampler,mode,config",
    MAC_CASES,
    ids=[f"{p}-{u}-{m}{'-lookahead' if c.lookahead else ''}" for p, u, m, c in MAC_CASES],
)
def test_executed_macs_per_step_equal_the_analytic_schedule(pattern, upsampler, mode, config):
    model = make(pattern, upsampler, mode, config)
    x = torch.randn(1, 2, 9, 17, dtype=DT)
    executed = measure_steps(model, x, chunk=1, prepare=True)
    analytic = schedule(analyze(model), x.shape[2])
    for t, (e, a) in enumerate(zip(executed, analytic)):
        assert (e.step, e.prepare) == (a.step, a.prepare), (
            f"{pattern} {upsampler} {mode}: step {t} executed {e.step} MACs + {e.prepare} in prepare, "
            f"analytic {a.step} + {a.prepare}"
        )
    chunked = sum(m.total for m in measure_steps(model, x, chunk=3, prepare=True))
    assert chunked == sum(a.total for a in analytic), f"{pattern}: chunks of 3 executed {chunked} MACs in total"


def test_s_cc_skips_the_deep_levels_on_odd_frames():
    # by hand, real multiplications only: level 1 = enc1 + dec1 of the tiny net
    kt, kf = TINY.kernel
    taps_enc1 = sum(1 for o in range(9) for i in range(kf) if 0 <= 2 * o - 1 + i < 17)
    taps_dec1 = sum(1 for x in range(9) for i in range(kf) if 0 <= 2 * x - 1 + i < 17)
    level1 = 3 * 2 * kt * taps_enc1 + 6 * 2 * kt * taps_dec1
    model = make("S-CC 2")
    steps = measure_steps(model, torch.randn(1, 2, 6, 17, dtype=DT))
    stmc_step = measure_steps(make("STMC"), torch.randn(1, 2, 1, 17, dtype=DT))[0].step
    assert [m.step for m in steps[1::2]] == [level1] * 3, f"odd frames must run level 1 only: {steps}"
    assert [m.step for m in steps[0::2]] == [stmc_step] * 3, f"even frames run the whole net: {steps}"


# ==================================================================================================
# Exact strided mode, weights across patterns, training
# ==================================================================================================


def test_exact_mode_costs_everything_and_remembers_more():
    soi_model, stmc_model = make("2xS-CC 1 2"), make("2xS-CC 1 2", mode="stmc")
    c_soi, c_stmc, c_ref = soi.cost(soi_model), soi.cost(stmc_model), soi.cost(make("STMC"))
    assert c_stmc.macs_per_frame == c_ref.macs_per_frame, "exact mode runs every layer at every frame"
    assert c_soi.macs_per_frame < c_ref.macs_per_frame
    assert c_stmc.state_bytes > c_soi.state_bytes


def test_with_pattern_keeps_the_weights():
    stmc = make("STMC")
    scc = stmc.with_pattern("S-CC 2", strided_mode="stmc")
    assert scc.pattern == "S-CC 2" and scc.strided_mode == "stmc"
    a, b = stmc.state_dict(), scc.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # frame 0 is aligned: every pattern without shifts gives the STMC output there
    x = torch.randn(1, 2, 4, 17, dtype=DT)
    check_close(scc(x)[:, :, 0], stmc(x)[:, :, 0], "S-CC 2 at frame 0")


@pytest.mark.parametrize("pattern,upsampler", [("2xS-CC 1 3", "transposed"), ("SS-CC 2 3", "linear")], ids=str)
def test_training_reaches_every_level(pattern, upsampler):
    torch.manual_seed(0)
    model = UNet(TINY, pattern, upsampler=upsampler).train()
    x = torch.randn(2, 2, 12, 17)
    loss = F.mse_loss(model(x), torch.randn(2, 2, 12, 17))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{pattern}: no gradient for {name}"


def test_bad_inputs():
    model = UNet(TINY, "S-CC 2")
    with pytest.raises(ValueError, match=r"\(B, 2, T, 17\)"):
        model(torch.randn(1, 2, 5, 16))
    with pytest.raises(ValueError, match="upsampler"):
        UNet(TINY, "S-CC 2", upsampler="bilinear")
    with pytest.raises(ValueError, match="2 S-CC pairs"):
        UNet(TINY, "2xS-CC 1 2", upsampler=["duplicate"])
    with pytest.raises(ValueError, match="strided_mode"):
        UNet(TINY, "S-CC 2", strided_mode="exact")


# ==================================================================================================
# Checkpoint keys: level names, the same for every pattern; checkpoints written before the graph
# was registered load
# ==================================================================================================


@pytest.mark.parametrize("mode", ["soi", "stmc"])
@pytest.mark.parametrize("pattern", ["S-CC 2", "2xS-CC 1 3", "SS-CC 2 3", "Predictive 1"])
def test_state_dict_keys_name_levels_whatever_the_pattern(pattern, mode):
    reference = UNet(TINY, "STMC").state_dict()
    model = UNet(TINY, pattern, strided_mode=mode)
    keys = list(model.state_dict())
    assert sorted(keys) == sorted(reference), f"{pattern} ({mode}): keys differ from STMC's: {sorted(set(keys) ^ set(reference))}"
    assert all(k.startswith(("encoders.", "decoders.")) for k in keys), [k for k in keys if not k.startswith(("encoders.", "decoders."))]
    # and the graph's own parameters are the ones the keys load into
    model.load_state_dict({k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in reference.items()})
    assert all(bool((p == 0.5).all()) for p in model.parameters()), f"{pattern} ({mode}): a parameter was not loaded"


def test_learned_upsampler_keys_and_old_checkpoint_load():
    model = UNet(TINY, "2xS-CC 1 3", upsampler=["duplicate", "transposed"])
    assert {k for k in model.state_dict() if k.startswith("upsamplers.")} == {"upsamplers.3.weight", "upsamplers.3.bias"}
    # the first shipped checkpoint, written before the U-Net registered its graph
    raw = torch.load(Path(__file__).parents[1] / "data" / "speech_small_stmc_v1.pt", map_location="cpu", weights_only=False)
    prefix = "masker.body.branches.1.layers.1."
    unet_keys = {k[len(prefix) :]: v for k, v in raw["state_dict"].items() if k.startswith(prefix)}
    for pattern in ("STMC", "S-CC 2", "SS-CC 5"):
        net = UNet(UNetConfig.from_dict(raw["unet_config"]), pattern)
        net.load_state_dict(unet_keys)  # strict
        got = net.state_dict()
        assert all(torch.equal(got[k], v) for k, v in unet_keys.items()), f"{pattern}: a loaded tensor differs"
