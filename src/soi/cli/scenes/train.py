"""``soi scenes train``: train a scene classifier (:func:`soi.tasks.scenes.train.train_scenes`)."""

from __future__ import annotations

import argparse
import json

from ...models.ghostnet import PATTERNS
from ...tasks.scenes.train import SceneTrainConfig, train_scenes
from ..options import add_loop_options, config_overrides, positive_float, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    # No defaults here: a flag not given leaves SceneTrainConfig's default.
    parser.add_argument("--data", required=True, help="scene set in the TAU/DCASE layout (soi scenes generate DIR makes one)")
    parser.add_argument("--out", dest="out_dir", help="output folder for checkpoints and logs (default runs/scenes)")
    parser.add_argument("--width", type=positive_float, help="GhostNet width multiplier (default 0.2; sizes 0.2 0.3 0.4 0.5 0.7 1.0 1.3)")
    parser.add_argument("--pattern", choices=PATTERNS, help="STMC, SOI or baseline (offline only; default STMC)")
    parser.add_argument("--upsampler", help="SOI's upsampler: duplicate | transposed | nearest | linear | cubic")
    parser.add_argument("--mels", dest="n_mels", type=positive_int, help="mel bands of the front end (default 64)")
    parser.add_argument("--dropout", type=float, help="dropout before the classifier (default 0.2)")
    parser.add_argument("--segment-seconds", type=positive_float, help="length of the training crops (default 4)")
    add_loop_options(parser)


def run(args: argparse.Namespace) -> int:
    overrides = config_overrides(args, SceneTrainConfig)
    summary = train_scenes(SceneTrainConfig(**overrides), force=args.force)
    if "best" in summary:  # only the process of rank 0 has the summary to print
        print(json.dumps(summary, indent=2))
    return 0
