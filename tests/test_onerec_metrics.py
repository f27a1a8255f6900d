"""Recommendation metrics on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from kwaiformers.evaluation.recommendation import (
    legality_rate,
    ndcg_at_k,
    popularity_recommendations,
    recall_at_k,
    recommendation_metrics,
)


def test_recall_ndcg_single_target():
    rec = torch.tensor([[3, 1, 2], [5, -1, 4], [7, 8, 9]])
    target = torch.tensor([1, 4, 0])
    assert recall_at_k(rec, target, 1) == 0.0
    assert recall_at_k(rec, target, 2) == pytest.approx(1 / 3)
    assert recall_at_k(rec, target, 3) == pytest.approx(2 / 3)
    expected = (1 / math.log2(3) + 1 / math.log2(4) + 0) / 3
    assert ndcg_at_k(rec, target, 3) == pytest.approx(expected)
    assert legality_rate(rec) == pytest.approx(8 / 9)


def test_multi_target_and_metrics_dict():
    rec = torch.tensor([[1, 2, 3, 4]])
    assert recall_at_k(rec, [[2, 9]], 4) == 0.5
    idcg = 1 + 1 / math.log2(3)
    assert ndcg_at_k(rec, [[2, 4]], 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg)
    metrics = recommendation_metrics(rec, torch.tensor([4]), ks=(1, 4))
    assert metrics["recall@1"] == 0 and metrics["recall@4"] == 1 and metrics["legality"] == 1
    with pytest.raises(ValueError, match="k="):
        recall_at_k(rec, torch.tensor([1]), 5)
    with pytest.raises(ValueError, match="targets"):
        recall_at_k(rec, torch.tensor([1, 2]), 1)


def test_popularity_baseline():
    pop = popularity_recommendations(torch.tensor([5, 5, 3, 3, 3, 9]), num_items=4, batch_size=2)
    assert pop.tolist() == [[3, 5, 9, -1], [3, 5, 9, -1]]
