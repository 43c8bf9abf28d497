"""Offline generator of ``soi``'s default action data set: short clips rendered procedurally (nothing
is downloaded), one motion class per clip (:data:`ACTIONS`, 11 classes).

A clip is :data:`DEFAULT_FRAMES` frames of ``size x size`` RGB at 24 frames/s. Its **actor** is a
stick figure (head, trunk, two arms and two legs of two segments each, drawn antialiased with a
random colour, limb thickness and size) or, for ``bounce``, a ball; the class is its motion:

* ``wave``: one arm swings up and down; ``clap``: both forearms meet in front and part;
* ``jump``: the whole figure rises and lands; ``squat``: the knees bend and the trunk sinks;
* ``walk_left`` / ``walk_right``: the figure crosses the frame, legs and arms alternating;
* ``rotate``: the figure turns about its centre; ``approach`` / ``recede``: it grows / shrinks;
* ``bounce``: a ball hops along a parabola; ``stand``: the figure only sways a little.

Every clip draws a speed (0.6-1.6 of the nominal rate), a start phase, a position, a **background**
(a sum of random coloured gratings and blobs, scrolling at its own velocity), **camera shake** (a
random walk of the whole view, a pixel or two per frame), a global brightness/contrast change and
Gaussian **noise**; nothing but the motion says the class.

Splits are separated by the generator seed: clip ``i`` of split ``s`` is drawn from
``numpy.random.default_rng([seed, s, i])``, so no test clip repeats a training one, and the class of
clip ``i`` is ``ACTIONS[i % 11]`` (balanced). 80 / 10 / 10 % of the clips go to train / valid /
test. The same seed and parameters give identical files; a complete set with the same parameters
is reused.

Layout: the HMDB-51 one, so :func:`.data.open_videos` reads both (``.npy`` frames instead of
``.avi``)::

    out_dir/<action>/<action>_<split>_<index>.npy        uint8 (T, H, W, 3)
    out_dir/splits/<action>_test_split1.txt              "<file name> <id>": 1 train, 2 test, 3 valid
    out_dir/manifest.json                                parameters and every clip's draws

Nothing that soi did not write is ever deleted (:class:`soi.files.WrittenFiles`). Command line:
``soi video generate OUT --clips 330 --size 32 --frames 16 --seed 0``.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...files import (
    check_output_folder,
    finish_data_folder,
    prepare_data_folder,
    read_manifest,
    write_file,
)
from ...progress import progress_bar

__all__ = ["ACTIONS", "DEFAULT_FRAMES", "DEFAULT_SIZE", "GENERATOR_VERSION", "SPLIT_IDS", "generate_videos", "is_complete", "render_clip"]

GENERATOR_VERSION = 1
ACTIONS = ("wave", "clap", "jump", "squat", "walk_left", "walk_right", "rotate", "approach", "recede", "bounce", "stand")
DEFAULT_SIZE = 32
DEFAULT_FRAMES = 16
FRAME_RATE = 24.0
SPLITS = ("train", "valid", "test")
SPLIT_IDS = {"train": 1, "test": 2, "valid": 3}
"""The id a split file gives a clip (HMDB-51's 1 and 2; 3, which HMDB does not use, for validation)."""


def _clip_counts(clips: int) -> dict[str, int]:
    held = max(1, round(clips * 0.1))
    return {"train": clips - 2 * held, "valid": held, "test": held}


# ==================================================================================================
# Rendering
# ==================================================================================================


def _background(rng: np.random.Generator, size: int, frames: int) -> np.ndarray:
    """(T, H, W, 3) float in [0, 1]: random gratings and blobs, scrolling with a drawn velocity."""
    pad = size  # room to scroll and shake
    n = size + 2 * pad
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    tex = np.zeros((n, n, 3))
    for _ in range(int(rng.integers(2, 5))):
        k = rng.uniform(0.05, 0.4)
        theta = rng.uniform(0, math.pi)
        wave = np.sin(k * (xx * math.cos(theta) + yy * math.sin(theta)) + rng.uniform(0, 2 * math.pi))
        tex += wave[..., None] * rng.uniform(-0.12, 0.12, 3)
    for _ in range(int(rng.integers(3, 9))):
        cy, cx, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(2, size / 3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        tex += blob[..., None] * rng.uniform(-0.25, 0.25, 3)
    tex = np.clip(tex + rng.uniform(0.25, 0.75, 3), 0, 1)
    velocity = rng.uniform(-1.0, 1.0, 2)
    shake = np.cumsum(rng.normal(0, rng.uniform(0.2, 1.0), (frames, 2)), axis=0).clip(-pad / 3, pad / 3)
    out = np.empty((frames, size, size, 3))
    for t in range(frames):
        oy, ox = (pad + velocity * t + shake[t]).round().astype(int).clip(0, 2 * pad)
        out[t] = tex[oy : oy + size, ox : ox + size]
    return out, shake


def _segments_mask(segments: np.ndarray, thickness: np.ndarray, size: int) -> np.ndarray:
    """(H, W) coverage in [0, 1] of line segments ``(N, 2, 2)`` (``[[y0, x0], [y1, x1]]``, pixels)
    of half-widths ``thickness (N,)``, antialiased over one pixel."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    p = np.stack([yy, xx], axis=-1)[None]  # (1, H, W, 2)
    a, b = segments[:, None, None, 0], segments[:, None, None, 1]  # (N, 1, 1, 2)
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    d = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)  # (N, H, W)
    return np.clip(thickness[:, None, None] - d + 0.5, 0, 1).max(axis=0)


def _figure(pose: dict[str, float], cy: float, cx: float, scale: float, angle: float) -> np.ndarray:
    """The stick figure's segments ``(N, 2, 2)``: head (a zero-length segment), trunk, upper and
    lower arms and legs, from joint angles (radians, 0 = straight down) in units of ``scale``."""

    def limb(start, a1, a2, l1, l2):
        mid = start + l1 * np.array([math.cos(a1), math.sin(a1)])
        end = mid + l2 * np.array([math.cos(a1 + a2), math.sin(a1 + a2)])
        return [(start, mid), (mid, end)]

    hip = np.array([0.0, 0.0])
    neck = np.array([-1.0 + pose["sink"], 0.0])
    head = neck + np.array([-0.35, 0.0])
    segs = [(head, head), (neck, hip)]
    segs += limb(neck + [0.1, 0], pose["arm_l"], pose["elbow_l"], 0.45, 0.4)
    segs += limb(neck + [0.1, 0], pose["arm_r"], pose["elbow_r"], 0.45, 0.4)
    segs += limb(hip, pose["leg_l"], pose["knee_l"], 0.5 - pose["sink"] / 2, 0.5 - pose["sink"] / 2)
    segs += limb(hip, pose["leg_r"], pose["knee_r"], 0.5 - pose["sink"] / 2, 0.5 - pose["sink"] / 2)
    pts = np.array(segs)  # (N, 2, 2) in figure units, y down
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return pts @ rot.T * scale + np.array([cy, cx])


_REST = {"arm_l": 0.35, "arm_r": -0.35, "elbow_l": 0.0, "elbow_r": 0.0, "leg_l": 0.2, "leg_r": -0.2, "knee_l": 0.0, "knee_r": 0.0, "sink": 0.0}


def render_clip(action: str, rng: np.random.Generator, size: int = DEFAULT_SIZE, frames: int = DEFAULT_FRAMES) -> tuple[np.ndarray, dict[str, Any]]:
    """One clip of ``action``: ``(frames uint8 (T, H, W, 3), its draws)`` (see the module docstring)."""
    if action not in ACTIONS:
        raise ValueError(f"render_clip: action must be one of {', '.join(ACTIONS)}, got {action!r}")
    speed = float(rng.uniform(0.6, 1.6))
    phase0 = float(rng.uniform(0, 2 * math.pi))
    scale = float(rng.uniform(0.22, 0.32) * size)
    cy = float(rng.uniform(0.45, 0.6) * size)
    cx = float(rng.uniform(0.35, 0.65) * size)
    # dark or bright, so the actor stands out from the mid-grey-centred background
    colour = rng.uniform(0.0, 0.25, 3) if rng.uniform() < 0.5 else rng.uniform(0.75, 1.0, 3)
    width = float(rng.uniform(0.7, 1.3) * size / 32)
    background, shake = _background(rng, size, frames)
    spin = float(rng.choice([-1.0, 1.0]))  # rotate: either way round
    omega = 2 * math.pi * speed / 10.0  # one cycle per ~10 frames at nominal speed
    out = np.empty((frames, size, size, 3))
    for t in range(frames):
        ph = phase0 + omega * t
        pose = dict(_REST)
        y, x, s, angle = cy, cx, scale, 0.0
        if action == "wave":
            pose["arm_r"] = -2.2 + 0.9 * math.sin(ph)
            pose["elbow_r"] = -0.5 * math.sin(ph)
        elif action == "clap":
            open_ = 0.5 + 0.5 * math.sin(ph)
            pose["arm_l"], pose["arm_r"] = 1.2 + 0.6 * open_, -1.2 - 0.6 * open_
            pose["elbow_l"], pose["elbow_r"] = 0.9 - 0.6 * open_, -0.9 + 0.6 * open_
        elif action == "jump":
            y = cy - abs(math.sin(ph / 2)) * 0.8 * scale
            pose["arm_l"], pose["arm_r"] = 2.4, -2.4
        elif action == "squat":
            pose["sink"] = 0.25 * (1 - math.cos(ph))
            pose["knee_l"], pose["knee_r"] = -1.2 * pose["sink"] * 4, 1.2 * pose["sink"] * 4
            pose["leg_l"], pose["leg_r"] = 0.2 + pose["sink"] * 2, -0.2 - pose["sink"] * 2
        elif action in ("walk_left", "walk_right"):
            direction = -1.0 if action == "walk_left" else 1.0
            x = cx + direction * (t - frames / 2) * speed * size / (2.2 * frames)
            swing = 0.5 * math.sin(ph)
            pose["leg_l"], pose["leg_r"] = swing, -swing
            pose["arm_l"], pose["arm_r"] = -0.6 * swing + 0.2, 0.6 * swing - 0.2
        elif action == "rotate":
            angle = phase0 + spin * omega * t * 0.6
        elif action == "approach":
            s = scale * (0.5 + 1.0 * t / max(frames - 1, 1)) ** (speed * 0.8)
        elif action == "recede":
            s = scale * (1.5 - 1.0 * t / max(frames - 1, 1)) ** (speed * 0.8)
        elif action == "stand":
            angle = 0.05 * math.sin(ph / 3)
        if action == "bounce":
            period = 12.0 / speed
            u = ((t + phase0) % period) / period
            by = size * 0.85 - 4 * u * (1 - u) * size * 0.55
            bx = (cx + (t - frames / 2) * size / (3 * frames)) % size
            segs = np.array([[[by, bx], [by, bx]]])
            mask = _segments_mask(segs, np.array([size * 0.1 * (0.8 + 0.4 * speed / 1.6)]), size)
        else:
            segs = _figure(pose, y, x, s, angle)
            thick = np.full(len(segs), width)
            thick[0] = 0.28 * s  # the head
            mask = _segments_mask(segs, thick, size)
        out[t] = background[t] * (1 - mask[..., None]) + colour * mask[..., None]
    contrast, brightness = rng.uniform(0.7, 1.2), rng.uniform(-0.15, 0.15)
    noise = float(rng.uniform(0.01, 0.08))
    out = (out - 0.5) * contrast + 0.5 + brightness + rng.normal(0, noise, out.shape)
    draws = {"speed": round(speed, 4), "scale": round(scale, 3), "noise": round(noise, 4), "shake_px": round(float(np.abs(shake).max()), 2)}
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8), draws


# ==================================================================================================
# The data set
# ==================================================================================================


def _clip_file(action: str, split: str, index: int) -> str:
    return f"{action}/{action}_{split}_{index}.npy"


def _split_files() -> list[str]:
    return [f"splits/{a}_test_split1.txt" for a in ACTIONS]


def is_complete(out_dir: str | os.PathLike, params: dict[str, Any] | None = None) -> bool:
    """Whether ``out_dir`` holds a complete set made by :func:`generate_videos` (with ``params``)."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir, "clips", list)
    if manifest is None or (params is not None and manifest.get("params") != params):
        return False
    return all((out_dir / f).is_file() for f in (*(c["file"] for c in manifest["clips"]), *_split_files()))


def generate_videos(
    out_dir: str | os.PathLike,
    clips: int = 330,
    size: int = DEFAULT_SIZE,
    frames: int = DEFAULT_FRAMES,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the default action set (see the module docstring) and return ``out_dir``.

    Args:
        out_dir: destination folder.
        clips: clips over the three splits (at least 3 per split per class is sensible; at least 3).
        size: frame height = width in pixels (>= 16).
        frames: frames per clip (>= 4).
        seed: fixes every draw: the same seed gives identical files.
        progress: show a progress bar (on a terminal).
        overwrite: replace a set made with other parameters, or write into a folder holding others.

    Returns immediately when ``out_dir`` already holds a complete set with the same parameters.

    Raises:
        FileExistsError: ``out_dir`` holds another set or other files and ``overwrite`` is false.
        ValueError: a parameter out of range.
    """
    for name, value, low in (("clips", clips, 3), ("size", size, 16), ("frames", frames, 4), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"generate_videos: {name} must be an integer >= {low}, got {value!r}")
    out_dir = check_output_folder(out_dir)
    params = {"generator_version": GENERATOR_VERSION, "clips": clips, "size": size, "frames": frames, "seed": seed, "actions": list(ACTIONS)}
    if is_complete(out_dir, params):
        return out_dir
    record = prepare_data_folder(out_dir, params, read_manifest(out_dir, "clips", list), overwrite=overwrite)
    counts = _clip_counts(clips)
    bar = progress_bar(clips, desc="videos", unit="clip", enabled=progress, leave=False)
    rows: dict[str, list[str]] = {a: [] for a in ACTIONS}
    manifest_clips = []
    for split_index, split in enumerate(SPLITS):
        for i in range(counts[split]):
            action = ACTIONS[i % len(ACTIONS)]
            video, draws = render_clip(action, np.random.default_rng([seed, split_index, i]), size, frames)
            file = _clip_file(action, split, i)
            buf = io.BytesIO()
            np.save(buf, video, allow_pickle=False)
            write_file(record.claim(file, force=overwrite), buf.getvalue(), force=True)
            record.written(file)
            rows[action].append(f"{Path(file).name} {SPLIT_IDS[split]}")
            manifest_clips.append({"file": file, "action": action, "split": split, **draws})
            bar.update(1)
    bar.close()
    for action, file in zip(ACTIONS, _split_files(), strict=True):
        write_file(record.claim(file, force=overwrite), ("\n".join(rows[action]) + "\n").encode(), force=True)
        record.written(file)
    manifest = {"params": params, "frame_rate": FRAME_RATE, "split_ids": SPLIT_IDS, "clips": manifest_clips}
    # Written last: its presence marks a complete set.
    finish_data_folder(record, manifest, overwrite=overwrite)
    return out_dir
