"""ONNX (or LiteRT) export of a speech checkpoint: the spectral masker's phase graphs
(:func:`soi.deploy.export.export_onnx`, :func:`soi.deploy.litert.export_litert`) with what a runtime needs to wrap them in the STFT: sample
rate, hop, FFT size and the algorithmic latency, recorded in the manifest.

The output folder is checked before the work (a file there, or a folder soi cannot write in, is
refused at once), and the opset asked for is the opset written, or an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...deploy.export import compare_export, export_onnx
from ...files import check_output_folder
from ...progress import progress_bar
from .masker import load_checkpoint

__all__ = ["export_checkpoint", "MIN_OPSET", "max_opset"]

MIN_OPSET = 18
"""The lowest ONNX opset exported as asked: torch's exporter writes 18 and converts down only by a
best effort that leaves some graphs at 18 without an error."""


def max_opset() -> int:
    """The highest ONNX opset the installed ``onnx`` package knows (onnxruntime runs them too)."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


def _written_opsets(out_dir: Path, manifest: dict[str, Any]) -> set[int]:
    import onnx

    return {
        op.version
        for g in manifest["graphs"]
        for op in onnx.load(str(out_dir / g["file"]), load_external_data=False).opset_import
        if op.domain in ("", "ai.onnx")
    }


def export_checkpoint(
    checkpoint: str | Path | None,
    out_dir: str | Path,
    pattern: str | None = None,
    *,
    batch: int = 1,
    frames: int = 1,
    opset: int | None = None,
    fold_bn: bool = True,
    overwrite: bool = False,
    check_steps: int = 64,
    progress: bool = False,
    format: str = "onnx",
    target: str = "mobile",
) -> tuple[dict[str, Any], dict[str, float] | None]:
    """Export the masker of ``checkpoint`` (the shipped one if None) to ``out_dir``.

    Args:
        checkpoint: a checkpoint of :func:`~soi.tasks.speech.masker.save_checkpoint`.
        out_dir: the export directory (see :func:`~soi.deploy.export.export_onnx`).
        pattern: export under this SOI pattern instead of the checkpoint's.
        batch: independent streams per call.
        frames: STFT frames per call.
        opset: ONNX opset, :data:`MIN_OPSET` to :func:`max_opset` (default: torch's, 18).
        fold_bn: fold BatchNorm into the convolutions.
        overwrite: replace a non-empty ``out_dir``.
        check_steps: random chunks on which to compare the exported graphs with PyTorch; 0 skips it.
        progress: show which stage runs (export, comparison) on a terminal.
        format: ``"onnx"`` or ``"litert"`` (``.tflite`` graphs; the ``edge`` extra).
        target: LiteRT only: ``"mobile"`` or ``"micro"`` (TensorFlow Lite Micro's operators).

    Returns ``(manifest, comparison)``: the manifest written, and
    :func:`~soi.deploy.export.compare_export`'s figures (``None`` when ``check_steps`` is 0).
    """
    if batch < 1 or frames < 1:
        raise ValueError(f"export_checkpoint: batch and frames must be >= 1, got {batch} and {frames}")
    if check_steps < 0:
        raise ValueError(f"export_checkpoint: check_steps must be >= 0, got {check_steps}")
    if format not in ("onnx", "litert"):
        raise ValueError(f"export_checkpoint: format must be 'onnx' or 'litert', got {format!r}")
    if format == "onnx" and target != "mobile":
        raise ValueError(f"export_checkpoint: target {target!r} is for LiteRT graphs (format 'litert')")
    if format == "litert" and opset is not None:
        raise ValueError("export_checkpoint: an opset is for ONNX graphs, not LiteRT")
    if opset is not None and not MIN_OPSET <= opset <= max_opset():
        raise ValueError(f"export_checkpoint: opset {opset} is not available; opsets {MIN_OPSET} to {max_opset()} are exported as asked")
    out_dir = check_output_folder(out_dir)
    enhancer, _ = load_checkpoint(checkpoint, pattern=pattern)
    masker = enhancer.masker.eval()
    shape = (batch, masker.config.in_channels, frames, masker.config.freq_bins)
    meta = {
        "pattern": masker.pattern,
        "checkpoint": str(checkpoint) if checkpoint else "default",
        "sample_rate": enhancer.sample_rate,
        "hop": enhancer.hop,
        "n_fft": enhancer.n_fft,
        "frame_ms": 1000.0 * enhancer.hop / enhancer.sample_rate,
        "latency": {
            "algorithmic_samples": enhancer.latency_samples,
            "algorithmic_ms": 1000.0 * enhancer.latency_samples / enhancer.sample_rate,
            "lookahead_frames": masker.delay,
            "note": "STFT window minus hop plus the network's look-ahead; add one step's compute",
        },
        "signal": "x and y are STFT frames (B, 2 [real, imag], n, F) of a sqrt-Hann analysis; "
        "the runtime does the STFT and overlap-add synthesis",
    }
    what = "ONNX" if format == "onnx" else f"LiteRT ({target})"
    bar = progress_bar(2 if check_steps > 0 else 1, desc=f"export {masker.pattern}: {what} graphs", unit="stage", enabled=progress, leave=False)
    if format == "litert":
        from ...deploy.litert import export_litert

        manifest = export_litert(masker, out_dir, shape, target=target, fold_bn=fold_bn, metadata=meta, overwrite=overwrite)
    else:
        manifest = export_onnx(masker, out_dir, shape, fold_bn=fold_bn, opset=opset, metadata=meta, overwrite=overwrite)
    if opset is not None and _written_opsets(out_dir, manifest) != {opset}:
        raise ValueError(f"export_checkpoint: asked for opset {opset}, but the exporter wrote {sorted(_written_opsets(out_dir, manifest))}")
    bar.update(1)
    comparison = None
    if check_steps > 0:
        bar.set_description(f"export {masker.pattern}: {what} vs PyTorch, {check_steps} frames")
        comparison = compare_export(masker, out_dir, steps=check_steps)
        bar.update(1)
    bar.close()
    return manifest, comparison
