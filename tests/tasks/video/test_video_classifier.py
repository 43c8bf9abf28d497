"""The action classifier: streamed frame by frame it gives the offline posteriors and the
running-average clip label; checkpoints round-trip and refuse a foreign file; soi video train,
evaluate and classify run end to end on a tiny generated set, with one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from soi.cli import main
from soi.tasks.classification import running_average
from soi.tasks.video.classifier import (
    build_classifier,
    load_checkpoint,
    save_checkpoint,
)
from soi.tasks.video.generate import generate_videos
from soi.testing import assert_close, randomise_batchnorm

CLASSES = ("a", "b", "c")


@pytest.mark.parametrize("pattern", ["STMC", "SOI"])
def test_streamed_posteriors_and_clip_label_are_the_offline_ones(pattern):
    torch.manual_seed(0)
    clf = build_classifier(CLASSES, "resnet10-tiny", pattern, 16).double().eval()
    randomise_batchnorm(clf)
    x = torch.randn(2, 3, 7, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        want = clf.posteriors(x)
        state, got = clf.init_state(2, dtype=torch.float64), []
        for t in range(7):
            p, state = clf.step(x[:, :, t : t + 1], state)
            got.append(p)
    assert_close(torch.cat(got, dim=2), want, f"{pattern}: streamed vs offline posteriors")
    assert_close(state.clip_posterior, running_average(want)[:, :, -1], f"{pattern}: clip posterior")


def test_checkpoint_round_trip_and_refusals(tmp_path):
    clf = build_classifier(CLASSES, "resnet10-tiny", "SOI", 16)
    save_checkpoint(tmp_path / "c.pt", clf, {"step": 3})
    back, extra = load_checkpoint(tmp_path / "c.pt")
    assert extra == {"step": 3} and back.classes == CLASSES and back.description == clf.description
    for k, v in clf.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    torch.save({"format": "soi-scenes-v1"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="video"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="size must be an integer >= 33 for movinet-a0, got 32"):
        build_classifier(CLASSES, "movinet-a0", "STMC", 32)


def test_cli_train_evaluate_classify(tmp_path, capsys):
    data = generate_videos(tmp_path / "data", clips=33, size=16, frames=6, progress=False)
    run = tmp_path / "run"
    argv = ["video", "train", "--data", str(data), "--out", str(run), "--size", "16", "--frames", "4", "--steps", "2",
            "--valid-every", "2", "--batch-size", "2", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and (run / "best.pt").is_file()
    assert main(["video", "evaluate", "--data", str(data), "--checkpoint", str(run / "best.pt"), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] == 3 and 0.0 <= report["accuracy"] <= 100.0 and report["gmac_per_s"] > 0
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    for t, img in enumerate(np.load(data / "wave" / "wave_test_0.npy")):
        Image.fromarray(img).save(frames / f"{t:04d}.png")
    assert main(["video", "classify", str(frames), "--checkpoint", str(run / "best.pt"), "--every", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "time  frame  label  probability" and len(lines) == 1 + 2 + 2, lines
    assert lines[3].startswith("clip  ") and "real-time factor" in lines[4]
    assert main(["video", "classify", str(tmp_path / "nothing.mp4"), "--checkpoint", str(run / "best.pt")]) == 2
    err = capsys.readouterr().err
    assert "no such video file or folder of frames" in err and err.count("\n") == 1, err
