"""Klear-Reasoner recipes: long-CoT SFT (TRL ``SFTTrainer``) and GPPO RL, driven by YAML configs.

A config has four sections (see ``trainers/configs/klear_gppo_math.yaml``)::

    model:    {name_or_path: ..., dtype: bfloat16}      # or {tiny: {hidden_size: 32, ...}}
    dataset:  {name: ..., split: train, prompt_column: prompt,
               answer_column: reward_model.ground_truth}   # or {builtin: arithmetic, ...}
    reward:   {type: math, ...KlearMathReward fields}  # or {type: code, ...}   (GPPO only)
    peft:     {r: 16, lora_alpha: 32, target_modules: [q_proj, v_proj]}   # optional
    training: {...GPPOConfig / SFTConfig fields...}

``model.tiny`` builds a randomly initialised tiny Qwen3 and a character-level tokenizer whose
``<think>``/``</think>`` tags are atomic but *not* special (TRL decodes completions with
``skip_special_tokens=True``, so special think tags would vanish before the reward sees them);
``dataset.builtin: arithmetic`` is a synthetic addition task with a short chain of thought. Both
make the tiny CPU configs runnable offline (tests, ``benchmarks/gppo_vs_grpo.py``).
"""

from __future__ import annotations

import argparse
import copy
import random
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kwaiformers.utils.distributed import check_launch_matches, check_sharding_supported

__all__ = [
    "add_recipe_arguments",
    "addition_chain_of_thought",
    "build_dataset",
    "build_model_and_tokenizer",
    "build_reward_funcs",
    "load_recipe_config",
    "make_arithmetic_dataset",
    "make_char_tokenizer",
    "make_tiny_causal_lm",
    "run_gppo",
    "run_sft",
]

THINK_START, THINK_END = "<think>", "</think>"
_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


# ----------------------------------------------------------------------------- config
def load_recipe_config(path: str | Path) -> dict[str, Any]:
    """Read a recipe YAML file into a dict (validated to have the known sections)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe config {str(path)!r} does not exist")
    with path.open() as handle:
        config = yaml.safe_load(handle) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a recipe config must be a mapping, got {type(config).__name__}")
    unknown = set(config) - {"model", "dataset", "reward", "peft", "training"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)} (expected model, "
                         "dataset, reward, peft, training)")
    for key in ("model", "dataset", "training"):
        if not isinstance(config.get(key), dict):
            raise ValueError(f"{path}: section {key!r} is required and must be a mapping")
    return config


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``kwaiformers train gppo`` and ``kwaiformers train sft``."""
    parser.add_argument("--config", required=True, help="recipe YAML (trainers/configs/*.yaml)")
    parser.add_argument("--output_dir", help="override training.output_dir")
    parser.add_argument("--max_steps", type=int, help="override training.max_steps")
    parser.add_argument("--model_name_or_path", help="override model.name_or_path")
    parser.add_argument("--dataset_name", help="override dataset.name (a hub id or a local path)")


def _apply_overrides(config: dict[str, Any], args: argparse.Namespace | None) -> dict[str, Any]:
    config = copy.deepcopy(config)
    if args is None:
        return config
    if getattr(args, "output_dir", None):
        config["training"]["output_dir"] = args.output_dir
    if getattr(args, "max_steps", None) is not None:
        config["training"]["max_steps"] = args.max_steps
    if getattr(args, "model_name_or_path", None):
        config["model"] = {k: v for k, v in config["model"].items() if k != "tiny"}
        config["model"]["name_or_path"] = args.model_name_or_path
    if getattr(args, "dataset_name", None):
        config["dataset"] = {k: v for k, v in config["dataset"].items() if k != "builtin"}
        config["dataset"]["name"] = args.dataset_name
    return config


# ----------------------------------------------------------------------------- tiny artefacts
def make_char_tokenizer(alphabet: str = string.digits + "+-*=()? .,:\nQAa\\{}boxed"):
    """A character-level fast tokenizer: one token per character of ``alphabet``, atomic special
    tokens ``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos) and atomic, non-special
    ``<think>``/``</think>``; a Qwen-style chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if not isinstance(alphabet, str) or not alphabet:
        raise ValueError("alphabet must be a non-empty str")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    chars = list(dict.fromkeys(alphabet))
    vocab = {token: i for i, token in enumerate([*specials, "<unk>", *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>",
        eos_token="<|im_end|>", bos_token=None, additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.add_tokens([THINK_START, THINK_END], special_tokens=False)
    tokenizer.chat_template = _CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def make_tiny_causal_lm(tokenizer, *, hidden_size: int = 64, num_hidden_layers: int = 2,
                        num_attention_heads: int = 4, num_key_value_heads: int = 2,
                        intermediate_size: int = 128, seed: int = 0, **config_kwargs: Any):
    """A randomly initialised ``Qwen3ForCausalLM`` sized to ``tokenizer`` (trained from scratch)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads,
        head_dim=hidden_size // num_attention_heads, intermediate_size=intermediate_size,
        max_position_embeddings=config_kwargs.pop("max_position_embeddings", 256),
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, tie_word_embeddings=True, **config_kwargs,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def addition_chain_of_thought(a: int, b: int) -> str:
    """Column-wise addition as a short reasoning trace: ``<think>7+8=15 5+6+1=12</think>125``."""
    if a < 0 or b < 0:
        raise ValueError(f"operands must be >= 0, got {a}, {b}")
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total}" if carry else f"{x}+{y}={total}")
        carry = total // 10
    return f"{THINK_START}{' '.join(steps)}{THINK_END}{a + b}"


def make_arithmetic_dataset(num_samples: int = 256, *, seed: int = 0, min_value: int = 10,
                            max_value: int = 99, conversational: bool = False):
    """Synthetic addition problems: columns ``prompt`` (``"Q: 12+34\\nA:"`` or a user turn),
    ``answer`` (the sum as a string) and ``completion`` (the reasoning trace + answer, for SFT)."""
    from datasets import Dataset

    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if not 0 <= min_value <= max_value:
        raise ValueError(f"need 0 <= min_value <= max_value, got {min_value}, {max_value}")
    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {"prompt": [], "answer": [], "completion": []}
    for _ in range(num_samples):
        a, b = rng.randint(min_value, max_value), rng.randint(min_value, max_value)
        question = f"Q: {a}+{b}\nA:"
        completion = addition_chain_of_thought(a, b)
        if conversational:
            rows["prompt"].append([{"role": "user", "content": question}])
            rows["completion"].append([{"role": "assistant", "content": completion}])
        else:
            rows["prompt"].append(question)
            rows["completion"].append(completion)
        rows["answer"].append(str(a + b))
    return Dataset.from_dict(rows)


# ----------------------------------------------------------------------------- builders
def build_model_and_tokenizer(model_cfg: Mapping[str, Any]):
    """``(model, tokenizer)`` from the ``model`` section (a hub id / local path, or ``tiny``)."""
    if "tiny" in model_cfg:
        tiny = dict(model_cfg.get("tiny") or {})
        tokenizer = make_char_tokenizer(**({"alphabet": tiny.pop("alphabet")} if "alphabet" in tiny else {}))
        return make_tiny_causal_lm(tokenizer, **tiny), tokenizer
    name = model_cfg.get("name_or_path")
    if not isinstance(name, str) or not name:
        raise ValueError("model.name_or_path must be a hub id or a local path (or use model.tiny)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {k: v for k, v in model_cfg.items() if k not in {"name_or_path", "tokenizer"}}
    tokenizer = AutoTokenizer.from_pretrained(model_cfg.get("tokenizer", name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    return model, tokenizer


def _get_path(row: Mapping[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(f"dataset rows have no field {dotted!r}")
        value = value[part]
    return value


def build_dataset(dataset_cfg: Mapping[str, Any]):
    """The training dataset from the ``dataset`` section.

    ``builtin: arithmetic`` (``num_samples``, ``seed``, ``min_value``, ``max_value``,
    ``conversational``) or a ``datasets`` source: ``name`` (hub id, local directory, or a loader
    name such as ``json`` with ``data_files``), ``split``, optional ``config``, ``max_samples``,
    and column remapping ``prompt_column`` -> ``prompt``, ``answer_column`` -> ``answer``,
    ``tests_column`` -> ``tests`` (dotted paths reach nested fields, e.g. Klear's verl-style
    ``reward_model.ground_truth``).
    """
    cfg = dict(dataset_cfg)
    builtin = cfg.pop("builtin", None)
    if builtin is not None:
        if builtin != "arithmetic":
            raise ValueError(f"dataset.builtin must be 'arithmetic', got {builtin!r}")
        return make_arithmetic_dataset(**cfg)
    from datasets import load_dataset

    name = cfg.pop("name", None)
    if not isinstance(name, str) or not name:
        raise ValueError("dataset.name must be a hub id, a local path or a loader name")
    split = cfg.pop("split", "train")
    max_samples = cfg.pop("max_samples", None)
    remap = {src: dst for dst, src in (("prompt", cfg.pop("prompt_column", "prompt")),
                                      ("answer", cfg.pop("answer_column", None)),
                                      ("tests", cfg.pop("tests_column", None))) if src}
    data = load_dataset(name, cfg.pop("config", None), split=split, **cfg)
    if max_samples is not None:
        data = data.select(range(min(int(max_samples), len(data))))
    if any(src != dst for src, dst in remap.items()):
        data = data.map(lambda row: {dst: _get_path(row, src) for src, dst in remap.items()},
                        desc="remapping columns")
    if "prompt" not in data.column_names:
        raise ValueError(f"the dataset needs a prompt column; got {data.column_names}")
    return data


def build_reward_funcs(reward_cfg: Mapping[str, Any] | None) -> list[Any]:
    """Reward callables from the ``reward`` section: ``type: math`` (KlearMathReward fields) or
    ``type: code`` (KlearCodeReward fields)."""
    cfg = dict(reward_cfg or {"type": "math"})
    kind = cfg.pop("type", "math")
    if kind == "math":
        from kwaiformers.rewards.math_reward import KlearMathReward

        return [KlearMathReward(**cfg)]
    if kind == "code":
        from kwaiformers.rewards.code_reward import KlearCodeReward

        return [KlearCodeReward(**cfg)]
    raise ValueError(f"reward.type must be 'math' or 'code', got {kind!r}")


def _peft_config(peft_cfg: Mapping[str, Any] | None):
    if not peft_cfg:
        return None
    from peft import LoraConfig

    return LoraConfig(**{"task_type": "CAUSAL_LM", **dict(peft_cfg)})


# ----------------------------------------------------------------------------- runners
def run_gppo(config: Mapping[str, Any], args: argparse.Namespace | None = None, *,
             train: bool = True):
    """Build and (by default) run a :class:`GPPOTrainer` from a recipe config; saves the model
    to ``training.output_dir``. Returns the trainer."""
    from .gppo_config import GPPOConfig
    from .gppo_trainer import GPPOTrainer

    config = _apply_overrides(dict(config), args)
    training = GPPOConfig(**config["training"])
    check_sharding_supported(training)  # before loading the model
    model, tokenizer = build_model_and_tokenizer(config["model"])
    dataset = build_dataset(config["dataset"])
    trainer = GPPOTrainer(
        model=model, reward_funcs=build_reward_funcs(config.get("reward")), args=training,
        train_dataset=dataset, processing_class=tokenizer,
        peft_config=_peft_config(config.get("peft")),
    )
    check_launch_matches(trainer.accelerator.num_processes, "the GPPO trainer")
    if train:
        trainer.train()
        trainer.save_model(training.output_dir)
    return trainer


def run_sft(config: Mapping[str, Any], args: argparse.Namespace | None = None, *,
            train: bool = True):
    """Long chain-of-thought SFT with TRL's ``SFTTrainer`` (prompt/completion or ``messages``
    datasets; the chat template renders the think tags). Returns the trainer."""
    from trl import SFTConfig, SFTTrainer

    config = _apply_overrides(dict(config), args)
    training = SFTConfig(**config["training"])
    check_sharding_supported(training)  # before loading the model
    model, tokenizer = build_model_and_tokenizer(config["model"])
    dataset = build_dataset(config["dataset"])
    if "answer" in dataset.column_names and "completion" in dataset.column_names:
        dataset = dataset.remove_columns("answer")
    trainer = SFTTrainer(model=model, args=training, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=_peft_config(config.get("peft")))
    check_launch_matches(trainer.accelerator.num_processes, "the SFT trainer")
    if train:
        trainer.train()
        trainer.save_model(training.output_dir)
    return trainer
