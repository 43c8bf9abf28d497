"""Action data sets in the HMDB-51 / UCF-101 layout (the layout the default generator writes too,
:mod:`.generate`)::

    root/<class>/<video>.avi | .mp4 | ... | .npy      one folder of videos per class
    root/splits/<class>_test_split<k>.txt             "<video file name> <id>" per line

HMDB-51's split files give each video of a class an id: 1 train, 2 test, 0 not in this split; the
generator also writes 3 for its validation clips. Where a split has no id-3 videos (HMDB-51 itself),
the validation split is every tenth training video by a hash of its name (the same on every
machine) and the training split the rest. UCF-101's ``trainlist0k.txt`` / ``testlist0k.txt`` lists
(``<class>/<video> [label]``) are read when ``root/splits`` has no per-class files. Classes are the
sorted folder names.

Videos decode with PyAV (``av``, the ``video`` extra: ``pip install 'soi[video]'``); the generator's
``.npy`` frames need nothing. Clips come out as float ``(3, T, H, W)`` in ``[-1, 1]`` at
``size x size`` (bilinear with antialiasing), ``frames`` frames from ``start``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["VIDEO_SUFFIXES", "VideoDataset", "open_videos", "read_video", "to_clip", "video_classes"]

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".npy")
VALID_SHARE = 10
"""Without id-3 videos: one training video in this many goes to validation."""
_IDS = {"train": 1, "test": 2, "valid": 3}


def read_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video file as uint8 ``(T, H, W, 3)`` (``.npy``: the array as stored).

    Raises:
        ImportError: a compressed video and PyAV (``av``) is not installed.
        ValueError: a file with no frames, or an ``.npy`` of another shape or type.
    """
    path = Path(path)
    if path.suffix == ".npy":
        video = np.load(path, allow_pickle=False)
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"{path}: expected uint8 frames (T, H, W, 3), got {video.dtype} {video.shape}")
        return video
    try:
        import av
    except ImportError:
        raise ImportError(f"{path}: decoding video needs PyAV: pip install 'soi[video]' (or pip install av)") from None
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames)


def to_clip(video: np.ndarray, size: int) -> Tensor:
    """uint8 ``(T, H, W, 3)`` -> float ``(3, T, size, size)`` in ``[-1, 1]``."""
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (T, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.permute(1, 0, 2, 3).contiguous()


def video_classes(root: str | os.PathLike) -> tuple[str, ...]:
    """The sorted class folders of ``root`` (every folder but ``splits``).

    Raises:
        FileNotFoundError: no such folder, or no class folders in it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (a video set in the HMDB-51 layout; soi video generate DIR makes one)")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "splits" and not p.name.startswith(".")))
    if not classes:
        raise FileNotFoundError(f"{root}: no class folders (expected root/<class>/<video> and root/splits/)")
    return classes


def _in_valid(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % VALID_SHARE == 0


def _split_lists(root: Path, classes: tuple[str, ...], fold: int) -> dict[str, list[tuple[str, int]]]:
    """``{"train" | "valid" | "test": [(relative path, class index)]}``."""
    splits = root / "splits"
    per_class = [splits / f"{c}_test_split{fold}.txt" for c in classes]
    out: dict[str, list[tuple[str, int]]] = {"train": [], "valid": [], "test": []}
    if all(p.is_file() for p in per_class):
        for label, (c, path) in enumerate(zip(classes, per_class, strict=True)):
            for line in path.read_text().splitlines():
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("0", "1", "2", "3"):
                    raise ValueError(f"{path}: expected lines '<video> <0|1|2|3>', got {line!r}")
                ident = int(parts[1])
                for split, want in _IDS.items():
                    if ident == want:
                        out[split].append((f"{c}/{parts[0]}", label))
    elif (splits / f"trainlist0{fold}.txt").is_file() and (splits / f"testlist0{fold}.txt").is_file():
        index = {c: i for i, c in enumerate(classes)}
        for split, name in (("train", f"trainlist0{fold}.txt"), ("test", f"testlist0{fold}.txt")):
            for line in (splits / name).read_text().splitlines():
                if line.strip():
                    rel = line.split()[0]
                    cls = rel.split("/")[0]
                    if cls not in index:
                        raise ValueError(f"{splits / name}: {rel!r} is in no class folder of {root}")
                    out[split].append((rel, index[cls]))
    else:
        missing = [p.name for p in per_class if not p.is_file()][:3]
        raise FileNotFoundError(
            f"{splits}: no split files (expected <class>_test_split{fold}.txt per class, HMDB-51, missing e.g. {', '.join(missing)}; "
            f"or trainlist0{fold}.txt and testlist0{fold}.txt, UCF-101)"
        )
    if not out["valid"]:
        out["valid"] = [r for r in out["train"] if _in_valid(r[0])]
        out["train"] = [r for r in out["train"] if not _in_valid(r[0])]
    return out


class VideoDataset(Dataset):
    """The clips of one split: ``(clip (3, T, size, size), label)``, ``T = frames`` from frame
    ``start(index, length)`` (the first by default), shorter videos repeating their last frame."""

    def __init__(self, root: Path, items: list[tuple[str, int]], classes: tuple[str, ...], size: int, frames: int | None) -> None:
        self.root, self.items, self.classes, self.size, self.frames = root, items, classes, size, frames

    def __len__(self) -> int:
        return len(self.items)

    def video(self, index: int) -> np.ndarray:
        return read_video(self.root / self.items[index][0])

    def start(self, index: int, length: int) -> int:
        return 0

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        video = self.video(index)
        if self.frames is not None:
            s = self.start(index, len(video))
            video = video[s : s + self.frames]
            if len(video) < self.frames:
                video = np.concatenate([video, np.repeat(video[-1:], self.frames - len(video), axis=0)])
        return to_clip(video, self.size), self.items[index][1]


def open_videos(
    root: str | os.PathLike, split: str, size: int, frames: int | None = None, classes: tuple[str, ...] | None = None, fold: int = 1
) -> VideoDataset:
    """The ``split`` (``train``, ``valid``, ``test``) of the set at ``root`` (see the module docstring).

    Raises:
        FileNotFoundError: no such set, no split files, or a listed video missing.
        ValueError: an unknown split, malformed split files, or a split with no videos.
    """
    if split not in _IDS:
        raise ValueError(f"open_videos: split must be one of {', '.join(_IDS)}, got {split!r}")
    root = Path(root)
    classes = classes or video_classes(root)
    items = _split_lists(root, classes, fold)[split]
    if not items:
        raise ValueError(f"{root}: the {split} split (fold {fold}) has no videos")
    missing = [rel for rel, _ in items if not (root / rel).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: {len(missing)} video(s) of the {split} split are missing, e.g. {missing[0]}")
    return VideoDataset(root, items, classes, size, frames)
