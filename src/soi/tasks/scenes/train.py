"""Training the scene classifier: scenes as a task of the one loop (:mod:`soi.training`), single
process or DDP (``torchrun``, gloo on CPU).

A training example is a random crop of ``segment_seconds`` of a clip, streamed from a zero state as
a deployed classifier hears a clip from its start; the loss is the cross-entropy of *every* frame's
logits against the clip's scene (the clip label averages every frame's posterior, so every frame's
posterior is trained). The validation score is the clip accuracy (%) of the running-average label on
whole validation clips (:func:`soi.tasks.scenes.evaluate.evaluate_scenes`).

    soi scenes train --data data/scenes --out runs/scenes-stmc --width 0.2 --pattern STMC --minutes 10
    torchrun --nproc_per_node 2 -m soi scenes train --data ... --out ...
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ...models.ghostnet import PATTERNS
from ...training import LOOP, LoopConfig, check_fields, run_training
from ..classification import ClassifierTask, refuse_another_classifier
from .classifier import (
    SceneClassifier,
    build_classifier,
    read_checkpoint,
    save_checkpoint,
)
from .data import SceneDataset, open_scenes, scene_classes
from .frontend import LogMelConfig

__all__ = ["SceneCrops", "SceneTask", "SceneTrainConfig", "train_scenes"]


@dataclass(frozen=True)
class SceneTrainConfig:
    """Everything a scene training run depends on; saved in every checkpoint.

    ``data`` is a scene set in the TAU/DCASE layout (:mod:`soi.tasks.scenes.data`; ``soi scenes
    generate`` writes one). ``width`` is the GhostNet's width multiplier
    (:data:`soi.models.ghostnet.SIZES`), ``pattern`` ``"STMC"``, ``"SOI"`` or ``"baseline"`` (offline
only: one logit vector per crop, from the whole crop); ``n_mels`` the front
    end's bands (the rest of the front end is :class:`~soi.tasks.scenes.frontend.LogMelConfig`'s default).
    The loop's fields are :class:`soi.training.LoopConfig`'s.
    """

    data: str
    out_dir: str = "runs/scenes"
    width: float = 0.2
    pattern: str = "STMC"
    upsampler: str = "duplicate"
    n_mels: int = 64
    dropout: float = 0.2
    batch_size: int = 16
    segment_seconds: float = 4.0
    lr: float = 1e-3
    lr_patience: int | None = 4
    min_lr: float = 1e-5
    epochs: int = 100
    max_steps: int | None = None
    minutes: float | None = None
    seed: int = 0
    valid_every: int = 100
    grad_clip: float = 5.0
    num_workers: int = 0
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, strings=("data", "out_dir", "upsampler"))
        if self.pattern not in PATTERNS:
            raise ValueError(f"SceneTrainConfig.pattern must be one of {', '.join(PATTERNS)}, got {self.pattern!r}")
        check_fields(
            self,
            integers=(*LOOP.integers, ("n_mels", 1, False)),
            positive=(("width", False), ("segment_seconds", False), *LOOP.positive),
            fractions=("dropout",),
            booleans=LOOP.booleans,
        )

    @property
    def frontend(self) -> LogMelConfig:
        return LogMelConfig(n_mels=self.n_mels)

    def loop(self) -> LoopConfig:
        """The task-independent part of this config."""
        return LoopConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LoopConfig)})


class SceneCrops(Dataset):
    """Random crops of ``samples`` samples of the clips of ``base`` (shorter clips zero padded at the
    end), ``(wave (samples,), label)``, reproducible from (seed, epoch, index)."""

    def __init__(self, base: SceneDataset, samples: int, seed: int) -> None:
        self.base, self.samples, self.seed, self.epoch = base, samples, seed, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        wave, label = self.base[index]
        n = wave.shape[-1]
        if n <= self.samples:
            return F.pad(wave, (0, self.samples - n)), label
        start = random.Random(hash((self.seed, self.epoch, index))).randint(0, n - self.samples)
        return wave[start : start + self.samples], label


class SceneTask(ClassifierTask):
    """Scene classification as a :class:`soi.training.Task` (see the module docstring; the score,
    the loss and the start are :class:`~soi.tasks.classification.ClassifierTask`'s)."""

    cfg: SceneTrainConfig

    def __init__(self, cfg: SceneTrainConfig) -> None:
        super().__init__(cfg, f"scenes {cfg.pattern} {cfg.width:g}")

    def build_model(self) -> SceneClassifier:
        c = self.cfg
        return build_classifier(scene_classes(c.data), c.width, c.pattern, c.upsampler, c.frontend, c.dropout)

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        return read_checkpoint(path)

    def check_resumable(self, path: Path, payload: dict[str, Any], model: SceneClassifier) -> None:
        """Refuse to continue a run with another model or other classes: its weights and optimizer
        would be mixed with a model they do not belong to."""
        front = dataclasses.asdict(model.frontend.config)
        more = [f"front end {payload['frontend']} -> {front}"] if payload["frontend"] != front else []
        refuse_another_classifier(path, payload, model, more)

    def open_data(self) -> None:
        classes = scene_classes(self.cfg.data)
        rate = self.cfg.frontend.sample_rate
        self.train_set = open_scenes(self.cfg.data, "train", rate, classes)
        self.valid_set = open_scenes(self.cfg.data, "valid", rate, classes)

    def train_data(self, model: SceneClassifier) -> SceneCrops:
        return SceneCrops(self.train_set, round(self.cfg.segment_seconds * model.sample_rate), self.cfg.seed)

    def validate(self, model: SceneClassifier) -> float:
        from .evaluate import evaluate_scenes

        return evaluate_scenes(model, self.valid_set).accuracy

    def save_checkpoint(self, path: Path, model: SceneClassifier, extra: dict[str, Any]) -> None:
        save_checkpoint(path, model, extra)


def train_scenes(cfg: SceneTrainConfig, force: bool = False) -> dict[str, Any]:
    """Train a scene classifier with the one loop (:func:`soi.training.run_training`); returns a
    summary (``steps``, ``best_valid_accuracy`` in %, the checkpoint paths, the last loss).

    Raises:
        FileExistsError: ``cfg.out_dir`` holds an earlier run's files and ``force`` is false.
        ValueError: resuming a run of another model; a bad config, data set or checkpoint.
    """
    return run_training(SceneTask(cfg), cfg.loop(), force)
