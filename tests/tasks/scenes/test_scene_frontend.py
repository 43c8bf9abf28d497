"""The scene front end: streamed hop by hop (and in chunks of several hops) it equals the offline
log-mel spectrogram in float64; frames are causal; the mel filters are librosa's."""

import pytest
import torch

from soi.tasks.scenes.frontend import (
    LogMelConfig,
    StreamingLogMel,
    log_mel,
    mel_filters,
)
from soi.testing import assert_close, split_points

pytest.importorskip("librosa")  # the mel filters


def _stream(
    front: StreamingLogMel, wave: torch.Tensor, hops: list[int]
) -> torch.Tensor:
    state = front.init_state(wave.shape[0], dtype=wave.dtype)
    out, start = [], 0
    for k in hops:
        y, state = front.step(wave[:, start : start + k * front.config.hop], state)
        out.append(y)
        start += k * front.config.hop
    return torch.cat(out, dim=2)


@pytest.mark.parametrize("chunk", [1, 3, "random"])
def test_streaming_equals_offline_in_float64(chunk):
    torch.manual_seed(0)
    front = StreamingLogMel()
    hop = front.config.hop
    wave = torch.randn(2, 37 * hop, dtype=torch.float64) * 0.1
    offline = log_mel(wave)
    assert offline.shape == (2, 1, 37, 64)
    streamed = _stream(front, wave, split_points(37, chunk))
    assert_close(
        streamed,
        offline,
        f"log-mel streamed in chunks {chunk!r} vs offline",
        atol=1e-12,
    )
    assert_close(front(wave), offline, "module offline forward vs log_mel", atol=0)


def test_a_partial_hop_at_the_end_is_zero_padded_and_frames_are_causal():
    torch.manual_seed(1)
    cfg = LogMelConfig()
    wave = torch.randn(1, 10 * cfg.hop + 17, dtype=torch.float64)
    full = log_mel(wave, cfg)
    assert full.shape[2] == 11
    # frame t depends on samples < (t + 1) * hop only: a prefix gives the same first frames
    prefix = log_mel(wave[:, : 4 * cfg.hop], cfg)
    assert_close(
        prefix,
        full[:, :, :4],
        "a prefix's frames do not change when more samples arrive",
        atol=0,
    )


def test_frame_is_the_mel_power_of_one_hann_window():
    cfg = LogMelConfig(sample_rate=8000, n_fft=256, hop=128, n_mels=20)
    x = torch.randn(1, 5 * cfg.hop, dtype=torch.float64)
    t = 3
    seg = x[0, t * cfg.hop - (cfg.n_fft - cfg.hop) : t * cfg.hop + cfg.hop]
    spec = torch.fft.rfft(
        seg * torch.hann_window(cfg.n_fft, periodic=True, dtype=torch.float64)
    )
    want = torch.log(mel_filters(cfg) @ spec.abs().square() + cfg.floor)
    assert_close(
        log_mel(x, cfg)[0, 0, t], want, "frame 3 vs rfft of its window", atol=1e-12
    )


def test_mel_filters_are_librosas():
    import librosa

    cfg = LogMelConfig()
    want = torch.from_numpy(
        librosa.filters.mel(sr=16000, n_fft=640, n_mels=64, dtype="float64")
    )
    assert torch.equal(mel_filters(cfg), want)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hop": 0}, "hop must be an integer >= 1"),
        ({"hop": 700}, "hop must be <= n_fft"),
        ({"f_max": 9000.0}, "f_max <= 8000"),
        ({"n_mels": 2.5}, "n_mels must be an integer"),
    ],
)
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LogMelConfig(**kwargs)


def test_bad_chunks_are_refused():
    front = StreamingLogMel()
    state = front.init_state(1)
    with pytest.raises(ValueError, match="not a multiple of hop=320"):
        front.step(torch.zeros(1, 100), state)
    with pytest.raises(ValueError, match=r"expected floating-point samples \(B, N\)"):
        front.step(torch.zeros(1, 1, 320), state)
