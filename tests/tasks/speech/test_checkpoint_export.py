"""soi.tasks.speech.export and ``soi export``: a speech checkpoint's phase graphs with the STFT and
latency facts in the manifest, checked against PyTorch."""

from __future__ import annotations

import json

import pytest
import torch

from soi.cli import main
from soi.models.unet import UNetConfig
from soi.tasks.speech.export import export_checkpoint
from soi.tasks.speech.masker import SpectralMasker, SpeechEnhancer, save_checkpoint

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TINY = {"freq_bins": 33, "in_channels": 2, "out_channels": 2, "channels": [4, 8, 8], "kernel": [2, 5], "freq_stride": 2, "lookahead": 0}


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    enhancer = SpeechEnhancer(SpectralMasker(UNetConfig(**TINY), "STMC"), n_fft=64, hop=16).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, enhancer)
    return path


def test_export_checkpoint_under_another_pattern(tmp_path, checkpoint):
    manifest, cmp = export_checkpoint(checkpoint, tmp_path / "onnx", "S-CC 2", check_steps=40)
    assert manifest == json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["pattern"] == "S-CC 2" and manifest["sample_rate"] == 16000 and manifest["hop"] == 16 and manifest["n_fft"] == 64
    assert manifest["latency"]["algorithmic_samples"] == 64 - 16
    assert len(manifest["cycle"]) == 2
    assert cmp is not None and cmp["max_rel"] <= 1e-4, cmp
    with pytest.raises(ValueError, match="batch and frames"):
        export_checkpoint(checkpoint, tmp_path / "other", batch=0)


def test_cli_export_prints_the_schedule_and_refuses_to_overwrite(tmp_path, checkpoint, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(checkpoint), "--pattern", "S-CC 2", "-o", str(out), "--check-steps", "40"]) == 0
    text = capsys.readouterr().out
    assert "S-CC 2" in text and "max |diff|" in text
    assert main(["export", str(checkpoint), "-o", str(out), "--check-steps", "0"]) == 2  # exists: refused without --force
    assert "--force" in capsys.readouterr().err
