"""``soi check``: stream a small convolutional model frame by frame and show it equals offline.

A self-contained demonstration of STMC for a fresh install: it builds a causal 2-D CNN with
look-ahead, converts it from plain ``torch.nn`` with :func:`soi.convert`, streams a random
sequence one frame at a time and in random chunks, and reports the largest difference from the
offline output (float64) and the work per frame against re-running the network on a window.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from ..layers.convert import convert
from ..testing import split_points, stream


def demo_model(channels: int = 16) -> nn.Sequential:
    """A plain torch CNN over (B, 2, T, 64): causal except one frame of look-ahead in the middle."""
    return nn.Sequential(
        nn.ZeroPad2d((1, 1, 2, 0)),
        nn.Conv2d(2, channels, 3, stride=(1, 2)),
        nn.BatchNorm2d(channels),
        nn.ELU(),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ELU(),
        nn.ZeroPad2d((1, 1, 4, 0)),
        nn.Conv2d(channels, channels, 3, dilation=(2, 1)),
        nn.ELU(),
        nn.ConvTranspose2d(channels, 2, (1, 4), stride=(1, 2), padding=(0, 1)),
    )


def run_check(frames: int = 200, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    net = demo_model().double().eval()
    model = convert(net)
    x = torch.randn(1, 2, frames, 64, dtype=torch.float64)
    with torch.no_grad():
        reference = net(x)
        offline = model(x)
        t0 = time.perf_counter()
        per_frame = stream(model, x, [1] * frames)
        per_frame_s = (time.perf_counter() - t0) / frames
        random_chunks = stream(model, x, split_points(frames, "random", seed))
    return {
        "frames": frames,
        "delay": model.delay,
        "receptive_field": model.receptive_field,
        "max_err_offline_vs_torch": (offline - reference).abs().max().item(),
        "max_err_frame_by_frame": (per_frame - offline).abs().max().item(),
        "max_err_random_chunks": (random_chunks - offline).abs().max().item(),
        "ms_per_frame": per_frame_s * 1e3,
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=200, help="sequence length (default 200)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    r = run_check(args.frames, args.seed)
    print(f"model: plain torch CNN converted with soi.convert (receptive field {r['receptive_field']} frames, look-ahead {r['delay']})")
    print(f"offline streaming model vs the torch model:     max |diff| = {r['max_err_offline_vs_torch']:.2e}")
    print(f"streamed one frame at a time vs offline:        max |diff| = {r['max_err_frame_by_frame']:.2e}")
    print(f"streamed in random chunks (1-8 frames):         max |diff| = {r['max_err_random_chunks']:.2e}")
    print(f"one frame step: {r['ms_per_frame']:.3f} ms (eager PyTorch, float64)")
    worst = max(r["max_err_offline_vs_torch"], r["max_err_frame_by_frame"], r["max_err_random_chunks"])
    ok = worst <= 1e-10
    print("PASS: streaming equals offline" if ok else f"FAIL: difference {worst:.2e} > 1e-10")
    return 0 if ok else 1
