"""``soi video ACTION``: video action recognition. Each action is a module here with
``configure(parser)`` and ``run(args)``, as the top-level commands (:mod:`soi.cli`); this module only
names them (:func:`soi.cli.configure_actions` adds and dispatches them)."""

from __future__ import annotations

import argparse

ACTIONS: dict[str, str] = {
    "generate": "render the default procedural action set (11 motion classes, HMDB-51 layout)",
    "train": "train an action classifier (ResNet-10 3D or MoViNet, STMC or SOI) with the one training loop",
    "evaluate": "clip accuracy and per-class accuracy of a trained classifier on a split, and its GMAC/s",
    "classify": "stream a video (or a folder of frames) frame by frame: a label timeline and the clip's label",
}
"""Action name -> one-line help."""


def configure(parser: argparse.ArgumentParser) -> None:
    from .. import configure_actions

    configure_actions(parser, __name__, ACTIONS)


def run(args: argparse.Namespace) -> int:
    from .. import run_action

    return run_action(args, __name__)
