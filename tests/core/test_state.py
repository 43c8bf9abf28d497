"""The protocol: streaming() context, reset(mask), states outside state_dict, and bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import soi
from soi.testing import stream


def _model(lookahead: int = 0, stride: int = 1) -> soi.Sequential:
    torch.manual_seed(0)
    return soi.Sequential(
        soi.STMCConv2d(2, 4, (3, 3), padding=1, lookahead=lookahead, frame_size=(6,)),
        nn.ELU(),
        soi.STMCConv2d(4, 3, (2, 3), padding=1, stride=(stride, 1), frame_size=(6,)),
    ).double()


def test_streaming_context_holds_state_and_equals_offline():
    model = _model()
    x = torch.randn(2, 2, 10, 6, dtype=torch.float64)
    with model.streaming(2):
        assert model.is_streaming
        parts = [model(x[:, :, i : i + 3]) for i in range(0, 10, 3)]
    assert not model.is_streaming
    assert (torch.cat(parts, 2) - model(x)).abs().max() <= 1e-12
    assert "history" not in str(list(model.state_dict()))


def test_streaming_context_with_lookahead_finish():
    model = _model(lookahead=2)
    x = torch.randn(1, 2, 8, 6, dtype=torch.float64)
    with model.streaming(1):
        parts = [model(x[:, :, i : i + 1]) for i in range(8)]
        parts.append(model.finish())
    assert sum(p.shape[2] for p in parts) == 8
    assert (torch.cat(parts, 2) - model(x)).abs().max() <= 1e-12


def test_partial_reset_restarts_only_masked_streams():
    model = _model()
    g = torch.Generator().manual_seed(5)
    first = torch.randn(3, 2, 7, 6, generator=g, dtype=torch.float64)
    second = torch.randn(3, 2, 5, 6, generator=g, dtype=torch.float64)
    mask = torch.tensor([False, True, False])
    with model.streaming(3):
        model(first)
        model.reset(mask)
        after = model(second)
    continued = model(torch.cat([first, second], dim=2))[:, :, 7:]
    fresh = model(second)
    assert (after[mask] - fresh[mask]).abs().max() <= 1e-12, "reset stream must start from zero history"
    assert (after[~mask] - continued[~mask]).abs().max() <= 1e-12, "other streams must continue"


def test_partial_reset_mid_cycle_is_refused():
    model = _model(stride=2)
    with model.streaming(2):
        model(torch.zeros(2, 2, 3, 6, dtype=torch.float64))  # phase 1 of 2
        with pytest.raises(ValueError, match="start of its cycle"):
            model.reset(torch.tensor([True, False]))
        model(torch.zeros(2, 2, 1, 6, dtype=torch.float64))  # back at phase 0
        model.reset(torch.tensor([True, False]))
        model.reset()


def test_reset_mask_validation():
    model = _model()
    with model.streaming(2):
        with pytest.raises(ValueError, match=r"bool tensor of shape \(2,\)"):
            model.reset(torch.tensor([1, 0]))
    with pytest.raises(RuntimeError, match="only valid inside"):
        model.reset()


@pytest.mark.parametrize(
    "make_input,make_state,error,match",
    [
        pytest.param(lambda: torch.zeros(2, 2, 4), None, ValueError, "expected a 4-d input", id="wrong-rank"),
        pytest.param(lambda: torch.zeros(2, 5, 4, 6), None, ValueError, "expected 2 channels, got 5", id="wrong-channels"),
        pytest.param(lambda: torch.zeros(2, 2, 4, 7), None, ValueError, r"expected non-time size \(6,\), got \(7,\)", id="wrong-frame-size"),
        pytest.param(lambda: torch.zeros(3, 2, 4, 6), None, ValueError, "holds 2 streams but the input has batch size 3", id="wrong-batch"),
        pytest.param(lambda: torch.zeros(2, 2, 4, 6), "other", ValueError, "made by another module", id="foreign-state"),
        pytest.param(lambda: torch.zeros(2, 2, 4, 6, dtype=torch.float32), None, ValueError, "float64 on cpu but the input is torch.float32", id="wrong-dtype"),
        pytest.param(lambda: torch.zeros(2, 2, 4, 6), "meta", ValueError, "on meta but the input", id="wrong-device"),
        pytest.param(lambda: torch.zeros(2, 2, 4, 6), "junk", TypeError, "expected a soi State", id="not-a-state"),
    ],
)
def test_bad_inputs_are_named(make_input, make_state, error, match):
    model = _model()
    layer = model[0]
    x = make_input()
    if x.dtype == torch.float32 and make_state is None:
        state = layer.init_state(2, dtype=torch.float64)
    elif make_state == "other":
        state = _model()[0].init_state(2, dtype=torch.float64)
    elif make_state == "meta":
        state = layer.init_state(2, device="meta", dtype=torch.float32)
    elif make_state == "junk":
        state = {"history": None}
    else:
        state = layer.init_state(2, dtype=x.dtype)
    with pytest.raises(error, match=match):
        layer.step(x, state)


def test_lazily_sized_state_checks_later_chunks():
    conv = soi.STMCConv2d(2, 2, (3, 3), padding=1)
    state = conv.init_state(1)
    assert state.history is None
    _, state = conv.step(torch.zeros(1, 2, 2, 6), state)
    with pytest.raises(ValueError, match=r"expected non-time size \(6,\), got \(5,\)"):
        conv.step(torch.zeros(1, 2, 1, 5), state)


def test_bad_construction():
    with pytest.raises(ValueError, match="lookahead must be between 0 and"):
        soi.STMCConv1d(1, 1, 3, lookahead=3)
    with pytest.raises(ValueError, match="kernel_size: expected an int or 2 values"):
        soi.STMCConv2d(1, 1, (3, 3, 3))
    with pytest.raises(ValueError, match="stride\\[0\\] must be >= 1"):
        soi.STMCConvTranspose1d(1, 1, 3, stride=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        soi.STMCConv1d(1, 1, 3).init_state(0)


def test_state_tensors_round_trip():
    model = _model()
    state = model.init_state(2, dtype=torch.float64)
    named = soi.state_tensors(state)
    assert [n for n, _ in named] == ["children.0.history", "children.2.history"]
    rebuilt = soi.replace_state_tensors(state, [t + 1 for _, t in named])
    assert torch.equal(soi.state_tensors(rebuilt)[0][1], named[0][1] + 1)
    assert stream(model, torch.zeros(2, 2, 3, 6, dtype=torch.float64), [3]).shape == (2, 3, 3, 6)


def test_partial_reset_of_a_fully_predictive_model():
    from soi.models import UNet, UNetConfig

    torch.manual_seed(3)
    config = UNetConfig(freq_bins=17, in_channels=2, out_channels=2, channels=(4, 4, 4), kernel=(2, 3), freq_stride=2)
    model = UNet(config, "SS-CC 2").double().eval()
    g = torch.Generator().manual_seed(1)
    first = torch.randn(2, 2, 4, 17, generator=g, dtype=torch.float64)
    second = torch.randn(2, 2, 6, 17, generator=g, dtype=torch.float64)
    mask = torch.tensor([True, False])
    with model.streaming(2):
        for t in range(4):  # one frame at a time: the deferred frame is pending after each step
            model(first[:, :, t : t + 1])
        model.reset(mask)
        after = torch.cat([model(second[:, :, t : t + 1]) for t in range(6)], dim=2)
    assert (after[mask] - model(second)[mask]).abs().max() <= 1e-12
    continued = model(torch.cat([first, second], dim=2))[:, :, 4:]
    assert (after[~mask] - continued[~mask]).abs().max() <= 1e-12


@pytest.mark.parametrize("pattern", ["STMC", "S-CC 2", "SS-CC 5", "2xS-CC 2 5"])
def test_state_layout_equals_the_generic_walk(pattern):
    """StateLayout (the streamers' precomputed flatten / rebuild) gives what state_tensors and
    replace_state_tensors give, on every phase of a U-Net's schedule."""
    from soi.core.state import StateLayout, schedule_key
    from soi.models.unet import UNet, UNetConfig

    model = UNet(UNetConfig.preset("small"), pattern=pattern).eval()
    state = model.init_state(1)
    x = torch.randn(1, 2, 1, 513)
    for frame in range(12):
        layout = StateLayout(state)
        named = soi.state_tensors(state)
        assert layout.names == [n for n, _ in named], f"{pattern}, frame {frame}"
        got = layout.tensors(state)
        assert len(got) == len(named) and all(a is b for a, (_, b) in zip(got, named)), f"{pattern}, frame {frame}"
        new = [t + 1 for t in got]
        a, b = layout.rebuild(new), soi.replace_state_tensors(state, new)
        assert schedule_key(a) == schedule_key(b), f"{pattern}, frame {frame}"
        assert all(s is t for (_, s), (_, t) in zip(soi.state_tensors(a), soi.state_tensors(b))), f"{pattern}, frame {frame}"
        with torch.no_grad():
            _, state = model.step(x, state)
    with pytest.raises(ValueError, match=f"{len(named)} tensors expected, got 1"):
        layout.rebuild(got[:1])
