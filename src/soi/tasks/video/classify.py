"""Live action classification of a video: the file (or a folder of frames) is streamed frame by
frame through a :class:`~soi.tasks.video.classifier.VideoClassifier`, as a camera would feed it.

    soi video classify clip.mp4 --checkpoint runs/video/best.pt
    soi video classify frames/ --checkpoint runs/video/best.pt      (PNG/JPEG frames, in name order)

Frames are resized to the model's side as they arrive. The **timeline** has one line per
``every`` frames: the time (s, at the video's frame rate, 24 if it does not say), the running-average
clip label so far and its probability. The **clip label** is the running average of every frame
posterior at the last frame. Lines are handed to ``on_line`` as soon as their frame was seen.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .classifier import VideoClassifier
from .data import VIDEO_SUFFIXES, read_video, to_clip

__all__ = ["HEADER", "IMAGE_SUFFIXES", "VideoClassification", "classify_video", "read_frames"]

HEADER = "time  frame  label  probability"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_FRAME_RATE = 24.0


@dataclass(frozen=True)
class VideoClassification:
    """The timeline ``(time s, frame, label, probability)``, the clip's label and probability, the clip
    posterior per class, the frames seen and the seconds of video and of processing."""

    timeline: tuple[tuple[float, int, str, float], ...]
    label: str
    probability: float
    clip: dict[str, float]
    frames: int
    seconds_video: float
    seconds_processing: float


def read_frames(path: str | os.PathLike) -> tuple[Iterator[np.ndarray], float]:
    """``(uint8 (H, W, 3) frames one by one, frames per second)`` of a video file or a folder of images.

    Raises:
        FileNotFoundError: no such file or folder, or a folder without images.
        ValueError: a file of another kind.
    """
    path = Path(path)
    if path.is_dir():
        from PIL import Image

        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"{path}: no frames ({', '.join(IMAGE_SUFFIXES)} files)")
        return (np.asarray(Image.open(p).convert("RGB")) for p in images), DEFAULT_FRAME_RATE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file or folder of frames")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"{path}: expected a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")
    if path.suffix == ".npy":
        return iter(read_video(path)), DEFAULT_FRAME_RATE
    try:
        import av
    except ImportError:
        raise ImportError(f"{path}: decoding video needs PyAV: pip install 'soi[video]' (or pip install av)") from None
    container = av.open(str(path))
    stream = container.streams.video[0]
    rate = float(stream.average_rate) if stream.average_rate else DEFAULT_FRAME_RATE

    def frames() -> Iterator[np.ndarray]:
        with container:
            for f in container.decode(video=0):
                yield f.to_ndarray(format="rgb24")

    return frames(), rate


@torch.no_grad()
def classify_video(
    path: str | os.PathLike, classifier: VideoClassifier, every: int = 12,
    on_line: Callable[[tuple[float, int, str, float]], None] | None = None,
) -> VideoClassification:  # fmt: skip
    """Stream ``path`` frame by frame through ``classifier`` (see the module docstring)."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"classify_video: every must be an integer >= 1, got {every!r}")
    frames, rate = read_frames(path)
    classifier.eval()
    state = classifier.init_state(1)
    timeline, n, busy = [], 0, 0.0
    for frame in frames:
        x = to_clip(frame[None], classifier.size)[None]  # (1, 3, 1, size, size)
        start = time.perf_counter()
        _, state = classifier.step(x, state)
        busy += time.perf_counter() - start
        n += 1
        if n % every == 0:
            q = state.clip_posterior[0]
            line = (n / rate, n, classifier.classes[int(q.argmax())], float(q.max()))
            timeline.append(line)
            if on_line is not None:
                on_line(line)
    if n == 0:
        raise ValueError(f"{path}: no frames")
    q = state.clip_posterior[0]
    clip = {c: float(p) for c, p in zip(classifier.classes, q.tolist(), strict=True)}
    return VideoClassification(tuple(timeline), classifier.classes[int(q.argmax())], float(q.max()), clip, n, n / rate, busy)
