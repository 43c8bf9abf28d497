"""soi.cost: real multiplications, the run-time counter, the analytic figures of the paper-like
U-Net against the SOI paper, state memory, and the ``soi cost`` command."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import soi
import soi.analysis.cost as C
from benchmarks.paper_tables import PAPER_TABLES
from soi.cli import main
from soi.models import UNet, UNetConfig

TINY = UNetConfig(freq_bins=17, in_channels=2, out_channels=2, channels=(3, 4, 4), kernel=(2, 3))
PAPER = UNetConfig.preset("paper")




@pytest.fixture(scope="module")
def paper_reports():
    """Analytic cost of every pattern of the paper's tables (no streaming, only the structure)."""
    return {p: C.cost(UNet(PAPER, p)) for p in PAPER_TABLES}


# ==================================================================================================
# What a real multiplication is
# ==================================================================================================

AXES = [
    (size, k, stride, pad, dil, op)
    for size in (1, 5, 9, 16)
    for k in (1, 3, 5)
    for stride in (1, 2)
    for pad in (0, 1, 2)
    for dil in (1, 2)
    for op in (0, 1)
    if op < stride and pad <= (k - 1) * dil
]


@pytest.mark.parametrize("size,k,stride,pad,dil,op", AXES[::3], ids=lambda v: str(v))
def test_axis_taps_count_the_products_with_real_inputs(size, k, stride, pad, dil, op):
    # A convolution of ones with a kernel of ones: each output is the number of real inputs it used.
    ones = torch.ones(1, 1, size, dtype=torch.float64)
    w = torch.ones(1, 1, k, dtype=torch.float64)
    if (size + 2 * pad - dil * (k - 1) - 1) >= 0:
        y = F.conv1d(ones, w, stride=stride, padding=pad, dilation=dil)
        out, real, dense = C.axis_taps(size, k, stride, pad, dil, False)
        assert (out, real, dense) == (y.shape[2], int(y.sum()), y.shape[2] * k), f"conv {size, k, stride, pad, dil}"
    if (size - 1) * stride - 2 * pad + dil * (k - 1) + op + 1 < 1:
        return  # no output
    y = F.conv_transpose1d(ones, w, stride=stride, padding=pad, output_padding=op, dilation=dil)
    out, real, dense = C.axis_taps(size, k, stride, pad, dil, True, op)
    assert (out, real, dense) == (y.shape[2], int(y.sum()), y.shape[2] * k), f"transposed {size, k, stride, pad, dil, op}"


@pytest.mark.parametrize(
    "kind, layers, bidirectional, batch_first",
    [("LSTM", 1, False, False), ("LSTM", 2, True, True), ("GRU", 2, True, False), ("RNN", 1, False, True)],
    ids=["lstm", "lstm-2-layers-bidirectional-batch-first", "gru-2-layers-bidirectional", "rnn-batch-first"],
)
def test_counter_counts_recurrent_layers(kind, layers, bidirectional, batch_first):
    # every weight matrix once per time step and stream (the LSTM's fused CPU kernel included)
    rnn = getattr(nn, kind)(6, 10, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    steps, streams = 7, 3
    x = torch.randn((streams, steps, 6) if batch_first else (steps, streams, 6))
    with C.MacCounter() as counter, torch.no_grad():
        rnn(x)
    expected = steps * streams * sum(p.numel() for name, p in rnn.named_parameters() if name.startswith("weight"))
    assert counter.macs == expected, f"{kind}: counted {counter.macs}, expected {expected}"


def test_counter_real_and_dense():
    conv = soi.STMCConv2d(3, 4, (2, 5), stride=(1, 2), padding=2, frame_size=(17,)).double()
    x = torch.randn(1, 3, 4, 17, dtype=torch.float64)
    state = conv.init_state(1)
    with C.MacCounter() as real, torch.no_grad():
        conv.step(x, state)
    with C.MacCounter(dense=True) as dense, torch.no_grad():
        conv.step(x, state)
    with FlopCounterMode(display=False) as torch_count, torch.no_grad():
        conv.step(x, state)
    # dense = torch's own formula (every output position x the whole kernel)
    assert dense.macs == torch_count.get_total_flops() // 2
    # real: frequency taps of 9 outputs over 17 bins with padding 2
    taps = sum(1 for o in range(9) for i in range(5) if 0 <= 2 * o - 2 + i < 17)
    assert real.macs == 4 * 4 * 3 * 2 * taps < dense.macs


# ==================================================================================================
# The paper-like U-Net
# ==================================================================================================


def level_shares(report):
    shares = defaultdict(float)
    for w in report.works:
        level = int(w.path.split(".")[1]) + 1  # encoders.<k-1>..., decoders.<k-1>...
        shares[level] += w.macs / w.clock.period
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()}


def test_paper_like_unet_is_close_to_the_paper(paper_reports):
    """Within 4 percentage points of every retained / precomputed figure of tables 1 and 2, and the
    STMC total within 2 % of the paper's 1819.2 MMAC/s (the paper does not give its channel counts)."""
    stmc = paper_reports["STMC"]
    assert abs(stmc.mmac_per_s - 1819.2) / 1819.2 < 0.02, f"STMC {stmc.mmac_per_s:.1f} MMAC/s"
    for pattern, (retained, _, precomputed) in PAPER_TABLES.items():
        r = paper_reports[pattern]
        assert abs(r.retained_percent - retained) <= 4.0, f"{pattern}: retained {r.retained_percent:.1f} vs paper {retained}"
        if precomputed is not None:
            assert abs(r.precomputed_percent - precomputed) <= 4.0, (
                f"{pattern}: precomputed {r.precomputed_percent:.1f} vs paper {precomputed}"
            )


def test_retained_and_precomputed_follow_the_level_shares(paper_reports):
    a = level_shares(paper_reports["STMC"])

    def below(k):  # share of the levels < k
        return sum(a[i] for i in range(1, k))

    for k in (2, 5, 7):
        want = 100 * (below(k) + (1 - below(k)) / 2)
        assert paper_reports[f"S-CC {k}"].retained_percent == pytest.approx(want), f"S-CC {k}"
        assert paper_reports[f"SS-CC {k}"].precomputed_percent == pytest.approx(100 * (1 - below(k))), f"SS-CC {k}"
    for lo, hi in ((1, 3), (2, 5), (6, 7)):
        want = 100 * (below(lo) + (below(hi) - below(lo)) / 2 + (1 - below(hi)) / 4)
        assert paper_reports[f"2xS-CC {lo} {hi}"].retained_percent == pytest.approx(want), f"2xS-CC {lo} {hi}"
    # SS-CC a b: the pair at a halves levels >= a; the shift at b precomputes levels >= b
    assert paper_reports["SS-CC 1 3"].precomputed_percent == pytest.approx(100 * (1 - below(3)))


def test_pp_lowers_the_average_fp_lowers_the_peak(paper_reports):
    stmc = paper_reports["STMC"]
    assert stmc.peak_mmac_per_s == pytest.approx(stmc.mmac_per_s) and stmc.precomputed_percent == 0
    for p in ("S-CC 2", "2xS-CC 1 3"):
        r = paper_reports[p]
        assert r.mmac_per_s < stmc.mmac_per_s and r.peak_mmac_per_s == pytest.approx(stmc.mmac_per_s), p
    for p in ("SS-CC 2", "SS-CC 1 3", "SS-CC 6 7"):
        r = paper_reports[p]
        assert r.peak_mmac_per_s < stmc.peak_mmac_per_s and r.precomputed_percent > 0, p
    for p in ("Predictive 1", "Predictive 2"):
        r = paper_reports[p]
        assert r.precomputed_percent == 100 and r.peak_macs == 0 and r.retained_percent == 100, p


def test_retained_is_against_the_stmc_pattern():
    for pattern in ("S-CC 2", "SS-CC 1 2", "2xS-CC 1 3"):
        for up in ("duplicate", "transposed"):
            model = UNet(TINY, pattern, upsampler=up)
            ref = C.cost(model.baseline())
            r = C.cost(model)
            assert r.retained_percent == pytest.approx(100 * r.macs_per_frame / ref.macs_per_frame), f"{pattern} {up}"


def test_state_bytes():
    # STMC: one past frame per layer (time kernel 2) of its input: enc 2x17, 3x9, 4x5; dec 4x3, 8x5, 6x9
    floats = 2 * 17 + 3 * 9 + 4 * 5 + 4 * 3 + 8 * 5 + 6 * 9
    assert C.state_bytes(UNet(TINY, "STMC")) == 4 * floats
    assert C.state_bytes(UNet(TINY, "STMC"), torch.float64) == 8 * floats
    # S-CC 2 with duplication also holds the last element of decoder 2 (3 channels x 9 bins)
    assert C.state_bytes(UNet(TINY, "S-CC 2")) == 4 * (floats + 3 * 9)
    assert C.cost(UNet(TINY, "S-CC 2")).state_bytes == 4 * (floats + 3 * 9)


def test_exact_strided_memory_grows_like_s_to_the_n():
    c = UNetConfig(freq_bins=65, channels=(4, 4, 4, 4, 4), kernel=(2, 3))
    deep = {}
    for pattern in ("S-CC 4", "2xS-CC 3 4", "3xS-CC 2 3 4"):
        soi_b, stmc_b = C.state_bytes(UNet(c, pattern)), C.state_bytes(UNet(c, pattern, strided_mode="stmc"))
        deep[pattern] = stmc_b - soi_b
        assert C.cost(UNet(c, pattern, strided_mode="stmc")).retained_percent == pytest.approx(100.0)
    assert deep["S-CC 4"] < deep["2xS-CC 3 4"] < deep["3xS-CC 2 3 4"], f"extra state of exact mode {deep}"


def test_soi_cost_is_callable_and_reports_the_json_keys():
    r = soi.cost(UNet(TINY, "SS-CC 2"), frame_rate=100.0)
    assert isinstance(r, C.CostReport) and r.frame_rate == 100.0
    assert set(r.as_dict()) == {"pattern", "mmac_per_s", "retained_percent", "peak_mmac_per_s", "precomputed_percent", "state_bytes"}
    assert r.mmac_per_s == pytest.approx(r.macs_per_frame * 100 / 1e6)
    dense = soi.cost(UNet(TINY, "SS-CC 2"), dense=True)
    assert dense.macs_per_frame > r.macs_per_frame


def test_small_preset_is_light():
    r = C.cost(UNet(UNetConfig.preset("small"), "STMC"))
    assert r.mmac_per_s < 0.1 * C.cost(UNet(UNetConfig.preset("paper"), "STMC")).mmac_per_s, f"the small config costs {r.mmac_per_s:.1f} MMAC/s"


# ==================================================================================================
# soi cost
# ==================================================================================================


def test_cli_json(capsys, tmp_path):
    path = tmp_path / "unet.json"
    TINY.to_json(path)
    assert main(["cost", "--config", str(path), "--pattern", "STMC", "--pattern", "S-CC 2", "--frame-rate", "100", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["pattern"] for r in rows] == ["STMC", "S-CC 2"]
    for row in rows:
        assert set(row) == {"pattern", "mmac_per_s", "retained_percent", "peak_mmac_per_s", "precomputed_percent", "state_bytes"}
    assert rows[0]["retained_percent"] == 100.0 and rows[1]["retained_percent"] < 100.0
    assert rows[0]["mmac_per_s"] == pytest.approx(C.cost(UNet(TINY, "STMC"), 100.0).mmac_per_s, abs=1e-3)


def test_cli_markdown_default_config(capsys):
    assert main(["cost", "--pattern", "STMC", "--pattern", "SS-CC 1 3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| pattern | MMAC/s | retained % | peak MMAC/s | precomputed % | state KiB |"
    assert lines[2].startswith("| STMC | 1792.5 | 100.0 |") and lines[3].startswith("| SS-CC 1 3 | ")


@pytest.mark.parametrize("pattern", ["S-CC 9", "Bogus"])
def test_cli_bad_pattern(capsys, pattern):
    assert main(["cost", "--config", "small", "--pattern", pattern]) == 2
    err = capsys.readouterr().err
    assert "soi cost: error" in err and "'SS-CC a b'" in err and "levels 1..7" in err, err


def test_strided_look_ahead_layers_execute_the_analytic_macs_per_step():
    net = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(6, 6, 5, stride=2, padding=2), nn.Conv1d(6, 3, 3, padding=1),
    ).double().eval()  # fmt: skip
    model = soi.convert(net)
    x = torch.randn(1, 2, 24, dtype=torch.float64)
    executed = C.measure_steps(model, x, chunk=1, prepare=False)
    works = C.analyze(model, (2,))
    analytic = C.schedule(works, len(executed))
    assert [s.step for s in executed] == [s.step for s in analytic], (
        [s.step for s in executed],
        [s.step for s in analytic],
    )


def test_cli_video_models_in_gmac_per_s(capsys):
    """``--model resnet10-tiny``: STMC and SOI at 24 frames/s in GMAC/s, the JSON rows the analytic cost's."""
    from soi.models.resnet3d import resnet10, streaming_resnet3d

    assert main(["cost", "--model", "resnet10-tiny", "--resolution", "32", "--pattern", "STMC", "--pattern", "SOI", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["pattern"] for r in rows] == ["STMC", "SOI"]
    want = C.cost(streaming_resnet3d(resnet10("tiny").eval(), "STMC", (32, 32)), frame_rate=24.0).mmac_per_s
    assert rows[0]["gmac_per_s"] == pytest.approx(want / 1e3, abs=1e-3) and rows[1]["retained_percent"] < 95.0
    assert main(["cost", "--model", "resnet10-tiny", "--resolution", "32"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| pattern | GMAC/s | retained % | peak GMAC/s | state KiB |" and len(lines) == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "movinet-a0", "--pattern", "S-CC 2"], "--model movinet-a0: patterns are STMC, SOI; got 'S-CC 2'"),
        (["--resolution", "64"], "--resolution is a video model's frame size"),
    ],
    ids=["pattern", "resolution-without-video"],
)
def test_cli_video_refusals(capsys, argv, message):
    assert main(["cost", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
