"""Accuracy of a scene classifier on a split: the clip label is the running average of the frame
posteriors at the clip's last frame (:mod:`.classifier`), the offline path (which streams exactly
the same), and the cost of the network's pattern in MMAC/s at the front end's frame rate."""

from __future__ import annotations

from ..classification import ClipEvaluation, evaluate_clips
from .classifier import SceneClassifier
from .data import SceneDataset

__all__ = ["SceneEvaluation", "evaluate_scenes", "network_mmac_per_s"]


SceneEvaluation = ClipEvaluation
"""Clip accuracy (%) over a split, per class (classes with no clip are left out), the clips
counted, and every clip's predicted class index (in the split's order)."""


def evaluate_scenes(classifier: SceneClassifier, dataset: SceneDataset, batch_size: int = 8, progress: bool = False) -> SceneEvaluation:
    """Classify every clip of ``dataset`` and count the right answers (see the module docstring).

    Clips are batched only with clips of the same length (padding would add frames to the running
    average); the model is put in eval mode for the run and its mode restored after.
    """
    if tuple(dataset.classes) != classifier.classes:
        raise ValueError(f"evaluate_scenes: the data's classes {list(dataset.classes)} are not the model's {list(classifier.classes)}")
    return evaluate_clips(classifier, dataset, batch_size, progress)


def network_mmac_per_s(classifier: SceneClassifier) -> float:
    """The network's average cost in MMAC/s at the front end's frame rate (:func:`soi.analysis.cost.cost`;
    the front end's STFT and mel filters are not counted). The baseline, which cannot stream, costs
    what it would online: a re-run over its receptive field at every frame
    (:func:`soi.analysis.cost.windowed_cost`, as ``soi cost --model ghostnet --pattern baseline``)."""
    from ...analysis.cost import cost, windowed_cost
    from ...models.ghostnet import streaming_ghostnet

    if classifier.streams:
        return cost(classifier.network, frame_rate=classifier.frame_rate).mmac_per_s
    net, mels = classifier.network.net, classifier.frontend.config.n_mels
    window = (1, streaming_ghostnet(net, "STMC", (1, mels)).receptive_field, mels)
    return windowed_cost(net, window, classifier.frame_rate).mmac_per_s
