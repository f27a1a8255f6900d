"""Pretraining recipe end to end on a tiny simulator: train, evaluate (Recall/NDCG/legality and the
popularity baseline), save, resume from a checkpoint, MoE bias updates and load logging, CLI."""

from __future__ import annotations

import json
import os

import pytest

from kwaiformers.trainers import onerec_pretrain
from kwaiformers.trainers.onerec_pretrain import load_recipe, run_recipe

_DATA_CACHE: dict[str, object] = {}


@pytest.fixture(autouse=True)
def _cached_data(monkeypatch):
    """Build each tiny data set once per session (the pipeline is deterministic given its seeds)."""
    build = onerec_pretrain.build_data

    def cached(recipe):
        key = repr((recipe.data, recipe.tokenizer))
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = build(recipe)
        return _DATA_CACHE[key]

    monkeypatch.setattr(onerec_pretrain, "build_data", cached)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _recipe(tmp_path, model: dict, max_steps: int = 4) -> dict:
    return {
        "model": model,
        "data": {"source": "simulator", "simulator": {"num_users": 40, "num_items": 60, "days": 2, "seed": 0},
                 "short_len": 6, "long_len": 8, "max_train_samples": 256, "max_eval_samples": 32},
        "tokenizer": {"num_levels": 2, "codebook_size": [6, 6], "embedding_dim": 8, "disambiguate": True},
        "training": {"output_dir": str(tmp_path / "run"), "max_steps": max_steps,
                     "per_device_train_batch_size": 32, "per_device_eval_batch_size": 32,
                     "learning_rate": 3e-3, "logging_steps": 1, "save_steps": 2, "eval_strategy": "no",
                     "report_to": "none", "use_cpu": True, "seed": 0, "disable_tqdm": True},
        "eval": {"ks": [1, 5], "beam_size": 8, "batch_size": 16, "max_batches": 1},
    }


def test_v2_recipe_trains_evaluates_saves_and_resumes(tmp_path):
    raw = _recipe(tmp_path, {"type": "onerec_v2", "hidden_size": 16, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "embed_dim": 4, "intermediate_size": 32})
    metrics = run_recipe(load_recipe(raw))
    for key in ("test_loss", "test_recall@5", "test_ndcg@5", "test_legality", "test_popularity_recall@5"):
        assert key in metrics, key
    assert metrics["test_legality"] == 1.0  # constrained beam search: legal by construction
    out = tmp_path / "run"
    assert (out / "model.safetensors").exists() and (out / "item_index").is_dir()
    assert json.loads((out / "test_metrics.json").read_text())["test_recall@5"] == metrics["test_recall@5"]
    assert (out / "checkpoint-4").is_dir()
    raw["training"]["max_steps"] = 6
    raw["training"]["resume_from_checkpoint"] = True
    run_recipe(load_recipe(raw))
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps[-2:] == [5, 6] and state["global_step"] == 6


def test_v1_moe_recipe_updates_bias_and_logs_load(tmp_path):
    raw = _recipe(tmp_path, {"type": "onerec", "hidden_size": 16, "num_encoder_layers": 1,
                             "num_decoder_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                             "sid_embed_dim": 4, "feature_embed_dim": 4, "user_feature_embed_dim": 4,
                             "num_experts": 4, "num_experts_per_tok": 1, "expert_intermediate_size": 8,
                             "aux_free_bias_update_speed": 0.01}, max_steps=3)
    raw["eval"].update(recommend=True, exclude_seen=True, baselines=["popularity", "item_knn"],
                       max_batches=None)
    raw["data"].update(split="leave_one_out", tie_order="file", max_eval_samples=None)
    metrics = run_recipe(load_recipe(raw))
    # leave-one-out: one test target per user with history, all evaluated
    assert metrics["test_num_users"] == 40
    for key in ("test_ndcg@5", "test_popularity_ndcg@5", "test_item_knn_ndcg@5"):
        assert 0 <= metrics[key] <= 1, key
    state = json.loads((tmp_path / "run" / "checkpoint-2" / "trainer_state.json").read_text())
    assert any("moe/max_load_ratio" in e for e in state["log_history"])
    from safetensors.torch import load_file

    weights = load_file(os.path.join(tmp_path, "run", "model.safetensors"))
    bias = [v for k, v in weights.items() if k.endswith("e_score_correction_bias")]
    assert bias and any(b.abs().sum() > 0 for b in bias)  # 3 optimiser steps moved the bias


def test_recipe_validation_and_cli_help(capsys):
    with pytest.raises(ValueError, match="model.type"):
        load_recipe({"model": {"type": "bert"}})
    with pytest.raises(ValueError, match="data_dir"):
        load_recipe({"data": {"source": "kuairand"}})
    with pytest.raises(ValueError, match="unknown recipe section"):
        load_recipe({"optimizer": {}})
    from kwaiformers.cli import main

    with pytest.raises(SystemExit):
        main(["train", "onerec", "--help"])
    assert "--config" in capsys.readouterr().out
    for name in ("onerec_v1_tiny.yaml", "onerec_v2_tiny.yaml"):
        path = os.path.join(os.path.dirname(__file__), "..", "trainers", "configs", name)
        assert load_recipe(path).model["type"] in ("onerec", "onerec_v2")


def test_recipe_overrides_and_ml100k_config():
    from kwaiformers.trainers.onerec_pretrain import apply_overrides

    path = os.path.join(os.path.dirname(__file__), "..", "trainers", "configs", "onerec_v2_ml100k.yaml")
    import yaml

    raw = yaml.safe_load(open(path))
    with pytest.raises(ValueError, match="data_dir"):
        load_recipe(raw)
    recipe = load_recipe(apply_overrides(raw, ["data.data_dir=ml-100k", "training.seed=3",
                                               "eval.ks=[5, 10]"]))
    assert recipe.data["split"] == "leave_one_out" and recipe.data["tie_order"] == "file"
    assert recipe.training["seed"] == 3 and recipe.eval["ks"] == [5, 10]
    assert recipe.eval["exclude_seen"] is True
    with pytest.raises(ValueError, match="SECTION.KEY=VALUE"):
        apply_overrides(raw, ["seed=3"])
    with pytest.raises(ValueError, match="unknown eval key"):
        load_recipe(apply_overrides(raw, ["data.data_dir=x", "eval.exclude=1"]))


def test_v1_and_v2_ml100k_recipes_differ_only_in_the_model():
    """The MovieLens rows compare like with like: the V1 recipe is V2's with another ``model``
    section, and that section builds an encoder-decoder V1 at V2's width."""
    import yaml

    from kwaiformers.data.pipeline import build_onerec_model
    from kwaiformers.data.samples import OneRecFeatureSpec

    root = os.path.join(os.path.dirname(__file__), "..", "trainers", "configs")
    v1, v2 = (yaml.safe_load(open(os.path.join(root, f"onerec_{v}_ml100k.yaml"))) for v in ("v1", "v2"))
    assert set(v1) == set(v2)
    for section in set(v1) - {"model", "training"}:
        assert v1[section] == v2[section], section
    assert {k: v for k, v in v1["training"].items() if k != "output_dir"} == \
        {k: v for k, v in v2["training"].items() if k != "output_dir"}
    assert v1["model"]["type"] == "onerec" and v1["model"]["hidden_size"] == v2["model"]["hidden_size"]
    spec = OneRecFeatureSpec(user_feature_names=["gender", "age"], user_feature_vocab_sizes=[3, 8],
                             num_levels=3, level_sizes=[32, 32, 4], short_len=50, long_len=50,
                             reward_history_len=64)
    model = build_onerec_model(spec, v1["model"])
    assert model.config.model_type == "onerec" and model.config.hidden_size == 64
    assert load_recipe(dict(v1, data=dict(v1["data"], data_dir="ml-100k"))).model["type"] == "onerec"
