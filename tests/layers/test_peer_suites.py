"""The cases of two peers' streaming test suites, built as those suites build them, as plain torch
layers/models, converted with soi.convert (as they are: their padding kept) and streamed frame by frame
and in random chunks: equal to the torch module offline within 1e-10 in float64.

Origins (read, not copied): continual-inference (github.com/LukasHedegaard/continual-inference)
tests/continual/test_conv.py, test_pool.py, test_container.py; cached_conv
(github.com/acids-ircam/cached_conv) cached_conv/test_conv.py, test_conv_t.py, test_sequential.py
(its ``get_padding(k, s)``: ``p = k``, ``((p - 1) // 2, p // 2)`` frames, written here as a
``ConstantPad1d`` before the convolution, as its ``Conv1d.forward`` pads). continual-inference's
test_onnx.py cases are not here yet.

A module that pools over the whole clip (adaptive pooling to one frame) streams a causal cumulative
pool: its last frame is compared with torch. Cases soi refuses are ``xfail(strict=True)`` with the
reason its ConversionError gives, so the table of what converts stays honest."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import soi
from soi.testing import assert_close, stream

DT = torch.float64


def _pad_conv(cin, cout, k, s=1):
    """cached_conv's Conv1d with ``padding=get_padding(k, s)``: centered padding, then a plain conv."""
    p = k
    return nn.Sequential(nn.ConstantPad1d(((p - 1) // 2, p // 2), 0.0), nn.Conv1d(cin, cout, k, stride=s))


class Residual(nn.Module):
    """continual-inference test_container.py test_residual: ``x + conv(x)``."""

    def __init__(self, conv: nn.Module, crop: int = 0) -> None:
        super().__init__()
        self.conv, self.crop = conv, crop

    def forward(self, x):
        return self.conv(x) + (x[:, :, self.crop : x.shape[2] - self.crop] if self.crop else x)


def _ci_sequential():
    return nn.Sequential(
        nn.Conv3d(1, 1, (5, 3, 3), padding=(0, 1, 1)), nn.Conv3d(1, 1, (3, 3, 3), padding=(0, 1, 1)), nn.MaxPool3d((1, 2, 2))
    )


def _cc_sequential(kernels, strides, dim=1):
    layers = []
    for k, s in zip(kernels, strides):
        layers += [*_pad_conv(dim, dim, k, s)]
    return nn.Sequential(*layers)


# (id, builder, input shape, global pool?) ; ids name the suite and the test
CASES = [
    # continual-inference tests/continual/test_conv.py
    ("ci-conv::test_Conv1d", lambda: nn.Conv1d(2, 1, 5), (1, 2, 10), False),
    ("ci-conv::test_Conv1d_stride", lambda: nn.Conv1d(1, 1, 3, bias=False, padding=1, stride=2), (1, 1, 5), False),
    ("ci-conv::test_Conv2d", lambda: nn.Conv2d(2, 1, (3, 2)), (1, 2, 5, 3), False),
    ("ci-conv::test_Conv2d_stride", lambda: nn.Conv2d(2, 1, (3, 2), stride=2), (1, 2, 5, 3), False),
    ("ci-conv::test_basic_forward", lambda: nn.Conv3d(1, 1, (3, 3, 3)), (1, 1, 4, 3, 3), False),
    ("ci-conv::test_forward_long_kernel", lambda: nn.Conv3d(1, 1, (3, 3, 3)), (1, 1, 8, 3, 3), False),
    ("ci-conv::test_from_conv3d_bad_shape", lambda: nn.Conv3d(1, 1, (3, 3, 3), dilation=2, padding=1, stride=2), (1, 1, 8, 3, 3), False),
    ("ci-conv::test_complex", lambda: nn.Conv3d(5, 5, (3, 3, 3), bias=False, dilation=(1, 2, 2), stride=(1, 2, 2), padding=1), (1, 5, 4, 8, 8), False),
    ("ci-conv::test_forward_continuation", lambda: nn.Conv3d(1, 1, (3, 3, 3), padding=1), (1, 1, 8, 3, 3), False),
    ("ci-conv::test_stacked_impulse_response", lambda: nn.Sequential(nn.Conv3d(1, 1, (5, 3, 3), padding=(0, 1, 1)), nn.Conv3d(1, 1, (3, 3, 3), padding=(0, 1, 1)), nn.Conv3d(1, 1, (3, 3, 3), padding=(0, 1, 1))), (1, 1, 12, 3, 3), False),
    # continual-inference tests/continual/test_pool.py
    ("ci-pool::test_AvgPool1d_padded", lambda: nn.AvgPool1d(3, stride=1, padding=1), (1, 1, 5), False),
    ("ci-pool::test_AvgPool2d_stride", lambda: nn.AvgPool2d(3, stride=(2, 1)), (1, 1, 7, 3), False),
    ("ci-pool::test_AvgPool3d", lambda: nn.AvgPool3d((2, 2, 2)), (1, 2, 4, 4, 4), False),
    ("ci-pool::test_MaxPool1d_dilation", lambda: nn.MaxPool1d(3, dilation=2), (1, 1, 7), False),
    ("ci-pool::test_MaxPool2d", lambda: nn.MaxPool2d(3), (1, 1, 7, 3), False),
    ("ci-pool::test_MaxPool3d", lambda: nn.MaxPool3d(2), (1, 2, 8, 4, 4), False),
    ("ci-pool::test_AdaptiveAvgPool2d", lambda: nn.AdaptiveAvgPool2d((1, 1)), (1, 1, 5, 3), True),
    ("ci-pool::test_AdaptiveAvgPool3d", lambda: nn.AdaptiveAvgPool3d((1, 1, 1)), (1, 2, 4, 4, 4), True),
    ("ci-pool::test_AdaptiveMaxPool2d", lambda: nn.AdaptiveMaxPool2d((1, 1)), (1, 1, 5, 3), True),
    ("ci-pool::test_AdaptiveMaxPool3d", lambda: nn.AdaptiveMaxPool3d((1, 1, 1)), (1, 2, 4, 4, 4), True),
    ("ci-pool::test_MaxPool1d_k2s2d1", lambda: nn.MaxPool1d(2, stride=2, dilation=1), (1, 1, 8), False),
    ("ci-pool::test_MaxPool1d_k2s1d2", lambda: nn.MaxPool1d(2, stride=1, dilation=2), (1, 1, 8), False),
    ("ci-pool::test_MaxPool1d_k2s2d2", lambda: nn.MaxPool1d(2, stride=2, dilation=2), (1, 1, 8), False),
    # continual-inference tests/continual/test_container.py
    ("ci-container::test_sequential", _ci_sequential, (1, 1, 10, 3, 3), False),
    ("ci-container::test_residual", lambda: Residual(nn.Conv1d(1, 1, 3, padding=1, bias=False)), (1, 1, 8), False),
    ("ci-container::test_residual_shrink_centered", lambda: Residual(nn.Conv1d(1, 1, 3, padding=0, bias=False), crop=1), (1, 1, 8), False),
    # cached_conv cached_conv/test_conv.py
    ("cc-conv::k3", lambda: _pad_conv(16, 16, 3), (1, 16, 64), False),
    ("cc-conv::k5", lambda: _pad_conv(16, 16, 5), (1, 16, 64), False),
    ("cc-conv::k3s2", lambda: _pad_conv(16, 16, 3, 2), (1, 16, 64), False),
    ("cc-conv::k7s2", lambda: _pad_conv(16, 16, 7, 2), (1, 16, 64), False),
    ("cc-conv::k7s4", lambda: _pad_conv(16, 16, 7, 4), (1, 16, 64), False),
    # cached_conv cached_conv/test_conv_t.py
    ("cc-conv_t::k4s2p1", lambda: nn.ConvTranspose1d(16, 16, 4, stride=2, padding=1), (1, 16, 32), False),
    ("cc-conv_t::k8s4p2", lambda: nn.ConvTranspose1d(16, 16, 8, stride=4, padding=2), (1, 16, 32), False),
    ("cc-conv_t::k12s4p4", lambda: nn.ConvTranspose1d(16, 16, 12, stride=4, padding=4), (1, 16, 32), False),
    # cached_conv cached_conv/test_sequential.py (dim 1, its five kernel/stride lists)
    ("cc-sequential::k3579-s1111", lambda: _cc_sequential([3, 5, 7, 9], [1, 1, 1, 1]), (1, 1, 64), False),
    ("cc-sequential::k3579-s2111", lambda: _cc_sequential([3, 5, 7, 9], [2, 1, 1, 1]), (1, 1, 64), False),
    ("cc-sequential::k3579-s1211", lambda: _cc_sequential([3, 5, 7, 9], [1, 2, 1, 1]), (1, 1, 64), False),
    ("cc-sequential::k3579-s1121", lambda: _cc_sequential([3, 5, 7, 9], [1, 1, 2, 1]), (1, 1, 64), False),
    ("cc-sequential::k3333-s2121", lambda: _cc_sequential([3, 3, 3, 3], [2, 1, 2, 1]), (1, 1, 64), False),
]

# what soi refuses (the reason its ConversionError gives)
CROP = "operator.getitem: changes the sequence length (8 frames in, 6 out); a stream gives one frame per frame"
XFAIL = {
    "ci-container::test_residual_shrink_centered": CROP,
}


def _params():
    out = []
    for case_id, build, shape, pooled in CASES:
        marks = [pytest.mark.xfail(strict=True, raises=soi.ConversionError, reason=XFAIL[case_id])] if case_id in XFAIL else []
        out.append(pytest.param(build, shape, pooled, id=case_id, marks=marks))
    return out


@pytest.mark.parametrize("build, shape, pooled", _params())
def test_peer_case_streams_like_torch(build, shape, pooled):
    torch.manual_seed(0)
    net = build().to(DT).eval()
    x = torch.randn(*shape, dtype=DT)
    # a bare layer is given to soi.convert in an nn.Sequential: convert traces a bare nn.ConvNd's own
    # forward (torch.conv1d, refused as not frame-wise) instead of taking it as a layer
    model = soi.convert(net if isinstance(net, (nn.Sequential, Residual)) else nn.Sequential(net), x)
    with torch.no_grad():
        want = net(x)
        for chunk in (1, "random"):
            got = stream(model, x, chunk)
            if pooled:  # frame t: the pool over frames 0..t; the last frame is torch's over the clip
                assert_close(got[:, :, -1:], want, f"chunks {chunk!r}: last cumulative frame vs torch", atol=1e-10)
            else:
                assert_close(got, want, f"chunks {chunk!r}: streamed vs torch offline", atol=1e-10)
