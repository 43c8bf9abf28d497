"""SOI building blocks: upsamplers, S-CC pairs, SC / SS-CC, STMC's exact strided mode.

Everything in float64. Streaming is compared with the offline forward for chunks {1, 2, 3, 5, whole},
with and without ``prepare`` between steps; executed MACs are counted at run time.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import soi
import soi.testing
from soi.analysis.cost import MacCounter, analyze, measure_steps, schedule
from soi.scattered import (
    SC,
    SSCC,
    UPSAMPLERS,
    Duplicate,
    Interpolate,
    SCCPair,
    Shift,
    STMCStridedPair,
    TransposedUpsample,
    make_upsampler,
)

DT = torch.float64
CHUNKS = (1, 2, 3, 5, "whole")




def stream(module, x, chunk, prepare=False):
    return soi.testing.stream(module, x, chunk, prepare=prepare)


def check_close(got, want, case, atol=1e-12):
    soi.testing.assert_close(got, want, case, atol)


def check_equal(got, want, case):
    assert got.shape == want.shape, f"{case}: shape {tuple(got.shape)} != expected {tuple(want.shape)}"
    if not torch.equal(got, want):
        err = (got - want).abs().max().item()
        raise AssertionError(f"{case}: not bit-exact, max abs error {err:.3e}")


def schedule_ints(state):
    """The Python ints of a (nested) state: its static schedule."""
    if isinstance(state, tuple):
        return tuple(schedule_ints(v) for v in state)
    if isinstance(state, soi.State):
        return tuple((f, schedule_ints(getattr(state, f))) for f in state.__dataclass_fields__ if f not in ("owner", "batch_size"))
    return state if isinstance(state, int) else None


def subsample(channels, s):
    """A strided layer with no arithmetic: element j is input frame s*j (average over one frame)."""
    return soi.Sequential(soi.STMCAvgPool1d(channels, 1, stride=s))


# ==================================================================================================
# Upsamplers: the offline definition
# ==================================================================================================


def reference_upsample(name, e, s, weight=None, bias=None):
    """Independent formulas: element j sits at frame s*j; zeros before the start, the last element
    held after the end."""
    J = e.shape[2]
    T = s * J

    def el(j):
        if j < 0:
            return torch.zeros_like(e[:, :, 0])
        return e[:, :, min(j, J - 1)]

    frames = []
    for t in range(T):
        j, r = divmod(t, s)
        if name == "duplicate":
            frames.append(el(j))
        elif name == "nearest":
            frames.append(el(j) if 2 * r < s else el(j + 1))
        elif name == "linear":
            frames.append((1 - r / s) * el(j) + (r / s) * el(j + 1))
        elif name == "cubic":
            x = r / s

            def w(d, A=-0.75):  # Keys' kernel at distance d
                d = abs(d)
                if d <= 1:
                    return (A + 2) * d**3 - (A + 3) * d**2 + 1
                if d < 2:
                    return A * d**3 - 5 * A * d**2 + 8 * A * d - 4 * A
                return 0.0

            frames.append(sum(w(x - k) * el(j + k) for k in (-1, 0, 1, 2)))
        else:
            raise AssertionError(name)
    return torch.stack(frames, dim=2)


@pytest.mark.parametrize("s", [2, 3], ids=lambda s: f"s{s}")
@pytest.mark.parametrize("name", ["duplicate", "nearest", "linear", "cubic"])
def test_fixed_upsampler_offline_definition(name, s):
    torch.manual_seed(0)
    e = torch.randn(2, 3, 6, 4, dtype=DT)
    got = make_upsampler(name, s)(e)
    check_close(got, reference_upsample(name, e, s), f"{name} s={s}", atol=1e-14)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_interpolation_matches_torch_inside_the_sequence(mode):
    # Element j at position s*j: torch's align_corners=True interpolation to s*(J-1)+1 frames puts
    # output t at coordinate t/s. Away from the borders (where torch replicates) the two agree.
    s, J = 2, 7
    torch.manual_seed(0)
    e = torch.randn(1, 2, J, 5, dtype=DT)
    ours = Interpolate(s, mode)(e)
    ref = F.interpolate(e, size=(s * (J - 1) + 1, 5), mode="bilinear" if mode == "linear" else "bicubic", align_corners=True)
    lo, hi = (0, s * (J - 1)) if mode == "linear" else (s, s * (J - 2))
    check_close(ours[:, :, lo : hi + 1], ref[:, :, lo : hi + 1], f"{mode} vs torch", atol=1e-13)


@pytest.mark.parametrize("groups", [1, 2], ids=lambda g: f"groups{g}")
@pytest.mark.parametrize("elements", [1, 2], ids=lambda m: f"elements{m}")
@pytest.mark.parametrize("s", [2, 3], ids=lambda s: f"s{s}")
def test_transposed_upsample_equals_torch_conv_transpose(s, elements, groups):
    torch.manual_seed(0)
    up = TransposedUpsample(4, 6, scale=s, elements=elements, groups=groups).double()
    e = torch.randn(2, 4, 5, 3, dtype=DT)
    want = F.conv_transpose2d(e, up.weight.unsqueeze(-1), up.bias, stride=(s, 1), groups=groups)[:, :, : s * 5]
    check_close(up(e), want, f"transposed s={s} elements={elements} groups={groups}", atol=1e-13)


def test_upsampler_delays():
    expected = {"duplicate": (0, 0), "transposed": (0, 0), "nearest": (1, 1), "linear": (1, 2), "cubic": (3, 5)}
    for name, (d2, d3) in expected.items():
        got = (make_upsampler(name, 2, channels=1).delay, make_upsampler(name, 3, channels=1).delay)
        assert got == (d2, d3), f"{name}: delay for s=2,3 is {got}, expected {(d2, d3)}"


# ==================================================================================================
# S-CC alignment (DESIGN.md section 3), exact: the inner part only moves data
# ==================================================================================================


@pytest.mark.parametrize("s", [2, 3], ids=lambda s: f"s{s}")
def test_pp_and_fp_alignment(s):
    T = 11
    x = torch.arange(1.0, T + 1, dtype=DT).view(1, 1, T)
    pp = SCCPair(subsample(1, s), "duplicate")(x)[0, 0].tolist()
    fp = SSCC(subsample(1, s), "duplicate", channels=1, frame_size=())(x)[0, 0].tolist()
    assert pp == [x[0, 0, s * (t // s)].item() for t in range(T)], f"PP s={s}: output t must be element floor(t/s): {pp}"
    want_fp = [0.0] + [x[0, 0, s * ((t - 1) // s)].item() for t in range(1, T)]
    assert fp == want_fp, f"FP s={s}: output t must be element floor((t-1)/s), zeros first: {fp}"


@pytest.mark.parametrize("fp", [False, True], ids=["PP", "FP"])
@pytest.mark.parametrize("s", [2, 3], ids=lambda s: f"s{s}")
@pytest.mark.parametrize("name", UPSAMPLERS)
def test_pair_data_path_streams_bit_exactly(name, s, fp):
    """With a subsampling inner part, any rounding difference would come from the SOI code itself."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 17, 4, dtype=DT)
    inner = soi.Sequential(soi.STMCAvgPool2d(3, 1, stride=(s, 1)))
    up = make_upsampler(name, s, 3, (4,)).double()
    model = SSCC(inner, up, channels=3, frame_size=(4,)) if fp else SCCPair(inner, up)
    want = model(x)
    for chunk in CHUNKS:
        for prep in (False, True):
            check_equal(stream(model, x, chunk, prep), want, f"{name} s={s} {'FP' if fp else 'PP'} chunk={chunk} prepare={prep}")


# ==================================================================================================
# Streaming == offline with real layers
# ==================================================================================================


def small_net(kind, name, s, nested=False):
    """conv -> [skip | pair(conv stride s, ELU, [nested pair], conv)] -> conv, 1-D, 3 channels."""
    torch.manual_seed(0)
    deep: list[nn.Module] = [soi.STMCConv1d(3, 4, 3, stride=s), nn.ELU()]
    if nested:
        inner2 = soi.Sequential(soi.STMCConv1d(4, 4, 2, stride=2), nn.ELU(), soi.STMCConv1d(4, 4, 2))
        nested_cls = STMCStridedPair if kind == "stmc" else SCCPair
        deep.append(soi.Concat(nn.Identity(), nested_cls(inner2, make_upsampler("linear", 2))))
        deep.append(soi.STMCConv1d(8, 3, 2))
    else:
        deep.append(soi.STMCConv1d(4, 3, 2))
    inner = soi.Sequential(*deep)
    up = make_upsampler(name, s, 3)
    block = {"pair": lambda: SCCPair(inner, up), "sscc": lambda: SSCC(inner, up), "stmc": lambda: STMCStridedPair(inner, up)}[kind]()
    return soi.Sequential(soi.STMCConv1d(2, 3, 2), soi.Concat(nn.Identity(), block), soi.STMCConv1d(6, 2, 2)).double()


CASES = [
    (kind, name, s, nested)
    for kind in ("pair", "sscc", "stmc")
    for name in UPSAMPLERS
    for s in (2, 3)
    for nested in (False, True)
    if not (nested and s == 3)
]


@pytest.mark.parametrize(
    "kind,name,s,nested", CASES, ids=[f"{k}-{n}-s{s}{'-nested' if nest else ''}" for k, n, s, nest in CASES]
)
def test_streaming_equals_offline(kind, name, s, nested):
    model = small_net(kind, name, s, nested)
    x = torch.randn(2, 2, 19, dtype=DT)
    want = model(x)
    assert want.shape == (2, 2, 19)
    for chunk in CHUNKS:
        for prep in (False, True) if kind == "sscc" else (False,):
            check_close(stream(model, x, chunk, prep), want, f"{kind} {name} s={s} nested={nested} chunk={chunk} prepare={prep}")


def test_concat_aligns_interpolation_latency():
    s = 2
    pair = SCCPair(soi.Sequential(soi.STMCConv1d(2, 2, 2, stride=s)), "cubic").double()
    model = soi.Concat(nn.Identity(), pair)
    assert pair.delay == 3 and model.delay == 3, f"delays: pair {pair.delay}, concat {model.delay}"
    x = torch.randn(1, 2, 15, dtype=DT)
    y = model(x)
    check_equal(y[:, :2], x, "skip branch offline")
    check_close(stream(model, x, 1)[:, :2], x, "skip branch streamed", atol=0)
    # online: the first output appears once frame `delay` has arrived
    state = model.init_state(1, dtype=DT)
    counts = []
    for t in range(5):
        out, state = model.step(x[:, :, t : t + 1], state)
        counts.append(out.shape[2])
    assert counts == [0, 0, 0, 1, 1], f"frames emitted per step: {counts}"


# ==================================================================================================
# Skipped layers are not computed
# ==================================================================================================


def test_layers_behind_the_stride_run_only_on_aligned_frames():
    s = 2
    torch.manual_seed(0)
    outer = soi.STMCConv1d(2, 3, 2)
    deep1, deep2 = soi.STMCConv1d(3, 5, 3, stride=s), soi.STMCConv1d(5, 3, 2)
    model = soi.Sequential(outer, soi.Concat(nn.Identity(), SCCPair(soi.Sequential(deep1, nn.ELU(), deep2))), soi.STMCConv1d(6, 2, 2)).double()
    # by hand: MACs per output frame = C_out * C_in * k
    full_rate = 3 * 2 * 2 + 2 * 6 * 2
    deep = 5 * 3 * 3 + 3 * 5 * 2
    x = torch.randn(1, 2, 9, dtype=DT)
    got = [m.step for m in measure_steps(model, x)]
    want = [full_rate + (deep if t % s == 0 else 0) for t in range(9)]
    assert got == want, f"executed MACs per step {got}, expected {want}"
    assert schedule(analyze(model, (2,)), 9) == measure_steps(model, x), "analytic schedule != executed"


def test_fp_work_moves_to_prepare():
    torch.manual_seed(0)
    body = soi.Sequential(soi.STMCConv1d(2, 3, 2), nn.ELU(), soi.STMCConv1d(3, 2, 2))
    model = SC(body, 1, channels=2, frame_size=()).double()
    x = torch.randn(1, 2, 6, dtype=DT)
    steps = measure_steps(model, x, prepare=True)
    per_frame = 3 * 2 * 2 + 2 * 3 * 2
    assert [(m.step, m.prepare) for m in steps] == [(0, per_frame)] * 6, f"FP: {steps}"
    # without prepare, the next step does the deferred work first
    lazy = measure_steps(model, x, prepare=False)
    assert [m.step for m in lazy] == [0] + [per_frame] * 5, f"FP without prepare: {lazy}"


def test_zero_frame_steps_do_nothing():
    for kind in ("pair", "sscc", "stmc"):
        model = small_net(kind, "transposed", 2)
        state = model.init_state(2, dtype=DT)
        _, state = model.step(torch.randn(2, 2, 3, dtype=DT), state)
        with MacCounter() as c:
            y, new = model.step(torch.zeros(2, 2, 0, dtype=DT), state)
        assert y.shape == (2, 2, 0), f"{kind}: empty step gave shape {tuple(y.shape)}"
        assert c.macs == 0, f"{kind}: an empty step executed {c.macs} MACs"
        assert schedule_ints(new) == schedule_ints(state), f"{kind}: an empty step changed the schedule"


# ==================================================================================================
# SC and Shift
# ==================================================================================================


def test_shift():
    x = torch.arange(1.0, 6.0, dtype=DT).view(1, 1, 5)
    assert Shift(2)(x)[0, 0].tolist() == [0, 0, 1, 2, 3]
    check_equal(stream(Shift(2), x, 1), Shift(2)(x), "Shift streamed")


@pytest.mark.parametrize("lookahead,frames", [(0, 1), (0, 3), (1, 1), (2, 1), (1, 2)], ids=lambda v: str(v))
def test_sc_is_body_then_shift(lookahead, frames):
    torch.manual_seed(0)
    body = soi.Sequential(soi.STMCConv1d(2, 3, 3, lookahead=lookahead), nn.ELU()).double()
    model = SC(body, frames)
    assert model.delay == max(0, lookahead - frames) and model.deferrable == (frames > lookahead)
    x = torch.randn(2, 2, 13, dtype=DT)
    want = soi.Sequential(body, Shift(frames))(x)
    check_equal(model(x), want, f"SC(lookahead={lookahead}, frames={frames}) offline")
    for chunk in CHUNKS:
        for prep in (False, True):
            check_close(stream(model, x, chunk, prep), want, f"SC lookahead={lookahead} frames={frames} chunk={chunk} prepare={prep}")


# ==================================================================================================
# STMC's exact strided mode
# ==================================================================================================


def strided_levels(levels, name, bias=True):
    """The same weights as an SOI pair and as an exact-strided STMC pair: ``levels`` nested strided
    levels (stride 2), each ``conv(stride 2) -> ELU -> [skip | deeper level] -> conv``, as in a U-Net."""
    torch.manual_seed(0)
    downs = [soi.STMCConv1d(3, 3, 2, stride=2, bias=bias) for _ in range(levels)]
    outs = [soi.STMCConv1d(6 if k < levels - 1 else 3, 3, 2, bias=bias) for k in range(levels)]
    ups = []
    for _ in range(levels):
        up = make_upsampler(name, 2, 3, frame_size=())
        if isinstance(up, TransposedUpsample) and not bias:
            up.bias = None
        ups.append(up)

    def level(cls, k=0):
        parts: list[nn.Module] = [downs[k], nn.ELU()]
        if k < levels - 1:
            parts.append(soi.Concat(nn.Identity(), level(cls, k + 1)))
        parts.append(outs[k])
        return cls(soi.Sequential(*parts), ups[k]).double()

    return level(SCCPair), level(STMCStridedPair)


@pytest.mark.parametrize("name", UPSAMPLERS)
def test_exact_mode_frame_t_is_the_soi_output_with_t_on_the_grid(name):
    soi_pair, stmc_pair = strided_levels(1, name, bias=False)
    x = torch.randn(1, 3, 12, dtype=DT)
    exact = stream(stmc_pair, x, 1)
    for chunk in (3, "whole"):
        check_close(stream(stmc_pair, x, chunk), exact, f"exact {name}: chunk {chunk} vs 1")
    for t in range(x.shape[2]):
        # one zero frame in front puts an odd frame on the grid; without biases zeros in front are the
        # same as the zero history of a fresh state
        z = t % 2
        want = soi_pair(torch.cat([x.new_zeros(1, 3, z), x], dim=2))[:, :, t + z]
        check_close(exact[:, :, t], want, f"exact {name}: frame {t}")


@pytest.mark.parametrize("name", UPSAMPLERS)
@pytest.mark.parametrize("levels", [1, 2, 3], ids=lambda n: f"{n}level")
def test_exact_mode_is_one_stream_per_stride_phase(levels, name):
    """Output frames p, p+s, ... are the body run on the strided layer's outputs at those frames
    (the strided layer evaluated at every frame: torch's conv1d, stride 1, left zero padding)."""
    _, pair = strided_levels(levels, name)
    x = torch.randn(2, 3, 21, dtype=DT)
    y = pair(x)
    check_close(stream(pair, x, 3), y, f"exact {levels} levels {name}: chunk 3 vs offline")
    down = pair.down
    every_frame = F.conv1d(F.pad(x, (down.history_frames, 0)), down.weight, down.bias)
    for p in range(2):
        body_out = soi.Sequential(*pair.body)(every_frame[:, :, p::2])
        want = pair.upsampler(body_out)[:, :, ::2]  # aligned frames of the offline upsampler
        check_close(y[:, :, p::2], want, f"exact {levels} levels {name}: phase {p}")


def test_exact_mode_memory_grows_with_the_number_of_strided_levels():
    ratios = []
    for levels in (1, 2, 3):
        soi_pair, stmc_pair = strided_levels(levels, "duplicate")
        b_soi, b_stmc = soi.cost.state_bytes(soi_pair), soi.cost.state_bytes(stmc_pair)
        ratios.append(b_stmc / b_soi)
        c_soi = soi.cost(soi_pair, input_shape=(3,))
        c_stmc = soi.cost(stmc_pair, input_shape=(3,))
        assert c_stmc.macs_per_frame > c_soi.macs_per_frame, f"{levels} levels: exact mode must not save MACs"
        assert math.isclose(c_stmc.retained_percent, 100.0), f"exact mode runs everything: {c_stmc.retained_percent}"
    assert ratios[0] < ratios[1] < ratios[2], f"exact/SOI state memory ratios {ratios} must grow with the levels"


# ==================================================================================================
# Per-stream reset, errors
# ==================================================================================================


def test_reset_mask_only_at_the_start_of_a_cycle():
    model = small_net("pair", "duplicate", 2)
    x = torch.randn(2, 2, 6, dtype=DT)
    mask = torch.tensor([True, False])
    with model.streaming(2, dtype=DT):
        model(x[:, :, :1])
        with pytest.raises(ValueError, match="phase"):
            model.reset(mask)
        model(x[:, :, 1:2])
        model.reset(mask)  # phase 0 again: allowed
        y = model(x[:, :, 2:6])
    fresh = model(x[:1, :, 2:6])
    check_close(y[:1], fresh, "the reset stream restarts from a zero state")
    kept = model(x[1:, :, :6])[:, :, 2:]
    check_close(y[1:], kept, "the other stream continues")


def test_prepare_defaults_to_identity():
    conv = soi.STMCConv1d(1, 1, 2)
    state = conv.init_state(1)
    assert conv.prepare(state) is state


def test_bad_arguments():
    inner = soi.Sequential(soi.STMCConv1d(1, 1, 2, stride=2))
    with pytest.raises(ValueError, match="scale"):
        SCCPair(inner, Duplicate(3))
    with pytest.raises(ValueError, match="unknown upsampler"):
        SCCPair(inner, "bilinear")
    with pytest.raises(ValueError, match="channels"):
        make_upsampler("transposed", 2)
    with pytest.raises(ValueError, match="stride"):
        SC(inner, 1)
    with pytest.raises(TypeError, match="Sequential"):
        STMCStridedPair(soi.STMCConv1d(1, 1, 2, stride=2))
    with pytest.raises(ValueError, match="mode"):
        Interpolate(2, "quadratic")
