"""Table 7 of the SOI paper (appendix E) beside ours: GMAC/s of ResNet-10 3D (regular, small, tiny)
and MoViNet A0/A1, STMC and SOI, at 24 frames/s, and the input resolution the paper's figures imply.

Every layer's output size is ceil(R / its spatial stride), so at a resolution R that every stride
divides (16 for the ResNets, 32 for the MoViNets) the cost per frame is exactly A R^2 + B R + C (the
cost counts real products only, so the borders, where a kernel meets padding, give B R; C: the
layers after the global pool). A, B and C come from the analytic cost at three such resolutions and
are checked at a fourth; the resolution implied by a paper figure G (GMAC/s) is the positive root of
A R^2 + B R + C = G / 24.
Writes benchmarks/results/video_cost.json and .md.

    OMP_NUM_THREADS=1 python3 benchmarks/video_cost.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import soi
from soi.models.movinet import movinet, streaming_movinet
from soi.models.resnet3d import resnet10, streaming_resnet3d

FRAME_RATE = 24.0
PAPER = {  # table 7: (top-1 %, GMAC/s) regular, then SOI
    "resnet10": ((32.63, 48.54), (33.34, 40.69)),
    "resnet10-small": ((31.24, 15.05), (31.41, 13.09)),
    "resnet10-tiny": ((30.46, 5.23), (30.90, 4.73)),
    "movinet-a0": ((34.40, 33.15), (31.88, 24.26)),
    "movinet-a1": ((35.96, 69.77), (32.73, 53.92)),
}
GRID = {"resnet10": (32, 64, 96, 128), "movinet": (64, 96, 128, 160)}
CHOSEN = {"resnet10": 112, "movinet": 172}  # what the cost table uses (see docs/video.md)


def macs_per_frame(name: str, pattern: str, r: int) -> float:
    if name.startswith("resnet10"):
        size = name.split("-")[1] if "-" in name else "regular"
        model = streaming_resnet3d(resnet10(size).eval(), pattern, (r, r))
    else:
        model = streaming_movinet(movinet(name.split("-")[1]).eval(), pattern, (r, r))
    return soi.cost(model, frame_rate=FRAME_RATE).macs_per_frame


def main() -> None:
    rows = []
    for name, ((_, g_stmc), (_, g_soi)) in PAPER.items():
        family = "resnet10" if name.startswith("resnet10") else "movinet"
        grid = GRID[family]
        row = {"model": name, "paper_gmac_s": {"STMC": g_stmc, "SOI": g_soi}, "paper_retained_percent": round(100 * g_soi / g_stmc, 1)}
        for pattern, g in (("STMC", g_stmc), ("SOI", g_soi)):
            macs = [macs_per_frame(name, pattern, r) for r in grid]
            a, b, c = np.polyfit(np.array(grid[:3], dtype=float), np.array(macs[:3]), 2)
            check = a * grid[3] ** 2 + b * grid[3] + c
            assert abs(check - macs[3]) <= 1e-6 * macs[3], f"{name} {pattern}: cost is not quadratic in R at R={grid[3]}"
            target = g * 1e9 / FRAME_RATE
            row[f"implied_resolution_{pattern}"] = round((-b + math.sqrt(b * b - 4 * a * (c - target))) / (2 * a), 1)
            row[f"fit_{pattern}"] = [a, b, c]
        r = CHOSEN[family]
        ours = {p: macs_per_frame(name, p, r) * FRAME_RATE / 1e9 for p in ("STMC", "SOI")}
        row.update(
            resolution=r,
            gmac_s={p: round(v, 3) for p, v in ours.items()},
            retained_percent=round(100 * ours["SOI"] / ours["STMC"], 1),
        )
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("fit_")}), flush=True)
    out = Path(__file__).parent / "results"
    (out / "video_cost.json").write_text(json.dumps({"frame_rate": FRAME_RATE, "rows": rows}, indent=2) + "\n")
    lines = [
        "| model | paper GMAC/s regular | paper GMAC/s SOI | paper retained % | R | ours GMAC/s STMC | ours GMAC/s SOI | ours retained % | difference (points) | R implied by paper STMC / SOI |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['paper_gmac_s']['STMC']:.2f} | {row['paper_gmac_s']['SOI']:.2f} | {row['paper_retained_percent']:.1f} | "
            f"{row['resolution']} | {row['gmac_s']['STMC']:.2f} | {row['gmac_s']['SOI']:.2f} | {row['retained_percent']:.1f} | "
            f"{row['retained_percent'] - row['paper_retained_percent']:+.1f} | {row['implied_resolution_STMC']:.0f} / {row['implied_resolution_SOI']:.0f} |"
        )
    (out / "video_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
