"""The picture of docs/architecture.md: which leaf of the small U-Net runs on which frame under a
pattern, straight from the derived schedule (soi.core.schedule) and the modules' clocks.

    python3 benchmarks/schedule_plot.py [--pattern "S-CC 2"] [--frames 6] [-o docs/img/schedule_s-cc2.png]

Cells: computed (the module produced an output frame), called only (a strided layer storing the
frame in its shift register, an upsampler repeating its element), not called; FP patterns also
show the work done in ``prepare`` between frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from soi.core.timing import Clock  # noqa: E402
from soi.models import UNet, UNetConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pattern", default="S-CC 2")
    parser.add_argument("--config", default="small")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("-o", "--output", default="docs/img/schedule_s-cc2.png")
    args = parser.parse_args()

    model = UNet(UNetConfig.from_json(args.config), args.pattern)
    _, works = model.works(model.input_frame_shape, Clock())
    names = model.layer_names()
    rows, labels = [], []
    for w in works:
        if w.kind == "op" and type(w.module).__name__ in ("FrameWise",):
            continue  # BatchNorm / ELU follow their convolution; keep the picture readable
        row = []
        for t in range(args.frames):
            ran = t >= w.clock.offset and (t - w.clock.offset) % w.clock.period == 0
            called = t >= w.called.offset and (t - w.called.offset) % w.called.period == 0
            row.append(3 if ran and w.clock.precomputed else 2 if ran else 1 if called else 0)
        rows.append(row)
        labels.append(f"{names[id(w.module)]}  ({type(w.module).__name__})")
    cmap = ListedColormap(["#f2f2f2", "#9ecae1", "#08519c", "#e6550d"])
    fig, ax = plt.subplots(figsize=(1.1 * args.frames + 4.5, 0.28 * len(rows) + 1.2))
    ax.imshow(rows, cmap=cmap, vmin=0, vmax=3, aspect="auto")
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xticks(range(args.frames), [f"frame {t}" for t in range(args.frames)], fontsize=8)
    ax.set_xticks([x - 0.5 for x in range(1, args.frames)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(4)]
    ax.set_title(f"{args.pattern}: which layer runs on which frame (small U-Net, derived schedule)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(handles, ["not called", "called, no output frame", "computes", "computes in prepare (FP)"],
               loc="lower center", ncol=4, fontsize=7, frameon=False)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
