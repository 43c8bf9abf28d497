"""Streaming STFT front end and overlap-add synthesis, exactly equal to the offline ``torch.stft`` path.

Conventions (defaults: 16 kHz, ``n_fft = window = 1024``, ``hop = 256``, ``F = n_fft // 2 + 1``):

* A spectrogram is a real tensor ``(B, 2, T, F)`` with channels ``[real, imag]`` and time in
  dimension 2, the layout every ``soi`` layer expects.
* Window: the square root of a *periodic* Hann window for both analysis and synthesis. Synthesis
  divides by the overlap-added squared window (weighted overlap-add, as ``torch.istft`` does), so
  reconstruction is exact for every ``hop <= n_fft // 2``; at the default 75 % overlap that divisor is
  the constant ``n_fft / (2 * hop) = 2``.
* Causal alignment: frame ``t`` covers samples ``t*hop - (n_fft - hop) .. t*hop + hop - 1`` (the
  signal is zero before sample 0). So each chunk of ``hop`` new samples completes exactly one frame,
  with no look-ahead, and a whole signal of ``N`` samples has ``ceil(N / hop)`` frames
  (:func:`frames_for`; the tail is zero padded to a whole hop).

Latency. Streaming synthesis can only emit a sample once every frame that overlaps it has been added,
i.e. ``n_fft - hop`` samples after the newest frame's last sample. Streaming analysis followed by
synthesis therefore returns the input delayed by exactly :func:`latency_samples` ``= n_fft - hop``
samples (768 = 48 ms by default): output sample ``m`` equals input sample ``m - (n_fft - hop)``.
That is the algorithmic latency of the STFT pair as an offset between the two sample streams. A
real-time device additionally buffers one hop before it can process a chunk, so the first sample of
each block leaves ``n_fft`` samples (64 ms) after it arrived -- the figure the DNS Challenge quotes
as "window length"; :attr:`StreamingSTFT.block_latency_samples` reports it. A network with ``d``
look-ahead frames adds ``d * hop``.

Offline helpers :func:`pad_for_streaming` / :func:`trim_streamed` and :func:`enhance_offline` give a
whole-file enhancement that returns exactly the input length, aligned sample-for-sample with the
input, and equal to what the streaming pipeline (:func:`enhance_streaming`) produces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.state import State, StreamingModule

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP",
    "STFTState",
    "ISTFTState",
    "StreamingSTFT",
    "StreamingISTFT",
    "stft",
    "istft",
    "stft_window",
    "latency_samples",
    "frames_for",
    "samples_for",
    "pad_for_streaming",
    "trim_streamed",
    "enhance_offline",
    "enhance_streaming",
]

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256


def _check_params(n_fft: int, hop: int) -> None:
    if not isinstance(n_fft, int) or n_fft < 2:
        raise ValueError(f"n_fft must be an int >= 2, got {n_fft!r}")
    if not isinstance(hop, int) or not 1 <= hop <= n_fft // 2:
        # Beyond 50 % hop the squared sqrt-Hann windows no longer overlap everywhere, so the
        # weighted overlap-add would divide by ~0 between frames.
        raise ValueError(f"hop must be an int with 1 <= hop <= n_fft // 2 = {n_fft // 2}, got {hop!r}")


def stft_window(n_fft: int = N_FFT, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
    """The analysis and synthesis window: ``sqrt`` of a periodic Hann window, shape ``(n_fft,)``."""
    return torch.hann_window(n_fft, periodic=True, dtype=torch.float64, device=device).sqrt().to(
        dtype or torch.get_default_dtype()
    )


def latency_samples(n_fft: int = N_FFT, hop: int = HOP) -> int:
    """Offset between the input and output sample streams of streaming analysis + synthesis.

    Equals ``n_fft - hop``: a sample is complete only after the last frame overlapping it is added.
    """
    _check_params(n_fft, hop)
    return n_fft - hop


def frames_for(num_samples: int, hop: int = HOP) -> int:
    """Frames :func:`stft` makes from ``num_samples`` samples: ``ceil(num_samples / hop)``."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return -(-num_samples // hop)


def samples_for(num_frames: int, hop: int = HOP) -> int:
    """Samples streaming analysis consumes for (and synthesis emits from) ``num_frames`` frames."""
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    return num_frames * hop


def _as_batch(x: Tensor, dims: int, what: str) -> tuple[Tensor, bool]:
    """``x`` with a batch dimension (added if it has ``dims - 1`` dimensions) and whether one was added."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: expected a tensor, got {type(x).__name__}")
    if x.dim() == dims - 1:
        return x.unsqueeze(0), True
    if x.dim() != dims:
        raise ValueError(f"{what}: expected {dims - 1} or {dims} dimensions, got shape {tuple(x.shape)}")
    return x, False


def _to_layout(spec: Tensor) -> Tensor:
    """Complex ``(B, F, T)`` from ``torch.stft`` -> real ``(B, 2, T, F)``."""
    return torch.view_as_real(spec).permute(0, 3, 2, 1).contiguous()


def _from_layout(spec: Tensor, n_fft: int, what: str) -> Tensor:
    """Real ``(B, 2, T, F)`` -> complex ``(B, T, F)``."""
    if spec.dim() != 4 or spec.shape[1] != 2 or spec.shape[3] != n_fft // 2 + 1:
        raise ValueError(
            f"{what}: expected a spectrogram (B, 2, T, {n_fft // 2 + 1}) with channels [real, imag], "
            f"got shape {tuple(spec.shape)}"
        )
    if not spec.is_floating_point():
        raise TypeError(f"{what}: expected a real floating-point spectrogram, got {spec.dtype}")
    return torch.complex(spec[:, 0], spec[:, 1])


def _analyse(padded: Tensor, window: Tensor, n_fft: int, hop: int) -> Tensor:
    """Frames of an already aligned signal ``(B, L)`` (``L >= n_fft``) -> ``(B, 2, T, F)``."""
    spec = torch.stft(padded, n_fft, hop, win_length=n_fft, window=window, center=False, return_complex=True)
    return _to_layout(spec)


def stft(wave: Tensor, n_fft: int = N_FFT, hop: int = HOP) -> Tensor:
    """Offline causal STFT with the streaming alignment (see the module docstring).

    Args:
        wave: ``(B, N)`` or ``(N,)`` samples.

    Returns:
        ``(B, 2, T, F)`` (or ``(2, T, F)`` for a 1-d input) with ``T = ceil(N / hop)``,
        ``F = n_fft // 2 + 1``, channels ``[real, imag]``. Equals :class:`StreamingSTFT` fed the
        same samples (zero padded to a whole hop) frame for frame.
    """
    _check_params(n_fft, hop)
    x, added = _as_batch(wave, 2, "stft")
    frames = frames_for(x.shape[-1], hop)
    window = stft_window(n_fft, dtype=x.dtype, device=x.device)
    if frames == 0:
        out = x.new_zeros((x.shape[0], 2, 0, n_fft // 2 + 1))
    else:
        padded = F.pad(x, (n_fft - hop, frames * hop - x.shape[-1]))
        out = _analyse(padded, window, n_fft, hop)
    return out[0] if added else out


def istft(spec: Tensor, length: int, n_fft: int = N_FFT, hop: int = HOP) -> Tensor:
    """Offline inverse of :func:`stft`: ``istft(stft(x), N) == x`` (no delay).

    Args:
        spec: ``(B, 2, T, F)`` or ``(2, T, F)``.
        length: samples to return, at most ``T * hop``.

    Returns:
        ``(B, length)`` (or ``(length,)``). Where all frames overlapping a sample exist, equals the
        streaming synthesis output advanced by :func:`latency_samples`.
    """
    _check_params(n_fft, hop)
    s, added = _as_batch(spec, 4, "istft")
    frames = s.shape[2]
    if not 0 <= length <= frames * hop:
        raise ValueError(f"istft: length must be between 0 and T * hop = {frames * hop}, got {length}")
    if length == 0:
        out = s.new_zeros((s.shape[0], 0))
        return out[0] if added else out
    z = _from_layout(s, n_fft, "istft").transpose(1, 2)
    window = stft_window(n_fft, dtype=s.dtype, device=s.device)
    # torch.istft with center=False checks the window envelope at sample 0 of the first frame, where
    # a periodic Hann window is 0. Asking for center=True starts the output n_fft//2 samples into
    # the overlap-add instead; our signal starts n_fft - hop samples in, so drop the difference.
    skip = (n_fft - hop) - n_fft // 2
    y = torch.istft(z, n_fft, hop, win_length=n_fft, window=window, center=True, length=length + skip)
    out = y[:, skip:]
    return out[0] if added else out


@dataclass
class STFTState(State):
    """State of :class:`StreamingSTFT`.

    Attributes:
        history: the last ``n_fft - hop`` input samples, ``(B, n_fft - hop)`` (zeros at the start).
    """

    history: Tensor


@dataclass
class ISTFTState(State):
    """State of :class:`StreamingISTFT`.

    Attributes:
        overlap: overlap-add partial sums of the ``n_fft - hop`` samples not yet complete,
            ``(B, n_fft - hop)``.
    """

    overlap: Tensor


class _STFTBase(StreamingModule):
    """Shared parameters and timing of the analysis and synthesis halves."""

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        _check_params(n_fft, hop)
        self.n_fft = n_fft
        self.hop = hop
        self.sample_rate = sample_rate
        # Kept in float64 and cast per step, so that float64 streams get an exact window.
        self.register_buffer("window", stft_window(n_fft, dtype=torch.float64), persistent=False)

    @property
    def n_freqs(self) -> int:
        """``F = n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def latency_samples(self) -> int:
        """Output sample ``m`` of analysis + synthesis is input sample ``m - latency_samples``."""
        return latency_samples(self.n_fft, self.hop)

    @property
    def block_latency_samples(self) -> int:
        """Worst case wall-clock delay of a real-time device: :attr:`latency_samples` plus one hop of
        input buffering (``= n_fft``)."""
        return self.latency_samples + self.hop

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    def frames_for(self, num_samples: int) -> int:
        return frames_for(num_samples, self.hop)

    def _window(self, like: Tensor) -> Tensor:
        return self.window.to(device=like.device, dtype=like.dtype)

    def _zeros(self, batch_size: int, device, dtype) -> Tensor:
        return torch.zeros(batch_size, self.n_fft - self.hop, device=device, dtype=dtype or torch.get_default_dtype())

    def _check_dtype(self, x: Tensor, held: Tensor) -> None:
        if held.dtype != x.dtype or held.device != x.device:
            raise ValueError(
                f"{type(self).__name__}.step: the state is {held.dtype} on {held.device} but the input is "
                f"{x.dtype} on {x.device}; create it with init_state(batch, device=x.device, dtype=x.dtype)"
            )

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop={self.hop}, sample_rate={self.sample_rate}"


class StreamingSTFT(_STFTBase):
    """Streaming analysis: chunks of ``k * hop`` samples -> ``k`` frames, equal to :func:`stft`.

    >>> ana = StreamingSTFT()
    >>> state = ana.init_state(batch_size=1)
    >>> frames, state = ana.step(torch.zeros(1, 256), state)   # (1, 2, 1, 513)
    """

    @property
    def receptive_field(self) -> int:
        """Input samples one frame depends on."""
        return self.n_fft

    @property
    def stride(self) -> int:
        """Input samples per frame."""
        return self.hop

    def init_state(self, batch_size: int, device=None, dtype=None) -> STFTState:
        return STFTState(**self._new_state_args(batch_size), history=self._zeros(batch_size, device, dtype))

    def step(self, x: Tensor, state: STFTState) -> tuple[Tensor, STFTState]:
        """``x``: ``(B, k * hop)`` samples, ``k >= 0`` -> ``(B, 2, k, F)`` frames and the new state."""
        if not isinstance(x, Tensor) or x.dim() != 2:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"StreamingSTFT.step: expected samples (B, k*hop), got {got}")
        self._check_state(x, state)
        self._check_dtype(x, state.history)
        n = x.shape[1]
        if n % self.hop:
            raise ValueError(
                f"StreamingSTFT.step: the chunk has {n} samples, not a multiple of hop={self.hop}; "
                "buffer the input into whole hops (pad the end of a stream with zeros)"
            )
        if n == 0:
            return x.new_zeros((x.shape[0], 2, 0, self.n_freqs)), state
        buf = torch.cat([state.history, x], dim=1)
        frames = _analyse(buf, self._window(x), self.n_fft, self.hop)
        return frames, STFTState(state.owner, state.batch_size, history=buf[:, n:])

    def forward(self, x: Tensor) -> Tensor:
        """Offline :func:`stft` of ``(B, N)``; inside ``streaming()``, one :meth:`step`."""
        if self.is_streaming:
            return super().forward(x)
        return stft(x, self.n_fft, self.hop)


class StreamingISTFT(_STFTBase):
    """Streaming synthesis: ``k`` frames -> ``k * hop`` samples, delayed by :attr:`latency_samples`.

    The first :attr:`latency_samples` outputs of a stream are the overlap-add of the zero history
    (silence for an identity mask); after that, output sample ``m`` equals
    ``istft(spec, ...)[m - latency_samples]`` of the offline path.
    """

    @property
    def receptive_field(self) -> int:
        """Frames that overlap one output sample."""
        return math.ceil(self.n_fft / self.hop)

    def _envelope(self, like: Tensor, k: int) -> Tensor:
        """Overlap-added squared window seen by a complete sample, tiled over ``k`` hops: ``(k*hop,)``."""
        w2 = self._window(like).square()
        w2 = F.pad(w2, (0, -self.n_fft % self.hop))
        return w2.view(-1, self.hop).sum(0).repeat(k)

    def init_state(self, batch_size: int, device=None, dtype=None) -> ISTFTState:
        return ISTFTState(**self._new_state_args(batch_size), overlap=self._zeros(batch_size, device, dtype))

    def step(self, spec: Tensor, state: ISTFTState) -> tuple[Tensor, ISTFTState]:
        """``spec``: ``(B, 2, k, F)``, ``k >= 0`` -> ``(B, k * hop)`` samples and the new state."""
        if not isinstance(spec, Tensor):
            raise TypeError(f"StreamingISTFT.step: expected a tensor, got {type(spec).__name__}")
        z = _from_layout(spec, self.n_fft, "StreamingISTFT.step")
        self._check_state(spec, state)
        self._check_dtype(spec, state.overlap)
        b, k = spec.shape[0], spec.shape[2]
        if k == 0:
            return spec.new_zeros((b, 0)), state
        frames = torch.fft.irfft(z, n=self.n_fft, dim=-1) * self._window(spec)  # (B, k, n_fft)
        length = (k - 1) * self.hop + self.n_fft
        ola = F.fold(frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop))
        ola = ola.view(b, length)
        rest = self.n_fft - self.hop
        ola = torch.cat([ola[:, :rest] + state.overlap, ola[:, rest:]], dim=1)
        out = ola[:, : k * self.hop] / self._envelope(spec, k)
        return out, ISTFTState(state.owner, state.batch_size, overlap=ola[:, k * self.hop :])

    def forward(self, spec: Tensor, length: int | None = None) -> Tensor:
        """Offline :func:`istft` (``length`` defaults to ``T * hop``); inside ``streaming()``, one step."""
        if self.is_streaming:
            return super().forward(spec)
        return istft(spec, spec.shape[-2] * self.hop if length is None else length, self.n_fft, self.hop)


# -- whole-signal alignment -------------------------------------------------------------------------


def pad_for_streaming(wave: Tensor, n_fft: int = N_FFT, hop: int = HOP, delay_frames: int = 0) -> Tensor:
    """Zero pad ``(..., N)`` at the end so a stream of it emits all ``N`` samples.

    The STFT pair delays by :func:`latency_samples`; a network between analysis and synthesis with
    ``delay_frames`` look-ahead frames emits its last ``delay_frames`` frames only once that many
    more frames have arrived, so the padding covers both. The result is rounded up to a whole hop:
    ``(..., M)`` with ``M = hop * ceil((N + latency + delay_frames * hop) / hop)``.
    """
    delay = latency_samples(n_fft, hop) + delay_frames * hop
    n = wave.shape[-1]
    return F.pad(wave, (0, samples_for(frames_for(n + delay, hop), hop) - n))


def trim_streamed(out: Tensor, length: int, n_fft: int = N_FFT, hop: int = HOP) -> Tensor:
    """Inverse of :func:`pad_for_streaming` on the output: ``(..., M)`` -> ``(..., length)``, aligned
    sample-for-sample with the input.

    Drops the first :func:`latency_samples`. A ``soi`` network's look-ahead needs no trimming: its
    stream skips the warm-up frames, so its output frame ``t`` is still the ``t``-th frame emitted.
    """
    start = latency_samples(n_fft, hop)
    if out.shape[-1] < start + length:
        raise ValueError(
            f"trim_streamed: {out.shape[-1]} samples cannot hold {length} samples after a delay of {start}; "
            "was the input padded with pad_for_streaming?"
        )
    return out[..., start : start + length]


def enhance_offline(
    wave: Tensor,
    spec_fn: Callable[[Tensor], Tensor],
    n_fft: int = N_FFT,
    hop: int = HOP,
    delay_frames: int = 0,
) -> Tensor:
    """Whole-signal enhancement through the STFT: ``(B, N)`` or ``(N,)`` -> the same shape.

    ``spec_fn`` maps ``(B, 2, T, F)`` to ``(B, 2, T, F)`` and must be time aligned (an offline
    ``soi`` model is: its forward flushes look-ahead frames); ``delay_frames`` is its look-ahead.
    The input is padded exactly as the streaming pipeline pads it, so the result equals
    :func:`enhance_streaming` with the same model sample for sample, including the last samples,
    and equals ``wave`` for an identity ``spec_fn``.
    """
    x, added = _as_batch(wave, 2, "enhance_offline")
    padded = pad_for_streaming(x, n_fft, hop, delay_frames)
    spec = spec_fn(stft(padded, n_fft, hop))
    if spec.shape[2] != frames_for(padded.shape[-1], hop):
        raise ValueError(
            f"enhance_offline: spec_fn returned {spec.shape[2]} frames for {frames_for(padded.shape[-1], hop)}; "
            "it must keep the time axis (dimension 2) aligned"
        )
    out = istft(spec, padded.shape[-1], n_fft, hop)[:, : x.shape[-1]]
    return out[0] if added else out


def enhance_streaming(
    wave: Tensor,
    spec_step: Callable[[Tensor, object], tuple[Tensor, object]],
    spec_state: object,
    n_fft: int = N_FFT,
    hop: int = HOP,
    chunk_frames: int = 1,
    delay_frames: int = 0,
) -> Tensor:
    """Reference real-time driver: stream ``(B, N)`` through analysis, ``spec_step`` and synthesis.

    ``spec_step(frames (B, 2, k, F), state) -> (frames (B, 2, k', F), state)`` is a streaming
    model's ``step``; ``delay_frames`` its look-ahead (as in ``soi``: output frame ``t`` is emitted
    once input frame ``t + delay_frames`` has arrived, and no warm-up frames are emitted). The stream
    is fed ``chunk_frames`` hops at a time; the output is trimmed with
    :func:`trim_streamed`, so it is aligned with ``wave`` and has its length.
    """
    x, added = _as_batch(wave, 2, "enhance_streaming")
    ana, syn = StreamingSTFT(n_fft, hop), StreamingISTFT(n_fft, hop)
    a_state = ana.init_state(x.shape[0], x.device, x.dtype)
    s_state = syn.init_state(x.shape[0], x.device, x.dtype)
    padded = pad_for_streaming(x, n_fft, hop, delay_frames)
    outs = []
    step = chunk_frames * hop
    for start in range(0, padded.shape[-1], step):
        frames, a_state = ana.step(padded[:, start : start + step], a_state)
        frames, spec_state = spec_step(frames, spec_state)
        y, s_state = syn.step(frames, s_state)
        outs.append(y)
    out = trim_streamed(torch.cat(outs, dim=1), x.shape[-1], n_fft, hop)
    return out[0] if added else out
