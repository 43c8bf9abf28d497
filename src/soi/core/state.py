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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .timing import Clock, FrameShape, Timing, Work

__all__ = [
    "State",
    "StreamingModule",
    "state_leaves",
    "map_state",
    "state_tensors",
    "replace_state_tensors",
    "StateLayout",
    "schedule_key",
]

_tokens = itertools.count(1)

_TRAINING_DEPENDENT = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
    nn.InstanceNorm3d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)  # fmt: skip
"""Modules whose output in training mode depends on the batch or on chance."""


@dataclass
class State:
    """Base of every layer state.

    ``owner`` identifies the module that made the state and ``batch_size`` the number of streams,
    so that a state handed to the wrong module, or to a batch of another size, is refused with a
    clear message instead of producing silently wrong output.
    """

    owner: int
    batch_size: int


def _fields(state: State, static: bool = False) -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(state):
        if f.name != "owner" and (static or f.name != "batch_size"):
            yield f.name, getattr(state, f.name)


def state_leaves(state: Any, prefix: str = "", static: bool = False) -> Iterator[tuple[str, Any]]:
    """The leaves of a (nested) state, depth first, with dotted names: tensors, ``None`` slots not
    sized yet and, with ``static=True``, the Python values of the static schedule (phases,
    counters, the batch size). The one walk of the state tree: everything else builds on it."""
    if isinstance(state, State):
        for name, value in _fields(state, static):
            yield from state_leaves(value, _join(prefix, name), static)
        return
    if isinstance(state, tuple):
        for i, child in enumerate(state):
            yield from state_leaves(child, _join(prefix, str(i)), static)
        return
    if isinstance(state, Tensor) or state is None or static:
        yield prefix, state


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def map_state(fn: Any, state: Any, *others: Any, path: str = "") -> Any:
    """The state rebuilt with every leaf (tensor, ``None`` slot or static value) replaced by
    ``fn(path, leaf, *other_leaves)``, where ``others`` are states of the same layout."""
    if isinstance(state, State):
        changes = {
            name: map_state(fn, value, *(getattr(o, name) for o in others), path=_join(path, name))
            for name, value in _fields(state, static=True)
        }
        return dataclasses.replace(state, **changes)
    if isinstance(state, tuple):
        return tuple(map_state(fn, v, *(o[i] for o in others), path=_join(path, str(i))) for i, v in enumerate(state))
    return fn(path, state, *others)


def state_tensors(state: State, prefix: str = "") -> list[tuple[str, Tensor]]:
    """All tensors of a (nested) state, depth first, with dotted names.

    The order is stable for a given model and schedule phase, which is what an exported graph with
    the state as explicit inputs and outputs needs.
    """
    start = prefix[:-1] if prefix.endswith(".") else prefix
    return [(name, t) for name, t in state_leaves(state, start) if isinstance(t, Tensor)]


def replace_state_tensors(state: State, tensors: list[Tensor]) -> State:
    """Inverse of :func:`state_tensors`: the same state with its tensors replaced, in order."""
    it = iter(tensors)
    new = map_state(lambda _path, leaf: next(it) if isinstance(leaf, Tensor) else leaf, state)
    if next(it, None) is not None:
        raise ValueError("replace_state_tensors: more tensors given than the state holds")
    return new


class StateLayout:
    """The tensor slots of one state layout, found once, so that a hot loop can flatten and rebuild
    states of that layout without walking their static parts (phases, counters, sizes) every call.

    ``names`` are :func:`state_tensors`' names of ``template``; ``tensors(s)`` and
    ``rebuild(tensors)`` are :func:`state_tensors` and :func:`replace_state_tensors` for any state
    ``s`` of the template's layout (the same static values, tensors where the template has them).
    """

    def __init__(self, template: State) -> None:
        self.template = template
        self.names = [n for n, _ in state_tensors(template)]
        self._get = _getter(template)
        self._put = _putter(template)

    def tensors(self, state: State) -> list[Tensor]:
        out: list[Tensor] = []
        self._get(state, out)
        return out

    def rebuild(self, tensors: Sequence[Tensor]) -> State:
        if len(tensors) != len(self.names):
            raise ValueError(f"StateLayout.rebuild: {len(self.names)} tensors expected, got {len(tensors)}")
        return self._put(self.template, iter(tensors))


# Both build one closure per node that holds a tensor somewhere below it (None: nothing to visit),
# so a call touches only those nodes, in state_leaves' order.
def _getter(node: Any) -> Any:
    if isinstance(node, Tensor):
        return lambda value, out: out.append(value)
    kids = [(key, f) for key, child in _children(node) if (f := _getter(child)) is not None]
    if not kids:
        return None
    if isinstance(node, State):

        def get_fields(value: Any, out: list) -> None:
            for name, f in kids:
                f(getattr(value, name), out)

        return get_fields

    def get_items(value: Any, out: list) -> None:
        for i, f in kids:
            f(value[i], out)

    return get_items


def _putter(node: Any) -> Any:
    if isinstance(node, Tensor):
        return lambda value, it: next(it)
    kids = [(key, f) for key, child in _children(node) if (f := _putter(child)) is not None]
    if not kids:
        return None
    if isinstance(node, State):
        return lambda value, it: dataclasses.replace(value, **{name: f(getattr(value, name), it) for name, f in kids})
    slots = dict(kids)
    return lambda value, it: tuple(slots[i](v, it) if i in slots else v for i, v in enumerate(value))


def _children(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, State):
        return list(_fields(node))
    if isinstance(node, tuple):
        return list(enumerate(node))
    return []


def schedule_key(state: State) -> tuple:
    """The static part of a state: every Python value (phases, counters, ``None`` slots) and the
    shape of every tensor. Two states with the same key run the same graph."""
    return tuple((n, tuple(v.shape)) if isinstance(v, Tensor) else (n, v) for n, v in state_leaves(state, static=True))


def _reset_state(old: State, fresh: State, mask: Tensor, root: str) -> State:
    """Per-stream reset: tensors take the fresh value where ``mask`` is set."""

    statics = dict(state_leaves(old, static=True))

    def reset(path: str, o: Any, f: Any) -> Any:
        if isinstance(o, Tensor):
            if f is None:  # a lazily sized history: the fresh state has not created it yet
                parent = path.rpartition(".")[0]
                f = torch.full_like(o, statics.get(_join(parent, "fill_value"), 0.0))
            m = mask.to(o.device).view(-1, *([1] * (o.dim() - 1)))
            return torch.where(m, f, o)
        if o is None:
            return f
        if o != f:
            raise ValueError(
                f"reset(mask): the streams of a batch share the schedule value {root}.{path}={o!r} (a fresh "
                f"stream has {f!r}), so a subset of streams can only be restarted where the whole "
                "batch is at the start of its cycle (every stride phase 0, no look-ahead warm-up "
                "pending); reset all streams with reset() instead"
            )
        return o

    return map_state(reset, old, fresh)


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
        self._check_finite = True

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

    # -- timing and work: declared values, composed by containers at construction ----------------
    timing: Timing = Timing()
    """Receptive field, look-ahead and time stride (:class:`soi.core.timing.Timing`), set once at
    construction; the properties below read it."""

    work_kind: str = "op"
    """What a run of this module is, for cost tables (``"conv"``, ``"linear"``, ...)."""

    @property
    def receptive_field(self) -> int:
        """Number of input frames one output frame depends on."""
        return self.timing.receptive_field

    @property
    def delay(self) -> int:
        """Look-ahead: input frames that must arrive after frame ``t`` before output ``t`` exists."""
        return self.timing.delay

    @property
    def stride(self) -> int:
        """Time decimation: one output frame per ``stride`` input frames."""
        return self.timing.stride

    @property
    def input_frame_shape(self) -> FrameShape | None:
        """``(C, *frame)`` of one input frame, when the module knows it (``None`` otherwise)."""
        return None

    @property
    def output_phase(self) -> int:
        """The first input frame (``< stride``) on which the module computes an output frame."""
        return 0

    def out_shape(self, shape: FrameShape) -> FrameShape:
        """``(C, *frame)`` of one output frame for input frames of shape ``shape``."""
        return shape

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        """Multiply-accumulates of one run (one output frame, one stream) on input frames of shape
        ``shape``: only real multiplications, none with zero padding or inserted zeros (``dense``
        counts those too)."""
        return 0

    def layer_names(self) -> dict[int, str]:
        """``id(module) -> name`` of this module and every submodule, as reports (cost tables)
        name them: the paths of ``named_modules()``, unless a module names its layers otherwise
        (a :class:`~soi.models.UNet` names them by level, as its checkpoints do)."""
        names = {id(self): ""}
        for name, child in self.named_children():
            sub = child.layer_names() if isinstance(child, StreamingModule) else {id(m): n for n, m in child.named_modules()}
            for key, path in sub.items():
                names.setdefault(key, f"{name}.{path}" if path else name)
        return names

    def works(self, shape: FrameShape, clock: Clock, dense: bool = False) -> tuple[FrameShape, list[Work]]:
        """The output frame shape and the :class:`~soi.core.timing.Work` items of this module on
        ``clock`` (the clock of its input). A leaf is called on every input frame and runs once per
        output frame; containers override this to compose their children, the way timing
        composes. Leaves report themselves even when they do no multiplication: the schedule
        (:mod:`soi.core.schedule`) is derived from every leaf's clocks."""
        work = Work(self, self.work_kind, self.macs(shape, dense), clock.of_output(self.stride, self.output_phase), clock, shape)
        return self.out_shape(shape), [work]

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

    def _check_like(self, x: Tensor, held: Tensor | None) -> None:
        """A state tensor and the input must share dtype and device (no silent casts)."""
        if held is not None and (held.dtype != x.dtype or held.device != x.device):
            raise ValueError(
                f"{type(self).__name__}.step: the state is {held.dtype} on {held.device} but the input is {x.dtype} on "
                f"{x.device}; create the state with init_state(batch, device=x.device, dtype=x.dtype)"
            )

    # -- offline and stateful convenience ------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Offline: stream the whole ``x`` from a zero state and flush; inside ``streaming()``: one step."""
        if self._held_state is not None:
            if self._check_finite and isinstance(x, Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
                bad = (~torch.isfinite(x)).flatten(1).any(dim=1).nonzero().flatten().tolist()
                raise ValueError(
                    f"{type(self).__name__}: the chunk holds NaN or infinite values (streams {bad}); it was not "
                    "processed, so the stream goes on unchanged with the next chunk (a non-finite frame would "
                    "stay in the history of every layer until reset). streaming(check_finite=False) skips this check"
                )
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
        check_finite: bool = True,
    ) -> Iterator[StreamingModule]:
        """Hold a state for ``batch_size`` streams: inside the block, ``module(chunk)`` is one step.

        >>> with model.streaming(batch_size=2):
        ...     for chunk in chunks:          # (2, C, n, ...)
        ...         y = model(chunk)

        A chunk with a NaN or infinite value is refused before it touches the state (it would stay
        in every layer's history, spoiling the outputs until ``reset``); ``check_finite=False``
        saves that check (one reduction over the chunk) where the input is known to be finite.
        Modules whose streaming output would differ from offline in training mode (BatchNorm uses
        the chunk's statistics and updates its running ones, dropout drops) must be in eval mode.
        """
        if self._held_state is not None:
            raise RuntimeError(f"{type(self).__name__} is already streaming; nested streaming() is not allowed")
        training = [name or type(self).__name__ for name, m in self.named_modules() if m.training and isinstance(m, _TRAINING_DEPENDENT)]
        if training:
            raise ValueError(
                f"{type(self).__name__}.streaming: {', '.join(training[:4])}{' ...' if len(training) > 4 else ''} "
                "in training mode would stream differently from offline (BatchNorm takes each chunk's statistics "
                "and updates its running ones; dropout drops); call model.eval() first"
            )
        self._check_finite = check_finite
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
