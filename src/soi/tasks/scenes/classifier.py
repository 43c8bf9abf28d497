"""The streaming scene classifier: log-mel front end + a streaming GhostNet, a posterior every frame,
the clip label as the causal running average of the posteriors; its self-describing checkpoints.

::

    samples (B, N) --StreamingLogMel--> (B, 1, T, mels) --GhostNet (STMC | SOI)--> logits (B, C, T)
                                                          softmax over C: the frame posteriors p_t
    clip posterior after frame t:  q_t = (p_0 + ... + p_t) / (t + 1)      clip label: argmax q_t

The network's squeeze-excitation means and its global pool are causal cumulative means, so ``p_t``
already sees the whole clip up to frame ``t``; the running average ``q_t`` adds a vote of every
frame, so that one confident frame does not decide a clip on its own. Both are causal: a frame's
posterior and the clip label so far never change when more audio arrives. In an SOI network the
scattered blocks run on every second frame and their output is held for the next; the frame
posterior is still emitted every frame (the residual skips and the head run at the frame rate).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...core.state import StreamingModule
from ...files import read_checkpoint_file
from ...models.ghostnet import PATTERNS, ghostnet, streaming_ghostnet
from ..classification import (
    RunningClip,
    load_classifier,
    running_average,
    save_classifier,
)
from .frontend import LogMelConfig, LogMelState, StreamingLogMel

__all__ = [
    "CHECKPOINT_FORMAT",
    "ClassifierState",
    "ClipNetwork",
    "SceneClassifier",
    "build_classifier",
    "classifier_of",
    "load_checkpoint",
    "read_checkpoint",
    "running_average",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "soi-scenes-v1"


@dataclass(frozen=True)
class ClassifierState(RunningClip):
    """State of a :class:`SceneClassifier` stream.

    Attributes:
        front: the front end's sample history.
        net: the network's state.
        total: ``(B, C)`` sum of the frame posteriors so far.
        frames: frames so far.
    """

    front: LogMelState
    net: Any
    total: Tensor
    frames: int


class ClipNetwork(nn.Module):
    """The baseline pattern: the GhostNet as Han et al. define it ("same" padding, the global pool
    over the whole input), ``(B, 1, T, mels)`` -> one logit vector per input, ``(B, C, 1)``. It
    looks ahead, so it has no stream: it classifies whole clips offline (online it would re-run on
    its receptive field at every frame, :func:`soi.analysis.cost.windowed_cost`)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, :, None]


class SceneClassifier(nn.Module):
    """Samples in, per-frame class scores out, offline (:meth:`forward`) or hop by hop (:meth:`step`).

    Args:
        frontend: the log-mel analysis.
        network: a streaming network over ``(B, 1, T, mels)`` -> logits ``(B, C, T)`` at the frame
            rate (:func:`soi.models.ghostnet.streaming_ghostnet`), or the baseline's
            :class:`ClipNetwork` (``(B, C, 1)``: offline only, no :meth:`step`).
        classes: the class names, in the network's output order.
        description: how to build the network again (width, pattern, upsampler, dropout), kept for
            checkpoints.
    """

    def __init__(self, frontend: StreamingLogMel, network: StreamingModule, classes: tuple[str, ...], description: dict[str, Any]) -> None:
        super().__init__()
        if isinstance(network, StreamingModule) and (network.stride != 1 or network.delay != 0):
            raise ValueError(
                f"SceneClassifier: the network must answer every frame with no look-ahead, got stride {network.stride}, delay {network.delay}"
            )
        self.frontend = frontend
        self.network = network
        self.classes = tuple(classes)
        self.description = dict(description)

    @property
    def pattern(self) -> str:
        return self.description["pattern"]

    @property
    def sample_rate(self) -> int:
        return self.frontend.config.sample_rate

    @property
    def hop(self) -> int:
        """Samples per frame."""
        return self.frontend.config.hop

    @property
    def frame_rate(self) -> float:
        return self.frontend.config.frame_rate

    @property
    def streams(self) -> bool:
        """Whether :meth:`step` runs: STMC and SOI stream, the baseline looks ahead."""
        return isinstance(self.network, StreamingModule)

    def forward(self, wave: Tensor) -> Tensor:
        """Offline: ``wave (B, N)`` -> logits ``(B, C, ceil(N / hop))``, one per frame (the
        baseline: ``(B, C, 1)``, one for the whole input)."""
        return self.network(self.frontend(wave))

    def _check_streams(self) -> None:
        if not self.streams:
            raise TypeError(
                f"SceneClassifier: the {self.pattern} pattern looks ahead ('same' padding); it classifies whole clips "
                "offline (classifier(wave)); stream an STMC or SOI classifier"
            )

    def posteriors(self, wave: Tensor) -> Tensor:
        """Offline frame posteriors ``(B, C, T)`` (softmax of :meth:`forward`)."""
        return self(wave).softmax(dim=1)

    def init_state(self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ClassifierState:
        """A zero state for ``batch_size`` streams."""
        self._check_streams()
        dtype = dtype or torch.get_default_dtype()
        return ClassifierState(
            front=self.frontend.init_state(batch_size, device, dtype),
            net=self.network.init_state(batch_size, device, dtype),
            total=torch.zeros(batch_size, len(self.classes), device=device, dtype=dtype),
            frames=0,
        )

    def step(self, samples: Tensor, state: ClassifierState) -> tuple[Tensor, ClassifierState]:
        """``samples (B, k * hop)``, ``k >= 0`` -> the frame posteriors ``(B, C, k)`` (equal to
        :meth:`posteriors` of the whole stream) and the new state (pure: ``state`` is left alone)."""
        self._check_streams()
        frames, front = self.frontend.step(samples, state.front)
        logits, net = self.network.step(frames, state.net)
        p = logits.softmax(dim=1)
        return p, ClassifierState(front, net, state.total + p.sum(dim=2), state.frames + p.shape[2])

    def extra_repr(self) -> str:
        d = self.description
        return f"pattern={d['pattern']!r}, width={d['width']}, classes={len(self.classes)}"


def build_classifier(
    classes: tuple[str, ...] | list[str],
    width: float = 0.2,
    pattern: str = "STMC",
    upsampler: str = "duplicate",
    frontend: LogMelConfig = LogMelConfig(),
    dropout: float = 0.2,
) -> SceneClassifier:
    """A fresh classifier: :func:`soi.models.ghostnet.ghostnet` at ``width`` with frequency strides
    only, streamed as ``pattern`` (``"STMC"`` or ``"SOI"``; :func:`~soi.models.ghostnet.streaming_ghostnet`),
    or as it is (``"baseline"``: a :class:`ClipNetwork`, offline only).

    Raises:
        ValueError: fewer than 2 classes, a width <= 0, or an unknown pattern.
    """
    classes = tuple(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"build_classifier: expected 2 or more distinct class names, got {list(classes)}")
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not width > 0:
        raise ValueError(f"build_classifier: width must be a number > 0, got {width!r}")
    if pattern not in PATTERNS:
        raise ValueError(f"build_classifier: pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    net = ghostnet(width=width, num_classes=len(classes), dropout=dropout, time_strides=False)
    network = ClipNetwork(net) if pattern == "baseline" else streaming_ghostnet(net, pattern, (1, frontend.n_mels), upsampler=upsampler)
    description = {"width": width, "pattern": pattern, "upsampler": upsampler, "dropout": dropout}
    return SceneClassifier(StreamingLogMel(frontend), network, classes, description)


# -- checkpoints ------------------------------------------------------------------------------------

_CHECKPOINT_KEYS = ("classes", "model", "frontend", "state_dict")


def save_checkpoint(path: str | Path, classifier: SceneClassifier, extra: dict[str, Any] | None = None) -> None:
    """Write a self-describing checkpoint: class names, network description, front end and weights
    (atomically, :func:`soi.tasks.classification.save_classifier`); an existing one is replaced."""
    save_classifier(path, classifier, CHECKPOINT_FORMAT, extra, frontend=dataclasses.asdict(classifier.frontend.config))


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """The payload of a checkpoint written by :func:`save_checkpoint`, its format checked.

    Raises:
        FileNotFoundError, IsADirectoryError: no file at ``path``.
        ValueError: not a soi scene checkpoint, or one with missing fields.
    """
    return read_checkpoint_file(path, "scene", CHECKPOINT_FORMAT, _CHECKPOINT_KEYS, map_location)


def classifier_of(payload: dict[str, Any]) -> SceneClassifier:
    """A fresh (untrained) classifier of the kind a checkpoint payload describes."""
    return build_classifier(tuple(payload["classes"]), frontend=LogMelConfig(**payload["frontend"]), **payload["model"])


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[SceneClassifier, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`: ``(classifier in eval mode, extra)``.

    Raises:
        ValueError: not a soi scene checkpoint, or weights that do not fit the model it describes.
    """
    return load_classifier(path, read_checkpoint(path, map_location), classifier_of)
