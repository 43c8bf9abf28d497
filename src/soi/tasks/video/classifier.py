"""The streaming action classifier: a streaming ResNet-10 3D or MoViNet (STMC or SOI) over frames,
a posterior every frame, the clip label the causal running average of the posteriors (as the scene
classifier's, :func:`soi.tasks.classification.running_average`); its self-describing
checkpoints. ::

    frames (B, 3, T, H, W) in [-1, 1] --network (STMC | SOI)--> logits (B, C, T)
    clip posterior after frame t:  q_t = (p_0 + ... + p_t) / (t + 1)      clip label: argmax q_t
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...core.state import StreamingModule
from ...files import read_checkpoint_file
from ..classification import RunningClip, load_classifier, save_classifier

__all__ = [
    "CHECKPOINT_FORMAT", "MODELS", "VideoClassifier", "VideoState", "build_classifier", "load_checkpoint",
    "read_checkpoint", "save_checkpoint",
]  # fmt: skip

CHECKPOINT_FORMAT = "soi-video-v1"
MODELS = ("resnet10", "resnet10-small", "resnet10-tiny", "movinet-a0", "movinet-a1")
"""The networks of the SOI paper's table 7 (:mod:`soi.models.resnet3d`, :mod:`soi.models.movinet`)."""
PATTERNS = ("STMC", "SOI")


@dataclass(frozen=True)
class VideoState(RunningClip):
    """State of a :class:`VideoClassifier` stream: the network's, the ``(B, C)`` sum of the frame
    posteriors so far and the frames so far."""

    net: Any
    total: Tensor
    frames: int


class VideoClassifier(nn.Module):
    """Frames in, per-frame class scores out, offline (:meth:`forward`) or frame by frame (:meth:`step`).

    Args:
        network: a streaming network over ``(B, 3, T, size, size)`` -> logits ``(B, C, T)``.
        classes: the class names, in the network's output order.
        description: how to build the network again (model, pattern, size, upsampler, dropout).
    """

    def __init__(self, network: StreamingModule, classes: tuple[str, ...], description: dict[str, Any]) -> None:
        super().__init__()
        if network.stride != 1 or network.delay != 0:
            raise ValueError(f"VideoClassifier: the network must answer every frame with no look-ahead, got stride {network.stride}, delay {network.delay}")
        self.network = network
        self.classes = tuple(classes)
        self.description = dict(description)

    @property
    def size(self) -> int:
        return self.description["size"]

    def forward(self, frames: Tensor) -> Tensor:
        """Offline: ``frames (B, 3, T, size, size)`` -> logits ``(B, C, T)``."""
        return self.network(frames)

    def posteriors(self, frames: Tensor) -> Tensor:
        """Offline frame posteriors ``(B, C, T)``."""
        return self(frames).softmax(dim=1)

    def init_state(self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> VideoState:
        dtype = dtype or torch.get_default_dtype()
        return VideoState(self.network.init_state(batch_size, device, dtype), torch.zeros(batch_size, len(self.classes), device=device, dtype=dtype), 0)

    def step(self, frames: Tensor, state: VideoState) -> tuple[Tensor, VideoState]:
        """``frames (B, 3, k, size, size)`` -> the frame posteriors ``(B, C, k)`` (equal to
        :meth:`posteriors` of the whole stream) and the new state (pure)."""
        logits, net = self.network.step(frames, state.net)
        p = logits.softmax(dim=1)
        return p, VideoState(net, state.total + p.sum(dim=2), state.frames + p.shape[2])

    def extra_repr(self) -> str:
        d = self.description
        return f"model={d['model']!r}, pattern={d['pattern']!r}, size={d['size']}, classes={len(self.classes)}"


def build_classifier(
    classes: tuple[str, ...] | list[str], model: str = "resnet10-tiny", pattern: str = "STMC", size: int = 32,
    upsampler: str = "duplicate", dropout: float = 0.2,
) -> VideoClassifier:  # fmt: skip
    """A fresh classifier: network ``model`` (:data:`MODELS`) streamed as ``pattern`` over
    ``size x size`` frames.

    Raises:
        ValueError: fewer than 2 classes, an unknown model or pattern, a size below 16 (32 for MoViNets).
    """
    from ...models.movinet import movinet, streaming_movinet
    from ...models.resnet3d import resnet10, streaming_resnet3d

    classes = tuple(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"build_classifier: expected 2 or more distinct class names, got {list(classes)}")
    if model not in MODELS:
        raise ValueError(f"build_classifier: model must be one of {', '.join(MODELS)}, got {model!r}")
    if pattern not in PATTERNS:
        raise ValueError(f"build_classifier: pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    family, _, variant = model.partition("-")
    # the MoViNets' last pooled shortcut needs 3x3 pixels at 1/16 of the frame
    low = 16 if family == "resnet10" else 33
    if isinstance(size, bool) or not isinstance(size, int) or size < low:
        raise ValueError(f"build_classifier: size must be an integer >= {low} for {model}, got {size!r}")
    if family == "resnet10":
        network = streaming_resnet3d(resnet10(variant or "regular", len(classes), dropout=dropout), pattern, (size, size), upsampler)
    else:
        network = streaming_movinet(movinet(variant, len(classes), dropout), pattern, (size, size), upsampler)
    description = {"model": model, "pattern": pattern, "size": size, "upsampler": upsampler, "dropout": dropout}
    return VideoClassifier(network, classes, description)


_CHECKPOINT_KEYS = ("classes", "model", "state_dict")


def save_checkpoint(path: str | Path, classifier: VideoClassifier, extra: dict[str, Any] | None = None) -> None:
    """Write a self-describing checkpoint (class names, network description, weights), atomically."""
    save_classifier(path, classifier, CHECKPOINT_FORMAT, extra)


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """The payload of a checkpoint written by :func:`save_checkpoint`, its format checked."""
    return read_checkpoint_file(path, "video", CHECKPOINT_FORMAT, _CHECKPOINT_KEYS, map_location)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[VideoClassifier, dict[str, Any]]:
    """``(classifier in eval mode, extra)`` from a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ValueError: not a soi video checkpoint, or weights that do not fit the model it describes.
    """
    return load_classifier(path, read_checkpoint(path, map_location), lambda p: build_classifier(tuple(p["classes"]), **p["model"]))
