"""``soi generate``: build the default speech data set offline
(:func:`soi.tasks.speech.generate.generate_dataset`)."""

from __future__ import annotations

import argparse
import json

from ..tasks.speech.generate import MAX_SEGMENT_SECONDS, generate_dataset
from .options import add_data_folder_options, bounded_float, finite_float, positive_float, positive_int, seed


def configure(parser: argparse.ArgumentParser) -> None:
    add_data_folder_options(parser)
    parser.add_argument("--minutes", type=positive_float, default=10.0, help="total minutes of audio (default 10; the free disk space is checked)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--segment-seconds", type=bounded_float(MAX_SEGMENT_SECONDS), default=4.0,
        help=f"seconds per item (default 4, at most {MAX_SEGMENT_SECONDS:g})",
    )  # fmt: skip
    parser.add_argument("--snr", type=finite_float, nargs=2, default=(-5.0, 15.0), metavar=("LOW", "HIGH"), help="SNR range in dB")
    parser.add_argument("--workers", type=positive_int, default=None, help="concurrent synthesis processes (default: CPUs)")


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
