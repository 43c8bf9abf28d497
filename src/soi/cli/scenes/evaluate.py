"""``soi scenes evaluate``: accuracy and per-class accuracy of a trained scene classifier on a split,
and the MMAC/s of its pattern (:func:`soi.tasks.scenes.evaluate.evaluate_scenes`)."""

from __future__ import annotations

import argparse
import json

from ...tasks.scenes.classifier import load_checkpoint
from ...tasks.scenes.data import SPLIT_FILES, open_scenes
from ...tasks.scenes.evaluate import evaluate_scenes, network_mmac_per_s
from ..options import positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="scene set in the TAU/DCASE layout")
    parser.add_argument("--checkpoint", required=True, help="trained classifier (best.pt of soi scenes train)")
    parser.add_argument("--split", choices=tuple(SPLIT_FILES), default="test", help="the split to evaluate (default test)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="clips per forward pass (default 8)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    classifier, _ = load_checkpoint(args.checkpoint)
    data = open_scenes(args.data, args.split, classifier.sample_rate, classifier.classes)
    result = evaluate_scenes(classifier, data, args.batch_size, progress=not args.quiet)
    report = {
        "pattern": classifier.pattern,
        "width": classifier.description["width"],
        "split": args.split,
        "clips": result.clips,
        "accuracy": result.accuracy,
        "per_class": result.per_class,
        "mmac_per_s": network_mmac_per_s(classifier),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{classifier.pattern} width {report['width']:g}, {args.split} split: {result.clips} clips")
    print(f"accuracy: {result.accuracy:.1f} %   cost: {report['mmac_per_s']:.1f} MMAC/s")
    width = max(len(c) for c in result.per_class)
    for name, accuracy in result.per_class.items():
        print(f"  {name:<{width}}  {accuracy:5.1f} %")
    return 0
