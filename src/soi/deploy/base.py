"""What every streamer of a static schedule shares (torch-free: the ONNX Runtime streamer uses it
too): the calls of the stream bound once, *warm-up* calls run once and then a *cycle* repeated for
ever, each either a ``prepare`` (FP patterns: the work that needs only past frames, run between
frames) or a ``step``; ``step`` runs a pending ``prepare`` first.

A subclass binds one callable per call of the schedule (:meth:`PhaseStreamer._bind`) and says how
a chunk is checked (:meth:`PhaseStreamer._chunk`) and how the state restarts
(:meth:`PhaseStreamer._restart`). A step of a small model takes tens of microseconds, so the path
from :meth:`~PhaseStreamer.step` to the bound call is a few Python operations.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

__all__ = ["PhaseStreamer", "Call"]

Call = tuple[bool, Callable[[Any], Any]]
"""One call of a stream: ``(is_prepare, run)``; ``run(x)`` takes the chunk (``None`` for a
``prepare``) and returns the output (``None`` for a ``prepare``)."""


class PhaseStreamer:
    """Base of :class:`soi.deploy.FastStreamer` and :class:`soi.deploy.OnnxStreamer`: the phase
    lookup (warm-up, then the cycle), ``prepare`` then ``step``, ``reset``, ``calls`` and
    ``state_bytes``."""

    input_shape: tuple[int, ...]

    def _bind(self, warmup: Sequence[Call], cycle: Sequence[Call], state_bytes: int) -> None:
        """The bound calls of the stream (``cycle`` not empty) and the bytes of the state held
        between calls (the largest over the schedule)."""
        if not cycle:
            raise ValueError(f"{type(self).__name__}: a schedule needs a cycle of at least one call")
        self._warmup_calls = list(warmup)
        self._cycle_calls = list(cycle)
        self._state_bytes = int(state_bytes)
        self._index = 0

    def _entry(self, index: int) -> Call:
        warm = self._warmup_calls
        if index < len(warm):
            return warm[index]
        cycle = self._cycle_calls
        return cycle[(index - len(warm)) % len(cycle)]

    def _chunk(self, x: Any) -> Any:
        """``x`` as the bound calls take it; refuses another shape than :attr:`input_shape`."""
        if tuple(x.shape) != self.input_shape:
            raise ValueError(f"{type(self).__name__}.step: expected a chunk of shape {self.input_shape}, got {tuple(x.shape)}")
        return x

    def _restart(self) -> None:
        """Put the initial state where the bound calls read it."""
        raise NotImplementedError

    # -- stream ---------------------------------------------------------------------------------------
    @property
    def calls(self) -> int:
        """Calls (``prepare`` and ``step``) run so far."""
        return self._index

    def reset(self) -> None:
        """Restart the stream from the initial state."""
        self._index = 0
        self._restart()

    def prepare(self) -> None:
        """FP: run the precomputable work of the next frame now (no-op when already done or when
        the model has nothing to prepare)."""
        is_prepare, run = self._entry(self._index)
        if is_prepare:
            run(None)
            self._index += 1

    def step(self, x: Any) -> Any:
        """One chunk of shape :attr:`input_shape` -> the model's output frames."""
        x = self._chunk(x)
        is_prepare, run = self._entry(self._index)
        if is_prepare:
            run(None)
            self._index += 1
            _, run = self._entry(self._index)
        y = run(x)
        self._index += 1
        return y

    def __call__(self, x: Any) -> Any:
        return self.step(x)

    def state_bytes(self) -> int:
        """Bytes of the state tensors held between calls (the largest over the schedule)."""
        return self._state_bytes
