"""GPPO / SFT recipes: configs parse into TRL configs, tiny CPU runs through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from kwaiformers.cli import main
from kwaiformers.trainers.recipes_reasoning import (
    addition_chain_of_thought,
    load_recipe_config,
    make_arithmetic_dataset,
    make_char_tokenizer,
)

CONFIGS = Path(__file__).resolve().parents[1] / "trainers" / "configs"


@pytest.mark.parametrize("name", ["klear_gppo_math.yaml", "klear_gppo_code.yaml"])
def test_klear_configs_carry_klear_hyperparameters(name, tmp_path):
    from kwaiformers.trainers.gppo_config import GPPOConfig

    config = load_recipe_config(CONFIGS / name)
    training = dict(config["training"], output_dir=str(tmp_path), use_vllm=False, bf16=False)
    args = GPPOConfig(**training)
    assert (args.epsilon, args.epsilon_high, args.dual_clip_c) == (0.2, 0.28, 10.0)
    assert args.num_generations == 8 and args.positive_nll_coef == 0.1
    assert args.learning_rate == (1e-6 if "math" in name else 5e-7)
    # off-policy as in Klear: several optimizer steps per rollout batch
    assert args.steps_per_generation // args.gradient_accumulation_steps == (8 if "math" in name else 4)
    assert config["reward"]["type"] == ("math" if "math" in name else "code")
    # Klear's token-mean: per-micro-batch token mean (bnpo), not dapo's rollout-average normaliser
    assert args.loss_type == "bnpo"
    assert args.gradient_accumulation_steps == (1 if "math" in name else 2)


def test_bad_config_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {}\ndataset: {}\ntraining: {}\noops: 1\n")
    with pytest.raises(ValueError, match="unknown top-level keys"):
        load_recipe_config(bad)
    with pytest.raises(FileNotFoundError):
        load_recipe_config(tmp_path / "missing.yaml")


def test_arithmetic_task_and_think_tags_survive_decoding():
    from kwaiformers.rewards.math_reward import klear_math_reward

    assert addition_chain_of_thought(57, 68) == "<think>7+8=15 5+6+1=12</think>125"
    data = make_arithmetic_dataset(8, seed=1)
    tokenizer = make_char_tokenizer()
    ids = tokenizer(data[0]["completion"])["input_ids"]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)  # as TRL decodes completions
    assert decoded == data[0]["completion"]
    assert klear_math_reward(prompts=data["prompt"], completions=data["completion"],
                             answer=data["answer"]) == [1.0] * 8


def test_tiny_gppo_and_sft_recipes_run_from_the_cli(tmp_path):
    assert main(["train", "gppo", "--config", str(CONFIGS / "tiny_gppo_cpu.yaml"),
                 "--output_dir", str(tmp_path / "gppo"), "--max_steps", "2"]) == 0
    assert (tmp_path / "gppo" / "model.safetensors").is_file()
    assert main(["train", "sft", "--config", str(CONFIGS / "tiny_sft_cpu.yaml"),
                 "--output_dir", str(tmp_path / "sft"), "--max_steps", "2"]) == 0
    assert (tmp_path / "sft" / "model.safetensors").is_file()
