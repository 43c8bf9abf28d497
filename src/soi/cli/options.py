"""Option types checked while the command line is parsed, so a bad value is refused before any work
with a message that names the option (argparse adds ``argument --threads:`` in front)::

    parser.add_argument("--threads", type=positive_int)

Each is an ``argparse`` ``type=`` function: text in, value out, ``ArgumentTypeError`` with what was
expected and what came.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "add_data_folder_options",
    "add_loop_options",
    "bounded_float",
    "config_overrides",
    "count",
    "finite_float",
    "int_range",
    "pattern",
    "positive_float",
    "positive_int",
    "seed",
]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def count(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


SEED_MAX = 2**32 - 1
"""The largest seed: numpy's legacy seeding and torch's both take it."""


def seed(text: str) -> int:
    """A random seed, ``0 .. 2**32 - 1``."""
    value = _int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a seed between 0 and {SEED_MAX}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A finite number (no ``nan``, no ``inf``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def bounded_float(high: float) -> Callable[[str], float]:
    """A finite number in ``(0, high]``: for sizes where a huge value would exhaust the memory."""

    def parse(text: str) -> float:
        value = positive_float(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"expected a number > 0 and <= {high:g}, got {text!r}")
        return value

    return parse


def int_range(low: int, high: int | Callable[[], int]) -> Callable[[str], int]:
    """An integer in ``low .. high``; ``high`` may be a function, called only when the option is given."""

    def parse(text: str) -> int:
        value = _int(text)
        top = high() if callable(high) else high
        if not low <= value <= top:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {top}, got {text!r}")
        return value

    return parse


def pattern(text: str) -> str:
    """An SOI pattern name: not empty (the full check needs the model's depth and comes later)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected an SOI pattern such as 'STMC' or 'S-CC 2', got {text!r}")
    return text


def add_data_folder_options(parser: argparse.ArgumentParser) -> None:
    """The output folder of a ``generate`` command and its ``--force``, the same in every one
    (:func:`soi.files.prepare_data_folder` says what each case does)."""
    parser.add_argument("out", help="output folder")
    parser.add_argument(
        "--force", action="store_true",
        help="replace a soi data set made with other parameters in OUT (only the files soi wrote are removed), "
        "or write into a folder that holds other files (they stay)",
    )  # fmt: skip


def add_loop_options(parser: argparse.ArgumentParser) -> None:
    """The flags of :class:`soi.training.LoopConfig`'s fields (and ``--force``), the same in every
    ``train`` command. None has a default: a flag not given leaves the task config's (or its ``--config``
    file's) value."""
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--lr", type=positive_float)
    parser.add_argument("--lr-patience", type=positive_int, help="halve the learning rate after this many validations without a new best (default 4)")
    parser.add_argument("--min-lr", type=positive_float, help="the learning rate halves no further than this (default 1e-5)")
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--steps", dest="max_steps", type=positive_int)
    parser.add_argument("--minutes", type=positive_float, help="wall-clock budget of the whole run (a resumed run counts its earlier time); stops, validates and saves")
    parser.add_argument("--seed", type=seed)
    parser.add_argument("--valid-every", type=positive_int)
    parser.add_argument("--workers", dest="num_workers", type=count)
    parser.add_argument("--no-resume", dest="resume", action="store_false", default=None, help="start over even if --out holds a run")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar (as --quiet)")
    parser.add_argument("--force", action="store_true", help="replace the checkpoints and log of an earlier run in --out instead of resuming it")


def config_overrides(args: argparse.Namespace, config_type: type) -> dict[str, Any]:
    """The options given on the command line that are fields of the dataclass ``config_type`` (those
    not None), with ``progress`` off under ``--quiet``."""
    fields = {f.name for f in dataclasses.fields(config_type)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.quiet:
        overrides["progress"] = False
    return overrides
