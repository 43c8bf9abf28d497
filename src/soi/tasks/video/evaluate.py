"""Accuracy of an action classifier on a split: the clip label is the running average of the frame
posteriors at the clip's last frame (:mod:`.classifier`), on the offline path (which streams exactly
the same)."""

from __future__ import annotations

from ..classification import ClipEvaluation, evaluate_clips
from .classifier import VideoClassifier
from .data import VideoDataset

__all__ = ["VideoEvaluation", "evaluate_videos"]


VideoEvaluation = ClipEvaluation
"""Clip accuracy (%) over a split, per class, the clips counted, every clip's predicted index."""


def evaluate_videos(classifier: VideoClassifier, dataset: VideoDataset, batch_size: int = 8, progress: bool = False) -> VideoEvaluation:
    """Classify every clip of ``dataset`` (clips of one length batched together); the model's mode
    is restored after."""
    if tuple(dataset.classes) != classifier.classes:
        raise ValueError(f"evaluate_videos: the data's classes {list(dataset.classes)} are not the model's {list(classifier.classes)}")
    if dataset.size != classifier.size:
        raise ValueError(f"evaluate_videos: the data is read at {dataset.size}x{dataset.size}, the model takes {classifier.size}x{classifier.size}")
    return evaluate_clips(classifier, dataset, batch_size, progress)
