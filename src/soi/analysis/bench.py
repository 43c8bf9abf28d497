"""Benchmarks of streaming steps: windowed recompute, STMC, STMC exact-strided and SOI (PP, FP),
each in eager, compiled (TorchScript, AOTInductor) and onnxruntime form, measured interleaved in
one process.

What one frame step costs is timed call by call. Forms:

* ``eager``: the plain ``model.step`` (the reference; Python per layer, BatchNorm unfolded);
* ``torchscript``: :class:`soi.deploy.FastStreamer` with ``backend="script"`` (lean model, one
  ``torch.export`` graph per schedule phase, traced to TorchScript and frozen);
* ``aotinductor``: :class:`soi.deploy.FastStreamer` with ``backend="aoti"`` (each phase compiled ahead
  of time to a C++ library by AOTInductor: elementwise work fused, every convolution an im2col +
  matrix product; needs a C++ compiler, ~10-30 s per phase to build);
* ``onnxruntime``: the graphs :func:`soi.deploy.export_onnx` writes, run by
  :class:`soi.deploy.OnnxStreamer`.

``torch.compile`` was measured slower than both compiled forms here (its per-call guards), see
``docs/deploy.md``.

Variants (on one U-Net config, random weights: timing does not depend on them):

* ``windowed``: what users do without STMC, the plain CNN re-run at every step on its last
  ``receptive_field`` frames (the newest output frame kept);
* ``STMC``; ``STMC exact-strided`` (the ``S-CC 2`` network run as STMC does, every frame exact);
* SOI patterns, PP (``S-CC k``) and FP (``SS-CC k``). For FP the ``prepare`` part runs between
  frames: ``arrival_ms_*`` is the time from a frame's arrival to its output, ``step_ms_*`` the
  whole work of a frame.

Numbers per row: per-frame time (median, p90, p99, mean), the average and the peak over the
schedule's phases (median per phase), real-time factor (mean time / frame period), analytic MMAC/s
(:func:`soi.cost`), achieved GMAC/s, efficiency against the compute-bound reference (the
machine's measured rate for dense matrix products of the network's layer shapes), state bytes.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..deploy.fold import fold_batchnorm
from ..deploy.streamer import FastStreamer
from ..core.state import StreamingModule
from ..core.timing import Clock

__all__ = [
    "BenchCase",
    "bench",
    "bench_models",
    "bench_stack",
    "stack_model",
    "STACKS",
    "BenchTiming",
    "machine_facts",
    "matmul_reference",
    "format_table",
    "DEFAULT_PATTERNS",
    "FORMS",
    "FAST_FORMS",
    "BLOCK_WARMUP",
]

DEFAULT_PATTERNS = ("STMC", "S-CC 2", "S-CC 5", "SS-CC 5")
FORMS = ("eager", "torchscript", "aotinductor", "onnxruntime")
FAST_FORMS = ("torchscript", "aotinductor", "onnxruntime")
_BACKEND = {"eager": "eager", "torchscript": "script", "aotinductor": "aoti"}


# ==================================================================================================
# Machine facts and the compute-bound reference
# ==================================================================================================


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def machine_facts(threads: int) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "load_average_at_start": _load_average(),
    }
    try:
        import onnxruntime

        facts["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        facts["onnxruntime"] = None
    try:
        import onnx

        facts["onnx"] = onnx.__version__
    except ImportError:
        pass
    return facts


def _time_call(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(max(3, repeats // 10)):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def layer_gemm_shapes(model: StreamingModule, input_shape: Sequence[int]) -> list[tuple[str, int, int, int]]:
    """For every STMC convolution / tSTMC of ``model`` (chunks ``input_shape = (B, C, n, ...)``),
    the dense matrix product that does one output frame's work: ``(name, M, K, N)`` with ``M*K*N``
    = the layer's MACs per frame (every tap, zero padding included; for tSTMC the GEMM + col2im
    form, no inserted zeros). The frame shapes are those the modules declare
    (:meth:`~soi.StreamingModule.works`)."""
    frame = (input_shape[1], *input_shape[3:])
    _, works = model.works(frame, Clock())
    names = model.layer_names()
    out = []
    for w in works:
        m, rest = w.module, w.shape[1:]
        if w.kind == "conv_transpose":
            # (C_out*taps, C_in) @ (C_in, F_in): every input position meets every tap (col2im after)
            n, k, mm = math.prod(rest), m.in_channels // m.groups, m.out_channels * math.prod(m.kernel_size)
        elif w.kind == "conv":
            # a traced frame-wise convolution (a 1x1 on a pooled value) is a node holding the torch layer
            conv = getattr(m, "module", m)
            k, mm = (conv.in_channels // conv.groups) * math.prod(conv.kernel_size), conv.out_channels
            n = math.prod(m.out_frame_size(tuple(rest))) if hasattr(m, "out_frame_size") else w.macs // (k * mm)
        else:
            continue
        out.append((names.get(id(m), type(m).__name__), int(mm), int(k), int(n)))
    return out


def matmul_reference(shapes: Sequence[tuple[str, int, int, int]], repeats: int = 200) -> dict[str, Any]:
    """The machine's measured multiply-accumulate rate for dense products of these shapes.

    Each ``(M, K, N)`` product is timed on its own (median); the reference rate is the total MACs
    over the total time, i.e. the best a step doing exactly these products back to back, with no
    other overhead, would reach. Also the rate of a large square product (the machine's peak)."""
    total_macs, total_s = 0, 0.0
    per_layer = []
    for name, m, k, n in shapes:
        a = torch.randn(n, k)
        b = torch.randn(k, m)
        s = _time_call(lambda: torch.mm(a, b), repeats)
        total_macs += m * k * n
        total_s += s
        per_layer.append({"layer": name, "M": m, "K": k, "N": n, "gmac_per_s": m * k * n / s / 1e9})
    big = torch.randn(512, 512)
    peak_s = _time_call(lambda: torch.mm(big, big), 20)
    return {
        "macs_per_frame": total_macs,
        "seconds_per_frame": total_s,
        "gmac_per_s": total_macs / total_s / 1e9 if total_s else float("nan"),
        "peak_gmac_per_s_512": 512**3 / peak_s / 1e9,
        "layers": per_layer,
    }


# ==================================================================================================
# Cases
# ==================================================================================================


class _Windowed(nn.Module):
    """The plain CNN re-run on the last ``window`` frames: input ``(B, C, window, ...)`` -> the newest
    output frame. Its state is the frame buffer, kept outside (as a user would)."""

    def __init__(self, model: StreamingModule, window: int) -> None:
        super().__init__()
        self.model = model
        self.window = window

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        y = self.model(frames)
        return y[:, :, -1:]


BLOCK_WARMUP = 10
"""Untimed frames at the start of every block of a case's frames (a multiple of every cycle).
Switching between cases evicts caches, branch predictors and the like; measured on the small
U-Net (AOTInductor), a step kept getting faster over the first ~10 frames of a block, from 0.43
to 0.29-0.30 ms for STMC (see benchmarks/ANALYSIS.md). A deployed stream runs in that steady state."""


@dataclass(frozen=True)
class BenchTiming:
    """How :func:`bench` and :func:`bench_stack` time their cases: ``rounds * frames_per_round``
    frames per case after ``warmup_rounds`` rounds, all cases interleaved; every block of a case's
    frames starts with ``block_warmup`` untimed frames (:data:`BLOCK_WARMUP`); ``threads`` for
    torch and onnxruntime; ``frame_rate`` (frames/s) turns times into real-time factors and MACs
    per frame into MMAC/s. With ``frames_per_round`` a multiple of every schedule cycle, each
    round covers whole cycles."""

    threads: int = 1
    rounds: int = 40
    frames_per_round: int = 10
    warmup_rounds: int = 5
    block_warmup: int = BLOCK_WARMUP
    frame_rate: float = 62.5

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BenchCase:
    """One (variant, form) to time: ``calls`` is the list of per-frame callables (one frame each);
    ``phase_of`` gives the schedule phase of the next frame; ``prepare`` (FP) runs between frames."""

    variant: str
    form: str
    pattern: str
    step: Callable[[], Any]
    prepare: Callable[[], Any] | None = None
    phase_of: Callable[[], int] = lambda: 0
    macs_per_frame: float = 0.0
    peak_macs: float = 0.0
    state_bytes: int = 0
    build_s: float = 0.0
    times: list[float] = field(default_factory=list)
    prep_times: list[float] = field(default_factory=list)
    phases: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _make_model(config: Any, pattern: str, strided_mode: str = "soi", speech: bool = True) -> StreamingModule:
    from ..models.unet import UNet, UNetConfig

    cfg = config if isinstance(config, UNetConfig) else UNetConfig.from_json(config)
    torch.manual_seed(0)
    if speech and cfg.in_channels == 2 and cfg.out_channels == 2:
        from ..tasks.speech.masker import SpectralMasker

        model = SpectralMasker(cfg, pattern, strided_mode=strided_mode)
    else:
        model = UNet(cfg, pattern, strided_mode=strided_mode)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():  # realistic BatchNorm statistics (folding is then not a no-op)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _unet_of(model: nn.Module):
    return getattr(model, "unet", model)


def _analytic(model: StreamingModule) -> tuple[float, float]:
    """(average, peak critical) MACs per frame from soi.cost."""
    from .cost import cost

    rep = cost(_unet_of(model))
    return rep.macs_per_frame, float(rep.peak_macs)


def _stream_cases(
    variant: str,
    pattern: str,
    model: StreamingModule,
    forms: Sequence[str],
    batch: int,
    tmp: Path,
    threads: int,
    frame: Sequence[int] | None = None,
) -> list[BenchCase]:
    """One case per form of streaming ``model`` one frame ``(C, ...)`` per call (default: the
    U-Net's ``(C, F)``)."""
    from ..deploy.export import export_onnx

    if frame is None:
        unet = _unet_of(model)
        frame = (unet.config.in_channels, unet.config.freq_bins)
    shape = (batch, frame[0], 1, *frame[1:])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    avg, peak = _analytic(model)
    cases = []
    for form in forms:
        t0 = time.perf_counter()
        if form in _BACKEND:
            build = tmp / f"aoti-{variant}-{pattern}-{batch}".replace(" ", "_") if form == "aotinductor" else None
            fs = FastStreamer(model, shape, backend=_BACKEND[form], fold_bn=form != "eager", build_dir=build)
            w, n = len(fs.schedule.warmup), len(fs.schedule.cycle)
            fp = any(p.kind == "prepare" for p in fs.schedule.cycle)
            case = BenchCase(
                variant, form, pattern, step=lambda fs=fs: fs.step(x), prepare=fs.prepare if fp else None,
                phase_of=lambda fs=fs, w=w, n=n: (fs.calls - w) % n, state_bytes=fs.state_bytes(),
            )  # fmt: skip
        elif form == "onnxruntime":
            from ..deploy.runtime import OnnxStreamer

            out = tmp / f"{variant}-{pattern}-{batch}".replace(" ", "_")
            export_onnx(model, out, shape, overwrite=True)
            ort_stream = OnnxStreamer(out, threads=threads)
            xn = x.numpy()
            w, n = len(ort_stream.manifest.warmup), len(ort_stream.manifest.cycle)
            fp = "prepare" in ort_stream.manifest.cycle_kinds
            case = BenchCase(
                variant, form, pattern, step=lambda s=ort_stream, xn=xn: s.step(xn), prepare=ort_stream.prepare if fp else None,
                phase_of=lambda s=ort_stream, w=w, n=n: (s.calls - w) % n, state_bytes=ort_stream.state_bytes(),
            )  # fmt: skip
            case.extra["onnx_dir"] = str(out)
            case.extra["model"] = model
        else:
            raise ValueError(f"unknown form {form!r}; valid: {', '.join(FORMS)}")
        case.build_s = time.perf_counter() - t0
        case.macs_per_frame, case.peak_macs = avg, peak
        case.extra["batch"] = batch
        case.extra["weight_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
        cases.append(case)
    return cases


def _windowed_cases(model: StreamingModule, forms: Sequence[str], batch: int, tmp: Path, threads: int) -> list[BenchCase]:
    from .cost import MacCounter

    unet = _unet_of(model)
    window = model.receptive_field
    shape = (batch, unet.config.in_channels, window, unet.config.freq_bins)
    frames = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    new = frames[:, :, :1].clone()
    with torch.no_grad(), MacCounter(dense=False) as counter:
        _Windowed(model, window)(frames)
    macs = float(counter.macs) / batch
    cases = []
    for form in forms:
        t0 = time.perf_counter()
        buf = {"frames": frames.clone()}

        def shift(buf=buf):
            # The user's side of windowed recompute: drop the oldest frame, append the new one.
            buf["frames"] = torch.cat([buf["frames"][:, :, 1:], new], dim=2)
            return buf["frames"]

        if form == "eager":
            net = _Windowed(model, window).eval()

            def step(net=net):
                with torch.no_grad():
                    return net(shift())

        elif form in ("torchscript", "aotinductor"):
            from ..deploy.streamer import build_runner

            net = _Windowed(fold_batchnorm(model), window).eval()
            run = build_runner(net, (frames,), _BACKEND[form], tmp, f"windowed-{batch}")

            def step(run=run):
                with torch.no_grad():
                    return run([shift()])

        elif form == "onnxruntime":
            import onnxruntime as ort

            from ..deploy.export import _quiet

            net = _Windowed(fold_batchnorm(model), window).eval()
            path = tmp / f"windowed-{batch}.onnx"
            with torch.no_grad(), _quiet(False):
                torch.onnx.export(net, (frames,), str(path), input_names=["frames"], output_names=["y"], dynamo=True, external_data=False)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            nbuf = {"frames": frames.numpy().copy()}
            newn = new.numpy()

            def step(sess=sess, nbuf=nbuf, newn=newn):
                nbuf["frames"] = np.concatenate([nbuf["frames"][:, :, 1:], newn], axis=2)
                return sess.run(None, {"frames": nbuf["frames"]})

        else:
            raise ValueError(f"unknown form {form!r}")
        case = BenchCase("windowed", form, "STMC", step=step, state_bytes=frames.numel() * frames.element_size())
        case.build_s = time.perf_counter() - t0
        case.macs_per_frame = case.peak_macs = macs
        case.extra.update(batch=batch, window_frames=window, weight_bytes=sum(p.numel() * p.element_size() for p in model.parameters()))
        cases.append(case)
    return cases


# ==================================================================================================
# Measurement
# ==================================================================================================


def _measure(
    cases: list[BenchCase],
    rounds: int,
    frames_per_round: int,
    warmup_rounds: int,
    progress: bool,
    block_warmup: int = BLOCK_WARMUP,
) -> None:
    """Interleave: every round runs ``frames_per_round`` frames of every case, the order rotating,
    so slow drifts of the machine (other processes, clock) hit every case alike. Each block starts
    with ``block_warmup`` untimed frames: switching between cases leaves the next one cold."""
    order = list(range(len(cases)))
    it = range(warmup_rounds + rounds)
    if progress:
        try:
            from tqdm import tqdm

            it = tqdm(it, desc="bench", unit="round", file=sys.stderr)
        except ImportError:
            pass
    gc_was = gc.isenabled()
    gc.disable()
    try:
        with torch.no_grad():
            for r in it:
                record = r >= warmup_rounds
                order = order[1:] + order[:1]
                for i in order:
                    c = cases[i]
                    for f in range(block_warmup + frames_per_round):
                        if f < block_warmup:
                            if c.prepare is not None:
                                c.prepare()
                            c.step()
                            continue
                        phase = c.phase_of()
                        tp = 0.0
                        if c.prepare is not None:
                            t0 = time.perf_counter()
                            c.prepare()
                            tp = time.perf_counter() - t0
                        t0 = time.perf_counter()
                        c.step()
                        ts = time.perf_counter() - t0
                        if record:
                            c.times.append(ts)
                            c.prep_times.append(tp)
                            c.phases.append(phase)
                gc.collect()
    finally:
        if gc_was:
            gc.enable()


def _pct(v: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(v), q)) * 1e3


def _summary(c: BenchCase, frame_ms: float, ref_gmacs: float, frame_rate: float) -> dict[str, Any]:
    total = [a + b for a, b in zip(c.times, c.prep_times)]
    by_phase: dict[int, list[float]] = {}
    for p, t in zip(c.phases, total):
        by_phase.setdefault(p, []).append(t)
    phase_medians = [statistics.median(v) * 1e3 for _, v in sorted(by_phase.items())]
    mean_ms = statistics.fmean(total) * 1e3
    avg_phase_ms = statistics.fmean(phase_medians)
    row: dict[str, Any] = {
        "variant": c.variant,
        "form": c.form,
        "pattern": c.pattern,
        "batch": c.extra.get("batch", 1),
        "step_ms_median": statistics.median(total) * 1e3,
        "step_ms_p90": _pct(total, 90),
        "step_ms_p99": _pct(total, 99),
        "step_ms_mean": mean_ms,
        "step_ms_avg_over_phases": avg_phase_ms,
        "step_ms_peak_phase": max(phase_medians),
        "phase_ms": phase_medians,
        "rtf": mean_ms / frame_ms,
        "streams_per_s": c.extra.get("batch", 1) * 1e3 / mean_ms,
        "mmac_per_s": c.macs_per_frame * frame_rate / 1e6,
        "peak_mmac_per_s": c.peak_macs * frame_rate / 1e6,
        "gmac_per_s_achieved": c.macs_per_frame * c.extra.get("batch", 1) / (avg_phase_ms * 1e-3) / 1e9,
        "state_bytes": c.state_bytes,
        "weight_bytes": c.extra.get("weight_bytes"),
        "build_s": c.build_s,
        "frames_timed": len(total),
    }
    row["efficiency_vs_matmul"] = row["gmac_per_s_achieved"] / ref_gmacs if ref_gmacs else None
    if c.prepare is not None:
        row["arrival_ms_median"] = statistics.median(c.times) * 1e3
        row["arrival_ms_p90"] = _pct(c.times, 90)
        row["arrival_ms_p99"] = _pct(c.times, 99)
        row["prepare_ms_median"] = statistics.median(c.prep_times) * 1e3
    for k in ("window_frames",):
        if k in c.extra:
            row[k] = c.extra[k]
    return row


def bench(
    config: Any = "small",
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    forms: Sequence[str] = FORMS,
    *,
    windowed: bool = True,
    exact_strided: bool = True,
    batch: int = 1,
    throughput_batches: Sequence[int] = (),
    timing: BenchTiming = BenchTiming(),
    check_onnx: bool = True,
    progress: bool = False,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Build every (variant, form), time them interleaved as ``timing`` says, and return
    ``{"machine", "reference", "rows"}``; ``rows`` are the per-(variant, form) summaries (see the
    module docstring)."""
    for f in forms:
        if f not in FORMS:
            raise ValueError(f"bench: unknown form {f!r}; valid: {', '.join(FORMS)}")
    threads, frame_rate = timing.threads, timing.frame_rate
    facts = machine_facts(threads)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    frame_ms = 1e3 / frame_rate
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soi-bench-")))
            tmp.mkdir(parents=True, exist_ok=True)
            cases: list[BenchCase] = []
            stmc = _make_model(config, "STMC")

            def note(what: str) -> None:
                if progress:
                    print(f"bench: building {what} ({', '.join(forms)})", file=sys.stderr, flush=True)

            if windowed:
                note("windowed recompute")
                cases += _windowed_cases(stmc, forms, batch, tmp, threads)
            for pattern in patterns:
                model = stmc if pattern == "STMC" else _make_model(config, pattern)
                variant = "STMC" if pattern == "STMC" else ("SOI FP" if pattern.upper().startswith("SS-CC") else "SOI PP")
                note(f"{variant} {pattern}")
                cases += _stream_cases(variant, pattern, model, forms, batch, tmp, threads)
            if exact_strided:
                model = _make_model(config, "S-CC 2", strided_mode="stmc")
                note("STMC exact-strided S-CC 2")
                cases += _stream_cases("STMC exact-strided", "S-CC 2", model, forms, batch, tmp, threads)
            for b in throughput_batches:  # B independent streams per call, fast forms
                if b != batch:
                    cases += _stream_cases("STMC", "STMC", stmc, [f for f in forms if f != "eager"], b, tmp, threads)
            parity: dict[str, dict[str, float]] = {}
            parity_original: dict[str, dict[str, float]] = {}
            if check_onnx:
                from ..deploy.export import compare_export
                from ..deploy.lean import lean

                for c in cases:
                    if c.form == "onnxruntime" and "onnx_dir" in c.extra and c.extra.get("batch", 1) == batch:
                        model = c.extra["model"]
                        key = f"{c.variant} / {c.pattern}"
                        # against the exported function itself (BatchNorm folded) and against the original
                        parity[key] = compare_export(lean(model, target="onnx"), c.extra["onnx_dir"], steps=200, threads=threads)
                        parity_original[key] = compare_export(model, c.extra["onnx_dir"], steps=200, threads=threads)
            from ..models.unet import UNetConfig

            cfg = config if isinstance(config, UNetConfig) else UNetConfig.from_json(config)
            shapes = layer_gemm_shapes(_unet_of(stmc), (batch, cfg.in_channels, 1, cfg.freq_bins))
            reference = matmul_reference(shapes)
            _measure(cases, timing.rounds, timing.frames_per_round, timing.warmup_rounds, progress, timing.block_warmup)
    finally:
        torch.set_num_threads(prev_threads)
    rows = [_summary(c, frame_ms, reference["gmac_per_s"], frame_rate) for c in cases]
    facts["load_average_at_end"] = _load_average()
    try:
        import resource

        facts["peak_rss_bytes_whole_run"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        pass
    return {
        "machine": facts,
        "config": cfg.to_dict(),
        "frame_ms": frame_ms,
        "timing": timing.to_dict(),
        "reference": reference,
        "onnx_parity_max_abs": parity,
        "onnx_vs_unfolded_max_abs": parity_original,
        "rows": rows,
    }


# ==================================================================================================
# Stacks other than the U-Net
# ==================================================================================================

STACKS = ("dilated-1d", "conv3d")
"""The convolution stacks of :func:`bench_stack`:

* ``"dilated-1d"``: 6 :class:`~soi.STMCConv1d` layers, 64 channels, kernel 3, dilations 1, 2, 4, 8,
  16, 32, ReLU between (a WaveNet/TCN-style receptive field of 127 frames); one frame is ``(64,)``;
* ``"conv3d"``: 4 :class:`~soi.STMCConv3d` layers, 32 channels (the first from 3), kernel
  ``3x3x3``, spatial padding 1, over 32x32 frames, ReLU between (a video stack); one frame is
  ``(3, 32, 32)``."""


def stack_model(name: str) -> StreamingModule:
    """The stack ``name`` (:data:`STACKS`), random weights, eval mode."""
    from ..core.containers import Sequential
    from ..layers.conv import STMCConv1d, STMCConv3d

    torch.manual_seed(0)
    if name == "dilated-1d":
        layers: list[nn.Module] = [STMCConv1d(64, 64, 3, dilation=d) for d in (1, 2, 4, 8, 16, 32)]
    elif name == "conv3d":
        layers = [STMCConv3d(3 if i == 0 else 32, 32, 3, padding=1, frame_size=(32, 32)) for i in range(4)]
    else:
        raise ValueError(f"stack_model: unknown stack {name!r}; valid: {', '.join(STACKS)}")
    between = [m for layer in layers for m in (layer, nn.ReLU())][:-1]
    return Sequential(*between).eval()


def bench_stack(
    name: str,
    forms: Sequence[str] = FORMS,
    *,
    batch: int = 1,
    timing: BenchTiming = BenchTiming(),
    check_onnx: bool = True,
    progress: bool = False,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """The STMC step of the stack ``name`` (:data:`STACKS`) in every form, timed interleaved as
    :func:`bench` does: ``{"machine", "stack", "frame_ms", "timing", "reference",
    "onnx_parity_max_abs", "rows"}``, ``rows`` as :func:`bench`'s (variant: the stack's name)."""
    result = bench_models(
        {name: ("STMC", stack_model(name))}, forms, batch=batch, timing=timing, check_onnx=check_onnx,
        progress=progress, workdir=workdir,
    )  # fmt: skip
    return {"machine": result["machine"], "stack": name, **{k: v for k, v in result.items() if k != "machine"}}


def bench_models(
    models: dict[str, tuple[str, StreamingModule]],
    forms: Sequence[str] = FORMS,
    *,
    batch: int = 1,
    timing: BenchTiming = BenchTiming(),
    check_onnx: bool = True,
    progress: bool = False,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """The frame step of any streaming models, ``{variant: (pattern, model)}``, in every form, all
    timed interleaved as :func:`bench` does (one frame ``model.input_frame_shape`` per call):
    ``{"machine", "frame_ms", "timing", "reference", "onnx_parity_max_abs", "rows"}``, ``rows`` as
    :func:`bench`'s; the reference is the matrix-product rate of the first model's layer shapes."""
    for f in forms:
        if f not in FORMS:
            raise ValueError(f"bench_models: unknown form {f!r}; valid: {', '.join(FORMS)}")
    if not models:
        raise ValueError("bench_models: expected at least one model, got none")
    threads, frame_rate = timing.threads, timing.frame_rate
    facts = machine_facts(threads)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soi-bench-")))
            tmp.mkdir(parents=True, exist_ok=True)
            cases: list[BenchCase] = []
            for variant, (pattern, model) in models.items():
                if progress:
                    print(f"bench: building {variant} ({', '.join(forms)})", file=sys.stderr, flush=True)
                cases += _stream_cases(variant, pattern, model, forms, batch, tmp, threads, model.input_frame_shape)
            parity = {}
            if check_onnx:
                from ..deploy.export import compare_export

                parity = {
                    c.variant: compare_export(c.extra["model"], c.extra["onnx_dir"], threads=threads) for c in cases if c.form == "onnxruntime"
                }
            _, first = next(iter(models.values()))
            frame = first.input_frame_shape
            reference = matmul_reference(layer_gemm_shapes(first, (batch, frame[0], 1, *frame[1:])))
            _measure(cases, timing.rounds, timing.frames_per_round, timing.warmup_rounds, progress, timing.block_warmup)
    finally:
        torch.set_num_threads(prev_threads)
    facts["load_average_at_end"] = _load_average()
    return {
        "machine": facts,
        "frame_ms": 1e3 / frame_rate,
        "timing": timing.to_dict(),
        "reference": reference,
        "onnx_parity_max_abs": parity,
        "rows": [_summary(c, 1e3 / frame_rate, reference["gmac_per_s"], frame_rate) for c in cases],
    }


# ==================================================================================================
# Output
# ==================================================================================================


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| variant | form | pattern | B | median ms | p90 ms | p99 ms | avg ms | peak ms | arrival ms | RTF | streams/s | MMAC/s | GMAC/s | eff. % | state KiB |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        arrival = f"{r['arrival_ms_median']:.3f}" if "arrival_ms_median" in r else ""
        eff = f"{100 * r['efficiency_vs_matmul']:.1f}" if r.get("efficiency_vs_matmul") is not None else ""
        lines.append(
            f"| {r['variant']} | {r['form']} | {r['pattern']} | {r['batch']} | {r['step_ms_median']:.3f} | {r['step_ms_p90']:.3f} | "
            f"{r['step_ms_p99']:.3f} | {r['step_ms_avg_over_phases']:.3f} | {r['step_ms_peak_phase']:.3f} | {arrival} | "
            f"{r['rtf']:.4f} | {r['streams_per_s']:.0f} | {r['mmac_per_s']:.1f} | {r['gmac_per_s_achieved']:.2f} | {eff} | {r['state_bytes'] / 1024:.1f} |"
        )
    return "\n".join(lines)

