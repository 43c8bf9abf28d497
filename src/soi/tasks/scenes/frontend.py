"""Streaming log-mel front end for acoustic scene classification, equal offline and hop by hop.

Defaults (:class:`LogMelConfig`): 16 kHz, a 40 ms periodic Hann window (``n_fft = 640``), a 20 ms
hop (``hop = 320``: 50 frames per second), 64 mel bands from 0 Hz to the Nyquist frequency (the
Slaney-normalised filters of ``librosa.filters.mel``), and ``log(power + 1e-6)`` per band.

A frame is ``torch.stft`` of one window (no centring). Causal alignment, as the speech STFT
(:mod:`soi.tasks.speech.stft`): frame ``t`` covers samples ``t*hop - (n_fft - hop) .. t*hop + hop - 1``
(zeros before sample 0), so each hop of new samples completes exactly one frame with no look-ahead,
and ``N`` samples make ``ceil(N / hop)`` frames (the tail zero padded to a whole hop).

Layout: ``(B, 1, T, n_mels)``, time in dimension 2, the input every ``soi`` 2-d model takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.state import State, StreamingModule

__all__ = ["LogMelConfig", "LogMelState", "StreamingLogMel", "log_mel", "mel_filters"]


@dataclass(frozen=True)
class LogMelConfig:
    """The front end's parameters (see the module docstring); ``f_max=None`` is ``sample_rate / 2``."""

    sample_rate: int = 16000
    n_fft: int = 640
    hop: int = 320
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    floor: float = 1e-6

    def __post_init__(self) -> None:
        for name, low in (("sample_rate", 1), ("n_fft", 2), ("hop", 1), ("n_mels", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(
                    f"LogMelConfig.{name} must be an integer >= {low}, got {v!r}"
                )
        if self.hop > self.n_fft:
            raise ValueError(
                f"LogMelConfig: hop must be <= n_fft = {self.n_fft} (no sample skipped), got {self.hop}"
            )
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        if not 0 <= self.f_min < f_max <= nyquist:
            raise ValueError(
                f"LogMelConfig: expected 0 <= f_min < f_max <= {nyquist:g} Hz, got f_min={self.f_min}, f_max={self.f_max}"
            )
        if not self.floor > 0:
            raise ValueError(f"LogMelConfig.floor must be > 0, got {self.floor}")

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop


@lru_cache(maxsize=8)
def _filters(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None
) -> Tensor:
    try:
        import librosa
    except ImportError as err:
        raise ImportError(
            "the scene front end needs librosa for its mel filters: pip install 'soi[scenes]' (bash setup.sh scenes)"
        ) from err
    import numpy as np

    bank = librosa.filters.mel(
        sr=sample_rate,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=f_min,
        fmax=f_max,
        dtype=np.float64,
    )
    return torch.from_numpy(bank)


def mel_filters(config: LogMelConfig = LogMelConfig()) -> Tensor:
    """The mel filter bank ``(n_mels, n_fft // 2 + 1)`` in float64 (``librosa.filters.mel``, Slaney)."""
    return _filters(
        config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max
    ).clone()


def _frames(
    padded: Tensor, window: Tensor, bank: Tensor, config: LogMelConfig
) -> Tensor:
    """Log-mel frames of an aligned signal ``(B, L)``, ``L = n_fft - hop + k*hop`` -> ``(B, 1, k, n_mels)``."""
    spec = torch.stft(
        padded,
        config.n_fft,
        config.hop,
        win_length=config.n_fft,
        window=window,
        center=False,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # (B, F, k)
    mel = torch.einsum("mf,bfk->bkm", bank, power)
    return torch.log(mel + config.floor).unsqueeze(1)


def _samples(x: Tensor, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        got = (
            f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        )
        raise ValueError(f"{what}: expected floating-point samples (B, N), got {got}")
    return x


def log_mel(wave: Tensor, config: LogMelConfig = LogMelConfig()) -> Tensor:
    """Offline log-mel spectrogram with the streaming alignment.

    Args:
        wave: ``(B, N)`` samples at ``config.sample_rate``.

    Returns:
        ``(B, 1, ceil(N / hop), n_mels)``, equal frame for frame to :class:`StreamingLogMel` fed the
        same samples (zero padded to a whole hop).
    """
    x = _samples(wave, "log_mel")
    frames = -(-x.shape[1] // config.hop)
    if frames == 0:
        return x.new_zeros((x.shape[0], 1, 0, config.n_mels))
    padded = F.pad(x, (config.n_fft - config.hop, frames * config.hop - x.shape[1]))
    window = torch.hann_window(
        config.n_fft, periodic=True, dtype=torch.float64, device=x.device
    ).to(x.dtype)
    return _frames(
        padded, window, mel_filters(config).to(device=x.device, dtype=x.dtype), config
    )


@dataclass
class LogMelState(State):
    """State of :class:`StreamingLogMel`.

    Attributes:
        history: the last ``n_fft - hop`` input samples, ``(B, n_fft - hop)`` (zeros at the start).
    """

    history: Tensor


class StreamingLogMel(StreamingModule):
    """Streaming log-mel analysis: chunks of ``k * hop`` samples ``(B, k*hop)`` -> ``(B, 1, k, n_mels)``,
    equal to :func:`log_mel`.

    >>> front = StreamingLogMel()
    >>> state = front.init_state(batch_size=1)
    >>> frames, state = front.step(torch.zeros(1, 320), state)   # (1, 1, 1, 64)
    """

    def __init__(self, config: LogMelConfig = LogMelConfig()) -> None:
        super().__init__()
        self.config = config
        # Kept in float64 and cast per step, so that float64 streams get exact filters.
        self.register_buffer(
            "window",
            torch.hann_window(config.n_fft, periodic=True, dtype=torch.float64),
            persistent=False,
        )
        self.register_buffer("bank", mel_filters(config), persistent=False)

    @property
    def receptive_field(self) -> int:
        """Input samples one frame depends on."""
        return self.config.n_fft

    @property
    def stride(self) -> int:
        """Input samples per frame."""
        return self.config.hop

    def frames_for(self, num_samples: int) -> int:
        """Frames made from ``num_samples`` samples: ``ceil(num_samples / hop)``."""
        return -(-num_samples // self.config.hop)

    def init_state(self, batch_size: int, device=None, dtype=None) -> LogMelState:
        history = torch.zeros(
            batch_size,
            self.config.n_fft - self.config.hop,
            device=device,
            dtype=dtype or torch.get_default_dtype(),
        )
        return LogMelState(**self._new_state_args(batch_size), history=history)

    def step(self, x: Tensor, state: LogMelState) -> tuple[Tensor, LogMelState]:
        """``x``: ``(B, k * hop)`` samples, ``k >= 0`` -> ``(B, 1, k, n_mels)`` and the new state."""
        _samples(x, "StreamingLogMel.step")
        self._check_state(x, state)
        self._check_like(x, state.history)
        n, hop = x.shape[1], self.config.hop
        if n % hop:
            raise ValueError(
                f"StreamingLogMel.step: the chunk has {n} samples, not a multiple of hop={hop}; "
                "buffer the input into whole hops (pad the end of a stream with zeros)"
            )
        if n == 0:
            return x.new_zeros((x.shape[0], 1, 0, self.config.n_mels)), state
        buf = torch.cat([state.history, x], dim=1)
        window, bank = self.window.to(x.dtype), self.bank.to(x.dtype)
        frames = _frames(buf, window, bank, self.config)
        return frames, LogMelState(state.owner, state.batch_size, history=buf[:, n:])

    def forward(self, x: Tensor) -> Tensor:
        """Offline :func:`log_mel` of ``(B, N)``; inside ``streaming()``, one :meth:`step`."""
        if self.is_streaming:
            return super().forward(x)
        return log_mel(x, self.config)

    def extra_repr(self) -> str:
        c = self.config
        return f"sample_rate={c.sample_rate}, n_fft={c.n_fft}, hop={c.hop}, n_mels={c.n_mels}"
