"""The ``soi`` command line: a thin layer over library functions.

Each command is a module ``soi.cli.<command>`` with ``configure(parser)`` (its arguments) and
``run(args) -> int`` (turns the arguments into typed values, calls the library, prints, returns the
exit status). This module only dispatches; a command's module is imported only when that command
is used, so ``soi --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: dict[str, str] = {
    "demo": "the main job: stream-enhance an unseen noisy example with the shipped model",
    "check": "stream a small model frame by frame and prove it equals offline",
    "cost": "cost table (MMAC/s, retained %, peak, precomputed %, state) per SOI pattern",
    "generate": "build the default speech data set offline (espeak-ng/flite speech, real and synthetic noise)",
    "train": "train a speech-separation U-Net",
    "enhance": "stream a noisy WAV file through a model",
    "evaluate": "SI-SNRi per pattern on a data set",
    "export": "export a model to ONNX, one graph per schedule phase",
    "bench": "benchmark streaming steps",
}
"""Command name -> one-line help (the list in ``soi --help``, the description in ``soi COMMAND --help``)."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``soi`` parser; only ``command``'s own arguments are added (its module imported)."""
    parser = argparse.ArgumentParser(prog="soi", description="Streaming inference of convolutional networks (STMC and SOI).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        # argparse %-formats help (not descriptions): a literal % is %% there
        p = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        if name == command:
            importlib.import_module(f"{__name__}.{name}").configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``soi`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status: 0 on success,
    2 for a usage error, an unknown command or an error the library reports as invalid input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The top-level parser has no options but -h, so the first other word names the command.
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        print(f"soi: error: unknown command {command!r} (choose from {', '.join(COMMANDS)}; see soi --help)", file=sys.stderr)
        return 2
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has already printed
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    run = importlib.import_module(f"{__name__}.{args.command}").run
    try:
        return run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"soi {args.command}: error: {err}", file=sys.stderr)
        return 2
