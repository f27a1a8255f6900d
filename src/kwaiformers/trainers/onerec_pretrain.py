"""OneRec-V1 / OneRec-V2 pretraining recipe (``kwaiformers train onerec --config FILE``).

Pipeline: interaction logs (the simulator, or KuaiRand / KuaiRec / MovieLens folders) ->
collaborative item embeddings -> RQ-Kmeans semantic IDs + item index -> "newest impression only"
samples with chronological train/validation/test splits (V2 §2.1) -> transformers ``Trainer`` on the
NTP loss (V1: summed, V2: mean over the codes), with

* evaluation = loss + Recall@K / NDCG@K / legality of ``model.recommend`` (beam search over the
  item trie) on held-out next items, and the popularity baseline on the same users;
* the aux-loss-free MoE bias updated after every optimiser step
  (:class:`~kwaiformers.models.onerec.modeling_moe.AuxFreeBiasUpdateCallback`) and expert-load
  statistics in the logs;
* ``report_to``, checkpointing and ``resume_from_checkpoint`` from the ``training`` section
  (plain ``TrainingArguments``); the data pipeline is deterministic given its seeds, so a resumed run
  rebuilds the same samples.

The YAML has four sections (see ``trainers/configs/onerec_v2_tiny.yaml``): ``model`` (``type``:
``onerec`` | ``onerec_v2``, optional ``preset``, config overrides), ``data``, ``tokenizer``,
``training`` (``TrainingArguments`` fields), ``eval`` and ``runtime`` (``torch_threads``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OneRecPretrainRecipe", "add_arguments", "build_data", "load_recipe", "run", "run_recipe"]

_MODEL_TYPES = ("onerec", "onerec_v2")


@dataclass
class OneRecPretrainRecipe:
    """The parsed YAML recipe (each section a plain mapping, validated in :func:`load_recipe`)."""

    model: dict[str, Any] = field(default_factory=lambda: {"type": "onerec_v2"})
    data: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)


def load_recipe(path_or_mapping: str | os.PathLike | Mapping[str, Any]) -> OneRecPretrainRecipe:
    """Read and validate a recipe from a YAML file or a mapping."""
    if isinstance(path_or_mapping, Mapping):
        raw = dict(path_or_mapping)
    else:
        import yaml

        with open(path_or_mapping, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, Mapping):
        raise ValueError("the recipe must be a mapping with model/data/tokenizer/training/eval sections")
    unknown = set(raw) - {"model", "data", "tokenizer", "training", "eval", "runtime"}
    if unknown:
        raise ValueError(f"unknown recipe section(s) {sorted(unknown)}; expected model, data, "
                         "tokenizer, training, eval, runtime")
    recipe = OneRecPretrainRecipe(**{k: dict(v or {}) for k, v in raw.items()})
    recipe.model.setdefault("type", "onerec_v2")
    if recipe.model["type"] not in _MODEL_TYPES:
        raise ValueError(f"model.type must be one of {_MODEL_TYPES}, got {recipe.model['type']!r}")
    source = recipe.data.setdefault("source", "simulator")
    if source not in ("simulator", "kuairand", "kuairec", "movielens"):
        raise ValueError(f"data.source must be simulator|kuairand|kuairec|movielens, got {source!r}")
    if source != "simulator" and not recipe.data.get("data_dir"):
        raise ValueError(f"data.data_dir is required for data.source={source!r}")
    recipe.training.setdefault("output_dir", "outputs/onerec")
    return recipe


# ------------------------------------------------------------------------------------------ data
@dataclass
class OneRecData:
    """Everything the trainer needs: splits, item index, tokenizer, feature spec, collator."""

    splits: Any
    index: Any
    tokenizer: Any
    feature_spec: Any
    collator: Any
    train_item_ids: Any


def _load_logs(data: Mapping[str, Any]):
    source = data["source"]
    if source == "simulator":
        from kwaiformers.data.simulator import UserSimulator

        sim_cfg = dict(data.get("simulator", {}))
        sim = UserSimulator(
            num_users=int(sim_cfg.get("num_users", 500)),
            num_items=int(sim_cfg.get("num_items", 500)),
            seed=int(sim_cfg.get("seed", 0)),
        )
        logs = sim.generate_logs(days=int(sim_cfg.get("days", 7)), seed=int(sim_cfg.get("seed", 0)),
                                 progress=True)
        return logs.to_dataset()
    from kwaiformers.data import loaders

    loader = {"kuairand": loaders.load_kuairand, "kuairec": loaders.load_kuairec,
              "movielens": loaders.load_movielens}[source]
    return loader(data["data_dir"], **dict(data.get("loader_kwargs", {})))


def build_data(recipe: OneRecPretrainRecipe) -> OneRecData:
    """Logs -> semantic IDs -> index -> chronological samples (deterministic given the seeds)."""
    import numpy as np
    import torch

    from kwaiformers.data.collator import OneRecCollator
    from kwaiformers.data.embeddings import collaborative_embeddings
    from kwaiformers.data.samples import OneRecSampleBuilder
    from kwaiformers.models.onerec.semantic_ids import SemanticIdTokenizer

    data, tok_cfg = recipe.data, recipe.tokenizer
    bundle = _load_logs(data)
    interactions, users, items = bundle["interactions"], bundle.get("users"), bundle.get("items")
    item_ids = items["item_id"] if items is not None else None
    ids, emb = collaborative_embeddings(interactions, dim=int(tok_cfg.get("embedding_dim", 32)),
                                        item_ids=item_ids, seed=int(tok_cfg.get("seed", 0)))
    tokenizer = SemanticIdTokenizer().fit(
        emb, num_levels=int(tok_cfg.get("num_levels", 3)),
        codebook_size=tok_cfg.get("codebook_size", 32), method=tok_cfg.get("method", "kmeans"),
        niter=int(tok_cfg.get("niter", 20)), seed=int(tok_cfg.get("seed", 0)),
    )
    all_items = np.asarray(interactions["item_id"], dtype=np.int64)
    counts = np.bincount(all_items, minlength=int(ids.max()) + 1)[ids.numpy()]
    index = tokenizer.build_index(item_ids=ids, popularity=torch.tensor(counts, dtype=torch.float64),
                                  disambiguate=bool(tok_cfg.get("disambiguate", False)))
    builder = OneRecSampleBuilder(
        index, users=users, short_len=int(data.get("short_len", 20)),
        long_len=int(data.get("long_len", 64)), min_history=int(data.get("min_history", 1)),
        unknown_item="skip",
    )
    splits = builder.build_splits(interactions, valid_fraction=float(data.get("valid_fraction", 0.1)),
                                  test_fraction=float(data.get("test_fraction", 0.1)))
    for name, key in (("train", "max_train_samples"), ("validation", "max_eval_samples"),
                      ("test", "max_eval_samples")):
        limit = data.get(key)
        if limit is not None and len(splits[name]) > int(limit):
            # keep the most recent samples (the splits are in time order)
            splits[name] = splits[name].select(range(len(splits[name]) - int(limit), len(splits[name])))
    collator = OneRecCollator(builder.feature_spec)
    return OneRecData(splits=splits, index=index, tokenizer=tokenizer, feature_spec=builder.feature_spec,
                      collator=collator, train_item_ids=torch.as_tensor(splits["train"]["target_item_id"]))


# ----------------------------------------------------------------------------------------- model
def build_model(recipe: OneRecPretrainRecipe, spec: Any):
    """The configured model sized to the data (feature vocabularies, levels, history lengths)."""
    cfg = dict(recipe.model)
    model_type = cfg.pop("type")
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
    else:
        from kwaiformers.models.onerec.configuration_onerec import OneRecConfig as Config
        from kwaiformers.models.onerec.modeling_onerec import (
            OneRecForGenerativeRecommendation as Model,
        )

        sized["num_lifelong_queries"] = cfg.pop("num_lifelong_queries", 0)  # no lifelong pathway data
    kwargs = {**cfg, **sized}
    config = Config.from_preset(preset, **kwargs) if preset else Config(**kwargs)
    return Model(config)


def _make_trainer_class():
    import torch
    from transformers import Trainer

    from kwaiformers.evaluation.recommendation import (
        evaluate_recommender,
        popularity_recommendations,
        recommendation_metrics,
    )
    from kwaiformers.models.onerec.modeling_moe import moe_load_stats

    class OneRecPretrainTrainer(Trainer):
        """``Trainer`` adding beam-search Recall/NDCG/legality to evaluation and MoE load to logs."""

        def __init__(self, *args, item_index=None, eval_settings=None, train_item_ids=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.item_index = item_index
            self.eval_settings = dict(eval_settings or {})
            self.train_item_ids = train_item_ids

        def log(self, logs: dict[str, float], *args, **kwargs) -> None:
            if "loss" in logs:
                logs.update(moe_load_stats(self.model))
            super().log(logs, *args, **kwargs)

        def recommendation_metrics(self, dataset, prefix: str) -> dict[str, float]:
            """Beam-search metrics on the first ``batch_size * max_batches`` rows; with several
            processes each one searches a contiguous shard of those rows and the recommendations
            are gathered before scoring (the metrics of one process on all the rows)."""
            settings = self.eval_settings
            ks = tuple(int(k) for k in settings.get("ks", (1, 5, 10)))
            batch_size = int(settings.get("batch_size", 64))
            max_batches = settings.get("max_batches")
            gather, full = None, dataset
            world = self.accelerator.num_processes
            if world > 1:
                from accelerate.utils import gather_object

                n_rows = min(len(dataset), batch_size * int(max_batches or len(dataset)))
                per = -(-n_rows // world)
                start = min(self.accelerator.process_index * per, n_rows)
                dataset = dataset.select(range(start, min(start + per, n_rows)))
                max_batches = None

                def gather(t):
                    return torch.cat(gather_object([t]))

            loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=self.data_collator)
            model = self.accelerator.unwrap_model(self.model)
            metrics = evaluate_recommender(
                model, loader, self.item_index, ks=ks, beam_size=int(settings.get("beam_size", 32)),
                constrained=bool(settings.get("constrained", True)),
                max_batches=max_batches, progress=not self.args.disable_tqdm, gather=gather,
            )
            out = {f"{prefix}_{k}": v for k, v in metrics.items()}
            if self.train_item_ids is not None:
                n_eval = min(len(full), batch_size * int(settings.get("max_batches") or len(full)))
                targets = torch.as_tensor(full["target_item_id"][:n_eval])
                pop = popularity_recommendations(self.train_item_ids, max(ks), len(targets))
                base = recommendation_metrics(pop, targets, ks)
                out.update({f"{prefix}_popularity_{k}": v for k, v in base.items() if k != "legality"})
            return out

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
            metrics = super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
            if self.item_index is not None and self.eval_settings.get("recommend", True):
                dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
                extra = self.recommendation_metrics(dataset, metric_key_prefix)
                metrics.update(extra)
                self.log(extra)
            return metrics

    return OneRecPretrainTrainer


def run_recipe(recipe: OneRecPretrainRecipe, resume_from_checkpoint: bool | str | None = None) -> dict[str, Any]:
    """Build data and model, train, evaluate on the test split; returns the final metrics."""
    from transformers import TrainingArguments, set_seed

    from kwaiformers.models.onerec.modeling_moe import AuxFreeBiasUpdateCallback, moe_layers
    from kwaiformers.utils.distributed import check_launch_matches, check_sharding_supported

    train_kwargs = dict(recipe.training)
    train_kwargs.setdefault("remove_unused_columns", False)  # the collator needs every column
    train_kwargs.setdefault("prediction_loss_only", True)
    train_kwargs.setdefault("label_names", ["target_sids"])  # so evaluation computes the NTP loss
    train_kwargs.setdefault("report_to", "none")
    args = TrainingArguments(**train_kwargs)
    check_sharding_supported(args)  # before the (long) data pipeline
    threads = recipe.runtime.get("torch_threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    seed = int(recipe.training.get("seed", 42))
    set_seed(seed)
    data = build_data(recipe)
    model = build_model(recipe, data.feature_spec)
    callbacks = [AuxFreeBiasUpdateCallback()] if moe_layers(model) else []
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(
        model=model, args=args, train_dataset=data.splits["train"],
        eval_dataset=data.splits["validation"], data_collator=data.collator, callbacks=callbacks,
        item_index=data.index, eval_settings=recipe.eval, train_item_ids=data.train_item_ids,
    )
    check_launch_matches(trainer.accelerator.num_processes, "the OneRec pretraining Trainer")
    resume = resume_from_checkpoint
    if resume is None:
        resume = recipe.training.get("resume_from_checkpoint")
    if resume is True:
        from transformers.trainer_utils import get_last_checkpoint

        resume = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
    trainer.train(resume_from_checkpoint=resume or None)
    test_metrics = trainer.evaluate(data.splits["test"], metric_key_prefix="test")
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():  # one writer under a launcher
        data.index.save_pretrained(os.path.join(args.output_dir, "item_index"))
        data.tokenizer.save_pretrained(os.path.join(args.output_dir, "semantic_id_tokenizer"))
        with open(os.path.join(args.output_dir, "test_metrics.json"), "w", encoding="utf-8") as fh:
            json.dump(test_metrics, fh, indent=2)
    trainer.accelerator.wait_for_everyone()
    return test_metrics


# ------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="recipe YAML (trainers/configs/onerec_*.yaml)")
    parser.add_argument("--output-dir", default=None, help="override training.output_dir")
    parser.add_argument("--max-steps", type=int, default=None, help="override training.max_steps")
    parser.add_argument("--resume", nargs="?", const=True, default=None,
                        help="resume from the last checkpoint in output_dir (or from the given path)")
    parser.add_argument("--report-to", default=None, help="override training.report_to (e.g. none, wandb)")


def run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.config)
    if args.output_dir:
        recipe.training["output_dir"] = args.output_dir
    if args.max_steps is not None:
        recipe.training["max_steps"] = args.max_steps
    if args.report_to:
        recipe.training["report_to"] = args.report_to
    metrics = run_recipe(recipe, resume_from_checkpoint=args.resume)
    if os.environ.get("RANK", "0") == "0":  # once under a launcher
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}))
    return 0
