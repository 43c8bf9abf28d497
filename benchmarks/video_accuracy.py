"""Top-1 accuracy regular (STMC) vs SOI on the default action set's test split: ResNet-10 tiny and
MoViNet A0, each pattern trained with the one loop for the same number of steps (a wall-clock cap as
a safety) from the same seed,
scored on unseen test clips (running-average clip label at the last frame). Resumable: a finished
run (its entry in the results) is skipped, an interrupted one resumes from its last.pt.

    OMP_NUM_THREADS=1 python3 benchmarks/video_accuracy.py --data data/video --runs runs/video --steps 150 --seeds 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from soi.tasks.video.classifier import load_checkpoint
from soi.tasks.video.data import open_videos
from soi.tasks.video.evaluate import evaluate_videos
from soi.tasks.video.generate import generate_videos
from soi.tasks.video.train import VideoTrainConfig, train_videos

MODELS = {"resnet10-tiny": 32, "movinet-a0": 48}  # model -> frame side (MoViNets need >= 33)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="data/video")
    ap.add_argument("--clips", type=int, default=440)
    ap.add_argument("--runs", default="runs/video")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--minutes", type=float, default=8.0, help="cap per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--out", default="benchmarks/results/video_accuracy.json")
    args = ap.parse_args()
    generate_videos(args.data, clips=args.clips, progress=False)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {"steps_per_run": args.steps, "minutes_cap": args.minutes, "runs": []}
    done = {(r["model"], r["pattern"], r["seed"]) for r in results["runs"]}
    for seed in args.seeds:
        for model in args.models:
            size = MODELS[model]
            for pattern in ("STMC", "SOI"):
                if (model, pattern, seed) in done:
                    continue
                run_dir = Path(args.runs) / f"{model}-{pattern.lower()}-s{seed}"
                cfg = VideoTrainConfig(
                    data=args.data, out_dir=str(run_dir), model=model, pattern=pattern, size=size, seed=seed,
                    max_steps=args.steps, minutes=args.minutes, valid_every=50, progress=False,
                )  # fmt: skip
                summary = train_videos(cfg)
                classifier, _ = load_checkpoint(summary["best"])
                test = evaluate_videos(classifier, open_videos(args.data, "test", size, None, classifier.classes))
                results["runs"].append({
                    "model": model, "pattern": pattern, "seed": seed, "size": size, "steps": summary["steps"],
                    "best_valid_accuracy": summary["best_valid_accuracy"], "test_accuracy": test.accuracy, "test_clips": test.clips,
                })  # fmt: skip
                out.write_text(json.dumps(results, indent=2) + "\n")
                print(json.dumps(results["runs"][-1]), flush=True)


if __name__ == "__main__":
    main()
