"""Streaming pooling == offline == torch.nn pooling with explicit time padding (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import soi
from soi.testing import assert_streams_like_offline

T = 11
CHUNKS = (1, 2, 3, 7, "whole", "random")


def _x(dims: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(10 + dims)
    return torch.randn(2, 3, T, *([6] * (dims - 1)), generator=g, dtype=torch.float64)


@pytest.mark.parametrize("dims", (1, 2, 3))
@pytest.mark.parametrize("kind", ("avg", "max"))
@pytest.mark.parametrize("kt,ts,f", [(1, 1, 0), (2, 1, 0), (3, 1, 0), (3, 2, 0), (3, 3, 0), (3, 1, 1), (3, 1, 2)], ids=lambda v: str(v))
def test_pool_streaming_equals_offline_equals_torch(dims, kind, kt, ts, f):
    case = f"{kind}pool {dims}d k={kt} time stride={ts} lookahead={f}"
    k = (kt,) + (2,) * (dims - 1)
    s = (ts,) + (2,) * (dims - 1)
    cls = soi.STMCAvgPoolNd if kind == "avg" else soi.STMCMaxPoolNd
    pool = cls(dims, 3, k, stride=s, padding=1, lookahead=f)
    x = _x(dims)
    assert_streams_like_offline(pool, x, CHUNKS, case=case)
    # torch pads time with the layer's own fill (0 for average, -inf for max) and the rest itself.
    fill = 0.0 if kind == "avg" else float("-inf")
    padded = F.pad(x, [0, 0] * (dims - 1) + [kt - 1 - f, f], value=fill)
    torch_pool = getattr(nn, f"{kind.capitalize()}Pool{dims}d")(k, stride=s, padding=(0,) + (1,) * (dims - 1))
    expected = torch_pool(padded)
    got = pool(x)
    assert got.shape == expected.shape, f"{case}: {tuple(got.shape)} vs {tuple(expected.shape)}"
    err = (got - expected).abs().max().item()
    assert err <= 1e-12, f"{case}: differs from torch by {err:.3e}"


def test_max_pool_time_dilation():
    pool = soi.STMCMaxPool1d(3, 3, dilation=2)
    x = _x(1)
    expected = F.max_pool1d(F.pad(x, [4, 0], value=float("-inf")), 3, 1, 0, 2)
    assert torch.equal(pool(x), expected)
    assert_streams_like_offline(pool, x, CHUNKS)


def test_time_stride_defaults_to_one():
    # torch defaults stride to the kernel size; in time that would silently drop frames.
    assert soi.STMCAvgPool2d(3, (3, 2)).pool_stride == (1, 2)


@pytest.mark.parametrize("dims", (1, 2, 3))
def test_cumulative_average(dims):
    pool = soi.CumulativeAvgPool(3)
    x = _x(dims)
    y = pool(x)
    assert y.shape == (2, 3, T)
    assert (y[:, :, -1] - x.flatten(2).mean(dim=2)).abs().max() <= 1e-12
    assert (y[:, :, 4] - x[:, :, :5].flatten(2).mean(dim=2)).abs().max() <= 1e-12
    assert_streams_like_offline(pool, x, CHUNKS)
