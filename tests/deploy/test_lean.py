"""soi.deploy.lean: the lean layers equal the plain step in float64 (1-d dilated and strided, 2-d im2col,
taps and polyphase, 3-d, pooling and delays) for every target, offline, streamed, and through a
compiled stream; lean() swaps registered modules and patches no instance."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from streams import randomize_bn, rand, stream_fast, stream_reference, unet_like, x2d
from torch import nn

import soi
from soi.core.state import schedule_key
from soi.deploy import FastStreamer, lean
from soi.deploy.lean import LeanConv, LeanConvTranspose, LeanWindow

L = importlib.import_module("soi.deploy.lean")  # the module: soi.deploy.lean is the function
TARGETS = ("torch", "inductor", "onnx")


def stack1d() -> soi.Sequential:
    """Dilated, time-strided, look-ahead, grouped and transposed 1-d layers, pooling and the
    alignment delay of a concatenation."""
    torch.manual_seed(11)
    net = soi.Sequential(
        soi.STMCConv1d(3, 6, 3),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        soi.STMCConv1d(6, 6, 3, dilation=4),
        nn.ReLU(),
        soi.Concat(nn.Identity(), soi.STMCConv1d(6, 4, 3, dilation=2, lookahead=2)),
        soi.STMCMaxPool1d(10, 2),
        soi.STMCConv1d(10, 4, 2, dilation=3, stride=2, groups=2),
        soi.STMCConvTranspose1d(4, 4, 2, dilation=2),
        soi.STMCAvgPool1d(4, 3),
        soi.STMCConv1d(4, 2, 3, dilation=5),
    )
    return randomize_bn(net).double().eval()


def stack2d() -> list[soi.Sequential]:
    """Every 2-d product form: strided and stride-1 (taps) convolutions, polyphase tSTMC in both
    forms, time and frequency dilation."""
    torch.manual_seed(5)
    nets = []
    for k, s, p, op in [(5, 2, 2, 0), (5, 2, 2, 1), (3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 2, 2), (3, 3, 0, 0)]:
        up = soi.STMCConvTranspose2d(3, 3, (2, k), stride=(1, s), padding=p, output_padding=op)
        nets.append(soi.Sequential(up, soi.STMCConv2d(3, 3, (2, k), stride=(1, s), padding=p)))
        # 6 -> 2 channels: the polyphase tSTMC in the taps form (C_out < C_in*k_t)
        down = soi.STMCConv2d(3, 6, (2, k), stride=(1, s), padding=p)
        nets.append(soi.Sequential(down, soi.STMCConvTranspose2d(6, 2, (2, k), stride=(1, s), padding=p, output_padding=op)))
    # stride 1 in frequency: taps form, 3 frames (offline: several output frames per product)
    nets.append(soi.Sequential(soi.STMCConv2d(3, 6, (3, 3), padding=1), soi.STMCConv2d(6, 2, (2, 3), padding=1)))
    # dilation in time and frequency, a time-dilated polyphase tSTMC
    nets.append(
        soi.Sequential(
            soi.STMCConv2d(3, 6, (3, 3), padding=2, dilation=(2, 2)),
            soi.STMCConv2d(6, 2, (2, 3), padding=2, dilation=(3, 2)),
            soi.STMCConv2d(2, 4, (2, 3), stride=(2, 2), padding=1, dilation=(2, 1)),
            soi.STMCConvTranspose2d(4, 3, (3, 5), stride=(1, 2), padding=2, output_padding=1, dilation=(2, 1)),
        )
    )
    return [net.double().eval() for net in nets]


def stack3d(frame_size: tuple[int, int] | None = (7, 6)) -> soi.Sequential:
    """3-d im2col (stride 1 and 2) and taps layers, with spatial padding and dilation."""
    torch.manual_seed(13)
    net = soi.Sequential(
        soi.STMCConv3d(3, 16, 3, padding=1, frame_size=frame_size),
        nn.ReLU(),
        soi.STMCConv3d(16, 4, (2, 3, 3), padding=(1, 2), dilation=(2, 1, 2)),
        soi.STMCConv3d(4, 4, (2, 3, 3), stride=(1, 2, 2), padding=1),
        nn.ReLU(),
        soi.STMCConv3d(4, 2, (3, 1, 3), stride=(2, 1, 1), padding=(0, 1)),
    )
    return net.double().eval()


def _x(net: nn.Module, t: int = 9, b: int = 2) -> torch.Tensor:
    first = next(m for m in net.modules() if isinstance(m, soi.STMCConvNd) or isinstance(m, soi.STMCConvTransposeNd))
    rest = first.frame_size if first.frame_size is not None else {1: (), 2: (11,), 3: (7, 6)}[first.dims]
    return rand(b, first.in_channels, t, *rest)


def _assert_lean_equal(net: nn.Module, fast: nn.Module, what: str) -> None:
    x = _x(net)
    with torch.no_grad():
        for xb in (x, x[:1]):  # a batch of streams and one stream (a different product)
            assert (fast(xb) - net(xb)).abs().max() < 1e-10, f"{what} B={len(xb)} offline"
            ref = stream_reference(net, xb)
            got = stream_reference(fast, xb)
            assert (got - ref).abs().max() < 1e-10, f"{what} B={len(xb)} streamed"


def _forms(model: nn.Module) -> set[str]:
    return {m.form for m in model.modules() if isinstance(m, (LeanConv, LeanConvTranspose))}


@pytest.mark.parametrize("orientation", ["rows", "channels"])
@pytest.mark.parametrize("target", TARGETS)
def test_lean_forms_equal_the_plain_step(monkeypatch, target, orientation):
    """Every convolution through the product (a zero size threshold for the torch target's 2-d
    layers; the product in either orientation) and every frequency-strided tSTMC through the
    polyphase convolution: the same outputs as the plain model, 1-d, 2-d and 3-d."""
    monkeypatch.setattr(L, "MATMUL_MIN_WEIGHTS", 0)
    monkeypatch.setattr(L, "CHANNEL_MAJOR_MAX_OUT", 0 if orientation == "rows" else 64)
    nets = [stack1d(), *stack2d(), unet_like(time_stride=2), stack3d()]
    seen: set[str] = set()
    for i, net in enumerate(nets):
        fast = lean(net, target=target)
        seen |= _forms(fast)
        _assert_lean_equal(net, fast, f"{target} {orientation} net {i}")
    if target == "onnx":
        assert seen == {"conv", "polyphase-conv", "transposed"}
    else:
        assert {"im2col", "taps", "polyphase", "conv", "transposed"} <= seen, seen


def test_lean_choices_per_target():
    """The torch target keeps ATen for small non-dilated 2-d layers and runs dilated, 1-d and 3-d
    layers as products; the inductor target runs every ungrouped layer as a product; onnx none."""
    net = soi.Sequential(
        soi.STMCConv2d(2, 4, (2, 3), padding=1),
        soi.STMCConv2d(4, 4, (2, 3), padding=1, dilation=(2, 1)),
        soi.STMCConvTranspose2d(4, 2, (2, 3), stride=(1, 2), padding=1),
    ).eval()
    forms = {t: [m.form for m in lean(net, target=t).layers] for t in TARGETS}
    assert forms == {
        "torch": ["conv", "taps", "transposed"],
        "inductor": ["im2col", "taps", "polyphase"],
        "onnx": ["conv", "conv", "polyphase-conv"],
    }
    assert [m.form for m in lean(stack1d(), target="torch").modules() if isinstance(m, LeanConv)] == ["im2col"] * 3 + ["conv", "im2col"]
    assert {m.form for m in lean(stack3d(), target="torch").modules() if isinstance(m, LeanConv)} == {"im2col", "taps"}


def test_lean_swaps_registered_modules_and_patches_no_instance():
    net = stack1d()
    fast = lean(net)
    before = {name for name, _ in net.named_modules()}
    assert {name for name, _ in fast.named_modules()} == before, "same module tree"
    windows = [m for m in fast.modules() if isinstance(m, soi.core.window.TemporalWindow)]
    assert windows and all(isinstance(m, LeanWindow) for m in windows)
    for m in fast.modules():
        assert "step" not in vars(m) and "window_op" not in vars(m), type(m).__name__
        assert not any(k.startswith("_lean") for k in vars(m)), type(m).__name__
    text = repr(fast)
    for name in ("LeanConv(", "LeanConvTranspose(", "LeanSTMCMaxPool1d(", "LeanSTMCAvgPool1d(", "LeanDelayLine(", "lean='im2col'"):
        assert name in text, name
    assert not any(isinstance(m, LeanWindow) for m in net.modules()), "the original is left alone"
    # the same state layout and schedule: states move between the two
    assert schedule_key(fast.init_state(2)) == schedule_key(net.init_state(2))
    x = _x(net, t=5)
    y_fast, s_fast = fast.step(x, net.init_state(2, dtype=torch.float64))
    y_net, s_net = net.step(x, fast.init_state(2, dtype=torch.float64))
    assert (y_fast - y_net).abs().max() < 1e-10
    assert (net.step(x, s_fast)[0] - fast.step(x, s_net)[0]).abs().max() < 1e-10
    assert lean(fast) is not fast and _forms(lean(fast)) == _forms(fast), "lean of a lean model: a copy"


def test_lean_replaces_a_shared_layer_everywhere_and_a_bare_layer():
    conv = soi.STMCConv1d(2, 2, 3, dilation=2)
    net = soi.Sequential(soi.Residual(conv), conv).double().eval()
    fast = lean(net)
    assert fast.layers[1] is fast.layers[0].body and isinstance(fast.layers[1], LeanConv)
    _assert_lean_equal(net, fast, "shared")
    bare = soi.STMCConv1d(2, 3, 3, dilation=2).double().eval()
    assert isinstance(lean(bare), LeanConv)
    _assert_lean_equal(bare, lean(bare), "bare")


def test_a_lean_model_saves_loads_and_copies(tmp_path):
    # pooling and delays get classes made at run time (lean_class), which pickle cannot find by name
    net = stack1d()
    fast = lean(net)
    torch.save(fast, tmp_path / "lean.pt")
    loaded = torch.load(tmp_path / "lean.pt", weights_only=False)
    copied = copy.deepcopy(fast)
    for what, other in (("loaded", loaded), ("deep copy", copied)):
        assert [type(m) for m in other.modules()] == [type(m) for m in fast.modules()], what
        _assert_lean_equal(net, other, what)


@pytest.mark.parametrize("target", TARGETS)
def test_lean_forms_through_the_script_backend(target):
    """Each target's lean model exported and run by TorchScript, in a stream, equals the plain step
    (1-d and 3-d; the 2-d U-Net: test_streamer)."""
    for net, shape in ((stack1d(), (2, 3, 1)), (stack3d(frame_size=None), (2, 3, 1, 7, 6))):
        fs = FastStreamer(lean(net, target=target), shape, backend="script", fold_bn=False, lean_steps=False)
        x = _x(net, t=12)
        assert (stream_fast(fs, x) - stream_reference(net, x)).abs().max() < 1e-10, f"{target} {shape}"
    fs = FastStreamer(stack1d(), (2, 3, 1), backend="script")  # the streamer's own lean copy
    x = _x(stack1d(), t=12)
    assert (stream_fast(fs, x) - stream_reference(stack1d(), x)).abs().max() < 1e-10


@pytest.mark.skipif(soi.deploy.streamer._cxx_compiler() is None, reason="AOTInductor needs a C++ compiler")
def test_lean_3d_through_aoti(tmp_path):
    """AOTInductor on the inductor target's 3-d forms (im2col and taps with concatenated zero
    padding): one phase, one build."""
    torch.manual_seed(2)
    net = soi.Sequential(
        soi.STMCConv3d(2, 6, (2, 3, 3), padding=1, frame_size=(5, 4)), nn.ReLU(), soi.STMCConv3d(6, 2, (2, 3, 3), padding=1)
    ).double().eval()
    assert [m.form for m in lean(net, target="inductor").layers if isinstance(m, LeanConv)] == ["im2col", "taps"]
    fs = FastStreamer(net, (1, 2, 1, 5, 4), backend="aoti", build_dir=tmp_path)
    x = rand(1, 2, 6, 5, 4)
    assert (stream_fast(fs, x) - stream_reference(net, x)).abs().max() < 1e-10


def test_lean_rejects_unknown_targets():
    with pytest.raises(ValueError, match="'torch', 'inductor', 'onnx'"):
        lean(unet_like(), target="tflite")


def test_unet_lean_keeps_outputs():
    """The 2-d U-Net-like net with its BatchNorms folded, in the default size thresholds."""
    net = unet_like()
    x = x2d(t=6)
    for target in TARGETS:
        assert (stream_reference(lean(net, target=target), x) - stream_reference(net, x)).abs().max() < 1e-10
