"""The ``soi`` command line: a thin layer over library functions.

Each command lives next to the library code it drives, in a module that provides
``configure(parser)`` (its arguments) and ``run(args) -> int`` (exit status); this file only
dispatches, importing a command's module when that command is used so ``soi --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("soi.tasks.speech.demo", "the main job: stream-enhance an unseen noisy example with the shipped model"),
    "check": ("soi.analysis.check", "stream a small model frame by frame and prove it equals offline"),
    "cost": ("soi.analysis.cost", "cost table (MMAC/s, retained %%, peak, precomputed %%, state) per SOI pattern"),
    "generate": ("soi.tasks.speech.generate", "build the default speech data set offline (espeak-ng/flite speech, real and synthetic noise)"),
    "train": ("soi.train", "train a speech-separation U-Net"),
    "enhance": ("soi.tasks.speech.enhance", "stream a noisy WAV file through a model"),
    "evaluate": ("soi.tasks.speech.evaluate", "SI-SNRi per pattern on a data set"),
    "export": ("soi.deploy.export", "export a model to ONNX, one graph per schedule phase"),
    "bench": ("soi.analysis.bench", "benchmark streaming steps"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soi", description="Streaming inference of convolutional networks (STMC and SOI).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    run = importlib.import_module(COMMANDS[args.command][0]).run
    try:
        return int(run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"soi {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
