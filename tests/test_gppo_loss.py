"""gppo_per_token_loss against independent re-derivations (Klear-Reasoner Eq. 7, dual clip)."""

from __future__ import annotations

import pytest
import torch

from kwaiformers.trainers.losses import gppo_per_token_loss

EPS_L, EPS_H = 0.2, 0.28


def _random_inputs(seed: int, batch: int = 16, length: int = 12, spread: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, length, generator=gen, dtype=torch.float64) * 3 - 0.05
    # log-ratios spread wide enough to populate every region (|log r| up to ~3 -> r in [0.05, 20])
    log_ratio = (torch.rand(batch, length, generator=gen, dtype=torch.float64) * 2 - 1) * 3 * spread
    logps = (old + log_ratio).clamp(max=0.0).requires_grad_(True)
    adv = torch.randn(batch, generator=gen, dtype=torch.float64)
    return logps, old, adv


def _ppo_value(logps, old, adv, dual_c=None):
    """Straightforward PPO/DAPO decoupled clip (+ dual clip) value."""
    r = torch.exp(logps - old)
    a = adv[:, None]
    value = -torch.min(r * a, torch.clamp(r, 1 - EPS_L, 1 + EPS_H) * a)
    if dual_c is not None:
        value = torch.where(a < 0, torch.min(value, -dual_c * a), value)
    return value


def _expected_grad(logps, old, adv, beta_low=1.0, beta_high=1.0, dual_c=None):
    """d loss / d logp per region, written from the paper's table: -w * A."""
    r = torch.exp(logps.detach() - old)
    a = adv[:, None].expand_as(r)
    w = r.clone()
    high = (a > 0) & (r > 1 + EPS_H)
    low = (a < 0) & (r < 1 - EPS_L)
    w[high] = beta_high * (1 + EPS_H)
    w[low] = beta_low * (1 - EPS_L)
    if dual_c is not None:
        w[(a < 0) & (r > dual_c)] = 0.0
    return -w * a


def _klear_construct(logps, old, adv, dual_c=None):
    """Klear's own construction: tensor bounds (1 -+ eps) * r / sg(r) through torch.clamp + max."""
    r = torch.exp(logps - old)
    a = adv[:, None]
    lo = (1 - EPS_L) / r.detach() * r
    hi = (1 + EPS_H) / r.detach() * r
    loss = torch.max(-a * r, -a * torch.clamp(r, lo, hi))
    if dual_c is not None:
        loss = torch.where(a < 0, torch.min(loss, -a * dual_c), loss)
    return loss


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dual_c", [None, 3.0, 10.0])
def test_forward_equals_ppo_and_gradient_per_region(seed, dual_c):
    logps, old, adv = _random_inputs(seed)
    loss = gppo_per_token_loss(logps, old, adv, EPS_L, EPS_H, dual_clip_c=dual_c)
    torch.testing.assert_close(loss, _ppo_value(logps, old, adv, dual_c), rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(loss.sum(), logps)
    torch.testing.assert_close(grad, _expected_grad(logps, old, adv, dual_c=dual_c))
    # every region is populated, so the test is meaningful
    r = torch.exp(logps.detach() - old)
    a = adv[:, None]
    assert ((a > 0) & (r > 1 + EPS_H)).any() and ((a < 0) & (r < 1 - EPS_L)).any()
    if dual_c is not None:
        assert ((a < 0) & (r > dual_c)).any()


@pytest.mark.parametrize("dual_c", [None, 10.0])
def test_matches_klear_construct(dual_c):
    logps, old, adv = _random_inputs(7)
    ours = gppo_per_token_loss(logps, old, adv, EPS_L, EPS_H, dual_clip_c=dual_c)
    (g_ours,) = torch.autograd.grad(ours.sum(), logps)
    theirs = _klear_construct(logps, old, adv, dual_c)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), logps)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(g_ours, g_theirs)


def test_gradient_differs_from_ppo_only_in_clipped_regions():
    logps, old, adv = _random_inputs(3)
    loss = gppo_per_token_loss(logps, old, adv, EPS_L, EPS_H)
    (g_gppo,) = torch.autograd.grad(loss.sum(), logps)
    (g_ppo,) = torch.autograd.grad(_ppo_value(logps, old, adv).sum(), logps)
    r = torch.exp(logps.detach() - old)
    a = adv[:, None].expand_as(r)
    clipped = ((a > 0) & (r > 1 + EPS_H)) | ((a < 0) & (r < 1 - EPS_L))
    assert torch.all(g_ppo[clipped] == 0)
    assert torch.all(g_gppo[clipped] != 0)
    torch.testing.assert_close(g_gppo[~clipped], g_ppo[~clipped])


def test_betas_scale_only_the_gradient():
    logps, old, adv = _random_inputs(4)
    loss = gppo_per_token_loss(logps, old, adv, EPS_L, EPS_H, beta_low=0.5, beta_high=0.75)
    torch.testing.assert_close(loss, _ppo_value(logps, old, adv), rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(loss.sum(), logps)
    torch.testing.assert_close(grad, _expected_grad(logps, old, adv, 0.5, 0.75))


def test_worked_example_from_design_note():
    # r = [1.5, 0.5, 1.5, 0.5, 1.1, 20], A signs [+,-,-,+,+,-], c=10 -> dL/dlogpi
    r = torch.tensor([[1.5, 0.5, 1.5, 0.5, 1.1, 20.0]], dtype=torch.float64)
    old = torch.full_like(r, -5.0)
    logps = (old + r.log()).requires_grad_(True)
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0, 1.0, -1.0]], dtype=torch.float64)
    loss = gppo_per_token_loss(logps, old, adv, EPS_L, EPS_H, dual_clip_c=10.0)
    (grad,) = torch.autograd.grad(loss.sum(), logps)
    expected = torch.tensor([[-1.28, 0.8, 1.5, -0.5, -1.1, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(grad, expected)


def test_sequence_level_and_token_advantages_shapes():
    logps, old, adv = _random_inputs(5, batch=4, length=3)
    seq = gppo_per_token_loss(logps[:, :1], old[:, :1], adv, EPS_L, EPS_H)
    assert seq.shape == (4, 1)
    tok = gppo_per_token_loss(logps, old, adv[:, None].expand(4, 3), EPS_L, EPS_H)
    torch.testing.assert_close(tok, gppo_per_token_loss(logps, old, adv, EPS_L, EPS_H))


def test_validation_errors():
    logps, old, adv = _random_inputs(6, batch=2, length=3)
    with pytest.raises(ValueError, match="old_per_token_logps"):
        gppo_per_token_loss(logps, old[:, :2], adv, EPS_L, EPS_H)
    with pytest.raises(ValueError, match="advantages"):
        gppo_per_token_loss(logps, old, adv[:1], EPS_L, EPS_H)
    with pytest.raises(ValueError, match="dual_clip_c"):
        gppo_per_token_loss(logps, old, adv, EPS_L, EPS_H, dual_clip_c=0.5)
    with pytest.raises(ValueError, match="epsilon_low"):
        gppo_per_token_loss(logps, old, adv, 1.5, EPS_H)
    with pytest.raises(ValueError, match="beta"):
        gppo_per_token_loss(logps, old, adv, EPS_L, EPS_H, beta_low=-1.0)
    with pytest.raises(TypeError, match="advantages"):
        gppo_per_token_loss(logps, old, [1.0, 2.0], EPS_L, EPS_H)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_token_logps"):
        gppo_per_token_loss(logps[0], old[0], adv, EPS_L, EPS_H)
