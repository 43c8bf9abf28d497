"""``soi video ACTION``: video action recognition. Each action is a module here with
``configure(parser)`` and ``run(args)``, as the top-level commands (:mod:`soi.cli`); this module only
dispatches, importing the chosen action's module alone."""

from __future__ import annotations

import argparse
import importlib

ACTIONS: dict[str, str] = {
    "generate": "render the default procedural action set (11 motion classes, HMDB-51 layout)",
    "train": "train an action classifier (ResNet-10 3D or MoViNet, STMC or SOI) with the one training loop",
    "evaluate": "clip accuracy and per-class accuracy of a trained classifier on a split, and its GMAC/s",
    "classify": "stream a video (or a folder of frames) frame by frame: a label timeline and the clip's label",
}
"""Action name -> one-line help."""


def configure(parser: argparse.ArgumentParser) -> None:
    from .. import _global_options

    sub = parser.add_subparsers(dest="video_action", metavar="ACTION", required=True)
    for name, help_text in ACTIONS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _global_options(p, defaults=False)  # --quiet and --debug after the action too
        importlib.import_module(f"{__name__}.{name}").configure(p)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(f"{__name__}.{args.video_action}").run(args)
