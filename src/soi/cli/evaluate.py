"""``soi evaluate``: SI-SNRi per SOI pattern on a data set, with the cost
(:func:`soi.tasks.speech.evaluate.evaluate_checkpoint`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..tasks.speech.demo import ensure_default_data
from ..tasks.speech.evaluate import evaluate_checkpoint, format_results


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", action="append", help="checkpoint(s) to evaluate (default: the shipped one)")
    parser.add_argument("--data", help="data set root (default: the default data set, built if absent)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--pattern", action="append", help="evaluate under these patterns instead of the trained one")
    parser.add_argument("--limit", type=int, help="evaluate only the first N items")
    parser.add_argument("--json", dest="json_path", help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    data = args.data if args.data is not None else str(ensure_default_data())
    rows = [
        evaluate_checkpoint(checkpoint, data, args.split, pattern, args.limit)
        for checkpoint in args.checkpoint or [None]
        for pattern in args.pattern or [None]
    ]
    print(format_results(rows))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.json_path}")
    return 0
