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

__all__ = ["OneRecPretrainRecipe", "add_arguments", "build_data", "build_model", "eval_baselines",
           "load_recipe", "run", "run_recipe", "train_recipe"]

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


_SECTIONS = ("model", "data", "tokenizer", "training", "eval", "runtime")


def _sections(raw: Any) -> dict[str, dict[str, Any]]:
    """Validate the top level of a raw recipe: known section names, each a mapping (or empty)."""
    if not isinstance(raw, Mapping):
        raise ValueError("the recipe must be a mapping with model/data/tokenizer/training/eval sections")
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise ValueError(f"unknown recipe section(s) {sorted(map(str, unknown))}; expected some of "
                         f"{', '.join(_SECTIONS)}")
    for name, value in raw.items():
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"recipe section {name!r} must be a mapping of keys to values, "
                             f"got {type(value).__name__}")
    return {k: dict(v or {}) for k, v in raw.items()}


def load_recipe(path_or_mapping: str | os.PathLike | Mapping[str, Any]) -> OneRecPretrainRecipe:
    """Read and validate a recipe from a YAML file or a mapping."""
    if isinstance(path_or_mapping, Mapping):
        raw = dict(path_or_mapping)
    else:
        import yaml

        with open(path_or_mapping, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    recipe = OneRecPretrainRecipe(**_sections(raw))
    recipe.model.setdefault("type", "onerec_v2")
    if recipe.model["type"] not in _MODEL_TYPES:
        raise ValueError(f"model.type must be one of {_MODEL_TYPES}, got {recipe.model['type']!r}")
    from kwaiformers.data.pipeline import DATA_DEFAULTS, TOKENIZER_DEFAULTS, _merge

    source = recipe.data.setdefault("source", "simulator")
    if source not in ("simulator", "kuairand", "kuairec", "movielens"):
        raise ValueError(f"data.source must be simulator|kuairand|kuairec|movielens, got {source!r}")
    if source != "simulator" and not recipe.data.get("data_dir"):
        raise ValueError(f"data.data_dir is required for data.source={source!r}")
    _merge(DATA_DEFAULTS, recipe.data, "data")  # unknown keys are errors
    _merge(TOKENIZER_DEFAULTS, recipe.tokenizer, "tokenizer")
    unknown = set(recipe.eval) - set(_EVAL_KEYS)
    if unknown:
        raise ValueError(f"unknown eval key(s) {sorted(unknown)}; expected some of {list(_EVAL_KEYS)}")
    recipe.training.setdefault("output_dir", "outputs/onerec")
    return recipe


# ------------------------------------------------------------------------------------------ data
def build_data(recipe: OneRecPretrainRecipe):
    """The recipe's ``data`` and ``tokenizer`` sections through the one OneRec data pipeline
    (:func:`kwaiformers.data.pipeline.build_onerec_data`); returns its ``OneRecData``."""
    from kwaiformers.data.pipeline import build_onerec_data

    return build_onerec_data(recipe.data, recipe.tokenizer, progress=True)


# ----------------------------------------------------------------------------------------- model
def build_model(recipe: OneRecPretrainRecipe, spec: Any):
    """The configured model sized to the data (feature vocabularies, levels, history lengths)."""
    from kwaiformers.data.pipeline import build_onerec_model

    return build_onerec_model(spec, recipe.model)


_EVAL_KEYS = ("ks", "beam_size", "batch_size", "max_batches", "constrained", "recommend",
              "exclude_seen", "baselines", "early_stopping_patience", "knn_neighbours")
_BASELINES = ("popularity", "item_knn")


def eval_baselines(data: Any, dataset: Any, ks: tuple[int, ...],
                   exclude_seen: bool, baselines: Any = ("popularity",),
                   knn_neighbours: int = 100) -> dict[str, Any]:
    """Baseline recommendations ``{name: LongTensor[N, max(ks)]}`` for the samples of ``dataset``
    (evaluation rows built by ``data``) under the recipe's protocol: ``popularity`` (RecBole's
    ``Pop``: counts of the training interactions) and ``item_knn`` (cosine item-kNN over the
    training interactions, scored from the user's history before the target), masking the seen
    items when ``exclude_seen``."""
    import numpy as np

    from kwaiformers.evaluation.recommendation import (
        item_knn_recommendations,
        popularity_recommendations,
    )

    bad = [b for b in baselines if b not in _BASELINES]
    if bad:
        raise ValueError(f"eval.baselines must be a subset of {_BASELINES}, got {bad}")
    seen = data.seen_items("test", dataset)
    exclude = seen if exclude_seen else None
    train = data.train_interactions
    users = train["user_id"].to_numpy(np.int64, copy=True)
    items = train["item_id"].to_numpy(np.int64, copy=True)
    out = {}
    if "popularity" in baselines:
        out["popularity"] = popularity_recommendations(items, max(ks), len(seen), exclude_items=exclude)
    if "item_knn" in baselines:
        out["item_knn"] = item_knn_recommendations(
            users, items, seen, max(ks),
            exclude_items=exclude, neighbours=knn_neighbours, candidate_items=data.index.item_ids)
    return out


def _make_trainer_class():
    import torch
    from transformers import Trainer

    from kwaiformers.evaluation.recommendation import evaluate_recommender, recommendation_metrics
    from kwaiformers.models.onerec.modeling_moe import moe_load_stats

    class OneRecPretrainTrainer(Trainer):
        """``Trainer`` adding beam-search Recall/NDCG/legality (optionally with the user's seen
        items excluded inside the search) and the baselines to evaluation, MoE load to logs."""

        def __init__(self, *args, item_index=None, eval_settings=None, onerec_data=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.item_index = item_index
            self.eval_settings = dict(eval_settings or {})
            self.onerec_data = onerec_data

        def log(self, logs: dict[str, float], *args, **kwargs) -> None:
            if "loss" in logs:
                logs.update(moe_load_stats(self.model))
            super().log(logs, *args, **kwargs)

        def recommendation_metrics(self, dataset, prefix: str) -> dict[str, float]:
            settings = self.eval_settings
            ks = tuple(int(k) for k in settings.get("ks", (1, 5, 10)))
            bsz = int(settings.get("batch_size", 64))
            max_batches = settings.get("max_batches")
            if max_batches is not None and len(dataset) > bsz * int(max_batches):
                dataset = dataset.select(range(bsz * int(max_batches)))
            data = self.onerec_data
            exclude_seen = bool(settings.get("exclude_seen", False))
            exclude = data.seen_items("test", dataset) if (exclude_seen and data is not None) else None
            shard, gather = dataset, None
            world = self.accelerator.num_processes
            if world > 1:  # each process searches a contiguous shard; recommendations gathered
                from accelerate.utils import gather_object

                per = -(-len(dataset) // world)
                start = min(self.accelerator.process_index * per, len(dataset))
                stop = min(start + per, len(dataset))
                shard = dataset.select(range(start, stop))
                exclude = list(exclude)[start:stop] if exclude is not None else None

                def gather(t):
                    return torch.cat(gather_object([t]))

            loader = torch.utils.data.DataLoader(shard, batch_size=bsz, collate_fn=self.data_collator)
            model = self.accelerator.unwrap_model(self.model)
            metrics = evaluate_recommender(
                model, loader, self.item_index, ks=ks, beam_size=int(settings.get("beam_size", 32)),
                constrained=bool(settings.get("constrained", True)),
                progress=not self.args.disable_tqdm, exclude_items=exclude, gather=gather,
            )
            out = {f"{prefix}_{k}": v for k, v in metrics.items()}
            if data is not None:
                targets = torch.as_tensor(dataset["target_item_id"])
                recs = eval_baselines(data, dataset, ks, exclude_seen,
                                      settings.get("baselines", ("popularity",)),
                                      int(settings.get("knn_neighbours", 100)))
                for name, rec in recs.items():
                    base = recommendation_metrics(rec, targets, ks)
                    out.update({f"{prefix}_{name}_{k}": v for k, v in base.items() if k != "legality"})
            out[f"{prefix}_num_users"] = float(len(dataset))
            return out

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                            metric_key_prefix: str = "eval"):
            # added here (not after ``evaluate``) so that callbacks such as early stopping and the
            # best-checkpoint choice see the recommendation metrics
            output = super().evaluation_loop(dataloader, description, prediction_loss_only,
                                             ignore_keys, metric_key_prefix)
            if self.item_index is not None and self.eval_settings.get("recommend", True):
                output.metrics.update(self.recommendation_metrics(dataloader.dataset, metric_key_prefix))
            return output

    return OneRecPretrainTrainer


def train_recipe(recipe: OneRecPretrainRecipe, data: Any = None,
                 resume_from_checkpoint: bool | str | None = None) -> tuple[Any, Any]:
    """Build (or reuse) the data, build the model and train it; returns ``(trainer, data)``.

    With ``eval.early_stopping_patience`` (and ``training.eval_strategy``,
    ``load_best_model_at_end: true``, ``metric_for_best_model``, e.g. ``ndcg@10``) training stops
    when the validation metric stops improving and the best checkpoint is restored."""
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

    from kwaiformers.models.onerec.modeling_moe import AuxFreeBiasUpdateCallback, moe_layers
    from kwaiformers.utils.distributed import check_launch_matches, check_sharding_supported

    train_kwargs = dict(recipe.training)
    train_kwargs.pop("resume_from_checkpoint", None)
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
    if data is None:
        data = build_data(recipe)
    set_seed(seed)  # the model's initialisation does not depend on the data pipeline's draws
    model = build_model(recipe, data.feature_spec)
    callbacks = [AuxFreeBiasUpdateCallback()] if moe_layers(model) else []
    patience = recipe.eval.get("early_stopping_patience")
    if patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=int(patience)))
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(
        model=model, args=args, train_dataset=data.splits["train"],
        eval_dataset=data.splits["validation"], data_collator=data.collator, callbacks=callbacks,
        item_index=data.index, eval_settings=recipe.eval, onerec_data=data,
    )
    check_launch_matches(trainer.accelerator.num_processes, "the OneRec pretraining Trainer")
    resume = resume_from_checkpoint
    if resume is None:
        resume = recipe.training.get("resume_from_checkpoint")
    if resume is True:
        from transformers.trainer_utils import get_last_checkpoint

        resume = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
    trainer.train(resume_from_checkpoint=resume or None)
    return trainer, data


def run_recipe(recipe: OneRecPretrainRecipe, resume_from_checkpoint: bool | str | None = None) -> dict[str, Any]:
    """Build data and model, train, evaluate on the test split; returns the final metrics."""
    trainer, data = train_recipe(recipe, resume_from_checkpoint=resume_from_checkpoint)
    out_dir = trainer.args.output_dir
    test_metrics = trainer.evaluate(data.splits["test"], metric_key_prefix="test")
    trainer.save_model(out_dir)
    if trainer.is_world_process_zero():  # one writer under a launcher
        data.index.save_pretrained(os.path.join(out_dir, "item_index"))
        if data.tokenizer is not None:
            data.tokenizer.save_pretrained(os.path.join(out_dir, "semantic_id_tokenizer"))
        with open(os.path.join(out_dir, "test_metrics.json"), "w", encoding="utf-8") as fh:
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
    parser.add_argument("--data-dir", default=None, help="override data.data_dir")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any recipe value (VALUE is YAML), e.g. --set training.seed=1 "
                             "--set data.max_eval_samples=200; repeatable")


def apply_overrides(raw: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``SECTION.KEY=VALUE`` overrides (``VALUE`` parsed as YAML) applied to a raw recipe mapping."""
    import yaml

    out = _sections(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name:
            raise ValueError(f"override {item!r} must look like SECTION.KEY=VALUE (e.g. training.seed=1)")
        out.setdefault(section, {})[name] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    import yaml

    with open(args.config, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{args.config} must hold a mapping with model/data/tokenizer/training/eval sections")
    overrides = list(args.set)
    if args.data_dir:
        overrides.append(f"data.data_dir={json.dumps(args.data_dir)}")
    recipe = load_recipe(apply_overrides(raw, overrides))
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
