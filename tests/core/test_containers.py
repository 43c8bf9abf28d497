"""Containers compose timing and align branches; streaming == offline through them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import soi
from soi.testing import assert_streams_like_offline

CHUNKS = (1, 2, 3, 7, "whole", "random")


def _x(c=2, t=13, f=5):
    return torch.randn(2, c, t, f, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_sequential_composes_timing():
    net = soi.Sequential(
        soi.STMCConv1d(2, 4, 3, lookahead=1),
        nn.ReLU(),
        soi.STMCConv1d(4, 4, 3, stride=2),
        soi.STMCConv1d(4, 4, 3, dilation=2, lookahead=2),
    )
    assert net.stride == 2
    assert net.delay == 1 + 2 * 2  # look-ahead behind a stride counts in input frames
    assert net.receptive_field == 3 + (3 - 1) + 2 * 4
    assert isinstance(net[1], soi.FrameWise)


def test_concat_aligns_branches_with_different_lookahead():
    torch.manual_seed(0)
    a = soi.STMCConv2d(2, 3, (3, 3), padding=1, lookahead=2)
    b = soi.STMCConv2d(2, 2, (2, 1), lookahead=0)
    net = soi.Concat(nn.Identity(), a, b).double()
    assert net.delay == 2
    x = _x()
    y = net(x)
    # Offline, every branch sees the same frames: alignment only matters online.
    expected = torch.cat([x, a(x), b(x)], dim=1)
    assert (y - expected).abs().max() <= 1e-12
    assert_streams_like_offline(net, x, CHUNKS, case="concat with look-ahead 2/0/0")


def test_residual_and_nested_unet_like_block():
    torch.manual_seed(1)
    inner = soi.Sequential(soi.STMCConv2d(4, 4, (3, 3), padding=1), nn.BatchNorm2d(4), nn.ELU())
    block = soi.Sequential(
        soi.STMCConv2d(2, 4, (3, 3), padding=(1,), lookahead=1),
        nn.ELU(),
        soi.Residual(inner),
        soi.Concat(nn.Identity(), soi.STMCConv2d(4, 4, (2, 3), padding=1, lookahead=1)),
        soi.STMCConvTranspose2d(8, 1, (3, 3), padding=1),
    ).double().eval()
    x = _x()
    assert block.delay == 2
    assert_streams_like_offline(block, x, CHUNKS, case="residual + concat block")


def test_residual_refuses_shape_change():
    net = soi.Residual(soi.STMCConv1d(2, 3, 1)).double()
    with pytest.raises(ValueError, match="shapes must match"):
        net(torch.zeros(1, 2, 4, dtype=torch.float64))


def test_concat_refuses_mismatched_frames_at_construction():
    with pytest.raises(ValueError, match="different time strides"):
        soi.Concat(soi.STMCConv1d(2, 2, 3), soi.STMCConv1d(2, 2, 3, stride=2))


def test_linear_over_channels_and_torch_linear_refused_on_time_axis():
    lin = soi.ChannelLinear(3, 5).double()
    x = torch.randn(2, 3, 7, dtype=torch.float64)
    net = soi.Sequential(lin)
    assert torch.allclose(net(x), torch.einsum("oc,bct->bot", lin.weight, x) + lin.bias[:, None])
    with pytest.raises(ValueError, match="ChannelLinear"):
        soi.Sequential(nn.Linear(7, 7))(x)


def test_non_streaming_child_is_reported():
    net = soi.Sequential(nn.LSTM(2, 2))
    with pytest.raises(TypeError, match="soi.convert"):
        net(torch.zeros(1, 2, 3))


def test_delay_line_is_identity_offline():
    d = soi.DelayLine(3)
    x = _x()
    assert torch.equal(d(x), x)
    assert_streams_like_offline(d, x, CHUNKS)


def test_softmax_over_channels_streams_but_not_over_time():
    assert isinstance(soi.as_streaming(nn.Softmax(dim=1)), soi.FrameWise)
    with pytest.raises(TypeError, match="mixes frames"):
        soi.FrameWise(nn.Softmax(dim=2))
    _ = F  # the functional API is not wrapped: modules only
