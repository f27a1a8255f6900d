"""The personalisation diagnostic (``kwaiformers.evaluation.recommendation``) on a tiny task where
the user context determines the target: a model trained on it is personalised, the same model
trained with the contexts shuffled (it can only learn popularity) is context-blind."""

from __future__ import annotations

import math

import pytest
import torch
from onerec_testkit import LEVELS, make_batch, v2_config

from kwaiformers.evaluation.recommendation import (
    PersonalizationCriteria,
    codes_popularity_nll,
    format_personalization,
    personalization_diagnostic,
)
from kwaiformers.models.onerec.item_index import SemanticIdIndex

NUM_ITEMS = 12


def _task(seed: int, n: int = 64):
    """Users who watched one item over and over; their target is the next item (mod 12)."""
    codes = torch.tensor([[i % 5, (i // 5) % 6, (i * 3) % 7] for i in range(NUM_ITEMS)])
    batch = make_batch(batch_size=n, seed=seed)
    gi = torch.Generator().manual_seed(seed + 1)
    last = torch.randint(0, NUM_ITEMS, (n,), generator=gi)
    hist = last[:, None].expand(-1, batch["short_sids"].shape[1])
    batch["short_sids"] = codes[hist]
    batch["short_mask"] = torch.ones_like(batch["short_mask"])
    batch["target_item_id"] = (last + 1) % NUM_ITEMS
    batch["target_sids"] = codes[batch["target_item_id"]]
    batch["user_id"] = torch.arange(n) + 1000 * seed
    return batch, codes


def _train(shuffle: bool):
    from kwaiformers.models.onerec_v2.modeling_onerec_v2 import OneRecV2ForGenerativeRecommendation

    torch.manual_seed(0)
    model = OneRecV2ForGenerativeRecommendation(v2_config(hidden_size=32, intermediate_size=64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        batch, _ = _task(step)
        if shuffle:  # context no longer tells the target: only popularity can be learnt
            batch["target_sids"] = batch["target_sids"][torch.randperm(len(batch["target_sids"]))]
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_diagnostic_tells_personalised_from_context_blind():
    _, codes = _task(0)
    index = SemanticIdIndex.from_codes(codes, LEVELS)
    train_sids = torch.cat([_task(s)[0]["target_sids"] for s in range(40)])
    val = [_task(500 + s)[0] for s in range(2)]
    good = personalization_diagnostic(_train(False), val, index, train_sids, k=3, beam_size=12)
    blind = personalization_diagnostic(_train(True), val, index, train_sids, k=3, beam_size=12)
    assert good["personalised"] and not good["failed"], good
    assert good["loss_gain"] > 0.5 and good["distinct_items"] == NUM_ITEMS
    assert good["first_level_kl"] > 0.5 and good["mean_jaccard"] < 0.4
    assert not blind["personalised"], blind
    assert blind["loss_gain"] < 0.05 and blind["first_level_kl"] < 0.05 and blind["mean_jaccard"] > 0.8
    assert any("popularity" in f for f in blind["failed"]) and any("Jaccard" in f for f in blind["failed"])
    assert good["num_users"] == 128 and "PERSONALISED" in format_personalization(good)
    assert "CONTEXT-BLIND" in format_personalization(blind)


def test_codes_popularity_nll_matches_counting():
    train = torch.tensor([[0, 0], [0, 1], [0, 1], [1, 0]])
    ev = torch.tensor([[0, 1], [1, 1]])
    nll = codes_popularity_nll(train, ev, [2, 2], alpha=0.5)
    # level 0: P(0) = 3.5/5, P(1) = 1.5/5; level 1 | prefix: P(1|0) = 2.5/4, P(1|1) = 0.5/2
    assert nll[0] == pytest.approx(-(math.log(3.5 / 5) + math.log(1.5 / 5)) / 2)
    assert nll[1] == pytest.approx(-(math.log(2.5 / 4) + math.log(0.5 / 2)) / 2)
    with pytest.raises(ValueError, match="one column per level"):
        codes_popularity_nll(train, ev, [2, 2, 2])
    with pytest.raises(ValueError, match="max_mean_jaccard"):
        PersonalizationCriteria(max_mean_jaccard=2.0)
