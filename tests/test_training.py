"""The one training loop (soi.training) on the scene task: a tiny GhostNet on a tiny two-class set
lowers its loss, writes last.pt / best.pt / log.csv, resumes from last.pt, and refuses to resume
with another model. (Speech runs through the same loop: tests/tasks/speech/test_masker.py.)"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soi.tasks.scenes.classifier import load_checkpoint
from soi.tasks.scenes.train import SceneTrainConfig, train_scenes

RATE = 16000


def _clip(label: str, seed: int, seconds: float = 0.6) -> np.ndarray:
    """'low': a 300 Hz hum in a little noise; 'high': hiss high-passed above 3 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    if label == "low":
        return (0.2 * np.sin(2 * np.pi * (300 + 20 * rng.random()) * np.arange(n) / RATE) + 0.01 * rng.standard_normal(n)).astype(np.float32)
    noise = rng.standard_normal(n)
    return (0.1 * (noise - np.convolve(noise, np.ones(8) / 8, "same"))).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny-scenes")
    (root / "audio").mkdir()
    (root / "evaluation_setup").mkdir()
    lists = {"train": [], "valid": [], "evaluate": []}
    counts = {"train": 6, "valid": 2, "evaluate": 2}
    seed = 0
    for split, count in counts.items():
        for label in ("low", "high"):
            for i in range(count):
                name = f"audio/{label}-{split}-{i}.wav"
                sf.write(root / name, _clip(label, seed), RATE)
                lists[split].append((name, label))
                seed += 1
    for split, rows in lists.items():
        with open(root / "evaluation_setup" / f"fold1_{split}.csv", "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["filename", "scene_label"])
            w.writerows(rows)
    return root


def _losses(log: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader(log.open())]


def test_the_loop_lowers_the_scene_loss_and_resumes(tiny_scenes, tmp_path):
    cfg = SceneTrainConfig(
        data=str(tiny_scenes), out_dir=str(tmp_path / "run"), width=0.1, n_mels=16, batch_size=4, segment_seconds=0.4,
        lr=3e-3, max_steps=24, valid_every=8, seed=0, progress=False,
    )  # fmt: skip
    torch.manual_seed(0)
    summary = train_scenes(cfg)
    run = tmp_path / "run"
    losses = _losses(run / "log.csv")
    assert summary["steps"] == 24 and len(losses) == 3
    assert losses[-1] < losses[0], f"the loss did not fall: {losses}"
    assert 0.0 <= summary["best_valid_accuracy"] <= 100.0
    header = (run / "log.csv").read_text().splitlines()[0]
    assert header == "step,epoch,loss,valid_accuracy,elapsed_s,lr"
    best, extra = load_checkpoint(run / "best.pt")
    assert best.classes == ("high", "low") and extra["valid_accuracy"] == summary["best_valid_accuracy"]
    assert extra["train_config"]["width"] == 0.1 and "progress" not in extra, "best.pt: the model, no optimizer"
    # resume continues from step 24 instead of starting again
    summary = train_scenes(SceneTrainConfig(**{**cfg.__dict__, "max_steps": 32}))
    assert summary["steps"] == 32 and len(_losses(run / "log.csv")) == 4
    # --minutes is the whole run's budget: a resumed run counts the time it already trained, so one
    # whose budget is spent stops after its first step instead of training the budget again
    # (half the time the 32 steps took, validations included: without counting it, that budget would
    # train several more)
    spent_s = float(list(csv.DictReader((run / "log.csv").open()))[-1]["elapsed_s"])
    summary = train_scenes(SceneTrainConfig(**{**cfg.__dict__, "max_steps": 1000, "minutes": spent_s / 2 / 60}))
    assert summary["steps"] == 33, f"a spent budget trained {summary['steps'] - 32} more steps"
    with pytest.raises(ValueError, match=r"another model .*width 0\.1 -> 0\.2"):
        train_scenes(SceneTrainConfig(**{**cfg.__dict__, "width": 0.2, "max_steps": 40}))
    with pytest.raises(FileExistsError, match="--force"):
        train_scenes(SceneTrainConfig(**{**cfg.__dict__, "resume": False}))


def test_scene_config_refuses_bad_values():
    with pytest.raises(ValueError, match="pattern must be one of baseline, STMC, SOI, got 'S-CC 2'"):
        SceneTrainConfig(data="d", pattern="S-CC 2")
    with pytest.raises(ValueError, match=r"width must be a finite number > 0, got -1"):
        SceneTrainConfig(data="d", width=-1)
