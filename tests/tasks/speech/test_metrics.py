"""SI-SNR and friends."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from soi.tasks.speech import metrics


def _pair(seed: int = 0, n: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, n, generator=g, dtype=torch.float64), torch.randn(3, n, generator=g, dtype=torch.float64)


def test_scaled_copy_scores_very_high():
    x, _ = _pair()
    score = metrics.si_snr(0.3 * x, x)
    assert score.shape == (3,)
    assert (score > 60).all()


def test_known_snr_of_added_noise():
    x, noise = _pair()
    # Orthogonalise the noise against x so the expected value is exact.
    noise = noise - noise.mean(-1, keepdim=True)
    xc = x - x.mean(-1, keepdim=True)
    noise = noise - (noise * xc).sum(-1, keepdim=True) / xc.square().sum(-1, keepdim=True) * xc
    snr_db = 5.0
    noise = noise * torch.sqrt(xc.square().sum(-1, keepdim=True) / noise.square().sum(-1, keepdim=True) / 10 ** (snr_db / 10))
    torch.testing.assert_close(metrics.si_snr(x + noise, x), torch.full((3,), snr_db, dtype=torch.float64))


def test_independent_noise_is_near_minus_infinity_side():
    x, noise = _pair()
    # Independent white noise: the projection is tiny, so the score is strongly negative (~ -10*log10(N)).
    score = metrics.si_snr(noise, x)
    assert (score < -25).all() and (score > -60).all()


def test_scale_and_offset_invariance():
    x, noise = _pair()
    est = x + 0.5 * noise
    base = metrics.si_snr(est, x)
    torch.testing.assert_close(metrics.si_snr(7.0 * est + 0.2, x), base)
    torch.testing.assert_close(metrics.si_snr(est, 0.01 * x - 3.0), base)


def test_improvement_and_loss():
    x, noise = _pair()
    noisy = x + noise
    better = x + 0.1 * noise
    imp = metrics.si_snr_improvement(better, noisy, x)
    assert imp.shape == (3,)
    torch.testing.assert_close(imp, torch.full((3,), 20.0, dtype=torch.float64), atol=0.5, rtol=0)
    loss = metrics.neg_si_snr_loss(better, x)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, -metrics.si_snr(better, x).mean())


def test_loss_has_gradients_and_unbatched_inputs():
    x, noise = _pair()
    est = (x + noise).requires_grad_()
    metrics.neg_si_snr_loss(est, x).backward()
    assert est.grad is not None and torch.isfinite(est.grad).all()
    assert metrics.si_snr(x[0], x[0]).dim() == 0


def test_silence_stays_finite():
    z = torch.zeros(2, 100)
    assert torch.isfinite(metrics.si_snr(z, z)).all()


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.si_snr(torch.zeros(2, 10), torch.zeros(2, 11))


@pytest.mark.parametrize("fn,package", [(metrics.pesq_score, "pesq"), (metrics.stoi_score, "pystoi")])
def test_optional_metrics_name_their_package(fn, package):
    x, _ = _pair(n=16000)
    if importlib.util.find_spec(package) is None:
        with pytest.raises(ImportError, match=f"pip install {package}"):
            fn(x, x)
    else:  # pragma: no cover - only where the extra is installed
        score = fn(x[:1].float(), x[:1].float())
        assert score.shape == (1,) and not math.isnan(float(score[0]))


def test_compressed_spectral_loss_sees_scale_but_not_level():
    from soi.tasks.speech.metrics import compressed_spectral_loss, level_db

    torch.manual_seed(0)
    clean = torch.randn(3, 8000)
    noisy = clean + 0.5 * torch.randn(3, 8000)
    estimate = clean + 0.1 * torch.randn(3, 8000)
    assert compressed_spectral_loss(clean, clean, noisy).item() == 0
    base = compressed_spectral_loss(estimate, clean, noisy).item()
    # blind to the overall level of the example (normalised by the noisy input's RMS) ...
    for a in (1e-3, 30.0):
        scaled = compressed_spectral_loss(a * estimate, a * clean, a * noisy).item()
        assert scaled == pytest.approx(base, rel=1e-4), f"x{a}: {scaled} against {base}"
    # ... but not to a gain on the estimate alone, unlike SI-SNR
    for g in (0.5, 2.0):
        assert compressed_spectral_loss(g * clean, clean, noisy).item() > base, f"gain {g} not penalised"
    assert level_db(0.5 * clean, clean).sub(-6.0206).abs().max().item() < 1e-3


@pytest.mark.parametrize("gain", [0.25, 0.5, 2.0], ids=lambda g: f"gain{g}")
def test_level_matched_si_snr_loss_pins_the_gain(gain):
    from soi.tasks.speech.metrics import level_matched_si_snr_loss, neg_si_snr_loss

    clean, noise = _pair(1)
    noisy = clean + noise
    estimate = clean + 0.3 * noise
    base = level_matched_si_snr_loss(estimate, clean, noisy).item()
    scaled = level_matched_si_snr_loss(gain * estimate, clean, noisy).item()
    # SI-SNR does not see the gain; the level term does: weight * ((level + 20 log10 gain)^2 - level^2)
    assert neg_si_snr_loss(gain * estimate, clean).item() == pytest.approx(neg_si_snr_loss(estimate, clean).item(), abs=1e-9)
    level = metrics.level_db(estimate, clean)
    expected = (0.1 * ((level + 20 * math.log10(gain)).square() - level.square())).mean().item()
    assert scaled - base == pytest.approx(expected, rel=0.1), f"gain {gain}: penalty {scaled - base:.3f}, expected {expected:.3f}"


def test_level_matched_si_snr_loss_floor_keeps_pauses_finite():
    from soi.tasks.speech.metrics import level_matched_si_snr_loss

    clean, noise = _pair(2)
    silent = torch.zeros_like(clean)
    loss = level_matched_si_snr_loss(0.1 * noise, silent, noise)
    # a floor 30 dB under the input: the level term is at most weight * 30^2 whatever the estimate
    assert torch.isfinite(loss) and loss.item() < 0.1 * 30**2 + 100


def test_training_loss_names():
    clean, noise = _pair(3)
    for name in metrics.LOSSES:
        assert torch.isfinite(metrics.training_loss(name, clean + 0.1 * noise, clean, clean + noise)), name
    with pytest.raises(ValueError, match="unknown loss 'mse'"):
        metrics.training_loss("mse", clean, clean, clean)
