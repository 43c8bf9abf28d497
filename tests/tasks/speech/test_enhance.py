"""`soi enhance` end to end on a tiny model: the output keeps the input's rate, channels, length and
sample format, never goes beyond full scale (streaming and offline), streams through a pipe with
the samples of the file path, and `--offline` runs in bounded blocks with the streamed samples."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soi.cli import main as cli_main
from soi.models.unet import UNetConfig
from soi.tasks.speech import enhance as E
from soi.tasks.speech.data import StreamingResampler, decode_pcm, encode_pcm, read_wav_header, resample, wav_header
from soi.tasks.speech.limiter import PeakLimiter
from soi.tasks.speech.masker import SpectralMasker, SpeechEnhancer, save_checkpoint

RATE = 16000
TINY = {"freq_bins": 65, "in_channels": 2, "out_channels": 2, "channels": [4, 4, 8], "kernel": [3, 5], "freq_stride": 2, "lookahead": 1}
FULL_SCALE_16 = 32767


def _tiny(gain: float | None = None) -> SpeechEnhancer:
    """A tiny float32 enhancer (one frame of look-ahead); ``gain``: its mask is about ``gain`` everywhere
    (the last layer's weights zeroed, its real bias set), a model far too loud."""
    torch.manual_seed(0)
    enhancer = SpeechEnhancer(SpectralMasker(UNetConfig(**TINY), "STMC"), n_fft=128, hop=32).eval()
    if gain is not None:
        last = [m for m in enhancer.masker.unet.modules() if getattr(m, "out_channels", None) == 2 and hasattr(m, "bias")][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([gain, 0.0]))
    return enhancer


def _speech(n: int, seed: int = 0, rate: int = RATE, level: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    f0 = rng.uniform(100, 250)
    voiced = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6))
    x = 0.5 * (1 + np.sin(2 * np.pi * 3 * t)) * voiced + 0.1 * rng.standard_normal(n)
    return (level * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, _tiny())
    return path


@pytest.fixture(scope="module")
def loud_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "loud.pt"
    save_checkpoint(path, _tiny(gain=8.0))
    return path


def _soi(*argv) -> int:
    return cli_main(["enhance", *map(str, argv)])


# -- the limiter -------------------------------------------------------------------------------------


def test_limiter_keeps_every_sample_below_full_scale_and_passes_quiet_audio_unchanged():
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.standard_normal((2, 40000))).float()
    loud = [noise / noise.abs().max(), 6 * noise, torch.sign(torch.sin(torch.arange(40000) / 9.0)).repeat(2, 1) * 3]
    for x in loud:
        lim = PeakLimiter(RATE, 2)
        y = lim(x)
        assert y.abs().max() <= lim.ceiling < FULL_SCALE_16 / 32768, float(y.abs().max())
        blocks = PeakLimiter(RATE, 2)
        chunked = torch.cat([blocks(x[:, i : i + 999]) for i in range(0, x.shape[1], 999)], dim=1)
        assert (chunked - y).abs().max() <= 1e-6, "the limiter's state carries over between blocks"
    quiet = 0.5 * noise / noise.abs().max()
    assert torch.equal(PeakLimiter(RATE, 2)(quiet), quiet), "below the threshold the limiter changes nothing"


def test_limiter_is_causal_and_releases():
    x = torch.zeros(1, 16000)
    x[0, 1000] = 4.0
    x[0, 1001:] = 0.5
    y = PeakLimiter(RATE)(x)
    assert torch.equal(y[:, :1000], x[:, :1000]), "nothing changes before the peak arrives (no look-ahead)"
    assert y[0, 1001] < 0.5 * 0.3 and abs(float(y[0, -1]) - 0.5) < 1e-6, "the gain rides back up after the peak"


@pytest.mark.parametrize("offline", [False, True], ids=["streaming", "offline"])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_loud_input_never_produces_a_sample_beyond_full_scale(tmp_path, loud_ckpt, monkeypatch, offline, subtype):
    rng = np.random.default_rng(1)
    n = RATE
    noise = rng.standard_normal(n)
    square = np.sign(np.sin(2 * np.pi * 220 * np.arange(n) / RATE))
    x = np.concatenate([noise / np.abs(noise).max(), square]).astype(np.float32)  # 0 dBFS peaks, then a full-scale square
    sf.write(tmp_path / "loud.wav", x, RATE, subtype=subtype)
    seen = []
    write = E._SoundFileSink.write
    monkeypatch.setattr(E._SoundFileSink, "write", lambda self, block: (seen.append(float(np.abs(block).max(initial=0))), write(self, block)))
    assert _soi(tmp_path / "loud.wav", "-o", tmp_path / "out.wav", "--checkpoint", loud_ckpt, *(["--offline"] if offline else [])) == 0
    assert max(seen) <= 10 ** (-0.1 / 20) + 1e-7, f"the writer was handed {max(seen)}"
    out, _ = sf.read(tmp_path / "out.wav", dtype="int32" if subtype == "PCM_16" else "float64")
    if subtype == "PCM_16":
        assert np.abs(out >> 16).max() < FULL_SCALE_16, "a 16-bit sample at full scale: clipped"
    else:
        assert np.abs(out).max() < 1.0
    assert np.abs(out).max() > 0, "the limiter turns down, it does not mute"


# -- formats, rates and channels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subtype,ext,want",
    [("PCM_16", "wav", "PCM_16"), ("PCM_24", "wav", "PCM_24"), ("FLOAT", "wav", "FLOAT"), ("PCM_16", "flac", "PCM_16"), ("PCM_24", "flac", "PCM_24")],
)
def test_format_round_trips(tmp_path, ckpt, capsys, subtype, ext, want):
    src = tmp_path / f"in.{ext}"
    sf.write(src, _speech(RATE // 2), RATE, subtype=subtype)
    assert _soi(src, "-o", tmp_path / f"out.{ext}", "--checkpoint", ckpt) == 0
    info = sf.info(str(tmp_path / f"out.{ext}"))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (ext.upper(), want, RATE, 1, RATE // 2)


def test_stereo_44k_in_is_stereo_44k_out_each_channel_its_own_stream(tmp_path, ckpt, capsys):
    rate, n = 44100, 44100 // 2 + 37
    stereo = np.stack([_speech(n, 0, rate), _speech(n, 1, rate, level=0.2)], axis=1)
    sf.write(tmp_path / "st.wav", stereo, rate, subtype="FLOAT")
    sf.write(tmp_path / "left.wav", stereo[:, 0], rate, subtype="FLOAT")
    assert _soi(tmp_path / "st.wav", "-o", tmp_path / "st-out.wav", "--checkpoint", ckpt) == 0
    notes = capsys.readouterr().out
    assert "44100 Hz -> 16000 Hz and back" in notes and "2 channels enhanced as 2 streams" in notes, notes
    assert _soi(tmp_path / "left.wav", "-o", tmp_path / "left-out.wav", "--checkpoint", ckpt) == 0
    out, out_rate = sf.read(tmp_path / "st-out.wav", dtype="float32")
    left, _ = sf.read(tmp_path / "left-out.wav", dtype="float32")
    assert out_rate == rate and out.shape == (n, 2), "same rate, channels and length as the input"
    assert np.abs(out[:, 0] - left).max() <= 1e-6, "channel 0 of the stereo file is channel 0 enhanced alone"
    assert np.abs(out[:, 0] - out[:, 1]).max() > 1e-3, "the channels are not mixed"


def test_an_identity_model_returns_the_input_aligned_at_its_rate(tmp_path, capsys):
    """Mask 1 everywhere: the output is the input, band-limited to the model's 8 kHz by the two
    resamplings, aligned sample for sample and of the same length."""
    path = tmp_path / "identity.pt"
    save_checkpoint(path, _tiny(gain=1.0))
    rate, n = 44100, 30011
    x = np.stack([_speech(n, 0, rate), _speech(n, 1, rate)], axis=1)
    sf.write(tmp_path / "in.wav", x, rate, subtype="FLOAT")
    assert _soi(tmp_path / "in.wav", "-o", tmp_path / "out.wav", "--checkpoint", path) == 0
    out, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    band = resample(resample(torch.from_numpy(x.T.copy()), rate, RATE), RATE, rate)[:, :n].T.numpy()
    assert out.shape == x.shape and np.abs(out - band).max() <= 1e-4


def test_an_unknown_output_extension_is_refused_before_any_work(tmp_path, ckpt, capsys, monkeypatch):
    src = tmp_path / "in.wav"
    sf.write(src, _speech(RATE // 2), RATE)
    before = src.read_bytes()
    monkeypatch.setattr(E, "EnhanceStream", None)  # any work would fail loudly
    for name in ("out.ogg", "out.mp3", "out.xyz"):
        assert _soi(src, "-o", tmp_path / name, "--checkpoint", ckpt) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ".wav" in err and ".flac" in err and repr(Path(name).suffix) in err, err
        assert not (tmp_path / name).exists()
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


# -- streaming pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rates", [(44100, 16000), (16000, 44100), (48000, 16000), (16000, 22050), (44101, 16000)])
def test_streaming_resampler_equals_resample_for_any_blocks(rates):
    x = torch.randn(2, 5000, generator=torch.Generator().manual_seed(0))
    ref = resample(x, *rates)
    for block in (1, 97, 5000):
        r = StreamingResampler(*rates, channels=2)
        y = torch.cat([*(r.push(x[:, i : i + block]) for i in range(0, 5000, block)), r.finish(5000)], dim=1)
        assert y.shape == ref.shape and (y - ref).abs().max() <= 1e-6, (rates, block)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_pcm_codec_and_wav_stream_header_match_libsndfile(subtype):
    x = (np.random.default_rng(0).uniform(-0.99, 0.99, (1000, 2))).astype(np.float32)
    encoded = encode_pcm(x, subtype)
    buffer = io.BytesIO()
    sf.write(buffer, x, RATE, subtype=subtype, format="WAV")
    ref, _ = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32")
    assert np.array_equal(decode_pcm(encoded, subtype, 2), ref), "decoded as libsndfile reads the file"
    stream = io.BytesIO(wav_header(RATE, 2, subtype, 1000) + encoded)
    assert read_wav_header(stream) == (RATE, 2, subtype, len(encoded))
    assert np.array_equal(sf.read(io.BytesIO(stream.getvalue()), dtype="float32")[0], ref), "a header libsndfile reads"
    assert read_wav_header(io.BytesIO(wav_header(RATE, 1, subtype, None)))[3] is None


def test_offline_runs_in_bounded_blocks_and_equals_streaming(tmp_path, ckpt, monkeypatch, capsys):
    enhancer = _tiny()
    n = int(2.6 * E.OFFLINE_BLOCK_FRAMES * enhancer.hop)  # longer than two blocks
    sf.write(tmp_path / "long.wav", _speech(n), RATE, subtype="FLOAT")
    sizes = []
    step = SpectralMasker.step
    monkeypatch.setattr(SpectralMasker, "step", lambda self, x, s: (sizes.append(x.shape[2]), step(self, x, s))[1])
    assert _soi(tmp_path / "long.wav", "-o", tmp_path / "off.wav", "--checkpoint", ckpt, "--offline") == 0
    assert max(sizes) == E.OFFLINE_BLOCK_FRAMES and len(sizes) >= 3, "one block of frames at a time: memory bounded by a block"
    sizes.clear()
    assert _soi(tmp_path / "long.wav", "-o", tmp_path / "str.wav", "--checkpoint", ckpt) == 0
    assert max(sizes) == 1
    off, _ = sf.read(tmp_path / "off.wav", dtype="float32")
    streamed, _ = sf.read(tmp_path / "str.wav", dtype="float32")
    assert off.shape == streamed.shape == (n,)
    assert np.abs(off - streamed).max() <= 1e-5, "offline blocks give the streamed samples up to float rounding"
    # ... which are also the whole-file offline forward (no limiter needed at this level)
    with torch.no_grad():
        whole = enhancer(torch.from_numpy(_speech(n)).unsqueeze(0))[0].numpy()
    assert np.abs(whole).max() < 0.89 and np.abs(off - whole).max() <= 1e-5


def test_enhance_wave_is_what_the_file_holds(tmp_path, ckpt, capsys):
    x = _speech(RATE // 2)
    sf.write(tmp_path / "in.wav", x, RATE)
    assert _soi(tmp_path / "in.wav", "-o", tmp_path / "out.wav", "--checkpoint", ckpt, "--offline") == 0
    written, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    noisy, _ = sf.read(tmp_path / "in.wav", dtype="float32")
    assert np.array_equal(E.enhance_wave(torch.from_numpy(noisy), _tiny(), subtype="PCM_16").numpy(), written)


# -- pipes --------------------------------------------------------------------------------------------


def _pipe(ckpt: Path, data: bytes, *extra: str) -> bytes:
    done = subprocess.run(
        [sys.executable, "-m", "soi", "enhance", "-", "-o", "-", "--checkpoint", str(ckpt), *extra],
        input=data, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert b"wrote standard output" in done.stderr
    return done.stdout


def test_stdin_to_stdout_gives_the_samples_of_the_file_path(tmp_path, ckpt, capsys):
    x = _speech(RATE + 123)
    sf.write(tmp_path / "in.wav", x, RATE, subtype="PCM_16")
    assert _soi(tmp_path / "in.wav", "-o", tmp_path / "out.wav", "--checkpoint", ckpt) == 0
    ref, _ = sf.read(tmp_path / "out.wav", dtype="int16")
    pcm, _ = sf.read(tmp_path / "in.wav", dtype="int16")
    raw = _pipe(ckpt, pcm.tobytes(), "--raw-format", "s16le", "--rate", "16000")
    assert np.array_equal(np.frombuffer(raw, "<i2"), ref), "raw in, raw out: the samples of the file path"
    wav = _pipe(ckpt, (tmp_path / "in.wav").read_bytes())
    out, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == RATE and np.array_equal(out, ref), "WAV in, WAV out: the samples of the file path"


def test_stdin_wav_of_unknown_length_is_read_to_the_end(tmp_path, ckpt):
    x = (_speech(RATE // 2) * 32767).astype("<i2")
    stream = _pipe(ckpt, wav_header(RATE, 1, "PCM_16", None) + x.tobytes())
    header = io.BytesIO(stream)
    assert read_wav_header(header)[3] is None, "the length was unknown: so is the output's"
    assert len(header.read()) == 2 * x.shape[0]


def test_raw_options_are_for_standard_input_only(tmp_path, ckpt, capsys):
    sf.write(tmp_path / "in.wav", _speech(RATE // 2), RATE)
    assert _soi(tmp_path / "in.wav", "-o", tmp_path / "o.wav", "--checkpoint", ckpt, "--raw-format", "s16le") == 2
    assert "describe raw PCM on standard input" in capsys.readouterr().err


@pytest.fixture(scope="module")
def spoken_sentence(tmp_path_factory) -> torch.Tensor:
    """A sentence from espeak-ng at 16 kHz, at -25 dBFS RMS: ``(1, N)``."""
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path = tmp_path_factory.mktemp("voice") / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(path), "The quick brown fox jumps over the lazy dog near the river bank."], check=True)
    x, sr = sf.read(path, dtype="float32")
    clean = resample(torch.from_numpy(x)[None].double(), sr, 16000).float()
    return clean / clean.square().mean().sqrt() * 10 ** (-25 / 20)


@pytest.mark.parametrize("snr_db", [0, 5, 10], ids=lambda s: f"snr{s}dB")
def test_the_shipped_model_keeps_the_speech_level_of_a_synthetic_mixture(spoken_sentence, snr_db):
    from soi.tasks.speech.masker import default_checkpoint_path, load_checkpoint
    from soi.tasks.speech.metrics import level_db, si_snr_improvement

    clean = spoken_sentence
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(snr_db))
    noisy = clean + noise * (clean.square().mean() / noise.square().mean()).sqrt() * 10 ** (-snr_db / 20)
    enhancer = load_checkpoint(default_checkpoint_path())[0].eval()
    with torch.no_grad():
        out = enhancer(noisy)
    level, gain = level_db(out, clean).item(), level_db(out, noisy).item()
    assert abs(level) <= 3.0, f"SNR {snr_db} dB: the output is {level:+.2f} dB against the clean speech (allowed: within 3 dB)"
    assert gain <= 0.0, f"SNR {snr_db} dB: the output is {gain:+.2f} dB louder than its input"
    assert si_snr_improvement(out, noisy, clean).item() > 0, f"SNR {snr_db} dB: the model made the speech worse"
