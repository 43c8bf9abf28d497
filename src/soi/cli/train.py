"""``soi train``: train a speech-separation U-Net (:func:`soi.train.train`)."""

from __future__ import annotations

import argparse
import json

from ..tasks.speech.demo import ensure_default_data
from ..tasks.speech.masker import MASK_BOUNDS
from ..tasks.speech.metrics import LOSSES
from ..train import TrainConfig, train
from .options import add_loop_options, config_overrides, pattern, positive_float


def configure(parser: argparse.ArgumentParser) -> None:
    # No defaults here: a flag given overrides the --config file, a flag not given leaves it.
    parser.add_argument("--config", help="JSON file of TrainConfig fields; flags override it")
    parser.add_argument("--data", help="data set root with train/ and valid/ (default: $SOI_DATA, else ~/.cache/soi/default-data, built if absent)")
    parser.add_argument("--out", dest="out_dir", help="output folder for checkpoints and logs")
    parser.add_argument("--model-config", help="U-Net JSON (default: the shipped small U-Net)")
    parser.add_argument("--pattern", type=pattern, help='SOI pattern, e.g. "STMC", "S-CC 2", "SS-CC 5"')
    parser.add_argument("--upsampler", help="duplicate | transposed | nearest | linear | cubic")
    parser.add_argument("--mask-bound", choices=MASK_BOUNDS, help="mask magnitude limit (default tanh: never louder than the input)")
    parser.add_argument("--loss", choices=LOSSES, help="training loss (default si-snr-level: SI-SNR with the output's level pinned to the speech's; si-snr is blind to the level; compressed-spectral over-suppresses)")
    parser.add_argument("--init-from", help="start from this checkpoint's weights (fine-tune, e.g. an STMC model into an SOI pattern)")
    parser.add_argument(
        "--remix", type=float, help="share of training crops remixed: this clip's speech with another's noise at a new SNR (default 0)"
    )
    parser.add_argument("--segment-seconds", type=positive_float)
    add_loop_options(parser)


def run(args: argparse.Namespace) -> int:
    overrides = config_overrides(args, TrainConfig)
    if args.config:
        cfg = TrainConfig.from_json(args.config, **overrides)
    else:
        if "data" not in overrides:
            overrides["data"] = str(ensure_default_data(progress=not args.quiet))
        cfg = TrainConfig(**overrides)
    summary = train(cfg, force=args.force)
    if "best" in summary:  # only the process of rank 0 has the summary to print
        print(json.dumps(summary, indent=2))
    return 0
