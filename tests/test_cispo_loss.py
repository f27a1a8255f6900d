"""cispo_per_token_loss against its formula (MiniMax-M1 Eq. 4-5) and TRL 1.16's expression; and
the zero-beta GPPO loss the benchmark uses as GRPO clip-higher against PPO's clipped surrogate."""

from __future__ import annotations

import pytest
import torch

from kwaiformers.trainers.losses import cispo_per_token_loss, gppo_per_token_loss


def _inputs(seed: int, batch: int = 64, length: int = 24):
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, length, generator=gen, dtype=torch.float64) * 3 - 0.05
    log_ratio = (torch.rand(batch, length, generator=gen, dtype=torch.float64) * 2 - 1) * 2.5
    logps = (old + log_ratio).clamp(max=0.0).requires_grad_(True)
    adv = torch.randn(batch, generator=gen, dtype=torch.float64)
    return logps, old, adv


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("eps_low", [None, 0.2, 0.5])
@pytest.mark.parametrize("eps_high", [0.0, 0.28, 1.0])
def test_cispo_value_and_gradient_match_formula(seed, eps_low, eps_high):
    logps, old, adv = _inputs(seed)
    loss = cispo_per_token_loss(logps, old, adv, eps_high, eps_low)
    r = torch.exp(logps.detach() - old)
    lo = 0.0 if eps_low is None else 1.0 - eps_low
    weight = torch.where(r > 1 + eps_high, torch.full_like(r, 1 + eps_high), r)
    weight = torch.where(r < lo, torch.full_like(r, lo), weight)
    torch.testing.assert_close(loss, -weight * adv[:, None] * logps.detach(), rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(loss.sum(), logps)
    # every token keeps the REINFORCE gradient with the clipped (never zero) IS weight
    torch.testing.assert_close(grad, -weight * adv[:, None], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_cispo_equals_trl_expression(seed):
    """TRL 1.16 GRPOTrainer, loss_type="cispo": -clamp(r, max=epsilon_high).detach() * A * logp,
    where TRL's epsilon_high is the absolute cap (1.28 <-> our 0.28)."""
    logps, old, adv = _inputs(seed)
    ours = cispo_per_token_loss(logps, old, adv.unsqueeze(1), 0.28)
    coef_1 = torch.exp(logps - old)
    trl = -torch.clamp(coef_1, max=1.28).detach() * adv.unsqueeze(1) * logps
    torch.testing.assert_close(ours, trl, rtol=0, atol=1e-12)
    g_ours = torch.autograd.grad(ours.sum(), logps)[0]
    g_trl = torch.autograd.grad(trl.sum(), logps)[0]
    torch.testing.assert_close(g_ours, g_trl, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_zero_beta_gppo_is_ppo_clip_higher(seed):
    """beta_low = beta_high = 0 gives DAPO/TRL clip-higher exactly (value and gradient)."""
    logps, old, adv = _inputs(seed)
    ours = gppo_per_token_loss(logps, old, adv, 0.2, 0.28, beta_low=0.0, beta_high=0.0)
    r = torch.exp(logps - old)
    a = adv[:, None]
    ppo = -torch.min(r * a, torch.clamp(r, 0.8, 1.28) * a)
    torch.testing.assert_close(ours, ppo, rtol=0, atol=1e-12)
    g_ours = torch.autograd.grad(ours.sum(), logps)[0]
    g_ppo = torch.autograd.grad(ppo.sum(), logps)[0]
    torch.testing.assert_close(g_ours, g_ppo, rtol=0, atol=1e-12)


def test_cispo_validation():
    logps, old, adv = _inputs(0, batch=2, length=3)
    with pytest.raises(ValueError, match="epsilon_high"):
        cispo_per_token_loss(logps, old, adv, -0.1)
    with pytest.raises(ValueError, match="epsilon_low"):
        cispo_per_token_loss(logps, old, adv, 0.28, 1.0)
    with pytest.raises(ValueError, match="old_per_token_logps"):
        cispo_per_token_loss(logps, old[:, :2], adv, 0.28)
    with pytest.raises(ValueError, match="advantages"):
        cispo_per_token_loss(logps, old, adv[:1], 0.28)
    with pytest.raises(TypeError, match="per_token_logps"):
        cispo_per_token_loss(logps.tolist(), old, adv, 0.28)
