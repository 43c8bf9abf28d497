"""Timing composition with upsampling: ``Timing.then`` and ``Clock.after`` against the definition
(group ``j`` of ``upsample`` frames, the first ``lead`` short, produced at input ``stride*j + delay``)
composed frame by frame."""

from __future__ import annotations

import itertools

import pytest

from soi.core.timing import Clock, Timing


def _arrival(t: Timing, o: int) -> int:
    """The input frame at which output frame ``o`` of a module of timing ``t`` is produced."""
    return t.stride * ((o + t.lead) // t.upsample) + t.delay


def _timings():
    for s, d, u in itertools.product((1, 2, 3, 4), (0, 1, 3), (1, 2, 4)):
        for lead in {0, u - 1}:
            yield Timing(1, d, s, u, lead)


PAIRS = [(a, b) for a, b in itertools.product(list(_timings()), repeat=2) if b.stride % a.upsample == 0 or a.upsample % b.stride == 0]


@pytest.mark.parametrize("a, b", PAIRS[::41], ids=lambda t: f"s{t.stride}d{t.delay}u{t.upsample}l{t.lead}")
def test_then_produces_every_frame_when_the_definition_says(a, b):
    both = a.then(b)
    for o in range(48):
        want = _arrival(a, _arrival(b, o))
        assert _arrival(both, o) == want, f"{a} then {b} = {both}: output {o} at input {_arrival(both, o)}, by definition {want}"


@pytest.mark.parametrize("a, b", PAIRS[::41], ids=lambda t: f"s{t.stride}d{t.delay}u{t.upsample}l{t.lead}")
def test_clock_after_counts_the_frames_that_arrive(a, b):
    clock = Clock().after(a).after(b)
    arrivals = [_arrival(a, _arrival(b, o)) for o in range(200)]
    for t in range(arrivals[0], arrivals[40]):
        assert clock.runs(t) == arrivals.count(t), f"{a} then {b}: frame {t} gets {clock.runs(t)} frames, by definition {arrivals.count(t)}"


def test_then_without_upsampling_is_the_old_arithmetic():
    a, b = Timing(5, 2, 2), Timing(3, 1, 3)
    assert a.then(b) == Timing(5 + 2 * 2, 2 + 2 * 1, 6)


def test_irregular_groups_are_refused():
    with pytest.raises(ValueError, match="2 output frames per step followed by a time stride 3"):
        Timing(upsample=2).then(Timing(stride=3))


@pytest.mark.parametrize("t", [Timing(1, 3, 2, 4, 1), Timing(1, 1, 1, 2, 0), Timing(1, 4, 2, 1, 0)], ids=str)
def test_frames_for_lag_delays_the_output_by_that_many_input_frames(t):
    from soi import DelayLine

    frames = t.frames_for_lag(2 * t.stride)
    delayed = t.then(DelayLine(frames).timing)
    assert (delayed.stride, delayed.upsample, delayed.lead, delayed.delay) == (t.stride, t.upsample, t.lead, t.delay + 2 * t.stride), (
        t,
        frames,
        delayed,
    )
    assert t.frames_for_lag(1) is None if t.stride > 1 else True
