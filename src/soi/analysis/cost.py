"""Cost accounting: analytic multiply-accumulates per frame, per step and per second, the share that
fully predictive (FP) models can precompute, state memory, and a run-time counter of what a streaming
run actually executed.

Analytic model (``DESIGN.md`` §4). Every layer that multiplies is a :class:`Work` item: its MACs for
one output frame, and the input frames (of the whole model, counted from 0) at which it runs, which
follow from the strides and look-ahead in front of it::

    fires at frames  offset, offset + period, offset + 2*period, ...

(``burst`` runs at each; more than one behind a transposed convolution that upsamples time). A
layer behind an S-CC pair at stride ``s`` has ``period = s``; a layer behind a shift (SC) whose body
needs only past frames is *precomputable* (it runs in ``prepare``, between frames). From the items:

* average MACs per frame: ``sum(macs * burst / period)``; MMAC/s = that x frame rate / 1e6;
* per step (one frame per step): the items that fire at that frame, split into the part done when the
  frame arrives (*critical*) and the precomputable part; the **peak** is the largest critical step
  (PP lowers the average, not the peak; FP lowers the peak);
* **precomputed %**: the precomputable share of the heaviest step (the full pass), as the SOI paper's
  table 2 reports it;
* **retained %**: average against the same network without SOI (every layer at every frame, no
  upsamplers; for a :class:`~soi.models.UNet`, pattern ``"STMC"``).

Only real multiplications are counted: no products with the zero padding of the non-time axes, none
with the zeros a transposed convolution inserts (``dense=True`` counts both). The zero history at the
start of a stream is state, so it counts. Pooling, BatchNorm, activations, copies (duplication,
nearest) count zero; interpolation counts its kernel taps; bias additions are not counted.

The run-time counter (:class:`MacCounter`) uses ``torch.utils.flop_counter.FlopCounterMode`` with the
same per-op definition of a real multiplication, applied to the shapes of the ops actually executed;
:func:`measure_steps` streams a model frame by frame under it, so the two can be compared step by step.


``soi.cost`` is callable: ``soi.cost(model, frame_rate=62.5)`` is :func:`cost`.
"""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from ..core.state import StreamingModule, state_tensors
from ..core.timing import Clock, Work, axis_taps, conv_macs

__all__ = [
    "Work",
    "CostReport",
    "cost",
    "analyze",
    "schedule",
    "state_bytes",
    "axis_taps",
    "MacCounter",
    "measure_steps",
    "format_table",
    "windowed_cost",
]


# ==================================================================================================
# Run-time counter
# ==================================================================================================


def _flop_conv(dense: bool):
    def formula(x_shape, w_shape, _bias, stride, padding, dilation, transposed, output_padding=None, *args, out_shape=None, **kwargs) -> int:
        nd = len(w_shape) - 2
        output_padding = output_padding if output_padding is not None else [0] * nd
        macs = conv_macs(x_shape[2:], w_shape, stride, padding, dilation, transposed, output_padding, dense)
        return 2 * x_shape[0] * macs  # the registry's unit is FLOPs = 2 x MACs

    return formula


def _flop_mkldnn_rnn_layer(x_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    # One direction of one layer of an LSTM on CPU (its fused oneDNN kernel, which the registry has
    # no formula for): both weight matrices once per time step and stream. The input is (T, B, I)
    # or (B, T, I), so the steps times the streams are its first two sizes either way.
    return 2 * x_shape[0] * x_shape[1] * (math.prod(w_ih_shape) + math.prod(w_hh_shape))


class MacCounter:
    """Counts the multiply-accumulates executed inside its ``with`` block (all streams of the batch).

    ``torch.utils.flop_counter.FlopCounterMode`` with convolutions counted as real multiplications
    (``dense=False``) or with padding and inserted zeros (``dense=True``); matrix products (linear
    layers, learned and interpolating upsamplers, recurrent layers' weights) count ``m*n*k``.

    >>> with MacCounter() as c:
    ...     y, state = model.step(x, state)
    >>> c.macs
    """

    def __init__(self, dense: bool = False) -> None:
        self.dense = dense
        self.macs = 0
        self._mode: FlopCounterMode | None = None

    def __enter__(self) -> MacCounter:
        aten = torch.ops.aten
        formula = _flop_conv(self.dense)
        mapping = {aten.convolution: formula, aten._convolution: formula}
        if hasattr(aten, "mkldnn_rnn_layer"):  # a build without oneDNN runs LSTMs as matrix products
            mapping[aten.mkldnn_rnn_layer] = _flop_mkldnn_rnn_layer
        self._mode = FlopCounterMode(display=False, custom_mapping=mapping)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        mode, self._mode = self._mode, None
        mode.__exit__(*exc)
        self.macs = mode.get_total_flops() // 2


@dataclass
class StepMacs:
    """Executed MACs of one streaming step, per stream: when the frame arrives, and in ``prepare``."""

    step: int
    prepare: int

    @property
    def total(self) -> int:
        return self.step + self.prepare


def measure_steps(
    model: StreamingModule, x: Tensor, chunk: int = 1, prepare: bool = True, dense: bool = False
) -> list[StepMacs]:
    """Stream ``x`` through ``model`` in chunks of ``chunk`` frames and count the MACs each step
    executed (and, with ``prepare=True``, what ``model.prepare`` executed after it), per stream."""
    batch = x.shape[0]
    state = model.init_state(batch, device=x.device, dtype=x.dtype)
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[2], chunk):
            with MacCounter(dense) as c:
                _, state = model.step(x[:, :, i : i + chunk], state)
            pre = 0
            if prepare:
                with MacCounter(dense) as p:
                    state = model.prepare(state)
                pre = p.macs
            out.append(StepMacs(c.macs // batch, pre // batch))
    return out


# ==================================================================================================
# Analytic model
# ==================================================================================================


def analyze(model: StreamingModule, input_shape: Sequence[int] | None = None, dense: bool = False) -> list[Work]:
    """The :class:`~soi.core.timing.Work` items of ``model`` for input frames of shape
    ``input_shape = (C, *frame)`` (default: what the model declares), each named by its path in
    the model. Every module reports its own work (:meth:`~soi.StreamingModule.works`); this only
    names them."""
    if input_shape is None:
        input_shape = model.input_frame_shape
        if input_shape is None:
            raise ValueError("cost: cannot tell the input frame shape of this model; pass input_shape=(C, *frame_size)")
    _, works = model.works(tuple(input_shape), Clock(), dense)
    works = [w for w in works if w.macs]
    names = model.layer_names()
    for w in works:
        w.path = names.get(id(w.module), type(w.module).__name__)
    return works


def schedule(works: Sequence[Work], steps: int, start: int = 0) -> list[StepMacs]:
    """Analytic MACs of steps ``start .. start+steps-1`` (one frame per step): critical and precomputed."""
    out = []
    for t in range(start, start + steps):
        crit = sum(w.macs_at(t) for w in works if not w.clock.precomputed)
        pre = sum(w.macs_at(t) for w in works if w.clock.precomputed)
        out.append(StepMacs(crit, pre))
    return out


def state_bytes(model: StreamingModule, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the streaming state of one stream (tensors created by ``init_state``)."""
    state = model.init_state(1, device="cpu", dtype=dtype)
    return sum(t.numel() * t.element_size() for _, t in state_tensors(state))


# ==================================================================================================
# Report
# ==================================================================================================


@dataclass
class CostReport:
    """Cost of a streaming model at ``frame_rate`` frames per second (one frame per step).

    ``macs_*`` are per frame (one stream); ``*_mmac_per_s`` multiply by the frame rate.
    """

    pattern: str | None
    frame_rate: float
    macs_per_frame: float
    baseline_macs_per_frame: float
    peak_macs: int
    peak_total_macs: int
    precomputed_percent: float
    precomputed_average_percent: float
    state_bytes: int
    period: int
    schedule: list[StepMacs] = field(repr=False)
    works: list[Work] = field(repr=False)

    @property
    def mmac_per_s(self) -> float:
        return self.macs_per_frame * self.frame_rate / 1e6

    @property
    def peak_mmac_per_s(self) -> float:
        """The largest per-step work done after a frame arrives, as a rate."""
        return self.peak_macs * self.frame_rate / 1e6

    @property
    def retained_percent(self) -> float:
        return 100.0 * self.macs_per_frame / self.baseline_macs_per_frame if self.baseline_macs_per_frame else 100.0

    def as_dict(self) -> dict[str, Any]:
        """The keys of ``soi cost --json``."""
        return {
            "pattern": self.pattern,
            "mmac_per_s": round(self.mmac_per_s, 3),
            "retained_percent": round(self.retained_percent, 2),
            "peak_mmac_per_s": round(self.peak_mmac_per_s, 3),
            "precomputed_percent": round(self.precomputed_percent, 2),
            "state_bytes": self.state_bytes,
        }

    def by_layer(self) -> list[dict[str, Any]]:
        """Per layer: average MMAC/s and whether it is precomputable."""
        return [
            {
                "path": w.path, "kind": w.kind, "macs": w.macs, "period": w.clock.period, "offset": w.clock.offset,
                "precomputed": w.clock.precomputed, "base_period": w.clock.base_period,
                "mmac_per_s": w.macs_per_frame * self.frame_rate / 1e6,
            }
            for w in self.works
        ]  # fmt: skip


def cost(
    model: StreamingModule,
    frame_rate: float = 62.5,
    dense: bool = False,
    input_shape: Sequence[int] | None = None,
    state_dtype: torch.dtype = torch.float32,
) -> CostReport:
    """Analytic cost of ``model`` (see the module docstring). ``frame_rate`` defaults to STFT hop 256
    at 16 kHz. State memory is counted for ``state_dtype``."""
    if not math.isfinite(frame_rate) or frame_rate <= 0:
        raise ValueError(f"cost: frame_rate must be a finite number > 0, got {frame_rate}")
    works = analyze(model, input_shape, dense)
    avg = sum(w.macs_per_frame for w in works)
    base = sum(w.macs * w.clock.burst / w.clock.base_period for w in works if w.kind != "upsample")
    period = reduce(math.lcm, (w.clock.period for w in works), 1)
    start = max((w.clock.offset for w in works), default=0)
    steps = schedule(works, period, start)
    heaviest = max(steps, key=lambda s: s.total) if steps else StepMacs(0, 0)
    pre_avg = sum(w.macs_per_frame for w in works if w.clock.precomputed)
    return CostReport(
        pattern=getattr(model, "pattern", None),
        frame_rate=frame_rate,
        macs_per_frame=avg,
        baseline_macs_per_frame=base,
        peak_macs=max((s.step for s in steps), default=0),
        peak_total_macs=heaviest.total,
        precomputed_percent=100.0 * heaviest.prepare / heaviest.total if heaviest.total else 0.0,
        precomputed_average_percent=100.0 * pre_avg / avg if avg else 0.0,
        state_bytes=state_bytes(model, state_dtype),
        period=period,
        schedule=steps,
        works=works,
    )


def windowed_cost(
    module: torch.nn.Module,
    window_shape: Sequence[int],
    frame_rate: float = 62.5,
    pattern: str | None = "baseline",
    reference_macs_per_frame: float | None = None,
    dense: bool = False,
) -> CostReport:
    """Cost of windowed recompute, what a user of a model that cannot stream does: at every frame,
    the plain torch ``module`` re-runs on the last ``window_shape[1]`` frames (its receptive field).

    Args:
        module: a plain torch model over ``(1, *window_shape)``.
        window_shape: ``(C, window, *frame)`` of one window.
        frame_rate: frames per second.
        pattern: the report's name.
        reference_macs_per_frame: what ``retained %`` is measured against (the model's STMC form, say);
            ``None``: the windowed cost itself (100 %).

    The MACs of one run are counted at run time (:class:`MacCounter`); every frame costs one run
    (average = peak, nothing precomputed) and the state is the window of input frames (float32).
    """
    if not math.isfinite(frame_rate) or frame_rate <= 0:
        raise ValueError(f"windowed_cost: frame_rate must be a finite number > 0, got {frame_rate}")
    x = torch.zeros(1, *window_shape)
    with torch.no_grad(), MacCounter(dense) as counter:
        module.eval()(x)
    macs = counter.macs
    return CostReport(
        pattern=pattern,
        frame_rate=frame_rate,
        macs_per_frame=float(macs),
        baseline_macs_per_frame=float(reference_macs_per_frame if reference_macs_per_frame is not None else macs),
        peak_macs=macs,
        peak_total_macs=macs,
        precomputed_percent=0.0,
        precomputed_average_percent=0.0,
        state_bytes=x.numel() * 4,
        period=1,
        schedule=[StepMacs(macs, 0)],
        works=[],
    )


COLUMNS = ("pattern", "MMAC/s", "retained %", "peak MMAC/s", "precomputed %", "state KiB")


def format_table(reports: Sequence[CostReport]) -> str:
    """A Markdown table with the columns of ``soi cost``."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for r in reports:
        lines.append(
            f"| {r.pattern} | {r.mmac_per_s:.1f} | {r.retained_percent:.1f} | {r.peak_mmac_per_s:.1f} | "
            f"{r.precomputed_percent:.1f} | {r.state_bytes / 1024:.1f} |"
        )
    return "\n".join(lines)


class _CallableModule(types.ModuleType):
    """Makes ``soi.cost(model, ...)`` call :func:`cost` while ``soi.cost.<name>`` still works."""

    def __call__(self, *args: Any, **kwargs: Any) -> CostReport:
        return cost(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
