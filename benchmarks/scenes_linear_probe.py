"""How far the default scene set lets a classifier generalise to recordings it never heard: a linear
probe beside the GhostNet sweep (benchmarks/scenes_sweep.py).

    python3 benchmarks/scenes_linear_probe.py [--data data/scenes]

Each clip becomes one vector, the mean and the standard deviation over its frames of every band of
the scene front end's log-mel (:func:`soi.tasks.scenes.frontend.log_mel`, 64 mels at 50 frames/s),
and a logistic regression (scikit-learn, which librosa brings with ``bash setup.sh scenes``) is fitted
on the train split at several regularisation strengths C and scored on all three splits. The valid and
test splits are made of recordings the train split never contains (one bed recording per class each),
so the gap between train and test accuracy is how unlike one another a class's recordings are; the
probe shows what a simple model reaches there, without the GhostNet's training budget in the way.
Writes ``benchmarks/results/scenes_linear_probe.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from soi.files import write_file
from soi.tasks.scenes.data import open_scenes, scene_classes
from soi.tasks.scenes.frontend import LogMelConfig, log_mel

ROOT = Path(__file__).resolve().parents[1]
STRENGTHS = (0.003, 0.01, 0.03, 0.1, 1.0)


def clip_features(data: Path, split: str, classes: tuple[str, ...], config: LogMelConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(clips, 2 * n_mels)`` per-band log-mel mean and std of every clip of ``split``, and the labels."""
    clips = open_scenes(str(data), split, config.sample_rate, classes)
    features, labels = [], []
    for index in range(len(clips)):
        wave, label = clips[index]
        mel = log_mel(wave[None], config)[0, 0]  # (T, n_mels)
        features.append(torch.cat([mel.mean(0), mel.std(0)]).numpy())
        labels.append(label)
    return np.stack(features), np.array(labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "data" / "scenes")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "scenes_linear_probe")
    args = p.parse_args()
    torch.set_num_threads(1)
    classes = scene_classes(str(args.data))
    config = LogMelConfig(n_mels=64)
    splits = {s: clip_features(args.data, s, classes, config) for s in ("train", "valid", "test")}
    scaler = StandardScaler().fit(splits["train"][0])
    rows = []
    for c in STRENGTHS:
        model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(splits["train"][0]), splits["train"][1])
        row = {"C": c}
        for name, (x, y) in splits.items():
            predicted = model.predict(scaler.transform(x))
            row[f"{name}_accuracy"] = 100.0 * float((predicted == y).mean())
            if name == "test":
                row["test_per_class"] = {k: 100.0 * float((predicted[y == i] == i).mean()) for i, k in enumerate(classes)}
        rows.append(row)
    # the strength a user would pick: on valid, not test; a tie goes to the stronger regularisation (listed first)
    chosen = max(rows, key=lambda r: r["valid_accuracy"])
    result = {
        "data": str(args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data),
        "clips": {name: len(y) for name, (_, y) in splits.items()},
        "classes": list(classes),
        "chance_percent": 100.0 / len(classes),
        "features": "per-band mean and std of the 64-mel log-mel over the clip",
        "rows": rows,
        "chosen_by_valid": chosen["C"],
    }
    write_file(args.results.with_suffix(".json"), json.dumps(result, indent=2).encode(), force=True)
    lines = [
        "# Scene set: a linear probe of how far training generalises to unheard recordings",
        "",
        (f"Logistic regression on each clip's per-band log-mel mean and std (64 mels), fitted on `{result['data']}`'s "
        f"train split ({result['clips']['train']} clips), scored on every split (valid {result['clips']['valid']}, "
        f"test {result['clips']['test']} clips, each one unheard bed recording per class); chance "
        f"{result['chance_percent']:.1f} %. Regenerate: `python3 benchmarks/scenes_linear_probe.py`."),
        "",
        "| C | train % | valid % | test % |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        mark = " (chosen on valid)" if r is chosen else ""
        lines.append(f"| {r['C']:g}{mark} | {r['train_accuracy']:.1f} | {r['valid_accuracy']:.1f} | {r['test_accuracy']:.1f} |")
    lines += ["", f"Test accuracy per class at C = {chosen['C']:g}:", "", "| class | test % |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in chosen["test_per_class"].items()]
    write_file(args.results.with_suffix(".md"), ("\n".join(lines) + "\n").encode(), force=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
