"""``soi enhance``: stream a noisy audio file through a trained model
(:func:`soi.tasks.speech.enhance.enhance_file`)."""

from __future__ import annotations

import argparse
import sys

import torch

from ..files import writes_to_stdout
from ..tasks.speech.enhance import enhance_file
from ..tasks.speech.masker import load_checkpoint
from .options import pattern, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("noisy", help="input audio file (resampled to the model's rate and downmixed to mono if needed)")
    parser.add_argument(
        "-o", "--output", required=True,
        help="output file; its extension picks the format (.wav, .flac, .ogg, ...; none: WAV), written in the "
        "input's sample format where the output format has it",
    )  # fmt: skip
    parser.add_argument("--checkpoint", help="trained model (default: the checkpoint shipped with soi)")
    parser.add_argument("--pattern", type=pattern, help="run the checkpoint under another SOI pattern")
    parser.add_argument("--offline", action="store_true", help="process the whole file at once (same samples)")
    parser.add_argument("--chunk-frames", type=positive_int, default=1, help="hops per streaming step (default 1)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument(
        "--threads", type=positive_int, default=1,
        help="torch CPU threads (default 1: a one-frame step is too small to share, and a real-time "
        "device keeps the other cores for the rest of the system)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    enhancer, _ = load_checkpoint(args.checkpoint, pattern=args.pattern)
    r = enhance_file(args.noisy, args.output, enhancer, args.offline, args.force, args.chunk_frames, progress=not args.quiet)
    # Audio written to stdout must not be mixed with the report.
    out = sys.stderr if writes_to_stdout(args.output) else sys.stdout
    for note in r.notes:
        print(f"note: {note}", file=out)
    mode = "offline" if args.offline else f"streaming, {args.chunk_frames} hop(s) of {enhancer.hop} samples per step"
    print(f"wrote {r.output} ({r.format} {r.subtype}, {r.samples} samples, {r.seconds_audio:.2f} s at {r.sample_rate} Hz; {mode})", file=out)
    print(f"real-time factor: {r.real_time_factor:.3f} ({r.seconds_processing:.2f} s for {r.seconds_audio:.2f} s of audio)", file=out)
    if r.hop_ms_median is not None:
        budget = 1e3 * args.chunk_frames * enhancer.hop / enhancer.sample_rate
        print(f"per-step latency: median {r.hop_ms_median:.2f} ms, p99 {r.hop_ms_p99:.2f} ms (budget {budget:.0f} ms per step)", file=out)
    print(f"algorithmic latency: {1e3 * enhancer.latency_samples / enhancer.sample_rate:.0f} ms (STFT window - hop + look-ahead)", file=out)
    return 0
