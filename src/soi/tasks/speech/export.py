"""ONNX export of a speech checkpoint: the spectral masker's phase graphs
(:func:`soi.deploy.export.export_onnx`) with what a runtime needs to wrap them in the STFT: sample
rate, hop, FFT size and the algorithmic latency, recorded in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...deploy.export import compare_export, export_onnx
from .masker import load_checkpoint

__all__ = ["export_checkpoint"]


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
) -> tuple[dict[str, Any], dict[str, float] | None]:
    """Export the masker of ``checkpoint`` (the shipped one if None) to ``out_dir``.

    Args:
        checkpoint: a checkpoint of :func:`~soi.tasks.speech.masker.save_checkpoint`.
        out_dir: the export directory (see :func:`~soi.deploy.export.export_onnx`).
        pattern: export under this SOI pattern instead of the checkpoint's.
        batch: independent streams per call.
        frames: STFT frames per call.
        opset: ONNX opset (default: torch's).
        fold_bn: fold BatchNorm into the convolutions.
        overwrite: replace a non-empty ``out_dir``.
        check_steps: random chunks on which to compare the exported graphs with PyTorch; 0 skips it.

    Returns ``(manifest, comparison)``: the manifest written, and
    :func:`~soi.deploy.export.compare_export`'s figures (``None`` when ``check_steps`` is 0).
    """
    if batch < 1 or frames < 1:
        raise ValueError(f"export_checkpoint: batch and frames must be >= 1, got {batch} and {frames}")
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
    manifest = export_onnx(masker, out_dir, shape, fold_bn=fold_bn, opset=opset, metadata=meta, overwrite=overwrite)
    comparison = compare_export(masker, out_dir, steps=check_steps) if check_steps > 0 else None
    return manifest, comparison
