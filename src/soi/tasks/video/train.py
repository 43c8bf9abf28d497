"""Training the action classifier: video as a task of the one loop (:mod:`soi.training`).

A training example is a random crop of ``frames`` frames of a clip (with a random horizontal flip
for classes that have no left/right meaning), streamed from a zero state as a deployed classifier
sees a clip from its start; the loss is the cross-entropy of *every* frame's logits against the
clip's class. The validation score is the clip accuracy (%) of the running-average label on whole
validation clips (:func:`soi.tasks.video.evaluate.evaluate_videos`).

    soi video train --data data/video --out runs/video-r10t-soi --model resnet10-tiny --pattern SOI --minutes 5
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ...training import LOOP, LoopConfig, check_fields, run_training
from ..classification import ClassifierTask, refuse_another_classifier
from .classifier import (
    MODELS,
    PATTERNS,
    VideoClassifier,
    build_classifier,
    read_checkpoint,
    save_checkpoint,
)
from .data import VideoDataset, open_videos, video_classes

__all__ = ["VideoCrops", "VideoTask", "VideoTrainConfig", "train_videos"]


@dataclass(frozen=True)
class VideoTrainConfig:
    """Everything a video training run depends on; saved in every checkpoint.

    ``data``: a set in the HMDB-51 layout (:mod:`soi.tasks.video.data`; ``soi video generate`` writes
    one); ``model`` one of :data:`~soi.tasks.video.classifier.MODELS`, ``pattern`` ``STMC`` or
    ``SOI``, ``size`` the frame side the clips are resized to, ``frames`` the training crop. The
    loop's fields are :class:`soi.training.LoopConfig`'s.
    """

    data: str
    out_dir: str = "runs/video"
    model: str = "resnet10-tiny"
    pattern: str = "STMC"
    size: int = 32
    frames: int = 16
    upsampler: str = "duplicate"
    dropout: float = 0.2
    batch_size: int = 8
    lr: float = 2e-3
    lr_patience: int | None = 4
    min_lr: float = 1e-5
    epochs: int = 100
    max_steps: int | None = None
    minutes: float | None = None
    seed: int = 0
    valid_every: int = 50
    grad_clip: float = 5.0
    num_workers: int = 0
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, strings=("data", "out_dir", "upsampler"))
        if self.model not in MODELS:
            raise ValueError(f"VideoTrainConfig.model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"VideoTrainConfig.pattern must be one of {', '.join(PATTERNS)}, got {self.pattern!r}")
        check_fields(
            self,
            integers=(("size", 16, False), ("frames", 1, False), *LOOP.integers),
            positive=LOOP.positive,
            fractions=("dropout",),
            booleans=LOOP.booleans,
        )

    def loop(self) -> LoopConfig:
        """The task-independent part of this config."""
        return LoopConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LoopConfig)})


class VideoCrops(VideoDataset):
    """The clips of a split cropped to a random window of ``frames`` (reproducible from seed, epoch
    and index), flipped left-right at random where the class has no direction."""

    def __init__(self, base: VideoDataset, seed: int) -> None:
        super().__init__(base.root, base.items, base.classes, base.size, base.frames)
        self.seed, self.epoch = seed, 0

    def _rng(self, index: int) -> random.Random:
        return random.Random(hash((self.seed, self.epoch, index)))

    def start(self, index: int, length: int) -> int:
        return self._rng(index).randint(0, max(length - (self.frames or length), 0))

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        clip, label = super().__getitem__(index)
        directional = any(w in self.classes[label] for w in ("left", "right"))
        if not directional and self._rng(index).random() < 0.5:
            clip = clip.flip(-1)
        return clip, label


class VideoTask(ClassifierTask):
    """Action recognition as a :class:`soi.training.Task` (see the module docstring; the score, the
    loss and the start are :class:`~soi.tasks.classification.ClassifierTask`'s)."""

    cfg: VideoTrainConfig

    def __init__(self, cfg: VideoTrainConfig) -> None:
        super().__init__(cfg, f"video {cfg.model} {cfg.pattern}")

    def build_model(self) -> VideoClassifier:
        c = self.cfg
        return build_classifier(video_classes(c.data), c.model, c.pattern, c.size, c.upsampler, c.dropout)

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        return read_checkpoint(path)

    def check_resumable(self, path: Path, payload: dict[str, Any], model: VideoClassifier) -> None:
        """Refuse to continue a run with another model or other classes."""
        refuse_another_classifier(path, payload, model)

    def open_data(self) -> None:
        c = self.cfg
        classes = video_classes(c.data)
        self.train_set = open_videos(c.data, "train", c.size, c.frames, classes)
        self.valid_set = open_videos(c.data, "valid", c.size, None, classes)

    def train_data(self, model: VideoClassifier) -> VideoCrops:
        return VideoCrops(self.train_set, self.cfg.seed)

    def validate(self, model: VideoClassifier) -> float:
        from .evaluate import evaluate_videos

        return evaluate_videos(model, self.valid_set).accuracy

    def save_checkpoint(self, path: Path, model: VideoClassifier, extra: dict[str, Any]) -> None:
        save_checkpoint(path, model, extra)


def train_videos(cfg: VideoTrainConfig, force: bool = False) -> dict[str, Any]:
    """Train an action classifier with the one loop; returns its summary (``steps``,
    ``best_valid_accuracy`` in %, the checkpoint paths, the last loss).

    Raises:
        FileExistsError: ``cfg.out_dir`` holds an earlier run's files and ``force`` is false.
        ValueError: resuming a run of another model; a bad config, data set or checkpoint.
    """
    return run_training(VideoTask(cfg), cfg.loop(), force)
