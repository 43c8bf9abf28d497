"""soi.core.schedule: the schedule derived from the modules' declared clocks equals the calls a real
stream makes, frame by frame (counted by wrapping every leaf's step), for every U-Net pattern in both
strided modes; nothing behind a stride is called on a skipped frame; the deployment's discovered
phases agree with the derived cycle."""

from __future__ import annotations

import pytest
import torch

import soi
from soi.core.schedule import derive_schedule
from soi.deploy import discover_schedule
from soi.models import UNet
from soi.core.window import TemporalWindow
from soi.scattered import Upsampler
from tests.unet_cases import PATTERNS, TINY, TINY_LOOKAHEAD



def _cases() -> list:
    cases = []
    for mode in ("soi", "stmc"):
        for config, tag in ((TINY, ""), (TINY_LOOKAHEAD, "-lookahead")):
            for p in PATTERNS:
                try:
                    UNet(config, p, strided_mode=mode)
                except ValueError:  # e.g. look-ahead in a time-strided first layer: refused by design
                    continue
                cases.append(pytest.param(config, p, mode, id=f"{p}-{mode}{tag}"))
    return cases


def record_calls(model: soi.StreamingModule, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap the step of every leaf of the schedule (and the operation of window layers and
    upsamplers, which STMC's exact pair calls directly) so that each call appends the leaf's path
    to the list."""
    log: list[str] = []
    _, works = model.works(model.input_frame_shape, soi.core.timing.Clock())
    leaves = {id(w.module) for w in works}
    for path, m in model.named_modules():
        if id(m) not in leaves:
            continue
        names = ("step", "combine") if isinstance(m, Upsampler) else ("step", "window_op") if isinstance(m, TemporalWindow) else ("step",)
        for name in names:
            original = getattr(m, name)

            def wrapped(*args, _f=original, _p=path, **kwargs):
                log.append(_p)
                return _f(*args, **kwargs)

            monkeypatch.setattr(m, name, wrapped)
    return log


@pytest.mark.parametrize("config,pattern,mode", _cases())
def test_derived_schedule_is_what_a_stream_calls(config, pattern, mode, monkeypatch):
    model = UNet(config, pattern, strided_mode=mode).eval()
    sched = derive_schedule(model)
    log = record_calls(model, monkeypatch)
    state = model.init_state(1)
    x = torch.zeros(1, config.in_channels, 1, config.freq_bins)
    frames = sched.warmup + 2 * sched.period
    with torch.no_grad():
        for t in range(frames):
            del log[:]
            _, state = model.step(x, state)
            stepped = set(log)
            del log[:]
            state = model.prepare(state)
            prepared = set(log)
            plan = sched.at(t)
            assert stepped == set(plan.step), (
                f"{pattern} ({mode}) frame {t}: called on arrival but not scheduled {sorted(stepped - set(plan.step))}, "
                f"scheduled but not called {sorted(set(plan.step) - stepped)}"
            )
            assert prepared == set(plan.prepare), (
                f"{pattern} ({mode}) frame {t}: called in prepare but not scheduled {sorted(prepared - set(plan.prepare))}, "
                f"scheduled but not called {sorted(set(plan.prepare) - prepared)}"
            )


def test_nothing_behind_the_stride_is_called_on_a_skipped_frame(monkeypatch):
    model = UNet(TINY, "S-CC 2").eval()
    pair = next(p for p, m in model.named_modules() if isinstance(m, soi.SCCPair))
    strided = f"{pair}.inner.layers.0"
    log = record_calls(model, monkeypatch)
    _, works = model.works(model.input_frame_shape, soi.core.timing.Clock())
    names = {id(m): p for p, m in model.named_modules()}
    behind = {names[id(w.module)] for w in works if names[id(w.module)].startswith(f"{pair}.inner.")} - {strided}
    assert len(behind) > 10, behind
    state = model.init_state(1)
    x = torch.zeros(1, 2, 1, TINY.freq_bins)
    with torch.no_grad():
        for t in range(6):
            del log[:]
            _, state = model.step(x, state)
            called = set(log)
            assert strided in called, f"frame {t}: the strided layer keeps its shift register on every frame"
            if t % 2:
                assert not called & behind, f"frame {t} (skipped): called behind the stride: {sorted(called & behind)}"
            else:
                assert behind <= called, f"frame {t}: deep layers not called: {sorted(behind - called)}"


@pytest.mark.parametrize("config,pattern,mode", _cases())
def test_derived_cycle_agrees_with_the_discovered_phases(config, pattern, mode):
    model = UNet(config, pattern, strided_mode=mode).eval()
    sched = derive_schedule(model)
    found = discover_schedule(model, (1, config.in_channels, 1, config.freq_bins))
    per_frame = 2 if found.cycle and found.cycle[0].kind == "prepare" else 1
    assert (per_frame == 2) == sched.prepare, f"{pattern} ({mode}): prepare phases {per_frame == 2}, derived {sched.prepare}"
    cycle_frames = len(found.cycle) // per_frame
    assert sched.period % cycle_frames == 0, f"{pattern} ({mode}): derived period {sched.period}, discovered cycle {cycle_frames}"
    assert len(found.warmup) // per_frame <= sched.warmup + sched.period, (
        f"{pattern} ({mode}): the discovered warm-up ({len(found.warmup) // per_frame} frames) outlasts the derived one"
    )


def test_print_shows_the_real_graph():
    text = str(UNet(TINY, "S-CC 2"))
    for name in ("SCCPair", "Concat", "Duplicate", "STMCConv2d", "STMCConvTranspose2d", "BatchNorm2d", "ELU"):
        assert name in text, f"print(UNet(..., 'S-CC 2')) does not show a {name}"
    # a latency-adding upsampler: the skip connection's alignment delay is shown too
    assert "DelayLine" in str(UNet(TINY, "S-CC 2", upsampler="linear"))
    model = UNet(TINY, "SS-CC 2")
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"SC", "SCCPair", "Concat", "Duplicate"} <= kinds, kinds
