"""The cases of two peers' streaming test suites, built as those suites build them, as plain torch
layers/models, converted with soi.convert (as they are: their padding kept) and streamed frame by frame
and in random chunks: equal to the torch module offline within 1e-10 in float64.

Origins (read, not copied): continual-inference (github.com/LukasHedegaard/continual-inference)
tests/continual/test_conv.py, test_pool.py, test_container.py, test_onnx.py; cached_conv
(github.com/acids-ircam/cached_conv) cached_conv/test_conv.py, test_conv_t.py, test_sequential.py
(its ``get_padding(k, s)``: ``p = k``, ``((p - 1) // 2, p // 2)`` frames, written here as a
``ConstantPad1d`` before the convolution, as its ``Conv1d.forward`` pads). Its
test_align_branches.py test_parallel_transpose is in test_upsampling.py with the encoder-decoders.

continual-inference's test_onnx.py cases also export to ONNX with explicit state (parity <= 1e-5).
Its ``co.Residual`` of a valid convolution adds the input centred on the shorter output (as
test_residual_shrink_centered writes it). Left out: test_advanced_routing's
``RecyclingPositionalEncoding`` (a position code of continual's own, with no plain torch module;
the routing around it is here) and the three transformer-encoder cases (attention over the whole
sequence: continual streams them with its own retroactive attention, which is not a torch model).

A module that pools over the whole clip (adaptive pooling to one frame) streams a causal cumulative
pool: its last frame is compared with torch."""

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


class AdvancedRouting(nn.Module):
    """continual-inference test_onnx.py test_advanced_routing as plain torch (without its positional
    encoding): Conditional(True, Add(1)), Conditional(False, ..., Add(-1)), Broadcast(2),
    ParallelDispatch([1, 0]), Parallel(AvgPool1d(3, stride=1), Sequential(Add(1), Conv1d(3, 3, 3))),
    Reduce("sum"), Linear(3, 3) over channels."""

    def __init__(self) -> None:
        super().__init__()
        self.pool, self.conv, self.linear = nn.AvgPool1d(3, stride=1), nn.Conv1d(3, 3, 3), nn.Linear(3, 3)

    def forward(self, x):
        x = x + 1 if True else x - 1  # the suite's constant conditions
        x = x + 1 if False else x - 1
        first, second = x, x  # broadcast to two, then dispatched in swapped order
        y = self.pool(second) + self.conv(first + 1)
        return self.linear(y.transpose(1, 2)).transpose(1, 2)


def _ones(net: nn.Module) -> nn.Module:
    """The suite's ``init.ones_`` of every convolution weight."""
    for m in net.modules():
        if isinstance(m, nn.Conv1d):
            nn.init.ones_(m.weight)
    return net


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
    ("ci-container::test_sequential_with_None", lambda: _ones(nn.Sequential(nn.Conv1d(1, 1, 3, bias=False, padding=1), nn.MaxPool1d(2, stride=2), nn.Conv1d(1, 1, 3, bias=False, stride=2, padding=1))), (1, 1, 32), False),
    # continual-inference tests/continual/test_onnx.py
    ("ci-onnx::test_conv_forward_step", lambda: nn.Conv1d(3, 4, 5), (1, 3, 12), False),
    ("ci-onnx::test_sequential_pure", lambda: nn.Sequential(nn.Conv1d(3, 6, 3), nn.Conv1d(6, 4, 1)), (1, 3, 12), False),
    ("ci-onnx::test_sequential_mixed", lambda: nn.Sequential(nn.Conv1d(3, 6, 3), nn.BatchNorm1d(6), nn.ReLU(), nn.Conv1d(6, 4, 3)), (1, 3, 12), False),
    ("ci-onnx::test_residual", lambda: Residual(nn.Conv1d(3, 3, 5), crop=2), (1, 3, 12), False),
    ("ci-onnx::test_advanced_routing", AdvancedRouting, (1, 3, 12), False),
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

def _params(prefix: str = ""):
    return [pytest.param(build, shape, pooled, id=case_id) for case_id, build, shape, pooled in CASES if case_id.startswith(prefix)]


def _convert(net: nn.Module, x: torch.Tensor) -> soi.StreamingModule:
    # a bare layer is given to soi.convert in an nn.Sequential: convert traces a bare nn.ConvNd's own
    # forward (torch.conv1d, refused as not frame-wise) instead of taking it as a layer
    return soi.convert(net if isinstance(net, (nn.Sequential, Residual, AdvancedRouting)) else nn.Sequential(net), x)


@pytest.mark.parametrize("build, shape, pooled", _params())
def test_peer_case_streams_like_torch(build, shape, pooled):
    torch.manual_seed(0)
    net = build().to(DT).eval()
    x = torch.randn(*shape, dtype=DT)
    model = _convert(net, x)
    with torch.no_grad():
        want = net(x)
        for chunk in (1, "random"):
            got = stream(model, x, chunk)
            if pooled:  # frame t: the pool over frames 0..t; the last frame is torch's over the clip
                assert_close(got[:, :, -1:], want, f"chunks {chunk!r}: last cumulative frame vs torch", atol=1e-10)
            else:
                assert_close(got, want, f"chunks {chunk!r}: streamed vs torch offline", atol=1e-10)


@pytest.mark.parametrize("build, shape, pooled", _params("ci-onnx::"))
def test_onnx_peer_case_exports_with_explicit_state(tmp_path, build, shape, pooled):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from soi.deploy.export import compare_export, export_onnx

    torch.manual_seed(0)
    net = build().eval()
    model = _convert(net, torch.randn(*shape)).eval()
    export_onnx(model, tmp_path, (shape[0], shape[1], 1))
    parity = compare_export(model, tmp_path, steps=16)
    assert parity["max_abs"] <= 1e-5, parity
