"""``soi demo``: stream-enhance an unseen noisy example with the shipped model
(:func:`soi.tasks.speech.demo.run_demo`)."""

from __future__ import annotations

import argparse

import torch

from ..analysis.cost import format_table
from ..tasks.speech.demo import run_demo


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="soi-demo", help="folder for the WAVs and the picture (default soi-demo/)")
    parser.add_argument("--data", help="default data set folder (default $SOI_DATA or ~/.cache/soi/default-data)")
    parser.add_argument("--example", type=int, default=0, help="index of the test example")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the stream (default 1)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    r = run_demo(args.out, args.data, args.example)
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
