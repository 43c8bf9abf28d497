"""``soi check``: stream a small convolutional model frame by frame and show it equals offline.

A self-contained demonstration of STMC for a fresh install: it builds a causal 2-D CNN with
look-ahead, converts it from plain ``torch.nn`` with :func:`soi.convert`, streams a random
sequence one frame at a time and in random chunks, and reports the largest difference from the
offline output (float64) and the work per frame against re-running the network on a window.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..layers.convert import convert
from ..testing import split_points, stream

MAX_FRAMES = 20_000
"""The longest check: the float64 sequence and the layer outputs of the demo model stay under
about 1 GB (five minutes of frames at 62.5 frames/s)."""


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
    """Convert :func:`demo_model` (float64, random weights from ``seed``), stream ``frames`` random
    frames through it one at a time and in random chunks, and return the largest differences from
    offline (``max_err_*``), the delay and receptive field, and the time of one frame step."""
    if not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"run_check: frames must be from 1 to {MAX_FRAMES}, got {frames}")
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

