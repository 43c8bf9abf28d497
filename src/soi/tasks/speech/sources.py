"""Real human voices for the default data set, from Debian packages (nothing is downloaded).

* ``klettres-data`` (GPL-2+): letters and syllables spoken by one native speaker per language,
  ``/usr/share/klettres/<lang>/{alpha,syllab}/*.ogg`` (20 languages, about 51 minutes).
* ``ktuberling-data`` (GPL-2+): words spoken by one speaker per language,
  ``/usr/share/ktuberling/sounds/<lang>/*.{ogg,wav,opus}``. The languages ``el``, ``gl``, ``sl``
  and ``wa`` are held out for the project's independent evaluation: their folders are skipped by
  name and never opened (:data:`HELD_OUT`). ``sr@ijekavian``, ``sr@ijekavianlatin`` and
  ``sr@latin`` hold byte-identical copies of ``sr`` (the same recordings under other scripts'
  names), so only ``sr`` is used.

A *speaker* is one language folder of one package (``klettres:fr``, ``ktuberling:fr``). Splits are
made by :func:`speaker_group`, the language without its region or script (``en_GB`` -> ``en``,
``pt_BR`` -> ``pt``): the packages do not say who recorded what, and one person may well have
recorded a language for both games, so all folders of a language go to the same split.

Clips recorded below 16 kHz (some ktuberling ``.wav`` words are 8 kHz telephone-band recordings)
are left out: as clean targets they would teach the model to remove everything above 4 kHz.

Clips are joined into utterances (:class:`RealUtterance`): silence trimmed, each clip brought to
the same active level, a gain of +-3 dB per clip, and natural pauses of 80-400 ms between clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .data import read_wav

__all__ = [
    "KLETTRES_DIR",
    "KTUBERLING_DIR",
    "HELD_OUT",
    "Speaker",
    "RealUtterance",
    "available_speakers",
    "speaker_group",
    "plan_real_utterance",
    "render_real_utterance",
    "trim_silence",
]

KLETTRES_DIR = Path("/usr/share/klettres")
KTUBERLING_DIR = Path("/usr/share/ktuberling/sounds")
PACKAGES = {
    "klettres": {"package": "klettres-data", "folder": str(KLETTRES_DIR), "license": "GPL-2+"},
    "ktuberling": {"package": "ktuberling-data", "folder": str(KTUBERLING_DIR), "license": "GPL-2+"},
}
HELD_OUT = {"ktuberling": ("el", "gl", "sl", "wa")}
"""Language folders never read: the project evaluates on them."""
_DUPLICATES = {"ktuberling": ("sr@ijekavian", "sr@ijekavianlatin", "sr@latin")}  # copies of sr
_AUDIO = (".ogg", ".wav", ".opus", ".flac")
MIN_SAMPLE_RATE = 16000
SAMPLE_RATE = 16000

PAUSE_MS = (80.0, 400.0)
CLIP_GAIN_DB = 3.0


@dataclass(frozen=True)
class Speaker:
    """One language folder of one package: ``files`` and their durations in seconds."""

    package: str
    language: str
    files: tuple[str, ...]
    seconds: tuple[float, ...]

    @property
    def id(self) -> str:
        return f"{self.package}:{self.language}"

    @property
    def group(self) -> str:
        return speaker_group(self.language)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))


def speaker_group(language: str) -> str:
    """The split unit of a language folder: the language without region or script."""
    return language.split("@")[0].split("_")[0].split("-")[0]


def _clips(folder: Path, pattern: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    import soundfile as sf

    files, seconds = [], []
    for path in sorted(p for p in folder.glob(pattern) if p.suffix.lower() in _AUDIO and p.is_file()):
        try:
            info = sf.info(str(path))
        except RuntimeError:  # a file libsndfile cannot read is skipped, not fatal
            continue
        if info.samplerate >= MIN_SAMPLE_RATE and info.frames > 0:
            files.append(str(path))
            seconds.append(round(info.frames / info.samplerate, 4))
    return tuple(files), tuple(seconds)


@lru_cache(maxsize=4)
def available_speakers(klettres_dir: Path = KLETTRES_DIR, ktuberling_dir: Path = KTUBERLING_DIR) -> tuple[Speaker, ...]:
    """The real speakers installed on this machine, in a fixed order (empty when neither package
    is installed). Held-out and duplicate folders are skipped by name, before anything in them is
    listed."""
    speakers = []
    for package, root, pattern in (("klettres", Path(klettres_dir), "*/*"), ("ktuberling", Path(ktuberling_dir), "*")):
        if not root.is_dir():
            continue
        skip = set(HELD_OUT.get(package, ())) | set(_DUPLICATES.get(package, ()))
        for folder in sorted(root.iterdir()):
            if folder.name in skip or not folder.is_dir():
                continue
            files, seconds = _clips(folder, pattern)
            if files:
                speakers.append(Speaker(package, folder.name, files, seconds))
    return tuple(speakers)


@dataclass(frozen=True)
class RealUtterance:
    """Clips of one speaker joined into one utterance: ``gains_db`` per clip, ``pauses_ms``
    between consecutive clips (one fewer than the clips)."""

    speaker: str
    clips: tuple[str, ...]
    gains_db: tuple[float, ...]
    pauses_ms: tuple[float, ...]

    def json(self) -> dict:
        return {
            "voice": self.speaker,
            "clips": [_short(c) for c in self.clips],
            "gains_db": list(self.gains_db),
            "pauses_ms": list(self.pauses_ms),
        }


def _short(path: str) -> str:
    """A clip's path relative to its package folder (``ktuberling:fr/chapeau.wav``)."""
    for package, info in PACKAGES.items():
        if path.startswith(info["folder"] + "/"):
            return f"{package}:{path[len(info['folder']) + 1 :]}"
    return path


def plan_real_utterance(rng: np.random.Generator, speaker: Speaker, min_seconds: float, max_seconds: float) -> RealUtterance:
    """Random clips of ``speaker`` (without repeats while there are unused ones) until their
    untrimmed length plus pauses reaches a length drawn from ``[min_seconds, max_seconds]``."""
    goal = float(rng.uniform(min_seconds, max_seconds))
    order = rng.permutation(len(speaker.files))
    clips, gains, pauses, total = [], [], [], 0.0
    k = 0
    while True:
        i = int(order[k % len(order)])
        k += 1
        clips.append(speaker.files[i])
        gains.append(round(float(rng.uniform(-CLIP_GAIN_DB, CLIP_GAIN_DB)), 2))
        total += speaker.seconds[i]
        if total >= goal or k >= 64:
            break
        pause = round(float(rng.uniform(*PAUSE_MS)), 1)
        if total + pause / 1000 >= goal:
            break
        pauses.append(pause)
        total += pause / 1000
    return RealUtterance(speaker.id, tuple(clips), tuple(gains), tuple(pauses))


def trim_silence(x: np.ndarray, threshold_db: float = -35.0, frame: int = 160, margin: int = 320) -> np.ndarray:
    """``x`` without its leading and trailing silence: 10 ms frames quieter than ``threshold_db``
    below the loudest frame, keeping ``margin`` samples (20 ms) on each side."""
    n = x.size // frame
    if n == 0:
        return x
    energy = np.square(x[: n * frame].reshape(n, frame)).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 10))
    start = max(0, int(loud[0]) * frame - margin)
    end = min(x.size, (int(loud[-1]) + 1) * frame + margin)
    return x[start:end]


@lru_cache(maxsize=8192)
def _clip(path: str) -> np.ndarray:
    """A clip at 16 kHz mono, trimmed, at unit RMS over its loud frames (float32)."""
    wave, _, _ = read_wav(path, SAMPLE_RATE)
    x = trim_silence(wave.numpy().astype(np.float64))
    frame = 160
    n = max(1, x.size // frame)
    energy = np.square(np.pad(x, (0, n * frame + frame - x.size))[: n * frame].reshape(n, frame)).mean(axis=1)
    active = energy[energy > energy.max() * 10 ** (-35 / 10)]
    rms = float(np.sqrt(active.mean() + 1e-12)) if active.size else float(np.sqrt(np.mean(x * x) + 1e-12))
    out = (x / rms).astype(np.float32)
    out.setflags(write=False)
    return out


def render_real_utterance(u: RealUtterance) -> np.ndarray:
    """The samples of ``u`` (float32, 16 kHz)."""
    parts: list[np.ndarray] = []
    for i, (path, gain) in enumerate(zip(u.clips, u.gains_db)):
        if i:
            parts.append(np.zeros(int(round(u.pauses_ms[i - 1] * SAMPLE_RATE / 1000)), np.float32))
        parts.append(_clip(path) * np.float32(10 ** (gain / 20)))
    return np.concatenate(parts)


def speakers_json(speakers: Sequence[Speaker]) -> list[str]:
    """``id:clips`` for each speaker: what decides whether a generated set is current."""
    return [f"{s.id}:{len(s.files)}" for s in speakers]
