"""``soi bench``: time streaming steps in every form (:func:`soi.analysis.bench.bench`)."""

from __future__ import annotations

import argparse
import json

from ..analysis.bench import BLOCK_WARMUP, DEFAULT_PATTERNS, FORMS, BenchTiming, bench, format_table
from ..progress import on_terminal
from .options import count, pattern, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="small", help="U-Net config: preset name (small, paper) or JSON path (default small)")
    parser.add_argument("--pattern", action="append", type=pattern, default=None, help=f"SOI pattern (repeatable; default {', '.join(DEFAULT_PATTERNS)})")
    parser.add_argument("--form", action="append", choices=FORMS, default=None, help="form to time (repeatable; default all)")
    parser.add_argument("--no-windowed", action="store_true", help="skip the windowed-recompute baseline")
    parser.add_argument("--no-exact-strided", action="store_true", help="skip STMC exact-strided")
    parser.add_argument("--batch", type=positive_int, default=1, help="independent streams per step (default 1)")
    parser.add_argument("--throughput-batch", type=positive_int, action="append", default=None, help="also time STMC with B streams per call (repeatable)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch / onnxruntime threads (default 1)")
    parser.add_argument("--rounds", type=positive_int, default=40, help="interleaved rounds timed (default 40)")
    parser.add_argument("--frames-per-round", type=positive_int, default=10, help="frames per case per round (default 10)")
    parser.add_argument(
        "--block-warmup", type=count, default=BLOCK_WARMUP, help=f"untimed frames before each block (default {BLOCK_WARMUP})"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows instead of the table")


def run(args: argparse.Namespace) -> int:
    result = bench(
        args.config,
        tuple(args.pattern) if args.pattern else DEFAULT_PATTERNS,
        tuple(args.form) if args.form else FORMS,
        windowed=not args.no_windowed,
        exact_strided=not args.no_exact_strided,
        batch=args.batch,
        throughput_batches=tuple(args.throughput_batch or ()),
        timing=BenchTiming(args.threads, args.rounds, args.frames_per_round, block_warmup=args.block_warmup),
        check_onnx=False,
        progress=on_terminal(not args.quiet),  # stderr: with --json too, stdout stays the JSON
    )
    if args.json:
        print(json.dumps(result["rows"], indent=2))
    else:
        m = result["machine"]
        print(f"{m['cpu']}, {m['torch_threads']} thread(s), torch {m['torch']}, onnxruntime {m.get('onnxruntime')}")
        print(f"compute-bound reference (dense products of the layer shapes): {result['reference']['gmac_per_s']:.2f} GMAC/s")
        print(format_table(result["rows"]))
    return 0
