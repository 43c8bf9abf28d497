"""``soi video evaluate``: clip accuracy of a trained action classifier on a split and the GMAC/s of
its network at 24 frames/s (:func:`soi.tasks.video.evaluate.evaluate_videos`)."""

from __future__ import annotations

import argparse
import json

from ...analysis.cost import cost
from ...tasks.video.classifier import load_checkpoint
from ...tasks.video.data import open_videos
from ...tasks.video.evaluate import evaluate_videos
from ..options import positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="video set in the HMDB-51 layout")
    parser.add_argument("--checkpoint", required=True, help="trained classifier (best.pt of soi video train)")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test", help="the split to evaluate (default test)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="clips per forward pass (default 8)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    classifier, _ = load_checkpoint(args.checkpoint)
    data = open_videos(args.data, args.split, classifier.size, None, classifier.classes)
    result = evaluate_videos(classifier, data, args.batch_size, progress=not args.quiet)
    d = classifier.description
    report = {
        "model": d["model"], "pattern": d["pattern"], "size": d["size"], "split": args.split, "clips": result.clips,
        "accuracy": result.accuracy, "per_class": result.per_class,
        "gmac_per_s": cost(classifier.network, frame_rate=24.0).mmac_per_s / 1e3,
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{d['model']} {d['pattern']} at {d['size']}x{d['size']}, {args.split} split: {result.clips} clips")
    print(f"accuracy: {result.accuracy:.1f} %   cost: {report['gmac_per_s']:.4f} GMAC/s at 24 frames/s")
    width = max(len(c) for c in result.per_class)
    for name, accuracy in result.per_class.items():
        print(f"  {name:<{width}}  {accuracy:5.1f} %")
    return 0
