"""``soi cost``: the cost table of a model under SOI patterns (:func:`soi.analysis.cost.cost`): a U-Net
config (``--model unet``, the default), or the scene GhostNet at a width (``--model ghostnet``:
patterns ``baseline``, the windowed recompute of the "same"-padded network over its receptive field,
``STMC`` and ``SOI``; :mod:`soi.models.ghostnet`), or a video model (``--model resnet10``,
``resnet10-small``, ``resnet10-tiny``, ``movinet-a0``, ``movinet-a1``: patterns ``STMC`` and ``SOI``
at ``--resolution``, in GMAC/s; :mod:`soi.models.resnet3d`, :mod:`soi.models.movinet`)."""

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

VIDEO_MODELS = ("resnet10", "resnet10-small", "resnet10-tiny", "movinet-a0", "movinet-a1")
"""The models of the SOI paper's table 7 (appendix E)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="unet",
        choices=("unet", "ghostnet", *VIDEO_MODELS),
        help="the speech U-Net (default), the scene GhostNet, or a video model (docs/video.md)",
    )
    parser.add_argument(
        "--resolution", type=positive_int, default=None,
        help="video models: frame height = width in pixels (default 112 for the ResNets, 172 for the MoViNets)",
    )  # fmt: skip
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
        "--classes", type=positive_int, default=None,
        help="classes of the GhostNet (default 10) or a video model (default 51, HMDB-51)",
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
        help="frames per second (default 62.5 for the U-Net: hop 256 at 16 kHz; 50 for the GhostNet: hop 20 ms; 24 for video)",
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
    if args.resolution is not None and args.model not in VIDEO_MODELS:
        raise ValueError(f"--resolution is a video model's frame size; pass --model {'|'.join(VIDEO_MODELS)}")
    if args.model == "ghostnet":
        reports = _ghostnet_reports(args)
    elif args.model in VIDEO_MODELS:
        reports = _video_reports(args)
    else:
        if args.width is not None:
            raise ValueError(
                "--width is the GhostNet's width multiplier; pass --model ghostnet"
            )
        reports = _unet_reports(args)
    if args.json:
        rows = [r.as_dict() for r in reports]
        if args.model in VIDEO_MODELS:
            for row, r in zip(rows, reports, strict=True):
                row["gmac_per_s"] = round(r.mmac_per_s / 1e3, 3)
        print(json.dumps(rows, indent=2))
    elif args.model in VIDEO_MODELS:
        print(_video_table(reports))
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
        width=args.width or 1.0, num_classes=args.classes or 10, time_strides=False
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


def _video_reports(args: argparse.Namespace) -> list[CostReport]:
    from ..models.movinet import movinet, streaming_movinet
    from ..models.resnet3d import PATTERNS, resnet10, streaming_resnet3d

    if args.width is not None:
        raise ValueError("--width is the GhostNet's width multiplier; the ResNet-10 sizes are resnet10, resnet10-small, resnet10-tiny")
    patterns = args.pattern or list(PATTERNS)
    unknown = [p for p in patterns if p not in PATTERNS]
    if unknown:
        raise ValueError(f"--model {args.model}: patterns are {', '.join(PATTERNS)}; got {', '.join(map(repr, unknown))}")
    classes = args.classes or 51
    family, _, variant = args.model.partition("-")
    if family == "resnet10":
        net, build, r = resnet10(variant or "regular", classes).eval(), streaming_resnet3d, 112
    else:
        net, build, r = movinet(variant, classes).eval(), streaming_movinet, 172
    r = args.resolution or r
    frame_rate = args.frame_rate or 24.0
    return [cost(build(net, p, (r, r)), frame_rate=frame_rate, dense=args.dense) for p in patterns]


def _video_table(reports: list[CostReport]) -> str:
    lines = ["| pattern | GMAC/s | retained % | peak GMAC/s | state KiB |", "|---|---:|---:|---:|---:|"]
    for r in reports:
        lines.append(
            f"| {r.pattern} | {r.mmac_per_s / 1e3:.3f} | {r.retained_percent:.1f} | {r.peak_mmac_per_s / 1e3:.3f} | {r.state_bytes / 1024:.1f} |"
        )
    return "\n".join(lines)


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
