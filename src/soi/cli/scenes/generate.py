"""``soi scenes generate``: build the default scene data set offline
(:func:`soi.tasks.scenes.generate.generate_scenes`)."""

from __future__ import annotations

import argparse
import json

from ...tasks.scenes.generate import generate_scenes
from ..options import add_data_folder_options, positive_float, seed


def configure(parser: argparse.ArgumentParser) -> None:
    add_data_folder_options(parser)
    parser.add_argument(
        "--minutes",
        type=positive_float,
        default=10.0,
        help="total minutes of audio in 10-s clips (default 10)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    out = generate_scenes(
        args.out,
        minutes=args.minutes,
        seed=args.seed,
        progress=not args.quiet,
        overwrite=args.force,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    scenes = manifest["params"]["scenes"]
    for name, split in manifest["splits"].items():
        beds = sum(len(v) for v in split["beds"].values())
        print(
            f"{name}: {len(split['items'])} clips, {beds} bed recordings of {len(scenes)} scenes"
        )
    print(f"wrote {out}")
    return 0
