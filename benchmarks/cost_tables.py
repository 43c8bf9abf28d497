"""Cost tables of docs/soi.md: the paper-like U-Net against the SOI paper's tables 1 and 2, the
upsamplers, and STMC's exact strided mode against SOI for 1, 2 and 3 strided levels.

    python benchmarks/cost_tables.py                  # Markdown on stdout
    python benchmarks/cost_tables.py --json out.json  # also every figure as JSON

Analytic (no timing, no training): a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from paper_tables import PAPER_TABLES  # this folder's reference figures
from soi.analysis.cost import cost
from soi.models import UNet, UNetConfig

FRAME_RATE = 62.5  # STFT 1024 / hop 256 at 16 kHz
FRAME_MS = 1000 / FRAME_RATE


def fmt(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"


def paper_table(config: UNetConfig) -> tuple[str, list[dict]]:
    rows, lines = [], [
        "| pattern | MMAC/s | paper MMAC/s | retained % | paper retained % | peak MMAC/s | precomputed % | paper precomputed % | state KiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pattern, (p_ret, p_mmac, p_pre) in PAPER_TABLES.items():
        r = cost(UNet(config, pattern), FRAME_RATE)
        rows.append({**r.as_dict(), "paper_retained_percent": p_ret, "paper_mmac_per_s": p_mmac, "paper_precomputed_percent": p_pre})
        lines.append(
            f"| {pattern} | {r.mmac_per_s:.1f} | {p_mmac:.1f} | {r.retained_percent:.1f} | {p_ret:.1f} | "
            f"{r.peak_mmac_per_s:.1f} | {r.precomputed_percent:.1f} | {fmt(p_pre)} | {r.state_bytes / 1024:.1f} |"
        )
    return "\n".join(lines), rows


def paper_level_shares() -> dict[int, float]:
    """Per-level shares of the paper's STMC cost implied by tables 1 and 2 (S-CC k retains
    a_<k + (1 - a_<k)/2, SS-CC k precomputes the levels >= k)."""
    below = {1: 0.0}
    for k in range(2, 8):
        key = f"SS-CC {k}" if f"SS-CC {k}" in PAPER_TABLES else None
        if key:
            below[k] = 1 - PAPER_TABLES[key][2] / 100
    below[3] = 1 - PAPER_TABLES["SS-CC 1 3"][2] / 100
    below[4] = 2 * PAPER_TABLES["SS-CC 4 6"][0] / 100 - 1
    below[6] = 1 - PAPER_TABLES["SS-CC 1 6"][2] / 100
    below[8] = 1.0
    return {k: 100 * (below[k + 1] - below[k]) for k in range(1, 8)}


def level_table(config: UNetConfig) -> tuple[str, dict]:
    r = cost(UNet(config, "STMC"), FRAME_RATE)
    ours = defaultdict(float)
    for w in r.works:
        ours[int(w.path.split(".")[1]) + 1] += w.macs / w.clock.period
    total = sum(ours.values())
    ours = {k: 100 * v / total for k, v in sorted(ours.items())}
    paper = paper_level_shares()
    lines = ["| level | " + " | ".join(str(k) for k in ours) + " |", "|---|" + "---:|" * len(ours)]
    lines.append("| ours % | " + " | ".join(f"{v:.1f}" for v in ours.values()) + " |")
    lines.append("| paper % (implied) | " + " | ".join(f"{paper[k]:.1f}" for k in ours) + " |")
    return "\n".join(lines), {"ours": ours, "paper": paper}


def upsampler_table(config: UNetConfig, pattern: str = "S-CC 2") -> tuple[str, list[dict]]:
    lines = [
        f"| upsampler ({pattern}) | MMAC/s | retained % | added latency (frames) | added latency (ms) | state KiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = []
    for up in ("duplicate", "transposed", "nearest", "linear", "cubic"):
        model = UNet(config, pattern, upsampler=up)
        r = cost(model, FRAME_RATE)
        rows.append({**r.as_dict(), "upsampler": up, "delay_frames": model.delay})
        lines.append(
            f"| {up} | {r.mmac_per_s:.1f} | {r.retained_percent:.1f} | {model.delay} | {model.delay * FRAME_MS:.0f} | "
            f"{r.state_bytes / 1024:.1f} |"
        )
    return "\n".join(lines), rows


def exact_table(config: UNetConfig, families: list[list[str]]) -> tuple[str, list[dict]]:
    stmc = cost(UNet(config, "STMC"), FRAME_RATE)
    lines = [
        "| strided levels | pattern | SOI MMAC/s | exact STMC MMAC/s | SOI state KiB | exact STMC state KiB | exact / SOI state |",
        "|---:|---|---:|---:|---:|---:|---:|",
        (
            f"| 0 | STMC | {stmc.mmac_per_s:.1f} | {stmc.mmac_per_s:.1f} | {stmc.state_bytes / 1024:.1f} | "
            f"{stmc.state_bytes / 1024:.1f} | 1.00 |"
        ),
    ]
    rows = []
    for family in families:
        for n, pattern in enumerate(family, 1):
            s = cost(UNet(config, pattern), FRAME_RATE)
            e = cost(UNet(config, pattern, strided_mode="stmc"), FRAME_RATE)
            rows.append({
                "pattern": pattern, "strided_levels": n,
                "soi_mmac_per_s": s.mmac_per_s, "stmc_mmac_per_s": e.mmac_per_s,
                "soi_state_bytes": s.state_bytes, "stmc_state_bytes": e.state_bytes,
            })  # fmt: skip
            lines.append(
                f"| {n} | {pattern} | {s.mmac_per_s:.1f} | {e.mmac_per_s:.1f} | {s.state_bytes / 1024:.1f} | "
                f"{e.state_bytes / 1024:.1f} | {e.state_bytes / s.state_bytes:.2f} |"
            )
    return "\n".join(lines), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper", help="U-Net config (JSON file or preset; default: paper)")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    config = UNetConfig.from_json(args.config)
    out: dict = {"config": config.to_dict(), "frame_rate": FRAME_RATE}
    t1, out["patterns"] = paper_table(config)
    t2, out["level_shares"] = level_table(config)
    t3, out["upsamplers"] = upsampler_table(config)
    t4, out["exact_vs_soi"] = exact_table(
        config, [["S-CC 1", "2xS-CC 1 2", "3xS-CC 1 2 3"], ["S-CC 5", "2xS-CC 5 6", "3xS-CC 5 6 7"]]
    )
    c = config
    print(
        f"U-Net: {c.depth} levels, channels {list(c.channels)}, kernel {list(c.kernel)}, {c.freq_bins} bins, "
        f"frequency stride {c.freq_stride}, time stride {c.time_stride}, {FRAME_RATE} frames/s\n"
    )
    for title, table in (
        ("Patterns of the paper's tables 1 and 2", t1),
        ("Share of each level in the STMC cost", t2),
        ("Upsamplers", t3),
        ("Exact strided STMC vs SOI", t4),
    ):
        print(f"### {title}\n\n{table}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
