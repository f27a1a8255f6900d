"""OneRec evaluation protocol: leave-one-out split, tie orders, no leakage into the semantic IDs,
seen-item exclusion inside the constrained beam search."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kwaiformers.data.pipeline import build_onerec_data
from kwaiformers.data.samples import OneRecSampleBuilder, leave_one_out_segments
from kwaiformers.models.onerec.semantic_ids import SemanticIdIndex

pytestmark = pytest.mark.usefixtures("single_torch_thread")

HOUR = 3_600_000


def _index(num_items: int = 10) -> SemanticIdIndex:
    codes = torch.stack([torch.arange(num_items) % 3, torch.arange(num_items)], 1)
    return SemanticIdIndex.from_codes(codes, [3, num_items])


def _log(spec) -> pd.DataFrame:
    """spec: (user, item, hour) in file order."""
    return pd.DataFrame([{"user_id": u, "item_id": i, "timestamp": h * HOUR} for u, i, h in spec])


# user 1: 0..5 at hours 0,1,2,2,3,4; user 2: 6..9; user 3: 3, 4 then 5 and 6 tied at the end;
# user 4: 10, 11 (two interactions: training only, as in RecBole)
_SPEC = [(1, 0, 0), (1, 1, 1), (1, 2, 2), (1, 3, 2), (1, 4, 3), (1, 5, 4),
         (2, 6, 4), (2, 7, 5), (2, 8, 6), (2, 9, 7),
         (3, 3, 0), (3, 4, 1), (3, 5, 2), (3, 6, 2),
         (4, 10, 0), (4, 11, 1)]


def test_leave_one_out_segments_known_answers():
    # RecBole's rule: hold out min(2 * holdout, n - 2) rows, test first, keep a training target
    seg = leave_one_out_segments([1, 1, 1, 1, 2, 2, 2, 3, 3, 4])
    assert seg.tolist() == [0, 0, 1, 2, 0, 0, 2, 0, 0, 0]
    assert leave_one_out_segments([1, 1, 1, 1, 1], holdout=2).tolist() == [0, 0, 1, 2, 2]
    assert leave_one_out_segments([1] * 6, holdout=2).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="holdout"):
        leave_one_out_segments([1], holdout=0)
    with pytest.raises(ValueError, match="sorted"):
        leave_one_out_segments([2, 1])


@pytest.mark.parametrize("tie_order", ["simultaneous", "file"])
def test_leave_one_out_split_and_tie_orders(tie_order):
    log = _log(_SPEC)
    b = OneRecSampleBuilder(_index(12), short_len=10, long_len=0, tie_order=tie_order)
    splits = b.build_splits(log.sort_values("timestamp", kind="stable"),
                            split="leave_one_out")
    got = {name: {(s["user_id"], s["target_item_id"]): (s["short_item_ids"], s["history_length"])
                  for s in splits[name]} for name in splits}
    # the last interaction of every user is its test target, the second-last its validation target
    assert set(got["test"]) == {(1, 5), (2, 9), (3, 6)}
    assert set(got["validation"]) == {(1, 4), (2, 8), (3, 5)}
    assert got["test"][(1, 5)] == ([0, 1, 2, 3, 4], 5)
    assert got["test"][(2, 9)] == ([6, 7, 8], 3)
    if tie_order == "file":  # RecBole: ties ordered by file position, each in the next's context
        assert set(got["train"]) == {(1, 1), (1, 2), (1, 3), (2, 7), (3, 4), (4, 11)}
        assert got["train"][(1, 3)] == ([0, 1, 2], 3)
        assert got["test"][(3, 6)] == ([3, 4, 5], 3)
    else:  # simultaneous: tied items share one context and never see each other
        assert set(got["train"]) == {(1, 1), (1, 2), (1, 3), (2, 7), (3, 4), (4, 11)}
        assert got["train"][(1, 2)] == got["train"][(1, 3)] == ([0, 1], 2)
        assert got["test"][(3, 6)] == ([3, 4], 2) and got["validation"][(3, 5)] == ([3, 4], 2)
    # the streaming state machine agrees with the vectorised path under both tie orders
    rows = log.to_dict("records")
    vec, stream = b.build(log), b.build(rows)
    assert sorted(map(str, vec.to_list())) == sorted(map(str, stream.to_list()))


def _random_log(seed: int = 0, users: int = 30, items: int = 40, per_user: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        for j, i in enumerate(rng.choice(items - 2, per_user, replace=False)):
            rows.append((u, int(i), u + j))
    rows.append((users, items - 2, 1000))  # items 38/39 only ever appear as held-out targets
    rows.append((users, items - 1, 1001))
    for u in range(3):
        rows.append((users, u, 10 + u))  # history for that user
    return _log(sorted(rows, key=lambda r: (r[0], r[2])))


@pytest.mark.parametrize("split", ["leave_one_out", "time_cut"])
def test_no_held_out_interaction_reaches_the_tokenizer_fit(monkeypatch, split):
    import kwaiformers.data.embeddings as emb_mod

    seen: list[pd.DataFrame] = []
    real = emb_mod.collaborative_embeddings

    def spy(interactions, **kw):
        seen.append(pd.DataFrame(interactions).copy())
        return real(interactions, **kw)

    monkeypatch.setattr(emb_mod, "collaborative_embeddings", spy)
    log = _random_log()
    data = build_onerec_data(
        {"split": split, "tie_order": "file", "short_len": 4, "long_len": 0, "valid_fraction": 0.2,
         "test_fraction": 0.2, "include_user_id": False},
        {"num_levels": 2, "codebook_size": [4, 4], "embedding_dim": 4, "disambiguate": True},
        bundle={"interactions": log},
    )
    assert len(seen) == 1
    fitted = set(map(tuple, seen[0][["user_id", "item_id"]].to_numpy().tolist()))
    held_out = {(s["user_id"], s["target_item_id"]) for name in ("validation", "test")
                for s in data.splits[name]}
    assert held_out and not fitted & held_out
    assert fitted == set(map(tuple, data.train_interactions[["user_id", "item_id"]].to_numpy().tolist()))
    # popularity (collision order, Pop baseline) counts training rows only
    pop = dict(zip(data.index.item_ids.tolist(), data.index.popularity.tolist()))
    counts = data.train_interactions["item_id"].value_counts()
    assert all(pop[i] == counts.get(i, 0) for i in pop)
    if split == "leave_one_out":
        assert pop[39] == 0 and pop[38] == 0 and 39 in data.index.item_ids.tolist()
        assert len(data.splits["test"]) == log["user_id"].nunique()  # every user has a test target
    # seen items = the context-visible history before each target
    for s, items in zip(data.splits["test"], data.seen_items("test")):
        assert s["target_item_id"] not in items.tolist()
        assert items.tolist()[-len(s["short_item_ids"]):] == s["short_item_ids"]


# ----------------------------------------------------------------------------- exclude_items
def _collision_index(seed: int, num_items: int = 70):
    from onerec_testkit import LEVELS

    g = torch.Generator().manual_seed(seed)
    # codes drawn from a narrow range so that tuples collide and subtrees are small
    codes = torch.stack([torch.randint(0, min(k, 3 + lvl), (num_items,), generator=g)
                         for lvl, k in enumerate(LEVELS)], 1)
    ids = torch.randperm(500, generator=g)[:num_items]
    return SemanticIdIndex.from_codes(codes, list(LEVELS), item_ids=ids,
                                      popularity=torch.randint(0, 5, (num_items,), generator=g).double())


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_exclude_items_inside_the_constrained_beam_search(version):
    from onerec_testkit import make_batch, v1_config, v2_config

    if version == "v2":
        from kwaiformers.models.onerec_v2.modeling_onerec_v2 import (
            OneRecV2ForGenerativeRecommendation as Model,
        )
        cfg = v2_config()
    else:
        from kwaiformers.models.onerec.modeling_onerec import (
            OneRecForGenerativeRecommendation as Model,
        )
        cfg = v1_config()
    torch.manual_seed(0)
    model = Model(cfg).eval()
    k, bsz = 5, 4
    checked = 0
    for case in range(8):
        index = _collision_index(case)
        batch = make_batch(bsz, seed=case, lifelong_len=8 if version == "v1" else 0)
        rng = np.random.default_rng(case)
        items = index.item_ids.tolist()
        # from nothing excluded to everything but a handful (fewer allowed tuples than k)
        sizes = [0, int(rng.integers(1, len(items))), len(items) - int(rng.integers(0, 4)), len(items)]
        exclude = [rng.choice(items, n, replace=False).tolist() + [10_000] for n in sizes]
        tuples = torch.unique(index.codes, dim=0)
        logp = model.sid_log_probs(batch, tuples[None].expand(bsz, -1, -1).contiguous())
        logp = logp.sum(-1) if logp.dim() == 3 else logp  # per-level -> tuple log-probability
        groups = index.items_for(tuples)
        # brute force: each tuple -> its most popular non-excluded item; exact top-k
        for beam, exact in ((k, False), (len(tuples), True)):
            out = model.recommend(batch, num_items=k, beam_size=beam, item_index=index,
                                  exclude_items=exclude)
            for b in range(bsz):
                ex = set(exclude[b])
                ref = []
                for t in torch.argsort(logp[b], descending=True, stable=True).tolist():
                    keep = [i for i in groups[t] if i not in ex]
                    if keep:
                        ref.append(keep[0])
                got = out.item_ids[b].tolist()
                live = [i for i in got if i >= 0]
                assert not ex & set(live)  # never an excluded item
                assert len(live) == min(k, len(ref)) and len(set(live)) == len(live)  # still k
                assert got[len(live):] == [-1] * (k - len(live))
                if exact:
                    assert live == ref[:k]
                checked += 1
    assert checked == 8 * 2 * bsz
    # the padded-tensor form and validation
    index = _collision_index(0)
    batch = make_batch(2, seed=0, lifelong_len=8 if version == "v1" else 0)
    pad = torch.tensor([[int(index.item_ids[0]), -1], [-1, -1]])
    a = model.recommend(batch, num_items=k, beam_size=8, item_index=index, exclude_items=pad)
    b = model.recommend(batch, num_items=k, beam_size=8, item_index=index,
                        exclude_items=[[int(index.item_ids[0])], []])
    assert torch.equal(a.item_ids, b.item_ids)
    with pytest.raises(ValueError, match="constrained"):
        model.recommend(batch, num_items=k, beam_size=8, item_index=index, constrained=False,
                        exclude_items=[[], []])
    with pytest.raises(ValueError, match="one collection"):
        model.recommend(batch, num_items=k, beam_size=8, item_index=index, exclude_items=[[]])


def test_baselines_follow_the_protocol():
    from kwaiformers.evaluation.recommendation import (
        item_knn_recommendations,
        ndcg_per_user,
        paired_bootstrap,
        popularity_recommendations,
    )

    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 400)
    items = rng.integers(0, 25, 400)
    counts = np.bincount(items, minlength=25)
    exclude = [rng.choice(25, n, replace=False).tolist() for n in (0, 5, 20, 25)]
    pop = popularity_recommendations(items, 10, 4, exclude_items=exclude)
    ranked = sorted(range(25), key=lambda i: (-counts[i], i))  # RecBole Pop: training-row counts
    for row, ex in zip(pop.tolist(), exclude):
        want = [i for i in ranked if i not in ex][:10]
        assert row == want + [-1] * (10 - len(want))
    hist = [rng.choice(25, 6, replace=False).tolist() for _ in range(4)]
    knn = item_knn_recommendations(users, items, hist, 10, exclude_items=exclude, neighbours=5)
    for row, ex in zip(knn.tolist(), exclude):
        live = [i for i in row if i >= 0]
        assert not set(live) & set(ex) and len(live) == min(10, 25 - len(ex))
    a = ndcg_per_user(pop, [ranked[0], ranked[1], 3, 4], 10)
    assert a[0] == 1.0 and torch.isclose(a[1], torch.tensor(1 / np.log2(3), dtype=torch.float64)) or \
        ranked[1] in exclude[1]
    res = paired_bootstrap(torch.tensor([1.0, 0.5, 0.2, 0.0]), torch.zeros(4), num_resamples=200)
    assert res["diff"] == pytest.approx(0.425) and res["low"] <= res["diff"] <= res["high"]


def test_v2_item_id_embedding_option():
    from kwaiformers.data.pipeline import build_onerec_model

    data = build_onerec_data(
        {"split": "leave_one_out", "tie_order": "file", "short_len": 4, "long_len": 0},
        {"num_levels": 2, "codebook_size": [4, 4], "embedding_dim": 4, "disambiguate": True},
        bundle={"interactions": _random_log()},
    )
    torch.manual_seed(0)
    model = build_onerec_model(data.spec, {"type": "onerec_v2", "hidden_size": 16, "num_hidden_layers": 1,
                                           "num_attention_heads": 2, "embed_dim": 4,
                                           "item_id_buckets": 41}).eval()
    batch = data.collator([data.splits["test"][i] for i in range(4)])
    assert batch["short_item_ids"].shape == batch["short_mask"].shape
    assert ((batch["short_item_ids"] >= 0) == batch["short_mask"]).all()
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    other = dict(batch, short_item_ids=torch.where(batch["short_mask"], (batch["short_item_ids"] + 1) % 40,
                                                   batch["short_item_ids"]))
    assert not torch.allclose(model(**other).loss, loss)  # the ids are used
    out = model.recommend(batch, num_items=3, beam_size=4, item_index=data.index,
                          exclude_items=data.seen_items("test")[:4])
    assert (out.item_ids >= 0).all()
    with pytest.raises(ValueError, match="short_item_ids"):
        model(**{k: v for k, v in batch.items() if k != "short_item_ids"})


@pytest.mark.parametrize("model_type", ["onerec", "onerec_v2"])
def test_item_id_embedding_v1_v2_shapes_save_load_and_off(model_type, tmp_path):
    """One ``ItemIdEmbedding`` (modeling_common) serves both generations: the history pathways
    concatenate it when ``item_id_buckets`` > 0 (hashed modulo the buckets), it survives
    save/load, and with 0 the model has no such table and ignores the ids."""
    from transformers import AutoModel

    import kwaiformers  # noqa: F401  (registers the auto classes)
    from kwaiformers.data.pipeline import build_onerec_model
    from kwaiformers.models.onerec.modeling_common import ItemIdEmbedding

    data = build_onerec_data(
        {"split": "leave_one_out", "tie_order": "file", "short_len": 4, "long_len": 3},
        {"num_levels": 2, "codebook_size": [4, 4], "embedding_dim": 4, "disambiguate": True},
        bundle={"interactions": _random_log()},
    )
    size = ({"hidden_size": 16, "num_encoder_layers": 1, "num_decoder_layers": 1, "num_attention_heads": 2,
             "lifelong_seq_len": 0, "sid_embed_dim": 4, "feature_embed_dim": 4, "user_feature_embed_dim": 4}
            if model_type == "onerec" else
            {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "embed_dim": 4})
    batch = data.collator([data.splits["test"][i] for i in range(6)])
    moved = dict(batch, short_item_ids=torch.where(batch["short_mask"], (batch["short_item_ids"] + 1) % 40,
                                                   batch["short_item_ids"]))
    torch.manual_seed(0)
    model = build_onerec_model(data.spec, {"type": model_type, **size, "item_id_buckets": 16}).eval()
    table = [m for m in model.modules() if isinstance(m, ItemIdEmbedding)]
    assert len(table) == 1 and tuple(table[0].weight.shape) == (17, 4)  # 16 buckets + padding row
    assert torch.count_nonzero(table[0].weight[16]) == 0
    hashed = table[0].for_pathway(batch, "short", batch["short_sids"].shape[:2])
    assert hashed.shape == (*batch["short_sids"].shape[:2], 4)
    ids = batch["short_item_ids"]
    assert torch.equal(hashed[ids >= 0], table[0].weight[ids[ids >= 0] % 16])
    with torch.no_grad():
        table[0].weight.mul_(50)  # make the (std 0.02) ID rows visible in the loss
        loss = model(**batch).loss
        assert torch.isfinite(loss) and not torch.allclose(model(**moved).loss, loss)
    model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    assert again.config.item_id_buckets == 16
    with torch.no_grad():
        assert torch.equal(again(**batch).loss, loss)
    with pytest.raises(ValueError, match="long_item_ids"):
        model(**{k: v for k, v in batch.items() if k != "long_item_ids"})
    out = model.recommend(batch, num_items=3, beam_size=4, item_index=data.index,
                          exclude_items=data.seen_items("test")[:6])
    assert (out.item_ids >= 0).all()
    off = build_onerec_model(data.spec, {"type": model_type, **size}).eval()
    assert not any(isinstance(m, ItemIdEmbedding) for m in off.modules())
    assert not any("item_embeddings" in k for k in off.state_dict())
    with torch.no_grad():
        assert torch.equal(off(**batch).loss, off(**moved).loss)
    with pytest.raises(ValueError, match="item_id_buckets"):
        type(model.config)(item_id_buckets=-1)
