"""Scene data sets in the TAU Urban Acoustic Scenes / DCASE layout (the layout the default generator
writes too, :mod:`.generate`)::

    root/audio/*.wav
    root/meta.csv                             filename, scene_label, identifier, source_label (tabs)
    root/evaluation_setup/fold1_train.csv     filename, scene_label
    root/evaluation_setup/fold1_evaluate.csv  filename, scene_label   (the test split here)
    root/evaluation_setup/fold1_valid.csv     filename, scene_label   (optional; the generator writes it)

TAU Urban Acoustic Scenes 2020 Mobile has no validation list: without ``fold1_valid.csv`` the
validation split is the train clips of every tenth recording location (``identifier``, chosen by a
hash of its name, so the same on every machine), and the train split the rest; locations never
straddle the two. The classes are the sorted scene labels of ``meta.csv`` (or of the lists, without
it). Clips are read mono at the front end's rate (resampled when the files have another).
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["SPLIT_FILES", "SceneDataset", "open_scenes", "scene_classes"]

SPLIT_FILES = {
    "train": "fold1_train.csv",
    "valid": "fold1_valid.csv",
    "test": "fold1_evaluate.csv",
}
"""Split -> its list under ``evaluation_setup/``."""
VALID_SHARE = 10
"""Without a validation list: one location in this many goes to validation."""


def _read_table(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no such file (a scene data set in the TAU/DCASE layout needs it; soi scenes generate DIR makes one)"
        ) from None
    if rows and not {"filename", "scene_label"} <= set(rows[0]):
        raise ValueError(
            f"{path}: expected tab-separated columns filename and scene_label, got {sorted(rows[0])}"
        )
    return rows


def _location(filename: str, meta: dict[str, dict[str, str]]) -> str:
    row = meta.get(filename)
    if row is not None and row.get("identifier"):
        return row["identifier"]
    # TAU names clips <scene>-<city>-<location>-<segment>-<device>.wav
    parts = Path(filename).stem.split("-")
    return "-".join(parts[1:3]) if len(parts) >= 3 else filename


def _is_valid_location(identifier: str) -> bool:
    return (
        int.from_bytes(hashlib.sha256(identifier.encode()).digest()[:4], "little")
        % VALID_SHARE
        == 0
    )


def scene_classes(root: str | os.PathLike) -> tuple[str, ...]:
    """The sorted scene labels of the set at ``root``."""
    root = Path(root)
    meta = root / "meta.csv"
    tables = (
        [meta] if meta.is_file() else [root / "evaluation_setup" / SPLIT_FILES["train"]]
    )
    labels = {row["scene_label"] for t in tables for row in _read_table(t)}
    if not labels:
        raise ValueError(
            f"{root}: no labelled clips in {', '.join(str(t) for t in tables)}"
        )
    return tuple(sorted(labels))


class SceneDataset(Dataset):
    """The clips of one split: ``dataset[i] -> (wave (N,), label)``, ``wave`` float32 at
    ``sample_rate``, ``label`` the index of the clip's scene in :attr:`classes`."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        sample_rate: int = 16000,
        classes: tuple[str, ...] | None = None,
    ) -> None:
        if split not in SPLIT_FILES:
            raise ValueError(
                f"SceneDataset: split must be one of {', '.join(SPLIT_FILES)}, got {split!r}"
            )
        self.root, self.split, self.sample_rate = Path(root), split, sample_rate
        self.classes = (
            tuple(classes) if classes is not None else scene_classes(self.root)
        )
        setup = self.root / "evaluation_setup"
        meta = (
            {r["filename"]: r for r in _read_table(self.root / "meta.csv")}
            if (self.root / "meta.csv").is_file()
            else {}
        )
        if split == "test" or (setup / SPLIT_FILES["valid"]).is_file():
            rows = _read_table(setup / SPLIT_FILES[split])
        else:  # TAU: validation is a share of the train locations
            rows = [
                r
                for r in _read_table(setup / SPLIT_FILES["train"])
                if _is_valid_location(_location(r["filename"], meta))
                == (split == "valid")
            ]
        unknown = sorted({r["scene_label"] for r in rows} - set(self.classes))
        if unknown:
            raise ValueError(
                f"{setup / SPLIT_FILES[split]}: scene labels {unknown} are not among the classes {list(self.classes)}"
            )
        self.items = [
            (self.root / r["filename"], self.classes.index(r["scene_label"]))
            for r in rows
        ]
        if not self.items:
            raise ValueError(f"{self.root}: the {split} split holds no clips")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from ..speech.data import read_wav

        path, label = self.items[index]
        wave, _, _ = read_wav(path, self.sample_rate)
        return wave, label

    def labels(self) -> Tensor:
        """Every clip's label, ``(len(self),)``, without reading the audio."""
        return torch.tensor([label for _, label in self.items])


def open_scenes(
    root: str | os.PathLike,
    split: str,
    sample_rate: int = 16000,
    classes: tuple[str, ...] | None = None,
) -> SceneDataset:
    """The ``split`` (train, valid, test) of the scene set at ``root`` (see the module docstring)."""
    return SceneDataset(root, split, sample_rate, classes)
