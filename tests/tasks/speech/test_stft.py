"""Streaming STFT front end: exact reconstruction, streaming == offline, alignment and latency."""

from __future__ import annotations

import importlib

import pytest
import torch

# The package re-exports the function `stft`, which shadows the submodule as an attribute.
S = importlib.import_module("soi.tasks.speech.stft")

DT = torch.float64


def _signal(batch: int = 2, n: int = 16000 + 123, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n, generator=g, dtype=DT)


def _stream_analysis(x: torch.Tensor, chunk_frames: int, n_fft: int = S.N_FFT, hop: int = S.HOP) -> torch.Tensor:
    ana = S.StreamingSTFT(n_fft, hop)
    state = ana.init_state(x.shape[0], dtype=x.dtype)
    frames = []
    step = chunk_frames * hop
    for start in range(0, x.shape[1], step):
        f, state = ana.step(x[:, start : start + step], state)
        frames.append(f)
    return torch.cat(frames, dim=2)


def _stream_synthesis(spec: torch.Tensor, chunk_frames: int, n_fft: int = S.N_FFT, hop: int = S.HOP) -> torch.Tensor:
    syn = S.StreamingISTFT(n_fft, hop)
    state = syn.init_state(spec.shape[0], dtype=spec.dtype)
    outs = []
    for start in range(0, spec.shape[2], chunk_frames):
        y, state = syn.step(spec[:, :, start : start + chunk_frames], state)
        outs.append(y)
    return torch.cat(outs, dim=1)


def test_offline_round_trip_is_exact():
    x = _signal()
    spec = S.stft(x)
    assert spec.shape == (2, 2, S.frames_for(x.shape[1]), S.N_FFT // 2 + 1)
    torch.testing.assert_close(S.istft(spec, x.shape[1]), x, rtol=0, atol=1e-10)


def test_unbatched_shapes():
    x = _signal(1)[0]
    spec = S.stft(x)
    assert spec.dim() == 3 and spec.shape[0] == 2
    torch.testing.assert_close(S.istft(spec, x.shape[0]), x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("chunk_frames", [1, 2, 3, "whole"])
def test_streaming_analysis_equals_offline(chunk_frames):
    x = S.pad_for_streaming(_signal())
    k = x.shape[1] // S.HOP if chunk_frames == "whole" else chunk_frames
    streamed = _stream_analysis(x, k)
    offline = S.stft(x)
    assert streamed.shape == offline.shape
    torch.testing.assert_close(streamed, offline, rtol=0, atol=1e-10)


@pytest.mark.parametrize("chunk_frames", [1, 2, 3, "whole"])
def test_streaming_identity_reconstructs_input_delayed_by_latency(chunk_frames):
    x = _signal()
    padded = S.pad_for_streaming(x)
    k = padded.shape[1] // S.HOP if chunk_frames == "whole" else chunk_frames
    y = _stream_synthesis(_stream_analysis(padded, k), k)
    lat = S.latency_samples()
    assert lat == S.N_FFT - S.HOP == 768
    assert y.shape == padded.shape
    # The first `latency` output samples are the (silent) zero history, then the input follows.
    torch.testing.assert_close(y[:, :lat], torch.zeros_like(y[:, :lat]), rtol=0, atol=1e-12)
    torch.testing.assert_close(y[:, lat : lat + x.shape[1]], x, rtol=0, atol=1e-10)
    torch.testing.assert_close(S.trim_streamed(y, x.shape[1]), x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("chunk_frames", [1, 2, 3])
def test_streaming_synthesis_equals_offline_for_any_spectrum(chunk_frames):
    g = torch.Generator().manual_seed(1)
    spec = torch.randn(2, 2, 40, S.N_FFT // 2 + 1, generator=g, dtype=DT)
    streamed = _stream_synthesis(spec, chunk_frames)
    offline = S.istft(spec, 40 * S.HOP)
    lat = S.latency_samples()
    torch.testing.assert_close(streamed[:, lat:], offline[:, : 40 * S.HOP - lat], rtol=0, atol=1e-10)


@pytest.mark.parametrize("n_fft,hop", [(512, 128), (64, 32), (48, 16), (40, 12)])
def test_other_sizes(n_fft, hop):
    x = _signal(1, 1000)
    torch.testing.assert_close(S.istft(S.stft(x, n_fft, hop), x.shape[1], n_fft, hop), x, rtol=0, atol=1e-10)
    padded = S.pad_for_streaming(x, n_fft, hop)
    spec = _stream_analysis(padded, 2, n_fft, hop)
    torch.testing.assert_close(spec, S.stft(padded, n_fft, hop), rtol=0, atol=1e-10)
    y = _stream_synthesis(spec, 2, n_fft, hop)
    torch.testing.assert_close(S.trim_streamed(y, x.shape[1], n_fft, hop), x, rtol=0, atol=1e-10)


def test_enhance_helpers_keep_length_and_alignment():
    x = _signal(2, 5000)
    out = S.enhance_offline(x, lambda spec: spec)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x, rtol=0, atol=1e-10)

    # A causal, non-trivial spectral gain: offline and the streaming driver agree sample for sample.
    def gain(spec: torch.Tensor) -> torch.Tensor:
        return spec * torch.sigmoid(spec.sum(dim=1, keepdim=True))

    offline = S.enhance_offline(x, gain)
    for chunk in (1, 3):
        streamed = S.enhance_streaming(x, lambda f, st: (gain(f), st), None, chunk_frames=chunk)
        torch.testing.assert_close(streamed, offline, rtol=0, atol=1e-10)


def test_enhance_with_lookahead_model():
    """A model with one look-ahead frame (soi protocol: warm-up frames not emitted)."""
    x = _signal(1, 3000)

    def offline_fn(spec: torch.Tensor) -> torch.Tensor:  # output t = mean of frames t and t+1
        nxt = torch.cat([spec[:, :, 1:], torch.zeros_like(spec[:, :, :1])], dim=2)
        return 0.5 * (spec + nxt)

    def step(frames: torch.Tensor, prev: torch.Tensor | None):
        seq = frames if prev is None else torch.cat([prev, frames], dim=2)
        return 0.5 * (seq[:, :, :-1] + seq[:, :, 1:]), seq[:, :, -1:]

    offline = S.enhance_offline(x, offline_fn, delay_frames=1)
    streamed = S.enhance_streaming(x, step, None, chunk_frames=2, delay_frames=1)
    torch.testing.assert_close(streamed, offline, rtol=0, atol=1e-10)


def test_latency_and_helpers():
    ana = S.StreamingSTFT()
    assert ana.latency_samples == 768 and ana.block_latency_samples == S.N_FFT
    assert ana.latency_ms == pytest.approx(48.0)
    assert S.frames_for(0) == 0 and S.frames_for(1) == 1 and S.frames_for(256) == 1 and S.frames_for(257) == 2
    assert S.samples_for(3) == 768
    assert S.pad_for_streaming(torch.zeros(1, 1000)).shape[1] == 256 * S.frames_for(1000 + 768)


def test_window_is_sqrt_periodic_hann():
    w = S.stft_window(16, dtype=DT)
    torch.testing.assert_close(w.square(), torch.hann_window(16, periodic=True, dtype=DT))


def test_zero_length_inputs():
    ana, syn = S.StreamingSTFT(), S.StreamingISTFT()
    a = ana.init_state(1, dtype=DT)
    f, a2 = ana.step(torch.zeros(1, 0, dtype=DT), a)
    assert f.shape == (1, 2, 0, 513) and a2 is a
    y, _ = syn.step(f, syn.init_state(1, dtype=DT))
    assert y.shape == (1, 0)
    assert S.stft(torch.zeros(1, 0)).shape == (1, 2, 0, 513)


def test_bad_inputs_are_refused_clearly():
    ana, syn = S.StreamingSTFT(), S.StreamingISTFT()
    with pytest.raises(ValueError, match="multiple of hop"):
        ana.step(torch.zeros(1, 100), ana.init_state(1))
    with pytest.raises(ValueError, match="batch size"):
        ana.step(torch.zeros(2, 256), ana.init_state(1))
    with pytest.raises(ValueError, match="float64"):
        ana.step(torch.zeros(1, 256), ana.init_state(1, dtype=DT))
    with pytest.raises(ValueError, match=r"\(B, 2, T, 513\)"):
        syn.step(torch.zeros(1, 2, 1, 100), syn.init_state(1))
    with pytest.raises(ValueError, match="another module"):
        syn.step(torch.zeros(1, 2, 1, 513), S.StreamingISTFT().init_state(1))
    with pytest.raises(ValueError, match="hop"):
        S.StreamingSTFT(1024, 768)
    with pytest.raises(ValueError, match="length"):
        S.istft(torch.zeros(1, 2, 3, 513), 4 * 256)


def test_states_are_not_mutated_and_module_wrappers():
    x = _signal(1, 2048)
    ana = S.StreamingSTFT()
    s0 = ana.init_state(1, dtype=DT)
    before = s0.history.clone()
    ana.step(x[:, :512], s0)
    assert torch.equal(s0.history, before)
    with ana.streaming(1, dtype=DT):
        streamed = torch.cat([ana(x[:, i : i + 256]) for i in range(0, 2048, 256)], dim=2)
    torch.testing.assert_close(streamed, ana(x), rtol=0, atol=1e-10)
    assert "window" not in ana.state_dict()
