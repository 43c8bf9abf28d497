"""``soi evaluate``: speech-separation quality per SOI pattern, with its cost.

    soi evaluate --checkpoint runs/stmc/best.pt --checkpoint runs/scc2/best.pt --data DIR [--split test]

Each checkpoint is evaluated under the pattern it was trained with (or under every ``--pattern``
given). Prints a Markdown table (SI-SNRi, and PESQ/STOI where the optional packages are installed,
with MMAC/s) and writes it as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["evaluate_checkpoint", "format_results"]


def evaluate_checkpoint(checkpoint: str | Path | None, data: str | Path, split: str = "test", pattern: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Mean SI-SNRi (and PESQ/STOI if available) of a checkpoint on ``data/split``, with its cost."""
    from . import metrics
    from ...analysis.cost import cost
    from .masker import load_checkpoint
    from ...train import _pair, open_split

    enhancer, meta = load_checkpoint(checkpoint, pattern=pattern)
    dataset = open_split(data, split)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    sums: dict[str, float] = {"si_snri_db": 0.0, "si_snr_noisy_db": 0.0}
    optional = {}
    for name, fn in (("pesq", getattr(metrics, "pesq_score", None)), ("stoi", getattr(metrics, "stoi_score", None))):
        if fn is None:
            continue
        try:
            fn(torch.zeros(1, 16000), torch.zeros(1, 16000) + 1e-3)
        except ImportError:
            continue
        except Exception:  # a metric that is installed but dislikes silence is still usable
            pass
        optional[name] = fn
        sums[name] = 0.0
        sums[f"{name}_noisy"] = 0.0
    with torch.no_grad():
        for i in range(count):
            noisy, clean = (t.unsqueeze(0) for t in _pair(dataset[i]))
            est = enhancer(noisy)
            sums["si_snri_db"] += float(metrics.si_snr_improvement(est, noisy, clean).mean())
            sums["si_snr_noisy_db"] += float(metrics.si_snr(noisy, clean).mean())
            for name, fn in optional.items():
                sums[name] += float(torch.as_tensor(fn(est, clean)).mean())
                sums[f"{name}_noisy"] += float(torch.as_tensor(fn(noisy, clean)).mean())
    report = cost(enhancer.masker.unet, frame_rate=enhancer.sample_rate / enhancer.hop)
    result = {
        "checkpoint": str(checkpoint) if checkpoint else "shipped",
        "pattern": enhancer.masker.pattern,
        "trained_pattern": meta.get("pattern"),
        "items": count,
        "mmac_per_s": report.mmac_per_s,
        "retained_percent": report.retained_percent,
    }
    result.update({k: v / max(count, 1) for k, v in sums.items()})
    return result


def format_results(rows: list[dict[str, Any]]) -> str:
    extra = [k for k in ("pesq", "stoi") if any(k in r for r in rows)]
    head = ["pattern", "checkpoint", "SI-SNRi (dB)", *[f"{k.upper()} (noisy)" for k in extra], "MMAC/s", "retained %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["pattern"], Path(r["checkpoint"]).parent.name or r["checkpoint"], f"{r['si_snri_db']:.2f}"]
        cells += [f"{r[k]:.3f} ({r[k + '_noisy']:.3f})" if k in r else "-" for k in extra]
        cells += [f"{r['mmac_per_s']:.1f}", f"{r['retained_percent']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", action="append", help="checkpoint(s) to evaluate (default: the shipped one)")
    parser.add_argument("--data", help="data set root (default: the default data set, built if absent)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--pattern", action="append", help="evaluate under these patterns instead of the trained one")
    parser.add_argument("--limit", type=int, help="evaluate only the first N items")
    parser.add_argument("--json", dest="json_path", help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    if args.data is None:
        from .demo import ensure_default_data

        args.data = str(ensure_default_data())
    rows = []
    for ckpt in args.checkpoint or [None]:
        for pattern in args.pattern or [None]:
            rows.append(evaluate_checkpoint(ckpt, args.data, args.split, pattern, args.limit))
    print(format_results(rows))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.json_path}")
    return 0
