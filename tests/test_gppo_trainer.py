"""GPPOTrainer on CPU with a tiny Qwen3: clipping, GPPO vs GRPO, dynamic sampling, TRL contract."""

from __future__ import annotations

import inspect
import logging
import math

import pytest
import torch
from datasets import Dataset
from utils import make_tiny_qwen3, make_tiny_tokenizer

from kwaiformers.trainers.gppo_config import GPPOConfig
from kwaiformers.trainers.gppo_trainer import GPPOTrainer

G = 4  # group size


def _varied_reward(completions, **kwargs):
    # depends on the sampled characters: a group's rewards are (almost surely) not all equal
    return [float(sum(map(ord, c)) % 7) / 6.0 for c in completions]


def _marker_reward(prompts, completions, **kwargs):
    """0 for every completion of a 'zero' prompt (a zero-std group), varied otherwise."""
    varied = _varied_reward(completions)
    return [0.0 if p.startswith("zero") else v for p, v in zip(prompts, varied)]


def _common_args(tmp_path, **overrides):
    args = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2 * G,
        num_generations=G,
        max_completion_length=8,
        learning_rate=5e-2,
        max_steps=2,
        gradient_accumulation_steps=1,
        steps_per_generation=2,
        num_iterations=1,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        seed=0,
        dataloader_num_workers=0,
    )
    args.update(overrides)
    return args


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_tokenizer()


def _dataset(prefixes=("var",), n=16):
    return Dataset.from_dict({"prompt": [f"{prefixes[i % len(prefixes)]} {i}: " for i in range(n)]})


def test_trl_private_api_contract():
    """Fails loudly if the TRL private methods GPPOTrainer overrides or calls change."""
    import trl
    from trl import GRPOTrainer

    assert trl.__version__.startswith("1.16."), trl.__version__

    def params(fn):
        return list(inspect.signature(fn).parameters)

    assert params(GRPOTrainer._compute_loss) == ["self", "model", "inputs"]
    assert params(GRPOTrainer._calculate_rewards) == [
        "self", "inputs", "prompts", "completions", "completion_ids_list"
    ]
    assert params(GRPOTrainer._generate_and_score_completions) == ["self", "inputs"]
    logps_params = params(GRPOTrainer._get_per_token_logps_and_entropies)
    assert logps_params[:5] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep"]
    for name in ("compute_entropy", "compute_aux_loss", "pixel_values", "num_images", "num_tiles",
                 "mm_token_type_ids", "image_position_ids"):
        assert name in logps_params, name
    assert params(GRPOTrainer.get_high_entropy_mask) == ["self", "entropies", "mask", "threshold"]
    assert "off_policy_threshold" in params(GRPOTrainer.get_off_policy_mask)
    assert GRPOTrainer.loss_is_scaled_for_ga is True
    # attributes our loss reads
    source = inspect.getsource(GRPOTrainer.__init__)
    for attr in ("self.epsilon_low", "self.epsilon_high", "self.reward_weights", "self.aux_loss_enabled",
                 "self.importance_sampling_level", "self.top_entropy_quantile"):
        assert attr in source, attr


def _make(tokenizer, tmp_path, cls=GPPOTrainer, reward=_varied_reward, dataset=None, **overrides):
    from trl import GRPOConfig

    config_cls = GPPOConfig if cls is GPPOTrainer or issubclass(cls, GPPOTrainer) else GRPOConfig
    args = config_cls(**_common_args(tmp_path, **overrides))
    return cls(
        model=make_tiny_qwen3(tokenizer, seed=0),
        reward_funcs=reward,
        args=args,
        train_dataset=dataset if dataset is not None else _dataset(),
        processing_class=tokenizer,
    )


def test_gppo_vs_grpo_clipping_active_same_loss_different_update(tokenizer, tmp_path):
    from trl import GRPOTrainer

    results = {}
    for name, cls, extra in (("grpo", GRPOTrainer, {"epsilon_high": 0.28}), ("gppo", GPPOTrainer, {})):
        trainer = _make(tokenizer, tmp_path / name, cls=cls, **extra)
        trainer.train()
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        results[name] = (logs, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    grpo_logs, grpo_params = results["grpo"]
    gppo_logs, gppo_params = results["gppo"]
    # step 1 is on-policy (ratio == 1): identical; step 2 reuses the batch generated before step 1
    assert gppo_logs[1]["clip_ratio/region_mean"] > 0
    assert grpo_logs[1]["clip_ratio/region_mean"] == pytest.approx(gppo_logs[1]["clip_ratio/region_mean"])
    for g_log, p_log in zip(grpo_logs, gppo_logs):
        assert p_log["loss"] == pytest.approx(g_log["loss"], rel=1e-4, abs=1e-6)
    assert "gppo/kept_group_frac" in gppo_logs[0] and "entropy" in gppo_logs[0]
    diff = max((gppo_params[k] - grpo_params[k]).abs().max().item() for k in gppo_params)
    assert diff > 1e-6, "GPPO's update should differ from GRPO's when tokens are clipped"


def test_compute_loss_equals_grpo_value_and_nll_term(tokenizer, tmp_path):
    """Direct check on one forced off-policy batch: same value as GRPO, different gradient."""
    from trl import GRPOTrainer

    gppo = _make(tokenizer, tmp_path / "a")
    grpo = _make(tokenizer, tmp_path / "b", cls=GRPOTrainer, epsilon_high=0.28)
    for trainer in (gppo, grpo):  # normally set by Trainer.train()
        trainer.current_gradient_accumulation_steps = 1
    torch.manual_seed(0)
    batch, prompt_len, comp_len = 2 * G, 5, 6
    inputs = {
        "prompt_ids": torch.randint(10, 60, (batch, prompt_len)),
        "prompt_mask": torch.ones(batch, prompt_len, dtype=torch.long),
        "completion_ids": torch.randint(10, 60, (batch, comp_len)),
        "completion_mask": torch.ones(batch, comp_len, dtype=torch.long),
        "advantages": torch.randn(batch),
        "num_items_in_batch": torch.tensor(float(batch * comp_len)),
    }
    with torch.no_grad():
        logps, _, _ = gppo._get_per_token_logps_and_entropies(
            gppo.model, torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1),
            torch.ones(batch, prompt_len + comp_len, dtype=torch.long), comp_len)
    inputs["old_per_token_logps"] = logps + torch.randn_like(logps) * 0.7
    grads = {}
    for name, trainer in (("gppo", gppo), ("grpo", grpo)):
        trainer.model.train()
        trainer.model.zero_grad()
        loss = trainer._compute_loss(trainer.model, dict(inputs))
        loss.backward()
        grads[name] = (loss.item(), torch.cat([p.grad.flatten() for p in trainer.model.parameters()
                                               if p.grad is not None]))
    assert gppo._metrics["train"]["clip_ratio/region_mean"][-1] > 0
    assert grads["gppo"][0] == pytest.approx(grads["grpo"][0], rel=1e-5)
    assert not torch.allclose(grads["gppo"][1], grads["grpo"][1])

    # the positive-sample NLL adds coef * token-mean NLL over positives
    gppo.args.positive_nll_coef = 0.1
    base = gppo._compute_loss(gppo.model, dict(inputs)).item()
    positive = torch.zeros(batch)
    positive[:3] = 1.0
    with_nll = gppo._compute_loss(gppo.model, dict(inputs, gppo_positive=positive)).item()
    with torch.no_grad():
        logps_now, _, _ = gppo._get_per_token_logps_and_entropies(
            gppo.model, torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1),
            torch.ones(batch, prompt_len + comp_len, dtype=torch.long), comp_len)
    expected_nll = -logps_now[:3].mean().item()
    assert with_nll - base == pytest.approx(0.1 * expected_nll, rel=1e-4)


class _SpyTrainer(GPPOTrainer):
    """Records what every loss computation is trained on."""

    seen: list[tuple[list[str], list[float]]]

    def _compute_loss(self, model, inputs):
        prompts = self.processing_class.batch_decode(inputs["prompt_ids"], skip_special_tokens=True)
        self.seen.append((prompts, inputs["gppo_keep"].tolist()))
        return super()._compute_loss(model, inputs)


def test_dynamic_sampling_never_trains_on_zero_std_groups_and_refills(tokenizer, tmp_path, caplog):
    _SpyTrainer.seen = []
    trainer = _make(tokenizer, tmp_path, cls=_SpyTrainer, reward=_marker_reward,
                    dataset=_dataset(("zero", "var")), zero_std_groups="resample",
                    dynamic_sampling_max_rounds=6, max_steps=2)
    with caplog.at_level(logging.INFO, logger="kwaiformers.trainers.gppo_trainer"):
        trainer.train()
    assert trainer.seen
    for prompts, keep in trainer.seen:
        for prompt, k in zip(prompts, keep):
            if prompt.startswith("zero"):
                assert k == 0.0, "a zero-std group was trained on"
        assert all(k == 1.0 for k in keep), "the batch was not refilled with std > 0 groups"
    logs = [e for e in trainer.state.log_history if "gppo/trained_group_frac" in e]
    assert logs[0]["gppo/trained_group_frac"] == 1.0
    assert logs[0]["gppo/kept_group_frac"] < 1.0
    assert any("dynamic sampling" in r.getMessage() for r in caplog.records)


def test_dynamic_sampling_cap_masks_what_is_left(tokenizer, tmp_path, caplog):
    _SpyTrainer.seen = []
    trainer = _make(tokenizer, tmp_path, cls=_SpyTrainer, reward=_marker_reward,
                    dataset=_dataset(("zero",)), zero_std_groups="resample",
                    dynamic_sampling_max_rounds=1, max_steps=1, learning_rate=1e-3)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="kwaiformers.trainers.gppo_trainer"):
        trainer.train()
    assert all(k == 0.0 for _, keep in trainer.seen for k in keep)
    assert any("cap dynamic_sampling_max_rounds=1 reached" in r.getMessage() for r in caplog.records)
    logs = [e for e in trainer.state.log_history if "gppo/dynamic_sampling_rounds" in e]
    assert logs[0]["gppo/dynamic_sampling_rounds"] == 1.0
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "trained on zero-std groups"


def test_mask_mode_drops_zero_std_groups_from_the_loss(tokenizer, tmp_path):
    _SpyTrainer.seen = []
    trainer = _make(tokenizer, tmp_path, cls=_SpyTrainer, reward=_marker_reward,
                    dataset=_dataset(("zero", "var")), zero_std_groups="mask", max_steps=1)
    trainer.train()
    for prompts, keep in trainer.seen:
        for prompt, k in zip(prompts, keep):
            assert k == (0.0 if prompt.startswith("zero") else 1.0)


def test_unsupported_options_raise_at_init(tokenizer, tmp_path):
    for overrides, match in (
        ({"loss_type": "cispo"}, "loss_type"),
        ({"delta": 2.0}, "delta"),
        ({"entropy_coef": 0.01}, "entropy bonus"),
    ):
        with pytest.raises(NotImplementedError, match=match):
            _make(tokenizer, tmp_path, **overrides)
    with pytest.raises(ValueError, match="dual_clip_c"):
        GPPOConfig(**_common_args(tmp_path, dual_clip_c=0.5))
    with pytest.raises(ValueError, match="zero_std_groups"):
        GPPOConfig(**_common_args(tmp_path, zero_std_groups="drop"))
    with pytest.raises(TypeError, match="GPPOConfig"):
        from trl import GRPOConfig

        GPPOTrainer(make_tiny_qwen3(tokenizer), _varied_reward,
                    GRPOConfig(**_common_args(tmp_path)), _dataset(), processing_class=tokenizer)


def test_sequence_level_kl_lora_conversational(tokenizer, tmp_path):
    """Supported TRL options together: GSPO sequence-level ratios, KL beta, LoRA, chat prompts."""
    from peft import LoraConfig

    from kwaiformers.rewards.math_reward import completion_text

    def reward(completions, **kwargs):
        return _varied_reward([completion_text(c) for c in completions])

    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"q{i}"}] for i in range(8)]})
    args = GPPOConfig(**_common_args(tmp_path, importance_sampling_level="sequence", loss_type="grpo",
                                     beta=0.04, dual_clip_c=10.0, positive_nll_coef=0.1,
                                     positive_reward_threshold=0.5, learning_rate=1e-2))
    trainer = GPPOTrainer(model=make_tiny_qwen3(tokenizer, seed=0), reward_funcs=reward, args=args,
                          train_dataset=dataset, processing_class=tokenizer,
                          peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logs) == 2 and all(math.isfinite(e["loss"]) for e in logs)
    assert "kl" in logs[-1] and "gppo/positive_nll" in logs[-1] and "gppo/dual_clip_ratio" in logs[-1]
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
