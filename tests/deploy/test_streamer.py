"""soi.deploy.streamer: FastStreamer == the plain eager step (the reference) for STMC, strided,
look-ahead, S-CC, SS-CC (FP) models, in every backend; its state buffers, updated in place."""

from __future__ import annotations

import pytest
import torch
from streams import F, stream_fast, stream_reference, tiny_unet, unet_like, x2d

import soi
from soi.core.state import schedule_key, state_tensors
from soi.deploy import FastStreamer, discover_schedule
from soi.deploy.graph import inplace_names


@pytest.mark.parametrize(
    "kwargs, backend",
    [({}, "eager"), ({}, "graph"), ({"lookahead": 2}, "graph"), ({"time_stride": 2}, "eager"), ({"lookahead": 2}, "export"), ({"time_stride": 2}, "script")],
)
def test_fast_streamer_equals_plain_step(kwargs, backend):
    model = unet_like(**kwargs)
    x = x2d()
    ref = stream_reference(model, x)
    fs = FastStreamer(model, (2, 2, 1, F), backend=backend)
    got = stream_fast(fs, x)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < 1e-10, f"{backend} {kwargs}: differs by {(got - ref).abs().max():.2e}"
    fs.reset()
    again = stream_fast(fs, x)
    assert (again - got).abs().max() == 0


def test_fast_streamer_state_round_trips_to_the_soi_state():
    model = unet_like(time_stride=2)
    fs = FastStreamer(model, (1, 2, 1, F), backend="graph", fold_bn=False)
    x = x2d(t=5, b=1)
    stream_fast(fs, x)
    state = model.init_state(1, dtype=torch.float64)
    for t in range(5):
        _, state = model.step(x[:, :, t : t + 1], state)
    for (n1, a), (n2, b) in zip(state_tensors(fs.state), state_tensors(state)):
        assert n1 == n2 and torch.equal(a, b)
    assert schedule_key(fs.state)[1:] == schedule_key(state)[1:]


def test_fast_streamer_refuses_wrong_chunks_and_training_mode():
    model = unet_like()
    fs = FastStreamer(model, (1, 2, 1, F), backend="graph")
    with pytest.raises(ValueError, match="expected a chunk of shape"):
        fs.step(x2d(t=2, b=1))
    with pytest.raises(ValueError, match="training mode"):
        FastStreamer(model.train(), (1, 2, 1, F))


@pytest.mark.parametrize("pattern", ["STMC", "S-CC 2", "S-CC 1", "2xS-CC 1 2", "SS-CC 2", "SS-CC 1 3"])
def test_fast_streamer_unet_patterns(pattern):
    model = tiny_unet(pattern)
    x = x2d(t=19, f=33)
    ref = stream_reference(model, x)
    sched = discover_schedule(model, (2, 2, 1, 33))
    has_prepare = any(p.kind == "prepare" for p in sched.cycle)
    assert has_prepare == pattern.startswith("SS-CC")
    backends = {"S-CC 2": ("graph", "export"), "SS-CC 1 3": ("graph", "script")}.get(pattern, ("graph",))
    for backend in backends:
        fs = FastStreamer(model, (2, 2, 1, 33), backend=backend)
        for between in (True, False):  # prepare() between frames, or left to step()
            fs.reset()
            got = stream_fast(fs, x, prepare_between=between)
            assert (got - ref).abs().max() < 1e-10, f"{pattern} {backend}: {(got - ref).abs().max():.2e}"


@pytest.mark.parametrize("backend", ["graph", "export", "script"])
def test_fast_streamer_updates_its_state_buffers_in_place(backend):
    """A compiled stream keeps every state tensor of a PP pattern in one buffer for its whole life
    (the graphs update them in place); the outputs equal the functional stream's and the plain
    step's; ``state`` hands out copies; an earlier output survives later calls."""
    model = tiny_unet("S-CC 1")
    x = x2d(t=13, f=33)
    ref = stream_reference(model, x)
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
    assert (stream_fast(functional, x) - got).abs().max() < 1e-12
    before = {n: b.clone() for n, b in fs._buffers.items()}
    for _, t in state_tensors(fs.state):
        t.add_(1.0)
    assert all(torch.equal(before[n], b) for n, b in fs._buffers.items()), "state must be a copy"


def test_fast_streamer_holds_no_reference_to_a_chunk():
    """The bound calls reuse one argument list per phase; the caller's chunk must not stay in it
    (a stream would otherwise keep the last input of each phase alive)."""
    import gc
    import weakref

    fs = FastStreamer(tiny_unet("S-CC 1"), (2, 2, 1, 33), backend="graph")
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
    model = tiny_unet("SS-CC 2")
    fs = FastStreamer(model, (2, 2, 1, 33), backend="graph")
    phases = [*fs.schedule.warmup, *fs.schedule.cycle]
    everywhere = set.intersection(*({n for n, _ in state_tensors(p.in_template)} for p in phases))
    sometimes = set.union(*({n for n, _ in state_tensors(p.in_template)} for p in phases)) - everywhere
    assert sometimes, "an FP schedule has a tensor that comes and goes"
    assert fs.buffered == inplace_names(fs.schedule) and not (sometimes & fs.buffered)
    assert fs.buffered, "the rest is buffered"
    x = x2d(t=15, f=33)
    assert (stream_fast(fs, x) - stream_reference(model, x)).abs().max() < 1e-10


def test_fast_streamer_exact_strided_mode():
    model = tiny_unet("S-CC 2", strided_mode="stmc")
    x = x2d(t=11, f=33)
    ref = stream_reference(model, x)
    got = stream_fast(FastStreamer(model, (2, 2, 1, 33), backend="export"), x)
    assert (got - ref).abs().max() < 1e-10


@pytest.mark.skipif(soi.deploy.streamer._cxx_compiler() is None, reason="AOTInductor needs a C++ compiler")
def test_fast_streamer_aoti_equals_plain_step(tmp_path):
    """AOTInductor: each phase compiled to a C++ library (the slowest test here, ~30 s: two phases).
    Chunks are non-contiguous slices, and state tensors are fed back as inputs, so a graph that
    assumed its example's strides would drift after the first frame."""
    model = tiny_unet("S-CC 2")
    x = x2d(t=9, f=33)
    ref = stream_reference(model, x)
    fs = FastStreamer(model, (2, 2, 1, 33), backend="aoti", build_dir=tmp_path)
    got = stream_fast(fs, x)
    assert (got - ref).abs().max() < 1e-10, f"aoti differs by {(got - ref).abs().max():.2e}"
    assert sorted(p.name for p in tmp_path.glob("*.pt2")) == ["g0.pt2", "g1.pt2"]
    fs.reset()
    assert torch.equal(stream_fast(fs, x), got)


def test_fast_streamer_aoti_without_a_compiler_says_so(monkeypatch):
    monkeypatch.setattr(soi.deploy.streamer, "_cxx_compiler", lambda: None)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler"):
        FastStreamer(unet_like(), (1, 2, 1, F), backend="aoti")
