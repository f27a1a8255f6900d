"""MoE layer: routing math, shared experts, aux-loss-free bias balancing and its TrainerCallback."""

from __future__ import annotations

import pytest
import torch

from kwaiformers.models.onerec.modeling_moe import (
    AuxFreeBiasUpdateCallback,
    OneRecMoE,
    moe_load_stats,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _reference(moe: OneRecMoE, x: torch.Tensor) -> torch.Tensor:
    """Token-by-token re-derivation of the MoE output."""
    out = []
    for token in x:
        logits = moe.gate(token)
        scores = logits.softmax(-1) if moe.router == "softmax" else logits.sigmoid()
        chosen = (scores + moe.e_score_correction_bias).topk(moe.top_k).indices
        gates = scores[chosen]
        if moe.norm_topk_prob:
            gates = gates / gates.sum()
        y = sum(g * moe.experts[int(e)](token) for g, e in zip(gates, chosen))
        if moe.shared_experts is not None:
            y = y + moe.shared_experts(token)
        out.append(y)
    return torch.stack(out)


@pytest.mark.parametrize("router,shared", [("softmax", 0), ("sigmoid", 1)])
def test_moe_matches_reference(router, shared):
    torch.manual_seed(0)
    moe = OneRecMoE(8, num_experts=4, num_experts_per_tok=2, expert_intermediate_size=6,
                    num_shared_experts=shared, router=router)
    moe.e_score_correction_bias.copy_(torch.tensor([0.0, 0.3, -0.2, 0.1]))
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(moe(x), _reference(moe, x.reshape(-1, 8)).view(2, 5, 8))
    assert moe.norm_topk_prob == (router == "sigmoid")


def test_bias_is_used_for_selection_only():
    torch.manual_seed(0)
    moe = OneRecMoE(4, num_experts=3, num_experts_per_tok=1, expert_intermediate_size=4, router="sigmoid",
                    norm_topk_prob=False)
    x = torch.randn(6, 4)
    scores = moe.gate(x).sigmoid()
    moe.e_score_correction_bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
    weights, index = moe.route(x)
    assert (index == 0).all()
    torch.testing.assert_close(weights[:, 0], scores[:, 0])  # gate value = raw affinity


def test_aux_free_bias_update_moves_load_toward_balance():
    torch.manual_seed(0)
    moe = OneRecMoE(8, num_experts=4, num_experts_per_tok=1, expert_intermediate_size=4, router="sigmoid")
    with torch.no_grad():
        moe.gate.weight.normal_(0, 0.1)
        moe.gate.weight[0] += 1.0  # expert 0 wins for inputs with positive mean
    x = torch.randn(256, 8).abs()
    moe.train()

    def imbalance() -> float:
        moe(x)
        stats = moe_load_stats(torch.nn.ModuleList([moe]))
        return stats["moe/max_load_ratio"]

    start = imbalance()
    assert start > 3.0  # nearly every token goes to expert 0
    callback = AuxFreeBiasUpdateCallback(update_speed=0.05)
    moe.tokens_per_expert.zero_()
    ratios = []
    for _ in range(60):
        moe(x)
        callback.on_optimizer_step(None, None, None, model=torch.nn.ModuleList([moe]))
        ratios.append(imbalance())
        moe.tokens_per_expert.zero_()
    assert moe.e_score_correction_bias[0] < 0 < moe.e_score_correction_bias[1:].max()
    assert min(ratios[-10:]) < 1.6 < start
    assert sum(ratios[-10:]) / 10 < start / 2


def test_callback_reads_speed_from_config_and_validates():
    with pytest.raises(ValueError, match="update_speed"):
        AuxFreeBiasUpdateCallback(update_speed=-1.0)
    moe = OneRecMoE(4, num_experts=2, num_experts_per_tok=1, expert_intermediate_size=4)
    model = torch.nn.Module()
    model.moe = moe
    model.config = type("C", (), {"aux_free_bias_update_speed": 0.5})()
    moe.tokens_per_expert.copy_(torch.tensor([3.0, 1.0]))
    AuxFreeBiasUpdateCallback().on_optimizer_step(None, None, None, model=model)
    torch.testing.assert_close(moe.e_score_correction_bias, torch.tensor([-0.5, 0.5]))
    assert moe.tokens_per_expert.sum() == 0
    with pytest.raises(ValueError, match="router"):
        OneRecMoE(4, 2, 1, 4, router="relu")
