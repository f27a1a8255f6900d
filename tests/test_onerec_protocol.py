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


# user 1: 0..5 at hours 0,1,2,2,3,4; user 2: 7, 8, 9; user 3: 4 then 5 and 6 tied at the end
_SPEC = [(1, 0, 0), (1, 1, 1), (1, 2, 2), (1, 3, 2), (1, 4, 3), (1, 5, 4),
         (2, 7, 5), (2, 8, 6), (2, 9, 7),
         (3, 4, 1), (3, 5, 2), (3, 6, 2)]


def test_leave_one_out_segments_known_answers():
    seg = leave_one_out_segments([1, 1, 1, 1, 2, 2, 3])
    assert seg.tolist() == [0, 0, 1, 2, 1, 2, 2]
    assert leave_one_out_segments([1, 1, 1, 1, 1], holdout=2).tolist() == [0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="holdout"):
        leave_one_out_segments([1], holdout=0)
    with pytest.raises(ValueError, match="sorted"):
        leave_one_out_segments([2, 1])


@pytest.mark.parametrize("tie_order", ["simultaneous", "file"])
def test_leave_one_out_split_and_tie_orders(tie_order):
    log = _log(_SPEC)
    b = OneRecSampleBuilder(_index(), short_len=10, long_len=0, tie_order=tie_order)
    splits = b.build_splits(log.sample(frac=1.0, random_state=1).sort_values("timestamp", kind="stable"),
                            split="leave_one_out")
    got = {name: {(s["user_id"], s["target_item_id"]): (s["short_item_ids"], s["history_length"])
                  for s in splits[name]} for name in splits}
    # the last interaction of every user is its test target, the second-last its validation target
    assert set(got["test"]) == {(1, 5), (2, 9), (3, 6)}
    assert set(got["validation"]) == {(1, 4), (2, 8), (3, 5)}
    assert got["test"][(1, 5)] == ([0, 1, 2, 3, 4], 5)
    assert got["test"][(2, 9)] == ([7, 8], 2)
    if tie_order == "file":  # RecBole: ties ordered by file position, each in the next's context
        assert set(got["train"]) == {(1, 1), (1, 2), (1, 3)}
        assert got["train"][(1, 3)] == ([0, 1, 2], 3)
        assert got["test"][(3, 6)] == ([4, 5], 2)
    else:  # simultaneous: tied items share one context and never see each other
        assert set(got["train"]) == {(1, 1), (1, 2), (1, 3)}
        assert got["train"][(1, 2)] == got["train"][(1, 3)] == ([0, 1], 2)
        assert got["test"][(3, 6)] == ([4], 1) and got["validation"][(3, 5)] == ([4], 1)
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
