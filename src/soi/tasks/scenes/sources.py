"""Real ambient recordings for the default scene data set, from Debian packages (nothing is downloaded).

* ``lincity-ng-data`` (GPL-2+, or CC-BY-SA 2.0; installed by ``bash setup.sh``): the city game's
  ambience loops, ``/usr/share/games/lincity-ng/sounds/<Category><n>.wav`` (about 3-5 s each):
  traffic, markets, industry, housing, harbours, farms, schools, workshops.
* ``megaglest-data`` (CC-BY-SA 3.0; installed by ``bash setup.sh scenes``): the strategy game's
  tileset ambience, ``/usr/share/games/megaglest/tilesets/<tileset>/sounds/*`` (8-131 s each):
  birdsong by day, insects by night, rain; owls, wolves, roosters, hens, a cow and a hawk as events.

A *recording* is the split unit (:class:`Recording`): one lincity category (its numbered files may be
cut from one session, so they stay together) or one megaglest file (tilesets share files through
symbolic links, which resolve to one recording). A scene class (:data:`SCENES`) lists its bed
recordings; :data:`EVENTS` lists the short sounds laid over the beds of one class, and
:data:`DISTRACTORS` those laid over any class (sirens, rockets, a window, a train), so that an event
alone never names the scene.

Files recorded below :data:`MIN_SAMPLE_RATE` are left out, and every file is band-limited to the
band of that rate (resampled to it and then to :data:`SAMPLE_RATE`): most lincity loops are 11.025
kHz recordings and most megaglest beds 44.1 kHz ones, and a classifier must not tell scenes apart by
the bandwidth of the game they came from. ``wesnoth-*`` and ``hedgewars-*`` are never read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DISTRACTORS",
    "EVENTS",
    "LINCITY_DIR",
    "MEGAGLEST_DIR",
    "MIN_SAMPLE_RATE",
    "PACKAGES",
    "SAMPLE_RATE",
    "SCENES",
    "Recording",
    "available_recordings",
    "load",
]

LINCITY_DIR = Path("/usr/share/games/lincity-ng/sounds")
MEGAGLEST_DIR = Path("/usr/share/games/megaglest/tilesets")
PACKAGES = {
    "lincity": {
        "package": "lincity-ng-data",
        "folder": str(LINCITY_DIR),
        "license": "GPL-2+ (or CC-BY-SA 2.0)",
    },
    "megaglest": {
        "package": "megaglest-data",
        "folder": str(MEGAGLEST_DIR),
        "license": "CC-BY-SA-3.0",
    },
}
SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 11025

# Scene -> bed recordings. lincity: a category (every file "<Category><digits>.wav"); megaglest:
# "<tileset>/<file>" (resolved through the tilesets' symbolic links).
SCENES: dict[str, tuple[tuple[str, str], ...]] = {
    "traffic": (
        ("lincity", "TraficHigh"),
        ("lincity", "TraficLow"),
        ("lincity", "DirtTrack"),
    ),
    "market": (
        ("lincity", "MarketFull"),
        ("lincity", "MarketMed"),
        ("lincity", "MarketLow"),
        ("lincity", "MarketEmpty"),
    ),
    "industry": tuple(
        ("lincity", c)
        for c in (
            "IndustryHigh",
            "IndustryLight",
            "CoalMine",
            "OreMine",
            "PowerCoal",
            "Recycle",
            "Tip",
        )
    ),
    "residential": tuple(
        ("lincity", c)
        for c in (
            "ResidentialHigh",
            "ResidentialMed",
            "ResidentialLow",
            "Shanty",
            "Commune",
        )
    ),
    "waterside": (
        ("lincity", "Harbor"),
        ("lincity", "Water"),
        ("lincity", "ParklandLake"),
    ),
    "farm": (
        ("lincity", "Farm"),
        ("lincity", "OrganicFarm"),
        ("lincity", "Mill"),
        ("lincity", "WindMill"),
    ),
    "institution": (
        ("lincity", "School"),
        ("lincity", "University"),
        ("lincity", "Health"),
    ),
    "workshop": tuple(
        ("lincity", c)
        for c in ("Blacksmith", "MonumentConstruction", "Build", "Pottery", "Raze")
    ),
    "forest_day": tuple(
        ("megaglest", f)
        for f in (
            "autumn/sunny_day.ogg",
            "birch_forest/day.ogg",
            "dark_forest/day.ogg",
            "desert2/day.ogg",
            "fernland/day.ogg",
            "mediterran/desertday.ogg",
            "spring/day.ogg",
        )
    ),
    "forest_night": tuple(
        ("megaglest", f)
        for f in (
            "autumn/nightime.ogg",
            "birch_forest/night.ogg",
            "dark_forest/night.ogg",
            "desert2/night.ogg",
            "fernland/night.ogg",
            "mediterran/night.ogg",
        )
    ),
    "rain": (
        ("megaglest", "autumn/rain.ogg"),
        ("megaglest", "birch_forest/rain.ogg"),
        ("megaglest", "dark_forest/rain.ogg"),
        ("megaglest", "desert2/rain.wav"),
    ),
}
"""Scene class -> its bed recordings (``(source, name)``)."""

EVENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "forest_night": (
        ("megaglest", "autumn/owl.ogg"),
        ("megaglest", "birch_forest/wolf.wav"),
        ("megaglest", "desert2/wolf.wav"),
    ),
    "farm": (
        ("megaglest", "autumn/rooster.ogg"),
        ("megaglest", "birch_forest/chicken.wav"),
        ("megaglest", "pine_peat/mudchute_cow_1.ogg"),
    ),
    "forest_day": (("megaglest", "desert2/hawk.ogg"),),
}
"""Scene class -> short sounds laid over its beds."""

DISTRACTORS: tuple[tuple[str, str], ...] = tuple(
    ("lincity", c)
    for c in (
        "Fire", "FireStation", "FireWasteland", "Rocket", "RocketExplosion", "RocketTakeoff", "Window",
        "Substation", "PowerLine", "PowerSolar", "RailTrain", "SportsCroud", "Monument",
        "Green", "ParklandPlane", "WindMillHTech",
    )
)  # fmt: skip
"""Short sounds laid over any scene (``Window``: WindowOpen and WindowClose; ``Substation``: its
hum, switching on and off)."""


@dataclass(frozen=True)
class Recording:
    """One split unit: ``files`` (absolute, resolved paths) of one source recording."""

    source: str
    name: str
    files: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.source}:{self.name}"


_SUFFIXES = {
    "Window": "(Open|Close)",
    "Substation": "(On|Off)?",
    "PowerCoal": "(Empty|Full|Low|Med)",
    "ResidentialLow": "(Low)?",
}
"""Categories whose files carry a state in their names (``WindowOpen``, ``PowerCoalFull``)."""


def _lincity_files(root: Path, category: str) -> tuple[str, ...]:
    pattern = re.compile(rf"^{category}{_SUFFIXES.get(category, '')}\d*\.wav$")
    return tuple(str(p) for p in sorted(root.iterdir()) if pattern.match(p.name))


def _usable(path: str) -> bool:
    import soundfile as sf

    try:
        info = sf.info(path)
    except RuntimeError:  # a file libsndfile cannot read is skipped, not fatal
        return False
    return info.samplerate >= MIN_SAMPLE_RATE and info.frames > 0


def _find(
    source: str, name: str, lincity_dir: Path, megaglest_dir: Path
) -> Recording | None:
    if source == "lincity":
        files = _lincity_files(lincity_dir, name) if lincity_dir.is_dir() else ()
    else:
        tileset, file = name.split("/")
        path = megaglest_dir / tileset / "sounds" / file
        files = (str(path.resolve()),) if path.is_file() else ()
    files = tuple(f for f in files if _usable(f))
    return Recording(source, name, files) if files else None


@lru_cache(maxsize=4)
def available_recordings(
    lincity_dir: Path = LINCITY_DIR, megaglest_dir: Path = MEGAGLEST_DIR
) -> tuple[
    dict[str, tuple[Recording, ...]],
    dict[str, tuple[Recording, ...]],
    tuple[Recording, ...],
]:
    """``(beds, events, distractors)`` installed on this machine, in a fixed order: ``beds`` maps each
    scene with at least one bed recording to its recordings, ``events`` each scene to its event
    recordings (possibly none)."""

    def found(entries: tuple[tuple[str, str], ...]) -> tuple[Recording, ...]:
        recs = (_find(s, n, Path(lincity_dir), Path(megaglest_dir)) for s, n in entries)
        return tuple(r for r in recs if r is not None)

    beds = {
        scene: recs for scene, entries in SCENES.items() if (recs := found(entries))
    }
    events = {scene: found(EVENTS.get(scene, ())) for scene in beds}
    return beds, events, found(DISTRACTORS)


@lru_cache(maxsize=512)
def load(path: str) -> np.ndarray:
    """A recording's file at :data:`SAMPLE_RATE`, mono, band-limited to :data:`MIN_SAMPLE_RATE`'s
    band (float64, read-only)."""
    from ..speech.data import read_wav, resample

    wave, _, _ = read_wav(path, MIN_SAMPLE_RATE)
    x = resample(wave.to(torch.float64), MIN_SAMPLE_RATE, SAMPLE_RATE).numpy()
    x.setflags(write=False)
    return x
