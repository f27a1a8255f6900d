"""The one OneRec data pipeline: logs -> item embeddings -> semantic IDs -> samples -> splits.

Used by the pretraining recipe (``kwaiformers train onerec``), the alignment recipe
(``kwaiformers train onerec-rl``), the quickstart and the benchmarks, so every protocol choice is
made once, here:

1. **logs**: the KuaiRand-shaped simulator, or a KuaiRand / KuaiRec / MovieLens folder
   (:mod:`kwaiformers.data.loaders`), or a standard ``bundle`` passed in;
2. **split** (``split``): ``"time_cut"`` (global time cuts, ``valid_fraction``/``test_fraction``)
   or ``"leave_one_out"`` (per user, the last ``holdout`` interactions are test targets and the
   ``holdout`` before them validation targets, with RecBole's rule for users with fewer than
   ``2 * holdout + 2`` interactions: :func:`~kwaiformers.data.samples.leave_one_out_segments`);
   same-timestamp interactions follow ``tie_order``
   (``"simultaneous"`` | ``"file"``, see :mod:`kwaiformers.data.samples`);
3. **item embeddings, semantic IDs and index popularity are fitted on the training interactions
   only** (``fit_on="train"``; rows that are validation/test targets, and under ``time_cut`` every
   row at or after the validation cut, never reach them). Items without training interactions
   still get codes (a zero embedding, popularity 0) so that every target can be recommended;
4. **samples**: :class:`~kwaiformers.data.samples.OneRecSampleBuilder` ("newest impression
   only", V2 section 2.1);
5. **subsampling**: ``max_train_samples`` keeps the most recent training samples;
   ``max_eval_samples`` draws validation/test samples *uniformly* (seed ``eval_sample_seed``) and
   keeps them in split order, so evaluation covers all users with a target in expectation.

:class:`OneRecData` also answers "which items has this user already seen?" for each evaluation
sample (:meth:`OneRecData.seen_items`: the context-visible history, for seen-item exclusion) and
the training-interaction popularity (:meth:`OneRecData.item_popularity`, RecBole's ``Pop``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DATA_DEFAULTS", "TOKENIZER_DEFAULTS", "OneRecData", "build_onerec_data",
           "build_onerec_model", "load_logs"]

SOURCES = ("simulator", "kuairand", "kuairec", "movielens")

#: ``data`` keys and their defaults (the recipes' ``data`` section).
DATA_DEFAULTS: dict[str, Any] = {
    "source": "simulator",
    "data_dir": None,
    "loader_kwargs": {},
    "simulator": {},  # num_users, num_items, days, seed + SimulatorConfig fields
    "split": "time_cut",
    "valid_fraction": 0.1,
    "test_fraction": 0.1,
    "holdout": 1,
    "tie_order": "simultaneous",
    "short_len": 20,
    "long_len": 64,
    "min_history": 1,
    "reward_history_len": 64,
    "include_user_id": True,
    "use_user_features": True,
    "unknown_item": "skip",
    "max_train_samples": None,
    "max_eval_samples": None,
    "eval_sample_seed": 0,
}

#: ``tokenizer`` keys and their defaults (the recipes' ``tokenizer`` section).
TOKENIZER_DEFAULTS: dict[str, Any] = {
    "embeddings": "ppmi_svd",  # or "completion_svd" (needs play_time/duration)
    "embedding_dim": 32,
    "num_levels": 3,
    "codebook_size": 32,  # int or one size per level
    "method": "kmeans",  # or "balanced"
    "niter": 20,
    "seed": 0,
    "disambiguate": False,
    "fit_on": "train",  # or "all" (leaks validation/test interactions; for ablations only)
    "item_index_dir": None,  # reuse a saved SemanticIdIndex instead of fitting
}


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, section: str) -> dict[str, Any]:
    given = dict(given or {})
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {section} key(s) {sorted(unknown)}; expected some of "
                         f"{sorted(defaults)}")
    return {**defaults, **given}


@dataclass
class OneRecData:
    """Everything training and evaluation need about the data."""

    splits: Any  #: DatasetDict(train, validation, test) of OneRecSampleBuilder samples
    index: Any  #: SemanticIdIndex
    tokenizer: Any  #: SemanticIdTokenizer (None when the index was loaded)
    spec: Any  #: OneRecFeatureSpec
    collator: Any  #: OneRecCollator
    simulator: Any = None  #: UserSimulator (ground truth) or None for real logs
    info: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  #: the resolved data + tokenizer settings
    #: the interactions the embeddings / semantic IDs / popularity were fitted on (DataFrame)
    train_interactions: Any = None
    _user_ids: Any = None  #: sorted unique users of the (known-item, protocol-ordered) log
    _user_ptr: Any = None  #: row offsets of each user in ``_items``
    _items: Any = None  #: item ids of the log in protocol order

    @property
    def feature_spec(self) -> Any:
        """Alias of :attr:`spec`."""
        return self.spec

    @property
    def train_item_ids(self) -> Any:
        """LongTensor of the training samples' target items."""
        import torch

        return torch.as_tensor(self.splits["train"]["target_item_id"], dtype=torch.long)

    def item_popularity(self) -> tuple[Any, Any]:
        """``(item_ids, counts)`` of the training interactions (every training row, not only the
        training targets): the ranking of RecBole's ``Pop``."""
        import torch

        items = self.train_interactions["item_id"].to_numpy(np.int64)
        ids, counts = np.unique(items, return_counts=True)
        return torch.from_numpy(ids), torch.from_numpy(counts)

    def seen_items(self, split: str, dataset: Any = None) -> list[np.ndarray]:
        """Per sample of ``splits[split]`` (or of ``dataset``, rows of that split): the items the
        user interacted with before the target (its first ``history_length`` interactions in the
        protocol order), for seen-item exclusion."""
        ds = self.splits[split] if dataset is None else dataset
        users = np.asarray(ds["user_id"], dtype=np.int64)
        lengths = np.asarray(ds["history_length"], dtype=np.int64)
        pos = np.searchsorted(self._user_ids, users).clip(max=len(self._user_ids) - 1)
        if len(users) and not (self._user_ids[pos] == users).all():
            raise ValueError("samples hold users that are not in this OneRecData's log")
        starts = self._user_ptr[pos]
        return [self._items[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist())]


def load_logs(data: Mapping[str, Any], progress: bool = False) -> tuple[Any, Any]:
    """``(bundle, simulator)``: the standard ``interactions``/``users``/``items`` tables of
    ``data["source"]`` (the simulator, or a loader over ``data["data_dir"]``)."""
    source = data.get("source", "simulator")
    if source not in SOURCES:
        raise ValueError(f"data.source must be one of {'|'.join(SOURCES)}, got {source!r}")
    if source == "simulator":
        from kwaiformers.data.simulator import UserSimulator

        sim_cfg = dict(data.get("simulator") or {})
        num_users = int(sim_cfg.pop("num_users", 500))
        num_items = int(sim_cfg.pop("num_items", 500))
        days = int(sim_cfg.pop("days", 7))
        seed = int(sim_cfg.pop("seed", 0))
        sim = UserSimulator(num_users=num_users, num_items=num_items, seed=seed, **sim_cfg)
        return sim.generate_logs(days=days, seed=seed, progress=progress).to_dataset(), sim
    if not data.get("data_dir"):
        raise ValueError(f"data.data_dir is required for data.source={source!r}")
    from kwaiformers.data import loaders

    loader = {"kuairand": loaders.load_kuairand, "kuairec": loaders.load_kuairec,
              "movielens": loaders.load_movielens}[source]
    return loader(data["data_dir"], **dict(data.get("loader_kwargs") or {})), None


def _frame(table: Any) -> Any:
    return table.to_pandas() if hasattr(table, "to_pandas") else table


def build_onerec_data(
    data: Mapping[str, Any] | None = None,
    tokenizer: Mapping[str, Any] | None = None,
    bundle: Any = None,
    simulator: Any = None,
    progress: bool = False,
) -> OneRecData:
    """Run the pipeline (module docstring); deterministic given the seeds.

    Args:
        data: ``data`` settings (:data:`DATA_DEFAULTS`).
        tokenizer: ``tokenizer`` settings (:data:`TOKENIZER_DEFAULTS`).
        bundle: standard tables (``interactions`` and optional ``users``) to use instead of
            ``data["source"]``; ``simulator``: its ground-truth simulator, if any.
    """
    import torch

    from kwaiformers.data.collator import OneRecCollator
    from kwaiformers.data.samples import (
        SPLITS,
        TIE_ORDERS,
        OneRecSampleBuilder,
        chronological_cut_times,
        leave_one_out_segments,
    )

    cfg = _merge(DATA_DEFAULTS, data, "data")
    tok_cfg = _merge(TOKENIZER_DEFAULTS, tokenizer, "tokenizer")
    if cfg["split"] not in SPLITS:
        raise ValueError(f"data.split must be one of {SPLITS}, got {cfg['split']!r}")
    if cfg["tie_order"] not in TIE_ORDERS:
        raise ValueError(f"data.tie_order must be one of {TIE_ORDERS}, got {cfg['tie_order']!r}")
    if tok_cfg["fit_on"] not in ("train", "all"):
        raise ValueError(f"tokenizer.fit_on must be 'train' or 'all', got {tok_cfg['fit_on']!r}")
    if tok_cfg["embeddings"] not in ("ppmi_svd", "completion_svd"):
        raise ValueError("tokenizer.embeddings must be 'ppmi_svd' or 'completion_svd', got "
                         f"{tok_cfg['embeddings']!r}")
    if bundle is None:
        bundle, simulator = load_logs(cfg, progress=progress)
    inter = _frame(bundle["interactions"])
    if len(inter) == 0:
        raise ValueError("the logs hold no interactions")
    users = bundle["users"] if cfg["use_user_features"] and "users" in bundle else None
    info: dict[str, Any] = {"num_interactions": len(inter)}

    # ---- which rows are training interactions (the protocol order of the sample builder)
    df = inter.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    cut_times = None
    if cfg["split"] == "leave_one_out":
        seg = leave_one_out_segments(df["user_id"].to_numpy(np.int64), int(cfg["holdout"]))
    else:
        cut_times = chronological_cut_times(df["timestamp"].to_numpy(), float(cfg["valid_fraction"]),
                                            float(cfg["test_fraction"]))
        seg = (df["timestamp"].to_numpy(np.int64)[:, None] >= np.asarray(cut_times)[None]).sum(1)
    train_df = df[seg == 0] if tok_cfg["fit_on"] == "train" else df
    info["num_train_interactions"] = int((seg == 0).sum())

    # ---- item embeddings -> semantic IDs -> index (fitted on train_df only)
    tok = None
    if tok_cfg["item_index_dir"] is not None:
        from kwaiformers.models.onerec.item_index import SemanticIdIndex

        index = SemanticIdIndex.from_pretrained(tok_cfg["item_index_dir"])
    else:
        from kwaiformers.data.embeddings import collaborative_embeddings, completion_svd_embeddings
        from kwaiformers.models.onerec.semantic_ids import SemanticIdTokenizer

        all_items = np.unique(inter["item_id"].to_numpy(np.int64))
        items_table = bundle.get("items") if hasattr(bundle, "get") else None
        if items_table is not None and "item_id" in getattr(items_table, "column_names",
                                                            getattr(items_table, "columns", [])):
            all_items = np.union1d(all_items, np.asarray(items_table["item_id"], dtype=np.int64))
        train_items = np.unique(train_df["item_id"].to_numpy(np.int64))
        dim = int(tok_cfg["embedding_dim"])
        if tok_cfg["embeddings"] == "completion_svd":
            _, emb = completion_svd_embeddings(train_df, dim=dim, item_ids=train_items,
                                               seed=int(tok_cfg["seed"]))
        else:
            _, emb = collaborative_embeddings(train_df[["user_id", "item_id"]], dim=dim,
                                              item_ids=train_items, seed=int(tok_cfg["seed"]))
        num_levels = int(tok_cfg["num_levels"])
        sizes = tok_cfg["codebook_size"]
        sizes = [int(sizes)] * num_levels if isinstance(sizes, int) else [int(s) for s in sizes]
        if tok_cfg["method"] == "balanced" and math.prod(sizes) < len(train_items):
            raise ValueError(f"codebook sizes {sizes} give fewer tuples than the "
                             f"{len(train_items)} items")
        tok = SemanticIdTokenizer().fit(emb, num_levels=num_levels, codebook_size=sizes,
                                        method=tok_cfg["method"], niter=int(tok_cfg["niter"]),
                                        seed=int(tok_cfg["seed"]), progress=progress)
        codes = torch.zeros(len(all_items), num_levels, dtype=torch.long)
        in_train = np.isin(all_items, train_items)
        codes[torch.from_numpy(in_train)] = tok.fit_codes_  # the method's own assignment
        if (~in_train).any():  # no training interaction: the code of a zero embedding
            codes[torch.from_numpy(~in_train)] = tok.encode(torch.zeros(1, emb.shape[1])).expand(
                int((~in_train).sum()), -1)
        ids, counts = np.unique(train_df["item_id"].to_numpy(np.int64), return_counts=True)
        pop = np.zeros(len(all_items))
        pop[np.searchsorted(all_items, ids)] = counts
        index = tok.build_index(codes=codes, item_ids=torch.from_numpy(all_items),
                                popularity=torch.from_numpy(pop),
                                disambiguate=bool(tok_cfg["disambiguate"]))
        info["num_cold_items"] = int((~in_train).sum())
    info.update(index.collision_stats())

    # ---- samples and splits
    builder = OneRecSampleBuilder(
        index, users=users, short_len=int(cfg["short_len"]), long_len=int(cfg["long_len"]),
        min_history=int(cfg["min_history"]), reward_history_len=int(cfg["reward_history_len"]),
        include_user_id=bool(cfg["include_user_id"]), unknown_item=cfg["unknown_item"],
        tie_order=cfg["tie_order"],
    )
    splits = builder.build_splits(df, split=cfg["split"], cut_times=cut_times,
                                  holdout=int(cfg["holdout"]))
    limit = cfg["max_train_samples"]
    if limit is not None and len(splits["train"]) > int(limit):  # the most recent (time order)
        n = len(splits["train"])
        splits["train"] = splits["train"].select(range(n - int(limit), n))
    limit = cfg["max_eval_samples"]
    rng = np.random.default_rng(int(cfg["eval_sample_seed"]))
    for name in ("validation", "test"):
        n = len(splits[name])
        if limit is not None and n > int(limit):  # uniform, kept in split order
            splits[name] = splits[name].select(np.sort(rng.choice(n, int(limit), replace=False)))
    for name in ("train", "validation", "test"):
        info[f"num_{name}_samples"] = len(splits[name])
    info["num_test_users"] = len(set(splits["test"]["user_id"]))

    known = builder.known_rows(df)
    user_arr = known["user_id"].to_numpy(np.int64)
    user_ids, starts = np.unique(user_arr, return_index=True)
    spec = builder.feature_spec
    return OneRecData(
        splits=splits, index=index, tokenizer=tok, spec=spec, collator=OneRecCollator(spec),
        simulator=simulator, info=info, config={"data": cfg, "tokenizer": tok_cfg},
        train_interactions=train_df, _user_ids=user_ids, _user_ptr=starts,
        _items=known["item_id"].to_numpy(np.int64),
    )


def build_onerec_model(spec: Any, model: Mapping[str, Any]):
    """A randomly initialised OneRec-V1 (``type: onerec``) or OneRec-V2 (``type: onerec_v2``)
    sized to the data's feature ``spec``; other keys are config fields (``preset`` picks a preset).
    """
    cfg = dict(model)
    model_type = cfg.pop("type", "onerec_v2")
    preset = cfg.pop("preset", None)
    sized = dict(
        user_feature_vocab_sizes=list(spec.user_feature_vocab_sizes),
        num_sid_levels=int(spec.num_levels), codebook_size=list(spec.level_sizes),
        short_seq_len=int(spec.short_len), long_seq_len=int(spec.long_len),
    )
    if model_type == "onerec_v2":
        from kwaiformers.models.onerec_v2.configuration_onerec_v2 import OneRecV2Config as Config
        from kwaiformers.models.onerec_v2.modeling_onerec_v2 import (
            OneRecV2ForGenerativeRecommendation as Model,
        )
    elif model_type == "onerec":
        from kwaiformers.models.onerec.configuration_onerec import OneRecConfig as Config
        from kwaiformers.models.onerec.modeling_onerec import (
            OneRecForGenerativeRecommendation as Model,
        )

        sized["num_lifelong_queries"] = cfg.pop("num_lifelong_queries", 0)  # no lifelong pathway data
    else:
        raise ValueError(f"model.type must be 'onerec' or 'onerec_v2', got {model_type!r}")
    kwargs = {**cfg, **sized}
    config = Config.from_preset(preset, **kwargs) if preset else Config(**kwargs)
    return Model(config)
