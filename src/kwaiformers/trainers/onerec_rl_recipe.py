"""OneRec preference-alignment pipeline pieces and the ``kwaiformers train onerec-rl`` recipe.

Pipeline (each step a function, shared by the recipe, the quickstart and the benchmark):

1. :func:`prepare_data`: logs (the KuaiRand-shaped simulator, or a real KuaiRand folder) ->
   collaborative item embeddings -> semantic IDs (balanced residual k-means) -> OneRec-V2
   "newest impression only" samples with a chronological train/validation/test split;
2. :func:`build_tiny_model` + :func:`pretrain`: a small OneRec(-V2) trained with
   ``transformers.Trainer`` on the next-impression loss;
3. :func:`train_reward_model`: the P-Score reward model (needed by ECPO and the hybrid mode);
4. :func:`align`: :class:`~kwaiformers.trainers.gbpo_trainer.GBPOTrainer` (``gbpo``, ``hybrid``)
   or :class:`~kwaiformers.trainers.ecpo_trainer.ECPOTrainer` (``ecpo``);
5. :func:`evaluate_recommender`: top-10 recommendations for one held-out (test-period) impression
   per user, scored by the simulator's ground truth (expected play time, completion rate, dislike
   probability), Recall@10 against the logged next item, and the legality of unconstrained beam
   search. On real KuaiRand data there is no ground truth: those columns are NaN.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "OneRecRLData",
    "add_arguments",
    "align",
    "build_tiny_model",
    "collaborative_item_embeddings",
    "evaluate_recommender",
    "prepare_data",
    "pretrain",
    "run",
    "run_recipe",
    "train_reward_model",
]


@dataclass
class OneRecRLData:
    """Everything the alignment steps need about the data."""

    splits: Any  #: DatasetDict(train, validation, test) of OneRecSampleBuilder samples
    collator: Any  #: OneRecCollator
    index: Any  #: SemanticIdIndex
    spec: Any  #: OneRecFeatureSpec
    simulator: Any = None  #: UserSimulator (ground truth) or None for real logs
    info: dict[str, Any] = field(default_factory=dict)


def collaborative_item_embeddings(interactions: Any, num_items: int | None = None, dim: int = 32,
                                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Item embeddings from the interaction matrix: truncated SVD of ``log1p`` of the per
    (user, item) sum of completion ratios, the first (popularity) component dropped, rows
    L2-normalised. Returns ``(item_ids [N], embeddings [N, dim])``."""
    import numpy as np

    df = interactions.to_pandas() if hasattr(interactions, "to_pandas") else interactions
    if len(df) == 0:
        raise ValueError("no interactions to embed items from")
    item_ids, item_pos = np.unique(df["item_id"].to_numpy(), return_inverse=True)
    user_ids, user_pos = np.unique(df["user_id"].to_numpy(), return_inverse=True)
    ratio = (df["play_time"].to_numpy(float) / np.clip(df["duration"].to_numpy(float), 1e-3, None))
    ratio = np.nan_to_num(np.clip(ratio, 0.0, 1.0))
    mat = torch.zeros(len(user_ids), len(item_ids))
    mat.index_put_((torch.as_tensor(user_pos), torch.as_tensor(item_pos)),
                   torch.as_tensor(ratio, dtype=torch.float32), accumulate=True)
    mat = torch.log1p(mat)
    q = min(dim + 1, min(mat.shape))
    torch.manual_seed(seed)
    _, s, v = torch.svd_lowrank(mat, q=q, niter=4)
    emb = v[:, 1:] * s[1:].sqrt() if q > 1 else v * s.sqrt()
    return torch.as_tensor(item_ids), torch.nn.functional.normalize(emb, dim=-1)


def prepare_data(
    *,
    kuairand_dir: str | None = None,
    num_users: int = 400,
    num_items: int = 300,
    days: int = 5,
    seed: int = 0,
    codebook_sizes: tuple[int, ...] = (16, 8, 8),
    short_len: int = 10,
    long_len: int = 10,
    reward_history_len: int = 32,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.15,
    embedding_dim: int = 32,
    simulator_kwargs: dict[str, Any] | None = None,
    item_index_dir: str | None = None,
) -> OneRecRLData:
    """Logs -> semantic IDs -> samples (see the module docstring). ``simulator_kwargs`` are
    :class:`~kwaiformers.data.simulator.SimulatorConfig` fields (e.g. ``log_exposure_prob=True``
    to log the generation probability that GBPO uses as ``pi_old``). ``item_index_dir``: reuse a
    saved :class:`SemanticIdIndex` (the one a pretrained checkpoint was trained with) instead of
    fitting new semantic IDs."""
    from kwaiformers.data.collator import OneRecCollator
    from kwaiformers.data.samples import OneRecSampleBuilder
    from kwaiformers.models.onerec.semantic_ids import SemanticIdTokenizer

    sim = None
    if kuairand_dir is not None:
        from kwaiformers.data.loaders import load_kuairand

        bundle = load_kuairand(kuairand_dir)
    else:
        from kwaiformers.data.simulator import UserSimulator

        sim = UserSimulator(num_users=num_users, num_items=num_items, seed=seed,
                            **(simulator_kwargs or {}))
        bundle = sim.generate_logs(days=days, seed=seed).to_dataset()
    inter = bundle["interactions"]
    if len(inter) == 0:
        raise ValueError("the logs hold no interactions")
    info: dict[str, Any] = {"num_interactions": len(inter)}
    if item_index_dir is not None:
        from kwaiformers.models.onerec.item_index import SemanticIdIndex

        index = SemanticIdIndex.from_pretrained(item_index_dir)
    else:
        item_ids, emb = collaborative_item_embeddings(inter, dim=embedding_dim, seed=seed)
        sizes = list(codebook_sizes)
        if math.prod(sizes) < len(item_ids):
            raise ValueError(f"codebook_sizes {sizes} give fewer tuples than the {len(item_ids)} items")
        tok = SemanticIdTokenizer().fit(emb, num_levels=len(sizes), codebook_size=sizes,
                                        method="balanced", seed=seed, progress=False)
        df = inter.to_pandas()
        counts = df["item_id"].value_counts()
        pop = torch.tensor([float(counts.get(int(i), 0)) for i in item_ids])
        index = tok.build_index(codes=tok.encode(emb), item_ids=item_ids, popularity=pop)
        info["tokenizer"] = tok
    info.update(index.collision_stats())
    builder = OneRecSampleBuilder(index, users=bundle["users"], short_len=short_len,
                                  long_len=long_len, include_user_id=False,
                                  reward_history_len=reward_history_len)
    splits = builder.build_splits(inter, valid_fraction=valid_fraction, test_fraction=test_fraction)
    spec = builder.feature_spec
    return OneRecRLData(splits=splits, collator=OneRecCollator(spec), index=index, spec=spec,
                        simulator=sim, info=info)


def build_tiny_model(spec: Any, version: str = "v2", hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 4, embed_dim: int = 16, seed: int = 0):
    """A small randomly initialised OneRec-V2 (lazy decoder) or V1 (encoder-decoder) for ``spec``."""
    torch.manual_seed(seed)
    common = dict(user_feature_vocab_sizes=spec.user_feature_vocab_sizes,
                  num_sid_levels=spec.num_levels, codebook_size=spec.level_sizes,
                  short_seq_len=spec.short_len, long_seq_len=spec.long_len,
                  hidden_size=hidden_size, num_attention_heads=num_heads,
                  intermediate_size=2 * hidden_size)
    if version == "v2":
        from kwaiformers.models.onerec_v2.configuration_onerec_v2 import OneRecV2Config
        from kwaiformers.models.onerec_v2.modeling_onerec_v2 import (
            OneRecV2ForGenerativeRecommendation,
        )

        cfg = OneRecV2Config(**common, embed_dim=embed_dim, num_hidden_layers=num_layers)
        return OneRecV2ForGenerativeRecommendation(cfg)
    if version == "v1":
        from kwaiformers.models.onerec.configuration_onerec import OneRecConfig
        from kwaiformers.models.onerec.modeling_onerec import OneRecForGenerativeRecommendation

        cfg = OneRecConfig(**common, num_encoder_layers=max(1, num_layers // 2),
                           num_decoder_layers=max(1, num_layers // 2), lifelong_seq_len=0,
                           user_feature_embed_dim=embed_dim, sid_embed_dim=embed_dim,
                           feature_embed_dim=embed_dim)
        return OneRecForGenerativeRecommendation(cfg)
    raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")


def _quiet_args(output_dir: str, progress: bool, **kw):
    from transformers import TrainingArguments

    base = dict(output_dir=output_dir, report_to=[], use_cpu=not torch.cuda.is_available(),
                save_strategy="no", remove_unused_columns=False, disable_tqdm=not progress,
                logging_steps=10, seed=0)
    base.update(kw)
    return TrainingArguments(**base)


def _silence(trainer, progress: bool):
    """Without progress bars, also drop the per-step log printing (the history is kept)."""
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


def pretrain(model: Any, data: OneRecRLData, output_dir: str, max_steps: int = 150,
             batch_size: int = 64, learning_rate: float = 3e-3, seed: int = 0,
             progress: bool = True) -> list[dict[str, float]]:
    """Next-impression (NTP over the semantic-ID levels) pretraining with ``transformers.Trainer``.
    Returns the log history."""
    from transformers import Trainer

    args = _quiet_args(output_dir, progress, per_device_train_batch_size=batch_size,
                       max_steps=max_steps, learning_rate=learning_rate, seed=seed,
                       lr_scheduler_type="cosine", warmup_steps=max(1, max_steps // 10),
                       logging_steps=max(1, max_steps // 20))
    trainer = _silence(Trainer(model=model, args=args, train_dataset=data.splits["train"],
                               data_collator=data.collator), progress)
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]


def train_reward_model(data: OneRecRLData, output_dir: str, max_steps: int = 100,
                       batch_size: int = 128, learning_rate: float = 3e-3, seed: int = 0,
                       progress: bool = True):
    """Train the P-Score reward model on the logged exposures (labels from the targets' feedback)."""
    from transformers import Trainer

    from kwaiformers.rewards.configuration_pscore import PScoreConfig
    from kwaiformers.rewards.modeling_pscore import PScoreModel, pscore_labels_from_batch

    torch.manual_seed(seed)
    cfg = PScoreConfig(num_levels=data.spec.num_levels, codebook_size=data.spec.level_sizes,
                       user_feature_vocab_sizes=data.spec.user_feature_vocab_sizes,
                       hidden_size=32, tower_hidden_size=16)
    model = PScoreModel(cfg)

    def collate(rows):
        batch = data.collator(rows)
        batch["labels"] = pscore_labels_from_batch(batch, cfg)
        return batch

    args = _quiet_args(output_dir, progress, per_device_train_batch_size=batch_size,
                       max_steps=max_steps, learning_rate=learning_rate, seed=seed)
    _silence(Trainer(model=model, args=args, train_dataset=data.splits["train"],
                     data_collator=collate), progress).train()
    return model.eval()


def align(algorithm: str, model: Any, data: OneRecRLData, output_dir: str,
          reward_model: Any = None, progress: bool = True, **config: Any):
    """Run ECPO (``"ecpo"``) or GBPO (``"gbpo"``, ``"hybrid"``); ``config`` are
    :class:`ECPOConfig` / :class:`GBPOConfig` fields. Returns the trainer (its ``state`` holds the
    log history)."""
    base = dict(output_dir=output_dir, report_to=[], use_cpu=not torch.cuda.is_available(),
                bf16=False, save_strategy="no", disable_tqdm=not progress, logging_steps=5,
                learning_rate=1e-3, max_steps=50)
    base.update(config)
    if algorithm == "ecpo":
        from .ecpo_config import ECPOConfig
        from .ecpo_trainer import ECPOTrainer

        args = ECPOConfig(**base)
        trainer = ECPOTrainer(model, reward_model=reward_model, args=args,
                              train_dataset=data.splits["train"], data_collator=data.collator,
                              item_index=data.index)
    elif algorithm in ("gbpo", "hybrid"):
        from .gbpo_config import GBPOConfig
        from .gbpo_trainer import GBPOTrainer

        if algorithm == "hybrid":
            base["mode"] = "hybrid"
        args = GBPOConfig(**base)
        trainer = GBPOTrainer(model, args=args, train_dataset=data.splits["train"],
                              data_collator=data.collator, reward_model=reward_model,
                              item_index=data.index)
    else:
        raise ValueError(f"algorithm must be 'ecpo', 'gbpo' or 'hybrid', got {algorithm!r}")
    _silence(trainer, progress).train()
    return trainer


def _first_per_user(ds, max_users: int | None):
    seen: set[int] = set()
    keep: list[int] = []
    for k, uid in enumerate(ds["user_id"]):
        if uid not in seen:
            seen.add(uid)
            keep.append(k)
            if max_users is not None and len(keep) >= max_users:
                break
    return ds.select(keep)


@torch.no_grad()
def evaluate_recommender(model: Any, data: OneRecRLData, split: str = "test", num_items: int = 10,
                         beam_size: int = 32, max_users: int | None = None,
                         batch_size: int = 128) -> dict[str, float]:
    """Ground-truth quality of top-``num_items`` recommendations for one held-out impression per
    user (see the module docstring). Returns ``expected_play_time``, ``completion_rate``,
    ``dislike_rate`` (mean dislike probability), ``recall@K`` and ``legality``."""
    ds = _first_per_user(data.splits[split], max_users)
    if len(ds) == 0:
        raise ValueError(f"split {split!r} holds no samples to evaluate")
    was_training = model.training
    model.eval()
    sums = {"expected_play_time": 0.0, "completion_rate": 0.0, "dislike_rate": 0.0, "hits": 0.0,
            "legal": 0.0, "n_legal": 0.0}
    n_rec = 0
    for start in range(0, len(ds), batch_size):
        rows = [ds[j] for j in range(start, min(start + batch_size, len(ds)))]
        batch = {k: v.to(model.device) for k, v in data.collator(rows).items()}
        out = model.recommend(batch, num_items=num_items, beam_size=max(beam_size, num_items),
                              constrained=True, item_index=data.index)
        items = out.item_ids.cpu()
        sums["hits"] += float((items == batch["target_item_id"].cpu()[:, None]).any(1).sum())
        if data.simulator is not None:
            truth = data.simulator.score(batch["user_id"].cpu()[:, None].numpy(),
                                         items.clamp(min=0).numpy())
            valid = (items >= 0).numpy()
            sums["expected_play_time"] += float(truth["expected_play_time"][valid].sum())
            sums["completion_rate"] += float(truth["completion_rate"][valid].sum())
            sums["dislike_rate"] += float(truth["dislike_prob"][valid].sum())
            n_rec += int(valid.sum())
        free = model.recommend(batch, num_items=num_items, beam_size=max(beam_size, num_items),
                               constrained=False, item_index=data.index)
        legal = data.index.is_legal(free.sids.reshape(-1, free.sids.shape[-1]).cpu())
        sums["legal"] += float(legal.sum())
        sums["n_legal"] += legal.numel()
    model.train(was_training)
    n_users = len(ds)
    nan = float("nan")
    return {
        "expected_play_time": sums["expected_play_time"] / n_rec if n_rec else nan,
        "completion_rate": sums["completion_rate"] / n_rec if n_rec else nan,
        "dislike_rate": sums["dislike_rate"] / n_rec if n_rec else nan,
        f"recall@{num_items}": sums["hits"] / n_users,
        "legality": sums["legal"] / max(sums["n_legal"], 1.0),
        "num_users": float(n_users),
    }


# ---------------------------------------------------------------------------- the recipe
#: Top-level keys of an ``onerec-rl`` YAML recipe and the algorithms it runs.
RECIPE_KEYS = ("algorithm", "seed", "output_dir", "data", "model", "eval", "reward_model",
               "trainer")
ALGORITHMS = ("gbpo", "ecpo", "hybrid")


def run_recipe(config: dict[str, Any], progress: bool = True) -> dict[str, Any]:
    """Run the ``onerec-rl`` recipe from a config dict (the YAML files in ``trainers/configs``)."""
    unknown = sorted(set(config) - set(RECIPE_KEYS))
    if unknown:  # checked before any work: a typo must not silently run the defaults
        raise ValueError(f"unknown top-level keys {unknown} (expected {', '.join(RECIPE_KEYS)})")
    algorithm = config.get("algorithm", "gbpo")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    seed = int(config.get("seed", 0))
    out_dir = config.get("output_dir", f"outputs/onerec-{algorithm}")
    data_cfg = dict(config.get("data", {}))
    data = prepare_data(seed=seed, **data_cfg)
    model_cfg = dict(config.get("model", {}))
    pretrained = model_cfg.pop("pretrained", None)
    pretrain_steps = int(model_cfg.pop("pretrain_steps", 150))
    pretrain_lr = float(model_cfg.pop("pretrain_learning_rate", 3e-3))
    if pretrained:
        from transformers import AutoModel

        import kwaiformers

        kwaiformers.register_auto_classes()
        model = AutoModel.from_pretrained(pretrained)
    else:
        model = build_tiny_model(data.spec, seed=seed, **model_cfg)
        pretrain(model, data, os.path.join(out_dir, "pretrain"), max_steps=pretrain_steps,
                 learning_rate=pretrain_lr, seed=seed, progress=progress)
    before = evaluate_recommender(model, data, **config.get("eval", {}))
    reward_model = None
    rm_cfg = dict(config.get("reward_model", {}))
    if algorithm in ("ecpo", "hybrid"):
        if rm_cfg.get("pretrained"):
            from transformers import AutoModel

            reward_model = AutoModel.from_pretrained(rm_cfg["pretrained"])
        else:
            reward_model = train_reward_model(data, os.path.join(out_dir, "reward_model"),
                                              max_steps=int(rm_cfg.get("train_steps", 100)),
                                              seed=seed, progress=progress)
    trainer = align(algorithm, model, data, out_dir, reward_model=reward_model, progress=progress,
                    seed=seed, **config.get("trainer", {}))
    after = evaluate_recommender(model, data, **config.get("eval", {}))
    final = os.path.join(out_dir, "final")
    model.save_pretrained(final)
    data.index.save_pretrained(os.path.join(final, "item_index"))
    return {"before": before, "after": after, "output_dir": final,
            "log_history": trainer.state.log_history}


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="YAML recipe (trainers/configs/onerec_*.yaml)")
    parser.add_argument("--output-dir", default=None, help="override the config's output_dir")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args) -> int:
    import json

    import yaml

    with open(args.config) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{args.config} must hold a mapping at the top level")
    if args.output_dir:
        config["output_dir"] = args.output_dir
    result = run_recipe(config, progress=not args.no_progress)
    print(f"{'metric':<22}{'before':>12}{'after':>12}")
    for key, val in result["before"].items():
        print(f"{key:<22}{val:>12.4f}{result['after'][key]:>12.4f}")
    print(json.dumps({"output_dir": result["output_dir"], "before": result["before"],
                      "after": result["after"]}))
    return 0
