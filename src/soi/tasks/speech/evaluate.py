"""``soi evaluate``: speech-separation quality per SOI pattern, with its cost.

    soi evaluate --checkpoint runs/stmc/best.pt --checkpoint runs/scc2/best.pt --data DIR [--split test]

Each checkpoint is evaluated under the pattern it was trained with (or under every ``--pattern``
given). The scores are those of what ``soi enhance`` writes for each noisy file (the same pipeline,
limiter included, in the file's sample format: :func:`soi.tasks.speech.enhance.enhance_wave`), not
of the model's unbounded float output. :func:`format_results` makes the Markdown table it prints (SI-SNRi, and PESQ/STOI where the
optional packages are installed, with MMAC/s); ``--json`` also writes the rows as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...progress import progress_bar

__all__ = ["evaluate_checkpoint", "format_results"]


def evaluate_checkpoint(
    checkpoint: str | Path | None,
    data: str | Path,
    split: str = "test",
    pattern: str | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Mean SI-SNRi (and PESQ/STOI if available) of a checkpoint on ``data/split``, with its cost;
    ``limit`` takes the first items only (at least 1: a mean of nothing is not a result).
    ``progress`` draws a bar of the items on a terminal."""
    from ...analysis.cost import cost
    from . import metrics
    from .data import audio_subtype, noisy_clean, open_split, writable_subtype
    from .enhance import enhance_wave
    from .masker import load_checkpoint

    if limit is not None and limit < 1:
        raise ValueError(f"evaluate_checkpoint: limit must be >= 1 (the number of items to evaluate), got {limit}")
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
    bar = progress_bar(count, desc=f"evaluate {enhancer.masker.pattern}", unit="item", enabled=progress, leave=False)
    with torch.no_grad():
        for i in range(count):
            noisy, clean = (t.unsqueeze(0) for t in noisy_clean(dataset[i]))
            # what `soi enhance` writes for this input (limiter and sample format included), not the
            # model's float output: the figures are those of the file a user gets
            pairs = getattr(dataset, "pairs", None)
            subtype = writable_subtype("WAV", audio_subtype(pairs[i][0])) if pairs else "PCM_16"
            est = enhance_wave(noisy, enhancer, subtype=subtype)
            sums["si_snri_db"] += float(metrics.si_snr_improvement(est, noisy, clean).mean())
            sums["si_snr_noisy_db"] += float(metrics.si_snr(noisy, clean).mean())
            for name, fn in optional.items():
                sums[name] += float(torch.as_tensor(fn(est, clean)).mean())
                sums[f"{name}_noisy"] += float(torch.as_tensor(fn(noisy, clean)).mean())
            bar.update(1)
    bar.close()
    report = cost(enhancer.masker.unet, frame_rate=enhancer.sample_rate / enhancer.hop)
    result = {
        "checkpoint": str(checkpoint) if checkpoint else "shipped",
        "pattern": enhancer.masker.pattern,
        "trained_pattern": meta.get("pattern"),
        "items": count,
        "mmac_per_s": report.mmac_per_s,
        "retained_percent": report.retained_percent,
    }
    result.update({k: v / count for k, v in sums.items()})
    return result


def format_results(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`evaluate_checkpoint` results, one row each."""
    extra = [k for k in ("pesq", "stoi") if any(k in r for r in rows)]
    head = ["pattern", "checkpoint", "SI-SNRi (dB)", *[f"{k.upper()} (noisy)" for k in extra], "MMAC/s", "retained %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["pattern"], Path(r["checkpoint"]).parent.name or r["checkpoint"], f"{r['si_snri_db']:.2f}"]
        cells += [f"{r[k]:.3f} ({r[k + '_noisy']:.3f})" if k in r else "-" for k in extra]
        cells += [f"{r['mmac_per_s']:.1f}", f"{r['retained_percent']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

