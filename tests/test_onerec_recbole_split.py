"""Differential test: ``data.split: leave_one_out`` + ``tie_order: file`` against RecBole 1.2.1's own
``LS: valid_and_test`` / ``order: TO`` split of a sequential dataset (the protocol SASRec is
evaluated under), on hypothesis-generated logs with heavy timestamp ties, repeated items, short
users (1-3 interactions, where RecBole keeps a training sample before holding anything out) and
file orders that disagree with time.

Both sides see the same log in the same file order; RecBole gets it as an atomic ``.inter`` file.
For every split the multiset of ``(user, target item, last L history items)`` samples must be equal.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections import Counter

import pandas as pd
import pytest
import torch

pytest.importorskip("recbole", reason="recbole (the test extra) is the reference split")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kwaiformers.data.samples import OneRecSampleBuilder  # noqa: E402
from kwaiformers.models.onerec.semantic_ids import SemanticIdIndex  # noqa: E402

# RecBole 1.2.1 under pandas 3 / numpy 2 warns on every call (chained assignment, __array_wrap__):
# the reference's own noise, not ours
pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.filterwarnings("ignore")]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_ITEMS = 12
MAX_LEN = 3  # RecBole's MAX_ITEM_LIST_LENGTH = our short_len: histories get truncated


@functools.lru_cache(maxsize=1)
def _benchmark():
    """The benchmark's RecBole import (numpy >= 2 aliases RecBole 1.2.1 still uses): one place."""
    spec = importlib.util.spec_from_file_location("onerec_movielens",
                                                  os.path.join(ROOT, "benchmarks", "onerec_movielens.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _recbole_splits(log: pd.DataFrame, root: str) -> dict[str, Counter]:
    """RecBole's train/valid/test samples of ``log`` (rows in file order)."""
    Config, create_dataset, _, _, _, _ = _benchmark()._import_recbole()
    path = os.path.join(root, "loo")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "loo.inter"), "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        fh.writelines(f"{u}\t{i}\t{t}\n" for u, i, t in log[["user_id", "item_id", "timestamp"]].itertuples(
            index=False))
    cfg = {"data_path": root, "MAX_ITEM_LIST_LENGTH": MAX_LEN, "use_gpu": False, "state": "ERROR",
           "show_progress": False, "train_neg_sample_args": None, "loss_type": "CE",
           "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                         "group_by": "user"},
           "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
           "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
           "checkpoint_dir": os.path.join(root, "ckpt")}
    config = Config(model="SASRec", dataset="loo", config_dict=cfg)
    dataset = create_dataset(config)
    out = {}
    for name, part in zip(("train", "validation", "test"), dataset.build()):
        feat = part.inter_feat
        users = dataset.id2token("user_id", feat["user_id"].numpy())
        items = dataset.id2token("item_id", feat["item_id"].numpy())
        hist = feat["item_id_list"].numpy()
        lens = feat["item_length"].numpy()
        out[name] = Counter(
            (int(u), int(i), tuple(int(t) for t in dataset.id2token("item_id", h[:n])))
            for u, i, h, n in zip(users, items, hist, lens))
    return out


def _our_splits(log: pd.DataFrame) -> dict[str, Counter]:
    codes = torch.stack([torch.arange(NUM_ITEMS) % 3, torch.arange(NUM_ITEMS)], 1)
    index = SemanticIdIndex.from_codes(codes, [3, NUM_ITEMS])
    b = OneRecSampleBuilder(index, short_len=MAX_LEN, long_len=0, tie_order="file", min_history=1)
    splits = b.build_splits(log, split="leave_one_out")
    return {name: Counter((int(s["user_id"]), int(s["target_item_id"]), tuple(s["short_item_ids"]))
                          for s in ds) for name, ds in splits.items()}


@st.composite
def _logs(draw) -> pd.DataFrame:
    """Users with 1-9 interactions (short users often), items from a small pool (repeats), times
    from a few distinct values (ties), rows shuffled so file order disagrees with time."""
    num_users = draw(st.integers(1, 25))
    rows = []
    for u in range(num_users):
        n = draw(st.integers(1, 9))
        times = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
        items = draw(st.lists(st.integers(0, NUM_ITEMS - 1), min_size=n, max_size=n))
        rows += [(u + 1, i, t) for i, t in zip(items, times)]
    perm = draw(st.permutations(range(len(rows))))
    return pd.DataFrame([rows[k] for k in perm], columns=["user_id", "item_id", "timestamp"])


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(log=_logs())
def test_leave_one_out_file_ties_match_recbole(log, tmp_path_factory):
    ours = _our_splits(log)
    ref = _recbole_splits(log, str(tmp_path_factory.mktemp("recbole")))
    for name in ("train", "validation", "test"):
        assert ours[name] == ref[name], (name, log.to_dict("list"))


def test_recbole_split_on_a_known_log(tmp_path):
    """The reference itself on a hand-checked log (so the differential test compares something):
    user 1 has 4 interactions (valid + test), user 2 has 3 (RecBole: one train sample, then test
    only), user 3 has 2 (train only), user 4 has 1 (nothing); ties at t=1 in file order."""
    log = pd.DataFrame([(1, 0, 0), (1, 2, 1), (1, 1, 1), (1, 3, 2), (2, 5, 0), (2, 6, 0), (2, 7, 3),
                        (3, 8, 0), (3, 9, 1), (4, 10, 0)], columns=["user_id", "item_id", "timestamp"])
    ref = _recbole_splits(log, str(tmp_path))
    assert ref["train"] == Counter({(1, 2, (0,)): 1, (2, 6, (5,)): 1, (3, 9, (8,)): 1})
    assert ref["validation"] == Counter({(1, 1, (0, 2)): 1})
    assert ref["test"] == Counter({(1, 3, (0, 2, 1)): 1, (2, 7, (5, 6)): 1})
    assert _our_splits(log) == ref
