"""``soi video train``: train an action classifier (:func:`soi.tasks.video.train.train_videos`)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ...tasks.video.classifier import MODELS, PATTERNS
from ...tasks.video.train import VideoTrainConfig, train_videos
from ..options import count, positive_float, positive_int, seed


def configure(parser: argparse.ArgumentParser) -> None:
    # No defaults here: a flag not given leaves VideoTrainConfig's default.
    parser.add_argument("--data", required=True, help="video set in the HMDB-51 layout (soi video generate DIR makes one)")
    parser.add_argument("--out", dest="out_dir", help="output folder for checkpoints and logs (default runs/video)")
    parser.add_argument("--model", choices=MODELS, help="network (default resnet10-tiny)")
    parser.add_argument("--pattern", choices=PATTERNS, help="STMC or SOI (default STMC)")
    parser.add_argument("--size", type=positive_int, help="frame side the clips are resized to (default 32; MoViNets need >= 33)")
    parser.add_argument("--frames", type=positive_int, help="frames per training crop (default 16)")
    parser.add_argument("--upsampler", help="SOI's upsampler: duplicate | transposed | nearest | linear | cubic")
    parser.add_argument("--dropout", type=float, help="dropout before the classifier (default 0.2)")
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--lr", type=positive_float)
    parser.add_argument("--lr-patience", type=positive_int, help="halve the learning rate after this many validations without a new best (default 4)")
    parser.add_argument("--min-lr", type=positive_float, help="the learning rate halves no further than this (default 1e-5)")
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--steps", dest="max_steps", type=positive_int)
    parser.add_argument("--minutes", type=positive_float, help="wall-clock budget; stops, validates and saves")
    parser.add_argument("--seed", type=seed)
    parser.add_argument("--valid-every", type=positive_int)
    parser.add_argument("--workers", dest="num_workers", type=count)
    parser.add_argument("--no-resume", dest="resume", action="store_false", default=None, help="start over even if --out holds a run")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar (as --quiet)")
    parser.add_argument("--force", action="store_true", help="replace the checkpoints and log of an earlier run in --out instead of resuming it")


def run(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(VideoTrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.quiet:
        overrides["progress"] = False
    summary = train_videos(VideoTrainConfig(**overrides), force=args.force)
    if "best" in summary:  # only the process of rank 0 has the summary to print
        print(json.dumps(summary, indent=2))
    return 0
