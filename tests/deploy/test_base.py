"""soi.deploy.base: the phase lookup every streamer shares: warm-up calls once, then the cycle for
ever; a pending prepare runs before the step; reset restarts; calls counts both kinds."""

from __future__ import annotations

import pytest

from soi.deploy.base import PhaseStreamer


class _Recorder(PhaseStreamer):
    """Calls named by letter; prepares lower case."""

    def __init__(self, warmup: str, cycle: str) -> None:
        self.input_shape = (1, 1, 1)
        self.log: list[str] = []
        self.restarts = 0

        def call(name: str):
            def run(x):
                self.log.append(name)
                return None if name.islower() else (name, x)

            return name.islower(), run

        self._bind([call(c) for c in warmup], [call(c) for c in cycle], state_bytes=123)
        self.reset()

    def _restart(self) -> None:
        self.restarts += 1


class _Chunk:
    shape = (1, 1, 1)


def test_warmup_then_cycle_with_prepare_before_step():
    s = _Recorder("pA", "qBC")
    x = _Chunk()
    assert s.step(x) == ("A", x) and s.log == ["p", "A"] and s.calls == 2
    s.prepare()  # q: run now
    s.prepare()  # B is a step: nothing to do
    assert s.log == ["p", "A", "q"] and s.calls == 3
    assert s.step(x)[0] == "B" and s(x)[0] == "C" and s.step(x)[0] == "B"
    assert s.log == ["p", "A", "q", "B", "C", "q", "B"]
    assert s.state_bytes() == 123
    s.reset()
    assert s.calls == 0 and s.restarts == 2
    s.step(x)
    assert s.log[-2:] == ["p", "A"]


def test_refuses_other_chunks_and_an_empty_cycle():
    s = _Recorder("", "A")

    class Wrong:
        shape = (1, 1, 2)

    with pytest.raises(ValueError, match=r"_Recorder.step: expected a chunk of shape \(1, 1, 1\), got \(1, 1, 2\)"):
        s.step(Wrong())
    with pytest.raises(ValueError, match="a cycle of at least one call"):
        _Recorder("A", "")
