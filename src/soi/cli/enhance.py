"""``soi enhance``: stream noisy audio through a trained model, from a file or standard input
(:func:`soi.tasks.speech.enhance.enhance_file`)."""

from __future__ import annotations

import argparse
import sys

import torch

from ..files import writes_to_stdout
from ..tasks.speech.data import OUTPUT_FORMATS, RAW_FORMATS, audio_format
from ..tasks.speech.enhance import STDIO, enhance_file
from ..tasks.speech.masker import load_checkpoint
from .options import pattern, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "noisy",
        help="input audio file, or '-' for standard input (a WAV stream, or raw PCM with --raw-format); "
        "any rate and channel count: resampled to the model's rate and back, each channel enhanced as its own stream",
    )  # fmt: skip
    parser.add_argument(
        "-o", "--output", required=True,
        help=f"output file ({' or '.join(OUTPUT_FORMATS)} by its extension; none: WAV), or '-' for standard output "
        "(written hop by hop: raw PCM if the input was raw, else WAV); the input's rate, channels and sample format",
    )  # fmt: skip
    parser.add_argument("--raw-format", choices=sorted(RAW_FORMATS), help="standard input is raw little-endian PCM of this format")
    parser.add_argument("--rate", type=positive_int, help="sample rate of raw PCM on standard input (default 16000)")
    parser.add_argument("--channels", type=positive_int, help="interleaved channels of raw PCM on standard input (default 1)")
    parser.add_argument("--checkpoint", help="trained model (default: the checkpoint shipped with soi)")
    parser.add_argument("--pattern", type=pattern, help="run the checkpoint under another SOI pattern")
    parser.add_argument(
        "--offline", action="store_true",
        help="process blocks of 512 hops at once (faster, bounded memory; the same samples up to float rounding)",
    )  # fmt: skip
    parser.add_argument("--chunk-frames", type=positive_int, default=1, help="hops per streaming step (default 1)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument(
        "--threads", type=positive_int, default=1,
        help="torch CPU threads (default 1: a one-frame step is too small to share, and a real-time "
        "device keeps the other cores for the rest of the system)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.noisy != STDIO and (args.raw_format or args.rate or args.channels):
        raise ValueError("--raw-format, --rate and --channels describe raw PCM on standard input ('-'); a file says its own format")
    if args.output != STDIO:
        audio_format(args.output)  # an unknown extension is refused before the model is loaded
    enhancer, _ = load_checkpoint(args.checkpoint, pattern=args.pattern)
    r = enhance_file(
        args.noisy, args.output, enhancer, args.offline, args.force, args.chunk_frames, progress=not args.quiet,
        raw_format=args.raw_format, rate=args.rate, channels=args.channels,
    )  # fmt: skip
    # Audio written to stdout must not be mixed with the report.
    out = sys.stderr if args.output == STDIO or writes_to_stdout(args.output) else sys.stdout
    for note in r.notes:
        print(f"note: {note}", file=out)
    mode = "offline, blocks of 512 hops" if args.offline else f"streaming, {args.chunk_frames} hop(s) of {enhancer.hop} samples per step"
    chans = f"{r.channels} channels, " if r.channels > 1 else ""
    print(
        f"wrote {r.output} ({r.format} {r.subtype}, {chans}{r.samples} samples, {r.seconds_audio:.2f} s at {r.sample_rate} Hz; "
        f"peak {r.peak:.3f}; {mode})", file=out,
    )  # fmt: skip
    print(f"real-time factor: {r.real_time_factor:.3f} ({r.seconds_processing:.2f} s for {r.seconds_audio:.2f} s of audio)", file=out)
    if r.hop_ms_median is not None:
        budget = 1e3 * args.chunk_frames * enhancer.hop / enhancer.sample_rate
        print(f"per-step latency: median {r.hop_ms_median:.2f} ms, p99 {r.hop_ms_p99:.2f} ms (budget {budget:.0f} ms per step)", file=out)
    print(f"algorithmic latency: {1e3 * enhancer.latency_samples / enhancer.sample_rate:.0f} ms (STFT window - hop + look-ahead)", file=out)
    return 0
