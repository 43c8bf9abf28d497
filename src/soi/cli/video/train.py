"""``soi video train``: train an action classifier (:func:`soi.tasks.video.train.train_videos`)."""

from __future__ import annotations

import argparse
import json

from ...tasks.video.classifier import MODELS, PATTERNS
from ...tasks.video.train import VideoTrainConfig, train_videos
from ..options import add_loop_options, config_overrides, positive_int


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
    add_loop_options(parser)


def run(args: argparse.Namespace) -> int:
    overrides = config_overrides(args, VideoTrainConfig)
    summary = train_videos(VideoTrainConfig(**overrides), force=args.force)
    if "best" in summary:  # only the process of rank 0 has the summary to print
        print(json.dumps(summary, indent=2))
    return 0
