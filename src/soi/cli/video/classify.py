"""``soi video classify``: stream a video or a folder of frames frame by frame through an action
classifier and print a label timeline and the clip's label (:func:`soi.tasks.video.classify.classify_video`)."""

from __future__ import annotations

import argparse

import torch

from ...tasks.video.classifier import load_checkpoint
from ...tasks.video.classify import HEADER, classify_video, read_frames
from ..options import positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video file (any PyAV format, or soi's .npy frames) or a folder of PNG/JPEG frames")
    parser.add_argument("--checkpoint", required=True, help="trained classifier (best.pt of soi video train)")
    parser.add_argument("--every", type=positive_int, default=12, help="frames per timeline line (default 12: half a second at 24 fps)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    read_frames(args.input)  # a wrong input is refused before the network is built
    classifier, _ = load_checkpoint(args.checkpoint)
    printed = []

    def show(line: tuple[float, int, str, float]) -> None:
        if not printed:
            print(HEADER)
            printed.append(True)
        t, n, label, p = line
        print(f"{t:6.2f}  {n:5d}  {label}  {p:.3f}", flush=True)

    result = classify_video(args.input, classifier, args.every, on_line=show)
    print(f"clip  {result.label}  {result.probability:.3f}  (running average of {result.frames} frame posteriors)")
    rtf = result.seconds_processing / result.seconds_video if result.seconds_video else 0.0
    d = classifier.description
    print(f"{d['model']} {d['pattern']}: {result.seconds_processing:.2f} s for {result.seconds_video:.2f} s of video (real-time factor {rtf:.3f})")
    return 0
