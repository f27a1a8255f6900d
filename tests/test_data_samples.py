"""OneRec sample builder (newest impression only), chronological split and collator."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from kwaiformers.data.collator import OneRecCollator
from kwaiformers.data.samples import OneRecSampleBuilder, chronological_cut_times
from kwaiformers.data.schema import FEEDBACK_LABELS, PAD_CODE, validate_onerec_batch
from kwaiformers.data.simulator import UserSimulator
from kwaiformers.models.onerec.semantic_ids import SemanticIdIndex

pytestmark = pytest.mark.usefixtures("single_torch_thread")


HOUR = 3_600_000


def _index(num_items: int = 10) -> SemanticIdIndex:
    codes = torch.stack([torch.arange(num_items) % 3, torch.arange(num_items) % 4,
                         torch.arange(num_items)], 1)
    return SemanticIdIndex.from_codes(codes, [3, 4, num_items])


def _rows(spec):
    """spec: (user, item, hour, like, hate) -> standard interaction rows."""
    rows = []
    for user, item, hour, like, hate in spec:
        row = {"user_id": user, "item_id": item, "timestamp": hour * HOUR,
               "play_time": 10.0 + item, "duration": 20.0 + item}
        row.update({k: 0 for k in FEEDBACK_LABELS})
        row["is_like"], row["is_hate"] = like, hate
        rows.append(row)
    return pd.DataFrame(rows)


def test_sample_contents_by_hand():
    # user 1: items 0..5 at hours 0,1,2,2,3,4 (items 2 and 3 simultaneous); likes on 0 and 1
    log = _rows([(1, 0, 0, 1, 0), (1, 1, 1, 1, 0), (1, 2, 2, 0, 0), (1, 3, 2, 0, 1),
                 (1, 4, 3, 0, 0), (1, 5, 4, 0, 0), (2, 9, 1, 0, 0)])
    users = pd.DataFrame({"user_id": [1, 2], "gender": ["f", "m"]})
    b = OneRecSampleBuilder(_index(), users=users, short_len=2, long_len=5, reward_history_len=3)
    ds = b.build(log.sample(frac=1.0, random_state=0))  # row order does not matter in memory
    got = {(s["user_id"], s["target_item_id"]): s for s in ds}
    assert set(got) == {(1, 1), (1, 2), (1, 3), (1, 4), (1, 5)}  # first impressions have no history
    s2, s3, s5 = got[(1, 2)], got[(1, 3)], got[(1, 5)]
    # simultaneous impressions see the same context, never each other
    assert s2["short_item_ids"] == s3["short_item_ids"] == [0, 1]
    assert s5["short_item_ids"] == [3, 4]  # last 2 in time order (2/3 tie keeps log order)
    # long pathway: positives older than the short window
    assert s5["long_item_ids"] == [0, 1] and s2["long_item_ids"] == []
    assert s5["short_sids"] == [[0, 3, 3], [1, 0, 4]]
    assert s3["target_is_negative"] is True and s2["target_is_negative"] is False
    assert s5["target_sids"] == [2, 1, 5]
    assert s5["target_play_time"] == 15.0 and s5["target_duration"] == 25.0
    assert math.isnan(s5["target_logged_prob"])
    assert s5["history_durations"] == [22.0, 23.0, 24.0]
    assert s5["history_play_times"] == [12.0, 13.0, 14.0]
    assert s5["user_static"] == [1, 1]  # user-id rank 1, gender "f" -> 1
    ld, lp, ratio, age = s5["short_feats"][-1]
    assert ld == pytest.approx(math.log1p(24.0)) and lp == pytest.approx(math.log1p(14.0))
    assert ratio == pytest.approx(14 / 24) and age == pytest.approx(math.log1p(1.0))
    assert s5["short_labels"][0] == [0, 0, 0, 0, 0, 1, 0]  # item 3 was disliked
    spec = b.feature_spec
    assert spec.user_feature_names == ["user_id", "gender"]
    assert spec.user_feature_vocab_sizes == [3, 3]
    assert spec.level_sizes == [3, 4, 10] and spec.num_levels == 3


def test_vectorised_build_equals_streaming_state_machine():
    sim = UserSimulator(num_users=10, num_items=40, seed=3)
    data = sim.generate_logs(days=2, seed=3).to_dataset()
    gen = torch.Generator().manual_seed(0)
    index = SemanticIdIndex.from_codes(torch.randint(8, (40, 3), generator=gen), [8, 8, 8])
    configs = ({"short_len": 4, "long_len": 6},
               {"short_len": 3, "long_len": 2, "long_exclude_short": False, "min_history": 0})
    for streaming, kw in zip((True, False), configs):
        b = OneRecSampleBuilder(index, users=data["users"], reward_history_len=5, **kw)
        vec = b.build(data["interactions"])
        if streaming:  # through datasets' IterableDataset, as for logs that do not fit in memory
            rows = list(b.build_streaming(data["interactions"].to_iterable_dataset()))
        else:
            rows = [s for _, s in b.iter_samples(data["interactions"])]
        rows.sort(key=lambda r: r["target_timestamp"])  # built datasets are in time order
        assert len(rows) == vec.num_rows > 0
        for a, v in zip(rows[::7], vec.select(range(0, vec.num_rows, 7))):
            for key, val in a.items():
                if key.endswith("feats") or key.startswith("history") or isinstance(val, float):
                    np.testing.assert_allclose(np.asarray(val, dtype=np.float64),
                                               np.asarray(v[key], dtype=np.float64), rtol=1e-6)
                else:
                    assert val == v[key], key


def test_chronological_split_has_no_leakage():
    sim = UserSimulator(num_users=50, num_items=80, seed=1)
    data = sim.generate_logs(days=3, seed=1).to_dataset()
    index = SemanticIdIndex.from_codes(torch.randint(8, (80, 2)), [8, 8])
    b = OneRecSampleBuilder(index, users=data["users"], short_len=5, long_len=8)
    splits = b.build_splits(data["interactions"], valid_fraction=0.2, test_fraction=0.2)
    t_valid, t_test = b.cut_times
    tr, va, te = (splits[k] for k in ("train", "validation", "test"))
    assert min(tr.num_rows, va.num_rows, te.num_rows) > 0
    assert max(tr["target_timestamp"]) < t_valid <= min(va["target_timestamp"])
    assert max(va["target_timestamp"]) < t_test <= min(te["target_timestamp"])
    assert tr["target_timestamp"] == sorted(tr["target_timestamp"])  # time-ordered samples
    for split in (tr, va, te):
        for s in split.select(range(0, split.num_rows, 11)):
            hist = s["short_timestamps"] + s["long_timestamps"]
            assert all(t < s["target_timestamp"] for t in hist)
    # the test contexts include earlier (training-period) interactions, as at serving time
    assert any(min(s["short_timestamps"] + s["long_timestamps"]) < t_valid for s in te)
    with pytest.raises(ValueError, match="sum < 1"):
        chronological_cut_times([1, 2, 3], 0.5, 0.5)


def test_bad_inputs():
    log = _rows([(1, 0, 0, 0, 0), (1, 1, 1, 0, 0), (1, 99, 2, 0, 0), (3, 2, 0, 0, 0), (3, 4, 1, 0, 0)])
    users = pd.DataFrame({"user_id": [1], "gender": ["f"]})
    with pytest.raises(ValueError, match="unknown item ids"):
        OneRecSampleBuilder(_index(), users=users).build(log)
    b = OneRecSampleBuilder(_index(), users=users, unknown_item="skip")
    ds = b.build(log)
    assert 99 not in ds["target_item_id"]
    assert [s["user_static"] for s in ds if s["user_id"] == 3] == [[0, 0]]  # unknown user -> 0s
    with pytest.raises(ValueError, match="unknown user id 3"):
        OneRecSampleBuilder(_index(), users=users, unknown_user="error",
                            unknown_item="skip").build(log)
    with pytest.raises(ValueError, match="missing column"):
        OneRecSampleBuilder(_index()).build(log.drop(columns=["timestamp"]))
    unsorted = [dict(r) for r in log.iloc[[1, 0]].to_dict("records")]
    with pytest.raises(ValueError, match="not in time order"):
        list(OneRecSampleBuilder(_index()).iter_samples(iter(unsorted)))
    with pytest.raises(ValueError, match="positive_labels"):
        OneRecSampleBuilder(_index(), positive_labels=("is_happy",))
    # no users table: hashed user id is the only static feature
    b = OneRecSampleBuilder(_index(), user_id_buckets=11, unknown_item="skip")
    assert b.feature_spec.user_feature_vocab_sizes == [11]
    assert all(0 < s["user_static"][0] < 11 for s in b.build(log))


def test_collator_produces_the_schema_batch():
    log = _rows([(1, i, i, int(i % 2 == 0), int(i == 3)) for i in range(8)] + [(2, 0, 0, 0, 0),
                                                                                 (2, 1, 1, 0, 0)])
    users = pd.DataFrame({"user_id": [1, 2], "gender": ["f", "m"]})
    b = OneRecSampleBuilder(_index(), users=users, short_len=3, long_len=4, reward_history_len=6)
    ds = b.build(log)
    coll = OneRecCollator(b.feature_spec)
    assert coll.user_feature_vocab_sizes == [3, 3]
    samples = [ds[i] for i in range(ds.num_rows)]
    batch = coll(samples)
    validate_onerec_batch(batch, num_levels=3)
    n = len(samples)
    assert batch["short_sids"].shape == (n, 3, 3) and batch["long_sids"].shape == (n, 4, 3)
    assert batch["short_feats"].shape == (n, 3, 4) and batch["short_labels"].shape == (n, 3, 7)
    assert batch["target_sids"].dtype == torch.long and batch["target_is_negative"].dtype == torch.bool
    assert batch["history_durations"].shape == (n, 6)
    assert (batch["user_static"] < torch.tensor([3, 3])).all()
    last = [i for i, s in enumerate(samples) if s["user_id"] == 1 and s["target_item_id"] == 7][0]
    # left-padded, most recent last
    assert batch["short_sids"][last, -1].tolist() == [0, 2, 6]
    assert batch["short_mask"][last].all()
    first = [i for i, s in enumerate(samples) if s["user_id"] == 1 and s["target_item_id"] == 1][0]
    assert batch["short_mask"][first].tolist() == [False, False, True]
    assert (batch["short_sids"][first, :2] == PAD_CODE).all()
    assert not batch["long_mask"][first].any()
    assert torch.isnan(batch["history_durations"][first, :-1]).all()
    assert batch["history_durations"][first, -1] == 20.0
    assert batch["long_mask"][last].sum() == 2  # positives 0, 2 precede the short window 4, 5, 6
    assert batch["target_labels"].shape == (n, 7)
    with pytest.raises(ValueError, match="non-empty"):
        coll([])
    with pytest.raises(ValueError, match="levels"):
        OneRecCollator(short_len=3, long_len=4, num_levels=2)(samples)
