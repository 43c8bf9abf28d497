"""What the classification tasks (scenes, video) share: a label for every frame's posterior in
training, the refusal to resume a run with another model, and the clip accuracy of a split."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..progress import progress_bar
from .scenes.classifier import running_average

__all__ = ["ClipEvaluation", "evaluate_clips", "frame_cross_entropy", "refuse_another_classifier"]


def frame_cross_entropy(logits: Tensor, label: Tensor) -> Tensor:
    """Cross-entropy of every frame's logits ``(B, C, T)`` against the clip's label ``(B,)``: a
    streaming classifier answers at every frame, so every frame is trained to name the clip."""
    return F.cross_entropy(logits, label[:, None].expand(-1, logits.shape[2]))


def refuse_another_classifier(path: Path, payload: dict[str, Any], model: Any, more: Iterable[str] = ()) -> None:
    """Refuse to continue the run saved in ``payload`` (read from ``path``) with ``model`` when they
    differ in the model's ``description``, its ``classes`` or the task's ``more`` differences: the
    saved weights and optimizer would be mixed with a model they do not belong to. The model is
    compared as the checkpoint describes it, without building the saved one."""
    if "progress" not in payload.get("extra", {}):
        raise ValueError(f"{path} holds no training progress (a best.pt copied there?); resume needs the run's own last.pt")
    described = payload["model"]
    changes = [f"{key} {described.get(key)!r} -> {value!r}" for key, value in model.description.items() if described.get(key) != value]
    changes += list(more)
    if tuple(payload["classes"]) != model.classes:
        changes.append(f"classes {list(payload['classes'])} -> {list(model.classes)}")
    if changes:
        raise ValueError(
            f"{path} was trained with another model than this run asks for ({'; '.join(changes)}); resume it with "
            "its own settings, or start this run in a new --out folder"
        )


@dataclass(frozen=True)
class ClipEvaluation:
    """Clip accuracy (%) over a split, per class (classes with no clip are left out), the clips
    counted, and every clip's predicted class index (in the split's order)."""

    accuracy: float
    per_class: dict[str, float]
    clips: int
    predicted: tuple[int, ...]


@torch.no_grad()
def evaluate_clips(classifier: Any, dataset: Dataset, batch_size: int = 8, progress: bool = False) -> ClipEvaluation:
    """Classify every ``(clip, label)`` of ``dataset``: the clip's label is the running average of
    the classifier's frame posteriors at its last frame, on the offline path (which streams exactly
    the same). Clips are batched only with clips of the same shape (padding would add frames to the
    running average); the model is put in eval mode for the run and its mode restored after."""
    was_training = classifier.training
    classifier.eval()
    predicted, truth = [-1] * len(dataset), [-1] * len(dataset)
    pending: dict[tuple[int, ...], list[tuple[int, Tensor]]] = defaultdict(list)
    bar = progress_bar(len(dataset), desc="evaluate", unit="clip", enabled=progress, leave=False)

    def run(group: list[tuple[int, Tensor]]) -> None:
        clip = running_average(classifier.posteriors(torch.stack([x for _, x in group])))[:, :, -1]
        for (index, _), label in zip(group, clip.argmax(dim=1).tolist(), strict=True):
            predicted[index] = label
        bar.update(len(group))

    for index in range(len(dataset)):
        x, truth[index] = dataset[index]
        group = pending[tuple(x.shape)]
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
    return ClipEvaluation(accuracy, per_class, len(truth), tuple(predicted))
