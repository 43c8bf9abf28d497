"""Offline generator of ``soi``'s default acoustic scene data set (nothing is downloaded).

Every clip is :data:`CLIP_SECONDS` long and belongs to one scene class (:data:`.sources.SCENES`:
up to 11, 8 from ``lincity-ng-data`` alone, 3 more with ``megaglest-data``). A clip mixes

* a **bed**: one file of one of the class's bed recordings, looped from a random phase;
* with probability :data:`SECOND_BED_SHARE`, a second bed file of the same class and split,
  3-12 dB below the first;
* **events** of the class (owls and wolves at night, a rooster, hens and a cow on the farm), 0-3
  per clip, and with probability :data:`DISTRACTOR_SHARE` a distractor that can sound in any scene
  (a siren, a rocket, a train, a window), each at -6..+6 dB against the bed, up to 3 s long;

at an RMS level drawn from :data:`LEVEL_RANGE_DB` dBFS (scaled down if a sample would clip).

The splits share no recording: each class's bed recordings, each class's events and the distractors
are dealt 70/15/15 to train / valid / test (:func:`soi.tasks.speech.generate.split_assignment`;
a class with fewer than three has them all in train, which only happens to events), so every test
clip is made of recordings the model never heard. Classes are balanced (clip ``i`` of a split is of
class ``i mod classes``); 80 / 10 / 10 % of the clips go to train / valid / test. Everything follows
from the seed; ``manifest.json`` records the splits, every clip's files, gains, onsets, level and
scale, and the parameters. A complete set with the same parameters is reused. ``wesnoth-*`` and
``hedgewars-*`` packages are never read.

Layout: the TAU Urban Acoustic Scenes / DCASE one, so :func:`.data.open_scenes` reads both::

    out_dir/audio/<scene>-<split>-<index>.wav    16 kHz mono PCM16
    out_dir/meta.csv                             filename, scene_label, identifier (bed recording), source_label
    out_dir/evaluation_setup/fold1_{train,valid,evaluate}.csv   filename, scene_label
    out_dir/evaluation_setup/fold1_test.csv      filename
    out_dir/manifest.json

Nothing that soi did not write is ever deleted (:class:`soi.files.WrittenFiles`, as the speech
generator). Command line: ``soi scenes generate OUT --minutes 10 --seed 0``.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...files import (
    WrittenFiles,
    check_output_folder,
    finish_data_folder,
    prepare_data_folder,
    read_manifest,
    write_file,
)
from ...progress import progress_bar
from ..speech.generate import (
    SPLITS,
    _fit,
    _items_per_split,
    _one_torch_thread,
    _rms,
    split_assignment,
)
from . import sources as _sources
from .sources import Recording

__all__ = [
    "CLIP_SECONDS",
    "DISTRACTOR_SHARE",
    "GENERATOR_VERSION",
    "LEVEL_RANGE_DB",
    "SECOND_BED_SHARE",
    "generate_scenes",
    "is_complete",
    "scene_splits",
]

GENERATOR_VERSION = 1
CLIP_SECONDS = 10.0
SAMPLE_RATE = _sources.SAMPLE_RATE
LEVEL_RANGE_DB = (-38.0, -18.0)
"""RMS level of a clip, dBFS, drawn uniformly."""
SECOND_BED_SHARE = 0.5
DISTRACTOR_SHARE = 0.4
EVENT_GAIN_DB = (-6.0, 6.0)
EVENT_MAX_SECONDS = 3.0
MAX_EVENTS = 3
_FADE = 160  # 10 ms fades at the ends of an event excerpt


def scene_splits(seed: int) -> dict[str, dict[str, dict[str, list[Recording]]]]:
    """``{"beds" | "events": {scene: {split: recordings}}, "distractors": {split: recordings}}`` for
    the recordings installed here (see the module docstring)."""
    beds, events, distractors = _sources.available_recordings()
    return {
        "beds": {
            scene: split_assignment(recs, seed, f"scenes:bed:{scene}")
            for scene, recs in beds.items()
        },
        "events": {
            scene: split_assignment(recs, seed, f"scenes:event:{scene}")
            for scene, recs in events.items()
        },
        "distractors": split_assignment(distractors, seed, "scenes:distractors"),
    }


def _short(path: str) -> str:
    """A file's path relative to its package folder (``lincity:TraficHigh1.wav``)."""
    for source, info in _sources.PACKAGES.items():
        folder = str(Path(info["folder"]).resolve())
        if path.startswith(folder + "/"):
            return f"{source}:{path[len(folder) + 1 :]}"
    return path


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _event(rng: np.random.Generator, rec: Recording) -> dict[str, Any]:
    return {
        "file": _pick(rng, rec.files),
        "recording": rec.id,
        "onset_s": round(float(rng.uniform(0.0, CLIP_SECONDS - 0.5)), 3),
        "gain_db": round(float(rng.uniform(*EVENT_GAIN_DB)), 2),
        "seed": int(rng.integers(2**31)),
    }


def _plan_clip(
    rng: np.random.Generator, scene: str, split: str, splits: dict[str, Any]
) -> dict[str, Any]:
    bed_recs = splits["beds"][scene][split]
    bed = _pick(rng, bed_recs)
    layers = [
        {
            "file": _pick(rng, bed.files),
            "recording": bed.id,
            "gain_db": 0.0,
            "seed": int(rng.integers(2**31)),
        }
    ]
    if rng.random() < SECOND_BED_SHARE:
        other = _pick(rng, bed_recs)
        layers.append(
            {
                "file": _pick(rng, other.files),
                "recording": other.id,
                "gain_db": round(float(rng.uniform(-12, -3)), 2),
                "seed": int(rng.integers(2**31)),
            }
        )
    events = []
    own = splits["events"].get(scene, {}).get(split, [])
    if own:
        events += [
            _event(rng, _pick(rng, own))
            for _ in range(min(MAX_EVENTS, int(rng.poisson(1.0))))
        ]
    distractors = splits["distractors"][split]
    if distractors and rng.random() < DISTRACTOR_SHARE:
        events.append(_event(rng, _pick(rng, distractors)))
    return {
        "scene": scene,
        "identifier": bed.id,
        "beds": layers,
        "events": events,
        "level_db": round(float(rng.uniform(*LEVEL_RANGE_DB)), 2),
    }


def _excerpt(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to :data:`EVENT_MAX_SECONDS` of ``x`` from a random start, with 10 ms fades."""
    n = min(x.size, int(EVENT_MAX_SECONDS * SAMPLE_RATE))
    start = int(rng.integers(0, x.size - n + 1))
    y = x[start : start + n].copy()
    fade = min(_FADE, n // 4)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        y[:fade] *= ramp
        y[-fade:] *= ramp[::-1]
    return y


def _render_clip(plan: dict[str, Any]) -> tuple[np.ndarray, float]:
    """The clip's samples (float64) and the anti-clipping scale applied."""
    n = round(CLIP_SECONDS * SAMPLE_RATE)
    mix = np.zeros(n)
    # Every layer at unit RMS times its gain: the first bed (gain 0 dB) is the reference of the rest.
    for layer in plan["beds"]:
        x = _fit(_sources.load(layer["file"]), n, np.random.default_rng(layer["seed"]))
        mix += x / _rms(x) * 10 ** (layer["gain_db"] / 20)
    for event in plan["events"]:
        y = _excerpt(_sources.load(event["file"]), np.random.default_rng(event["seed"]))
        y = y / _rms(y) * 10 ** (event["gain_db"] / 20)
        start = round(event["onset_s"] * SAMPLE_RATE)
        end = min(n, start + y.size)
        mix[start:end] += y[: end - start]
    mix *= 10 ** (plan["level_db"] / 20) / _rms(mix)
    peak = float(np.abs(mix).max())
    scale = min(1.0, 0.99 / peak) if peak > 0 else 1.0
    return mix * scale, scale


def _clip_file(scene: str, split: str, index: int) -> str:
    return f"audio/{scene}-{split}-{index:05d}.wav"


def _identifier(recording_id: str) -> str:
    """A recording id as a TAU-style identifier (``lincity-TraficHigh``)."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", recording_id).strip("-")


_TABLES = (
    "meta.csv",
    "evaluation_setup/fold1_train.csv",
    "evaluation_setup/fold1_valid.csv",
    "evaluation_setup/fold1_evaluate.csv",
    "evaluation_setup/fold1_test.csv",
)


def is_complete(
    out_dir: str | os.PathLike, params: dict[str, Any] | None = None
) -> bool:
    """Whether ``out_dir`` holds a complete set made by :func:`generate_scenes` (with ``params``, if
    given: the ``params`` of its manifest)."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir, "splits", dict)
    if manifest is None or (params is not None and manifest.get("params") != params):
        return False
    files = [
        it["file"]
        for split in manifest["splits"].values()
        for it in split.get("items", [])
    ]
    return all((out_dir / f).is_file() for f in (*files, *_TABLES))


def _planned_files(params: dict[str, Any]) -> list[str]:
    counts = _items_per_split(params["minutes"], CLIP_SECONDS)
    scenes = params["scenes"]
    clips = [
        _clip_file(scenes[i % len(scenes)], name, i)
        for name in SPLITS
        for i in range(counts[name])
    ]
    return ["manifest.json", *_TABLES, *clips]


def _check_space(out_dir: Path, minutes: float) -> None:
    clips = sum(_items_per_split(minutes, CLIP_SECONDS).values())
    need = (
        1.1 * clips * 2 * round(CLIP_SECONDS * SAMPLE_RATE)
    )  # PCM16 plus headers and the tables
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise OSError(
            errno.ENOSPC,
            f"the scene set ({minutes:g} minutes, {clips} clips) needs about {need / 1e9:.2f} GB, but {existing} has {free / 1e9:.2f} GB free",
        )


def _csv(rows: Sequence[Sequence[str]]) -> bytes:
    return "".join("\t".join(r) + "\n" for r in rows).encode()


def generate_scenes(
    out_dir: str | os.PathLike,
    minutes: float = 10.0,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the default scene set (see the module docstring) and return ``out_dir``.

    Args:
        out_dir: destination folder.
        minutes: total audio over the three splits, in clips of :data:`CLIP_SECONDS` (at least one
            clip per split).
        seed: fixes the splits, files, gains, onsets and levels: the same seed gives identical files.
        progress: show a progress bar (on a terminal).
        overwrite: replace a set made with other parameters (removing only the files soi recorded),
            or write into a folder that holds something else.

    Returns immediately when ``out_dir`` already holds a complete set with the same parameters.

    Raises:
        FileNotFoundError: ``lincity-ng-data`` is not installed (``bash setup.sh scenes``).
        FileExistsError: ``out_dir`` holds another set or other files and ``overwrite`` is false.
        OSError: not enough free disk space; a folder soi cannot write in.
        ValueError: a parameter out of range.
    """
    if not (
        isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0
    ):
        raise ValueError(
            f"generate_scenes: minutes must be a finite number > 0, got {minutes!r}"
        )
    out_dir = check_output_folder(out_dir)
    beds, _, _ = _sources.available_recordings()
    if not beds:
        raise FileNotFoundError(
            errno.ENOENT,
            f"no scene recordings: {_sources.PACKAGES['lincity']['package']} is not installed (expected {_sources.LINCITY_DIR}); "
            "run bash setup.sh scenes",
        )
    if "forest_day" not in beds:
        warnings.warn(
            f"{_sources.PACKAGES['megaglest']['package']} is not installed (bash setup.sh scenes): "
            f"the set has {len(beds)} scene classes instead of {len(_sources.SCENES)}",
            stacklevel=2,
        )
    splits = scene_splits(int(seed))
    params = {
        "generator_version": GENERATOR_VERSION,
        "minutes": float(minutes),
        "seed": int(seed),
        "clip_seconds": CLIP_SECONDS,
        "sample_rate": SAMPLE_RATE,
        "scenes": list(beds),
        # What this machine offers decides the set, so a set made from other recordings is redone.
        "recordings": sorted(
            f"{r.id}:{len(r.files)}" for recs in beds.values() for r in recs
        ),
    }
    if is_complete(out_dir, params):
        return out_dir
    _check_space(out_dir, minutes)
    manifest = read_manifest(out_dir, "splits", dict)
    record = prepare_data_folder(out_dir, params, manifest, overwrite=overwrite, planned=_planned_files(params))
    with _one_torch_thread():
        _generate(out_dir, record, params, splits, progress, overwrite)
    return out_dir


def _generate(
    out_dir: Path,
    record: WrittenFiles,
    params: dict[str, Any],
    splits: dict[str, Any],
    progress: bool,
    overwrite: bool,
) -> None:
    from ..speech.data import write_wav

    seed, scenes = params["seed"], params["scenes"]
    counts = _items_per_split(params["minutes"], CLIP_SECONDS)
    bar = progress_bar(
        sum(counts.values()), desc="scenes", unit="clip", enabled=progress, leave=False
    )
    meta, tables, manifest_splits = (
        [["filename", "scene_label", "identifier", "source_label"]],
        {},
        {},
    )
    for split_index, name in enumerate(SPLITS):
        items = []
        for i in range(counts[name]):
            scene = scenes[i % len(scenes)]
            plan = _plan_clip(
                np.random.default_rng([seed, split_index, i]), scene, name, splits
            )
            wave, scale = _render_clip(plan)
            file = _clip_file(scene, name, i)
            write_wav(
                record.claim(file, force=overwrite),
                wave.astype(np.float32),
                SAMPLE_RATE,
                overwrite=True,
            )
            record.written(file)
            meta.append([file, scene, _identifier(plan["identifier"]), "soi"])
            items.append(
                {
                    "file": file,
                    "scene": scene,
                    "level_db": plan["level_db"],
                    "scale": round(scale, 6),
                    "beds": [
                        {**layer, "file": _short(layer["file"])}
                        for layer in plan["beds"]
                    ],
                    "events": [
                        {**event, "file": _short(event["file"])}
                        for event in plan["events"]
                    ],
                }
            )
            bar.update(1)
        tables[name] = [[it["file"], it["scene"]] for it in items]
        manifest_splits[name] = {
            "beds": {
                scene: [r.id for r in parts[name]]
                for scene, parts in splits["beds"].items()
            },
            "events": {
                scene: [r.id for r in parts[name]]
                for scene, parts in splits["events"].items()
                if parts[name]
            },
            "distractors": [r.id for r in splits["distractors"][name]],
            "items": items,
        }
    bar.close()
    header = [["filename", "scene_label"]]
    for relative, rows in (
        ("meta.csv", meta),
        ("evaluation_setup/fold1_train.csv", header + tables["train"]),
        ("evaluation_setup/fold1_valid.csv", header + tables["valid"]),
        ("evaluation_setup/fold1_evaluate.csv", header + tables["test"]),
        (
            "evaluation_setup/fold1_test.csv",
            [["filename"]] + [[f] for f, _ in tables["test"]],
        ),
    ):
        write_file(record.claim(relative, force=overwrite), _csv(rows), force=True)
        record.written(relative)
    manifest = {
        "params": params,
        "packages": list(_sources.PACKAGES.values()),
        "band_limit_hz": _sources.MIN_SAMPLE_RATE / 2,
        "mixing": {
            "second_bed_share": SECOND_BED_SHARE,
            "distractor_share": DISTRACTOR_SHARE,
            "event_gain_db": list(EVENT_GAIN_DB),
            "event_max_seconds": EVENT_MAX_SECONDS,
            "level_db": "RMS of the clip, dBFS; scale: anti-clipping factor applied after",
        },
        "splits": manifest_splits,
    }
    # Written last: its presence marks a complete set.
    finish_data_folder(record, manifest, overwrite=overwrite)
