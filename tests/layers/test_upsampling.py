"""Time upsampling: tSTMC with a time stride ``u`` (a step of ``n`` frames gives ``u*n``), alone
and in encoder-decoders built as cached_conv builds its layers (a centered strided ``Conv1d`` as its
``Conv1d`` pads it, then ``ConvTranspose1d`` with kernel ``2u`` and padding ``u/2``, as in its
test_conv_t.py): streamed frame by frame and in random chunks == torch in float64, executed MACs
per step == the analytic schedule, ONNX parity."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import soi
from soi.analysis.cost import analyze, measure_steps, schedule
from soi.testing import assert_close, assert_streams_like_offline, split_points, stream

DT = torch.float64
T = 11


def _layer_cases():
    for dims, (k, u, f), d in itertools.product(
        (1, 2, 3), [(4, 2, 1), (8, 4, 2), (12, 4, 4), (2, 2, 0), (5, 2, 2), (1, 3, 0), (6, 3, 2)], (1, 2)
    ):
        # torch's output then covers the u*T frames the stream gives
        if f <= (k - 1) * d + 1 - u:
            yield pytest.param(dims, k, u, d, f, id=f"{dims}d-k{k}-s{u}-d{d}-pad{f}")


@pytest.mark.parametrize("dims, k, u, d, f", _layer_cases())
def test_time_strided_tstmc_equals_torch_and_gives_u_frames_per_frame(dims, k, u, d, f):
    case = f"tSTMC {dims}d k={k} stride={u} d={d} padding={f}"
    g = torch.Generator().manual_seed(k * u)
    x = torch.randn(2, 3, T, *([5] * (dims - 1)), generator=g, dtype=DT)
    rest = (2,) * (dims - 1)
    layer = soi.STMCConvTransposeNd(
        dims, 3, 4, (k,) + (3,) * (dims - 1), stride=(u, *rest), padding=(1,) * (dims - 1),
        dilation=(d,) + (1,) * (dims - 1), lookahead=f, dtype=DT,
    )  # fmt: skip
    assert_streams_like_offline(layer, x, (1, 2, 3, "whole", "random"), case=case)
    full = F.conv_transpose1d if dims == 1 else F.conv_transpose2d if dims == 2 else F.conv_transpose3d
    want = full(x, layer.weight, layer.bias, (u, *rest), (0, *layer.padding), 0, 1, layer.dilation)[:, :, f : f + u * T]
    assert_close(layer(x), want, f"{case}: offline vs frames {f}..{f + u * T} of torch's transposed convolution")
    # n frames in, u*n out, once the first f (torch's time padding) are held back
    sizes = [y.shape[2] for y in _steps(layer, x, 3)]
    assert sum(sizes) == u * T - f and all(n == u * 3 for n in sizes[1 + f // (3 * u) : -1]), f"{case}: output frames per step {sizes}"
    executed = measure_steps(layer, x[:1], chunk=1)
    analytic = schedule(analyze(layer, x.shape[1:2] + x.shape[3:]), T)
    assert [e.total for e in executed] == [a.total for a in analytic], f"{case}: executed {executed} vs analytic {analytic} MACs"


def _steps(layer, x, chunk):
    state = layer.init_state(x.shape[0], dtype=x.dtype)
    out, start = [], 0
    for n in split_points(x.shape[2], chunk):
        y, state = layer.step(x[:, :, start : start + n], state)
        out.append(y)
        start += n
    return out


def _pad_conv(cin, cout, k, s=1):
    """cached_conv's Conv1d with ``padding=get_padding(k, s)``: centered padding, then a plain conv."""
    return [nn.ConstantPad1d(((k - 1) // 2, k // 2), 0.0), nn.Conv1d(cin, cout, k, stride=s)]


class TwoTransposed(nn.Module):
    """cached_conv test_align_branches.py test_parallel_transpose: the sum of two ConvTranspose1d(4, 2, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.b1, self.b2 = nn.ConvTranspose1d(2, 2, 4, 2, 1), nn.ConvTranspose1d(2, 2, 4, 2, 1)

    def forward(self, x):
        return self.b1(x) + self.b2(x)


MODELS = {
    "encoder-decoder-s2": lambda: nn.Sequential(*_pad_conv(2, 4, 3, 2), nn.ReLU(), nn.ConvTranspose1d(4, 2, 4, 2, 1)),
    "encoder-decoder-s4": lambda: nn.Sequential(*_pad_conv(2, 4, 7, 4), nn.ReLU(), nn.ConvTranspose1d(4, 2, 8, 4, 2)),
    "encoder-decoder-2-levels": lambda: nn.Sequential(
        *_pad_conv(2, 4, 3, 2),
        nn.ReLU(),
        *_pad_conv(4, 4, 5, 2),
        nn.ReLU(),
        nn.ConvTranspose1d(4, 4, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose1d(4, 2, 12, 4, 4),
        *_pad_conv(2, 2, 3),
    ),
    "decoder-then-centered-convs": lambda: nn.Sequential(
        nn.ConvTranspose1d(2, 3, 4, 2, 1), *_pad_conv(3, 3, 3), nn.ReLU(), *_pad_conv(3, 2, 5)
    ),
    "upsample-then-strided-convs": lambda: nn.Sequential(
        nn.ConvTranspose1d(2, 3, 8, 4, 2), *_pad_conv(3, 3, 3, 2), nn.ReLU(), *_pad_conv(3, 2, 5, 2)
    ),
    "cc-align_branches::test_parallel_transpose": TwoTransposed,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_upsampling_model_streams_like_torch_with_the_analytic_macs(name):
    torch.manual_seed(0)
    net = MODELS[name]().to(DT).eval()
    x = torch.randn(1, 2, 16, dtype=DT)
    model = soi.convert(net, x)
    with torch.no_grad():
        want = net(x)
        for chunk in (1, 3, "random"):
            assert_close(stream(model, x, chunk), want, f"{name} chunks {chunk!r}: streamed vs torch")
    executed = measure_steps(model, x, chunk=1)
    analytic = schedule(analyze(model), x.shape[2])
    for t, (e, a) in enumerate(zip(executed, analytic)):
        assert e.total == a.total, f"{name}: step {t} executed {e.total} MACs, analytic {a.total}"


def test_upsampling_model_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from soi.deploy.export import compare_export, export_onnx

    torch.manual_seed(0)
    model = soi.convert(MODELS["encoder-decoder-2-levels"]().eval(), torch.randn(1, 2, 16)).eval()
    export_onnx(model, tmp_path, (1, 2, 4))  # one group of the decoder's output per step
    parity = compare_export(model, tmp_path, steps=6)
    assert parity["max_abs"] <= 1e-5, parity


def test_upsampling_into_a_full_rate_branch_is_refused_saying_why():
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc, self.dec = nn.Sequential(*_pad_conv(2, 4, 3, 2)), nn.ConvTranspose1d(4, 2, 4, 2, 1)

        def forward(self, x):
            return x + self.dec(self.enc(x))

    with pytest.raises(soi.ConversionError, match=r"add: .*different rates \(1 frame per 1 input frame, 2 frames per 2 input frames"):
        soi.convert(Skip(), torch.randn(1, 2, 16))
    with pytest.raises(soi.ConversionError, match="2 output frames per step followed by a time stride 3"):
        soi.convert(nn.Sequential(nn.ConvTranspose1d(2, 2, 4, 2, 1), nn.Conv1d(2, 2, 3, stride=3)))
    with pytest.raises(soi.ConversionError, match=r"time stride 2, padding 0 and output_padding 0 gives 2\*T \+2 frames"):
        soi.convert(nn.Sequential(nn.ConvTranspose1d(2, 2, 4, 2)))
