"""A streaming, causal peak limiter: the last stage of ``soi enhance`` (streaming and offline alike).

No sample it emits is beyond :attr:`PeakLimiter.ceiling` (-0.1 dBFS by default), so a PCM writer
never clips, whatever level the model produces. It needs no look-ahead, so it adds no latency:

* **envelope**: a peak follower with instant attack and exponential release,
  ``e[n] = max(|x[n]|, e[n-1] * exp(-1 / (release * rate)))`` (release 80 ms by default), per channel
  (each channel is its own stream, as the model treats it);
* **soft knee**: the envelope ``e`` is mapped to the output peak ``f(e) = e`` up to the threshold
  ``t`` (-1 dBFS by default) and ``f(e) = t + (c - t) tanh((e - t) / (c - t))`` above it, smooth
  (slope 1 at ``t``) and never reaching the ceiling ``c``;
* **gain** ``g[n] = f(e[n]) / e[n]`` (1 below the threshold, so a signal that never reaches -1 dBFS
  passes unchanged, bit for bit); ``|y[n]| = |x[n]| g[n] <= f(e[n]) < c`` because ``e[n] >= |x[n]|``.

The instant attack is what makes the guarantee hold without look-ahead (a transient is turned down
on the sample it arrives); the release lets the gain ride back up smoothly instead of distorting
each waveform peak. The recursion is evaluated a block at a time with one cumulative maximum in the
log domain (``log e[n] = max(log e[n-1] + log r, log |x[n]|)`` is a running maximum of
``log |x[k]| - k log r``), in float64, so a block of any length costs a few vectorised passes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["PeakLimiter"]


class PeakLimiter:
    """Causal peak limiter for ``channels`` streams at ``rate`` Hz (see the module docstring).

    ``limiter(x)`` takes ``(C, n)`` samples (any ``n >= 0``) and returns them limited, in ``x``'s
    dtype, keeping the envelope of each channel for the next block, so a stream cut into blocks
    any way gives the same samples (up to float64 rounding of the gain, where the limiter acts).
    """

    def __init__(
        self,
        rate: int,
        channels: int = 1,
        ceiling_db: float = -0.1,
        threshold_db: float = -1.0,
        release_s: float = 0.08,
    ) -> None:
        if not ceiling_db <= 0 or not threshold_db < ceiling_db:
            raise ValueError(f"PeakLimiter: need threshold_db < ceiling_db <= 0, got {threshold_db} and {ceiling_db}")
        if rate <= 0 or release_s <= 0 or channels < 1:
            raise ValueError(f"PeakLimiter: rate, release_s and channels must be positive, got {rate}, {release_s}, {channels}")
        self.rate = rate
        self.channels = channels
        self.ceiling = 10 ** (ceiling_db / 20)
        self.threshold = 10 ** (threshold_db / 20)
        self.release_s = release_s
        self._log_decay = -1.0 / (release_s * rate)  # log of the per-sample release factor
        self._log_env = torch.full((channels, 1), -math.inf, dtype=torch.float64)
        self.limited = 0  # samples turned down so far
        self.peak_in = 0.0  # the largest |x| seen so far

    def reset(self) -> None:
        self._log_env.fill_(-math.inf)
        self.limited, self.peak_in = 0, 0.0

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[0] != self.channels:
            raise ValueError(f"PeakLimiter: expected ({self.channels}, n) samples, got {tuple(x.shape)}")
        n = x.shape[1]
        if n == 0:
            return x
        xd = x.to(torch.float64)
        top = float(xd.abs().max())
        self.peak_in = max(self.peak_in, top)
        k = torch.arange(n, dtype=torch.float64) * self._log_decay  # k log r
        if top <= self.threshold and float(self._log_env.max()) <= math.log(self.threshold):
            # Nothing reaches the threshold in this block (the fast path of quiet audio): the gain
            # is 1; only the envelope at the block's end is needed, one maximum.
            tail = torch.log(xd.abs().clamp_min(1e-300)) + (k[-1] - k)
            self._log_env = torch.maximum(tail.max(dim=1, keepdim=True).values, self._log_env + k[-1] + self._log_decay)
            return x
        log_abs = torch.log(xd.abs().clamp_min(1e-300))
        running = torch.cummax(log_abs - k, dim=1).values + k
        log_env = torch.maximum(running, self._log_env + k + self._log_decay)
        self._log_env = log_env[:, -1:].clone()
        env = torch.exp(log_env)
        t, c = self.threshold, self.ceiling
        over = env > t
        if not bool(over.any()):
            return x
        peak = t + (c - t) * torch.tanh((env - t) / (c - t))
        gain = torch.where(over, peak / env, torch.ones_like(env))
        self.limited += int((gain < 1).sum())
        return (xd * gain).to(x.dtype)
