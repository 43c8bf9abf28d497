"""soi.convert: a plain torch model and its streaming twin compute the same function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import soi
from soi.testing import assert_streams_like_offline, randomise_batchnorm

CHUNKS = (1, 2, 3, 7, "whole", "random")


def _randomise_bn(model: nn.Module) -> None:
    randomise_batchnorm(model, mean=1.0, var=(0.5, 2.0), weight=(0.5, 1.5), bias=0.5)


def test_converted_unet_like_model_equals_original():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.ZeroPad2d((1, 1, 2, 0)),  # causal: 2 past frames, frequency padded both sides
        nn.Conv2d(2, 8, 3, stride=(1, 2)),
        nn.BatchNorm2d(8),
        nn.ELU(),
        nn.Conv2d(8, 8, 3, padding=1),  # symmetric time padding: 1 frame of look-ahead
        nn.ReLU(),
        nn.MaxPool2d((3, 1), stride=1, padding=(1, 0)),
        nn.ConvTranspose2d(8, 4, (3, 4), stride=(1, 2), padding=(1, 1)),
        nn.Dropout(0.1),
        nn.AvgPool2d((1, 2)),
        nn.ZeroPad2d((0, 0, 2, 0)),
        nn.Conv2d(4, 4, (3, 1), stride=(2, 1)),
        nn.Linear(4, 3),  # over the last (frequency) axis, as torch does
    ).double()
    _randomise_bn(net)
    net.eval()
    stream = soi.convert(net)
    assert stream.delay == 3  # conv, max pool and transposed conv each look one frame ahead
    x = torch.randn(3, 2, 17, 8, dtype=torch.float64)
    expected = net(x)
    got = stream(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-10
    assert_streams_like_offline(stream, x, CHUNKS, case="converted model")
    # The original is untouched and shares nothing with its twin.
    assert isinstance(net[1], nn.Conv2d)
    assert stream[0].weight.data_ptr() != net[1].weight.data_ptr()  # the pad folded into the conv


def test_convert_inside_soi_containers():
    torch.manual_seed(2)
    body = nn.Sequential(nn.ZeroPad1d((2, 0)), nn.Conv1d(4, 4, 3), nn.Tanh())
    model = soi.Sequential(nn.Conv1d(2, 4, 1), soi.Residual(body), soi.Concat(nn.Identity(), nn.Conv1d(4, 2, 3, padding=1)))
    model = model.double()
    stream = soi.convert(model)
    x = torch.randn(2, 2, 9, dtype=torch.float64)
    h = model[0](x)
    h = h + body.double()(h)
    expected = torch.cat([h, model[2].branches[1](h)], dim=1)
    assert (stream(x) - expected).abs().max() <= 1e-10
    assert_streams_like_offline(stream, x, CHUNKS)


def test_convert_lists_every_problem():
    bad = nn.Sequential(
        nn.Conv1d(1, 2, 3, padding=2),  # changes the length
        nn.LSTM(2, 2),
        nn.ReflectionPad1d(1),
        nn.AdaptiveAvgPool1d(4),  # the whole sequence into 4 frames
        nn.Softmax(dim=2),
        nn.Conv1d(2, 2, 3, padding_mode="circular", padding=1),
        nn.ConvTranspose1d(2, 2, 3, stride=2),
    )
    with pytest.raises(soi.ConversionError) as info:
        soi.convert(bad)
    paths = [p for p, _ in info.value.problems]
    assert paths == ["0", "1", "2", "3", "4", "5", "6"], info.value.problems
    text = str(info.value)
    for needle in ("changes the sequence length", "LSTM", "ReflectionPad1d", "AdaptiveAvgPool1d", "Softmax(dim=2)", "circular", "time stride 2"):
        assert needle in text


STRIDED_LOOKAHEAD = [
    pytest.param(dims, k, pad, id=f"{dims}d-k{k}-pad{pad}")
    for dims in (1, 2, 3)
    for k, pad in ((3, 1), (5, 2), (4, (2, 1)))
    if dims == 1 or not isinstance(pad, tuple)  # asymmetric time padding: nn.ZeroPad1d, 1-d only
]


@pytest.mark.parametrize("dims,k,pad", STRIDED_LOOKAHEAD)
def test_time_stride_with_look_ahead_converts_exactly(dims, k, pad):
    """A ResNet's downsampling convolution (stride 2, centred padding) is a stride-2 layer with
    look-ahead: output j ends at frame 2j + f, and the stream equals torch frame for frame."""
    torch.manual_seed(dims)
    conv = getattr(nn, f"Conv{dims}d")
    first = nn.ZeroPad1d(pad) if isinstance(pad, tuple) else nn.Identity()
    padding = 0 if isinstance(pad, tuple) else pad
    net = nn.Sequential(first, conv(2, 3, k, stride=2, padding=padding), nn.ReLU(), conv(3, 2, 3, padding=1)).double().eval()
    model = soi.convert(net)
    x = torch.randn(2, 2, 13, *([6] * (dims - 1)), dtype=torch.float64)
    torch.testing.assert_close(model(x), net(x), msg=f"{dims}d k={k} pad={pad}: converted offline differs from torch")
    assert_streams_like_offline(model, x, [1, 2, 3, "random"], case=f"{dims}d k={k} pad={pad}")
    f = pad[1] if isinstance(pad, tuple) else pad
    assert model.delay == f + 2 * 1, f"{dims}d: look-ahead {f} at full rate, then 1 frame at half rate"


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch's, on the reference
@pytest.mark.parametrize("k,d", [(3, 1), (4, 1), (2, 3), (5, 2)], ids=["odd", "even", "even-dilated", "odd-dilated"])
@pytest.mark.parametrize("dims", [1, 2], ids=lambda n: f"{n}d")
def test_same_padding_converts_for_odd_and_even_time_kernels(k, d, dims):
    torch.manual_seed(k)
    kernel = (k,) if dims == 1 else (k, 3)
    dilation = (d,) if dims == 1 else (d, 1)
    net = nn.Sequential(getattr(nn, f"Conv{dims}d")(2, 3, kernel, padding="same", dilation=dilation), nn.ELU()).double().eval()
    model = soi.convert(net)
    x = torch.randn(2, 2, 11, *([5] * (dims - 1)), dtype=torch.float64)
    torch.testing.assert_close(model(x), net(x), msg=f"{dims}d k={k} d={d}: 'same' differs from torch")
    total = d * (k - 1)
    assert model.delay == total - total // 2, f"{dims}d k={k} d={d}: torch puts the odd padding frame on the right"
    assert_streams_like_offline(model, x, [1, 3, "random"], case=f"same {dims}d k={k} d={d}")


def test_same_padding_with_an_even_kernel_across_frequency_says_why():
    with pytest.raises(soi.ConversionError, match="even kernel in non-time axis 1"):
        soi.convert(nn.Sequential(nn.Conv2d(2, 2, (3, 4), padding="same")))


def test_average_pooling_that_does_not_count_time_padding_is_refused():
    with pytest.raises(soi.ConversionError, match="count_include_pad=False with time padding"):
        soi.convert(nn.Sequential(nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False)))
    net = nn.Sequential(nn.AvgPool2d((3, 3), stride=1, padding=(0, 1), count_include_pad=False)).double()
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(soi.convert(net)(x), net(x))  # valid in time: nothing to count


PADDING_MODES = [
    pytest.param(dims, mode, id=f"{dims}d-{mode}") for dims in (2, 3) for mode in ("reflect", "replicate", "circular")
]


@pytest.mark.parametrize("dims,mode", PADDING_MODES)
def test_padding_mode_in_non_time_axes_converts_exactly(dims, mode):
    """``padding_mode`` other than zeros in the non-time axes: each window's non-time axes are
    padded in that mode (F.pad) before the convolution, as torch pads them; time padded with zeros
    by a pad module before it. Streamed == torch; executed MACs per step == the analytic cost
    (every border tap is a real product)."""
    from soi.analysis.cost import analyze, measure_steps, schedule
    from soi.layers.conv import ModePaddedConvNd

    torch.manual_seed(dims)
    conv = getattr(nn, f"Conv{dims}d")
    rest = (dims - 1)
    net = nn.Sequential(
        getattr(nn, f"ZeroPad{dims}d")((0, 0) * rest + (2, 0)),                 # causal zeros in time
        conv(2, 3, 3, padding=(0, *[1] * rest), padding_mode=mode),
        nn.ReLU(),
        conv(3, 2, (1, *[3] * rest), stride=(1, *[2] * rest), padding=(0, *[2] * rest), padding_mode=mode),
        conv(2, 2, (1, *[3] * rest), padding="same", padding_mode=mode),
    ).double().eval()
    model = soi.convert(net)
    assert sum(isinstance(m, ModePaddedConvNd) for m in model.modules()) == 3
    x = torch.randn(2, 2, 9, *([6] * rest), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), msg=f"{dims}d {mode}: converted differs from torch")
    assert_streams_like_offline(model, x, [1, 2, "random"], case=f"padding_mode {mode} {dims}d")
    executed = measure_steps(model, x[:1, :, :3], chunk=1)
    for t, (e, a) in enumerate(zip(executed, schedule(analyze(model, x.shape[1:2] + x.shape[3:]), 3))):
        assert e.step == a.step, f"{dims}d {mode}: step {t} executed {e.step} MACs, analytic {a.step}"


@pytest.mark.parametrize("causal", [False, True], ids=["as-is", "causal"])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_mode_in_time_is_refused_saying_why(mode, causal):
    net = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode=mode))
    with pytest.raises(soi.ConversionError, match=f"padding_mode='{mode}' pads time too: .* a stream does not have"):
        soi.convert(net, causal=causal)
    with pytest.raises(soi.ConversionError, match="pads time too"):
        soi.convert(nn.Sequential(nn.Conv3d(2, 2, 3, padding="same", padding_mode=mode)))


def test_padding_mode_conv_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from soi.deploy.export import compare_export, export_onnx

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.ZeroPad2d((0, 0, 2, 0)), nn.Conv2d(1, 4, 3, padding=(0, 1), padding_mode="reflect"), nn.BatchNorm2d(4),
        nn.ReLU(), nn.Conv2d(4, 2, (1, 3), padding=(0, 1), padding_mode="circular"),
    ).eval()
    _randomise_bn(net)
    model = soi.convert(net, torch.randn(1, 1, 4, 8)).eval()
    export_onnx(model, tmp_path, (1, 1, 1, 8))
    parity = compare_export(model, tmp_path, steps=4)
    assert parity["max_abs"] <= 1e-5, parity
