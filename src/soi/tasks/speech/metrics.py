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

__all__ = [
    "si_snr",
    "si_snr_improvement",
    "neg_si_snr_loss",
    "level_matched_si_snr_loss",
    "compressed_spectral_loss",
    "level_db",
    "LOSSES",
    "training_loss",
    "pesq_score",
    "stoi_score",
]


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


def level_matched_si_snr_loss(estimate: Tensor, target: Tensor, reference: Tensor, weight: float = 0.1) -> Tensor:
    """Training loss: ``-si_snr(estimate, target) + weight * level^2``, the batch mean, a scalar.

    SI-SNR alone leaves the output's gain free; the second term, the squared level of the estimate
    against the target in dB (``10 log10`` of their energy ratio), pins it to the speech's level
    without touching the SI-SNR optimum (a gain does not change SI-SNR). Both energies get a floor
    30 dB below the energy of ``reference`` (the noisy input), so a crop that is almost all pause
    cannot blow the term up. At ``weight = 0.1`` a 3 dB level error costs as much as 0.9 dB of SI-SNR.

    Args:
        estimate, target, reference: ``(B, N)`` or ``(N,)``.
    """
    estimate, target = _pair(estimate, target, "level_matched_si_snr_loss")
    reference = _pair(reference, target, "level_matched_si_snr_loss")[0]
    floor = 1e-3 * reference.square().sum(-1) + 1e-10
    level = 10 * torch.log10((estimate.square().sum(-1) + floor) / (target.square().sum(-1) + floor))
    return (weight * level.square() - si_snr(estimate, target)).mean()


def compressed_spectral_loss(
    estimate: Tensor, target: Tensor, reference: Tensor | None = None, power: float = 0.3, complex_weight: float = 0.3,
    n_fft: int = 512, hop: int = 128,
) -> Tensor:  # fmt: skip
    """Compressed spectral MSE (Braun & Tashev, "A consolidated view of loss functions for
    supervised deep learning-based speech enhancement", 2021), a scalar:
    ``(1-w) * MSE(|S|^p, |T|^p) + w * MSE(|S|^p e^{j arg S}, |T|^p e^{j arg T})`` over the STFT bins
    (Hann window ``n_fft``, hop ``hop``), ``p = power``, ``w = complex_weight``.

    Unlike SI-SNR it depends on the estimate's scale, so a model trained with it keeps the
    speech's level. Both signals are first divided by the RMS of ``reference`` (the noisy input,
    per item; default the target), so every item weighs alike whatever its level.

    Args:
        estimate, target, reference: ``(B, N)`` or ``(N,)``.
    """
    estimate, target = _pair(estimate, target, "compressed_spectral_loss")
    ref = target if reference is None else _pair(reference, target, "compressed_spectral_loss")[0]
    norm = ref.square().mean(-1, keepdim=True).add(1e-10).sqrt()
    window = torch.hann_window(n_fft, device=estimate.device, dtype=estimate.dtype)

    def compressed(x: Tensor) -> tuple[Tensor, Tensor]:
        spec = torch.stft(x / norm, n_fft, hop, window=window, return_complex=True)
        mag = spec.abs().add(1e-8)  # the eps keeps the gradient of |S|^p finite in silent bins
        return mag.pow(power), spec / mag

    m_est, u_est = compressed(estimate)
    m_tgt, u_tgt = compressed(target)
    magnitude = (m_est - m_tgt).square().mean()
    complex_ = (m_est * u_est - m_tgt * u_tgt).abs().square().mean()
    return (1 - complex_weight) * magnitude + complex_weight * complex_


def level_db(estimate: Tensor, target: Tensor, eps: float = 1e-10) -> Tensor:
    """Level of ``estimate`` against ``target`` in dB (``10 log10`` of their energy ratio), per item."""
    estimate, target = _pair(estimate, target, "level_db")
    return 10 * torch.log10((estimate.square().sum(-1) + eps) / (target.square().sum(-1) + eps))


LOSSES = ("compressed-spectral", "si-snr", "si-snr-level")
"""Training losses (:func:`training_loss`): ``"compressed-spectral"``
(:func:`compressed_spectral_loss`, scale-aware, but it trains an over-suppressing model),
``"si-snr"`` (:func:`neg_si_snr_loss`, blind to scale: the output's level is arbitrary) and
``"si-snr-level"`` (:func:`level_matched_si_snr_loss`: SI-SNR with the output's level pinned to the
speech's; :class:`soi.train.TrainConfig`'s default)."""


def training_loss(name: str, estimate: Tensor, clean: Tensor, noisy: Tensor) -> Tensor:
    """The training loss ``name`` (:data:`LOSSES`) of a batch, a scalar."""
    if name == "compressed-spectral":
        return compressed_spectral_loss(estimate, clean, noisy)
    if name == "si-snr":
        return neg_si_snr_loss(estimate, clean)
    if name == "si-snr-level":
        return level_matched_si_snr_loss(estimate, clean, noisy)
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")


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
