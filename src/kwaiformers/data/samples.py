"""OneRec-V2 "newest impression only" sample builder (V2 section 2.1, design note section 4.1).

For every impression, in time order, one sample: the **context** is what the user did strictly
before it (user static features, the last ``short_len`` interactions, up to ``long_len`` earlier
*positive* interactions, each with its semantic IDs, duration, play time and feedback labels) and
the **target** is that impression's item (semantic IDs, play time, duration, explicit-negative flag,
logged generation probability when the log has one).

One per-user state machine serves both the in-memory and the streaming path, so the log never has to
fit in memory: the state holds, per user, at most ``short_len + long_len + reward_history_len``
interactions. Each user's rows must arrive in time order (the loaders' sort, or the public files'
order in streaming; otherwise a ``ValueError``). Interactions sharing a timestamp are simultaneous:
none is in another's context.

Choices the paper leaves open (config options):

* ``long`` pathway = the ``long_len`` most recent interactions with any of ``positive_labels`` that
  are older than the short window (``long_exclude_short=True``), V1's positive-feedback pathway.
* impressions with fewer than ``min_history`` earlier interactions are not targets (default 1; 0
  allows empty, fully masked contexts).
* unknown items (not in the :class:`SemanticIdIndex`): ``unknown_item="error"`` raises,
  ``"skip"`` drops those rows from contexts and targets.
* unknown users (not in ``users``): ``unknown_user="zero"`` gives all-zero (= unknown) static
  features, ``"error"`` raises.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .schema import CONTINUOUS_FEATURES, FEEDBACK_LABELS

__all__ = [
    "DEFAULT_POSITIVE_LABELS",
    "OneRecFeatureSpec",
    "OneRecSampleBuilder",
    "chronological_cut_times",
    "leave_one_out_segments",
]

DEFAULT_POSITIVE_LABELS: tuple[str, ...] = ("is_like", "is_follow", "is_comment", "is_forward",
                                            "long_view")
_REQUIRED = ("user_id", "item_id", "timestamp")


@dataclass
class OneRecFeatureSpec:
    """Sizes a OneRec model config needs to consume the builder's batches.

    ``user_feature_vocab_sizes[f]``: feature ``f`` of ``user_static`` takes ids in
    ``[0, size)``, 0 = unknown. ``level_sizes``: semantic-ID codebook size per level.
    """

    user_feature_names: list[str]
    user_feature_vocab_sizes: list[int]
    num_levels: int
    level_sizes: list[int]
    short_len: int
    long_len: int
    reward_history_len: int
    continuous_features: list[str] = field(default_factory=lambda: list(CONTINUOUS_FEATURES))
    feedback_labels: list[str] = field(default_factory=lambda: list(FEEDBACK_LABELS))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chronological_cut_times(timestamps: Any, valid_fraction: float = 0.1,
                            test_fraction: float = 0.1) -> tuple[int, int]:
    """Global time cuts ``(t_valid, t_test)``: train targets ``t < t_valid``, validation
    ``t_valid <= t < t_test``, test ``t >= t_test`` (quantiles of the impression timestamps)."""
    if valid_fraction < 0 or test_fraction < 0 or valid_fraction + test_fraction >= 1:
        raise ValueError("need valid_fraction >= 0, test_fraction >= 0 and their sum < 1, got "
                         f"{valid_fraction} and {test_fraction}")
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.size == 0:
        raise ValueError("cannot split an empty interaction log")
    t_valid = int(np.quantile(ts, 1 - valid_fraction - test_fraction, method="higher"))
    t_test = int(np.quantile(ts, 1 - test_fraction, method="higher"))
    if test_fraction == 0:
        t_test = int(ts.max()) + 1
    if valid_fraction == 0:
        t_valid = t_test
    return t_valid, t_test


def leave_one_out_segments(user_ids: Any, holdout: int = 1) -> np.ndarray:
    """Per-row split of a log sorted by ``(user_id, time)``: ``2`` (test), ``1`` (validation) or ``0``
    (train), RecBole 1.2.1's ``LS: valid_and_test`` rule.

    A user with ``n`` rows holds out ``min(2 * holdout, n - 2)`` of its last rows (none when
    ``n <= 2``): the last ``holdout`` of those are test targets, the rest validation targets. The
    first row can never be a target (it has no history) and at least one training target is kept,
    so a user with 3 rows (``holdout=1``) gets a training and a test target but no validation
    target, and users with 1-2 rows are training-only. RecBole applies this to its augmented
    samples (one per row after the user's first); ``tests/test_onerec_recbole_split.py`` checks the
    split against RecBole's own code on generated logs.
    """
    if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 1:
        raise ValueError(f"holdout must be a positive int, got {holdout!r}")
    user = np.asarray(user_ids, dtype=np.int64)
    n = user.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n > 1 and (user[1:] < user[:-1]).any():
        raise ValueError("user_ids must be sorted (the log sorted by (user_id, time))")
    _, start, count = np.unique(user, return_index=True, return_counts=True)
    rows = np.repeat(count, count)  # the user's number of rows, per row
    from_end = np.repeat(start + count - 1, count) - np.arange(n)  # 0 for the user's last row
    held = np.minimum(2 * holdout, np.maximum(rows - 2, 0))
    test = np.minimum(holdout, held)
    return np.where(from_end < test, 2, np.where(from_end < held, 1, 0)).astype(np.int64)


TIE_ORDERS = ("simultaneous", "file")
SPLITS = ("time_cut", "leave_one_out")


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


class _UserState:
    __slots__ = ("last_ts", "long", "n_seen", "pending", "pending_ts", "reward", "short")

    def __init__(self, short_len: int, long_len: int, reward_len: int) -> None:
        self.short: deque = deque()
        self.long: deque = deque(maxlen=max(long_len, 1))
        self.reward: deque = deque(maxlen=max(reward_len, 1))
        self.pending: list = []
        self.pending_ts: int | None = None
        self.last_ts: int | None = None
        self.n_seen = 0


class OneRecSampleBuilder:
    """Turn standard interaction logs (:mod:`kwaiformers.data.loaders`) into OneRec samples.

    Args:
        index: the :class:`~kwaiformers.models.onerec.semantic_ids.SemanticIdIndex` giving every
            item's codes.
        users: the ``users`` table (``Dataset``/``DataFrame``/list of dicts) with ``user_id`` and
            categorical columns; ``None`` uses only a hashed user id (``user_id_buckets``).
        short_len, long_len: ``T_s`` and ``T_l`` (OneRec V1: 20 and 256).
        user_feature_columns: the ``users`` columns to use (default: all but ``user_id``, and
            without raw counts such as ``follow_user_num`` when KuaiRand's bucketed
            ``follow_user_num_range`` is present).
        include_user_id: put the user id first in ``user_static`` (V1's ``e_uid``).
        positive_labels: flags that make an interaction "positive" for the long pathway.
        reward_history_len: how many past ``(duration, play_time)`` pairs to return for
            duration-aware reward shaping (V2 section 3.1.1).
        tie_order: ``"simultaneous"`` (same-timestamp interactions share one context and are not in
            each other's) or ``"file"`` (ties ordered by log position, RecBole's convention).
    """

    def __init__(
        self,
        index: Any,
        users: Any = None,
        short_len: int = 20,
        long_len: int = 256,
        user_feature_columns: Sequence[str] | None = None,
        include_user_id: bool = True,
        user_id_buckets: int = 100_003,
        positive_labels: Sequence[str] = DEFAULT_POSITIVE_LABELS,
        long_exclude_short: bool = True,
        min_history: int = 1,
        reward_history_len: int = 64,
        unknown_item: str = "error",
        unknown_user: str = "zero",
        tie_order: str = "simultaneous",
    ) -> None:
        for name, val in (("short_len", short_len), ("long_len", long_len),
                          ("reward_history_len", reward_history_len), ("min_history", min_history)):
            if not isinstance(val, int) or val < 0:
                raise ValueError(f"{name} must be a non-negative int, got {val!r}")
        if short_len == 0:
            raise ValueError("short_len must be >= 1")
        if unknown_item not in ("error", "skip"):
            raise ValueError(f"unknown_item must be 'error' or 'skip', got {unknown_item!r}")
        if unknown_user not in ("zero", "error"):
            raise ValueError(f"unknown_user must be 'zero' or 'error', got {unknown_user!r}")
        if tie_order not in TIE_ORDERS:
            raise ValueError(f"tie_order must be one of {TIE_ORDERS}, got {tie_order!r}")
        self.tie_order = tie_order
        bad = [p for p in positive_labels if p not in FEEDBACK_LABELS]
        if bad:
            raise ValueError(f"positive_labels {bad} are not in FEEDBACK_LABELS {FEEDBACK_LABELS}")
        self.index = index
        self.short_len, self.long_len = short_len, long_len
        self.long_exclude_short = long_exclude_short
        self.min_history = min_history
        self.reward_history_len = reward_history_len
        self.unknown_item, self.unknown_user = unknown_item, unknown_user
        self._pos_idx = [FEEDBACK_LABELS.index(p) for p in positive_labels]
        self.include_user_id = include_user_id
        self.user_id_buckets = int(user_id_buckets)
        ids = index.item_ids.tolist()
        self._codes: dict[int, tuple[int, ...]] = dict(zip(ids, map(tuple, index.codes.tolist())))
        self._build_user_features(users, user_feature_columns)

    # ------------------------------------------------------------------ user features
    def _build_user_features(self, users: Any, columns: Sequence[str] | None) -> None:
        names: list[str] = []
        sizes: list[int] = []
        self._user_rows: dict[int, list[int]] | None = None
        if users is None:
            if columns:
                raise ValueError("user_feature_columns given but users is None")
            if self.include_user_id:
                names, sizes = ["user_id"], [self.user_id_buckets]
            self.user_feature_names, self.user_feature_vocab_sizes = names, sizes
            return
        table = _as_columns(users)
        if "user_id" not in table:
            raise ValueError(f"users table must have a 'user_id' column, got {sorted(table)}")
        uids = [int(u) for u in table["user_id"]]
        if len(set(uids)) != len(uids):
            raise ValueError("users table has duplicated user_id values")
        if columns is None:  # raw counts are skipped when a bucketed ``<name>_range`` exists
            cols = [c for c in table if c != "user_id" and f"{c}_range" not in table]
        else:
            cols = list(columns)
        missing = [c for c in cols if c not in table]
        if missing:
            raise ValueError(f"user_feature_columns {missing} are not in the users table")
        rows: dict[int, list[int]] = {u: [] for u in uids}
        if self.include_user_id:
            names.append("user_id")
            sizes.append(len(uids) + 1)
            for rank, u in enumerate(sorted(uids)):
                rows[u].append(rank + 1)
        self.user_vocabularies: dict[str, dict[str, int]] = {}
        for c in cols:
            values = ["" if v is None else str(v) for v in table[c]]
            vocab = {v: i + 1 for i, v in enumerate(sorted(set(values) - {""}))}
            self.user_vocabularies[c] = vocab
            names.append(c)
            sizes.append(len(vocab) + 1)
            for u, v in zip(uids, values):
                rows[u].append(vocab.get(v, 0))
        self._user_rows = rows
        self.user_feature_names, self.user_feature_vocab_sizes = names, sizes

    def user_static(self, user_id: int) -> list[int]:
        """Categorical static features of a user (0 = unknown)."""
        if self._user_rows is None:
            return [user_id % (self.user_id_buckets - 1) + 1] if self.include_user_id else []
        row = self._user_rows.get(user_id)
        if row is None:
            if self.unknown_user == "error":
                raise ValueError(f"unknown user id {user_id} (not in the users table)")
            return [0] * len(self.user_feature_names)
        return row

    @property
    def feature_spec(self) -> OneRecFeatureSpec:
        return OneRecFeatureSpec(
            user_feature_names=list(self.user_feature_names),
            user_feature_vocab_sizes=list(self.user_feature_vocab_sizes),
            num_levels=self.index.num_levels,
            level_sizes=list(self.index.level_sizes),
            short_len=self.short_len,
            long_len=self.long_len,
            reward_history_len=self.reward_history_len,
        )

    # ------------------------------------------------------------------ core state machine
    def _record(self, row: Mapping[str, Any]) -> tuple | None:
        item = int(row["item_id"])
        codes = self._codes.get(item)
        if codes is None:
            if self.unknown_item == "error":
                raise ValueError(f"unknown item id {item} (not in the SemanticIdIndex); pass "
                                 "unknown_item='skip' to drop such rows")
            return None
        labels = tuple(int(row.get(k) or 0) for k in FEEDBACK_LABELS)
        return (item, codes, int(row["timestamp"]), _f(row.get("duration")),
                _f(row.get("play_time")), labels)

    def _is_pos(self, rec: tuple) -> bool:
        return any(rec[5][i] for i in self._pos_idx)

    def _flush(self, st: _UserState) -> None:
        for rec in st.pending:
            st.short.append(rec)
            if self._pos_idx and not self.long_exclude_short and self._is_pos(rec):
                st.long.append(rec)
            while len(st.short) > self.short_len:
                old = st.short.popleft()
                if self._pos_idx and self.long_exclude_short and self._is_pos(old):
                    st.long.append(old)
            if not (math.isnan(rec[3]) or math.isnan(rec[4])):
                st.reward.append((rec[3], rec[4]))
            st.n_seen += 1
        st.pending = []

    def _history(self, recs: Iterable[tuple], now: int) -> dict[str, list]:
        items, sids, feats, labels, ts = [], [], [], [], []
        for item, codes, t, dur, play, lab in recs:
            items.append(item)
            sids.append(list(codes))
            ld = 0.0 if math.isnan(dur) else math.log1p(max(dur, 0.0))
            lp = 0.0 if math.isnan(play) else math.log1p(max(play, 0.0))
            ratio = 0.0 if (math.isnan(dur) or math.isnan(play) or dur <= 0) else min(play / dur, 10.0)
            age = math.log1p(max(now - t, 0) / 3_600_000.0)
            feats.append([ld, lp, ratio, age])
            labels.append(list(lab))
            ts.append(t)
        return {"item_ids": items, "sids": sids, "feats": feats, "labels": labels, "timestamps": ts}

    def _sample(self, user: int, rec: tuple, row: Mapping[str, Any], st: _UserState) -> dict:
        item, codes, t, dur, play, lab = rec
        short = self._history(st.short, t)
        long = self._history(list(st.long)[-self.long_len:] if self.long_len else [], t)
        sample: dict[str, Any] = {"user_id": user, "user_static": list(self.user_static(user))}
        for prefix, h in (("short", short), ("long", long)):
            for k, v in h.items():
                sample[f"{prefix}_{k}"] = v
        sample.update({
            "target_sids": list(codes),
            "target_item_id": item,
            "target_timestamp": t,
            "target_play_time": play,
            "target_duration": dur,
            "target_is_negative": bool(lab[FEEDBACK_LABELS.index("is_hate")]),
            "target_logged_prob": _f(row.get("logged_prob")),
            "target_labels": list(lab),
            "history_length": st.n_seen,
            "history_durations": [d for d, _ in st.reward],
            "history_play_times": [p for _, p in st.reward],
        })
        return sample

    def iter_samples(
        self,
        interactions: Iterable[Mapping[str, Any]],
        cut_times: Sequence[int] | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(segment, sample)`` for every target impression, streaming over ``interactions``.

        ``interactions`` is any iterable of standard rows (a ``Dataset``, an ``IterableDataset``,
        a list of dicts) with each user's rows in time order. Targets outside
        ``[start_time, end_time)`` are not emitted (their rows still enter later contexts).
        ``segment`` is the index of the first cut time greater than the target's timestamp
        (``cut_times=(t_valid, t_test)`` -> 0 train, 1 validation, 2 test); 0 without cuts.
        """
        cuts = list(cut_times or [])
        states: dict[int, _UserState] = {}
        first = True
        for row in interactions:
            if first:
                missing = [c for c in _REQUIRED if c not in row]
                if missing:
                    raise ValueError(f"interaction rows are missing column(s) {missing}; got "
                                     f"{sorted(row)} (see kwaiformers.data.loaders)")
                first = False
            user = int(row["user_id"])
            st = states.get(user)
            if st is None:
                st = states[user] = _UserState(self.short_len, self.long_len, self.reward_history_len)
            ts = int(row["timestamp"])
            if st.last_ts is not None and ts < st.last_ts:
                raise ValueError(
                    f"user {user}'s interactions are not in time order ({ts} after {st.last_ts}); "
                    "sort the log by (user_id, timestamp) or use the loaders' in-memory mode"
                )
            st.last_ts = ts
            if st.pending_ts is not None and (ts > st.pending_ts or self.tie_order == "file"):
                self._flush(st)
            rec = self._record(row)
            if rec is None:
                continue
            in_window = (start_time is None or ts >= start_time) and (end_time is None or ts < end_time)
            if in_window and st.n_seen >= self.min_history:
                seg = sum(ts >= c for c in cuts)
                yield seg, self._sample(user, rec, row, st)
            st.pending.append(rec)
            st.pending_ts = ts

    # ------------------------------------------------------------------ datasets
    def build(self, interactions: Any, start_time: int | None = None,
              end_time: int | None = None):
        """All samples (targets in ``[start_time, end_time)``) as an in-memory ``Dataset``, in
        time order of the targets (ties by user).

        In-memory tables (``Dataset``/``DataFrame``) take a vectorised numpy path that gives the
        same samples as :meth:`iter_samples`; other iterables go through :meth:`iter_samples`.
        """
        return self._build(interactions, None, start_time, end_time)[0]

    def build_splits(self, interactions: Any, valid_fraction: float = 0.1,
                     test_fraction: float = 0.1, cut_times: Sequence[int] | None = None,
                     split: str = "time_cut", holdout: int = 1):
        """``DatasetDict(train, validation, test)`` with no leakage.

        ``split="time_cut"``: cut times are global (``chronological_cut_times``, or given): every
        training target is earlier than every validation target, which is earlier than every test
        target. ``split="leave_one_out"``: per user, the last ``holdout`` interactions (in the
        ``tie_order``) are test targets and the ``holdout`` before them validation targets, users
        with few interactions following RecBole's rule (:func:`leave_one_out_segments`; in-memory
        tables only). Either way contexts only ever hold interactions that precede
        their target (so validation/test contexts include the earlier interactions, as in serving).
        """
        from datasets import DatasetDict

        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split == "leave_one_out":
            leave_one_out_segments([], holdout)  # validates holdout
            df = _as_frame(interactions)
            parts = self._build(df, None, None, None, holdout=holdout)
            self.cut_times = None
            return DatasetDict(dict(zip(("train", "validation", "test"), parts)))
        if cut_times is None:
            df = _as_frame(interactions)
            cut_times = chronological_cut_times(df["timestamp"].to_numpy(), valid_fraction,
                                                test_fraction)
            interactions = df
        if len(cut_times) != 2 or cut_times[0] > cut_times[1]:
            raise ValueError(f"cut_times must be (t_valid, t_test) with t_valid <= t_test, got {cut_times}")
        parts = self._build(interactions, cut_times, None, None)
        self.cut_times = tuple(int(c) for c in cut_times)
        return DatasetDict(dict(zip(("train", "validation", "test"), parts)))

    def _build(self, interactions: Any, cuts: Sequence[int] | None, start_time: int | None,
               end_time: int | None, holdout: int | None = None) -> list:
        from datasets import Dataset

        feats = sample_features()
        nseg = len(cuts or []) + 1
        df = _as_frame(interactions, required=False)
        if df is not None:
            tables = self._vectorized(df, list(cuts or []), start_time, end_time, holdout)
            return [Dataset(t.cast(feats.arrow_schema)) for t in tables]
        parts: list[list[dict]] = [[] for _ in range(nseg)]
        for seg, sample in self.iter_samples(interactions, cuts, start_time, end_time):
            parts[seg].append(sample)
        for part in parts:  # time order, like the vectorised path
            part.sort(key=lambda smp: smp["target_timestamp"])
        return [Dataset.from_list(p, features=feats) if p else
                Dataset.from_dict({k: [] for k in feats}, features=feats) for p in parts]

    def known_rows(self, df: Any) -> Any:
        """``df`` sorted by ``(user_id, timestamp)`` (stable: ties keep log order), without the
        rows of items missing from the index when ``unknown_item="skip"`` (the rows every sample
        is built from)."""
        import torch

        df = df.sort_values(["user_id", "timestamp"], kind="stable")
        item = df["item_id"].to_numpy(np.int64)
        known = self.index.contains_items(torch.tensor(item)).numpy()
        if not known.all():
            if self.unknown_item == "error":
                raise ValueError(f"unknown item ids {np.unique(item[~known])[:5].tolist()} (not in "
                                 "the SemanticIdIndex); pass unknown_item='skip' to drop such rows")
            df = df[known]
        return df

    def _vectorized(self, df: Any, cuts: list[int], start_time: int | None,
                    end_time: int | None, holdout: int | None = None) -> list:
        """The samples of :meth:`iter_samples`, computed with numpy over a sorted table
        (``holdout``: leave-one-out segments instead of the time ``cuts``)."""
        import pyarrow as pa
        import torch

        df = self.known_rows(df)
        item = df["item_id"].to_numpy(np.int64)
        user = df["user_id"].to_numpy(np.int64)
        ts = df["timestamp"].to_numpy(np.int64)
        n = len(item)

        def fcol(name: str) -> np.ndarray:
            if name not in df:
                return np.full(n, np.nan)
            return df[name].to_numpy(dtype=np.float64, na_value=np.nan)

        dur, play, logged = fcol("duration"), fcol("play_time"), fcol("logged_prob")
        labels = np.zeros((n, len(FEEDBACK_LABELS)), dtype=np.int8)
        for j, name in enumerate(FEEDBACK_LABELS):
            if name in df:
                labels[:, j] = df[name].fillna(0).to_numpy().astype(np.int8)
        codes = self.index.item_codes(torch.tensor(item)).numpy() if n else np.zeros((0, self.index.num_levels), np.int64)
        ar = np.arange(n)
        new_user = np.ones(n, dtype=bool)
        new_user[1:] = user[1:] != user[:-1]
        new_grp = new_user.copy()
        if self.tie_order == "file":
            new_grp[:] = True
        else:
            new_grp[1:] |= ts[1:] != ts[:-1]
        user_start = np.maximum.accumulate(np.where(new_user, ar, 0)) if n else ar
        prev_end = np.maximum.accumulate(np.where(new_grp, ar, 0)) if n else ar
        short_lo = np.maximum(user_start, prev_end - self.short_len)
        pos_rows = (np.flatnonzero(labels[:, self._pos_idx].any(1)) if self._pos_idx
                    else np.zeros(0, dtype=np.int64))
        long_cut = short_lo if self.long_exclude_short else prev_end
        long_hi = np.searchsorted(pos_rows, long_cut)
        long_lo = np.maximum(np.searchsorted(pos_rows, user_start), long_hi - self.long_len)
        rew_rows = np.flatnonzero(~np.isnan(dur) & ~np.isnan(play))
        rew_hi = np.searchsorted(rew_rows, prev_end)
        rew_lo = np.maximum(np.searchsorted(rew_rows, user_start), rew_hi - self.reward_history_len)
        if self.reward_history_len == 0:
            rew_lo = rew_hi
        ok = (prev_end - user_start) >= self.min_history
        if start_time is not None:
            ok &= ts >= start_time
        if end_time is not None:
            ok &= ts < end_time
        if holdout is not None:
            seg_all = leave_one_out_segments(user, holdout)
            cuts = [0, 0]  # three segments
        elif cuts:
            seg_all = (ts[:, None] >= np.asarray(cuts, dtype=np.int64)[None, :]).sum(1)
        else:
            seg_all = np.zeros(n, np.int64)
        ld = np.where(np.isnan(dur), 0.0, np.log1p(np.maximum(np.nan_to_num(dur), 0.0)))
        lp = np.where(np.isnan(play), 0.0, np.log1p(np.maximum(np.nan_to_num(play), 0.0)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(np.isnan(dur) | np.isnan(play) | ~(dur > 0), 0.0,
                             np.minimum(play / np.where(dur > 0, dur, 1.0), 10.0))
        statics = {u: self.user_static(int(u)) for u in np.unique(user).tolist()}
        width = len(self.user_feature_names)
        level = self.index.num_levels

        def ragged(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            counts = np.maximum(hi - lo, 0)
            offsets = np.zeros(len(lo) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            flat = np.repeat(lo - offsets[:-1], counts) + np.arange(offsets[-1])
            return offsets, flat

        def lst(offsets: np.ndarray, values: Any) -> Any:
            return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)

        def fixed(mat: np.ndarray) -> Any:
            m, w = mat.shape
            return lst(np.arange(m + 1, dtype=np.int64) * w, pa.array(mat.ravel()))

        def nested(offsets: np.ndarray, mat: np.ndarray) -> Any:
            return lst(offsets, fixed(mat))

        tables = []
        for seg in range(len(cuts) + 1):
            tgt = np.flatnonzero(ok & (seg_all == seg))
            tgt = tgt[np.argsort(ts[tgt], kind="stable")]  # samples in time order (ties: by user)
            t_ts = ts[tgt]
            cols: dict[str, Any] = {
                "user_id": pa.array(user[tgt]),
                "user_static": fixed(np.asarray([statics[u] for u in user[tgt].tolist()],
                                                dtype=np.int64).reshape(len(tgt), width)),
            }
            for prefix, lo, hi, base in (("short", short_lo, prev_end, None),
                                         ("long", long_lo, long_hi, pos_rows)):
                off, flat = ragged(lo[tgt], hi[tgt])
                rows = flat if base is None else base[flat]
                now = np.repeat(t_ts, np.diff(off))
                age = np.log1p(np.maximum(now - ts[rows], 0) / 3_600_000.0)
                hist_feats = np.stack([ld[rows], lp[rows], ratio[rows], age], 1).astype(np.float32)
                cols[f"{prefix}_item_ids"] = lst(off, pa.array(item[rows]))
                cols[f"{prefix}_sids"] = nested(off, codes[rows].reshape(len(rows), level))
                cols[f"{prefix}_feats"] = nested(off, hist_feats.reshape(len(rows), 4))
                cols[f"{prefix}_labels"] = nested(off, labels[rows].reshape(len(rows), len(FEEDBACK_LABELS)))
                cols[f"{prefix}_timestamps"] = lst(off, pa.array(ts[rows]))
            roff, rflat = ragged(rew_lo[tgt], rew_hi[tgt])
            rrows = rew_rows[rflat]
            cols.update({
                "target_sids": fixed(codes[tgt].reshape(len(tgt), level)),
                "target_item_id": pa.array(item[tgt]),
                "target_timestamp": pa.array(t_ts),
                "target_play_time": pa.array(play[tgt]),
                "target_duration": pa.array(dur[tgt]),
                "target_is_negative": pa.array(labels[tgt, FEEDBACK_LABELS.index("is_hate")] > 0),
                "target_logged_prob": pa.array(logged[tgt]),
                "target_labels": fixed(labels[tgt].reshape(len(tgt), len(FEEDBACK_LABELS))),
                "history_length": pa.array((prev_end - user_start)[tgt].astype(np.int64)),
                "history_durations": lst(roff, pa.array(dur[rrows].astype(np.float32))),
                "history_play_times": lst(roff, pa.array(play[rrows].astype(np.float32))),
            })
            tables.append(pa.table(cols))
        return tables

    def build_streaming(self, interactions: Iterable[Mapping[str, Any]],
                        start_time: int | None = None, end_time: int | None = None):
        """Samples as an ``IterableDataset`` built lazily from a (streaming) interaction log.

        Pass ``start_time``/``end_time`` (e.g. from :func:`chronological_cut_times`) to get one
        split; the history before ``start_time`` is still read to fill the contexts.
        """
        from datasets import IterableDataset

        def gen() -> Iterator[dict[str, Any]]:
            for _, s in self.iter_samples(interactions, None, start_time, end_time):
                yield s

        return IterableDataset.from_generator(gen, features=sample_features())


def _as_frame(interactions: Any, required: bool = True) -> Any:
    """A pandas DataFrame for in-memory tables; ``None`` (or an error) for other iterables."""
    import pandas as pd

    if isinstance(interactions, pd.DataFrame):
        df = interactions
    elif hasattr(interactions, "to_pandas") and hasattr(interactions, "num_rows"):
        df = interactions.to_pandas()
    elif isinstance(interactions, list):
        df = pd.DataFrame(interactions)
    elif required:
        raise TypeError("this operation needs an in-memory interaction table (Dataset, DataFrame "
                        f"or list of dicts), got {type(interactions).__name__}; for streams pass "
                        "cut_times explicitly")
    else:
        return None
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"interactions are missing column(s) {missing}; got {list(df.columns)}")
    return df


class _Columns:
    """Row view over column arrays (fast iteration over an in-memory table)."""

    def __init__(self, cols: dict[str, np.ndarray]) -> None:
        self.cols = cols

    def __getitem__(self, key: str) -> np.ndarray:
        return self.cols[key]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        names = list(self.cols)
        lists = [self.cols[n].tolist() for n in names]
        for vals in zip(*lists):
            yield dict(zip(names, vals))


def _as_columns(table: Any) -> dict[str, list]:
    if hasattr(table, "to_dict") and hasattr(table, "columns") and not hasattr(table, "features"):
        return {c: table[c].tolist() for c in table.columns}  # pandas
    if hasattr(table, "column_names") and hasattr(table, "features") and hasattr(table, "to_dict"):
        return table.to_dict()  # datasets.Dataset
    rows = list(table)
    if not rows:
        return {}
    return {k: [r.get(k) for r in rows] for k in rows[0]}


def _ordered_rows(interactions: Any) -> Any:
    """In-memory tables sorted by (user_id, timestamp); other iterables passed through."""
    if hasattr(interactions, "to_pandas") and hasattr(interactions, "num_rows"):
        df = interactions.to_pandas()
    elif hasattr(interactions, "columns") and hasattr(interactions, "sort_values"):
        df = interactions
    else:
        return interactions
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"interactions are missing column(s) {missing}; got {list(df.columns)}")
    df = df.sort_values(["user_id", "timestamp"], kind="stable")
    return _Columns({c: df[c].to_numpy() for c in df.columns})


def sample_features():
    """``datasets.Features`` of the builder's sample rows."""
    from datasets import Features, List, Value

    def hist(prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}_item_ids": List(Value("int64")),
            f"{prefix}_sids": List(List(Value("int64"))),
            f"{prefix}_feats": List(List(Value("float32"))),
            f"{prefix}_labels": List(List(Value("int8"))),
            f"{prefix}_timestamps": List(Value("int64")),
        }

    return Features({
        "user_id": Value("int64"),
        "user_static": List(Value("int64")),
        **hist("short"),
        **hist("long"),
        "target_sids": List(Value("int64")),
        "target_item_id": Value("int64"),
        "target_timestamp": Value("int64"),
        "target_play_time": Value("float64"),
        "target_duration": Value("float64"),
        "target_is_negative": Value("bool"),
        "target_logged_prob": Value("float64"),
        "target_labels": List(Value("int8")),
        "history_length": Value("int64"),
        "history_durations": List(Value("float32")),
        "history_play_times": List(Value("float32")),
    })
