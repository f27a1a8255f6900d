"""Recommendation metrics against held-out next items: Recall@K, NDCG@K, legality rate, baselines
(popularity with RecBole's ``Pop`` rule, item-kNN) and paired bootstrap intervals (OneRec TR §4
"Pass@K"/legality; the usual sequential-recommendation metrics).

Seen-item exclusion: every recommender here takes ``exclude_items`` (one collection of item ids per
user, e.g. :meth:`kwaiformers.data.pipeline.OneRecData.seen_items`); for OneRec models it is applied
inside the constrained beam search, for the baselines by masking their scores, so all of them
return ``num_items`` non-excluded items whenever that many exist.

All functions take recommended item ids ``[B, N]`` ranked best first (``-1`` = no item / illegal
tuple, never a hit) and the held-out target(s): a ``LongTensor[B]`` (one next item per user) or a
list of per-user collections of relevant items.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = [
    "PersonalizationCriteria",
    "codes_popularity_nll",
    "evaluate_recommender",
    "format_personalization",
    "item_knn_recommendations",
    "personalization_diagnostic",
    "legality_rate",
    "ndcg_at_k",
    "ndcg_per_user",
    "paired_bootstrap",
    "popularity_recommendations",
    "recall_at_k",
    "recommend_all",
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


def ndcg_per_user(recommended: Any, targets: Any, k: int) -> torch.Tensor:
    """FloatTensor[B]: each user's NDCG@k (binary relevance; users without targets get NaN)."""
    rec = _as_ranked(recommended)
    _check_k(k, rec.shape[1])
    rel = _targets(targets, rec.shape[0])
    out = []
    for row, relevant in zip(rec[:, :k].tolist(), rel):
        if not relevant:
            out.append(float("nan"))
            continue
        seen: set[int] = set()
        dcg = 0.0
        for rank, item in enumerate(row):
            if item >= 0 and item in relevant and item not in seen:
                dcg += 1.0 / math.log2(rank + 2)
                seen.add(item)
        out.append(dcg / sum(1.0 / math.log2(r + 2) for r in range(min(k, len(relevant)))))
    return torch.tensor(out, dtype=torch.float64)


def paired_bootstrap(a: Any, b: Any, num_resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> dict[str, float]:
    """Paired bootstrap of ``mean(a - b)`` over users (``a``/``b``: per-user scores of two
    recommenders on the same users, e.g. :func:`ndcg_per_user`). Returns ``diff``, ``low``, ``high``
    (percentile interval) and ``p_le_0`` (share of resamples with ``diff <= 0``)."""
    a = torch.as_tensor(a, dtype=torch.float64).flatten()
    b = torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"a and b must be non-empty and paired (same shape), got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = a - b
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, d.numel(), (num_resamples, d.numel()), generator=g)
    means = d[idx].mean(1)
    tail = (1 - confidence) / 2
    return {"diff": float(d.mean()), "low": float(means.quantile(tail)),
            "high": float(means.quantile(1 - tail)), "p_le_0": float((means <= 0).double().mean())}


def _exclusion_rows(exclude_items: Any, batch_size: int) -> list[set[int]]:
    if exclude_items is None:
        return [set() for _ in range(batch_size)]
    rows = list(exclude_items)
    if len(rows) != batch_size:
        raise ValueError(f"exclude_items must hold one collection per user ({batch_size}), got {len(rows)}")
    return [{int(i) for i in (r.tolist() if hasattr(r, "tolist") else r)} for r in rows]


def popularity_recommendations(train_item_ids: Any, num_items: int, batch_size: int,
                               exclude_items: Any = None) -> torch.Tensor:
    """The popularity baseline: the ``num_items`` most frequent items of ``train_item_ids`` for
    every user (ties: smaller id first), skipping each user's ``exclude_items`` when given.

    RecBole's ``Pop`` counts every *training interaction* (pass those item ids, e.g.
    ``OneRecData.train_interactions["item_id"]``) and masks the user's history in full ranking."""
    ids = torch.as_tensor(train_item_ids).long().flatten()
    ids = ids[ids >= 0]
    if ids.numel() == 0:
        raise ValueError("train_item_ids is empty")
    values, counts = torch.unique(ids, return_counts=True)
    order = torch.argsort(-counts.float() + values.float() * 1e-9, stable=True)  # ties: smaller id first
    ranked = values[order]
    if exclude_items is None:
        top = ranked[:num_items]
        if top.numel() < num_items:
            top = torch.cat([top, torch.full((num_items - top.numel(),), -1, dtype=torch.long)])
        return top[None].expand(batch_size, -1).clone()
    out = torch.full((batch_size, num_items), -1, dtype=torch.long)
    ranked_list = ranked.tolist()
    for b, ex in enumerate(_exclusion_rows(exclude_items, batch_size)):
        row = []
        for item in ranked_list:
            if item not in ex:
                row.append(item)
                if len(row) == num_items:
                    break
        out[b, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def item_knn_recommendations(train_users: Any, train_items: Any, histories: Sequence[Any],
                             num_items: int, exclude_items: Any = None, neighbours: int = 100,
                             shrink: float = 0.0, candidate_items: Any = None) -> torch.Tensor:
    """Item-kNN baseline (cosine item-item similarity of the binary training user-item matrix,
    each item keeping its ``neighbours`` most similar items; a user's score for item ``i`` is the
    sum of ``sim(i, j)`` over the items ``j`` of their history). ``histories``: one collection of
    item ids per user; ``candidate_items``: the rankable items (default: the training items).
    Dense ``[I, I]`` similarity: fine up to a few tens of thousands of items."""
    users = torch.as_tensor(train_users).long().flatten()
    items = torch.as_tensor(train_items).long().flatten()
    if users.shape != items.shape or items.numel() == 0:
        raise ValueError("train_users and train_items must be non-empty and of equal length")
    cand = torch.unique(items if candidate_items is None else
                        torch.cat([items, torch.as_tensor(candidate_items).long().flatten()]))
    _, u_pos = torch.unique(users, return_inverse=True)
    i_pos = torch.searchsorted(cand, items)
    n_u, n_i = int(u_pos.max()) + 1, cand.numel()
    x = torch.zeros(n_u, n_i)
    x[u_pos, i_pos] = 1.0
    co = x.t() @ x
    norm = co.diagonal().sqrt()
    sim = co / (norm[:, None] * norm[None, :] + shrink + 1e-12)
    sim.fill_diagonal_(0.0)
    if 0 < neighbours < n_i:
        top = sim.topk(neighbours, dim=1)
        sim = torch.zeros_like(sim).scatter_(1, top.indices, top.values)
    batch_size = len(histories)
    h = torch.zeros(batch_size, n_i)
    for b, hist in enumerate(histories):
        hist = torch.as_tensor(list(hist) if not hasattr(hist, "tolist") else hist.tolist()).long()
        hist = hist[torch.isin(hist, cand)]
        h[b, torch.searchsorted(cand, hist)] = 1.0
    scores = h @ sim.t()  # scores[b, i] = sum_j h[b, j] * sim(i, j)
    for b, ex in enumerate(_exclusion_rows(exclude_items, batch_size)):
        if ex:
            ex_t = torch.tensor(sorted(ex), dtype=torch.long)
            ex_t = ex_t[torch.isin(ex_t, cand)]
            scores[b, torch.searchsorted(cand, ex_t)] = float("-inf")
    k = min(num_items, n_i)
    values, indices = torch.sort(scores, dim=1, descending=True, stable=True)  # ties: smaller id first
    values, indices = values[:, :k], indices[:, :k]
    out = torch.full((batch_size, num_items), -1, dtype=torch.long)
    out[:, :k] = torch.where(torch.isfinite(values), cand[indices], torch.full_like(indices, -1))
    return out


@torch.no_grad()
def recommend_all(
    model: Any,
    batches: Iterable[Mapping[str, torch.Tensor]],
    item_index: Any,
    num_items: int = 10,
    beam_size: int = 32,
    constrained: bool = True,
    max_batches: int | None = None,
    exclude_items: Sequence[Any] | None = None,
    progress: bool = True,
    allow_empty: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(recommended [N, num_items], targets [N])`` of ``model.recommend`` over ``batches``;
    ``exclude_items`` is one collection per sample, in batch order. ``allow_empty``: no batch
    gives empty tensors instead of an error (a process with no shard of the users)."""
    from tqdm.auto import tqdm

    if beam_size < num_items:
        raise ValueError(f"beam_size={beam_size} must be >= num_items={num_items}")
    was_training = getattr(model, "training", False)
    model.eval()
    recs, targets = [], []
    offset = 0
    for i, batch in enumerate(tqdm(batches, desc="recommend", total=max_batches, disable=not progress)):
        if max_batches is not None and i >= max_batches:
            break
        if "target_item_id" not in batch:
            raise ValueError("evaluation batches need 'target_item_id' (the held-out next item)")
        bsz = batch["target_item_id"].shape[0]
        kwargs = {}
        if exclude_items is not None:
            kwargs["exclude_items"] = list(exclude_items[offset:offset + bsz])
        out = model.recommend(batch, num_items=num_items, beam_size=beam_size, constrained=constrained,
                              item_index=item_index, **kwargs)
        offset += bsz
        recs.append(out.item_ids.cpu())
        targets.append(batch["target_item_id"].cpu())
    if was_training:
        model.train()
    if not recs:
        if allow_empty:
            return torch.empty(0, num_items, dtype=torch.long), torch.empty(0, dtype=torch.long)
        raise ValueError("no evaluation batches")
    return torch.cat(recs), torch.cat(targets)


def evaluate_recommender(
    model: Any,
    batches: Iterable[Mapping[str, torch.Tensor]],
    item_index: Any,
    ks: Sequence[int] = (1, 5, 10),
    beam_size: int = 32,
    constrained: bool = True,
    max_batches: int | None = None,
    progress: bool = True,
    exclude_items: Sequence[Any] | None = None,
    gather: Any = None,
) -> dict[str, float]:
    """Run ``model.recommend`` over ``batches`` (schema batches with ``target_item_id``) and score it.

    Returns Recall@K / NDCG@K for every ``k`` in ``ks`` and the legality rate, averaged over users.
    ``exclude_items``: one collection of item ids per sample (batch order), masked inside the
    constrained beam search (seen-item exclusion). ``gather`` (several processes, each with its
    own shard of the users): maps this process' ``[n, ...]`` tensor to the concatenation over all
    processes, so that every process scores the union (a process may have no batch).
    """
    num_items = max(ks)
    recs, targets = recommend_all(model, batches, item_index, num_items=num_items, beam_size=beam_size,
                                  constrained=constrained, max_batches=max_batches,
                                  exclude_items=exclude_items, progress=progress,
                                  allow_empty=gather is not None)
    if gather is not None:
        recs, targets = gather(recs), gather(targets)
        if recs.shape[0] == 0:
            raise ValueError("no evaluation batches")
    return recommendation_metrics(recs, targets, ks)


# ------------------------------------------------------------------ personalisation diagnostic
@dataclass
class PersonalizationCriteria:
    """When :func:`personalization_diagnostic` calls a model personalised (all must hold).

    Attributes:
        min_loss_gain: the model's validation loss (mean over the code levels) must be at least this
            fraction below the context-free popularity model's (0.02 = 2% lower).
        min_distinct_fraction: the users' top-K lists together must hold at least this fraction of
            the catalogue (distinct items / items in the index).
        max_mean_jaccard: mean pairwise Jaccard similarity of the users' top-K lists at most this
            (1.0 = every user gets the same list).
        min_first_level_kl: mean KL (nats) of the users' first-level code distributions from their
            average (the mutual information between user and first code under the model) at least
            this.
    """

    min_loss_gain: float = 0.02
    min_distinct_fraction: float = 0.1
    max_mean_jaccard: float = 0.5
    min_first_level_kl: float = 0.05

    def __post_init__(self) -> None:
        for name in ("min_loss_gain", "min_distinct_fraction", "min_first_level_kl"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"PersonalizationCriteria.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.max_mean_jaccard <= 1:
            raise ValueError(f"PersonalizationCriteria.max_mean_jaccard must be in [0, 1], got {self.max_mean_jaccard}")


def codes_popularity_nll(train_sids: Any, eval_sids: Any, level_sizes: Sequence[int],
                         alpha: float = 0.1) -> list[float]:
    """Per-level validation NLL (nats) of the context-free popularity model of the codes.

    The model is ``P(s^1) P(s^2 | s^1) ... P(s^L | s^{<L})`` estimated by counting the training
    targets ``train_sids [N, L]`` with add-``alpha`` smoothing over each level's codebook: the
    best any recommender that ignores the user can do on the same codes (up to smoothing). Returns
    the mean NLL of each level on ``eval_sids [M, L]``, comparable with a generative recommender's
    per-level cross-entropy.
    """
    train = _as_ranked(train_sids)
    ev = _as_ranked(eval_sids)
    sizes = [int(k) for k in level_sizes]
    if train.shape[1] != len(sizes) or ev.shape[1] != len(sizes):
        raise ValueError(f"train_sids/eval_sids must be [N, {len(sizes)}] (one column per level)")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    out = []
    for lvl, k in enumerate(sizes):
        prefix_tr = _prefix_key(train[:, :lvl], sizes)
        prefix_ev = _prefix_key(ev[:, :lvl], sizes)
        key_tr = prefix_tr * k + train[:, lvl]
        key_ev = prefix_ev * k + ev[:, lvl]
        uniq, counts = torch.unique(key_tr, return_counts=True)
        puniq, pcounts = torch.unique(prefix_tr, return_counts=True)

        def lookup(keys: torch.Tensor, table: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            pos = torch.searchsorted(table, keys).clamp_max(table.numel() - 1)
            return torch.where(table[pos] == keys, values[pos], torch.zeros_like(values[pos])).double()

        num = lookup(key_ev, uniq, counts) + alpha
        den = lookup(prefix_ev, puniq, pcounts) + alpha * k
        out.append(float(-(num / den).log().mean()))
    return out


def _prefix_key(prefix: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    key = torch.zeros(prefix.shape[0], dtype=torch.long)
    for j in range(prefix.shape[1]):
        key = key * sizes[j] + prefix[:, j]
    return key


@torch.no_grad()
def personalization_diagnostic(
    model: Any,
    batches: Iterable[Mapping[str, torch.Tensor]],
    item_index: Any,
    train_target_sids: Any,
    k: int = 10,
    beam_size: int = 32,
    criteria: PersonalizationCriteria | None = None,
    alpha: float = 0.1,
) -> dict[str, Any]:
    """Does a generative recommender use the user context? (A context-blind model re-orders one
    global list for everyone, whatever its loss.)

    Over ``batches`` (validation schema batches with ``target_sids``; ``model(**batch)`` must return
    per-level ``logits [B, L, W]``, padded): the model's per-level validation NLL vs
    :func:`codes_popularity_nll` fitted on ``train_target_sids``; and, on the first row of every
    user (``user_id``; every row when absent), the top-``k`` lists of ``model.recommend``
    (trie-constrained) -- distinct items across users, mean pairwise Jaccard -- and the mean KL
    of the users' first-level code distributions from their average.

    Returns a dict: ``model_nll`` / ``popularity_nll`` (per level), ``model_loss`` /
    ``popularity_loss`` (means over levels), ``loss_gain`` (``1 - model/popularity``),
    ``distinct_items`` (in all top-k lists), ``catalogue_items``, ``distinct_fraction``,
    ``mean_jaccard``, ``first_level_kl``, ``num_users``, ``personalised`` (bool, by ``criteria``),
    ``failed`` (the criteria that do not hold, readable) and ``criteria``.
    """
    crit = criteria or PersonalizationCriteria()
    sizes = [int(s) for s in item_index.level_sizes]
    num_levels = len(sizes)
    was_training = getattr(model, "training", False)
    model.eval()
    nll_sum = torch.zeros(num_levels, dtype=torch.float64)
    n_rows = 0
    eval_sids, recs, first = [], [], []
    seen: set[int] = set()
    for batch in batches:
        if "target_sids" not in batch:
            raise ValueError("personalization_diagnostic needs batches with 'target_sids' [B, L]")
        tgt = batch["target_sids"].to(model.device)
        if tgt.dim() != 2 or tgt.shape[1] != num_levels:
            raise ValueError(f"target_sids must be [B, {num_levels}], got {tuple(tgt.shape)}")
        batch = {key: v.to(model.device) for key, v in batch.items()}
        logits = model(**batch).logits.float()
        for lvl, size in enumerate(sizes):
            nll_sum[lvl] += float(torch.nn.functional.cross_entropy(
                logits[:, lvl, :size], tgt[:, lvl], reduction="sum"))
        n_rows += tgt.shape[0]
        eval_sids.append(tgt.cpu())
        if "user_id" in batch:
            keep = []
            for j, uid in enumerate(batch["user_id"].tolist()):
                if uid not in seen:
                    seen.add(uid)
                    keep.append(j)
            keep_t = torch.tensor(keep, dtype=torch.long, device=tgt.device)
        else:
            keep_t = torch.arange(tgt.shape[0], device=tgt.device)
        if keep_t.numel() == 0:
            continue
        sub = {key: v[keep_t] for key, v in batch.items()}
        first.append(logits[keep_t, 0, : sizes[0]].log_softmax(-1).cpu())
        out = model.recommend(sub, num_items=k, beam_size=max(beam_size, k), constrained=True,
                              item_index=item_index)
        recs.append(out.item_ids[:, :k].cpu())
    model.train(was_training)
    if n_rows == 0:
        raise ValueError("personalization_diagnostic got no batches")
    model_nll = (nll_sum / n_rows).tolist()
    pop_nll = codes_popularity_nll(train_target_sids, torch.cat(eval_sids), sizes, alpha=alpha)
    rec = torch.cat(recs)
    logp = torch.cat(first)
    mean_p = logp.exp().mean(0).clamp_min(1e-30)
    kl = float((logp.exp() * (logp - mean_p.log())).sum(-1).mean())
    # distinct items and pairwise Jaccard of the top-k sets (one-hot membership matrix)
    legal = rec >= 0
    ids, inverse = torch.unique(rec[legal], return_inverse=True)
    member = torch.zeros(rec.shape[0], max(ids.numel(), 1), dtype=torch.float64)
    rows = torch.arange(rec.shape[0])[:, None].expand_as(rec)[legal]
    member[rows, inverse] = 1.0
    inter = member @ member.T
    size = member.sum(1)
    union = size[:, None] + size[None, :] - inter
    jac = torch.where(union > 0, inter / union.clamp_min(1.0), torch.ones_like(inter))
    u = rec.shape[0]
    mean_jac = float((jac.sum() - jac.diagonal().sum()) / (u * (u - 1))) if u > 1 else 1.0
    catalogue = int(getattr(item_index, "num_items", 0)) or int(ids.numel())
    model_loss, pop_loss = sum(model_nll) / num_levels, sum(pop_nll) / num_levels
    res: dict[str, Any] = {
        "model_nll": model_nll,
        "popularity_nll": pop_nll,
        "model_loss": model_loss,
        "popularity_loss": pop_loss,
        "loss_gain": 1.0 - model_loss / pop_loss if pop_loss > 0 else float("nan"),
        "distinct_items": int(ids.numel()),
        "catalogue_items": catalogue,
        "distinct_fraction": ids.numel() / max(catalogue, 1),
        "mean_jaccard": mean_jac,
        "first_level_kl": kl,
        "num_users": int(u),
        "num_rows": int(n_rows),
        "k": int(k),
    }
    failed = []
    if not res["loss_gain"] >= crit.min_loss_gain:
        failed.append(f"validation loss {model_loss:.4f} is not {100 * crit.min_loss_gain:.0f}% below the "
                      f"context-free popularity model's {pop_loss:.4f} (gain {100 * res['loss_gain']:.1f}%)")
    if not res["distinct_fraction"] >= crit.min_distinct_fraction:
        failed.append(f"the users' top-{k} lists hold {res['distinct_items']} distinct items "
                      f"({100 * res['distinct_fraction']:.1f}% of {catalogue}; need "
                      f"{100 * crit.min_distinct_fraction:.0f}%)")
    if not mean_jac <= crit.max_mean_jaccard:
        failed.append(f"mean pairwise Jaccard of the top-{k} lists is {mean_jac:.3f} (> {crit.max_mean_jaccard})")
    if not kl >= crit.min_first_level_kl:
        failed.append(f"users' first-level code distributions differ by KL {kl:.2e} nats "
                      f"(< {crit.min_first_level_kl})")
    res["personalised"] = not failed
    res["failed"] = failed
    res["criteria"] = asdict(crit)
    return res


def format_personalization(diag: Mapping[str, Any]) -> str:
    """A readable block of :func:`personalization_diagnostic`'s numbers."""
    lvls = " / ".join(f"{m:.3f} vs {p:.3f}" for m, p in zip(diag["model_nll"], diag["popularity_nll"]))
    return "\n".join([
        f"personalisation diagnostic ({diag['num_users']} users, {diag['num_rows']} validation rows):",
        f"  validation NLL per level, model vs context-free popularity: {lvls}",
        f"  mean over levels: {diag['model_loss']:.4f} vs {diag['popularity_loss']:.4f} "
        f"(gain {100 * diag['loss_gain']:+.1f}%)",
        f"  distinct items in the users' top-{diag['k']} lists: {diag['distinct_items']} of {diag['catalogue_items']}",
        f"  mean pairwise Jaccard of the top-{diag['k']} lists: {diag['mean_jaccard']:.3f}",
        f"  KL of users' first-level distributions from their mean: {diag['first_level_kl']:.4f} nats",
        f"  verdict: {'PERSONALISED' if diag['personalised'] else 'CONTEXT-BLIND'}",
    ])
