"""Per-frame step time of every video model of table 7, STMC and SOI, at the cost table's resolution
(ResNet-10s 112x112, MoViNets 172x172), in the eager form and the fast forms the project builds here
(``torchscript``: the lean graph, BatchNorm folded; ``onnxruntime``: one graph per schedule phase, the
state explicit, its parity with the eager step checked), and the real-time factor at 24 frames/s on
one thread. All cases timed interleaved in one process (soi.analysis.bench.bench_models); the table
names each model's fastest form (lowest mean step over the schedule's phases). Writes
benchmarks/results/video_bench.json and .md.

    OMP_NUM_THREADS=1 python3 benchmarks/video_bench.py [--rounds 6] [--forms eager torchscript onnxruntime]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from soi.analysis.bench import FORMS, BenchTiming, bench_models, format_table
from soi.files import write_file
from soi.models.movinet import movinet, streaming_movinet
from soi.models.resnet3d import resnet10, streaming_resnet3d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument(
        "--forms",
        nargs="+",
        choices=FORMS,
        default=["eager", "torchscript", "onnxruntime"],
    )
    ap.add_argument(
        "--models",
        nargs="+",
        default=[
            "resnet10-tiny",
            "resnet10-small",
            "resnet10",
            "movinet-a0",
            "movinet-a1",
        ],
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    models = {}
    for name in args.models:
        family, _, variant = name.partition("-")
        for pattern in ("STMC", "SOI"):
            if family == "resnet10":
                m = streaming_resnet3d(
                    resnet10(variant or "regular").eval(), pattern, (112, 112)
                )
            else:
                m = streaming_movinet(movinet(variant).eval(), pattern, (172, 172))
            models[f"{name} {pattern}"] = (pattern, m.eval())
    timing = BenchTiming(
        threads=1,
        rounds=args.rounds,
        frames_per_round=4,
        warmup_rounds=1,
        frame_rate=24.0,
    )
    result = bench_models(
        models,
        args.forms,
        timing=timing,
        check_onnx="onnxruntime" in args.forms,
        progress=True,
    )
    out = Path(__file__).parent / "results" / "video_bench"
    write_file(
        out.with_suffix(".json"),
        (json.dumps(result, indent=2, default=str) + "\n").encode(),
        force=True,
    )
    m = result["machine"]
    lines = [
        "# Video models: per-frame step time and real-time factor (STMC, SOI)",
        "",
        (
            f"One stream (batch 1), {timing.threads} thread, 24 frames/s (frame period {result['frame_ms']:.1f} ms), "
            f"{args.rounds} interleaved rounds x {timing.frames_per_round} frames per case. RTF = mean step time "
            "/ frame period (below 1: keeps up). Regenerate: `OMP_NUM_THREADS=1 python3 benchmarks/video_bench.py`."
        ),
        "",
        "Fastest form per model:",
        "",
        "| model | pattern | fastest form | median ms | avg over phases ms | peak phase ms | RTF | real time on one thread | eager ms (avg) |",
        "|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for variant in models:
        rows = [r for r in result["rows"] if r["variant"] == variant]
        best = min(rows, key=lambda r: r["step_ms_avg_over_phases"])
        by_form = {r["form"]: r for r in rows}
        eager = (
            f"{by_form['eager']['step_ms_avg_over_phases']:.1f}"
            if "eager" in by_form
            else "-"
        )
        name, _, pattern = variant.rpartition(" ")
        lines.append(
            f"| {name} | {pattern} | {best['form']} | {best['step_ms_median']:.1f} | {best['step_ms_avg_over_phases']:.1f} | "
            f"{best['step_ms_peak_phase']:.1f} | {best['rtf']:.3f} | {'yes' if best['rtf'] < 1 else 'no'} | {eager} |"
        )
    parity = result["onnx_parity_max_abs"]
    if parity:
        lines += [
            "",
            f"ONNX parity with the eager step: max abs error {max(v['max_abs'] for v in parity.values()):.1e} over every model and phase.",
        ]
    lines += ["", "Every form:", "", format_table(result["rows"]), ""]
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_end"])
    lines.append(
        f"Machine: {m['cpu']} ({m['logical_cores']} logical cores, load average {load} at the end), torch {m['torch']}, Python {m['python']}."
    )
    write_file(out.with_suffix(".md"), ("\n".join(lines) + "\n").encode(), force=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
