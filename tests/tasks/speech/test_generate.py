"""The default data set's real voices, music and rooms (soi.tasks.speech.generate and its sources)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from soi.tasks.speech import sources as S

SR = 16000


def _need_tts():
    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng and flite not installed: bash setup.sh")


def _need_voices():
    if not S.KLETTRES_DIR.is_dir() or not S.KTUBERLING_DIR.is_dir():
        pytest.skip("klettres-data / ktuberling-data not installed: bash setup.sh")


def _need_music():
    from soi.tasks.speech.music import music_available

    missing = music_available()
    if missing:
        pytest.skip(f"{missing} not installed: bash setup.sh")


def _need_rooms():
    from soi.tasks.speech.rooms import rooms_available

    missing = rooms_available()
    if missing:
        pytest.skip(f"{missing} not installed: bash setup.sh")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    _need_tts()
    _need_voices()
    from soi.tasks.speech.generate import generate_dataset

    root = tmp_path_factory.mktemp("gen18")
    # 0.8 minutes: 12 items of 4 s, enough that real voices, rooms and several noise kinds occur.
    return {
        name: generate_dataset(root / name, minutes=0.8, seed=seed, progress=False, workers=2)
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    }


def _data(root: Path) -> dict[str, bytes]:
    """Every file of the set but soi's record of them (which names inodes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".soi-written"}


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


# -- real voices ----------------------------------------------------------------------------------


def test_speakers_skip_held_out_and_duplicate_folders():
    _need_voices()
    speakers = S.available_speakers()
    ids = {s.id for s in speakers}
    assert {"klettres:fr", "ktuberling:fr", "klettres:en_GB"} <= ids
    for lang in ("el", "gl", "sl", "wa"):
        assert f"ktuberling:{lang}" not in ids
        assert not any(f"/ktuberling/sounds/{lang}/" in f for s in speakers for f in s.files)
    assert not any("@" in s.language for s in speakers)  # sr@latin etc. are copies of sr
    assert not any("wesnoth" in f or "hedgewars" in f for s in speakers for f in s.files)
    assert S.speaker_group("en_GB") == S.speaker_group("en") == "en" and S.speaker_group("sr@latin") == "sr"
    assert sum(s.total_seconds for s in speakers) > 60 * 60  # over an hour of real speech


def test_real_utterance_joins_clips_with_pauses():
    _need_voices()
    speaker = next(s for s in S.available_speakers() if s.id == "klettres:fr")
    u = S.plan_real_utterance(np.random.default_rng(0), speaker, 2.0, 8.0)
    assert len(u.pauses_ms) == len(u.clips) - 1 and len(u.gains_db) == len(u.clips)
    assert all(80 <= p <= 400 for p in u.pauses_ms) and all(abs(g) <= 3 for g in u.gains_db)
    x = S.render_real_utterance(u)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    assert 1.0 < x.size / SR < 9.0
    assert S.plan_real_utterance(np.random.default_rng(0), speaker, 2.0, 8.0) == u


def test_trim_silence():
    x = np.zeros(SR)
    x[4000:6000] = np.sin(np.arange(2000) * 0.3)
    y = S.trim_silence(x)
    assert 2000 <= y.size <= 2000 + 2 * 320 + 2 * 160
    assert np.abs(y).max() == np.abs(x).max()


# -- music and rooms -------------------------------------------------------------------------------


def test_music_renders_at_16k_deterministically(tmp_path):
    _need_music()
    import mido

    from soi.tasks.speech.music import FAMILIES, render_music, write_midi

    info = write_midi(tmp_path / "a.mid", np.random.default_rng(3), "piano", 4.0)
    assert info["programs"]["melody"] in FAMILIES["piano"]
    assert mido.MidiFile(tmp_path / "a.mid").length > 3.0
    x = render_music(np.random.default_rng(3), "strings", 2.0, SR)
    assert x.shape == (2 * SR,) and np.isfinite(x).all()
    assert np.sqrt(np.mean(x**2)) > 1e-3 and np.abs(x).max() <= 1.0  # audible, not clipped
    np.testing.assert_array_equal(x, render_music(np.random.default_rng(3), "strings", 2.0, SR))


def test_room_reverb_keeps_length_and_alignment():
    _need_rooms()
    from soi.tasks.speech.rooms import (
        RT60_RANGE,
        draw_room,
        impulse_response,
        reverberate,
    )

    room = draw_room(np.random.default_rng(1))
    assert RT60_RANGE[0] <= room["rt60_s"] <= RT60_RANGE[1] and room["distance_m"] >= 0.5
    rir = impulse_response(room, SR)
    x = np.zeros(SR)
    x[5000] = 1.0
    wet, early = reverberate(x, rir, SR)
    assert wet.shape == early.shape == x.shape
    assert int(np.argmax(np.abs(wet))) == int(np.argmax(np.abs(early))) == 5000  # direct path at lag 0
    assert np.abs(early[5000 + int(0.06 * SR) :]).max() < 1e-12 * np.abs(early).max()  # nothing after 50 ms in the target
    assert np.abs(wet[5000 + int(0.06 * SR) :]).max() > 0  # the late tail stays in the mixture
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(SR)
    wet, early = reverberate(speech, rir, SR)
    lags = np.arange(-200, 201)
    xcorr = [np.dot(np.roll(speech, k), early) for k in lags]
    assert lags[int(np.argmax(np.abs(xcorr)))] == 0


# -- the data set ---------------------------------------------------------------------------------


def test_generator_is_deterministic_with_real_sources(sets):
    a, b, c = (_data(sets[k]) for k in "abc")
    assert len(a) == 12 * 2 + 1  # 12 items x noisy/clean + manifest
    assert a == b  # byte-identical WAVs and manifest
    assert a.keys() == c.keys() and a != c


def test_splits_are_speaker_disjoint_and_held_out_data_unused(sets):
    manifest = _manifest(sets["a"])
    splits = manifest["splits"]
    groups = {name: set(split["speaker_groups"]) for name, split in splits.items()}
    assert all(groups.values())
    assert not groups["train"] & groups["valid"] and not groups["train"] & groups["test"] and not groups["valid"] & groups["test"]
    voices = {name: set(split["voices"]) for name, split in splits.items()}
    assert not voices["train"] & voices["test"] and not voices["valid"] & voices["test"] and not voices["train"] & voices["valid"]
    for name, split in splits.items():
        for voice in voices[name]:
            if voice.startswith(("klettres:", "ktuberling:")):
                assert S.speaker_group(voice.split(":", 1)[1]) in groups[name]
        for item in split["items"]:
            talkers = [item["speech"], *(t for layer in item["noise"] for t in layer.get("talkers", ()))]
            for talker in talkers:
                assert talker["voice"] in voices[name]
                for clip in talker.get("clips", ()):
                    assert clip.startswith(talker["voice"] + "/")
    text = (sets["a"] / "manifest.json").read_text()
    for lang in ("el", "gl", "sl", "wa"):
        assert f"ktuberling:{lang}/" not in text and f"sounds/{lang}/" not in text
    assert "wesnoth" not in text and "hedgewars" not in text
    assert manifest["real_speech"]["held_out"] == ["ktuberling:el", "ktuberling:gl", "ktuberling:sl", "ktuberling:wa"]


def test_items_mix_real_and_synthetic_speech_rooms_and_levels(sets):
    root = sets["a"]
    import soundfile as sf

    manifest = _manifest(root)
    items = [it for split in manifest["splits"].values() for it in split["items"]]
    assert any(it["speech"]["real"] for it in items) and any(not it["speech"]["real"] for it in items)
    if manifest["params"]["rooms"]:
        assert any(it["room"] for it in items) and any(it["room"] is None for it in items)
    for it in items:
        assert -40 <= it["level_db"] <= -15 and 0 < it["scale"] <= 1
        noisy, rate = sf.read(root / it["noisy"], dtype="int16")
        clean, _ = sf.read(root / it["clean"], dtype="int16")
        assert rate == SR and noisy.shape == clean.shape == (4 * SR,)
        assert np.abs(noisy.astype(int)).max() < 32767 and np.abs(clean.astype(int)).max() < 32767  # nothing clipped
        assert np.abs(clean).max() > 0
