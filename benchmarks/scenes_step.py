"""Per-frame step time of the scene GhostNet's streaming patterns (STMC, SOI), in the eager form and
the fast forms the project builds here (TorchScript of the lean graph, BatchNorm folded:
:class:`soi.deploy.FastStreamer`; ``onnxruntime``: one ONNX graph per schedule phase with the state
explicit, its parity with the eager step checked), one stream, one thread, all cases interleaved
(:func:`soi.analysis.bench.bench_models`).

    python3 benchmarks/scenes_step.py [--widths 0.2 1.0] [--forms eager torchscript onnxruntime] [--rounds 20]

One frame is 20 ms of audio (64 mels, 50 frames/s); the front end (one 640-point FFT and the mel
matrix per frame) is not included. Writes ``benchmarks/results/scenes_step.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from soi.analysis.bench import FORMS, BenchTiming, bench_models
from soi.files import write_file
from soi.models.ghostnet import ghostnet, streaming_ghostnet

ROOT = Path(__file__).resolve().parents[1]
N_MELS, CLASSES, FRAME_RATE = 64, 11, 50.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=float, nargs="+", default=[0.2, 1.0])
    p.add_argument("--forms", nargs="+", choices=FORMS, default=["eager", "torchscript", "onnxruntime"])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--frames-per-round", type=int, default=10)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scenes_step")
    args = p.parse_args()
    torch.manual_seed(0)
    models = {}
    for width in args.widths:
        net = ghostnet(width=width, num_classes=CLASSES, time_strides=False).eval()
        for pattern in ("STMC", "SOI"):
            models[f"w{width:g} {pattern}"] = (pattern, streaming_ghostnet(net, pattern, (1, N_MELS)).eval())
    timing = BenchTiming(threads=1, rounds=args.rounds, frames_per_round=args.frames_per_round, warmup_rounds=2, frame_rate=FRAME_RATE)
    result = bench_models(models, args.forms, timing=timing, check_onnx="onnxruntime" in args.forms, progress=True)
    out = args.out
    write_file(out.with_suffix(".json"), json.dumps(result, indent=2, default=str).encode(), force=True)
    m = result["machine"]
    lines = [
        "# Scene GhostNet: per-frame step time (STMC, SOI)",
        "",
        (f"One stream (batch 1), {timing.threads} thread, one frame = 20 ms of audio (64 mels, 50 frames/s), "
        f"{args.rounds} interleaved rounds x {args.frames_per_round} frames per case; the front end is not included. "
        "Regenerate: `python3 benchmarks/scenes_step.py`."),
        "",
        "| model | form | median ms | p90 ms | p99 ms | avg over phases ms | peak phase ms | RTF | MMAC/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['variant']} | {r['form']} | {r['step_ms_median']:.3f} | {r['step_ms_p90']:.3f} | {r['step_ms_p99']:.3f} | "
            f"{r['step_ms_avg_over_phases']:.3f} | {r['step_ms_peak_phase']:.3f} | {r['rtf']:.4f} | {r['mmac_per_s']:.1f} |"
        )
    load = m.get("load_average_at_start")
    machine = f"{m['cpu']} ({m['logical_cores']} logical cores, load average at start {load}), torch {m['torch']}, Python {m['python']}"
    lines += ["", f"Machine: {machine}."]
    write_file(out.with_suffix(".md"), ("\n".join(lines) + "\n").encode(), force=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
