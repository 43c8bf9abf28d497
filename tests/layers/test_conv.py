"""STMC convolution and tSTMC: streaming == offline == torch.nn with explicit padding, in float64."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import soi
from soi.testing import assert_streams_like_offline, split_points, stream

T = 11
CHUNKS = (1, 2, 3, 7, "whole", "random")


def _cases():
    for dims, kt, dt, lookahead, (rest_stride, rest_pad), ts in itertools.product(
        (1, 2, 3), (1, 2, 3), (1, 2), ("causal", "one", "max"), ((1, 0), (2, 1)), (1, 2)
    ):
        history = (kt - 1) * dt
        f = {"causal": 0, "one": 1, "max": history}[lookahead]
        if f > history or (dims == 1 and (rest_stride, rest_pad) != (1, 0)):
            continue
        if lookahead == "one" and history <= 1:
            continue  # same case as "max"
        yield pytest.param(
            dims, kt, dt, f, rest_stride, rest_pad, ts,
            id=f"{dims}d-k{kt}-d{dt}-la{f}-s{ts}-rest_s{rest_stride}p{rest_pad}",
        )  # fmt: skip


def _input(dims: int, channels: int = 3, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(dims)
    return torch.randn(batch, channels, T, *([6] * (dims - 1)), generator=g, dtype=torch.float64)


def _time_pad(x: torch.Tensor, left: int, right: int, value: float = 0.0) -> torch.Tensor:
    dims = x.dim() - 2
    return F.pad(x, [0, 0] * (dims - 1) + [left, right], value=value)


@pytest.mark.parametrize("dims,kt,dt,f,rest_stride,rest_pad,ts", _cases())
def test_conv_streaming_equals_offline_equals_torch(dims, kt, dt, f, rest_stride, rest_pad, ts):
    case = f"{dims}d k={kt} d={dt} lookahead={f} time stride={ts} rest stride={rest_stride} pad={rest_pad}"
    k = (kt,) + (3,) * (dims - 1)
    conv = soi.STMCConvNd(
        dims, 3, 4, k, stride=(ts,) + (rest_stride,) * (dims - 1), padding=rest_pad,
        dilation=(dt,) + (1,) * (dims - 1), lookahead=f, dtype=torch.float64,
    )  # fmt: skip
    x = _input(dims)
    assert_streams_like_offline(conv, x, CHUNKS, case=case)

    ref = getattr(nn, f"Conv{dims}d")(3, 4, k, stride=conv.conv_stride, padding=(0,) + conv.padding, dilation=conv.dilation).double()
    ref.load_state_dict(conv.state_dict())  # same names and shapes as torch.nn
    expected = ref(_time_pad(x, (kt - 1) * dt - f, f))
    got = conv(x)
    assert got.shape == expected.shape, f"{case}: {tuple(got.shape)} vs torch {tuple(expected.shape)}"
    err = (got - expected).abs().max().item()
    assert err <= 1e-10, f"{case}: offline differs from torch.nn.Conv{dims}d by {err:.3e}"
    assert conv.delay == f and conv.stride == ts and conv.receptive_field == (kt - 1) * dt + 1


@pytest.mark.parametrize("dims", (1, 2, 3))
@pytest.mark.parametrize("kt,dt,f", [(1, 1, 0), (3, 1, 0), (3, 2, 0), (3, 1, 1), (4, 1, 3), (3, 2, 2)], ids=lambda v: str(v))
def test_conv_transpose_streaming_equals_offline_equals_torch(dims, kt, dt, f):
    case = f"tSTMC {dims}d k={kt} d={dt} lookahead={f}"
    k = (kt,) + (4,) * (dims - 1)
    rest = (2,) * (dims - 1)
    layer = soi.STMCConvTransposeNd(
        dims, 3, 4, k, stride=(1, *rest), padding=(1,) * (dims - 1), output_padding=(1,) * (dims - 1),
        dilation=(dt,) + (1,) * (dims - 1), lookahead=f, dtype=torch.float64,
    )  # fmt: skip
    x = _input(dims)
    assert_streams_like_offline(layer, x, CHUNKS, case=case)
    ref = getattr(nn, f"ConvTranspose{dims}d")(
        3, 4, k, stride=(1, *rest), padding=(0,) + (1,) * (dims - 1), output_padding=(0,) + (1,) * (dims - 1),
        dilation=(dt,) + (1,) * (dims - 1),
    ).double()  # fmt: skip
    ref.load_state_dict(layer.state_dict())
    # Output t sees input up to t + lookahead; the rest of torch's T + (k-1)*d frames is the
    # anti-causal tail that tSTMC never computes.
    expected = ref(x)[:, :, f : f + T]
    got = layer(x)
    assert got.shape == expected.shape, f"{case}: {tuple(got.shape)} vs {tuple(expected.shape)}"
    err = (got - expected).abs().max().item()
    assert err <= 1e-10, f"{case}: differs from torch.nn.ConvTranspose{dims}d by {err:.3e}"


def test_weights_load_both_ways():
    conv = soi.STMCConv2d(2, 5, (3, 3), padding=1, groups=1)
    ref = nn.Conv2d(2, 5, (3, 3))
    ref.load_state_dict(conv.state_dict())
    conv.load_state_dict(ref.state_dict())
    assert set(conv.state_dict()) == {"weight", "bias"}
    t = soi.STMCConvTranspose1d(4, 6, 3, groups=2, bias=False)
    assert t.weight.shape == nn.ConvTranspose1d(4, 6, 3, groups=2, bias=False).weight.shape


@pytest.mark.parametrize("dims", (1, 2, 3))
def test_causality_prefix_output_never_changes(dims):
    conv = soi.Sequential(
        soi.STMCConvNd(dims, 3, 4, 3, padding=1, dilation=(2,) + (1,) * (dims - 1), dtype=torch.float64),
        nn.ELU(),
        soi.STMCConvNd(dims, 4, 2, (3,) * dims, stride=(2,) + (1,) * (dims - 1), padding=1, dtype=torch.float64),
    )
    x = _input(dims)
    full = conv(x)
    for t in range(1, T + 1):
        changed = x.clone()
        changed[:, :, t:] = torch.randn_like(changed[:, :, t:])
        prefix = stream(conv, x[:, :, :t], [t])
        n = prefix.shape[2]
        assert n == (t + 1) // 2, f"{dims}d: {t} frames should give ceil(t/2) outputs, got {n}"
        assert torch.equal(conv(changed)[:, :, :n], full[:, :, :n]), f"{dims}d: output before frame {t} depends on later input"
        assert (prefix - full[:, :, :n]).abs().max() <= 1e-12


def test_lookahead_output_waits_for_future_frames():
    conv = soi.STMCConv1d(1, 1, 5, lookahead=2, dtype=torch.float64)
    x = _input(1, channels=1)
    state = conv.init_state(2, dtype=torch.float64)
    y, state = conv.step(x[:, :, :4], state)
    assert y.shape[2] == 2, "4 frames with 2 of look-ahead give 2 outputs"
    tail, _ = conv.flush(state)
    assert tail.shape[2] == 2


def test_frame_size_builds_full_state_and_zero_frames_do_nothing():
    conv = soi.STMCConv2d(2, 3, (3, 3), padding=1, frame_size=(8,), dtype=torch.float64)
    state = conv.init_state(4, dtype=torch.float64)
    assert state.history.shape == (4, 2, 2, 8)
    y, new = conv.step(torch.zeros(4, 2, 0, 8, dtype=torch.float64), state)
    assert y.shape == (4, 3, 0, 8) and torch.equal(new.history, state.history)


def test_chunking_points_cover_sequence():
    assert split_points(11, 3) == [3, 3, 3, 2]
    assert sum(split_points(11, "random")) == 11
