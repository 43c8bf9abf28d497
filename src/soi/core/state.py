"""The streaming protocol: per-layer state objects, pure steps, and the stateful convenience wrapper.

Every streaming module in ``soi`` follows one protocol (see ``docs/streaming.md``)::

    state = module.init_state(batch_size)           # zero history, created up front
    y, state = module.step(x, state)                # pure: x (B, C, n, ...) -> y (B, C', m, ...)
    tail, state = module.flush(state)               # end of stream: frames still owed (look-ahead)

Offline ``forward(x)`` *is* streaming the whole sequence from a zero state and flushing, so the
offline (training) path and the online path are one code path and cannot drift apart.

States are small dataclasses whose tensor fields all carry the batch in dimension 0. They are never
registered on the module, so they never appear in ``state_dict`` or checkpoints. Python ``int``
fields (a stride phase, frames still to skip) are part of the static schedule: an exported graph is
specialised on them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "State",
    "StreamingModule",
    "state_tensors",
    "replace_state_tensors",
]

_tokens = itertools.count(1)


@dataclass
class State:
    """Base of every layer state.

    ``owner`` identifies the module that made the state and ``batch_size`` the number of streams,
    so that a state handed to the wrong module, or to a batch of another size, is refused with a
    clear message instead of producing silently wrong output.
    """

    owner: int
    batch_size: int


def _fields(state: State) -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(state):
        if f.name not in ("owner", "batch_size"):
            yield f.name, getattr(state, f.name)


def state_tensors(state: State, prefix: str = "") -> list[tuple[str, Tensor]]:
    """All tensors of a (nested) state, depth first, with dotted names.

    The order is stable for a given model and schedule phase, which is what an exported graph with
    the state as explicit inputs and outputs needs.
    """
    out: list[tuple[str, Tensor]] = []
    for name, value in _fields(state):
        key = f"{prefix}{name}"
        if isinstance(value, Tensor):
            out.append((key, value))
        elif isinstance(value, State):
            out.extend(state_tensors(value, key + "."))
        elif isinstance(value, tuple):
            for i, child in enumerate(value):
                if isinstance(child, State):
                    out.extend(state_tensors(child, f"{key}.{i}."))
                elif isinstance(child, Tensor):
                    out.append((f"{key}.{i}", child))
    return out


def replace_state_tensors(state: State, tensors: list[Tensor]) -> State:
    """Inverse of :func:`state_tensors`: the same state with its tensors replaced, in order."""
    it = iter(tensors)

    def rebuild(value: Any) -> Any:
        if isinstance(value, Tensor):
            return next(it)
        if isinstance(value, State):
            changes = {name: rebuild(v) for name, v in _fields(value)}
            return dataclasses.replace(value, **changes)
        if isinstance(value, tuple):
            return tuple(rebuild(v) for v in value)
        return value

    new = rebuild(state)
    if next(it, None) is not None:
        raise ValueError("replace_state_tensors: more tensors given than the state holds")
    return new


def _reset_state(old: Any, fresh: Any, mask: Tensor, path: str) -> Any:
    """Per-stream reset: tensors take the fresh value where ``mask`` is set."""
    if isinstance(old, Tensor):
        m = mask.to(old.device).view(-1, *([1] * (old.dim() - 1)))
        return torch.where(m, fresh, old)
    if isinstance(old, State):
        changes = {}
        for name, value in _fields(old):
            new_value = getattr(fresh, name)
            if isinstance(value, Tensor) and new_value is None:
                # A lazily sized history: the fresh state has not created it yet.
                new_value = torch.full_like(value, getattr(old, "fill_value", 0.0))
            changes[name] = _reset_state(value, new_value, mask, f"{path}.{name}")
        return dataclasses.replace(old, **changes)
    if isinstance(old, tuple):
        return tuple(_reset_state(o, f, mask, f"{path}.{i}") for i, (o, f) in enumerate(zip(old, fresh)))
    if old is None:
        return fresh
    if old != fresh:
        raise ValueError(
            f"reset(mask): the streams of a batch share the schedule value {path}={old!r} (a fresh "
            f"stream has {fresh!r}), so a subset of streams can only be restarted where the whole "
            "batch is at the start of its cycle (every stride phase 0, no look-ahead warm-up "
            "pending); reset all streams with reset() instead"
        )
    return old


class StreamingModule(nn.Module):
    """Base class of every streaming module.

    Subclasses implement :meth:`init_state`, :meth:`step` and, when they owe frames at the end of a
    stream (look-ahead), :meth:`flush`, and report their timing through :attr:`receptive_field`,
    :attr:`delay` and :attr:`stride`.

    Timing, all in frames of the module's *input*::

        input  t:  0 1 2 3 4 5 6 ...
        output  :  produced for input frame t once frame t + delay has arrived,
                   every `stride`-th frame, from the last `receptive_field` input frames
    """

    def __init__(self) -> None:
        super().__init__()
        self._token = next(_tokens)
        # Held only inside `with module.streaming(B):`; a plain attribute, so never in state_dict.
        self._held_state: State | None = None

    # -- protocol -----------------------------------------------------------------------------
    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """A zero state for ``batch_size`` independent streams."""
        raise NotImplementedError

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Process a chunk ``x`` of shape ``(B, C, n, ...)``, ``n >= 0``; returns ``(y, new_state)``.

        Pure: ``state`` is not modified.
        """
        raise NotImplementedError

    def flush(self, state: State) -> tuple[Tensor | None, State]:
        """End of stream: the output frames still owed because of look-ahead (``None`` if none).

        Equivalent to zero padding at the end of the sequence, as ``torch.nn`` layers do.
        """
        return None, state

    def prepare(self, state: State) -> State:
        """Work that needs only frames already received, done ahead of the next ``step``.

        Fully predictive SOI models (``soi.SC``, ``soi.SSCC``) defer the part of the network behind a
        shift; calling ``prepare`` between frames runs it, so that the next ``step`` only does the
        rest. Optional: ``step`` does any pending work itself first. Pure, like ``step``; the
        default has nothing to prepare.
        """
        return state

    @property
    def receptive_field(self) -> int:
        """Number of input frames one output frame depends on."""
        return 1

    @property
    def delay(self) -> int:
        """Look-ahead: input frames that must arrive after frame ``t`` before output ``t`` exists."""
        return 0

    @property
    def stride(self) -> int:
        """Time decimation: one output frame per ``stride`` input frames."""
        return 1

    # -- helpers for subclasses ---------------------------------------------------------------
    def _new_state_args(self, batch_size: int) -> dict[str, int]:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{type(self).__name__}.init_state: batch_size must be a positive int, got {batch_size!r}")
        return {"owner": self._token, "batch_size": batch_size}

    def _check_state(self, x: Tensor, state: State) -> None:
        if not isinstance(state, State):
            raise TypeError(f"{type(self).__name__}.step: expected a soi State, got {type(state).__name__}")
        if state.owner != self._token:
            raise ValueError(
                f"{type(self).__name__}.step: this state was made by another module; "
                "create it with this module's init_state()"
            )
        if x.shape[0] != state.batch_size:
            raise ValueError(
                f"{type(self).__name__}.step: the state holds {state.batch_size} streams but the "
                f"input has batch size {x.shape[0]}"
            )

    # -- offline and stateful convenience ------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Offline: stream the whole ``x`` from a zero state and flush; inside ``streaming()``: one step."""
        if self._held_state is not None:
            y, self._held_state = self.step(x, self._held_state)
            return y
        if not isinstance(x, Tensor) or x.dim() < 3:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__}: expected a tensor (B, C, T, ...), got {got}")
        state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        y, state = self.step(x, state)
        tail, _ = self.flush(state)
        return y if tail is None else torch.cat([y, tail], dim=2)

    @contextlib.contextmanager
    def streaming(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Iterator[StreamingModule]:
        """Hold a state for ``batch_size`` streams: inside the block, ``module(chunk)`` is one step.

        >>> with model.streaming(batch_size=2):
        ...     for chunk in chunks:          # (2, C, n, ...)
        ...         y = model(chunk)
        """
        if self._held_state is not None:
            raise RuntimeError(f"{type(self).__name__} is already streaming; nested streaming() is not allowed")
        if device is None or dtype is None:
            p = next(itertools.chain(self.parameters(), self.buffers()), None)
            if p is not None:
                device = device if device is not None else p.device
                dtype = dtype if dtype is not None else (p.dtype if p.is_floating_point() else None)
        self._held_state = self.init_state(batch_size, device=device, dtype=dtype)
        try:
            yield self
        finally:
            self._held_state = None

    @property
    def is_streaming(self) -> bool:
        return self._held_state is not None

    def finish(self) -> Tensor | None:
        """Inside ``streaming()``: the frames still owed at the end of the stream (look-ahead)."""
        if self._held_state is None:
            raise RuntimeError("finish() is only valid inside `with module.streaming(batch_size):`")
        tail, self._held_state = self.flush(self._held_state)
        return tail

    def reset(self, mask: Tensor | None = None) -> None:
        """Inside ``streaming()``: restart the streams where ``mask`` (bool, shape ``(B,)``) is set.

        ``mask=None`` restarts every stream.
        """
        state = self._held_state
        if state is None:
            raise RuntimeError("reset() is only valid inside `with module.streaming(batch_size):`")
        tensors = state_tensors(state)
        ref = tensors[0][1] if tensors else None
        fresh = self.init_state(
            state.batch_size,
            device=ref.device if ref is not None else None,
            dtype=ref.dtype if ref is not None and ref.is_floating_point() else None,
        )
        if mask is None:
            self._held_state = fresh
            return
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.shape != (state.batch_size,):
            raise ValueError(
                f"reset(mask): expected a bool tensor of shape ({state.batch_size},), "
                f"got dtype {mask.dtype} and shape {tuple(mask.shape)}"
            )
        # Work a fully predictive model deferred to prepare() is owed to the streams that go on;
        # doing it now changes no output and leaves no frame pending in the schedule.
        state = self.prepare(state)
        self._held_state = _reset_state(state, fresh, mask, type(self).__name__)
