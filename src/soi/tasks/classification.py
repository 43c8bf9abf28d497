"""What the classification tasks (scenes, video) share in training: a label for every frame's
posterior, and the refusal to resume a run with another model."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor

__all__ = ["frame_cross_entropy", "refuse_another_classifier"]


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
