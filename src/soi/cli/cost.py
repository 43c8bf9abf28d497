"""``soi cost``: the cost table of a U-Net config under SOI patterns (:func:`soi.analysis.cost.cost`)."""

from __future__ import annotations

import argparse
import json

from ..analysis.cost import cost, format_table
from ..models import UNet, UNetConfig, parse_pattern
from .options import pattern, positive_float

DEFAULT_PATTERNS = (
    "STMC", "Predictive 1", "Predictive 2",
    "S-CC 2", "S-CC 5", "S-CC 7",
    "2xS-CC 1 3", "2xS-CC 1 6", "2xS-CC 2 5", "2xS-CC 3 6", "2xS-CC 4 6", "2xS-CC 5 7", "2xS-CC 6 7",
    "SS-CC 2", "SS-CC 5", "SS-CC 7",
    "SS-CC 1 3", "SS-CC 1 6", "SS-CC 2 5", "SS-CC 3 6", "SS-CC 4 6", "SS-CC 5 6", "SS-CC 6 7",
)  # fmt: skip
"""The rows of the SOI paper's tables 1 and 2 (the default of ``soi cost``)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default="paper",
        help="U-Net config: a JSON file, or a shipped preset ('paper', 'medium', 'small'); default: paper",
    )  # fmt: skip
    parser.add_argument(
        "--pattern", action="append", type=pattern, default=None, metavar="PATTERN",
        help="SOI pattern, repeatable (e.g. 'STMC', 'S-CC 2', '2xS-CC 1 3', 'SS-CC 2 5'); "
        "default: the rows of the SOI paper's tables 1 and 2",
    )  # fmt: skip
    parser.add_argument("--upsampler", default="duplicate", help="duplicate (default), transposed, nearest, linear, cubic")
    parser.add_argument("--strided-mode", default="soi", choices=("soi", "stmc"), help="SOI, or STMC's exact strided mode")
    parser.add_argument("--frame-rate", type=positive_float, default=62.5, help="frames per second (default 62.5: hop 256 at 16 kHz)")
    parser.add_argument("--dense", action="store_true", help="also count products with padding and inserted zeros")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a Markdown table")


def run(args: argparse.Namespace) -> int:
    config = UNetConfig.from_json(args.config)
    # The paper's rows need 7 levels; a shallower config gets the rows it has levels for.
    patterns = args.pattern or [p for p in DEFAULT_PATTERNS if _fits(p, config.depth)]
    models = [UNet(config, p, upsampler=args.upsampler, strided_mode=args.strided_mode) for p in patterns]
    reports = [cost(model, frame_rate=args.frame_rate, dense=args.dense) for model in models]
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        print(format_table(reports))
    return 0


def _fits(pattern: str, depth: int) -> bool:
    try:
        parse_pattern(pattern, depth)
    except ValueError:
        return False
    return True
