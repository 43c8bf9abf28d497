"""``soi scenes ACTION``: acoustic scene classification. Each action is a module here with
``configure(parser)`` and ``run(args)``, as the top-level commands (:mod:`soi.cli`); this module only
names them (:func:`soi.cli.configure_actions` adds and dispatches them)."""

from __future__ import annotations

import argparse

ACTIONS: dict[str, str] = {
    "generate": "build the default scene data set offline from real recordings in Debian packages",
    "train": "train a scene classifier (GhostNet, STMC or SOI) with the one training loop",
    "evaluate": "accuracy, per-class accuracy and MMAC/s of a trained classifier on a split",
    "classify": "stream a recording through a classifier: a timeline per second and the clip's label",
}
"""Action name -> one-line help."""


def configure(parser: argparse.ArgumentParser) -> None:
    from .. import configure_actions

    configure_actions(parser, __name__, ACTIONS)


def run(args: argparse.Namespace) -> int:
    from .. import run_action

    return run_action(args, __name__)
