"""ECPO and GBPO losses: values and gradients on every branch vs independent re-derivations."""

from __future__ import annotations

import math

import pytest
import torch

from kwaiformers.trainers.losses import ecpo_loss, gbpo_loss

EPS, DELTA = 0.2, 0.1


def ref_ecpo(p: float, p_old: float | None, a: float) -> tuple[float, float]:
    """(loss, d loss / d log p) from the TR formula, written in probability space."""
    if p_old is None:
        p_old = p
    p_prime = max(p / (1 + EPS + DELTA), p_old)
    r = p / p_prime
    unclipped, clipped = r * a, min(max(r, 1 - EPS), 1 + EPS) * a
    loss = -min(unclipped, clipped)
    # d r / d log p = r (denominator is stop-gradient); the clipped branch is constant
    if a == 0:
        grad = 0.0
    elif unclipped <= clipped:
        grad = -a * r
    else:
        grad = 0.0
    return loss, grad


def ref_gbpo(p: float, p_old: float | None, a: float) -> tuple[float, float]:
    if p_old is None:
        p_old = p
    den = max(p_old, p) if a >= 0 else max(p_old, 1 - p)
    return -a * p / den, -a * p / den


def _run(fn, ps, olds, advs, **kw):
    logps = torch.tensor([math.log(p) for p in ps], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([math.nan if o is None else math.log(o) for o in olds], dtype=torch.float64)
    adv = torch.tensor(advs, dtype=torch.float64)
    loss = fn(logps=logps, old_logps=old, advantages=adv, **kw)
    loss.sum().backward()
    return loss.detach(), logps.grad


ECPO_CASES = [
    # (p, p_old, A, branch)
    (0.30, 0.30, 1.0, "A>0 ratio 1 (on-policy)"),
    (0.30, 0.20, 1.0, "A>0 ratio 1.5 clipped high (grad 0)"),
    (0.30, 0.28, 1.0, "A>0 ratio inside the clip"),
    (0.10, 0.20, -1.0, "A<0 ratio 0.5 clipped low (grad 0)"),
    (0.20, 0.19, -1.0, "A<0 ratio inside"),
    (0.50, 0.01, -1.0, "A<0 early clip caps ratio at 1+eps+delta"),
    (0.50, 0.01, 1.0, "A>0 early clip region, PPO clip removes grad"),
    (0.40, None, -2.0, "missing pi_old -> sg(pi), ratio 1"),
    (0.40, 0.10, 0.0, "A = 0"),
]


@pytest.mark.parametrize("p,p_old,a,branch", ECPO_CASES, ids=[c[3] for c in ECPO_CASES])
def test_ecpo_value_and_grad(p, p_old, a, branch):
    loss, grad = _run(ecpo_loss, [p], [p_old], [a], epsilon=EPS, delta=DELTA)
    ref_loss, ref_grad = ref_ecpo(p, p_old, a)
    assert loss.item() == pytest.approx(ref_loss, abs=1e-12), branch
    assert grad.item() == pytest.approx(ref_grad, abs=1e-12), branch


def test_ecpo_early_clip_bounds_negative_gradient():
    # pi_old tiny: plain ratio would be 50; the early clip caps it at 1 + eps + delta
    loss, grad = _run(ecpo_loss, [0.5], [0.01], [-1.0], epsilon=EPS, delta=DELTA)
    assert loss.item() == pytest.approx(1 + EPS + DELTA)
    assert abs(grad.item()) == pytest.approx(1 + EPS + DELTA)
    _, info = ecpo_loss(
        logps=torch.tensor([math.log(0.5)]),
        old_logps=torch.tensor([math.log(0.01)]),
        advantages=torch.tensor([-1.0]),
        return_info=True,
    )
    assert info["early_clipped"].item() and not info["clipped_low"].item()


GBPO_CASES = [
    (0.30, 0.50, 1.0, "A>=0 logged pi_old wins"),
    (0.30, 0.10, 1.0, "A>=0 sg(pi) wins (ratio 1)"),
    (0.30, 0.90, -1.0, "A<0 logged pi_old wins"),
    (0.30, 0.10, -1.0, "A<0 1-sg(pi) wins"),
    (0.80, None, -1.0, "A<0 pi_old missing, pi > 0.5"),
    (0.01, None, -1.0, "A<0 pi_old missing, small pi bounded"),
    (0.01, None, 2.0, "A>0 pi_old missing: plain PG"),
    (0.40, 0.20, 0.0, "A = 0"),
]


@pytest.mark.parametrize("p,p_old,a,branch", GBPO_CASES, ids=[c[3] for c in GBPO_CASES])
def test_gbpo_value_and_grad(p, p_old, a, branch):
    loss, grad = _run(gbpo_loss, [p], [p_old], [a])
    ref_loss, ref_grad = ref_gbpo(p, p_old, a)
    assert loss.item() == pytest.approx(ref_loss, abs=1e-12), branch
    assert grad.item() == pytest.approx(ref_grad, abs=1e-12), branch


def test_gbpo_gradient_bounded_by_bce_while_plain_pg_explodes():
    ps = [1e-1, 1e-3, 1e-6]
    for p in ps:
        prob = torch.tensor([p], dtype=torch.float64, requires_grad=True)
        gbpo_loss(logps=prob.log(), old_logps=None, advantages=torch.tensor([-1.0])).sum().backward()
        # d/dpi of GBPO on a negative = 1 / max(pi, 1 - pi) <= BCE-negative gradient 1 / (1 - pi)
        assert prob.grad.item() == pytest.approx(1 / max(p, 1 - p))
        assert prob.grad.item() <= 1 / (1 - p) + 1e-12
        prob2 = torch.tensor([p], dtype=torch.float64, requires_grad=True)
        lp = prob2.log()
        adv = -1.0
        (-adv * torch.exp(lp - lp.detach())).sum().backward()  # plain PG, ratio 1
        assert prob2.grad.item() == pytest.approx(1 / p)  # explodes as pi -> 0
    # bound_active reports where the dynamic term wins
    _, info = gbpo_loss(
        logps=torch.log(torch.tensor([0.3, 0.3, 0.3])),
        old_logps=torch.log(torch.tensor([0.1, 0.9, 0.5])),
        advantages=torch.tensor([1.0, -1.0, -1.0]),
        return_info=True,
    )
    assert info["bound_active"].tolist() == [True, False, True]


@pytest.mark.parametrize("fn", [ecpo_loss, gbpo_loss])
def test_token_level_broadcasts_per_sample_advantages(fn):
    torch.manual_seed(0)
    logps = torch.log(torch.rand(4, 3, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    old = torch.log(torch.rand(4, 3, dtype=torch.float64) * 0.9 + 0.05)
    adv = torch.tensor([1.0, -1.0, 0.0, 2.0], dtype=torch.float64)
    tok = fn(logps=logps, old_logps=old, advantages=adv)
    full = fn(logps=logps, old_logps=old, advantages=adv[:, None].expand(4, 3))
    assert tok.shape == (4, 3)
    torch.testing.assert_close(tok, full)
    # item-level default: one value per sample
    item = fn(logps=logps.sum(-1), old_logps=old.sum(-1), advantages=adv)
    assert item.shape == (4,)


@pytest.mark.parametrize("fn", [ecpo_loss, gbpo_loss])
def test_bad_inputs_raise(fn):
    lp = torch.log(torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="advantages contains NaN"):
        fn(logps=lp, old_logps=None, advantages=torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="advantages has shape"):
        fn(logps=lp, old_logps=None, advantages=torch.tensor([1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="old_logps has shape"):
        fn(logps=lp, old_logps=torch.zeros(3), advantages=torch.ones(2))
    with pytest.raises(ValueError, match="log-probabilities"):
        fn(logps=torch.tensor([0.5, 0.1]), old_logps=None, advantages=torch.ones(2))
    with pytest.raises(TypeError, match="logps must be a torch.Tensor"):
        fn(logps=[0.1], old_logps=None, advantages=torch.ones(1))


def test_extreme_probabilities_never_nan():
    lp = torch.tensor([0.0, -1e-12, -80.0, -float("inf")], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([-90.0, math.nan, 0.0, -1.0], dtype=torch.float64)
    for adv in (torch.ones(4), -torch.ones(4)):
        for fn in (ecpo_loss, gbpo_loss):
            loss = fn(logps=lp, old_logps=old, advantages=adv.double())
            assert torch.isfinite(loss).all()
            (g,) = torch.autograd.grad(loss.sum(), lp)
            assert torch.isfinite(g).all()
