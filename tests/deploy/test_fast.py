"""soi.deploy.fast: BatchNorm folding, the flat-tensor step graph, the static schedule, and FastStreamer ==
the plain eager step (the reference) for STMC, strided, look-ahead, S-CC, SS-CC (FP) models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import soi
from soi.deploy.fast import FastStreamer, StepGraph, discover_schedule, fold_batchnorm, schedule_key
from soi.core.state import state_tensors

F = 17


def _randomize_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def unet_like(lookahead: int = 0, time_stride: int = 1) -> soi.Sequential:
    """A 2-level U-Net from the core layers: strided-in-frequency encoders, tSTMC decoders, a
    concatenated skip; optionally a time-strided middle (no upsampler: a strided network)."""
    torch.manual_seed(0)
    inner = soi.Sequential(
        soi.STMCConv2d(4, 8, (2, 3), stride=(1, 2), padding=1, frame_size=(9,)),
        nn.BatchNorm2d(8),
        nn.ELU(),
        soi.STMCConvTranspose2d(8, 4, (2, 3), stride=(1, 2), padding=1, frame_size=(5,), groups=2),
        nn.BatchNorm2d(4),
        nn.ELU(),
    )
    net = soi.Sequential(
        soi.STMCConv2d(2, 4, (3, 3), stride=(1, 2), padding=1, lookahead=lookahead, frame_size=(F,)),
        nn.BatchNorm2d(4),
        nn.ELU(),
        soi.Concat(nn.Identity(), inner),
        soi.STMCConvTranspose2d(8, 2, (2, 3), stride=(1, 2), padding=1, frame_size=(9,)),
        soi.STMCConv2d(2, 2, (2, 1), stride=(time_stride, 1), frame_size=(F,)),
    )
    return _randomize_bn(net).double().eval()


def _stream_reference(model, x):
    state = model.init_state(x.shape[0], dtype=x.dtype)
    ys = []
    with torch.no_grad():
        for t in range(x.shape[2]):
            y, state = model.step(x[:, :, t : t + 1], state)
            ys.append(y)
    return torch.cat(ys, dim=2)


def _stream_fast(fs, x, prepare_between=True):
    ys = []
    for t in range(x.shape[2]):
        if prepare_between:
            fs.prepare()
        ys.append(fs.step(x[:, :, t : t + 1]))
    return torch.cat(ys, dim=2)


def _x(t=23, b=2, c=2, f=F, seed=0):
    return torch.randn(b, c, t, f, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("groups", [1, 2])
def test_fold_batchnorm_is_exact_and_removes_batchnorm(groups):
    torch.manual_seed(1)
    net = soi.Sequential(
        soi.STMCConv2d(4, 6, (2, 3), padding=1, groups=groups),
        nn.BatchNorm2d(6),
        soi.STMCConvTranspose2d(6, 4, (3, 3), padding=1, groups=groups, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
    )
    net = _randomize_bn(net).double().eval()
    folded = fold_batchnorm(net)
    x = _x(c=4)
    with torch.no_grad():
        assert (folded(x) - net(x)).abs().max() < 1e-12
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules()), "the original must be left untouched"


def test_fold_batchnorm_refuses_training_mode_batchnorm_only_when_asked_inplace():
    net = soi.Sequential(soi.STMCConv1d(2, 2, 2), nn.BatchNorm1d(2)).train()
    folded = fold_batchnorm(net)  # a copy, switched to eval
    assert not folded.training and net.training


def test_schedule_shapes():
    stmc = discover_schedule(unet_like(), (1, 2, 1, F))
    assert (len(stmc.warmup), len(stmc.cycle)) == (0, 1)
    strided = discover_schedule(unet_like(time_stride=2), (1, 2, 1, F))
    assert (len(strided.warmup), len(strided.cycle)) == (0, 2)
    ahead = discover_schedule(unet_like(lookahead=2), (1, 2, 1, F))
    assert (len(ahead.warmup), len(ahead.cycle)) == (2, 1)
    assert [p.kind for p in ahead.cycle] == ["step"]
    # chunks of 3 frames at stride 2: phases 0, 1 alternate
    three = discover_schedule(unet_like(time_stride=2), (1, 2, 3, F))
    assert len(three.cycle) == 2


def test_schedule_key_ignores_values_not_shapes():
    m = unet_like()
    s = m.init_state(1)
    _, s2 = m.step(_x(t=1, b=1), s)
    assert schedule_key(s) == schedule_key(s2)
    assert schedule_key(m.init_state(1)) != schedule_key(m.init_state(2))


@pytest.mark.parametrize(
    "kwargs, backend",
    [({}, "eager"), ({}, "graph"), ({"lookahead": 2}, "graph"), ({"time_stride": 2}, "eager"), ({"lookahead": 2}, "export"), ({"time_stride": 2}, "script")],
)
def test_fast_streamer_equals_plain_step(kwargs, backend):
    model = unet_like(**kwargs)
    x = _x()
    ref = _stream_reference(model, x)
    fs = FastStreamer(model, (2, 2, 1, F), backend=backend)
    got = _stream_fast(fs, x)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < 1e-10, f"{backend} {kwargs}: differs by {(got - ref).abs().max():.2e}"
    fs.reset()
    again = _stream_fast(fs, x)
    assert (again - got).abs().max() == 0


def test_fast_streamer_state_round_trips_to_the_soi_state():
    model = unet_like(time_stride=2)
    fs = FastStreamer(model, (1, 2, 1, F), backend="graph", fold_bn=False)
    x = _x(t=5, b=1)
    _stream_fast(fs, x)
    state = model.init_state(1, dtype=torch.float64)
    for t in range(5):
        _, state = model.step(x[:, :, t : t + 1], state)
    for (n1, a), (n2, b) in zip(state_tensors(fs.state), state_tensors(state)):
        assert n1 == n2 and torch.equal(a, b)
    assert schedule_key(fs.state)[1:] == schedule_key(state)[1:]


def test_step_graph_exports_with_torch_export():
    model = fold_batchnorm(unet_like())
    state = model.init_state(1, dtype=torch.float64)
    graph = StepGraph(model, state)
    x = _x(t=1, b=1)
    args = (x, *[t for _, t in state_tensors(state)])
    ep = torch.export.export(graph, args, strict=False)
    out = ep.module()(*args)
    ref = graph(*args)
    assert len(out) == len(ref) == 1 + len(graph.in_names)
    assert all(torch.equal(a, b) for a, b in zip(out, ref))


def test_fast_streamer_refuses_wrong_chunks_and_training_mode():
    model = unet_like()
    fs = FastStreamer(model, (1, 2, 1, F), backend="graph")
    with pytest.raises(ValueError, match="expected a chunk of shape"):
        fs.step(_x(t=2, b=1))
    with pytest.raises(ValueError, match="training mode"):
        FastStreamer(model.train(), (1, 2, 1, F))


# -- the SOI U-Net: S-CC (PP) and SS-CC (FP, prepare phases) ------------------------------------------

TINY = {"freq_bins": 33, "in_channels": 2, "out_channels": 2, "channels": [4, 8, 8], "kernel": [2, 5], "freq_stride": 2, "lookahead": 0}


def _unet(pattern: str, **kw):
    unet = pytest.importorskip("soi.models.unet")
    torch.manual_seed(3)
    return _randomize_bn(unet.UNet(unet.UNetConfig(**TINY), pattern, **kw)).double().eval()


@pytest.mark.parametrize("pattern", ["STMC", "S-CC 2", "S-CC 1", "2xS-CC 1 2", "SS-CC 2", "SS-CC 1 3"])
def test_fast_streamer_unet_patterns(pattern):
    model = _unet(pattern)
    x = _x(t=19, f=33)
    ref = _stream_reference(model, x)
    sched = discover_schedule(model, (2, 2, 1, 33))
    has_prepare = any(p.kind == "prepare" for p in sched.cycle)
    assert has_prepare == pattern.startswith("SS-CC")
    backends = {"S-CC 2": ("graph", "export"), "SS-CC 1 3": ("graph", "script")}.get(pattern, ("graph",))
    for backend in backends:
        fs = FastStreamer(model, (2, 2, 1, 33), backend=backend)
        for between in (True, False):  # prepare() between frames, or left to step()
            fs.reset()
            got = _stream_fast(fs, x, prepare_between=between)
            assert (got - ref).abs().max() < 1e-10, f"{pattern} {backend}: {(got - ref).abs().max():.2e}"


@pytest.mark.parametrize("backend", ["graph", "export", "script"])
def test_fast_streamer_updates_its_state_buffers_in_place(backend):
    """A compiled stream keeps every state tensor of a PP pattern in one buffer for its whole life
    (the graphs update them in place); the outputs equal the functional stream's and the plain
    step's; ``state`` hands out copies; an earlier output survives later calls."""
    model = _unet("S-CC 1")
    x = _x(t=13, f=33)
    ref = _stream_reference(model, x)
    fs = FastStreamer(model, (2, 2, 1, 33), backend=backend)
    names = {n for n, _ in state_tensors(fs.schedule.initial)}
    assert fs.buffered == names, f"not buffered: {sorted(names - fs.buffered)}"
    where = {n: b.data_ptr() for n, b in fs._buffers.items()}
    first = fs.step(x[:, :, :1])
    kept = first.clone()
    rest = [fs.step(x[:, :, t : t + 1]) for t in range(1, x.shape[2])]
    assert {n: b.data_ptr() for n, b in fs._buffers.items()} == where
    assert torch.equal(first, kept), "an output changed after later calls"
    got = torch.cat([first, *rest], dim=2)
    assert (got - ref).abs().max() < 1e-10, f"{backend}: {(got - ref).abs().max():.2e}"
    functional = FastStreamer(model, (2, 2, 1, 33), backend=backend, inplace=False)
    assert functional.buffered == set()
    assert (_stream_fast(functional, x) - got).abs().max() < 1e-12
    before = {n: b.clone() for n, b in fs._buffers.items()}
    for _, t in state_tensors(fs.state):
        t.add_(1.0)
    assert all(torch.equal(before[n], b) for n, b in fs._buffers.items()), "state must be a copy"


def test_fast_streamer_holds_no_reference_to_a_chunk():
    """The bound calls reuse one argument list per phase; the caller's chunk must not stay in it
    (a stream would otherwise keep the last input of each phase alive)."""
    import gc
    import weakref

    fs = FastStreamer(_unet("S-CC 1"), (2, 2, 1, 33), backend="graph")
    chunks = [torch.randn(2, 2, 1, 33, dtype=torch.float64) for _ in range(3)]
    refs = [weakref.ref(c) for c in chunks]
    for c in chunks:
        fs.step(c)
    del chunks, c
    gc.collect()
    assert all(r() is None for r in refs), "a chunk is still referenced after its step"


def test_fast_streamer_passes_an_fp_patterns_pending_output():
    """FP: the output prepared between frames exists only between ``prepare`` and ``step``, so it
    is passed in and out; every other state tensor is buffered, and the stream is exact."""
    from soi.deploy.fast import inplace_names

    model = _unet("SS-CC 2")
    fs = FastStreamer(model, (2, 2, 1, 33), backend="graph")
    phases = [*fs.schedule.warmup, *fs.schedule.cycle]
    everywhere = set.intersection(*({n for n, _ in state_tensors(p.in_template)} for p in phases))
    sometimes = set.union(*({n for n, _ in state_tensors(p.in_template)} for p in phases)) - everywhere
    assert sometimes, "an FP schedule has a tensor that comes and goes"
    assert fs.buffered == inplace_names(fs.schedule) and not (sometimes & fs.buffered)
    assert fs.buffered, "the rest is buffered"
    x = _x(t=15, f=33)
    assert (_stream_fast(fs, x) - _stream_reference(model, x)).abs().max() < 1e-10


def test_fast_streamer_exact_strided_mode():
    model = _unet("S-CC 2", strided_mode="stmc")
    x = _x(t=11, f=33)
    ref = _stream_reference(model, x)
    got = _stream_fast(FastStreamer(model, (2, 2, 1, 33), backend="export"), x)
    assert (got - ref).abs().max() < 1e-10


@pytest.mark.parametrize("orientation", ["rows", "channels"])
@pytest.mark.parametrize("target", ["torch", "inductor", "onnx"])
def test_lean_matmul_and_polyphase_ops_are_exact(monkeypatch, target, orientation):
    """Every layer through the im2col + matrix product path (forced with a zero size threshold; the
    product in either orientation) and every strided tSTMC through the polyphase convolution: same
    outputs as the plain model."""
    import soi.deploy.fast as fast

    monkeypatch.setattr(fast, "MATMUL_MIN_WEIGHTS", 0)
    monkeypatch.setattr(fast, "CHANNEL_MAJOR_MAX_OUT", 0 if orientation == "rows" else 64)
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
    nets = [net.double().eval() for net in nets]
    taps = {True: 0, False: 0}
    for net in [*nets, unet_like(time_stride=2)]:
        x = _x(t=9) if net[0].in_channels == 2 else _x(t=9, c=3, f=11)
        fast_net = fast.lean(net, target=target)
        modules = fast._all_modules(fast_net)
        if net is not nets[-1]:
            assert any(hasattr(m, "_lean_poly") for m in modules)
        if target != "onnx":
            assert any(getattr(m, "_lean_matmul", False) for m in modules)
            for m in modules:
                if getattr(m, "_lean_matmul", False):
                    taps[m._lean_taps is not None] += 1
        with torch.no_grad():
            for xb in (x, x[:1]):  # a batch of streams and one stream (a different product)
                assert (fast_net(xb) - net(xb)).abs().max() < 1e-10, f"{target} {orientation} B={len(xb)}"
                ref = _stream_reference(net, xb)
                got = _stream_reference(fast_net, xb)
                assert (got - ref).abs().max() < 1e-10, f"{target} {orientation} B={len(xb)} streamed"
    if target != "onnx":
        assert taps[True] and taps[False], f"{target}: both product forms exercised: {taps}"
    # a batch of streams through the matrix-product path
    fs = FastStreamer(unet_like(), (2, 2, 1, F))  # the default backend, "script"
    x = _x(t=6)
    assert (_stream_fast(fs, x) - _stream_reference(unet_like(), x)).abs().max() < 1e-10


def test_lean_rejects_unknown_targets():
    with pytest.raises(ValueError, match="'torch', 'inductor', 'onnx'"):
        soi.deploy.fast.lean(unet_like(), target="tflite")


@pytest.mark.skipif(soi.deploy.fast._cxx_compiler() is None, reason="AOTInductor needs a C++ compiler")
def test_fast_streamer_aoti_equals_plain_step(tmp_path):
    """AOTInductor: each phase compiled to a C++ library (the slowest test here, ~30 s: two phases).
    Chunks are non-contiguous slices, and state tensors are fed back as inputs, so a graph that
    assumed its example's strides would drift after the first frame."""
    model = _unet("S-CC 2")
    x = _x(t=9, f=33)
    ref = _stream_reference(model, x)
    fs = FastStreamer(model, (2, 2, 1, 33), backend="aoti", build_dir=tmp_path)
    got = _stream_fast(fs, x)
    assert (got - ref).abs().max() < 1e-10, f"aoti differs by {(got - ref).abs().max():.2e}"
    assert sorted(p.name for p in tmp_path.glob("*.pt2")) == ["g0.pt2", "g1.pt2"]
    fs.reset()
    assert torch.equal(_stream_fast(fs, x), got)


def test_fast_streamer_aoti_without_a_compiler_says_so(monkeypatch):
    monkeypatch.setattr(soi.deploy.fast, "_cxx_compiler", lambda: None)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler"):
        FastStreamer(unet_like(), (1, 2, 1, F), backend="aoti")
