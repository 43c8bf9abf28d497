"""Per-frame step time of every video model of table 7, STMC and SOI, at the cost table's resolution
(ResNet-10s 112x112, MoViNets 172x172), in the fast form ``onnxruntime`` (one graph per schedule
phase, the state explicit; its parity with the eager step checked) and the real-time factor at 24
frames/s on one thread. All cases timed interleaved in one process (soi.analysis.bench.bench_models).
Writes benchmarks/results/video_bench.json and .md.

    OMP_NUM_THREADS=1 python3 benchmarks/video_bench.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from soi.analysis.bench import BenchTiming, bench_models, format_table
from soi.models.movinet import movinet, streaming_movinet
from soi.models.resnet3d import resnet10, streaming_resnet3d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--forms", nargs="+", default=["onnxruntime"])
    ap.add_argument("--models", nargs="+", default=["resnet10-tiny", "resnet10-small", "resnet10", "movinet-a0", "movinet-a1"])
    args = ap.parse_args()
    torch.manual_seed(0)
    models = {}
    for name in args.models:
        family, _, variant = name.partition("-")
        for pattern in ("STMC", "SOI"):
            if family == "resnet10":
                m = streaming_resnet3d(resnet10(variant or "regular").eval(), pattern, (112, 112))
            else:
                m = streaming_movinet(movinet(variant).eval(), pattern, (172, 172))
            models[f"{name} {pattern}"] = (pattern, m.eval())
    timing = BenchTiming(threads=1, rounds=args.rounds, frames_per_round=4, warmup_rounds=1, frame_rate=24.0)
    result = bench_models(models, args.forms, timing=timing, progress=True)
    result["load_average_at_end"] = os.getloadavg()
    out = Path(__file__).parent / "results"
    (out / "video_bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "video_bench.md").write_text(format_table(result["rows"]) + "\n")
    print(format_table(result["rows"]))


if __name__ == "__main__":
    main()
