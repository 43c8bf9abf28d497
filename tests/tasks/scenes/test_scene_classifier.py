"""The streaming scene classifier: streamed frame posteriors == offline (float64, STMC and SOI,
chunks of 1, 3 and random hops), the clip label is the causal running average of the posteriors,
checkpoints round-trip, and ``soi scenes classify`` prints its timeline (one line per second, the
top classes, then the clip) or one line and exit status 2 for a missing file, an extension that
is not audio and a file too short."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from soi.cli import main
from soi.tasks.scenes.classifier import (
    build_classifier,
    load_checkpoint,
    running_average,
    save_checkpoint,
)
from soi.tasks.scenes.classify import HEADER, classify_file
from soi.tasks.scenes.frontend import LogMelConfig
from soi.tasks.speech.data import wav_header
from soi.testing import randomise_batchnorm, split_points

CLASSES = ("beach", "city", "forest")
FRONT = LogMelConfig(n_mels=16)
RATE = FRONT.sample_rate


def _classifier(pattern: str, dtype=torch.float64):
    torch.manual_seed(0)
    c = build_classifier(CLASSES, width=0.1, pattern=pattern, frontend=FRONT)
    randomise_batchnorm(c)
    return c.to(dtype).eval()


@pytest.fixture(scope="module")
def classifiers():
    return {p: _classifier(p) for p in ("STMC", "SOI")}


@pytest.mark.parametrize("pattern", ["STMC", "SOI"])
def test_streamed_posteriors_equal_offline_in_float64(classifiers, pattern):
    c = classifiers[pattern]
    hop, frames = c.hop, 17
    wave = torch.randn(2, frames * hop, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        offline = c.posteriors(wave)
        assert offline.shape == (2, len(CLASSES), frames), "one posterior per frame"
        for chunk in (1, 3, "random"):
            state, parts = c.init_state(2, dtype=torch.float64), []
            start = 0
            for n in split_points(frames, chunk, seed=3):
                p, state = c.step(wave[:, start * hop : (start + n) * hop], state)
                assert p.shape[2] == n, f"{n} frames in, {p.shape[2]} posteriors out"
                parts.append(p)
                start += n
            err = (torch.cat(parts, dim=2) - offline).abs().max().item()
            assert err <= 1e-10, f"{pattern} chunk {chunk}: streamed posteriors differ from offline by {err:.2e}"
            # the clip posterior the stream keeps is the running average of the offline posteriors
            clip_err = (state.clip_posterior - running_average(offline)[:, :, -1]).abs().max().item()
            assert clip_err <= 1e-10, f"{pattern} chunk {chunk}: the streamed clip posterior differs by {clip_err:.2e}"
            assert state.frames == frames


def test_the_baseline_answers_once_per_input_and_does_not_stream():
    torch.manual_seed(0)
    c = build_classifier(CLASSES, width=0.1, pattern="baseline", frontend=FRONT).double().eval()
    wave = torch.randn(2, 17 * c.hop, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        logits = c(wave)
        want = c.network.net(c.frontend(wave))  # the torch GhostNet ("same" padding) on the whole input
    assert logits.shape == (2, len(CLASSES), 1), f"one logit vector per input, got {tuple(logits.shape)}"
    assert torch.equal(logits[:, :, 0], want), "the baseline is the torch model as defined"
    assert not c.streams
    with pytest.raises(TypeError, match="baseline pattern looks ahead"):
        c.init_state(1)


def test_running_average_is_the_causal_mean_of_the_posteriors():
    p = torch.rand(2, 3, 7, dtype=torch.float64).softmax(dim=1)
    q = running_average(p)
    for t in range(7):
        assert torch.allclose(q[:, :, t], p[:, :, : t + 1].mean(dim=2), atol=1e-12), f"frame {t}"
    assert torch.allclose(q.sum(dim=1), torch.ones(2, 7, dtype=torch.float64)), "still a distribution"
    # causal: more frames never change the average so far
    assert torch.equal(running_average(p[:, :, :4]), q[:, :, :4])
    with pytest.raises(ValueError, match=r"expected posteriors \(B, C, T\)"):
        running_average(p[0])


def test_checkpoint_round_trip(tmp_path, saved, loaded):
    original, _ = saved
    c, extra = loaded
    wave = torch.randn(1, 9 * c.hop)
    assert torch.equal(c(wave), original(wave)), "the loaded model computes what the saved one did"
    assert c.classes == CLASSES and c.pattern == "STMC" and c.frontend.config == FRONT and not c.training
    assert extra == {"note": "x"}
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable soi checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "soi-speech-v1"}, tmp_path / "speech.pt")
    with pytest.raises(ValueError, match="not a soi scene checkpoint"):
        load_checkpoint(tmp_path / "speech.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")


# -- soi scenes classify ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A float32 STMC classifier (a conversion costs seconds: the tests share one) and its checkpoint."""
    path = tmp_path_factory.mktemp("scenes-ckpt") / "tiny.pt"
    c = _classifier("STMC", torch.float32)
    save_checkpoint(path, c, {"note": "x"})
    return c, path


@pytest.fixture(scope="module")
def checkpoint(saved):
    return saved[1]


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load_checkpoint(checkpoint)


def _tone(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    return (0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def test_classify_prints_a_line_per_second_then_the_clip(tmp_path, checkpoint, loaded, capsys):
    audio = _tone(2.5)
    sf.write(tmp_path / "clip.wav", audio, RATE, subtype="FLOAT")
    assert main(["scenes", "classify", str(tmp_path / "clip.wav"), "--checkpoint", str(checkpoint), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == HEADER
    pair = r"(beach|city|forest) \d\.\d{3}"
    for i, t in enumerate(("1.00", "2.00", "2.50")):
        assert re.fullmatch(rf"\s*{re.escape(t)}  {pair}  {pair}", lines[1 + i]), lines[1 + i]
    assert re.fullmatch(r"clip  (beach|city|forest)  \d\.\d{3}  \(running average of 125 frame posteriors\)", lines[4]), lines[4]
    # each line is the mean of its second's offline posteriors, the clip the average of them all
    c, _ = loaded
    with torch.no_grad():
        p = c.posteriors(torch.from_numpy(audio)[None])[0]
    first = p[:, :50].mean(dim=1)
    top = first.topk(2)
    assert lines[1].split()[1:] == [CLASSES[int(top.indices[0])], f"{float(top.values[0]):.3f}", CLASSES[int(top.indices[1])], f"{float(top.values[1]):.3f}"]
    clip = p.mean(dim=1)
    assert lines[4].split()[1:3] == [CLASSES[int(clip.argmax())], f"{float(clip.max()):.3f}"]


def test_classify_standard_input_equals_the_file(tmp_path, loaded):
    audio = _tone(1.3, seed=2)
    sf.write(tmp_path / "clip.wav", audio, RATE, subtype="PCM_16")
    c, _ = loaded
    from_file = classify_file(tmp_path / "clip.wav", c)
    pcm, _ = sf.read(tmp_path / "clip.wav", dtype="int16")
    wav = classify_file("-", c, stdin=io.BytesIO(wav_header(RATE, 1, "PCM_16", None) + pcm.astype("<i2").tobytes()))
    raw = classify_file("-", c, raw_format="s16le", stdin=io.BytesIO(pcm.astype("<i2").tobytes()))
    for piped in (wav, raw):
        assert piped.timeline == from_file.timeline and piped.label == from_file.label and piped.frames == from_file.frames


@pytest.mark.parametrize(
    "name,make,match",
    [
        pytest.param("missing.wav", None, "no such file", id="missing"),
        pytest.param("clip.txt", lambda p: p.write_text("hello"), "expected an audio file", id="extension"),
        pytest.param("short.wav", lambda p: sf.write(p, np.zeros(300, np.float32), RATE), "too short", id="too-short"),
    ],
)
def test_classify_bad_input_is_one_line_and_status_2(tmp_path, checkpoint, capsys, name, make, match):
    if make is not None:
        make(tmp_path / name)
    assert main(["scenes", "classify", str(tmp_path / name), "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("soi scenes: error:") and re.search(match, err), err
