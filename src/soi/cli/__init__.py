"""The ``soi`` command line: a thin layer over library functions.

Each command is a module ``soi.cli.<command>`` with ``configure(parser)`` (its arguments) and
``run(args) -> int`` (turns the arguments into typed values, calls the library, prints, returns the
exit status). This module only dispatches; a command's module is imported only when that command
is used, so ``soi --help`` stays fast.

Every mistake a user can make ends the same way: one line on stderr, ``soi <command>: error:
<what was expected, what came>``, and exit status 2 (usage errors, bad option values, and every
``ValueError``, ``OSError`` or ``ImportError`` a command raises: the library's own error types
derive from these). ``--debug`` adds the traceback. Warnings are one line each,
``soi <command>: warning: ...``. An interrupt exits with 130, a closed stdout pipe quietly with 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from typing import NoReturn

__all__ = ["COMMANDS", "USER_ERRORS", "build_parser", "main"]

COMMANDS: dict[str, str] = {
    "demo": "the main job: stream-enhance an unseen noisy example with the shipped model",
    "check": "stream a small model frame by frame and prove it equals offline",
    "cost": "cost table (MMAC/s, retained %, peak, precomputed %, state) per SOI pattern",
    "generate": "build the default speech data set offline (real and espeak-ng/flite voices, noise, music and rooms from Debian packages)",
    "train": "train a speech-separation U-Net",
    "enhance": "stream a noisy WAV file through a model",
    "evaluate": "SI-SNRi per pattern on a data set",
    "export": "export a model to ONNX, one graph per schedule phase",
    "bench": "benchmark streaming steps",
    "scenes": "acoustic scene classification: soi scenes generate | train | evaluate | classify",
    "video": "video action recognition: soi video generate | train | evaluate | classify",
}
"""Command name -> one-line help (the list in ``soi --help``, the description in ``soi COMMAND --help``)."""


USER_ERRORS = (ValueError, OSError, ImportError)
"""What a user can cause (bad values, files, a missing optional package): one line, exit status 2.
Anything else is a bug in soi and keeps its traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (the usage block would push the message off a small terminal)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _global_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    # Accepted before and after the command; on a command's parser they default to SUPPRESS so
    # that a global one given before the command is not reset.
    default = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error", **default)
    parser.add_argument("--quiet", action="store_true", help="no progress bars (they are drawn only on a terminal)", **default)


def configure_actions(parser: argparse.ArgumentParser, package: str, actions: dict[str, str]) -> None:
    """Make ``parser`` a command of actions (``soi scenes ACTION``): each action is a module
    ``package.<action>`` with ``configure(parser)`` and ``run(args)``, as the commands here, and
    ``actions`` maps its name to its one-line help. All actions' arguments are added (their
    modules imported); :func:`run_action` runs the chosen one."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in actions.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _global_options(p, defaults=False)  # --quiet and --debug after the action too
        importlib.import_module(f"{package}.{name}").configure(p)


def run_action(args: argparse.Namespace, package: str) -> int:
    """Run the action of a :func:`configure_actions` command that ``args`` chose."""
    return importlib.import_module(f"{package}.{args.action}").run(args)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``soi`` parser; only ``command``'s own arguments are added (its module imported)."""
    parser = _Parser(prog="soi", description="Streaming inference of convolutional networks (STMC and SOI).")
    _global_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        # argparse %-formats help (not descriptions): a literal % is %% there
        p = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        if name == command:
            _global_options(p, defaults=False)
            importlib.import_module(f"{__name__}.{name}").configure(p)
    return parser


def _message(err: BaseException) -> str:
    """One line: an ``OSError`` as ``file: reason`` (without ``[Errno n]``), others as their text."""
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename is not None else err.strerror
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run ``soi`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status: 0 on success,
    1 for a check that failed, 2 for a usage error, an unknown command or an error the library
    reports as invalid input (one line on stderr; the traceback with ``--debug``), 130 when
    interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The top-level options take no values, so the first other word names the command.
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        print(f"soi: error: unknown command {command!r} (choose from {', '.join(COMMANDS)}; see soi --help)", file=sys.stderr)
        return 2
    parser = build_parser(command)
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has already printed
        return int(exit_.code or 0)
    except USER_ERRORS as err:  # an option check that needs an optional package (soi export --opset)
        print(f"soi {command}: error: {_message(err)}", file=sys.stderr)
        return 2
    if unknown:  # reported here so that the message names the command whose help lists the options
        prog = f"soi {args.command}" if args.command else "soi"
        print(f"{prog}: error: unrecognized arguments: {' '.join(unknown)} (see {prog} --help)", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 2
    prefix = f"soi {args.command}"

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{prefix}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    run = importlib.import_module(f"{__name__}.{args.command}").run
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return run(args)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout left (`soi cost | head`): nothing to report to anyone.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except USER_ERRORS as err:
        if args.debug:
            traceback.print_exc()
        print(f"{prefix}: error: {_message(err)}", file=sys.stderr)
        return 2
