"""``soi export``: export a speech checkpoint to ONNX or LiteRT, one graph per schedule phase
(:func:`soi.tasks.speech.export.export_checkpoint`)."""

from __future__ import annotations

import argparse

from ..tasks.speech.export import MIN_OPSET, export_checkpoint, max_opset
from .options import count, int_range, pattern, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="speech checkpoint (soi train); 'default' for the shipped one")
    parser.add_argument("--pattern", type=pattern, default=None, help="SOI pattern to export (default: the checkpoint's)")
    parser.add_argument("-o", "--output", required=True, help="output folder (made if absent)")
    parser.add_argument("--format", choices=("onnx", "litert"), default="onnx", help="graph format (litert: .tflite, needs the edge extra)")
    parser.add_argument(
        "--target", choices=("mobile", "micro"), default=None,
        help="litert only: mobile (LiteRT builtins, default) or micro (TensorFlow Lite Micro's operators)",
    )  # fmt: skip
    parser.add_argument("--batch", type=positive_int, default=1, help="independent streams per call (default 1)")
    parser.add_argument("--frames", type=positive_int, default=1, help="frames per call (default 1: one STFT hop)")
    parser.add_argument(
        "--opset", type=int_range(MIN_OPSET, max_opset), default=None,
        help=f"ONNX opset, from {MIN_OPSET} to the highest the installed onnx knows (default: torch's, {MIN_OPSET})",
    )  # fmt: skip
    parser.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm as separate nodes")
    parser.add_argument("--check-steps", type=count, default=64, help="random frames to compare against PyTorch (0: skip)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty output folder (files of other names stay)")


def run(args: argparse.Namespace) -> int:
    manifest, cmp = export_checkpoint(
        None if args.checkpoint == "default" else args.checkpoint,
        args.output,
        args.pattern,
        batch=args.batch,
        frames=args.frames,
        opset=args.opset,
        fold_bn=not args.no_fold_bn,
        overwrite=args.force,
        check_steps=args.check_steps,
        progress=not args.quiet,
        format=args.format,
        target=args.target or "mobile",
    )
    print(
        f"soi export: {manifest['pattern']}: {len(manifest['graphs'])} graph(s), schedule warm-up {manifest['warmup']} then cycle "
        f"{manifest['cycle']}, {len(manifest['state'])} state tensors ({manifest['state_bytes'] / 1024:.1f} KiB) -> {args.output}"
    )
    if cmp is not None:
        print(
            f"soi export: {'onnxruntime' if args.format == 'onnx' else 'LiteRT'} vs PyTorch over {args.check_steps} random frames: max |diff| = {cmp['max_abs']:.2e} "
            f"({cmp['max_rel']:.1e} of the largest output, {cmp['max_ref']:.2f})"
        )
        if not cmp["max_rel"] <= 1e-4:  # float32 rounding, relative to the output's scale
            print("soi export: warning: the exported graphs differ from PyTorch by more than 1e-4 (relative)")
            return 1
    return 0
