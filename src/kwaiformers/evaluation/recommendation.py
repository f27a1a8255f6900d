"""Recommendation metrics against held-out next items: Recall@K, NDCG@K, legality rate, and a
popularity baseline (OneRec TR §4 "Pass@K"/legality; the usual sequential-recommendation metrics).

All functions take recommended item ids ``[B, N]`` ranked best first (``-1`` = no item / illegal
tuple, never a hit) and the held-out target(s): a ``LongTensor[B]`` (one next item per user) or a
list of per-user collections of relevant items.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "evaluate_recommender",
    "legality_rate",
    "ndcg_at_k",
    "popularity_recommendations",
    "recall_at_k",
    "recommendation_metrics",
]


def _as_ranked(recommended: Any) -> torch.Tensor:
    rec = torch.as_tensor(recommended)
    if rec.dim() != 2 or rec.is_floating_point():
        raise ValueError(f"recommended must be an integer tensor [B, N], got shape {tuple(rec.shape)}")
    return rec.long()


def _targets(targets: Any, batch: int) -> list[set[int]]:
    if isinstance(targets, torch.Tensor) or (isinstance(targets, Sequence) and targets and
                                              not isinstance(targets[0], Iterable)):
        t = torch.as_tensor(targets)
        if t.dim() != 1 or t.shape[0] != batch:
            raise ValueError(f"targets must be [B={batch}] item ids or B collections, got {tuple(t.shape)}")
        return [{int(x)} for x in t.tolist()]
    targets = list(targets)
    if len(targets) != batch:
        raise ValueError(f"targets has {len(targets)} users, recommended has {batch}")
    return [{int(x) for x in t} for t in targets]


def _check_k(k: int, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} recommended items per user")


def recall_at_k(recommended: Any, targets: Any, k: int) -> float:
    """Mean over users of ``|top-k ∩ relevant| / |relevant|`` (= HitRate@K for one target)."""
    rec = _as_ranked(recommended)
    _check_k(k, rec.shape[1])
    rel = _targets(targets, rec.shape[0])
    scores = []
    for row, relevant in zip(rec[:, :k].tolist(), rel):
        if not relevant:
            continue
        scores.append(len(relevant & {i for i in row if i >= 0}) / len(relevant))
    return sum(scores) / len(scores) if scores else 0.0


def ndcg_at_k(recommended: Any, targets: Any, k: int) -> float:
    """Mean over users of ``DCG@k / IDCG@k`` with binary relevance (gain ``1 / log2(rank + 2)``)."""
    rec = _as_ranked(recommended)
    _check_k(k, rec.shape[1])
    rel = _targets(targets, rec.shape[0])
    scores = []
    for row, relevant in zip(rec[:, :k].tolist(), rel):
        if not relevant:
            continue
        seen: set[int] = set()
        dcg = 0.0
        for rank, item in enumerate(row):
            if item >= 0 and item in relevant and item not in seen:
                dcg += 1.0 / math.log2(rank + 2)
                seen.add(item)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(relevant))))
        scores.append(dcg / idcg)
    return sum(scores) / len(scores) if scores else 0.0


def legality_rate(recommended: Any) -> float:
    """Share of returned tuples that map to a real item (ids ``>= 0``); TR §2.4.2 "legality ratio"."""
    rec = _as_ranked(recommended)
    return float((rec >= 0).float().mean()) if rec.numel() else 0.0


def recommendation_metrics(recommended: Any, targets: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``{"recall@k", "ndcg@k" for k in ks, "legality"}``."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(recommended, targets, k)
        out[f"ndcg@{k}"] = ndcg_at_k(recommended, targets, k)
    out["legality"] = legality_rate(recommended)
    return out


def popularity_recommendations(train_item_ids: Any, num_items: int, batch_size: int) -> torch.Tensor:
    """The popularity baseline: the ``num_items`` most frequent training items for every user."""
    ids = torch.as_tensor(train_item_ids).long().flatten()
    ids = ids[ids >= 0]
    if ids.numel() == 0:
        raise ValueError("train_item_ids is empty")
    values, counts = torch.unique(ids, return_counts=True)
    order = torch.argsort(-counts.float() + values.float() * 1e-9, stable=True)  # ties: smaller id first
    top = values[order][:num_items]
    if top.numel() < num_items:
        top = torch.cat([top, torch.full((num_items - top.numel(),), -1, dtype=torch.long)])
    return top[None].expand(batch_size, -1).clone()


@torch.no_grad()
def evaluate_recommender(
    model: Any,
    batches: Iterable[Mapping[str, torch.Tensor]],
    item_index: Any,
    ks: Sequence[int] = (1, 5, 10),
    beam_size: int = 32,
    constrained: bool = True,
    max_batches: int | None = None,
    progress: bool = True,
    gather: Any = None,
) -> dict[str, float]:
    """Run ``model.recommend`` over ``batches`` (schema batches with ``target_item_id``) and score it.

    Returns Recall@K / NDCG@K for every ``k`` in ``ks`` and the legality rate, averaged over users.
    ``gather`` (several processes, each with its own shard of the users): maps this process'
    ``[n, ...]`` tensor to the concatenation over all processes, so that every process scores
    the union (a process with no batch passes ``batches=[]``).
    """
    from tqdm.auto import tqdm

    num_items = max(ks)
    if beam_size < num_items:
        raise ValueError(f"beam_size={beam_size} must be >= max(ks)={num_items}")
    was_training = getattr(model, "training", False)
    model.eval()
    recs, targets = [], []
    total = max_batches
    for i, batch in enumerate(tqdm(batches, desc="recommend", total=total, disable=not progress)):
        if max_batches is not None and i >= max_batches:
            break
        if "target_item_id" not in batch:
            raise ValueError("evaluation batches need 'target_item_id' (the held-out next item)")
        out = model.recommend(batch, num_items=num_items, beam_size=beam_size, constrained=constrained,
                              item_index=item_index)
        recs.append(out.item_ids.cpu())
        targets.append(batch["target_item_id"].cpu())
    if was_training:
        model.train()
    if gather is not None:
        recs = [gather(torch.cat(recs) if recs else torch.empty(0, num_items, dtype=torch.long))]
        targets = [gather(torch.cat(targets) if targets else torch.empty(0, dtype=torch.long))]
    if not recs or recs[0].shape[0] == 0:
        raise ValueError("no evaluation batches")
    return recommendation_metrics(torch.cat(recs), torch.cat(targets), ks)
