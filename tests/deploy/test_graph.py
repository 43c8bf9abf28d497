"""soi.deploy.graph: the static schedule of a stream (warm-up, cycle) and the flat-tensor step graph that
torch.export takes."""

from __future__ import annotations

import torch
from streams import F, unet_like, x2d

from soi.core.state import schedule_key, state_tensors
from soi.deploy import StepGraph, discover_schedule, fold_batchnorm


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
    _, s2 = m.step(x2d(t=1, b=1), s)
    assert schedule_key(s) == schedule_key(s2)
    assert schedule_key(m.init_state(1)) != schedule_key(m.init_state(2))


def test_step_graph_exports_with_torch_export():
    model = fold_batchnorm(unet_like())
    state = model.init_state(1, dtype=torch.float64)
    graph = StepGraph(model, state)
    x = x2d(t=1, b=1)
    args = (x, *[t for _, t in state_tensors(state)])
    ep = torch.export.export(graph, args, strict=False)
    out = ep.module()(*args)
    ref = graph(*args)
    assert len(out) == len(ref) == 1 + len(graph.in_names)
    assert all(torch.equal(a, b) for a, b in zip(out, ref))
