"""Training speed of the speech U-Net on this machine: audio seconds trained per wall second and the
multiply-accumulate rate reached, against the machine's compute-bound reference.

    python3 benchmarks/train_speed.py [--configs small,medium,paper] [--threads 2] [--rounds 5]

One training step (offline forward of :class:`soi.tasks.speech.SpeechEnhancer`, the default loss,
backward, Adam) on random audio, for every variant of every U-Net config, all variants interleaved
round by round (median over rounds). Variants: eager (the default), channels-last memory format,
and ``torch.compile`` of the loss computation; batch x segment sizes at the same audio per step.
The MACs of a step are counted by ``torch.utils.flop_counter.FlopCounterMode`` (forward and
backward, FLOPs / 2); the reference is the rate of one large square matrix product with the same
threads. Writes ``benchmarks/results/train_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from soi.analysis.bench import machine_facts
from soi.models.unet import UNetConfig
from soi.tasks.speech.masker import SpectralMasker, SpeechEnhancer
from soi.tasks.speech.metrics import training_loss

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
CONFIGS = {
    "small": UNetConfig.preset("small"),
    # between the shipped small U-Net and the paper's: twice the small one's channels
    "medium": dataclasses.replace(UNetConfig.preset("small"), channels=(16, 32, 32, 64, 64, 64, 64)),
    "paper": UNetConfig.preset("paper"),
}


def build(config: UNetConfig, channels_last: bool, compiled: bool):
    torch.manual_seed(0)
    enhancer = SpeechEnhancer(SpectralMasker(config, "STMC", mask_bound="tanh"), n_fft=1024, hop=256).train()
    if channels_last:
        enhancer = enhancer.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(enhancer.parameters(), lr=1e-4)

    def loss_of(noisy, clean):
        return training_loss("compressed-spectral", enhancer(noisy), clean, noisy)

    fn = torch.compile(loss_of) if compiled else loss_of

    def step(noisy, clean):
        loss = fn(noisy, clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def square_reference(threads: int) -> float:
    a = torch.randn(1024, 1024)
    for _ in range(3):
        a @ a
    ts = []
    for _ in range(10):
        t = time.perf_counter()
        a @ a
        ts.append(time.perf_counter() - t)
    return 1024**3 / statistics.median(ts) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="small,medium,paper")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--shapes", default="8x2,4x4,16x1", help="batch x segment seconds per variant")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_speed"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ref = square_reference(args.threads)
    cases = []
    for name in args.configs.split(","):
        for shape in args.shapes.split(","):
            b, sec = (float(v) for v in shape.split("x"))
            variants = [("eager", False, False), ("channels-last", True, False)]
            if args.compile:
                variants.append(("compile", False, True))
            for label, cl, comp in variants:
                if shape != args.shapes.split(",")[0] and label != "eager":
                    continue  # memory format and compilation at the first shape only
                g = torch.Generator().manual_seed(0)
                clean = 0.1 * torch.randn(int(b), int(sec * RATE), generator=g)
                noisy = clean + 0.05 * torch.randn(clean.shape, generator=g)
                step = build(CONFIGS[name], cl, comp)
                step(noisy, clean)  # warm-up (and compilation)
                with FlopCounterMode(display=False) as counter:
                    step(noisy, clean)
                macs = counter.get_total_flops() / 2
                cases.append({"config": name, "variant": label, "batch": int(b), "segment_s": sec, "step": step,
                              "noisy": noisy, "clean": clean, "macs": macs, "times": []})  # fmt: skip
                print(f"built {name} {label} {shape}: {macs / 1e9:.1f} GMAC per step", flush=True)
    for r in range(args.rounds):
        for c in cases:
            t = time.perf_counter()
            c["step"](c["noisy"], c["clean"])
            c["times"].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds}", flush=True)
    rows = []
    for c in cases:
        s = statistics.median(c["times"])
        audio = c["batch"] * c["segment_s"]
        rows.append({k: c[k] for k in ("config", "variant", "batch", "segment_s", "macs")} | {
            "step_s": s, "audio_s_per_s": audio / s, "gmac_per_s": c["macs"] / s / 1e9,
            "of_reference": c["macs"] / s / 1e9 / ref, "hours_of_audio_per_hour": audio / s,
        })  # fmt: skip
    facts = machine_facts(args.threads)
    Path(args.out + ".json").write_text(json.dumps({"machine": facts, "reference_gmac_per_s": ref, "rows": rows}, indent=2, default=str) + "\n")
    md = [
        "# Training speed of the speech U-Net",
        "",
        f"One step (forward, compressed spectral loss, backward, Adam) on random audio, {args.threads} thread(s), "
        f"median of {args.rounds} interleaved rounds; MACs from `torch.utils.flop_counter` (forward + backward). "
        f"Reference: a 1024x1024 matrix product, {ref:.1f} GMAC/s. Regenerate: `python3 benchmarks/train_speed.py`.",
        "",
        "| config | variant | batch x seconds | GMAC / step | step (s) | audio s / wall s | GMAC/s | of reference |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['config']} | {r['variant']} | {r['batch']} x {r['segment_s']:g} | {r['macs'] / 1e9:.1f} | {r['step_s']:.3f} | "
            f"{r['audio_s_per_s']:.1f} | {r['gmac_per_s']:.1f} | {100 * r['of_reference']:.0f} % |"
        )
    md += ["", f"Machine: {facts.get('cpu', '')}, torch {torch.__version__}."]
    Path(args.out + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
