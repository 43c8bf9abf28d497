"""``soi evaluate``: SI-SNRi per SOI pattern on a data set, with the cost
(:func:`soi.tasks.speech.evaluate.evaluate_checkpoint`)."""

from __future__ import annotations

import argparse
import json

from ..files import check_output_file, write_file
from ..tasks.speech.demo import ensure_default_data
from ..tasks.speech.evaluate import evaluate_checkpoint, format_results
from .options import pattern, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", action="append", help="checkpoint(s) to evaluate (default: the shipped one)")
    parser.add_argument("--data", help="data set root (default: the default data set, built if absent)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--pattern", action="append", type=pattern, help="evaluate under these patterns instead of the trained one")
    parser.add_argument("--limit", type=positive_int, help="evaluate only the first N items (N >= 1)")
    parser.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")


def run(args: argparse.Namespace) -> int:
    checkpoints = args.checkpoint or [None]
    if args.json_path:  # before the work: a bad path is found at once, not after the evaluation
        check_output_file(args.json_path, force=args.force, inputs=[c for c in checkpoints if c])
    data = args.data if args.data is not None else str(ensure_default_data(progress=not args.quiet))
    rows = [
        evaluate_checkpoint(checkpoint, data, args.split, p, args.limit, progress=not args.quiet)
        for checkpoint in checkpoints
        for p in args.pattern or [None]
    ]
    print(format_results(rows))
    if args.json_path:
        write_file(args.json_path, (json.dumps(rows, indent=2) + "\n").encode(), force=args.force, inputs=[c for c in checkpoints if c])
        print(f"wrote {args.json_path}")
    return 0
