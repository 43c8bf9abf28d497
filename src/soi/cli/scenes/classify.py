"""``soi scenes classify``: stream a recording hop by hop through a scene classifier and print the
timeline and the clip's label (:func:`soi.tasks.scenes.classify.classify_file`)."""

from __future__ import annotations

import argparse

import torch

from ...tasks.scenes.classifier import load_checkpoint, read_checkpoint
from ...tasks.scenes.classify import HEADER, TimelineLine, check_input, classify_file, format_line
from ...tasks.scenes.frontend import LogMelConfig
from ...tasks.speech.data import RAW_FORMATS
from ..options import positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        help="audio file, or '-' for standard input (a WAV stream, or raw PCM with --raw-format); any rate "
        "and channel count: mixed down to mono and resampled to the model's rate",
    )  # fmt: skip
    parser.add_argument("--checkpoint", required=True, help="trained classifier (best.pt of soi scenes train)")
    parser.add_argument("--top", type=positive_int, default=3, help="classes per timeline line (default 3)")
    parser.add_argument("--chunk-frames", type=positive_int, default=1, help="hops per streaming step (default 1)")
    parser.add_argument("--raw-format", choices=sorted(RAW_FORMATS), help="standard input is raw little-endian PCM of this format")
    parser.add_argument("--rate", type=positive_int, help="sample rate of raw PCM on standard input (default 16000)")
    parser.add_argument("--channels", type=positive_int, help="interleaved channels of raw PCM on standard input (default 1)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1: a one-frame step is too small to share)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.input != "-" and (args.raw_format or args.rate or args.channels):
        raise ValueError("--raw-format, --rate and --channels describe raw PCM on standard input ('-'); a file says its own format")
    if args.input != "-":  # a wrong input is refused before the network is built (seconds)
        check_input(args.input, LogMelConfig(**read_checkpoint(args.checkpoint)["frontend"]))
    classifier, _ = load_checkpoint(args.checkpoint)
    printed = []

    def show(line: TimelineLine) -> None:
        if not printed:  # the header with the first line: a refused input prints nothing on stdout
            print(HEADER)
            printed.append(True)
        print(format_line(line), flush=True)

    result = classify_file(args.input, classifier, args.top, args.chunk_frames, args.raw_format, args.rate, args.channels, on_line=show)
    print(f"clip  {result.label}  {result.probability:.3f}  (running average of {result.frames} frame posteriors)")
    for note in result.notes:
        print(f"note: {note}")
    rtf = result.seconds_processing / result.seconds_audio if result.seconds_audio else 0.0
    print(f"{classifier.pattern}: {result.seconds_processing:.2f} s for {result.seconds_audio:.2f} s of audio (real-time factor {rtf:.3f})")
    return 0
