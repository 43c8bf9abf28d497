"""Top-1 accuracy regular (STMC) vs SOI on the default action set's test split (appendix E's table 7,
accuracy side): ResNet-10 tiny and small and MoViNet A0, each pattern trained with the project's one
loop for the same number of steps from the same seed, its best-validation checkpoint scored on the
unseen test clips (the causal running-average label at the last frame, which a stream reproduces).

    OMP_NUM_THREADS=1 python3 benchmarks/video_accuracy.py [--steps 600] [--seeds 0 1 2] [--models ...]
    python3 benchmarks/video_accuracy.py --table-only

Every run has its folder ``training/video/<model>-<pattern>-s<seed>/`` (``--runs-dir``): the loop's
``log.csv`` and, once scored, ``test.json``. A run with a ``test.json`` is skipped and an
interrupted one resumes from its ``last.pt``, so several processes can share the list (give each
other seeds or models) and the sweep survives a stop. After each run the table is rewritten from
every ``test.json`` found: ``benchmarks/results/video_accuracy.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from soi.analysis.bench import machine_facts
from soi.files import write_file
from soi.tasks.video.classifier import load_checkpoint
from soi.tasks.video.data import open_videos
from soi.tasks.video.evaluate import evaluate_videos
from soi.tasks.video.generate import generate_videos
from soi.tasks.video.train import VideoTrainConfig, train_videos

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"resnet10-tiny": 32, "resnet10-small": 32, "movinet-a0": 48}  # model -> frame side (MoViNets need >= 33)
PATTERNS = ("STMC", "SOI")
# Table 7 of the SOI paper (HMDB-51, top-1 %): regular, SOI
PAPER = {"resnet10-tiny": (5.23, 4.73), "resnet10-small": (15.05, 13.09), "movinet-a0": (33.15, 24.26)}


def run_one(args: argparse.Namespace, model: str, pattern: str, seed: int) -> dict:
    """Train (or resume) one run and score its best checkpoint on the test split; ``test.json``."""
    out = args.runs_dir / f"{model}-{pattern.lower()}-s{seed}"
    done = out / "test.json"
    if done.is_file():
        return json.loads(done.read_text())
    size = MODELS[model]
    cfg = VideoTrainConfig(
        data=str(args.data), out_dir=str(out), model=model, pattern=pattern, size=size, seed=seed,
        max_steps=args.steps, valid_every=args.valid_every, progress=False,
    )  # fmt: skip
    t0 = time.monotonic()
    summary = train_videos(cfg)
    train_s = time.monotonic() - t0
    classifier, extra = load_checkpoint(summary["best"])
    test = evaluate_videos(classifier, open_videos(str(args.data), "test", size, None, classifier.classes))
    record = {
        "model": model, "pattern": pattern, "seed": seed, "size": size, "steps": summary["steps"],
        "best_step": extra["step"], "best_valid_accuracy": summary["best_valid_accuracy"],
        "test_accuracy": test.accuracy, "test_clips": test.clips, "train_loss": summary["loss"],
        "train_seconds": train_s,
    }  # fmt: skip
    write_file(done, json.dumps(record, indent=2).encode(), force=True)
    print(json.dumps(record), flush=True)
    return record


def summarise(records: list[dict]) -> list[dict]:
    rows = []
    for model in MODELS:
        by = {p: [r["test_accuracy"] for r in records if r["model"] == model and r["pattern"] == p] for p in PATTERNS}
        if not all(by.values()):
            continue
        mean = {p: statistics.fmean(v) for p, v in by.items()}
        std = {p: statistics.stdev(v) if len(v) > 1 else 0.0 for p, v in by.items()}
        paper = PAPER[model]
        rows.append({
            "model": model, "seeds": min(len(v) for v in by.values()),
            "stmc_accuracies": by["STMC"], "soi_accuracies": by["SOI"],
            "stmc_mean": mean["STMC"], "stmc_std": std["STMC"], "soi_mean": mean["SOI"], "soi_std": std["SOI"],
            "change_points": mean["SOI"] - mean["STMC"], "retained_percent": 100.0 * mean["SOI"] / mean["STMC"],
            "paper_regular": paper[0], "paper_soi": paper[1], "paper_retained_percent": 100.0 * paper[1] / paper[0],
        })  # fmt: skip
    return rows


def write_results(args: argparse.Namespace, records: list[dict]) -> None:
    rows = summarise(records)
    result = {
        "config": {"steps": args.steps, "valid_every": args.valid_every, "batch_size": VideoTrainConfig.batch_size,
                   "lr": VideoTrainConfig.lr, "frames": VideoTrainConfig.frames},
        "summary": rows, "runs": records, "machine": machine_facts(1),
        "data": {"clips": args.clips},
    }  # fmt: skip
    write_file(args.results.with_suffix(".json"), json.dumps(result, indent=2).encode(), force=True)
    chance = 100.0 / 11
    lines = [
        "# Video action recognition: top-1 accuracy regular (STMC) vs SOI (the paper's table 7, accuracy side)",
        "",
        (f"Default procedural action set (`soi video generate`, {args.clips} clips, split by generator seed; 11 classes, "
         f"chance {chance:.1f} %). Each run: {args.steps} steps of batch {VideoTrainConfig.batch_size} x "
         f"{VideoTrainConfig.frames}-frame crops, Adam lr {VideoTrainConfig.lr:g}, validation every {args.valid_every} steps; "
         "the best-validation checkpoint scored on the test split. Regenerate: `python3 benchmarks/video_accuracy.py` "
         "(resumes; `--table-only` rewrites this)."),
        "",
        "| model | seeds | STMC test % (mean ± std) | SOI test % (mean ± std) | SOI − STMC (points) | retained % | paper regular → SOI (HMDB-51) | paper retained % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['seeds']} | {r['stmc_mean']:.1f} ± {r['stmc_std']:.1f} | {r['soi_mean']:.1f} ± {r['soi_std']:.1f} | "
            f"{r['change_points']:+.1f} | {r['retained_percent']:.1f} | {r['paper_regular']:.2f} → {r['paper_soi']:.2f} | "
            f"{r['paper_retained_percent']:.1f} |"
        )
    lines += ["", "Every run:", "", "| model | pattern | seed | steps | best step | best valid % | test % | test clips | train loss | train s |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in sorted(records, key=lambda r: (list(MODELS).index(r["model"]), r["pattern"] != "STMC", r["seed"])):
        lines.append(
            f"| {r['model']} | {r['pattern']} | {r['seed']} | {r['steps']} | {r['best_step']} | {r['best_valid_accuracy']:.1f} | "
            f"{r['test_accuracy']:.1f} | {r['test_clips']} | {r['train_loss']:.3f} | {r['train_seconds']:.0f} |"
        )
    m = result["machine"]
    lines += ["", f"Machine: {m.get('cpu', '?')}, torch {m.get('torch', '?')}, 1 thread per run, two runs at a time on the 2 cores."]
    write_file(args.results.with_suffix(".md"), ("\n".join(lines) + "\n").encode(), force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "video")
    ap.add_argument("--clips", type=int, default=440)
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "training" / "video")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--valid-every", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--table-only", action="store_true", help="only rewrite the table from the runs' test.json")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "video_accuracy")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.table_only:
        generate_videos(args.data, clips=args.clips, progress=False)
        for seed in args.seeds:
            for model in args.models:
                for pattern in PATTERNS:
                    run_one(args, model, pattern, seed)
                    write_results(args, [json.loads(p.read_text()) for p in sorted(args.runs_dir.glob("*/test.json"))])
    write_results(args, [json.loads(p.read_text()) for p in sorted(args.runs_dir.glob("*/test.json"))])


if __name__ == "__main__":
    main()
