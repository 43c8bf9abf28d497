"""``soi check``: stream a small converted CNN frame by frame and show it equals offline
(:func:`soi.analysis.check.run_check`)."""

from __future__ import annotations

import argparse

from ..analysis.check import MAX_FRAMES, run_check
from .options import int_range, seed

TOLERANCE = 1e-10
"""Largest difference that passes: the check runs in float64, so streaming and offline differ only
by rounding."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int_range(1, MAX_FRAMES), default=200, help=f"sequence length, 1 to {MAX_FRAMES} (default 200)")
    parser.add_argument("--seed", type=seed, default=0)


def run(args: argparse.Namespace) -> int:
    r = run_check(args.frames, args.seed)
    print(f"model: plain torch CNN converted with soi.convert (receptive field {r['receptive_field']} frames, look-ahead {r['delay']})")
    print(f"offline streaming model vs the torch model:     max |diff| = {r['max_err_offline_vs_torch']:.2e}")
    print(f"streamed one frame at a time vs offline:        max |diff| = {r['max_err_frame_by_frame']:.2e}")
    print(f"streamed in random chunks (1-8 frames):         max |diff| = {r['max_err_random_chunks']:.2e}")
    print(f"one frame step: {r['ms_per_frame']:.3f} ms (eager PyTorch, float64)")
    worst = max(r["max_err_offline_vs_torch"], r["max_err_frame_by_frame"], r["max_err_random_chunks"])
    ok = worst <= TOLERANCE
    print("PASS: streaming equals offline" if ok else f"FAIL: difference {worst:.2e} > {TOLERANCE:g}")
    return 0 if ok else 1
