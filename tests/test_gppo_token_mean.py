"""The token-mean note of GPPOConfig: TRL's ``dapo`` divides an optimizer step by the rollout's
average tokens per step, ``bnpo`` (with gradient accumulation 1) by the step's own token count,
the micro-batch token mean of Klear's verl actor (which the Klear recipes use)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from utils import make_tiny_qwen3, make_tiny_tokenizer

from kwaiformers.trainers.gppo_config import GPPOConfig
from kwaiformers.trainers.gppo_trainer import GPPOTrainer


def test_dapo_uses_rollout_average_tokens_bnpo_the_step_token_mean(tmp_path):
    tokenizer = make_tiny_tokenizer()
    args = GPPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=8, gradient_accumulation_steps=1,
                      steps_per_generation=2, report_to="none", save_strategy="no", use_cpu=True,
                      bf16=False, loss_type="dapo")
    trainer = GPPOTrainer(model=make_tiny_qwen3(tokenizer, seed=0),
                          reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                          args=args, train_dataset=Dataset.from_dict({"prompt": ["a"] * 8}),
                          processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1  # normally set by Trainer.train()
    trainer.model.train()
    torch.manual_seed(0)
    batch, comp_len = 8, 6
    mask = torch.zeros(batch, comp_len, dtype=torch.long)
    for i, length in enumerate([1, 2, 3, 4, 5, 6, 3, 6]):
        mask[i, :length] = 1
    step_tokens = float(mask.sum())  # 30 tokens in this optimizer step
    rollout_tokens = step_tokens + 60.0  # the rollout's other step had longer completions
    inputs = {
        "prompt_ids": torch.randint(10, 60, (batch, 4)),
        "prompt_mask": torch.ones(batch, 4, dtype=torch.long),
        "completion_ids": torch.randint(10, 60, (batch, comp_len)),
        "completion_mask": mask,
        "advantages": torch.randn(batch),
        "num_items_in_batch": torch.tensor(rollout_tokens),
    }
    with torch.no_grad():
        dapo = trainer._compute_loss(trainer.model, dict(inputs)).item()
        trainer.loss_type = "bnpo"
        bnpo = trainer._compute_loss(trainer.model, dict(inputs)).item()
    # dapo: sum / (rollout tokens / steps_per_generation); bnpo: sum / this step's tokens
    assert dapo / bnpo == pytest.approx(step_tokens / (rollout_tokens / 2), rel=1e-5)
    assert dapo != pytest.approx(bnpo)
