"""The default scene data set: deterministic from its seed, splits that share no recording, the
TAU/DCASE layout, and the reader of that layout (also on a TAU-like set without a validation list)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from soi.tasks.scenes import sources
from soi.tasks.scenes.data import open_scenes, scene_classes
from soi.tasks.scenes.generate import generate_scenes, is_complete, scene_splits
from soi.tasks.speech.generate import SPLITS

pytest.importorskip("soundfile")
pytestmark = pytest.mark.skipif(
    not sources.LINCITY_DIR.is_dir(),
    reason="lincity-ng-data is not installed (bash setup.sh)",
)


@pytest.fixture(scope="module")
def scene_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes") / "set"
    generate_scenes(root, minutes=1.0, seed=3, progress=False)
    return root


def test_the_layout_is_tau_and_the_reader_reads_it(scene_set):
    manifest = json.loads((scene_set / "manifest.json").read_text())
    counts = {name: len(manifest["splits"][name]["items"]) for name in SPLITS}
    assert counts == {"train": 4, "valid": 1, "test": 1}
    beds, _, _ = sources.available_recordings()
    assert scene_classes(scene_set) == tuple(sorted(beds)[: len(beds)]) or set(
        scene_classes(scene_set)
    ) <= set(beds)
    for name in SPLITS:
        data = open_scenes(scene_set, name)
        assert len(data) == counts[name]
        wave, label = data[0]
        assert wave.shape == (160000,) and 0 <= label < len(data.classes)
        assert data.classes[label] == manifest["splits"][name]["items"][0]["scene"]
    header = (scene_set / "meta.csv").read_text().splitlines()[0]
    assert header == "filename\tscene_label\tidentifier\tsource_label"
    assert (scene_set / "evaluation_setup" / "fold1_test.csv").read_text().splitlines()[
        0
    ] == "filename"


def test_splits_share_no_recording(scene_set):
    for seed in (0, 1, 7):
        splits = scene_splits(seed)
        for kind in ("beds", "events"):
            for scene, parts in splits[kind].items():
                ids = [{r.id for r in parts[name]} for name in SPLITS]
                assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]), (
                    seed,
                    kind,
                    scene,
                )
                if (
                    kind == "beds"
                    and len(sources.available_recordings()[0][scene]) >= 3
                ):
                    assert all(ids), (
                        f"seed {seed}: every split has a bed recording of {scene}"
                    )
    manifest = json.loads((scene_set / "manifest.json").read_text())
    used = {
        name: {
            layer["recording"]
            for it in manifest["splits"][name]["items"]
            for layer in it["beds"] + it["events"]
        }
        for name in SPLITS
    }
    assert (
        not used["test"] & used["train"]
        and not used["valid"] & used["train"]
        and not used["test"] & used["valid"]
    )


def test_the_same_seed_gives_identical_files_and_another_seed_other_clips(
    scene_set, tmp_path
):
    again = generate_scenes(tmp_path / "again", minutes=1.0, seed=3, progress=False)
    other = generate_scenes(tmp_path / "other", minutes=1.0, seed=4, progress=False)
    files = sorted(
        p.relative_to(scene_set)
        for p in scene_set.rglob("*")
        if p.is_file() and p.name != ".soi-written"
    )
    assert files and files == sorted(
        p.relative_to(again)
        for p in again.rglob("*")
        if p.is_file() and p.name != ".soi-written"
    )
    for f in files:
        assert (scene_set / f).read_bytes() == (again / f).read_bytes(), f
    first = "audio/traffic-train-00000.wav"
    assert (scene_set / first).read_bytes() != (other / first).read_bytes()
    assert is_complete(scene_set)


def test_a_complete_set_is_reused_and_another_is_replaced_only_with_overwrite(
    scene_set, tmp_path
):
    root = tmp_path / "copy"
    shutil.copytree(scene_set, root)
    before = (root / "manifest.json").stat().st_mtime_ns
    generate_scenes(root, minutes=1.0, seed=3, progress=False)
    assert (root / "manifest.json").stat().st_mtime_ns == before, (
        "same parameters: nothing rewritten"
    )
    with pytest.raises(FileExistsError, match="other parameters"):
        generate_scenes(root, minutes=1.0, seed=5, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_scenes(tmp_path / "busy", minutes=0.5, progress=False)
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep"


@pytest.mark.parametrize("minutes", [0, -1.0, float("nan")])
def test_bad_minutes_are_refused(tmp_path, minutes):
    with pytest.raises(ValueError, match="minutes must be a finite number > 0"):
        generate_scenes(tmp_path / "x", minutes=minutes, progress=False)


def test_a_tau_set_without_a_validation_list_splits_train_by_location(tmp_path):
    import soundfile as sf

    (tmp_path / "audio").mkdir()
    (tmp_path / "evaluation_setup").mkdir()
    rows, train = (
        ["filename\tscene_label\tidentifier\tsource_label"],
        ["filename\tscene_label"],
    )
    for scene in ("airport", "park"):
        for loc in range(20):
            name = f"audio/{scene}-lisbon-{loc}-0-a.wav"
            sf.write(tmp_path / name, np.zeros(4410, np.float32), 44100)
            rows.append(f"{name}\t{scene}\tlisbon-{loc}\ta")
            train.append(f"{name}\t{scene}")
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "evaluation_setup" / "fold1_train.csv").write_text(
        "\n".join(train) + "\n"
    )
    (tmp_path / "evaluation_setup" / "fold1_evaluate.csv").write_text(
        "\n".join(train[:3]) + "\n"
    )
    tr, va, te = (open_scenes(tmp_path, s) for s in ("train", "valid", "test"))
    assert tr.classes == ("airport", "park") and len(te) == 2
    locations = lambda d: {Path(p).stem.split("-")[2] for p, _ in d.items}
    assert len(tr) + len(va) == 40 and va.items and not locations(tr) & locations(va)
    wave, _ = tr[0]
    assert wave.shape == (1600,), "read at 16 kHz"
    with pytest.raises(ValueError, match="split must be one of train, valid, test"):
        open_scenes(tmp_path, "dev")
    (tmp_path / "meta.csv").unlink()
    (tmp_path / "evaluation_setup" / "fold1_train.csv").unlink()
    with pytest.raises(FileNotFoundError, match="fold1_train.csv: no such file"):
        open_scenes(tmp_path, "train")
