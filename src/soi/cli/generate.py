"""``soi generate``: build the default speech data set offline
(:func:`soi.tasks.speech.generate.generate_dataset`)."""

from __future__ import annotations

import argparse
import json

from ..tasks.speech.generate import generate_dataset


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder")
    parser.add_argument("--minutes", type=float, default=10.0, help="total minutes of audio (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--segment-seconds", type=float, default=4.0, help="seconds per item (default 4)")
    parser.add_argument("--snr", type=float, nargs=2, default=(-5.0, 15.0), metavar=("LOW", "HIGH"), help="SNR range in dB")
    parser.add_argument("--workers", type=int, default=None, help="concurrent synthesis processes (default: CPUs)")
    parser.add_argument("--force", action="store_true", help="replace a different data set in OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    out = generate_dataset(
        args.out,
        minutes=args.minutes,
        seed=args.seed,
        segment_seconds=args.segment_seconds,
        progress=not args.quiet,
        snr_range_db=tuple(args.snr),
        workers=args.workers,
        overwrite=args.force,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    for name, split in manifest["splits"].items():
        print(f"{name}: {len(split['items'])} items, {len(split['voices'])} voices, {len(split['noise_sources'])} noise sources")
    print(f"wrote {out}")
    return 0
