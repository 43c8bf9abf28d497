"""The procedural action set: deterministic from the seed, splits drawn from disjoint seeds,
balanced classes, HMDB-51 layout read back by the reader; an existing folder is never replaced;
the HMDB-51 and UCF-101 split files; PyAV decoding (skipped without the 'video' extra)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from soi.tasks.video.data import open_videos, read_video, to_clip, video_classes
from soi.tasks.video.generate import ACTIONS, generate_videos, render_clip


def _digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.npy"))}


@pytest.fixture(scope="module")
def video_set(tmp_path_factory):
    return generate_videos(tmp_path_factory.mktemp("videos") / "set", clips=33, size=16, frames=6, seed=3, progress=False)


def test_generated_set_is_deterministic_balanced_and_read_back(video_set, tmp_path):
    again = generate_videos(tmp_path / "again", clips=33, size=16, frames=6, seed=3, progress=False)
    assert _digest(video_set) == _digest(again), "the same seed gives identical files"
    other = generate_videos(tmp_path / "other", clips=33, size=16, frames=6, seed=4, progress=False)
    assert not set(_digest(video_set).values()) & set(_digest(other).values())
    assert len(ACTIONS) >= 10 and video_classes(video_set) == tuple(sorted(ACTIONS))
    sizes = {s: len(open_videos(video_set, s, 16)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 27, "valid": 3, "test": 3}, sizes
    x, label = open_videos(video_set, "test", 24, frames=4)[0]
    assert x.shape == (3, 4, 24, 24) and x.dtype == torch.float32 and -1.0 <= x.min() and x.max() <= 1.0
    assert isinstance(label, int)


def test_splits_come_from_disjoint_seeds(video_set):
    train = {p.name for p in video_set.rglob("*_train_*.npy")}
    test = {p.name for p in video_set.rglob("*_test_*.npy")}
    assert train and test and not train & test
    a = read_video(video_set / "wave" / "wave_train_0.npy")
    b = read_video(video_set / "wave" / "wave_test_0.npy")
    assert a.shape == b.shape == (6, 16, 16, 3) and not np.array_equal(a, b), "train and test clip 0 are drawn apart"


def test_classes_differ_in_motion_only():
    """The same draws with another action: the first frame's background is the same, the motion differs."""
    wave, _ = render_clip("wave", np.random.default_rng(0), 32, 8)
    walk, _ = render_clip("walk_right", np.random.default_rng(0), 32, 8)
    assert wave.shape == (8, 32, 32, 3) and wave.dtype == np.uint8
    assert not np.array_equal(wave, walk)
    with pytest.raises(ValueError, match="action must be one of wave, clap"):
        render_clip("dance", np.random.default_rng(0))


def test_a_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is not empty"):
        generate_videos(tmp_path, clips=11, size=16, frames=4, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="clips must be an integer >= 3, got 0"):
        generate_videos(tmp_path / "x", clips=0)


def test_hmdb_and_ucf_split_files(tmp_path):
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    for c in ("brush_hair", "cartwheel"):
        (tmp_path / c).mkdir()
        for i in range(20):
            np.save(tmp_path / c / f"{c}_{i}.npy", frames)
    (tmp_path / "splits").mkdir()
    for c in ("brush_hair", "cartwheel"):
        lines = [f"{c}_{i}.npy {1 if i < 14 else 2 if i < 18 else 0}" for i in range(20)]
        (tmp_path / "splits" / f"{c}_test_split1.txt").write_text("\n".join(lines))
    train, valid, test = (open_videos(tmp_path, s, 8) for s in ("train", "valid", "test"))
    assert len(test) == 8 and len(train) + len(valid) == 28 and len(valid) >= 1, "valid: a hashed share of train; id 0 unused"
    assert not {r for r, _ in train.items} & {r for r, _ in valid.items}
    (tmp_path / "splits" / "cartwheel_test_split1.txt").write_text("cartwheel_0.npy train\n")
    with pytest.raises(ValueError, match="expected lines '<video> <0|1|2|3>'"):
        open_videos(tmp_path, "train", 8)
    for p in (tmp_path / "splits").iterdir():
        p.unlink()
    (tmp_path / "splits" / "trainlist01.txt").write_text("brush_hair/brush_hair_0.npy 1\ncartwheel/cartwheel_0.npy 2\n")
    (tmp_path / "splits" / "testlist01.txt").write_text("cartwheel/cartwheel_1.npy\n")
    assert [label for _, label in open_videos(tmp_path, "test", 8).items] == [1]


def test_pyav_decodes_a_video(tmp_path):
    av = pytest.importorskip("av", reason="the 'video' extra (PyAV) is not installed")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for t in range(5):
            img = np.full((32, 32, 3), 40 * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    video = read_video(path)
    assert video.shape == (5, 32, 32, 3)
    assert abs(float(video[4].mean()) - 160) < 8, "the last frame's grey level comes back"
    assert to_clip(video, 16).shape == (3, 5, 16, 16)
