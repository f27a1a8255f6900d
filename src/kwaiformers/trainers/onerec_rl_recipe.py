"""OneRec preference-alignment pipeline pieces and the ``kwaiformers train onerec-rl`` recipe.

Pipeline (each step a function, shared by the recipe, the quickstart and the benchmark):

1. :func:`prepare_data`: the one OneRec data pipeline (:mod:`kwaiformers.data.pipeline`) with the
   alignment settings: logs (the KuaiRand-shaped simulator, or a real KuaiRand folder) ->
   collaborative item embeddings -> semantic IDs (balanced residual k-means), both fitted on the
   training interactions -> OneRec-V2 "newest impression only" samples with a
   train/validation/test split;
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

import os
from typing import Any

import torch

from kwaiformers.data.pipeline import OneRecData

__all__ = [
    "ALIGNMENT_ARMS",
    "OneRecRLData",
    "context_blind_message",
    "format_arms_table",
    "paired_differences",
    "run_alignment_arms",
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


#: the alignment pipeline's data type (the one OneRec data pipeline's :class:`OneRecData`)
OneRecRLData = OneRecData


def collaborative_item_embeddings(interactions: Any, num_items: int | None = None, dim: int = 32,
                                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Completion-ratio SVD item embeddings
    (:func:`kwaiformers.data.embeddings.completion_svd_embeddings`)."""
    from kwaiformers.data.embeddings import completion_svd_embeddings

    return completion_svd_embeddings(interactions, dim=dim, seed=seed)


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
    split: str = "time_cut",
    tie_order: str = "simultaneous",
    fit_on: str = "train",
    disambiguate: bool = False,
) -> OneRecData:
    """The alignment settings of the one OneRec data pipeline
    (:func:`kwaiformers.data.pipeline.build_onerec_data`): simulator (or KuaiRand) logs ->
    completion-ratio SVD embeddings -> balanced residual k-means semantic IDs (fitted on the
    training interactions) -> samples without the user id feature. ``simulator_kwargs`` are
    :class:`~kwaiformers.data.simulator.SimulatorConfig` fields (e.g. ``log_exposure_prob=True``
    to log the generation probability that GBPO uses as ``pi_old``). ``item_index_dir``: reuse a
    saved :class:`SemanticIdIndex` (the one a pretrained checkpoint was trained with).
    ``disambiguate``: append a TIGER-style level so that every item has its own tuple (item
    coverage 1.0; without it items sharing a tuple with a more popular one cannot be
    recommended, see ``data.info["item_coverage"]``)."""
    from kwaiformers.data.pipeline import build_onerec_data

    data = {
        "source": "kuairand" if kuairand_dir is not None else "simulator",
        "data_dir": kuairand_dir,
        "simulator": {"num_users": num_users, "num_items": num_items, "days": days, "seed": seed,
                      **(simulator_kwargs or {})},
        "split": split, "tie_order": tie_order, "valid_fraction": valid_fraction,
        "test_fraction": test_fraction, "short_len": short_len, "long_len": long_len,
        "reward_history_len": reward_history_len, "include_user_id": False,
    }
    sizes = list(codebook_sizes)
    tokenizer = {"embeddings": "completion_svd", "embedding_dim": embedding_dim,
                 "num_levels": len(sizes), "codebook_size": sizes, "method": "balanced",
                 "seed": seed, "fit_on": fit_on, "item_index_dir": item_index_dir,
                 "disambiguate": disambiguate}
    return build_onerec_data(data, tokenizer)


def build_tiny_model(spec: Any, version: str = "v2", hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 4, embed_dim: int = 16, seed: int = 0, **overrides: Any):
    """A small randomly initialised OneRec-V2 (lazy decoder) or V1 (encoder-decoder) for ``spec``
    (:func:`kwaiformers.data.pipeline.build_onerec_model`); ``overrides`` are config fields."""
    from kwaiformers.data.pipeline import build_onerec_model

    torch.manual_seed(seed)
    common = dict(hidden_size=hidden_size, num_attention_heads=num_heads,
                  intermediate_size=2 * hidden_size)
    if version == "v2":
        cfg = dict(common, type="onerec_v2", embed_dim=embed_dim, num_hidden_layers=num_layers)
    elif version == "v1":
        cfg = dict(common, type="onerec", num_encoder_layers=max(1, num_layers // 2),
                   num_decoder_layers=max(1, num_layers // 2), lifelong_seq_len=0,
                   user_feature_embed_dim=embed_dim, sid_embed_dim=embed_dim,
                   feature_embed_dim=embed_dim)
    else:
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    return build_onerec_model(spec, {**cfg, **overrides})


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
                         batch_size: int = 128, check_legality: bool = True) -> dict[str, float]:
    """Ground-truth quality of top-``num_items`` recommendations for one held-out impression per
    user (see the module docstring). Returns ``expected_play_time`` (duration x true completion,
    seconds per recommendation), ``completion_rate``, ``dislike_rate`` (mean dislike
    probability), ``mean_duration`` (of the recommended videos, seconds), ``recall@K`` and
    ``ndcg@K`` of the logged next item, and ``legality`` (NaN with ``check_legality=False``, which
    skips the unconstrained search)."""
    from kwaiformers.evaluation.recommendation import ndcg_at_k

    ds = _first_per_user(data.splits[split], max_users)
    if len(ds) == 0:
        raise ValueError(f"split {split!r} holds no samples to evaluate")
    was_training = model.training
    model.eval()
    sums = {"expected_play_time": 0.0, "completion_rate": 0.0, "dislike_rate": 0.0, "hits": 0.0,
            "legal": 0.0, "n_legal": 0.0, "duration": 0.0, "ndcg": 0.0}
    n_rec = 0
    for start in range(0, len(ds), batch_size):
        rows = [ds[j] for j in range(start, min(start + batch_size, len(ds)))]
        batch = {k: v.to(model.device) for k, v in data.collator(rows).items()}
        out = model.recommend(batch, num_items=num_items, beam_size=max(beam_size, num_items),
                              constrained=True, item_index=data.index)
        items = out.item_ids.cpu()
        tgt = batch["target_item_id"].cpu()
        sums["hits"] += float((items == tgt[:, None]).any(1).sum())
        sums["ndcg"] += ndcg_at_k(items, tgt, num_items) * len(rows)
        if data.simulator is not None:
            truth = data.simulator.score(batch["user_id"].cpu()[:, None].numpy(),
                                         items.clamp(min=0).numpy())
            valid = (items >= 0).numpy()
            sums["expected_play_time"] += float(truth["expected_play_time"][valid].sum())
            sums["completion_rate"] += float(truth["completion_rate"][valid].sum())
            sums["dislike_rate"] += float(truth["dislike_prob"][valid].sum())
            sums["duration"] += float(truth["duration"][valid].sum())
            n_rec += int(valid.sum())
        if not check_legality:
            continue
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
        "mean_duration": sums["duration"] / n_rec if n_rec else nan,
        f"recall@{num_items}": sums["hits"] / n_users,
        f"ndcg@{num_items}": sums["ndcg"] / n_users,
        "legality": sums["legal"] / sums["n_legal"] if sums["n_legal"] else nan,
        "num_users": float(n_users),
    }


# ---------------------------------------------------------------------------- arms
#: GBPOTrainer settings of each comparison arm (all: the same logged exposures, steps and order).
ALIGNMENT_ARMS: dict[str, dict[str, Any]] = {
    # plain next-token training on every logged exposure: the control for "more training"
    "ntp": {"rl_weight": 0.0, "sft_weight": 1.0, "sft_filter_quantile": 0.0},
    # GBPO with DARS advantages + the same NTP term (OneRec-V2 §3)
    "gbpo": {"rl_weight": 1.0, "sft_weight": 1.0, "sft_filter_quantile": 0.0, "logged_loss": "gbpo"},
    # the early-clipped PPO loss on the same logged exposures + NTP (with pi_old = sg(pi) on
    # exposures the model did not serve the ratio is 1, so this is the V2 ablation's "ECPO")
    "ecpo": {"rl_weight": 1.0, "sft_weight": 1.0, "sft_filter_quantile": 0.0, "logged_loss": "ecpo"},
    # a separately named baseline: NTP on the exposures above the batch's median play time
    # (V1's RSFT filter) -- itself an alignment method on play time
    "filtered_ntp": {"rl_weight": 0.0, "sft_weight": 1.0, "sft_filter_quantile": 0.5},
}
#: the headline metrics, in table order: (key, label, higher is better; None = neither)
ARM_METRICS: tuple[tuple[str, str, bool | None], ...] = (
    ("completion_rate", "completion rate", True),
    ("dislike_rate", "dislike rate", False),
    ("mean_duration", "mean rec. duration (s)", None),
    ("expected_play_time", "expected play time (s)", True),
    ("recall@10", "Recall@10 (logged next)", True),
    ("ndcg@10", "NDCG@10 (logged next)", True),
)
ARM_LABELS = {"base": "base", "ntp": "NTP control", "gbpo": "GBPO + NTP", "ecpo": "ECPO + NTP",
              "filtered_ntp": "filtered NTP (q=0.5)"}


def run_alignment_arms(base: Any, data: OneRecRLData, output_dir: str, arms: Any = ("ntp", "gbpo"),
                       seeds: Any = (0, 1, 2), max_steps: int = 60, batch_size: int = 128,
                       learning_rate: float = 5e-4, eval_users: int | None = None,
                       progress: bool = True, return_models: bool = False,
                       **config: Any) -> dict[str, Any]:
    """Train a copy of ``base`` per arm (:data:`ALIGNMENT_ARMS`) and trainer seed, and evaluate it.

    Every arm starts from the same weights and sees the same logged exposures in the same order
    for a given seed (the seed only changes the data order), for the same number of steps; the
    only difference is the loss. ``config`` are further :class:`GBPOConfig` fields shared by all
    arms (e.g. ``dars_inclusive_threshold``). Returns ``{"base": metrics, arm: {seed: metrics}}``
    plus ``"logs"`` (each run's GBPO log history) and, with ``return_models``, ``"models"``
    (each arm's model of the first seed).
    """
    import copy

    unknown = [a for a in arms if a not in ALIGNMENT_ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; expected some of {sorted(ALIGNMENT_ARMS)}")
    if len(seeds) < 1:
        raise ValueError("seeds must hold at least one trainer seed")
    res: dict[str, Any] = {"base": evaluate_recommender(base, data, max_users=eval_users,
                                                        check_legality=False), "logs": {}}
    if return_models:
        res["models"] = {}
    for arm in arms:
        res[arm] = {}
        for seed in seeds:
            model = copy.deepcopy(base)
            kw = {**config, **ALIGNMENT_ARMS[arm]}
            trainer = align("gbpo", model, data, os.path.join(output_dir, f"{arm}-{seed}"),
                            progress=progress, max_steps=max_steps,
                            per_device_train_batch_size=batch_size, learning_rate=learning_rate,
                            logging_steps=1, seed=int(seed), **kw)
            res[arm][int(seed)] = evaluate_recommender(model, data, max_users=eval_users,
                                                       check_legality=False)
            res["logs"][f"{arm}-{seed}"] = [h for h in trainer.state.log_history if "loss" in h]
            if return_models and seed == seeds[0]:
                res["models"][arm] = model
    return res


#: two-sided 95% Student-t quantiles by degrees of freedom (1..30); 1.96 beyond
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)


def paired_differences(results: dict[str, Any], arm: str, control: str = "ntp") -> dict[str, dict[str, float]]:
    """Per metric, the paired difference ``arm - control`` over the trainer seeds both ran:
    ``mean``, ``half_width`` of the 95% Student-t interval (NaN with one seed), ``relative``
    (``mean / control mean``), ``control_mean`` and ``n``."""
    seeds = sorted(set(results[arm]) & set(results[control]))
    out: dict[str, dict[str, float]] = {}
    for key, _, _ in ARM_METRICS:
        diffs = [results[arm][s][key] - results[control][s][key] for s in seeds]
        ctrl = [results[control][s][key] for s in seeds]
        n = len(diffs)
        mean = sum(diffs) / n if n else float("nan")
        if n > 1:
            sd = (sum((d - mean) ** 2 for d in diffs) / (n - 1)) ** 0.5
            half = (_T95[n - 2] if n - 1 <= len(_T95) else 1.96) * sd / n ** 0.5
        else:
            half = float("nan")
        cmean = sum(ctrl) / n if n else float("nan")
        out[key] = {"mean": mean, "half_width": half, "relative": mean / cmean if cmean else float("nan"),
                    "control_mean": cmean, "n": n}
    return out


def format_arms_table(results: dict[str, Any], control: str = "ntp") -> str:
    """Metrics side by side (mean over trainer seeds) and each arm's paired difference vs
    ``control`` with its 95% interval."""
    arms = [a for a in ALIGNMENT_ARMS if a in results]
    cols = ["base", *arms]

    def mean(arm: str, key: str) -> float:
        if arm == "base":
            return results["base"][key]
        vals = [m[key] for m in results[arm].values()]
        return sum(vals) / len(vals)

    seeds = sorted(results[arms[0]]) if arms else []
    lines = [f"metric (test users, mean over trainer seeds {seeds})".ljust(30)
             + "".join(f"{ARM_LABELS[c]:>22}" for c in cols)]
    for key, label, _ in ARM_METRICS:
        lines.append(f"{label:<30}" + "".join(f"{mean(c, key):>22.4f}" for c in cols))
    others = [a for a in arms if a != control]
    if control in results and others:
        lines.append("")
        lines.append(f"paired difference vs {ARM_LABELS[control]} (same steps, data and order; "
                     "mean [95% t-interval] over seeds, relative change):")
        for arm in others:
            diff = paired_differences(results, arm, control)
            lines.append(f"  {ARM_LABELS[arm]}:")
            for key, label, higher in ARM_METRICS:
                d = diff[key]
                lo, hi = d["mean"] - d["half_width"], d["mean"] + d["half_width"]
                sig = ""
                if higher is not None and d["half_width"] == d["half_width"] and (lo > 0 or hi < 0):
                    sig = "  better" if (lo > 0) == higher else "  worse"
                lines.append(f"    {label:<28}{d['mean']:>+10.4f}  [{lo:+.4f}, {hi:+.4f}]"
                             f"  ({100 * d['relative']:+.1f}%){sig}")
    return "\n".join(lines)


def context_blind_message(diag: dict[str, Any], what: str = "the base model") -> str:
    """The refusal when the base ignores the user (see
    :func:`kwaiformers.evaluation.recommendation.personalization_diagnostic`)."""
    reasons = "; ".join(diag["failed"])
    return (f"{what} is context-blind ({reasons}), so an alignment comparison on it would only "
            "re-order one global list; not reporting one. Pretrain longer or with a higher "
            "learning rate (--pretrain-steps / --pretrain-lr), use logs with more personal "
            "signal (--policy-temperature higher, --popularity-mix lower) or more days of "
            "history, then rerun.")


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
