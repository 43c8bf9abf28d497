"""Offline generator of ``soi``'s default speech-enhancement data set (nothing is downloaded).

Speech (see ``docs/data.md``):

* real human voices (:mod:`.sources`): letters, syllables and words recorded for the KDE games
  ``klettres-data`` and ``ktuberling-data`` (one speaker per language folder, about 20 languages
  each; ktuberling's ``el``, ``gl``, ``sl`` and ``wa`` are held out and never read), clips joined
  into utterances of 2-8 s with pauses of 80-400 ms and a gain of +-3 dB per clip;
* synthetic sentences (:data:`SYNTHETIC_SHARE` of the items) for sentence prosody: ``espeak-ng``
  (English accents x voice variants) and ``flite`` (its full-bandwidth voices) at varied speed and
  pitch, reading sentences from a small built-in English grammar.

Noise: real ambient recordings shipped by ``lincity-ng-data`` (traffic, crowds, industry, water,
...; GPL-2+), music (:mod:`.music`: random note sequences rendered by ``fluidsynth`` with the
``fluid-soundfont-gm`` General MIDI soundfont), synthetic coloured noise (white ... brown), mains
hum and buzz, clicks and crackle, and babble of other speakers (real and synthetic) of the same
split. :data:`REVERB_SHARE` of the utterances are spoken in a simulated room (:mod:`.rooms`,
``pyroomacoustics``); their training target is the direct path plus the first 50 ms of
reflections. Speech levels are drawn from -40 to -15 dBFS (active speech), so level never matters.

The train / valid / test splits share no voice and no noise source (a real voice is a language: the
folders of one language in both packages go to the same split; a noise source is one recording
category, one music instrument family, one synthetic generator, or the babble of one split's
voices), so the test set is unseen. ``wesnoth-*`` and ``hedgewars-*`` packages are never read.
Everything follows from the seed; ``manifest.json`` records the splits, every item's voice, clips
or text, room, noise, level, SNR and anti-clipping scale, and the parameters. A complete set with
the same parameters is reused.

Nothing that soi did not write is ever deleted: every file and folder is recorded in
``.soi-written`` (:class:`soi.files.WrittenFiles`) before it is made. A set with other parameters
is replaced only with ``overwrite`` (``--force``), and then only the recorded files go; a folder
that holds something else is written into only with ``overwrite``. The space the set needs is
checked before any synthesis.

Layout::

    out_dir/manifest.json
    out_dir/{train,valid,test}/{noisy,clean}/<split>_<index>.wav     16 kHz mono PCM16

Command line: ``soi generate OUT --minutes 10 --seed 0``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...files import (
    WrittenFiles,
    check_output_folder,
    finish_data_folder,
    prepare_data_folder,
    read_manifest,
)
from ...progress import progress_bar
from . import music as _music
from . import rooms as _rooms
from . import sources as _sources
from .data import read_wav, write_wav
from .sources import RealUtterance, Speaker

__all__ = [
    "ToolError",
    "GENERATOR_VERSION",
    "SPLITS",
    "REAL_NOISE_DIR",
    "Voice",
    "NoiseSource",
    "generate_dataset",
    "make_sentence",
    "available_voices",
    "available_noise_sources",
    "split_assignment",
    "is_complete",
    "MAX_SEGMENT_SECONDS",
    "SYNTHETIC_SHARE",
    "REVERB_SHARE",
    "LEVEL_RANGE_DB",
    "available_speakers",
]

GENERATOR_VERSION = 2  # 2: real voices, music, rooms, -40..-15 dBFS levels
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # of the items; voices and noise sources are split 70/15/15
SAMPLE_RATE = 16000
REAL_NOISE_DIR = Path("/usr/share/games/lincity-ng/sounds")
REAL_NOISE_PACKAGE = "lincity-ng-data"
SYNTHETIC_SHARE = 0.35
"""The share of the items whose target speech is synthetic (espeak-ng / flite sentences), for
sentence prosody; the rest are real voices (all items are synthetic when klettres-data and
ktuberling-data are missing)."""
REVERB_SHARE = 0.5
"""The share of the target utterances spoken in a simulated room (none without pyroomacoustics)."""
LEVEL_RANGE_DB = (-40.0, -15.0)
"""Active speech level of the mixture's speech, dBFS, drawn uniformly."""
REAL_UTTERANCE_SECONDS = (2.0, 8.0)
MUSIC_PIECES = 8  # rendered pieces per music family (a layer plays a random stretch of one)
MUSIC_PIECE_SECONDS = 30.0
available_speakers = _sources.available_speakers

# -- sentences ------------------------------------------------------------------------------------

_PEOPLE = (
    "the old man", "the young woman", "my brother", "her sister", "the teacher", "the doctor",
    "a farmer", "the pilot", "our neighbour", "the driver", "a small child", "the baker",
    "the captain", "my friend", "the nurse", "the student", "his father", "the manager",
    "a stranger", "the painter", "the guard", "the singer", "your cousin", "the engineer",
)  # fmt: skip
_NAMES = (
    "Anna", "Peter", "Maria", "John", "Susan", "David", "Laura", "Michael", "Helen", "Thomas",
    "Emma", "James", "Sarah", "Robert", "Alice", "George", "Clara", "Daniel", "Rose", "Victor",
)  # fmt: skip
_THINGS = (
    "basket", "letter", "lamp", "blue box", "wooden chair", "map", "coat", "book", "kettle",
    "bicycle", "ladder", "bottle of milk", "bag of apples", "key", "cup of tea", "red ball",
    "newspaper", "small boat", "piano", "old clock", "warm bread", "suitcase", "garden hose",
    "bunch of flowers", "pair of shoes", "sandwich", "camera", "blanket", "bucket", "ticket",
)  # fmt: skip
_PLACES = (
    "the kitchen", "the station", "the garden", "the market", "the river", "the library",
    "the harbour", "the old bridge", "the hospital", "the school", "the park", "the office",
    "the village", "the beach", "the farm", "the museum", "the hotel", "the corner shop",
)  # fmt: skip
_THING_ADJECTIVES = (  # what a thing can be
    "heavy", "small", "large", "old", "new", "clean", "broken", "shiny", "wet", "empty",
    "green", "brown", "soft", "cheap", "round", "yellow", "light", "dusty",
)  # fmt: skip
_PLACE_ADJECTIVES = ("quiet", "busy", "crowded", "cold", "warm", "dark", "bright", "empty", "noisy", "lovely")
_CARRY = (  # past tense, transitive with a thing
    "carried", "opened", "painted", "found", "lost", "repaired", "cleaned", "bought", "sold",
    "dropped", "moved", "wrapped", "borrowed", "checked", "picked up", "put away",
)  # fmt: skip
_CARRY_BASE = (
    "carry", "open", "paint", "find", "repair", "clean", "buy", "sell", "move", "wrap",
    "borrow", "check", "pick up", "put away", "bring", "fetch",
)  # fmt: skip
_GO = ("walked to", "ran to", "drove to", "went back to", "arrived at", "waited at", "stayed at", "hurried to")
_PAST = (
    "this morning", "last night", "on Sunday", "after lunch", "before dinner", "yesterday",
    "in the evening", "at noon", "early in the spring", "a week ago", "on the way home", "last summer",
)  # fmt: skip
_FUTURE = (
    "tomorrow", "next week", "on Monday", "after lunch", "this evening", "in an hour",
    "before the train leaves", "at the weekend", "when it stops raining", "later today",
)  # fmt: skip
_ADVERBS = ("slowly", "quickly", "quietly", "carefully", "happily", "suddenly", "again", "at last")
_WEATHER = (
    "the rain stopped", "the wind was cold", "the sun came out", "the sky turned grey",
    "the snow began to fall", "the fog lifted", "the air felt warm", "the clouds rolled in",
)  # fmt: skip
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty")


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def make_sentence(rng: np.random.Generator) -> str:
    """One grammatical English sentence from a small built-in grammar (no text files needed)."""

    def pick(seq: Sequence[str]) -> str:
        return seq[int(rng.integers(len(seq)))]

    def agent() -> str:
        return pick(_NAMES) if rng.random() < 0.4 else pick(_PEOPLE)

    def thing() -> str:
        return f"{pick(_THING_ADJECTIVES)} {pick(_THINGS)}" if rng.random() < 0.6 else pick(_THINGS)

    def article(noun_phrase: str) -> str:
        return ("an " if noun_phrase[0] in "aeiou" else "a ") + noun_phrase

    templates: tuple[Callable[[], str], ...] = (
        lambda: f"{_cap(agent())} {pick(_CARRY)} the {thing()} {pick(_PAST)}.",
        lambda: f"{_cap(agent())} {pick(_GO)} {pick(_PLACES)} {pick(_ADVERBS)}.",
        lambda: f"Please {pick(_CARRY_BASE)} the {thing()} before you leave {pick(_PLACES)}.",
        lambda: f"Did you see {agent()} near {pick(_PLACES)} {pick(_PAST)}?",
        lambda: f"When {pick(_WEATHER)}, {agent()} {pick(_GO)} {pick(_PLACES)}.",
        lambda: f"{_cap(agent())} said that the {pick(_THINGS)} was too {pick(_THING_ADJECTIVES)}.",
        lambda: f"We will {pick(_CARRY_BASE)} {pick(_NUMBERS)} of them {pick(_FUTURE)}.",
        lambda: f"The {thing()} is still in {pick(_PLACES)}.",
        lambda: f"{_cap(pick(_PAST))}, {agent()} {pick(_CARRY)} {article(thing())} and {pick(_GO)} {pick(_PLACES)}.",
        lambda: f"Could {agent()} {pick(_CARRY_BASE)} the {thing()} {pick(_FUTURE)}?",
        lambda: f"It takes {pick(_NUMBERS)} minutes to walk from {pick(_PLACES)} to {pick(_PLACES)}.",
        lambda: f"{_cap(pick(_WEATHER))}, so {agent()} {pick(_CARRY)} the {thing()} {pick(_ADVERBS)}.",
        lambda: f"{_cap(pick(_PLACES))} was {pick(_PLACE_ADJECTIVES)} {pick(_PAST)}.",
        lambda: f"I think {agent()} will {pick(_CARRY_BASE)} {article(thing())} {pick(_FUTURE)}.",
    )
    return templates[int(rng.integers(len(templates)))]()


# -- voices ---------------------------------------------------------------------------------------

# espeak-ng voice variants that sound like a person (the robotic, whispering and joke variants are
# left out). Intersected with what the installed espeak-ng lists.
_ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt6",
    "adam", "Alex", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb",
    "david", "Denis", "ed", "edward", "edward2", "Gene", "Gene2", "grandma", "grandpa", "gustave",
    "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "Lee", "linda",
    "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike", "norbert", "pablo", "paul",
    "pedro", "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph2", "steph3", "Storm",
    "travis", "victor", "zac",
)  # fmt: skip
_ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)  # fmt: skip
# flite's full-bandwidth voices with their usual mean pitch (Hz); kal (8 kHz) and awb_time (a
# limited-domain clock voice) are left out.
_FLITE_VOICES = {"kal16": 105.0, "awb": 125.0, "rms": 100.0, "slt": 170.0}


@dataclass(frozen=True)
class Voice:
    """A speaker: ``engine`` ``"espeak-ng"`` (``name`` a variant, spoken with any accent) or ``"flite"``."""

    engine: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


def _run(cmd: Sequence[str], check: bool = True) -> str:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, timeout=60).stdout


class ToolError(RuntimeError, OSError):
    """A speech synthesiser the data set needs is missing or unusable (an ``OSError``: the fix is
    on the machine, not in the call)."""


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ToolError(
            f"the default data set needs '{binary}', which is not installed: apt-get install espeak-ng flite "
            f"{REAL_NOISE_PACKAGE} (the packages listed in packaging/apt-packages.txt; setup.sh installs them)"
        )
    return path


@lru_cache(maxsize=1)
def available_voices() -> tuple[tuple[Voice, ...], tuple[str, ...]]:
    """The usable voices and espeak-ng accents of this machine, in a fixed order."""
    _require("espeak-ng")
    _require("flite")
    # Table rows: Pty Language Age/Gender VoiceName File; the file is "!v/<variant>".
    rows = [line.split() for line in _run(["espeak-ng", "--voices=variant"]).splitlines()[1:]]
    listed = {row[4].split("/")[-1] for row in rows if len(row) >= 5}
    variants = [v for v in _ESPEAK_VARIANTS if v in listed]
    languages = {line.split()[1] for line in _run(["espeak-ng", "--voices=en"]).splitlines()[1:] if len(line.split()) >= 2}
    accents = tuple(a for a in _ESPEAK_ACCENTS if a in languages)
    flite = set(_run(["flite", "-lv"]).replace("Voices available:", "").split())
    voices = [Voice("espeak-ng", v) for v in variants] + [Voice("flite", v) for v in _FLITE_VOICES if v in flite]
    if len(variants) < 3 or not accents:
        raise ToolError(
            f"espeak-ng lists too few English voices ({variants}, accents {accents}); is espeak-ng-data installed?"
        )
    return tuple(voices), accents


# -- noise sources --------------------------------------------------------------------------------

_REAL_EXCLUDE = {"Click", "WindowOpen", "WindowClose"}  # user-interface sounds, not environments


@dataclass(frozen=True)
class NoiseSource:
    """A noise source: ``kind`` is ``real`` (``files``: recordings of one category), ``music``
    (``name``: an instrument family), ``colored``, ``hum``, ``clicks`` or ``babble``; ``param``
    parametrises the synthetic kinds."""

    kind: str
    name: str
    param: float = 0.0
    files: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


_SYNTHETIC = (
    NoiseSource("colored", "white", 0.0),
    NoiseSource("colored", "pink", 1.0),
    NoiseSource("colored", "brown", 2.0),
    NoiseSource("colored", "alpha0.5", 0.5),
    NoiseSource("colored", "alpha1.5", 1.5),
    NoiseSource("hum", "mains50", 50.0),
    NoiseSource("hum", "mains60", 60.0),
    NoiseSource("hum", "buzz120", 120.0),
    NoiseSource("clicks", "keyboard", 8.0),
    NoiseSource("clicks", "crackle", 120.0),
    NoiseSource("clicks", "ticking", 2.0),
)


def available_noise_sources(real_dir: Path = REAL_NOISE_DIR) -> tuple[NoiseSource, ...]:
    """Real recording categories found under ``real_dir`` (file name without its trailing number),
    the music families (when fluidsynth and its soundfont are installed), then the synthetic
    generators. Warns when the real recordings or the music are not available."""
    real: dict[str, list[str]] = {}
    if real_dir.is_dir():
        for path in sorted(real_dir.glob("*.wav")):
            category = re.sub(r"\d+$", "", path.stem)
            if category not in _REAL_EXCLUDE:
                real.setdefault(category, []).append(str(path))
    if not real:
        warnings.warn(
            f"no real noise recordings in {real_dir}; the data set will use synthetic noise only "
            f"(apt-get install {REAL_NOISE_PACKAGE})",
            stacklevel=2,
        )
    missing = _music.music_available()
    if missing:
        warnings.warn(f"no music in the noise: {missing} not installed (bash setup.sh)", stacklevel=2)
    music = () if missing else tuple(NoiseSource("music", family) for family in _music.FAMILIES)
    return tuple(NoiseSource("real", c, 0.0, tuple(f)) for c, f in sorted(real.items())) + music + _SYNTHETIC


def _usable_speakers() -> tuple[Speaker, ...]:
    speakers = _sources.available_speakers()
    if not speakers:
        warnings.warn(
            "no real voices: klettres-data and ktuberling-data are not installed (bash setup.sh); "
            "the data set will use synthetic speech only",
            stacklevel=3,
        )
    return speakers


def split_assignment(items: Sequence[Any], seed: int, salt: str) -> dict[str, list[Any]]:
    """Shuffle ``items`` with ``seed`` and deal them 70/15/15 to the splits (at least one each when
    there are three or more), so that no item is in two splits."""
    order = np.random.default_rng([seed, _stable_int(salt)]).permutation(len(items))
    shuffled = [items[i] for i in order]
    n = len(shuffled)
    n_valid = max(1, round(0.15 * n)) if n >= 3 else 0
    n_test = max(1, round(0.15 * n)) if n >= 3 else 0
    n_train = n - n_valid - n_test
    return {
        "train": shuffled[:n_train],
        "valid": shuffled[n_train : n_train + n_valid],
        "test": shuffled[n_train + n_valid :],
    }


def _split_by_group(items: Sequence[Any], group: Callable[[Any], str], seed: int, salt: str) -> dict[str, list[Any]]:
    """:func:`split_assignment` within each group (engine, noise kind), so every split gets some of
    each group that has three or more members."""
    out: dict[str, list[Any]] = {name: [] for name in SPLITS}
    for key in sorted({group(it) for it in items}):
        for name, part in split_assignment([it for it in items if group(it) == key], seed, f"{salt}:{key}").items():
            out[name].extend(part)
    return out


def _stable_int(text: str) -> int:
    # Python's hash() of a str changes between processes; this does not.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


# -- synthesis ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    """One synthesis request; ``rate`` is a speed factor (1 = the engine's default), ``pitch`` a
    pitch factor."""

    voice: Voice
    accent: str
    text: str
    rate: float
    pitch: float

    def command(self, wav_path: str) -> list[str]:
        if self.voice.engine == "espeak-ng":
            # espeak-ng: words per minute (default 175) and pitch 0..99 (default 50).
            return [
                "espeak-ng", "-v", f"{self.accent}+{self.voice.name}", "-s", str(round(175 * self.rate)),
                "-p", str(int(np.clip(round(50 * self.pitch), 0, 99))), "-w", wav_path, self.text,
            ]  # fmt: skip
        f0 = _FLITE_VOICES[self.voice.name] * self.pitch
        return [
            "flite", "-voice", self.voice.name, "--setf", f"duration_stretch={1 / self.rate:.3f}",
            "--setf", f"int_f0_target_mean={f0:.1f}", "-t", self.text, "-o", wav_path,
        ]  # fmt: skip


@dataclass(frozen=True)
class MusicPiece:
    """One rendered piece of music of an instrument family (:mod:`.music`)."""

    family: str
    seed: int
    seconds: float


def _synthesise(utt: Utterance | RealUtterance | MusicPiece, tmp_dir: str) -> np.ndarray:
    """Render one request: speak an :class:`Utterance` (float32 at 16 kHz, leading/trailing
    silence trimmed), join a :class:`RealUtterance`'s clips, or play a :class:`MusicPiece`."""
    if isinstance(utt, RealUtterance):
        return _sources.render_real_utterance(utt)
    if isinstance(utt, MusicPiece):
        return _music.render_music(np.random.default_rng(utt.seed), utt.family, utt.seconds, SAMPLE_RATE).astype(np.float32)
    fd, path = tempfile.mkstemp(suffix=".wav", dir=tmp_dir)
    os.close(fd)
    try:
        subprocess.run(utt.command(path), check=True, capture_output=True, timeout=120)
        wave, _, _ = read_wav(path, SAMPLE_RATE)
    finally:
        os.unlink(path)
    wave = wave.numpy()
    active = np.flatnonzero(np.abs(wave) > 1e-3)
    return wave[active[0] : active[-1] + 1] if active.size else wave


_FLITE_SHARE = 0.3  # flite has few voices but natural ones: give them a fixed share of the speech


def _random_utterance(rng: np.random.Generator, voices: Sequence[Voice], accents: Sequence[str], sentences: int) -> Utterance:
    n_flite = sum(v.engine == "flite" for v in voices)
    p = None
    if 0 < n_flite < len(voices):
        share = {"flite": _FLITE_SHARE / n_flite, "espeak-ng": (1 - _FLITE_SHARE) / (len(voices) - n_flite)}
        p = np.array([share[v.engine] for v in voices])
    voice = voices[int(rng.choice(len(voices), p=p))]
    return Utterance(
        voice=voice,
        accent=accents[int(rng.integers(len(accents)))] if voice.engine == "espeak-ng" else "",
        text=" ".join(make_sentence(rng) for _ in range(sentences)),
        rate=round(float(rng.uniform(0.8, 1.2)), 3),
        pitch=round(float(rng.uniform(0.75, 1.3)), 3),
    )


# -- noise synthesis ------------------------------------------------------------------------------


def _colored(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^alpha (0 white, 1 pink, 2 brown), shaped in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1]
    spec *= f ** (-alpha / 2)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    # A slow random level change keeps stationary noise from being trivially easy.
    level = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * np.arange(n) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi))
    return x * level


def _hum(rng: np.random.Generator, n: int, base: float) -> np.ndarray:
    """Mains hum / buzz: harmonics of ``base`` Hz with random amplitudes and a little jitter, plus a
    faint broadband floor."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = base * (1 + rng.uniform(-0.005, 0.005))
    x = np.zeros(n)
    for k in range(1, int(3000 // f0) + 1):
        amp = rng.uniform(0.2, 1.0) / k ** rng.uniform(0.5, 1.5)
        x += amp * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    return x + 0.05 * x.std() * rng.standard_normal(n)


def _clicks(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Impulsive noise: decaying filtered bursts at ``rate`` per second (keyboard, crackle, ticking)."""
    x = np.zeros(n)
    count = max(1, rng.poisson(rate * n / SAMPLE_RATE))
    regular = rate < 4  # a clock ticks regularly
    starts = (
        (np.arange(count) * SAMPLE_RATE / rate + rng.uniform(0, SAMPLE_RATE / rate)).astype(int)
        if regular
        else rng.integers(0, n, count)
    )
    length = int(0.004 * SAMPLE_RATE) if rate > 50 else int(0.03 * SAMPLE_RATE)
    decay = np.exp(-np.arange(length) / (length / 5))
    for s in starts[starts < n]:
        burst = rng.standard_normal(length) * decay * rng.uniform(0.3, 1.0)
        end = min(n, s + length)
        x[s:end] += burst[: end - s]
    return x + 0.01 * rng.standard_normal(n)


def _fit(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``x``, looped from a random phase (with a short cross-fade at the seams)."""
    if x.size >= n:
        start = int(rng.integers(0, x.size - n + 1))
        return x[start : start + n]
    fade = min(400, x.size // 4)
    if fade:
        ramp = np.linspace(0, 1, fade)
        x = x.copy()
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    reps = -(-(n + x.size) // x.size)
    start = int(rng.integers(0, x.size))
    return np.tile(x, reps)[start : start + n]


@lru_cache(maxsize=256)
def _real_recording(path: str) -> np.ndarray:
    wave, _, _ = read_wav(path, SAMPLE_RATE)
    return wave.numpy().astype(np.float64)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-12))


# -- planning -------------------------------------------------------------------------------------


# How often each kind of noise is picked (renormalised over the kinds present): mostly real
# recordings, babble and music, the synthetic kinds less.
_KIND_WEIGHTS = {"real": 0.3, "babble": 0.2, "music": 0.2, "colored": 0.12, "clicks": 0.12, "hum": 0.06}


def _random_speech(
    rng: np.random.Generator,
    voices: Sequence[Voice],
    accents: Sequence[str],
    speakers: Sequence[Speaker],
    real_share: float,
    sentences: int,
    max_seconds: float,
) -> Utterance | RealUtterance:
    """A real utterance (``real_share`` of the time, when there are speakers; a speaker is drawn
    with probability growing as the square root of their recorded seconds, so the few large ones
    do not crowd out the rest) or a synthetic one."""
    if speakers and rng.random() < real_share:
        weights = np.sqrt([s.total_seconds for s in speakers])
        speaker = speakers[int(rng.choice(len(speakers), p=weights / weights.sum()))]
        low, high = REAL_UTTERANCE_SECONDS
        return _sources.plan_real_utterance(rng, speaker, min(low, max_seconds), min(high, max_seconds))
    return _random_utterance(rng, voices, accents, sentences)


def _plan_item(
    rng: np.random.Generator,
    voices: Sequence[Voice],
    accents: Sequence[str],
    speakers: Sequence[Speaker],
    noises: Sequence[NoiseSource],
    snr_range_db: tuple[float, float],
    segment_seconds: float,
    rooms: bool,
) -> dict[str, Any]:
    """Everything random about one item, as plain JSON-able values and the requests it needs."""
    target = _random_speech(rng, voices, accents, speakers, 1 - SYNTHETIC_SHARE, 3, segment_seconds)
    kinds = sorted({s.kind for s in noises})
    weights = np.array([_KIND_WEIGHTS[k] for k in kinds])
    layers = []
    for layer in range(1 + int(rng.random() < 0.3)):  # sometimes a second, quieter source
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        candidates = [s for s in noises if s.kind == kind]
        source = candidates[int(rng.integers(len(candidates)))]
        spec: dict[str, Any] = {
            "source": source.id,
            "gain_db": 0.0 if layer == 0 else round(float(rng.uniform(-12, -4)), 2),
            "seed": int(rng.integers(2**31)),
        }
        if source.kind == "real":
            spec["file"] = source.files[int(rng.integers(len(source.files)))]
        if source.kind == "music":
            spec["piece"] = int(rng.integers(MUSIC_PIECES))
        if source.kind == "babble":
            target_voice = target.speaker if isinstance(target, RealUtterance) else target.voice
            others_voices = [v for v in voices if v != target_voice] or list(voices)
            others_speakers = [s for s in speakers if s.id != target_voice]
            spec["talkers"] = [
                _random_speech(rng, others_voices, accents, others_speakers, 0.5, 2, 8.0) for _ in range(int(rng.integers(3, 7)))
            ]
        layers.append(spec)
    reverberant = bool(rng.random() < REVERB_SHARE)
    room = _rooms.draw_room(rng)  # always drawn, so the other draws do not depend on the share
    return {
        "target": target,
        "level_db": round(float(rng.uniform(*LEVEL_RANGE_DB)), 2),
        "snr_db": round(float(rng.uniform(*snr_range_db)), 2),
        "placement_seed": int(rng.integers(2**31)),
        "room": room if (rooms and reverberant) else None,
        "noise": layers,
    }


def _music_piece(source: NoiseSource, piece: int, seed: int) -> MusicPiece:
    return MusicPiece(source.name, _stable_int(f"music:{seed}:{source.name}:{piece}") % 2**63, MUSIC_PIECE_SECONDS)


def _render_noise(
    layer: dict[str, Any], source: NoiseSource, n: int, speech: dict[Any, np.ndarray], seed: int
) -> np.ndarray:
    rng = np.random.default_rng(layer["seed"])
    if source.kind == "real":
        x = _fit(_real_recording(layer["file"]), n, rng)
    elif source.kind == "music":
        x = _fit(speech[_music_piece(source, layer["piece"], seed)].astype(np.float64), n, rng)
    elif source.kind == "colored":
        x = _colored(rng, n, source.param)
    elif source.kind == "hum":
        x = _hum(rng, n, source.param)
    elif source.kind == "clicks":
        x = _clicks(rng, n, source.param)
    elif source.kind == "babble":
        x = np.zeros(n)
        for utt in layer["talkers"]:
            talk = speech[utt].astype(np.float64)
            x += _fit(talk / _rms(talk), n, rng) * 10 ** (rng.uniform(-6, 0) / 20)
    else:  # pragma: no cover - the sources are ours
        raise ValueError(f"unknown noise kind {source.kind}")
    return x / _rms(x) * 10 ** (layer["gain_db"] / 20)


_PEAK = 0.95


def _render_item(
    plan: dict[str, Any], sources: dict[str, NoiseSource], speech: dict[Any, np.ndarray], n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """The ``(noisy, clean, scale)`` of ``plan``: float32 signals of ``n`` samples and the factor
    both were scaled by so that no sample of the mixture exceeds 0.95 (1.0: none needed).

    The speech is placed on an ``n``-sample canvas (a longer utterance is cut at a random point);
    in a room, the mixture gets the reverberant speech and the target its direct path and early
    reflections (:mod:`.rooms`). ``level_db`` is the RMS of the mixture's speech over the span the
    utterance occupies, and ``snr_db`` that level over the noise's RMS."""
    rng = np.random.default_rng(plan["placement_seed"])
    talk = speech[plan["target"]].astype(np.float64)
    canvas = np.zeros(n)
    if talk.size >= n:
        start = int(rng.integers(0, talk.size - n + 1))
        canvas[:] = talk[start : start + n]
        span = slice(0, n)
    else:
        start = int(rng.integers(0, n - talk.size + 1))
        canvas[start : start + talk.size] = talk
        span = slice(start, start + talk.size)
    if plan["room"] is not None:
        wet, clean = _rooms.reverberate(canvas, _rooms.impulse_response(plan["room"], SAMPLE_RATE), SAMPLE_RATE)
    else:
        wet, clean = canvas, canvas
    gain = 10 ** (plan["level_db"] / 20) / _rms(wet[span])
    wet, clean = wet * gain, clean * gain
    noise = sum(_render_noise(layer, sources[layer["source"]], n, speech, seed) for layer in plan["noise"])
    noise = noise / _rms(noise) * _rms(wet[span]) * 10 ** (-plan["snr_db"] / 20)
    noisy = wet + noise
    peak = max(np.abs(noisy).max(), np.abs(clean).max())
    scale = 1.0
    if peak > _PEAK:  # keep the pair consistent: scale both
        scale = _PEAK / peak
        clean, noisy = clean * scale, noisy * scale
    return noisy.astype(np.float32), clean.astype(np.float32), scale


# -- the data set ---------------------------------------------------------------------------------


def _tool_versions() -> dict[str, str]:
    espeak = _run(["espeak-ng", "--version"]).split("Data at:")[0].strip()
    flite = next((ln.strip() for ln in _run(["flite", "--version"], check=False).splitlines() if "version" in ln), "flite")
    tools = {"espeak-ng": espeak, "flite": flite}
    if _music.music_available() is None:
        tools["fluidsynth"] = _run(["fluidsynth", "--version"], check=False).splitlines()[0].strip()
    if _rooms.rooms_available() is None:
        import pyroomacoustics

        tools["pyroomacoustics"] = pyroomacoustics.__version__
    return tools


def _items_per_split(minutes: float, segment_seconds: float) -> dict[str, int]:
    total = max(3, round(minutes * 60 / segment_seconds))
    n_valid = max(1, round(SPLIT_FRACTIONS[1] * total))
    n_test = max(1, round(SPLIT_FRACTIONS[2] * total))
    return {"train": total - n_valid - n_test, "valid": n_valid, "test": n_test}


def _utterance_json(u: Utterance | RealUtterance) -> dict[str, Any]:
    if isinstance(u, RealUtterance):
        return {"real": True, **u.json()}
    return {"real": False, "voice": u.voice.id, "accent": u.accent, "text": u.text, "rate": u.rate, "pitch": u.pitch}


def _manifest_files(manifest: dict[str, Any] | None) -> list[str]:
    """The files a manifest lists: what sets made before ``.soi-written`` existed wrote."""
    if manifest is None:
        return []
    items = [it for split in manifest["splits"].values() for it in split.get("items", [])]
    return ["manifest.json", *(it[key] for it in items for key in ("noisy", "clean") if key in it)]


def is_complete(out_dir: str | os.PathLike, params: dict[str, Any] | None = None) -> bool:
    """Whether ``out_dir`` holds a complete data set made by :func:`generate_dataset` (with
    ``params``, if given: the ``params`` of its manifest)."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir, "splits", dict)
    if manifest is None or (params is not None and manifest.get("params") != params):
        return False
    return all((out_dir / f).is_file() for f in _manifest_files(manifest))


MAX_SEGMENT_SECONDS = 600.0
"""The longest item: one item is rendered in memory in float64 (600 s: about 80 MB per signal)."""
_FREE_SPACE_MARGIN = 1.1  # PCM16 WAVs plus headers, the manifest and the file system's blocks


def _check_space(out_dir: Path, minutes: float, segment_seconds: float) -> None:
    """Refuse before any synthesis when the set cannot fit on the disk."""
    items = sum(_items_per_split(minutes, segment_seconds).values())
    need = _FREE_SPACE_MARGIN * items * 2 * 2 * round(segment_seconds * SAMPLE_RATE)  # noisy + clean, 2 bytes a sample
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise OSError(
            errno.ENOSPC,
            f"the data set ({minutes:g} minutes in {items} items of {segment_seconds:g} s) needs about {need / 1e9:.2f} GB, "
            f"but {existing} has {free / 1e9:.2f} GB free",
        )


def generate_dataset(
    out_dir: str | os.PathLike,
    minutes: float = 10.0,
    seed: int = 0,
    segment_seconds: float = 4.0,
    progress: bool = True,
    snr_range_db: tuple[float, float] = (-5.0, 15.0),
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the default data set (see the module docstring) and return ``out_dir``.

    Args:
        out_dir: destination folder.
        minutes: total audio over the three splits (80 / 10 / 10 % of the items; at least one each).
        seed: fixes the splits, texts, voices, noises and SNRs: the same seed gives identical files.
        segment_seconds: length of every item, at most :data:`MAX_SEGMENT_SECONDS`.
        progress: show tqdm progress bars (on a terminal).
        snr_range_db: SNRs are drawn uniformly from this range.
        workers: concurrent synthesis processes (default: the number of CPUs).
        overwrite: replace a set made with other parameters (removing only the files soi
            recorded), or write into a folder that holds something else (replacing files of the
            names the set uses, leaving the rest). An interrupted set with the same parameters is
            redone without it.

    Returns immediately when ``out_dir`` already holds a complete set with the same parameters.

    Raises:
        ToolError: ``espeak-ng`` or ``flite`` is not installed (a ``RuntimeError`` and an ``OSError``).
        FileExistsError: ``out_dir`` holds another set or other files and ``overwrite`` is false.
        NotADirectoryError, PermissionError: ``out_dir`` is not a folder soi can write in.
        OSError: not enough free disk space.
        ValueError: a parameter out of range.
    """
    if not (math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"generate_dataset: minutes must be a finite number > 0, got {minutes}")
    if not (math.isfinite(segment_seconds) and 0 < segment_seconds <= MAX_SEGMENT_SECONDS):
        raise ValueError(f"generate_dataset: segment_seconds must be > 0 and <= {MAX_SEGMENT_SECONDS:g}, got {segment_seconds}")
    low, high = (float(v) for v in snr_range_db)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"generate_dataset: snr_range_db must be finite (low, high) with low <= high, got {tuple(snr_range_db)}")
    if workers is not None and workers < 1:
        raise ValueError(f"generate_dataset: workers must be >= 1, got {workers}")
    out_dir = check_output_folder(out_dir)
    voices, accents = available_voices()
    noises = available_noise_sources()
    speakers = _usable_speakers()
    rooms_missing = _rooms.rooms_available()
    if rooms_missing:
        warnings.warn(f"no reverberant speech: {rooms_missing} is not installed", stacklevel=2)
    params = {
        "generator_version": GENERATOR_VERSION,
        "minutes": float(minutes),
        "seed": int(seed),
        "segment_seconds": float(segment_seconds),
        "snr_range_db": [low, high],
        "sample_rate": SAMPLE_RATE,
        # What this machine offers decides the set, so a set made with other voices or noises is redone.
        "voices": [v.id for v in voices],
        "noise_sources": [s.id for s in noises],
        "real_speakers": _sources.speakers_json(speakers),
        "rooms": rooms_missing is None,
    }
    if is_complete(out_dir, params):
        return out_dir
    _check_space(out_dir, minutes, segment_seconds)
    record = _prepare(out_dir, params, overwrite)
    with _one_torch_thread():
        _generate(out_dir, record, params, voices, accents, speakers, noises, progress, workers, overwrite)
    return out_dir


def _generate(
    out_dir: Path,
    record: WrittenFiles,
    params: dict[str, Any],
    voices: Sequence[Voice],
    accents: Sequence[str],
    speakers: Sequence[Speaker],
    noises: Sequence[NoiseSource],
    progress: bool,
    workers: int | None,
    overwrite: bool,
) -> None:
    seed, minutes, segment_seconds = params["seed"], params["minutes"], params["segment_seconds"]
    snr_range_db = tuple(params["snr_range_db"])

    voice_split = _split_by_group(voices, lambda v: v.engine, seed, "voices")
    # Real voices: by language (every folder of one language in the same split; see .sources).
    group_split = split_assignment(sorted({s.group for s in speakers}), seed, "speakers")
    speaker_split = {name: [s for s in speakers if s.group in group_split[name]] for name in SPLITS}
    noise_split = _split_by_group(noises, lambda s: s.kind, seed, "noise")
    for name in SPLITS:  # babble: the other speakers of the same split, so never a seen voice
        noise_split[name].append(NoiseSource("babble", name))
    sources = {s.id: s for part in noise_split.values() for s in part}

    counts = _items_per_split(minutes, segment_seconds)
    plans: dict[str, list[dict[str, Any]]] = {}
    for split_index, name in enumerate(SPLITS):
        split_args = (voice_split[name], accents, speaker_split[name], noise_split[name], snr_range_db, segment_seconds, params["rooms"])
        plans[name] = [_plan_item(np.random.default_rng([seed, split_index, i]), *split_args) for i in range(counts[name])]
    wanted = {p["target"] for ps in plans.values() for p in ps}
    wanted |= {u for ps in plans.values() for p in ps for layer in p["noise"] for u in layer.get("talkers", ())}
    layers = [layer for ps in plans.values() for p in ps for layer in p["noise"]]
    wanted |= {_music_piece(sources[layer["source"]], layer["piece"], seed) for layer in layers if "piece" in layer}
    speech = _synthesise_all(sorted(wanted, key=repr), workers, progress)

    n = int(round(segment_seconds * SAMPLE_RATE))
    manifest_splits: dict[str, Any] = {}
    bar = _progress(sum(counts.values()), progress, "mixing")
    for name in SPLITS:
        items = []
        for i, plan in enumerate(plans[name]):
            noisy, clean, scale = _render_item(plan, sources, speech, n, seed)
            files = _item_files(name, i)
            for relative, wave in zip(files, (noisy, clean)):
                write_wav(record.claim(relative, force=overwrite), wave, SAMPLE_RATE, overwrite=True)
                record.written(relative)
            items.append(
                {
                    "noisy": files[0],
                    "clean": files[1],
                    "speech": _utterance_json(plan["target"]),
                    "snr_db": plan["snr_db"],
                    "level_db": plan["level_db"],
                    "room": plan["room"],
                    "scale": round(scale, 6),
                    "noise": [
                        {k: ([_utterance_json(u) for u in v] if k == "talkers" else v) for k, v in layer.items() if k != "seed"}
                        for layer in plan["noise"]
                    ],
                }
            )
            bar.update(1)
        manifest_splits[name] = {
            "voices": [s.id for s in speaker_split[name]] + [v.id for v in voice_split[name]],
            "speaker_groups": sorted(group_split[name]),
            "noise_sources": [s.id for s in noise_split[name]],
            "items": items,
        }
    bar.close()
    manifest = {
        "params": params,
        "tools": _tool_versions(),
        "real_noise": {"package": REAL_NOISE_PACKAGE, "folder": str(REAL_NOISE_DIR), "license": "GPL-2+ (or CC-BY-SA 2.0)"},
        "real_speech": {
            "packages": list(_sources.PACKAGES.values()),
            "held_out": [f"{pkg}:{lang}" for pkg, langs in _sources.HELD_OUT.items() for lang in langs],
            "min_sample_rate": _sources.MIN_SAMPLE_RATE,
            "synthetic_share": SYNTHETIC_SHARE,
        },
        "music": {"package": _music.SOUNDFONT_PACKAGE, "soundfont": str(_music.SOUNDFONT), "license": "MIT"},
        "rooms": {
            "simulator": "pyroomacoustics ShoeBox (image sources, Sabine)",
            "share": REVERB_SHARE,
            "rt60_s": list(_rooms.RT60_RANGE),
            "target": f"direct path + first {_rooms.EARLY_MS:g} ms of reflections, aligned to the direct path",
        },
        "level_db": "active speech RMS of the mixture's speech, dBFS; snr_db against it; scale: anti-clipping factor applied to both",
        "accents": list(accents),
        "splits": manifest_splits,
    }
    # Written last: its presence marks a complete set.
    finish_data_folder(record, manifest, overwrite=overwrite)


def _item_files(split: str, index: int) -> tuple[str, str]:
    """The noisy and clean file of item ``index`` of ``split``, relative to the set's folder."""
    stem = f"{split}_{index:05d}.wav"
    return f"{split}/noisy/{stem}", f"{split}/clean/{stem}"


def _prepare(out_dir: Path, params: dict[str, Any], overwrite: bool) -> WrittenFiles:
    """Make way for a new set (:func:`soi.files.prepare_data_folder`); a set made before the record
    of soi's files existed is known by its manifest's files."""
    counts = _items_per_split(params["minutes"], params["segment_seconds"])
    planned = ["manifest.json", *(f for name in SPLITS for i in range(counts[name]) for f in _item_files(name, i))]
    manifest = read_manifest(out_dir, "splits", dict)
    return prepare_data_folder(out_dir, params, manifest, overwrite=overwrite, planned=planned, legacy=_manifest_files(manifest))


def _progress(total: int, enabled: bool, desc: str):
    return progress_bar(total, desc=desc, unit="item" if desc == "mixing" else "utt", enabled=enabled, leave=False)


def _synthesise_all(utterances: Sequence[Utterance], workers: int | None, progress: bool) -> dict[Utterance, np.ndarray]:
    """Run the synthesisers concurrently: the work is in the subprocesses, so threads suffice."""
    workers = workers or os.cpu_count() or 1
    out: dict[Utterance, np.ndarray] = {}
    bar = _progress(len(utterances), progress, "speech")
    try:
        with tempfile.TemporaryDirectory(prefix="soi-tts-") as tmp, concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {pool.submit(_synthesise, u, tmp): u for u in utterances}
            for fut in concurrent.futures.as_completed(futures):
                out[futures[fut]] = fut.result()
                bar.update(1)
    finally:
        bar.close()
    return out


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """The resampling is small and the cores are busy synthesising; one thread also makes every
    float reduction run in the same order on any machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

