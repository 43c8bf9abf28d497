"""Speech quality metrics: SI-SNR (torch, differentiable) and optional PESQ / STOI.

PESQ and STOI wrap the PyPI packages ``pesq`` and ``pystoi`` when they are installed; they are not
dependencies of ``soi`` (``pip install pesq pystoi``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

__all__ = ["si_snr", "si_snr_improvement", "neg_si_snr_loss", "pesq_score", "stoi_score"]


def _pair(estimate: Tensor, target: Tensor, what: str) -> tuple[Tensor, Tensor]:
    if estimate.shape != target.shape:
        raise ValueError(f"{what}: estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ in shape")
    if estimate.dim() not in (1, 2):
        raise ValueError(f"{what}: expected (N,) or (B, N) signals, got shape {tuple(estimate.shape)}")
    if estimate.shape[-1] == 0:
        raise ValueError(f"{what}: the signals are empty")
    return estimate, target


def si_snr(estimate: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant signal-to-noise ratio in dB, per item.

    Both signals are made zero-mean; the target is scaled to its projection onto the estimate's
    direction, so the score ignores gain. ``eps`` keeps silent or perfect inputs finite
    (about ``10*log10(1/eps)`` dB at most).

    Args:
        estimate, target: ``(B, N)`` or ``(N,)``.

    Returns:
        ``(B,)`` (or a scalar for 1-d inputs).
    """
    estimate, target = _pair(estimate, target, "si_snr")
    est = estimate - estimate.mean(-1, keepdim=True)
    tgt = target - target.mean(-1, keepdim=True)
    scale = (est * tgt).sum(-1, keepdim=True) / (tgt.square().sum(-1, keepdim=True) + eps)
    projection = scale * tgt
    residual = est - projection
    ratio = (projection.square().sum(-1) + eps) / (residual.square().sum(-1) + eps)
    return 10 * torch.log10(ratio)


def si_snr_improvement(estimate: Tensor, noisy: Tensor, clean: Tensor, eps: float = 1e-8) -> Tensor:
    """SI-SNRi in dB: ``si_snr(estimate, clean) - si_snr(noisy, clean)``, per item ``(B,)``."""
    return si_snr(estimate, clean, eps) - si_snr(noisy, clean, eps)


def neg_si_snr_loss(estimate: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Training loss: ``-mean(si_snr(estimate, target))`` over the batch, a scalar."""
    return -si_snr(estimate, target, eps).mean()


def _optional(module: str, package: str, metric: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{metric} needs the optional package '{package}', which is not installed: pip install {package}"
        ) from err


def _as_numpy_items(estimate: Tensor, target: Tensor, what: str) -> list[tuple[np.ndarray, np.ndarray]]:
    estimate, target = _pair(estimate, target, what)
    est = estimate.detach().to("cpu", torch.float64).reshape(-1, estimate.shape[-1]).numpy()
    tgt = target.detach().to("cpu", torch.float64).reshape(-1, target.shape[-1]).numpy()
    return list(zip(est, tgt, strict=True))


def pesq_score(estimate: Tensor, target: Tensor, sample_rate: int = 16000, mode: str | None = None) -> Tensor:
    """PESQ (ITU-T P.862) per item ``(B,)``, via the optional ``pesq`` package.

    ``mode``: ``"wb"`` (16 kHz, the default there) or ``"nb"`` (8 kHz, the default there).
    """
    pesq = _optional("pesq", "pesq", "pesq_score")
    mode = mode or ("wb" if sample_rate == 16000 else "nb")
    scores = [pesq.pesq(sample_rate, t, e, mode) for e, t in _as_numpy_items(estimate, target, "pesq_score")]
    out = torch.tensor(scores, dtype=torch.float64)
    return out if estimate.dim() == 2 else out[0]


def stoi_score(estimate: Tensor, target: Tensor, sample_rate: int = 16000, extended: bool = False) -> Tensor:
    """STOI (or extended STOI) per item ``(B,)``, via the optional ``pystoi`` package."""
    pystoi = _optional("pystoi", "pystoi", "stoi_score")
    scores = [
        pystoi.stoi(t, e, sample_rate, extended=extended) for e, t in _as_numpy_items(estimate, target, "stoi_score")
    ]
    out = torch.tensor(scores, dtype=torch.float64)
    return out if estimate.dim() == 2 else out[0]
