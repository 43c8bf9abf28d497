"""``soi cost``: the cost table of a model under SOI patterns (:func:`soi.analysis.cost.cost`): a U-Net
config (``--model unet``, the default), or the scene GhostNet at a width (``--model ghostnet``:
patterns ``baseline``, the windowed recompute of the "same"-padded network over its receptive field,
``STMC`` and ``SOI``; :mod:`soi.models.ghostnet`)."""

from __future__ import annotations

import argparse
import json

from ..analysis.cost import CostReport, cost, format_table, windowed_cost
from ..models import UNet, UNetConfig, parse_pattern
from .options import bounded_float, pattern, positive_float, positive_int

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
        "--model",
        default="unet",
        choices=("unet", "ghostnet"),
        help="the speech U-Net (default) or the scene GhostNet",
    )
    parser.add_argument(
        "--width",
        type=bounded_float(4.0),
        default=None,
        help="GhostNet width multiplier (default 1.0; sizes 0.2 ... 1.3)",
    )
    parser.add_argument(
        "--mels",
        type=positive_int,
        default=64,
        help="GhostNet mel bands per frame (default 64)",
    )
    parser.add_argument(
        "--classes", type=positive_int, default=10, help="GhostNet classes (default 10)"
    )
    parser.add_argument(
        "--config", default="paper",
        help="U-Net config: a JSON file, or a shipped preset ('paper', 'medium', 'small'); default: paper",
    )  # fmt: skip
    parser.add_argument(
        "--pattern", action="append", type=pattern, default=None, metavar="PATTERN",
        help="SOI pattern, repeatable (e.g. 'STMC', 'S-CC 2', '2xS-CC 1 3', 'SS-CC 2 5'); "
        "default: the rows of the SOI paper's tables 1 and 2",
    )  # fmt: skip
    parser.add_argument(
        "--upsampler",
        default="duplicate",
        help="duplicate (default), transposed, nearest, linear, cubic",
    )
    parser.add_argument(
        "--strided-mode",
        default="soi",
        choices=("soi", "stmc"),
        help="SOI, or STMC's exact strided mode",
    )
    parser.add_argument(
        "--frame-rate", type=positive_float, default=None,
        help="frames per second (default 62.5 for the U-Net: hop 256 at 16 kHz; 50 for the GhostNet: hop 20 ms)",
    )  # fmt: skip
    parser.add_argument(
        "--dense",
        action="store_true",
        help="also count products with padding and inserted zeros",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list instead of a Markdown table",
    )


def run(args: argparse.Namespace) -> int:
    if args.model == "ghostnet":
        reports = _ghostnet_reports(args)
    else:
        if args.width is not None:
            raise ValueError(
                "--width is the GhostNet's width multiplier; pass --model ghostnet"
            )
        reports = _unet_reports(args)
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        print(format_table(reports))
    return 0


def _ghostnet_reports(args: argparse.Namespace) -> list[CostReport]:
    from ..models.ghostnet import PATTERNS, ghostnet, streaming_ghostnet

    patterns = args.pattern or list(PATTERNS)
    unknown = [p for p in patterns if p not in PATTERNS]
    if unknown:
        raise ValueError(
            f"--model ghostnet: patterns are {', '.join(PATTERNS)}; got {', '.join(map(repr, unknown))}"
        )
    frame_rate = args.frame_rate or 50.0
    net = ghostnet(
        width=args.width or 1.0, num_classes=args.classes, time_strides=False
    ).eval()
    stmc = cost(
        streaming_ghostnet(net, "STMC", (1, args.mels)),
        frame_rate=frame_rate,
        dense=args.dense,
    )
    reports = []
    for p in patterns:
        if p == "baseline":
            # The network as Han et al. define it looks ahead ("same" padding): online, it re-runs on
            # the last receptive field of frames at every frame.
            window = (
                1,
                streaming_ghostnet(net, "STMC", (1, args.mels)).receptive_field,
                args.mels,
            )
            reports.append(
                windowed_cost(
                    net, window, frame_rate, "baseline", stmc.macs_per_frame, args.dense
                )
            )
        else:
            reports.append(
                stmc
                if p == "STMC"
                else cost(
                    streaming_ghostnet(net, p, (1, args.mels)),
                    frame_rate=frame_rate,
                    dense=args.dense,
                )
            )
    return reports


def _unet_reports(args: argparse.Namespace) -> list[CostReport]:
    config = UNetConfig.from_json(args.config)
    # The paper's rows need 7 levels; a shallower config gets the rows it has levels for.
    patterns = args.pattern or [p for p in DEFAULT_PATTERNS if _fits(p, config.depth)]
    models = [
        UNet(config, p, upsampler=args.upsampler, strided_mode=args.strided_mode)
        for p in patterns
    ]
    return [
        cost(model, frame_rate=args.frame_rate or 62.5, dense=args.dense)
        for model in models
    ]


def _fits(pattern: str, depth: int) -> bool:
    try:
        parse_pattern(pattern, depth)
    except ValueError:
        return False
    return True
