"""What the classification tasks (scenes, video) share: the clip label as the running average of the
frame posteriors, a label for every frame's posterior in training, the task's part of the one loop,
self-describing checkpoints, the refusal to resume a run with another model, and the clip accuracy
of a split."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..files import write_file
from ..progress import progress_bar
from ..training import Score

__all__ = [
    "ClassifierTask", "ClipEvaluation", "evaluate_clips", "frame_cross_entropy", "load_classifier",
    "RunningClip", "refuse_another_classifier", "running_average", "save_classifier",
]  # fmt: skip


def running_average(posteriors: Tensor) -> Tensor:
    """The causal running average over time of ``(B, C, T)`` posteriors: ``out[..., t]`` is the
    mean of ``posteriors[..., 0..t]`` (the clip posterior after frame ``t``)."""
    if posteriors.dim() != 3:
        raise ValueError(f"running_average: expected posteriors (B, C, T), got shape {tuple(posteriors.shape)}")
    count = torch.arange(1, posteriors.shape[2] + 1, dtype=posteriors.dtype, device=posteriors.device)
    return posteriors.cumsum(dim=2) / count


class RunningClip:
    """The clip posterior of a classifier stream's state (a dataclass with ``total``, the ``(B, C)``
    sum of the frame posteriors so far, and ``frames``, how many)."""

    total: Tensor
    frames: int

    @property
    def clip_posterior(self) -> Tensor:
        """``(B, C)``: the running average of the frame posteriors so far (zeros before any frame)."""
        return self.total / max(self.frames, 1)


def frame_cross_entropy(logits: Tensor, label: Tensor) -> Tensor:
    """Cross-entropy of every frame's logits ``(B, C, T)`` against the clip's label ``(B,)``: a
    streaming classifier answers at every frame, so every frame is trained to name the clip."""
    return F.cross_entropy(logits, label[:, None].expand(-1, logits.shape[2]))


class ClassifierTask:
    """The part of a :class:`soi.training.Task` every classification task shares: the score (the
    clip accuracy on the valid split, %), the config saved in checkpoints, a start from the network's
    own initialisation and the loss, every frame's cross-entropy against the clip's label
    (:func:`frame_cross_entropy`; a clip network's logits ``(B, C, 1)`` are one frame, the whole
    crop's). A task adds its model, data, validation and checkpoint format."""

    score = Score("valid_accuracy", "valid accuracy", "%")

    def __init__(self, cfg: Any, name: str) -> None:
        self.cfg, self.name = cfg, name

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg)

    def fresh_start(self, model: nn.Module, rank: int) -> None:
        """Nothing to do: a classification run starts from the network's own initialisation."""

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        inputs, label = batch
        return frame_cross_entropy(model(inputs), label)


def save_classifier(path: str | Path, classifier: Any, checkpoint_format: str, extra: dict[str, Any] | None = None, **fields: Any) -> None:
    """Write a self-describing checkpoint of ``classifier`` (its ``classes`` and ``description``, the
    task's ``fields``, e.g. its front end, the weights and ``extra``) in ``checkpoint_format``, with
    :func:`soi.files.write_file`: a temporary file renamed over ``path``, so an interrupted save never
    leaves a broken file; an existing checkpoint is replaced."""
    payload = {
        "format": checkpoint_format,
        "classes": list(classifier.classes),
        "model": dict(classifier.description),
        **fields,
        "state_dict": {k: v.detach().cpu() for k, v in classifier.state_dict().items()},
        "extra": extra or {},
    }
    write_file(path, lambda f: torch.save(payload, f), force=True)


def load_classifier(path: str | Path, payload: dict[str, Any], build: Callable[[dict[str, Any]], nn.Module]) -> tuple[Any, dict[str, Any]]:
    """``(classifier in eval mode, extra)`` from a checkpoint ``payload`` read from ``path``:
    ``build(payload)`` makes the model it describes, which gets the saved weights.

    Raises:
        ValueError: a description the task cannot build, or weights that do not fit the model.
    """
    try:
        classifier = build(payload)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the checkpoint's model description is not valid: {err}") from None
    try:
        classifier.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: the weights do not fit the model it describes ({' '.join(str(err).split())[:300]})") from None
    return classifier.eval(), dict(payload["extra"])


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
