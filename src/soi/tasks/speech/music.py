"""Music for the noise of the default data set: random note sequences (a melody over chords, a bass
line, sometimes drums) written as a MIDI file with ``mido`` and rendered offline by the
``fluidsynth`` command line with the General MIDI soundfont of ``fluid-soundfont-gm`` (FluidR3,
MIT licence). Everything follows from the seed; fluidsynth's file rendering is deterministic.

A noise *source* is one instrument family (:data:`FAMILIES`): the melody and chord programs of a
piece come from it, so the splits (which share no noise source) hear different lead timbres.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["SOUNDFONT", "FAMILIES", "music_available", "write_midi", "render_music"]

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SOUNDFONT_PACKAGE = "fluid-soundfont-gm"

FAMILIES: dict[str, tuple[int, ...]] = {  # General MIDI programs (0-based) of each family
    "piano": tuple(range(0, 8)),
    "chromatic": tuple(range(8, 16)),
    "organ": tuple(range(16, 24)),
    "guitar": tuple(range(24, 32)),
    "strings": tuple(range(40, 52)),
    "brass": tuple(range(56, 64)),
    "reed": tuple(range(64, 80)),
    "synth": tuple(range(80, 96)),
}
_BASS = tuple(range(32, 40))
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3), (5, 3, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0))


def music_available(soundfont: Path = SOUNDFONT) -> str | None:
    """``None`` when music can be rendered here, else what is missing."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("fluidsynth")
    if not Path(soundfont).is_file():
        missing.append(SOUNDFONT_PACKAGE)
    try:
        import mido  # noqa: F401
    except ImportError:
        missing.append("mido (pip install mido)")
    return ", ".join(missing) or None


def write_midi(path: str | os.PathLike, rng: np.random.Generator, family: str, seconds: float) -> dict:
    """Write a random piece of about ``seconds`` to ``path``; returns its description."""
    import mido

    tempo_bpm = float(rng.uniform(60, 160))
    ticks = 480
    mid = mido.MidiFile(ticks_per_beat=ticks)
    beats = max(4, int(np.ceil(seconds * tempo_bpm / 60)))
    root = int(rng.integers(48, 60))
    scale = _MAJOR if rng.random() < 0.6 else _MINOR
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    beats_per_chord = int(rng.choice([2, 4, 8]))
    programs = FAMILIES[family]
    melody_program = int(programs[int(rng.integers(len(programs)))])
    chord_program = int(programs[int(rng.integers(len(programs)))])
    bass_program = int(_BASS[int(rng.integers(len(_BASS)))]) if rng.random() < 0.7 else None
    drums = bool(rng.random() < 0.5)

    def note(degree: int, octave: int) -> int:
        return int(np.clip(root + 12 * (octave + degree // 7) + scale[degree % 7], 0, 127))

    events: list[tuple[int, int, mido.Message]] = []  # (tick, order, message): note_off before note_on

    def add(channel: int, pitch: int, start: float, length: float, velocity: int) -> None:
        on, off = int(round(start * ticks)), int(round((start + length) * ticks))
        events.append((on, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
        events.append((max(off, on + 1), 0, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))

    for beat in range(0, beats, beats_per_chord):
        degree = progression[(beat // beats_per_chord) % len(progression)]
        length = min(beats_per_chord, beats - beat)
        for third in (0, 2, 4):  # a triad
            add(1, note(degree + third, 0), beat, length, int(rng.integers(45, 70)))
        if bass_program is not None:
            for b in range(length):
                add(2, note(degree, -1), beat + b, 0.9, int(rng.integers(60, 90)))
    t, degree = 0.0, int(rng.integers(7, 12))
    while t < beats:  # the melody: a random walk on the scale, with rests
        length = float(rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
        if rng.random() > 0.15:
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), 3, 16))
            add(0, note(degree, 1), t, length * 0.95, int(rng.integers(70, 110)))
        t += length
    if drums:
        for beat in range(beats):
            add(9, 36 if beat % 2 == 0 else 38, beat, 0.2, int(rng.integers(70, 100)))  # kick / snare
            for half in (0.0, 0.5):
                add(9, 42, beat + half, 0.1, int(rng.integers(40, 70)))  # closed hi-hat

    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    for channel, program in ((0, melody_program), (1, chord_program), (2, bass_program)):
        if program is not None:
            track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1], e[2].channel, e[2].note)):
        track.append(message.copy(time=tick - now))
        now = tick
    mid.save(str(path))
    return {
        "family": family,
        "tempo_bpm": round(tempo_bpm, 1),
        "programs": {"melody": melody_program, "chords": chord_program, "bass": bass_program},
        "drums": drums,
    }


def render_music(
    rng: np.random.Generator, family: str, seconds: float, sample_rate: int = 16000, soundfont: Path = SOUNDFONT
) -> np.ndarray:
    """A random piece of ``family`` rendered by fluidsynth: ``round(seconds * sample_rate)`` mono
    float64 samples at ``sample_rate`` (the reverb tail past the last note is cut)."""
    import soundfile as sf

    missing = music_available(soundfont)
    if missing:
        raise OSError(f"music needs {missing}: apt-get install fluidsynth {SOUNDFONT_PACKAGE}; pip install mido")
    n = int(round(seconds * sample_rate))
    with tempfile.TemporaryDirectory(prefix="soi-music-") as tmp:
        midi, wav = os.path.join(tmp, "piece.mid"), os.path.join(tmp, "piece.wav")
        write_midi(midi, rng, family, seconds)
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-r", str(sample_rate), "-g", "0.5", "-F", wav, "-T", "wav", "-O", "s16",
             str(soundfont), midi],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        x, rate = sf.read(wav, dtype="float64", always_2d=True)
    if rate != sample_rate:  # pragma: no cover - fluidsynth honours -r
        raise OSError(f"fluidsynth wrote {rate} Hz, asked for {sample_rate}")
    x = x.mean(axis=1)
    return np.pad(x, (0, max(0, n - x.size)))[:n]
