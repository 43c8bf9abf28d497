"""The step as a graph of tensors: the static schedule of a stream and one flat-tensor graph per
phase of it.

* :func:`discover_schedule` walks the schedule once (a few zero frames through the eager step): the
  Python ``int`` fields of a state (a stride phase, look-ahead frames still to skip, frames pending
  in an FP shift) decide what a step does and do not depend on the data; the warm-up phases
  (look-ahead, FP shifts filling up) run once, then the cycle repeats for ever (one phase for STMC,
  ``s`` for an S-CC pair of stride ``s``, twice that for FP with ``prepare``).
* :class:`StepGraph` is one phase as a function of tensors only, ``forward(x, *state_tensors) ->
  (y, *new_state_tensors)``: what ``torch.export``, ``torch.compile`` and ``torch.onnx`` take.
* :func:`inplace_names`: the state tensors a compiled stream can keep in buffers updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from ..core.state import State, StreamingModule, replace_state_tensors, schedule_key, state_leaves, state_tensors

__all__ = ["Phase", "Schedule", "discover_schedule", "StepGraph", "inplace_names"]


@dataclass
class Phase:
    """One call of a schedule: ``kind`` is ``"step"`` or ``"prepare"``; the state layout it reads
    (``in_names``) and writes (``out_names``), its templates, and the graph it shares with other
    phases of the same key (``graph_id``)."""

    kind: str
    graph_id: int
    in_template: State
    out_template: State
    in_names: list[str]
    out_names: list[str]
    changed: list[str] = field(default_factory=list)
    noop: bool = False

    @property
    def kept(self) -> list[str]:
        """State tensors the call passes through unchanged (not outputs of its graph)."""
        changed = set(self.changed)
        return [n for n in self.out_names if n not in changed]


@dataclass
class Schedule:
    """The phases of a stream: ``warmup`` once, then ``cycle`` for ever."""

    warmup: list[Phase]
    cycle: list[Phase]
    frames_per_step: int
    input_shape: tuple[int, ...]
    initial: State
    graphs: dict[int, Phase] = field(default_factory=dict)  # graph_id -> first phase using it

    def phase(self, index: int) -> Phase:
        """The phase of call ``index`` (0-based) of the stream."""
        if index < len(self.warmup):
            return self.warmup[index]
        return self.cycle[(index - len(self.warmup)) % len(self.cycle)]

    @property
    def steps_per_cycle(self) -> int:
        return sum(p.kind == "step" for p in self.cycle)


def _materialize(model: StreamingModule, state: State, x: Tensor) -> State:
    """Create the lazily sized parts of a state (a zero-frame step changes nothing else)."""
    if all(t is not None for _, t in state_leaves(state)):
        return state
    _, state = model.step(x[:, :, :0], state)
    return state


@torch.no_grad()
def discover_schedule(
    model: StreamingModule,
    input_shape: Sequence[int],
    *,
    prepare: bool | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    max_calls: int = 10_000,
) -> Schedule:
    """Walk the static schedule of ``model`` for chunks of shape ``input_shape = (B, C, n, ...)``.

    Zero chunks go through the eager ``step`` (and ``prepare`` before each step when ``prepare`` is
    true; by default when ``prepare`` does any work, i.e. an FP pattern) until the state's
    :func:`schedule_key` repeats. Returns the warm-up phases and the repeating cycle.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) < 3:
        raise ValueError(f"discover_schedule: input_shape must be (B, C, n, ...), got {input_shape}")
    if dtype is None or device is None:
        p = next(model.parameters(), None)
        dtype = dtype or (p.dtype if p is not None else torch.get_default_dtype())
        device = device or (p.device if p is not None else None)
    x = torch.zeros(input_shape, dtype=dtype, device=device)
    state = model.init_state(input_shape[0], device=device, dtype=dtype)
    state = _materialize(model, state, x)
    initial = state
    auto = prepare is None
    if auto:
        prepare = True
    calls: list[Phase] = []
    graph_ids: dict[tuple, int] = {}
    graphs: dict[int, Phase] = {}
    frame_start: dict[tuple, int] = {}

    def record(kind: str, before: State, after: State) -> None:
        old = dict(state_tensors(before))
        new = state_tensors(after)
        changed = [n for n, t in new if old.get(n) is not t]
        key = (kind, schedule_key(before), schedule_key(after), tuple(changed))
        gid = graph_ids.setdefault(key, len(graph_ids))
        ph = Phase(kind, gid, before, after, list(old), [n for n, _ in new], changed)
        ph.noop = key[1] == key[2] and not changed
        graphs.setdefault(gid, ph)
        calls.append(ph)

    while len(calls) < max_calls:
        key = schedule_key(state)
        if key in frame_start:
            start = frame_start[key]
            if auto and not any(ph.kind == "prepare" and not ph.noop for ph in calls):
                # Nothing is ever deferred (not an FP model): no prepare phases.
                return discover_schedule(model, input_shape, prepare=False, dtype=dtype, device=device, max_calls=max_calls)
            return Schedule(calls[:start], calls[start:], input_shape[2], input_shape, initial, graphs)
        frame_start[key] = len(calls)
        if prepare:
            new = model.prepare(state)
            record("prepare", state, new)
            state = new
        _, new = model.step(x.clone(), state)  # a fresh input each call: a history may alias it
        record("step", state, new)
        state = new
    raise RuntimeError(f"discover_schedule: the schedule did not repeat within {max_calls} calls")


# ==================================================================================================
# The flat-tensor step
# ==================================================================================================


class StepGraph(nn.Module):
    """One phase of a stream as a function of tensors only.

    ``StepGraph(model, template)`` with ``kind="step"``: ``forward(x, *state_tensors) -> (y,
    *new_state_tensors)``; with ``kind="prepare"``: ``forward(*state_tensors) ->
    (*new_state_tensors)``. The tensors are in :func:`soi.state_tensors` order of ``template``
    (input) and of the state the step returns (output, :attr:`out_names`). The template's Python
    fields (the static schedule) are baked in: use one graph per schedule phase
    (:func:`discover_schedule`).

    Usable by ``torch.compile``, ``torch.export`` and ``torch.onnx.export``. ``contiguous=True``
    returns every output contiguous: a graph compiled ahead of time (AOTInductor) assumes the
    strides of its example inputs, and state tensors are fed back as inputs.

    ``inplace`` names state tensors (of both the input and the output) whose new values are
    copied into the input tensors instead of being returned: the caller's state buffers are
    updated where they lie, and the compiled graph neither allocates nor returns them. Their new
    values must not alias an input tensor (:func:`inplace_names` checks this).
    """

    def __init__(
        self,
        model: StreamingModule,
        template: State,
        kind: str = "step",
        out_template: State | None = None,
        outputs: Sequence[str] | None = None,
        contiguous: bool = False,
        inplace: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.contiguous = contiguous
        if kind not in ("step", "prepare"):
            raise ValueError(f"StepGraph: kind must be 'step' or 'prepare', got {kind!r}")
        self.model = model
        self.kind = kind
        object.__setattr__(self, "template", template)
        self.in_names = [n for n, _ in state_tensors(template)]
        self.out_names = list(self.in_names) if out_template is None else [n for n, _ in state_tensors(out_template)]
        both = set(self.in_names) & set(self.out_names)
        if outputs is not None:
            unknown = set(outputs) - set(self.out_names)
            if unknown:
                raise ValueError(f"StepGraph: outputs {sorted(unknown)} are not tensors of the new state")
            self.out_names = [n for n in self.out_names if n in set(outputs)]
        if not set(inplace) <= both:
            raise ValueError(f"StepGraph: inplace names {sorted(set(inplace) - both)} are not tensors of both states")
        self._inplace = {n: self.in_names.index(n) for n in inplace}
        self.out_names = [n for n in self.out_names if n not in self._inplace]
        self._out_set = set(self.out_names)

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        if self.kind == "step":
            x, tensors = args[0], list(args[1:])
        else:
            x, tensors = None, list(args)
        if len(tensors) != len(self.in_names):
            raise ValueError(f"StepGraph: expected {len(self.in_names)} state tensors, got {len(tensors)}")
        state = replace_state_tensors(self.template, tensors)
        if self.kind == "step":
            y, new = self.model.step(x, state)
        else:
            y, new = None, self.model.prepare(state)
        out = []
        for n, t in state_tensors(new):
            if n in self._inplace:
                tensors[self._inplace[n]].copy_(t)
            elif n in self._out_set:
                out.append(t)
        if self.kind == "step":
            # the output may be a view of a state tensor (an upsampler repeating its held element),
            # and updated buffers are overwritten by the next call: hand out a copy
            out = [y.clone() if self._inplace else y, *out]
        return tuple(t.contiguous() for t in out) if self.contiguous else tuple(out)


def inplace_names(schedule: Schedule) -> set[str]:
    """State tensors a compiled stream can keep in fixed buffers updated in place: present with
    one shape and dtype in every phase's input and output, and never computed as a view of a
    state tensor (an in-place update would then read what another update already overwrote).
    Tensors that appear or change shape from phase to phase (an FP pattern's pending output) are
    passed in and out instead."""
    phases = [*schedule.warmup, *schedule.cycle]
    names: set[str] | None = None
    layout: dict[str, tuple] = {}
    unsafe: set[str] = set()
    for ph in phases:
        ins, outs = dict(state_tensors(ph.in_template)), dict(state_tensors(ph.out_template))
        for n, t in [*ins.items(), *outs.items()]:
            if layout.setdefault(n, (t.shape, t.dtype)) != (t.shape, t.dtype):
                unsafe.add(n)
        names = (set(ins) & set(outs)) if names is None else names & set(ins) & set(outs)
        storages = {t.untyped_storage().data_ptr() for t in ins.values() if t.numel()}
        unsafe.update(n for n in ph.changed if outs[n].numel() and outs[n].untyped_storage().data_ptr() in storages)
    return (names or set()) - unsafe
