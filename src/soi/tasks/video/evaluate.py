"""Accuracy of an action classifier on a split: the clip label is the running average of the frame
posteriors at the clip's last frame (:mod:`.classifier`), on the offline path (which streams exactly
the same)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from ...progress import progress_bar
from ..scenes.classifier import running_average
from .classifier import VideoClassifier
from .data import VideoDataset

__all__ = ["VideoEvaluation", "evaluate_videos"]


@dataclass(frozen=True)
class VideoEvaluation:
    """Clip accuracy (%) over a split, per class, the clips counted, every clip's predicted index."""

    accuracy: float
    per_class: dict[str, float]
    clips: int
    predicted: tuple[int, ...]


@torch.no_grad()
def evaluate_videos(classifier: VideoClassifier, dataset: VideoDataset, batch_size: int = 8, progress: bool = False) -> VideoEvaluation:
    """Classify every clip of ``dataset`` (clips of one length batched together); the model's mode
    is restored after."""
    if tuple(dataset.classes) != classifier.classes:
        raise ValueError(f"evaluate_videos: the data's classes {list(dataset.classes)} are not the model's {list(classifier.classes)}")
    if dataset.size != classifier.size:
        raise ValueError(f"evaluate_videos: the data is read at {dataset.size}x{dataset.size}, the model takes {classifier.size}x{classifier.size}")
    was_training = classifier.training
    classifier.eval()
    predicted, truth = [-1] * len(dataset), [-1] * len(dataset)
    pending: dict[int, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    bar = progress_bar(len(dataset), desc="evaluate", unit="clip", enabled=progress, leave=False)

    def run(group: list[tuple[int, torch.Tensor]]) -> None:
        clip = running_average(classifier.posteriors(torch.stack([x for _, x in group])))[:, :, -1]
        for (index, _), label in zip(group, clip.argmax(dim=1).tolist(), strict=True):
            predicted[index] = label
        bar.update(len(group))

    for index in range(len(dataset)):
        x, truth[index] = dataset[index]
        group = pending[x.shape[1]]
        group.append((index, x))
        if len(group) == batch_size:
            run(group)
            group.clear()
    for group in pending.values():
        if group:
            run(group)
    bar.close()
    classifier.train(was_training)
    right: dict[int, list[bool]] = defaultdict(list)
    for p, t in zip(predicted, truth, strict=True):
        right[t].append(p == t)
    per_class = {classifier.classes[c]: 100.0 * sum(v) / len(v) for c, v in sorted(right.items())}
    accuracy = 100.0 * sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    return VideoEvaluation(accuracy, per_class, len(truth), tuple(predicted))
