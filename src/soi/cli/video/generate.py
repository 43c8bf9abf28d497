"""``soi video generate``: render the default action set (:func:`soi.tasks.video.generate.generate_videos`)."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from ...tasks.video.generate import DEFAULT_FRAMES, DEFAULT_SIZE, generate_videos
from ..options import add_data_folder_options, positive_int, seed


def configure(parser: argparse.ArgumentParser) -> None:
    add_data_folder_options(parser)
    parser.add_argument("--clips", type=positive_int, default=330, help="clips over train/valid/test, 80/10/10 (default 330)")
    parser.add_argument("--size", type=positive_int, default=DEFAULT_SIZE, help=f"frame side in pixels (default {DEFAULT_SIZE})")
    parser.add_argument("--frames", type=positive_int, default=DEFAULT_FRAMES, help=f"frames per clip at 24 fps (default {DEFAULT_FRAMES})")
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    out = generate_videos(args.out, args.clips, args.size, args.frames, args.seed, progress=not args.quiet, overwrite=args.force)
    manifest = json.loads((out / "manifest.json").read_text())
    for split, n in Counter(c["split"] for c in manifest["clips"]).items():
        print(f"{split}: {n} clips of {len(manifest['params']['actions'])} actions")
    print(f"wrote {out}")
    return 0
