"""``kwaiformers train keye-sft --config trainers/configs/keye_sft_tiny.yaml``: Keye-VL SFT with TRL.

TRL ``SFTTrainer`` on image/video-text conversations in the five cold-start formats of
:mod:`kwaiformers.data.keye_sft` (loss on assistant turns only), optionally with PEFT LoRA on the
documented Keye targets (:mod:`kwaiformers.models.keye_vl.peft_keye_vl`).

YAML layout::

    model:   {name_or_path: Kwai-Keye/Keye-VL-1_5-8B, dtype: bfloat16}   # or tiny: {version: preview}
    dataset: {path: data/train.jsonl}          # or synthetic: {num_samples: 10}
    lora:    {r: 16, lora_alpha: 32, include_projector: false}        # optional
    max_length: 4096                            # samples above it raise (no truncation of vision)
    training: {...}                             # any trl.SFTConfig field
"""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["add_arguments", "build_keye_sft_trainer", "load_keye_sft_config", "run"]


def load_keye_sft_config(path: str) -> dict[str, Any]:
    """Read and validate the recipe YAML."""
    import yaml

    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the recipe must be a YAML mapping")
    unknown = set(cfg) - {"model", "dataset", "lora", "training", "max_length", "system"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}")
    model = cfg.get("model") or {}
    if bool(model.get("name_or_path")) == bool(model.get("tiny")):
        raise ValueError(f"{path}: model needs exactly one of 'name_or_path' or 'tiny'")
    dataset = cfg.get("dataset") or {}
    if bool(dataset.get("path")) == bool(dataset.get("synthetic")):
        raise ValueError(f"{path}: dataset needs exactly one of 'path' or 'synthetic'")
    return cfg


def _load_model_and_processor(model_cfg: dict[str, Any]):
    if model_cfg.get("tiny"):
        from kwaiformers.models.keye_vl.tiny_keye_vl import build_tiny_keye_vl

        tiny = model_cfg["tiny"] if isinstance(model_cfg["tiny"], dict) else {}
        return build_tiny_keye_vl(**tiny)
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import kwaiformers

    kwaiformers.register_auto_classes()
    name = model_cfg["name_or_path"]
    dtype = model_cfg.get("dtype", "auto")
    dtype = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    model = AutoModelForImageTextToText.from_pretrained(
        name, dtype=dtype, attn_implementation=model_cfg.get("attn_implementation", "sdpa"))
    processor = AutoProcessor.from_pretrained(name)
    return model, processor


def build_keye_sft_trainer(cfg: dict[str, Any], output_dir: str | None = None):
    """Build the ``SFTTrainer`` (model, processor, dataset, collator, optional LoRA) from a config."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from kwaiformers.data.keye_sft import (
        KeyeSFTCollator,
        load_keye_sft_records,
        write_synthetic_keye_sft_data,
    )
    from kwaiformers.models.keye_vl.peft_keye_vl import keye_lora_config

    model, processor = _load_model_and_processor(cfg["model"])
    training = dict(cfg.get("training") or {})
    if output_dir is not None:
        training["output_dir"] = output_dir
    training.setdefault("output_dir", "outputs/keye-sft")
    data_cfg = cfg["dataset"]
    if data_cfg.get("synthetic"):
        syn = data_cfg["synthetic"] if isinstance(data_cfg["synthetic"], dict) else {}
        path = write_synthetic_keye_sft_data(os.path.join(training["output_dir"], "synthetic_data"), **syn)
    else:
        path = data_cfg["path"]
    records = load_keye_sft_records(path)
    dataset = Dataset.from_list(records)
    args = SFTConfig(
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        **training,
    )
    from kwaiformers.utils.distributed import check_sharding_supported

    check_sharding_supported(args)
    collator = KeyeSFTCollator(processor, max_length=cfg.get("max_length"), root=os.path.dirname(os.path.abspath(path)),
                               system=cfg.get("system"))
    peft_config = keye_lora_config(**cfg["lora"]) if cfg.get("lora") else None
    return SFTTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      processing_class=processor, peft_config=peft_config)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="recipe YAML (see trainers/configs/keye_sft_tiny.yaml)")
    parser.add_argument("--output_dir", default=None, help="overrides training.output_dir")
    parser.add_argument("--max_steps", type=int, default=None, help="overrides training.max_steps")


def run(args: argparse.Namespace) -> int:
    cfg = load_keye_sft_config(args.config)
    if args.max_steps is not None:
        cfg.setdefault("training", {})["max_steps"] = args.max_steps
    trainer = build_keye_sft_trainer(cfg, output_dir=args.output_dir)
    from kwaiformers.utils.distributed import check_launch_matches

    check_launch_matches(trainer.accelerator.num_processes, "the Keye SFT trainer")
    result = trainer.train()
    trainer.save_model()
    if trainer.is_world_process_zero():  # one writer under a launcher
        trainer.processing_class.save_pretrained(trainer.args.output_dir)
        print(f"keye-sft: {result.global_step} steps, final train loss {result.training_loss:.4f}, "
              f"saved to {trainer.args.output_dir}")
    return 0
