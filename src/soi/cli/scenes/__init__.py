"""``soi scenes ACTION``: acoustic scene classification. Each action is a module here with
``configure(parser)`` and ``run(args)``, as the top-level commands (:mod:`soi.cli`); this module only
dispatches, importing the chosen action's module alone."""

from __future__ import annotations

import argparse
import importlib

ACTIONS: dict[str, str] = {
    "generate": "build the default scene data set offline from real recordings in Debian packages",
    "train": "train a scene classifier (GhostNet, STMC or SOI) with the one training loop",
    "evaluate": "accuracy, per-class accuracy and MMAC/s of a trained classifier on a split",
    "classify": "stream a recording through a classifier: a timeline per second and the clip's label",
}
"""Action name -> one-line help."""


def configure(parser: argparse.ArgumentParser) -> None:
    from .. import _global_options

    sub = parser.add_subparsers(dest="scenes_action", metavar="ACTION", required=True)
    for name, help_text in ACTIONS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _global_options(p, defaults=False)  # --quiet and --debug after the action too
        importlib.import_module(f"{__name__}.{name}").configure(p)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(f"{__name__}.{args.scenes_action}").run(args)
