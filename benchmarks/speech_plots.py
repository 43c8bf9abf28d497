"""Plots of the speech results: SI-SNRi against MMAC/s per SOI pattern, and validation curves.

    python benchmarks/speech_plots.py      # reads benchmarks/results/speech/, writes docs/img/
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).parent / "results" / "speech"
OUT = Path(__file__).parent.parent / "docs" / "img"
# SOI paper, tables 1 and 2: SI-SNRi (dB) and complexity retained (%).
PAPER = {"STMC": (7.69, 100.0), "S-CC 5": (7.47, 64.8), "S-CC 2": (7.23, 51.4), "SS-CC 5": (7.24, 64.8)}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = json.loads((HERE / "evaluation.json").read_text())
    base = next(r for r in rows if r["pattern"] == "STMC")["si_snri_db"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for r in rows:
        p = r["pattern"]
        ax.scatter(r["retained_percent"], 100 * r["si_snri_db"] / base, color="C0", zorder=3)
        ax.annotate(p, (r["retained_percent"], 100 * r["si_snri_db"] / base), textcoords="offset points", xytext=(6, 4))
        if p in PAPER:
            xy = (PAPER[p][1], 100 * PAPER[p][0] / PAPER["STMC"][0])
            ax.scatter(*xy, color="C1", marker="s", zorder=3)
            if p != "STMC":
                ax.annotate(p, xy, textcoords="offset points", xytext=(6, -12), color="C1")
    ax.scatter([], [], color="C0", label="soi, small U-Net, default data (1 run each)")
    ax.scatter([], [], color="C1", marker="s", label="SOI paper, tables 1-2 (5 runs each)")
    ax.set_xlabel("complexity retained (% of STMC MMAC/s)")
    ax.set_ylabel("SI-SNRi retained (% of STMC)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", fontsize=8)
    fig.savefig(OUT / "speech_quality_vs_cost.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for log in sorted(HERE.glob("train_log_*.csv")):
        with log.open() as f:
            data = list(csv.DictReader(f))
        ax.plot([int(d["step"]) for d in data], [float(d["valid_si_snri_db"]) for d in data], marker="o", label=log.stem[10:])
    ax.set_xlabel("training step (batch 8 x 2 s)")
    ax.set_ylabel("validation SI-SNRi (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(OUT / "speech_validation_curves.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
