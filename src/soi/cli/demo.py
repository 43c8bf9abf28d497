"""``soi demo``: stream-enhance an unseen noisy example with the shipped model
(:func:`soi.tasks.speech.demo.run_demo`)."""

from __future__ import annotations

import argparse

import torch

from ..analysis.cost import format_table
from ..tasks.speech.demo import run_demo
from .options import count, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="soi-demo", help="folder for the WAVs and the picture (default soi-demo/)")
    parser.add_argument(
        "--data", help="data set folder: one soi generate made is used as it is, an empty or new one gets the "
        "default set (default $SOI_DATA or ~/.cache/soi/default-data)",
    )  # fmt: skip
    parser.add_argument("--example", type=count, default=0, help="index of the test example (default 0)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads for the stream (default 1)")
    parser.add_argument("--force", action="store_true", help="replace files in --out that soi did not write")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    r = run_demo(args.out, args.data, args.example, force=args.force, progress=not args.quiet)
    print()
    print(f"unseen test example {r['example']} (voice and noise source never seen in training; model trained as {r['checkpoint_pattern']!r}), streamed hop by hop:")
    print(f"  SI-SNR noisy {r['si_snr_noisy_db']:.2f} dB -> enhanced {r['si_snr_enhanced_db']:.2f} dB: SI-SNRi {r['si_snri_db']:+.2f} dB")
    print(f"  streaming vs offline: max |diff| {r['stream_vs_offline_max_abs']:.1e}")
    print(f"  real-time factor {r['real_time_factor']:.3f}; per-hop latency median {r['hop_ms_median']:.2f} ms, p99 {r['hop_ms_p99']:.2f} ms (hop = 16 ms)")
    print("  wrote " + ", ".join(r["files"]))
    print()
    print("cost of the shipped U-Net under SOI patterns (62.5 frames/s):")
    print(format_table(r["cost_table"]))
    return 0
