"""soi.convert on models whose forward is more than a chain: traced with torch.fx and rebuilt as a
StreamGraph. Plain torch models, written with the forward functions people write, converted and
streamed frame by frame and in random chunks: equal to torch in float64; executed MACs per step ==
the analytic cost; ONNX export with explicit state; every unsupported node reported at once."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import soi
from soi.analysis.cost import analyze, measure_steps, schedule
from soi.layers.graph import CumulativePool, StreamGraph, TimeCrop
from soi.testing import (
    assert_close,
    assert_streams_like_offline,
    randomise_batchnorm,
    stream,
)

DT = torch.float64
CHUNKS = (1, 2, 3, "random")


# ==================================================================================================
# The models, as people write them
# ==================================================================================================


class ResidualBlock(nn.Module):
    """``x + f(x)``: f looks one frame ahead (symmetric padding), then is causal (F.pad on the left)."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=(0, 1))

    def forward(self, x):
        y = torch.relu(self.bn(self.conv1(x)))
        return x + self.conv2(F.pad(y, (0, 0, 2, 0)))


class TwoBranches(nn.Module):
    """``torch.cat`` of a branch with 2 frames of look-ahead and a causal one."""

    def __init__(self) -> None:
        super().__init__()
        self.ahead = nn.Conv1d(3, 4, 5, padding=2)
        self.causal = nn.Sequential(nn.ConstantPad1d((2, 0), 0.0), nn.Conv1d(3, 2, 3), nn.ELU())
        self.out = nn.Conv1d(6, 2, 1)

    def forward(self, x):
        return self.out(torch.cat([self.ahead(x), self.causal(x)], dim=1))


class SEGate(nn.Module):
    """Squeeze-excitation: ``x * sigmoid(fc(mean over (T, F)))``."""

    def __init__(self, c: int = 6, r: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, c, 3, padding=(0, 1))
        self.fc1 = nn.Linear(c, c // r)
        self.fc2 = nn.Linear(c // r, c)

    def forward(self, x):
        x = self.conv(F.pad(x, (0, 0, 2, 0)))
        g = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * g[:, :, None, None]


class Classifier(nn.Module):
    """Causal convolutions, a global average pool and a linear head."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ZeroPad2d((1, 1, 2, 0)), nn.Conv2d(1, 8, 3, stride=(1, 2)), nn.BatchNorm2d(8), nn.ReLU(),
            nn.ZeroPad2d((1, 1, 2, 0)), nn.Conv2d(8, 8, 3), nn.ReLU(),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class Denoiser(nn.Module):
    """conv + GRU + conv over spectrogram frames (B, F, T), a mask on the input."""

    def __init__(self, bins: int = 9, hidden: int = 12) -> None:
        super().__init__()
        self.enc = nn.Conv1d(bins, hidden, 3)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.dec = nn.Conv1d(hidden, bins, 1)

    def forward(self, x):
        z = torch.relu(self.enc(F.pad(x, (2, 0))))
        y, _ = self.gru(z.transpose(1, 2))
        return torch.sigmoid(self.dec(y.transpose(1, 2))) * x


def _randomise_bn(model: nn.Module) -> nn.Module:
    return randomise_batchnorm(model, mean=0.5, weight=(0.5, 1.5), bias=0.5)


def prefix_reference(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a causal model with a global pool answers at each frame: frame ``t`` of its output on
    frames ``0..t`` (its last frame for a per-frame output, the whole output for a pooled one)."""
    outs = []
    with torch.no_grad():
        for t in range(x.shape[2]):
            y = net(x[:, :, : t + 1])
            outs.append(y[:, :, t] if y.dim() > 2 else y)
    return torch.stack(outs, dim=2)


# (name, model, input shape, reference: "offline" = the torch model on the whole input, "prefix")
CASES = [
    ("residual", ResidualBlock, (2, 4, 11, 6), "offline"),
    ("cat", TwoBranches, (2, 3, 13), "offline"),
    ("se-gate", SEGate, (2, 2, 9, 5), "prefix"),
    ("classifier", Classifier, (2, 1, 10, 8), "prefix"),
    ("conv-gru-conv", Denoiser, (2, 9, 11), "offline"),
]


def _make(cls, shape, dtype=DT, seed=0):
    torch.manual_seed(seed)
    net = _randomise_bn(cls()).to(dtype).eval()
    x = torch.randn(*shape, dtype=dtype)
    return net, x


@pytest.mark.parametrize("name,cls,shape,ref", CASES, ids=[c[0] for c in CASES])
def test_traced_model_streams_like_torch(name, cls, shape, ref):
    net, x = _make(cls, shape)
    model = soi.convert(net, x)
    assert isinstance(model, StreamGraph)
    want = net(x) if ref == "offline" else prefix_reference(net, x)
    with torch.no_grad():
        assert_close(model(x), want, f"{name}: converted offline vs torch")
        for chunk in CHUNKS:
            assert_close(stream(model, x, chunk), want, f"{name}: streamed in chunks {chunk!r} vs torch")
    # every parameter of the original is in the graph, registered
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name,cls,shape,ref", CASES, ids=[c[0] for c in CASES])
def test_traced_model_executes_the_analytic_macs(name, cls, shape, ref):
    net, x = _make(cls, shape)
    model = soi.convert(net, x)
    executed = measure_steps(model, x[:1], chunk=1)
    analytic = schedule(analyze(model), x.shape[2])
    for t, (e, a) in enumerate(zip(executed, analytic)):
        assert (e.step, e.prepare) == (a.step, a.prepare), f"{name}: step {t} executed {e.step} MACs, analytic {a.step}"
    assert sum(a.step for a in analytic) > 0
    assert soi.cost(model).macs_per_frame > 0


def test_time_major_lstm_between_convolutions():
    class TimeMajor(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Conv1d(5, 6, 3, padding=1)
            self.rnn = nn.LSTM(6, 4, num_layers=2)  # (T, B, C)
            self.dec = nn.Conv1d(4, 5, 1)

        def forward(self, x):
            y, (h, c) = self.rnn(self.enc(x).permute(2, 0, 1))
            return self.dec(y.permute(1, 2, 0))

    torch.manual_seed(4)
    net = TimeMajor().double()
    x = torch.randn(2, 5, 10, dtype=DT)
    model = soi.convert(net, x)
    assert model.delay == 1
    assert_close(model(x), net(x), "LSTM (T, B, C) between convolutions")
    assert_streams_like_offline(model, x, CHUNKS)


def test_branches_are_aligned_by_a_registered_delay():
    net, x = _make(TwoBranches, (1, 3, 9))
    model = soi.convert(net, x)
    delays = [m for m in model.modules() if isinstance(m, soi.DelayLine)]
    assert [d.lookahead for d in delays] == [2], "the causal branch waits 2 frames for the look-ahead one"
    assert model.delay == 2
    text = str(model)
    assert "DelayLine(frames=2)" in text and "FrameOp(torch.cat" in text


def test_series_of_stream_nodes_is_one_sequential_and_batchnorm_folds():
    net, x = _make(ResidualBlock, (1, 4, 7, 6))
    model = soi.convert(net, x)
    seqs = [m for m in model.nodes.values() if isinstance(m, soi.Sequential)]
    assert seqs and isinstance(seqs[0][1], soi.FrameWise), "conv1 and its BatchNorm are one chain"
    from soi.deploy import fold_batchnorm

    folded = fold_batchnorm(model)
    assert_close(folded(x), model(x), "BatchNorm folded inside a traced graph")


def test_cumulative_mean_and_max_over_time():
    class Pools(nn.Module):
        def forward(self, x):  # (B, C, T, F)
            return torch.cat([x.mean(2, keepdim=True).expand_as(x), F.adaptive_max_pool2d(x, 1).expand_as(x), x.amax(dim=(2, 3))[:, :, None, None].expand_as(x)], 1)

    x = torch.randn(2, 3, 7, 4, dtype=DT)
    net = Pools()
    model = soi.convert(net, x)
    assert sum(isinstance(m, CumulativePool) for m in model.modules()) == 3
    want = torch.stack([net(x[:, :, : t + 1])[:, :, t] for t in range(7)], dim=2)
    assert_streams_like_offline(model, x, CHUNKS)
    assert_close(model(x), want, "cumulative pools vs torch on every prefix")


def test_adaptive_pooling_over_non_time_axes_and_interpolation_stay_frame_wise():
    net = nn.Sequential(nn.Conv2d(2, 3, (1, 3)), nn.AdaptiveAvgPool2d((None, 2)), nn.Upsample(scale_factor=(1, 2)), nn.AdaptiveMaxPool2d((None, 3)))
    net = net.double()
    x = torch.randn(2, 2, 8, 9, dtype=DT)
    model = soi.convert(net, x)  # module by module it cannot be: the graph path takes it
    assert isinstance(model, StreamGraph)
    assert_close(model(x), net(x), "adaptive pooling over frequency")
    assert_streams_like_offline(model, x, CHUNKS)


def test_streaming_reset_and_protocol():
    net, x = _make(SEGate, (2, 2, 9, 5))
    model = soi.convert(net, x).eval()
    with torch.no_grad(), model.streaming(2):
        first = model(x[:, :, :4])
        model.reset(torch.tensor([True, False]))
        again = model(x[:, :, :4])
    assert_close(again[0], first[0], "a reset stream starts again")
    assert not torch.allclose(again[1], first[1]), "the other stream went on"
    state = model.init_state(2)
    names = [n for n, _ in soi.state_tensors(state)]
    assert any("total" in n for n in names) and any("history" in n for n in names)


def test_example_input_can_be_left_out_when_the_first_layer_says_its_channels():
    net, x = _make(ResidualBlock, (1, 4, 16, 32))
    model = soi.convert(net)
    assert model.input_frame_shape == (4, 32)
    assert_close(model(x), net(x), "shape guessed from the first convolution")
    with pytest.raises(ValueError, match="frames of shape"):
        soi.cost(model, input_shape=(4, 16))


def test_causal_turns_symmetric_time_padding_into_left_padding():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv1d(3, 2, 5, padding=2)).double()
    x = torch.randn(2, 2, 12, dtype=DT)
    model = soi.convert(net, causal=True)
    assert model.delay == 0
    want = F.conv1d(F.pad(torch.relu(F.conv1d(F.pad(x, (2, 0)), net[0].weight, net[0].bias)), (4, 0)), net[2].weight, net[2].bias)
    assert_close(model(x), want, "causal=True: the same weights with left padding")
    assert_streams_like_offline(model, x, CHUNKS)
    assert soi.convert(net).delay == 3, "without causal=True: the model's own look-ahead"


VALID = [
    pytest.param(nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(3, 2, 3, padding=1)), 1, 2 + 1 + 2, id="valid-conv-pool"),
    pytest.param(nn.Sequential(nn.Conv1d(2, 3, 5, padding=1), nn.AvgPool1d(3, stride=1)), 1, 3 + 2, id="partly-padded"),
    pytest.param(nn.Sequential(nn.Conv2d(2, 3, (3, 3), stride=(2, 1), padding=(0, 1)), nn.ELU(), nn.Conv2d(3, 2, (2, 1))), 2, 2 + 2 * 1, id="valid-strided-2d"),
]


@pytest.mark.parametrize("net,dims,delay", VALID)
def test_valid_convolutions_and_pools_begin_once_the_window_is_full(net, dims, delay):
    torch.manual_seed(5)
    net = net.double()
    x = torch.randn(2, 2, 15, *([5] * (dims - 1)), dtype=DT)
    model = soi.convert(net)
    want = net(x)
    assert want.shape[2] < x.shape[2]
    assert_close(model(x), want, "valid layers: torch's outputs, frame for frame")
    assert_streams_like_offline(model, x, (1, 2, 3, "random"))
    assert model.delay == delay, "the warm-up is reported as the delay: output 0 exists once the windows are full"


# ==================================================================================================
# What does not convert: all at once, node, operation and reason
# ==================================================================================================


def test_unsupported_nodes_are_reported_all_at_once():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 3, padding=1)
            self.norm = nn.GroupNorm(1, 2)

        def forward(self, x):
            a = torch.cumsum(self.conv(x), dim=2)  # reads every earlier frame: not frame-wise
            b = self.norm(x)  # normalises over time too
            return a + b + x.std(dim=2, keepdim=True)

    with pytest.raises(soi.ConversionError) as info:
        soi.convert(Bad(), torch.randn(1, 2, 10))
    problems = dict(info.value.problems)
    assert set(problems) == {"cumsum", "norm", "std"}, info.value.problems
    assert problems["cumsum"].startswith("torch.cumsum: is not frame-wise")
    assert problems["norm"].startswith("GroupNorm: is not frame-wise")
    assert "reduces over time" in problems["std"]
    text = str(info.value)
    assert "cumsum" in text and "norm" in text and "3 part(s)" in text


def test_recurrent_and_length_problems_say_why():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(2, 3, batch_first=True)

        def forward(self, x):
            y, h = self.gru(x.transpose(1, 2))
            return y.transpose(1, 2)[:, :, ::2] + h.transpose(0, 1).transpose(1, 2)

    with pytest.raises(soi.ConversionError) as info:
        soi.convert(Bad(), torch.randn(1, 2, 10))
    text = str(info.value)
    assert "final hidden state" in text
    assert "slices time with a step" in text


class CroppedResidual(nn.Module):
    """A valid convolution plus its input cropped to the same frames: ``conv(x) + x[crop]``."""

    def __init__(self, k: int, crop) -> None:
        super().__init__()
        self.conv, self.crop = nn.Conv1d(2, 2, k), crop

    def forward(self, x):
        return self.conv(x) + self.crop(x)


CROPS = [
    ("centred-by-shape", 3, lambda x: x[:, :, 1 : x.shape[2] - 1], 2),
    ("negative-stop", 4, lambda x: x[:, :, 2:-1], 3),
    ("start-only", 3, lambda x: x[:, :, 2:], 2),
    ("end-only", 3, lambda x: x[:, :, :-2], 2),
    ("size-method", 5, lambda x: x[:, :, 1 : x.size(2) - 3], 4),
]


@pytest.mark.parametrize("name,k,crop,delay", CROPS, ids=[c[0] for c in CROPS])
def test_a_time_crop_is_alignment(name, k, crop, delay):
    torch.manual_seed(0)
    net = CroppedResidual(k, crop).to(DT).eval()
    x = torch.randn(2, 2, 11, dtype=DT)
    model = soi.convert(net, x)
    assert model.delay == delay, f"{name}: delay {model.delay}, expected the crop's {delay} frames"
    assert any(isinstance(m, TimeCrop) for m in model.modules()), f"{name}: no TimeCrop in {model}"
    with torch.no_grad():
        want = net(x)
        for chunk in CHUNKS:
            assert_close(stream(model, x, chunk), want, f"{name} chunks {chunk!r}: streamed vs torch")


@pytest.mark.parametrize(
    "name,crop,reason",
    [
        ("half", lambda x: x[:, :, x.shape[2] // 2 :], "slices time by the sequence length (frames 5..10 of 10, 10..20 of 20)"),
        ("step", lambda x: x[:, :, ::2], "slices time with a step"),
        ("fixed-frames", lambda x: x[:, :, 3:5], "slices time by the sequence length"),
        ("one-frame", lambda x: x[:, :, 3, None], "picks frames of the time axis"),
        ("time-and-channels", lambda x: x[:, :1, 1:], "slices time and other axes in one index"),
    ],
    ids=["half", "step", "fixed-frames", "one-frame", "time-and-channels"],
)
def test_time_slices_that_are_not_crops_are_refused_saying_why(name, crop, reason):
    class Sliced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 1)

        def forward(self, x):
            return crop(self.conv(x))

    with pytest.raises(soi.ConversionError, match=re.escape(reason)):
        soi.convert(Sliced(), torch.randn(1, 2, 10))


def test_sizes_of_the_time_axis_are_refused():
    class Bad(nn.Module):
        def forward(self, x):
            return x * x.shape[2]

    with pytest.raises(soi.ConversionError, match="depends on the sequence length"):
        soi.convert(Bad(), torch.randn(1, 2, 10))


# ==================================================================================================
# ONNX export with explicit state
# ==================================================================================================


@pytest.mark.parametrize("name,cls,shape,ref", CASES, ids=[c[0] for c in CASES])
def test_traced_model_exports_to_onnx(name, cls, shape, ref, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from soi.deploy.export import compare_export, export_onnx

    net, x = _make(cls, (1, *shape[1:]), dtype=torch.float32)
    model = soi.convert(net, x).eval()
    chunk = 1 if name != "cat" else 3  # chunks of 3: the 2-frame warm-up is one graph
    man = export_onnx(model, tmp_path, (1, shape[1], chunk, *shape[3:]))
    assert all(s["initial"] for s in man["state"])
    parity = compare_export(model, tmp_path, steps=12)
    assert parity["max_abs"] <= 1e-5, f"{name}: ONNX Runtime vs PyTorch {parity}"


@pytest.mark.parametrize(
    "layer",
    [nn.Conv1d(2, 3, 3, padding=1), nn.Conv2d(2, 3, (3, 3), padding=1), nn.MaxPool2d((2, 2), stride=(1, 2))],
    ids=["conv1d", "conv2d", "maxpool2d"],
)
def test_a_bare_layer_converts_module_by_module(layer):
    """A root module that is itself a layer converts as a one-layer chain (tracing its forward
    would only see the functional op)."""
    net = layer.double()
    x = torch.randn(2, 2, 9, *([6] if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)) else []), dtype=torch.float64)
    converted = soi.convert(net)
    assert not isinstance(converted, StreamGraph), type(converted).__name__
    with torch.no_grad():
        ref = net(x)
        out = converted(x)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert_close(out, ref, "bare layer offline", 1e-12)


def test_a_zero_frame_chunk_through_a_cumulative_adaptive_pool():
    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.pool(torch.relu(self.conv(x)))

    x = torch.randn(1, 2, 7, 6, dtype=torch.float64)
    model = soi.convert(Pooled().double(), x, causal=True)
    assert any(isinstance(m, CumulativePool) for m in model.modules())
    with_empty = stream(model, x, [1, 0, 3, 0, 3])
    assert_close(with_empty, stream(model, x, [1, 3, 3]), "zero-frame chunks change nothing", 0.0)


# ==================================================================================================
# torch.export where torch.fx cannot trace
# ==================================================================================================


class PadsToMultiple(nn.Module):
    """Pads the frequency axis to a multiple of 4 when it is not one (a U-Net's down-sampling needs
    it), convolves causally in time, halves and restores frequency, crops it back: ``if x.shape[3] %
    4`` is Python control flow on a size, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(2, 4, 3, stride=(1, 2), padding=(0, 1))
        self.up = nn.ConvTranspose2d(4, 2, (1, 2), stride=(1, 2))

    def forward(self, x):
        f = x.shape[3]
        if f % 4:
            x = F.pad(x, (0, 4 - f % 4))
        y = self.up(torch.relu(self.down(F.pad(x, (0, 0, 2, 0)))))
        return y[:, :, :, :f] + x[:, :, :, :f]


def test_a_model_fx_cannot_trace_converts_through_torch_export():
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(PadsToMultiple())
    torch.manual_seed(0)
    net = PadsToMultiple().to(DT).eval()
    x = torch.randn(2, 2, 12, 13, dtype=DT)
    model = soi.convert(net, x)
    with torch.no_grad():
        want = net(x)
        for chunk in CHUNKS:
            assert_close(stream(model, x, chunk), want, f"exported PadsToMultiple chunks {chunk!r}: streamed vs torch")


def test_a_branch_on_the_sequence_length_is_refused_after_export():
    class ByLength(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 1)

        def forward(self, x):
            return self.conv(x) if x.shape[2] > 10 else x

    with pytest.raises(soi.ConversionError, match="branches on the sequence length: torch.export found it the same function only for 11 to any"):
        soi.convert(ByLength(), torch.randn(1, 2, 12))


def test_when_fx_and_export_both_fail_the_error_says_what_each_said():
    class ByValue(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    with pytest.raises(soi.ConversionError) as info:
        soi.convert(ByValue(), torch.randn(1, 2, 12))
    text = str(info.value)
    assert "torch.fx cannot trace it (TraceError" in text and "nor torch.export (non-strict" in text, text
