"""Speech separation end to end on tiny models and synthetic data: streaming == offline, training
lowers the loss, DDP runs, and `soi enhance` handles bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soi.cli import main as cli_main
from soi.models.unet import UNetConfig
from soi.tasks.speech.masker import SpectralMasker, SpeechEnhancer, load_checkpoint, save_checkpoint
from soi.train import TrainConfig, train

RATE = 16000
TINY = {"freq_bins": 65, "in_channels": 2, "out_channels": 2, "channels": [4, 4, 8], "kernel": [3, 5], "freq_stride": 2, "lookahead": 0}


def _tiny_enhancer(pattern: str = "STMC", lookahead: int = 0, dtype=torch.float64) -> SpeechEnhancer:
    torch.manual_seed(0)
    config = UNetConfig(**{**TINY, "lookahead": lookahead})
    enhancer = SpeechEnhancer(SpectralMasker(config, pattern), n_fft=128, hop=32).to(dtype).eval()
    return enhancer


def _speechlike(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    f0 = rng.uniform(100, 250)
    envelope = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    voiced = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6))
    return (0.3 * envelope * voiced).astype(np.float32)


def _write_pairs(root: Path, split: str, count: int, seconds: float = 0.5, seed: int = 0) -> None:
    for sub in ("noisy", "clean"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    n = int(seconds * RATE)
    for i in range(count):
        clean = _speechlike(n, seed + i)
        noise = np.random.default_rng(1000 + seed + i).normal(0, 0.1, n).astype(np.float32)
        sf.write(root / split / "clean" / f"{i:03d}.wav", clean, RATE)
        sf.write(root / split / "noisy" / f"{i:03d}.wav", clean + noise, RATE)


@pytest.mark.parametrize("pattern,lookahead", [("STMC", 0), ("S-CC 2", 0), ("SS-CC 2", 0), ("STMC", 1)], ids=str)
def test_streaming_enhancement_equals_offline(pattern, lookahead):
    enhancer = _tiny_enhancer(pattern, lookahead)
    wave = torch.randn(2, 3001, dtype=torch.float64) * 0.1
    offline = enhancer(wave)
    assert offline.shape == wave.shape, "the output has the input's length"
    for chunk in (1, 3):
        streamed = enhancer.enhance_streaming(wave, chunk_frames=chunk)
        err = (streamed - offline).abs().max().item()
        assert err <= 1e-10, f"{pattern} lookahead={lookahead} chunk={chunk}: streaming differs from offline by {err:.2e}"


def test_power_law_compression_is_the_magnitude_law():
    """|X|^alpha * X/|X| per bin (computed through exp/log for speed): checked against the
    formula in float64, including all-zero bins (which stay zero)."""
    from soi.tasks.speech.masker import PowerLawCompression

    x = torch.randn(2, 2, 3, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[:, :, :, 5] = 0
    mag = x.square().sum(1, keepdim=True).add(1e-8).sqrt()
    want = x * mag.pow(0.3 - 1)
    got = PowerLawCompression(0.3)(x)
    assert (got - want).abs().max() < 1e-12, f"differs by {(got - want).abs().max():.2e}"
    assert (got[:, :, :, 5] == 0).all()


def test_identity_mask_is_aligned_sample_for_sample():
    enhancer = _tiny_enhancer()
    # A mask network whose last layer outputs exactly (1, 0) makes the model an identity.
    last = [m for m in enhancer.masker.unet.modules() if getattr(m, "out_channels", None) == 2][-1]
    with torch.no_grad():
        for p in enhancer.parameters():
            p.zero_()
        last.bias.copy_(torch.tensor([1.0, 0.0], dtype=last.bias.dtype))
    wave = torch.randn(1, 2000, dtype=torch.float64)
    assert (enhancer(wave) - wave).abs().max() <= 1e-10


def test_checkpoint_round_trip(tmp_path):
    enhancer = _tiny_enhancer(dtype=torch.float32)
    path = tmp_path / "model.pt"
    save_checkpoint(path, enhancer, {"note": "x"})
    loaded, meta = load_checkpoint(path)
    wave = torch.randn(1, 1000)
    assert torch.equal(loaded(wave), enhancer(wave))
    assert meta["note"] == "x" and meta["pattern"] == "STMC"
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable soi checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny-data")
    _write_pairs(root, "train", 8, seed=0)
    _write_pairs(root, "valid", 2, seed=100)
    (root / "model.json").write_text(json.dumps(TINY))
    return root


def _losses(log: Path) -> list[float]:
    rows = log.read_text().splitlines()[1:]
    return [float(r.split(",")[2]) for r in rows]


def test_training_lowers_the_loss_and_resumes(tiny_data, tmp_path):
    cfg = TrainConfig(
        data=str(tiny_data), out_dir=str(tmp_path / "run"), model_config=str(tiny_data / "model.json"),
        batch_size=4, segment_seconds=0.25, lr=3e-3, max_steps=40, valid_every=10, seed=0, progress=False,
    )  # fmt: skip
    torch.manual_seed(0)
    summary = train(cfg)
    losses = _losses(tmp_path / "run" / "log.csv")
    assert summary["steps"] == 40 and len(losses) == 4
    assert losses[-1] < losses[0] - 0.5, f"loss did not fall: {losses}"
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()
    # Resume continues from step 40 instead of starting again.
    summary = train(TrainConfig(**{**cfg.__dict__, "max_steps": 50}))
    assert summary["steps"] == 50
    assert len(_losses(tmp_path / "run" / "log.csv")) == 5


def test_ddp_two_processes(tiny_data, tmp_path):
    if shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists():
        pytest.skip("torchrun not installed")
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29577",
        "-m", "soi", "train", "--data", str(tiny_data), "--out", str(out), "--model-config", str(tiny_data / "model.json"),
        "--batch-size", "2", "--segment-seconds", "0.25", "--steps", "6", "--valid-every", "3", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "last.pt").is_file()
    assert len(_losses(out / "log.csv")) == 2


# -- soi enhance -----------------------------------------------------------------------------------


@pytest.fixture()
def tiny_checkpoint(tmp_path) -> Path:
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, _tiny_enhancer(dtype=torch.float32))
    return path


def _enhance(*args: str) -> int:
    return cli_main(["enhance", *args])


def test_enhance_streaming_and_offline_give_the_same_file(tmp_path, tiny_checkpoint, capsys):
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, _speechlike(RATE // 4, 3), RATE)
    assert _enhance(str(noisy), "-o", str(tmp_path / "s.wav"), "--checkpoint", str(tiny_checkpoint)) == 0
    printed = capsys.readouterr().out
    assert "real-time factor" in printed and "p99" in printed
    assert _enhance(str(noisy), "-o", str(tmp_path / "o.wav"), "--checkpoint", str(tiny_checkpoint), "--offline") == 0
    s, rate = sf.read(tmp_path / "s.wav", dtype="float32")
    o, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    assert rate == RATE and s.shape == (RATE // 4,), "same length as the input"
    assert np.abs(s - o).max() <= 1e-4  # float32 model, float32 file


def test_enhance_keeps_the_rate_and_channels_with_notes(tmp_path, tiny_checkpoint, capsys):
    stereo = np.stack([_speechlike(22050, 1)[:22050], _speechlike(22050, 2)[:22050]], axis=1)
    src = tmp_path / "stereo22.wav"
    sf.write(src, stereo, 22050)
    assert _enhance(str(src), "-o", str(tmp_path / "out.wav"), "--checkpoint", str(tiny_checkpoint)) == 0
    notes = capsys.readouterr().out
    assert "note:" in notes and "22050" in notes and "2 channels enhanced as 2 streams" in notes, notes
    out, rate = sf.read(tmp_path / "out.wav")
    assert rate == 22050 and out.shape == stereo.shape, (rate, out.shape)


@pytest.mark.parametrize(
    "make,match",
    [
        pytest.param(lambda p: sf.write(p, np.zeros(100, np.float32), RATE), "too short", id="too-short"),
        pytest.param(lambda p: sf.write(p, np.zeros(0, np.float32), RATE), "empty|too short", id="empty"),
        pytest.param(lambda p: p.write_bytes(b"RIFF\x00\x00garbage"), "corrupt|not|read", id="corrupt"),
        pytest.param(lambda p: sf.write(p, np.array([0.1, np.nan] * 2000, np.float32), RATE, subtype="FLOAT"), "NaN|finite", id="non-finite"),
    ],
)
def test_enhance_bad_input(tmp_path, tiny_checkpoint, capsys, make, match):
    src = tmp_path / "bad.wav"
    make(src)
    assert _enhance(str(src), "-o", str(tmp_path / "out.wav"), "--checkpoint", str(tiny_checkpoint)) == 2
    err = capsys.readouterr().err
    assert __import__("re").search(match, err, flags=__import__("re").I), err
    assert not (tmp_path / "out.wav").exists()


def test_enhance_never_overwrites_without_force(tmp_path, tiny_checkpoint, capsys):
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, _speechlike(RATE // 4, 3), RATE)
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    assert _enhance(str(noisy), "-o", str(out), "--checkpoint", str(tiny_checkpoint)) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert _enhance(str(noisy), "-o", str(noisy), "--checkpoint", str(tiny_checkpoint), "--force") == 2
    assert "is the input file" in capsys.readouterr().err
    assert _enhance(str(noisy), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--force") == 0
    assert math.isfinite(float(sf.read(out)[0].sum()))


def test_bounded_mask_never_amplifies_a_bin_and_streams_exactly():
    torch.manual_seed(0)
    masker = SpectralMasker(UNetConfig(**TINY), "S-CC 2", mask_bound="tanh").double().eval()
    x = 10 * torch.randn(2, 2, 12, 65, dtype=torch.float64)
    with torch.no_grad():
        for p in masker.parameters():  # large weights: an unbounded mask would gain many times
            p.mul_(20)
        y = masker(x)
        state, parts = masker.init_state(2), []
        for t in range(12):
            out, state = masker.step(x[:, :, t : t + 1], state)
            parts.append(out)
    gain = (y.square().sum(1) / x.square().sum(1)).max().item()
    assert gain <= 1 + 1e-12, f"a bin came out {10 * math.log10(gain):.2f} dB louder than it went in"
    assert (torch.cat(parts, 2) - y).abs().max().item() < 1e-12


def test_checkpoints_without_a_mask_bound_load_unbounded(tmp_path):
    enhancer = _tiny_enhancer(dtype=torch.float32)
    path = tmp_path / "old.pt"
    save_checkpoint(path, enhancer)
    payload = torch.load(path, weights_only=True)
    del payload["mask_bound"]  # as written before the bounded mask existed
    torch.save(payload, path)
    loaded, _ = load_checkpoint(path)
    assert loaded.masker.mask_bound == "none"
    wave = torch.randn(1, 1000)
    assert torch.equal(loaded(wave), enhancer(wave))


def test_fine_tuning_starts_from_the_checkpoint_weights(tiny_data, tmp_path):
    from soi.train import build_enhancer, init_weights

    base = TrainConfig(
        data=str(tiny_data), out_dir=str(tmp_path / "stmc"), model_config=str(tiny_data / "model.json"),
        batch_size=4, segment_seconds=0.25, max_steps=5, valid_every=5, progress=False,
    )  # fmt: skip
    train(base)
    stmc = tmp_path / "stmc" / "last.pt"
    tuned = TrainConfig(**{**base.__dict__, "out_dir": str(tmp_path / "scc"), "pattern": "S-CC 2", "init_from": str(stmc)})
    enhancer = build_enhancer(tuned)
    assert init_weights(enhancer, stmc) == []
    trained = torch.load(stmc, weights_only=True)["state_dict"]
    assert all(torch.equal(v, trained[k]) for k, v in enhancer.state_dict().items()), "a weight did not come from the checkpoint"
    assert train(tuned)["steps"] == 5
    with pytest.raises(ValueError, match="mask_bound 'tanh', this run uses 'none'"):
        init_weights(build_enhancer(TrainConfig(**{**tuned.__dict__, "mask_bound": "none"})), stmc)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**TINY, "channels": [4, 8, 8]}))
    with pytest.raises(ValueError, match="is not this run's"):
        init_weights(build_enhancer(TrainConfig(**{**tuned.__dict__, "model_config": str(other)})), stmc)
    # a resumed run keeps its mask bound
    with pytest.raises(ValueError, match="mask_bound 'tanh' -> 'none'"):
        train(TrainConfig(**{**base.__dict__, "mask_bound": "none", "max_steps": 6}))


class _Pairs(torch.utils.data.Dataset):
    """(noisy, clean) pairs whose noise is known: clean + noise."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.clean = [torch.randn(800, generator=g) * (i + 1) for i in range(4)]
        self.noise = [torch.randn(800, generator=g) * 0.1 for _ in range(4)]

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return self.clean[i] + self.noise[i], self.clean[i]


def test_remixed_crops_pair_this_speech_with_another_noise_at_a_drawn_snr():
    from soi.train import RandomCrops

    base = _Pairs()
    crops = RandomCrops(base, 400, seed=3, remix=1.0, snr_range_db=(2.0, 2.0))
    for i in range(len(base)):
        noisy, clean = crops[i]
        noise = noisy - clean
        snr = 10 * torch.log10(clean.square().mean() / noise.square().mean())
        assert abs(float(snr) - 2.0) < 1e-4, f"item {i}: remixed at {float(snr):.4f} dB, asked 2 dB"
        # the clean is a crop of this item's speech, the noise a scaled crop of some item's noise
        assert any(bool((clean == base.clean[i][s : s + 400]).all()) for s in range(401)), f"item {i}: target is not its own speech"
        best = max(float(torch.cosine_similarity(noise, base.noise[j][s : s + 400], dim=0)) for j in range(4) for s in range(401))
        assert best > 1 - 1e-6, f"item {i}: the noise is not a scaled crop of one item's noise (best cosine {best:.6f})"
        again = crops[i]
        assert torch.equal(again[0], noisy) and torch.equal(again[1], clean), f"item {i}: not reproducible"
    crops.epoch = 1
    assert not torch.equal(crops[0][0], RandomCrops(base, 400, seed=3, remix=1.0)[0][0]), "a new epoch draws new mixtures"
    n, c = RandomCrops(base, 400, seed=3, remix=0.0)[1]
    assert any(torch.allclose(n - c, base.noise[1][s : s + 400], atol=1e-6) for s in range(401)), "remix 0: the pair's own noise"
