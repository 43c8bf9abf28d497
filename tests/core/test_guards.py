"""API guards: what the protocol refuses, with a message naming the problem, and that a refused call
leaves the stream usable."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import soi
from soi.models import UNet, UNetConfig

TINY = UNetConfig(freq_bins=17, in_channels=2, out_channels=2, channels=(3, 4, 4), kernel=(2, 3))


def converted_cnn() -> soi.StreamingModule:
    net = nn.Sequential(nn.ZeroPad1d((2, 0)), nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.ZeroPad1d((1, 0)), nn.Conv1d(4, 2, 2))
    return soi.convert(net).eval()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_a_non_finite_chunk_is_refused_and_the_stream_goes_on(bad):
    model = converted_cnn()
    x = torch.randn(2, 2, 12)
    want = model(x)
    with torch.no_grad(), model.streaming(2):
        outs = [model(x[:, :, :5])]
        poisoned = x[:, :, 5:6].clone()
        poisoned[1, 0, 0] = bad
        with pytest.raises(ValueError, match=r"NaN or infinite values \(streams \[1\]\).*not processed"):
            model(poisoned)
        outs.append(model(x[:, :, 5:]))
    got = torch.cat(outs, dim=2)
    torch.testing.assert_close(got, want, msg="the stream after a refused chunk differs from offline")


def test_the_finite_check_can_be_switched_off():
    model = converted_cnn()
    with torch.no_grad(), model.streaming(1, check_finite=False):
        y = model(torch.full((1, 2, 1), float("nan")))
    assert torch.isnan(y).all()


@pytest.mark.parametrize("layer", ["batchnorm", "dropout"])
def test_streaming_in_training_mode_is_refused(layer):
    body = nn.BatchNorm1d(2) if layer == "batchnorm" else nn.Dropout(0.5)
    model = soi.Sequential(soi.STMCConv1d(2, 2, 3), body).train()
    with pytest.raises(ValueError, match=r"layers\.1\.module.*training mode.*model\.eval\(\)"):
        with model.streaming(1):
            pass
    model.eval()
    with model.streaming(1):
        model(torch.zeros(1, 2, 1))


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: converted_cnn(), id="converted-cnn"),
        pytest.param(lambda: UNet(TINY, "S-CC 2").eval(), id="unet-S-CC2"),
        pytest.param(lambda: UNet(TINY, "SS-CC 2").eval(), id="unet-SS-CC2"),
        pytest.param(lambda: soi.Sequential(soi.CumulativeAvgPool(2)), id="cumulative-pool"),
    ],
)
def test_a_state_of_another_dtype_is_refused(model):
    m = model()
    c, *frame = m.input_frame_shape or (2,)
    state = m.double().init_state(1, dtype=torch.float64)
    m.float()
    x = torch.zeros(1, c, 1, *frame)
    with pytest.raises(ValueError, match="float64.*float32|float32.*float64"):
        m.step(x, state)


def test_half_input_into_a_float_model_names_both_dtypes():
    model = converted_cnn()
    with pytest.raises(ValueError, match=r"input is torch\.float16 but the weights are torch\.float32"):
        model(torch.zeros(1, 2, 4, dtype=torch.float16))


@pytest.mark.parametrize("cls", [soi.STMCConv1d, soi.STMCConv2d, soi.STMCConv3d, soi.STMCConvTranspose2d, soi.STMCAvgPool2d, soi.STMCMaxPool1d])
def test_thin_layer_names_show_their_real_signature(cls):
    params = list(inspect.signature(cls).parameters)
    assert "kwargs" not in params and "dims" not in params, params
    assert "kernel_size" in params and "lookahead" in params, params
    assert "Args" in (cls.__doc__ or ""), f"{cls.__name__}: the N-d layer's argument docs are missing"
