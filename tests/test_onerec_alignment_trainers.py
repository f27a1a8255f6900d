"""ECPO / GBPO trainers (TRL GRPOTrainer subclasses) on tiny OneRec-V2 models, CPU."""

from __future__ import annotations

import math

import pytest
import torch

LEVELS = (4, 5, 6)
USER_VOCAB = (7, 3)


def _rows(n=16, t=4, h=6, seed=0, no_history_rows=(1,), nan_logged=True):
    from kwaiformers.data.schema import CONTINUOUS_FEATURES, FEEDBACK_LABELS, PAD_CODE

    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        sids = torch.stack([torch.randint(0, k, (t,), generator=g) for k in LEVELS], -1)
        length = 0 if i in no_history_rows else int(torch.randint(1, t + 1, (1,), generator=g))
        mask = torch.arange(t) >= t - length
        sids[~mask] = PAD_CODE
        hl = 0 if i in no_history_rows else int(torch.randint(1, h + 1, (1,), generator=g))
        hd = torch.full((h,), math.nan)
        hp = torch.full((h,), math.nan)
        hd[h - hl:] = torch.rand(hl, generator=g) * 40 + 5
        hp[h - hl:] = hd[h - hl:] * torch.rand(hl, generator=g)
        dur = float(torch.rand(1, generator=g) * 40 + 5)
        rows.append({
            "user_static": [int(torch.randint(0, v, (1,), generator=g)) for v in USER_VOCAB],
            "short_sids": sids.tolist(), "short_mask": mask.tolist(),
            "short_feats": (torch.rand(t, len(CONTINUOUS_FEATURES), generator=g) * mask[:, None]).tolist(),
            "short_labels": torch.zeros(t, len(FEEDBACK_LABELS)).tolist(),
            "long_sids": sids.tolist(), "long_mask": mask.tolist(),
            "target_sids": [int(torch.randint(0, k, (1,), generator=g)) for k in LEVELS],
            "target_duration": dur,
            "target_play_time": dur * float(torch.rand(1, generator=g)),
            "target_is_negative": bool(i % 5 == 0),
            "target_logged_prob": math.nan if (nan_logged and i % 2) else 0.01,
            "history_durations": hd.tolist(), "history_play_times": hp.tolist(),
        })
    return rows


def _dataset(**kw):
    from datasets import Dataset

    return Dataset.from_list(_rows(**kw))


def _model(seed=0):
    from kwaiformers.models.onerec.item_index import SemanticIdIndex
    from kwaiformers.models.onerec_v2.configuration_onerec_v2 import OneRecV2Config
    from kwaiformers.models.onerec_v2.modeling_onerec_v2 import OneRecV2ForGenerativeRecommendation

    cfg = OneRecV2Config(user_feature_vocab_sizes=list(USER_VOCAB), num_sid_levels=3,
                         codebook_size=list(LEVELS), short_seq_len=4, long_seq_len=4, embed_dim=8,
                         hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_kv_groups=1,
                         intermediate_size=16)
    torch.manual_seed(seed)
    model = OneRecV2ForGenerativeRecommendation(cfg)
    g = torch.Generator().manual_seed(3)
    codes = torch.stack([torch.randint(0, k, (30,), generator=g) for k in LEVELS], -1)
    index = SemanticIdIndex.from_codes(codes, level_sizes=list(LEVELS))
    return model, index


def _pscore():
    from kwaiformers.rewards import PScoreConfig, PScoreModel

    torch.manual_seed(1)
    return PScoreModel(PScoreConfig(num_levels=3, codebook_size=list(LEVELS),
                                    user_feature_vocab_sizes=list(USER_VOCAB), hidden_size=8,
                                    tower_hidden_size=8))


def _common(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), max_steps=2, learning_rate=1e-2, report_to=[], use_cpu=True,
                bf16=False, logging_steps=1, save_strategy="no", disable_tqdm=True, seed=0)
    base.update(kw)
    return base


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_ecpo_trains_with_format_reward_and_sft(tmp_path):
    from kwaiformers.trainers.ecpo_config import ECPOConfig
    from kwaiformers.trainers.ecpo_trainer import ECPOTrainer

    model, index = _model()
    args = ECPOConfig(**_common(tmp_path), per_device_train_batch_size=8, num_generations=4,
                      format_reward_k=2, num_iterations=2, beam_size=6)
    tr = ECPOTrainer(model, reward_model=_pscore(), args=args, train_dataset=_dataset(), item_index=index)
    tr.train()
    assert tr.state.log_history[0].get("clip_ratio/region_mean") is not None
    logs = tr.state.log_history
    losses = _losses(tr)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    keys = set().union(*[set(h) for h in logs])
    for key in ("reward", "reward_std", "clip_ratio/region_mean", "legality", "ecpo/early_clip_frac",
                "sft_loss", "rl_loss", "format/selected_legal_frac"):
        assert key in keys, key


def test_gbpo_logged_and_hybrid_and_resume(tmp_path):
    from kwaiformers.trainers.gbpo_config import GBPOConfig
    from kwaiformers.trainers.gbpo_trainer import GBPOTrainer

    ds = _dataset()
    model, index = _model()
    args = GBPOConfig(**_common(tmp_path / "a", max_steps=4, save_strategy="steps", save_steps=2),
                      per_device_train_batch_size=8, dars_inclusive_threshold=True)
    tr = GBPOTrainer(model, args=args, train_dataset=ds, item_index=index)
    tr.train()
    full = _losses(tr)
    keys = set().union(*[set(h) for h in tr.state.log_history])
    for key in ("reward", "dars/positive_frac", "gbpo/bound_active_frac", "sft_loss"):
        assert key in keys, key
    assert all(math.isfinite(v) for v in full)
    # resume from checkpoint-2 in a fresh trainer: the next losses are the same
    model2, _ = _model(seed=5)
    tr2 = GBPOTrainer(model2, args=args, train_dataset=ds, item_index=index)
    tr2.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    resumed = _losses(tr2)[-2:]
    assert resumed == pytest.approx(full[2:], rel=1e-5, abs=1e-6)

    # hybrid: logged exposures + reward-model rollouts, token-level probabilities
    model3, _ = _model()
    args3 = GBPOConfig(**_common(tmp_path / "h"), per_device_train_batch_size=4, mode="hybrid",
                       num_generations=3, probability_level="token", rollout_loss="ecpo")
    tr3 = GBPOTrainer(model3, args=args3, train_dataset=ds, reward_model=_pscore(), item_index=index)
    tr3.train()
    keys = set().union(*[set(h) for h in tr3.state.log_history])
    assert {"rollout_loss", "legality", "rollout/reward"} <= keys
    assert all(math.isfinite(v) for v in _losses(tr3))


def test_bad_inputs_and_nan_rewards(tmp_path):
    from kwaiformers.trainers.ecpo_config import ECPOConfig
    from kwaiformers.trainers.ecpo_trainer import ECPOTrainer
    from kwaiformers.trainers.gbpo_config import GBPOConfig
    from kwaiformers.trainers.gbpo_trainer import GBPOTrainer

    model, index = _model()
    with pytest.raises(ValueError, match="per_device_train_batch_size must be >= 2"):
        GBPOConfig(**_common(tmp_path), per_device_train_batch_size=1)
    with pytest.raises(ValueError, match="beta must be 0"):
        ECPOConfig(**_common(tmp_path), per_device_train_batch_size=4, num_generations=2, beta=0.1)
    with pytest.raises(ValueError, match="needs a reward_model"):
        ECPOTrainer(model, args=ECPOConfig(**_common(tmp_path), per_device_train_batch_size=4,
                                           num_generations=2))
    args = GBPOConfig(**_common(tmp_path), per_device_train_batch_size=4)
    tr = GBPOTrainer(model, args=args, train_dataset=_dataset(n=4), item_index=index)
    tr.model.train()
    with pytest.raises(ValueError, match="empty batch"):
        tr._generate_and_score_completions([])
    rows = _rows(n=4)
    for r in rows:
        del r["history_durations"]
    with pytest.raises(ValueError, match="history_durations"):
        tr._generate_and_score_completions(rows)
    rows = _rows(n=4)
    del rows[0]["target_sids"]
    for r in rows:
        r.pop("target_sids", None)
    with pytest.raises(ValueError, match="target_sids"):
        tr._generate_and_score_completions(rows)
    # a batch where everyone lacks history and nobody disliked: A = 0 everywhere -> SFT only, finite
    rows = _rows(n=4, no_history_rows=(0, 1, 2, 3))
    for r in rows:
        r["target_is_negative"] = False
    inputs = tr._generate_and_score_completions(rows)
    assert (inputs["advantages"] == 0).all()
    loss = tr.compute_loss(tr.model, inputs)
    assert torch.isfinite(loss)
    # the logged-loss ablations (V2 gradient analysis) on a batch with +1/-1 advantages
    inputs = tr._generate_and_score_completions(_rows(n=8))
    assert (inputs["advantages"] != 0).any()
    for logged_loss in ("gbpo", "ecpo", "pg"):
        tr.args.logged_loss = logged_loss
        assert torch.isfinite(tr.compute_loss(tr.model, inputs))
    tr.args.logged_loss = "gbpo"

    # NaN rewards are dropped from the groups, never a NaN loss
    def nan_reward(batch, sids, legal):
        r = torch.rand(sids.shape[:2])
        r[0] = math.nan  # a whole group
        r[1, 0] = math.nan
        return r

    eargs = ECPOConfig(**_common(tmp_path / "e", max_steps=1), per_device_train_batch_size=8,
                       num_generations=4)
    tre = ECPOTrainer(model, reward_model=nan_reward, args=eargs, train_dataset=_dataset(n=8),
                      item_index=index)
    tre.train()
    assert all(math.isfinite(v) for v in _losses(tre))
    assert any("reward/nan_frac" in h and h["reward/nan_frac"] > 0 for h in tre.state.log_history)


def test_ecpo_resume_gives_same_next_loss(tmp_path):
    from kwaiformers.trainers.ecpo_config import ECPOConfig
    from kwaiformers.trainers.ecpo_trainer import ECPOTrainer

    ds = _dataset(n=8)
    model, index = _model()
    args = ECPOConfig(**_common(tmp_path, max_steps=2, save_strategy="steps", save_steps=1),
                      per_device_train_batch_size=8, num_generations=4, format_reward_k=1)
    tr = ECPOTrainer(model, reward_model=_pscore(), args=args, train_dataset=ds, item_index=index)
    tr.train()
    model2, _ = _model(seed=7)
    tr2 = ECPOTrainer(model2, reward_model=_pscore(), args=args, train_dataset=ds, item_index=index)
    tr2.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    assert _losses(tr2)[-1] == pytest.approx(_losses(tr)[-1], rel=1e-5, abs=1e-6)


def test_trl_private_api_pinned():
    """The GRPOTrainer internals we override or reuse (private API, TRL 1.16): fail loudly on change."""
    import inspect

    import trl
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    assert trl.__version__.startswith("1.16")
    for name in ("_generate_and_score_completions", "_compute_loss", "_prepare_inputs",
                 "_get_train_sampler", "_get_eval_sampler", "get_train_dataloader", "training_step"):
        assert callable(getattr(GRPOTrainer, name)), name
    assert list(inspect.signature(GRPOTrainer._compute_loss).parameters) == ["self", "model", "inputs"]
    assert list(inspect.signature(RepeatSampler.__init__).parameters)[1:] == [
        "data_source", "mini_repeat_count", "batch_size", "repeat_count", "shuffle", "seed"]


def test_gbpo_pi_old_is_sg_pi_unless_the_model_served_the_exposure(tmp_path):
    """V2 §3.1.2: the logged probability is pi_old only for exposures the model served;
    for everything else (a legacy policy's exposures) pi_old = sg(pi), i.e. ratio 1."""
    from kwaiformers.trainers.gbpo_config import GBPOConfig
    from kwaiformers.trainers.gbpo_trainer import GBPOTrainer
    from kwaiformers.trainers.onerec_rl_common import stack_collator

    rows = _rows(n=8, nan_logged=False)  # every row logs 0.01
    batch = stack_collator(rows)
    nan = GBPOTrainer.old_log_probs(batch)  # default "served", no served flag -> all sg(pi)
    assert torch.isnan(nan).all()
    served = torch.tensor([True, False] * 4)
    flagged = GBPOTrainer.old_log_probs({**batch, "target_served_by_model": served})
    assert torch.isnan(flagged[~served]).all()
    torch.testing.assert_close(flagged[served], torch.full((4,), math.log(0.01)))
    torch.testing.assert_close(GBPOTrainer.old_log_probs(batch, "logged"), torch.full((8,), math.log(0.01)))
    assert torch.isnan(GBPOTrainer.old_log_probs({**batch, "target_served_by_model": served}, "current")).all()
    with pytest.raises(ValueError, match="target_served_by_model"):
        GBPOTrainer.old_log_probs({**batch, "target_served_by_model": served[:3]})
    with pytest.raises(ValueError, match="old_policy_prob"):
        GBPOConfig(**_common(tmp_path), per_device_train_batch_size=8, old_policy_prob="legacy")
    # in training: the GBPO weight of a positive is pi / max(pi_old, sg pi) = 1 under sg(pi); with the
    # (legacy) 0.01 taken as pi_old it is pi / 0.01 < 1 -> a smaller RL loss magnitude
    from datasets import Dataset

    ds = Dataset.from_list(rows)
    rl = {}
    for source in ("served", "logged"):
        model, index = _model()
        args = GBPOConfig(**_common(tmp_path / source, max_steps=1), per_device_train_batch_size=8,
                          dars_inclusive_threshold=True, dars_min_bucket_size=1, sft_weight=0.0,
                          old_policy_prob=source)
        tr = GBPOTrainer(model, args=args, train_dataset=ds, item_index=index)
        tr.train()
        rl[source] = [h["rl_loss"] for h in tr.state.log_history if "rl_loss" in h][0]
        frac = [h["gbpo/logged_prob_frac"] for h in tr.state.log_history if "gbpo/logged_prob_frac" in h][0]
        assert frac == (0.0 if source == "served" else 1.0)
    assert abs(rl["logged"]) < abs(rl["served"])


def test_rl_trainers_run_the_aux_free_moe_bias_update(tmp_path):
    from kwaiformers.models.onerec.modeling_moe import AuxFreeBiasUpdateCallback, moe_layers
    from kwaiformers.models.onerec_v2.configuration_onerec_v2 import OneRecV2Config
    from kwaiformers.models.onerec_v2.modeling_onerec_v2 import OneRecV2ForGenerativeRecommendation
    from kwaiformers.trainers.ecpo_config import ECPOConfig
    from kwaiformers.trainers.ecpo_trainer import ECPOTrainer
    from kwaiformers.trainers.gbpo_config import GBPOConfig
    from kwaiformers.trainers.gbpo_trainer import GBPOTrainer

    torch.manual_seed(0)
    cfg = OneRecV2Config(user_feature_vocab_sizes=list(USER_VOCAB), num_sid_levels=3,
                         codebook_size=list(LEVELS), short_seq_len=4, long_seq_len=4, embed_dim=8,
                         hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_kv_groups=1,
                         intermediate_size=16, use_moe=True, first_k_dense=1, num_routed_experts=4,
                         num_shared_experts=0, num_experts_per_tok=1, moe_intermediate_size=8,
                         aux_free_bias_update_speed=0.01)
    model = OneRecV2ForGenerativeRecommendation(cfg)
    _, index = _model()
    layers = moe_layers(model)
    assert layers and all(float(m.e_score_correction_bias.abs().sum()) == 0 for _, m in layers)
    args = GBPOConfig(**_common(tmp_path / "g"), per_device_train_batch_size=8, dars_min_bucket_size=1)
    tr = GBPOTrainer(model, args=args, train_dataset=_dataset(), item_index=index)
    assert sum(isinstance(c, AuxFreeBiasUpdateCallback) for c in tr.callback_handler.callbacks) == 1
    tr.train()
    # two steps of +-0.01 per expert (0 for an expert exactly at the mean load)
    bias = torch.cat([m.e_score_correction_bias for _, m in layers]).abs()
    assert (bias > 0).any() and (bias <= 0.02 + 1e-6).all()
    # ECPO too; a dense policy gets no callback
    ecpo_args = ECPOConfig(**_common(tmp_path / "e"), per_device_train_batch_size=8, num_generations=4)
    ec = ECPOTrainer(model, reward_model=_pscore(), args=ecpo_args, train_dataset=_dataset(), item_index=index)
    assert any(isinstance(c, AuxFreeBiasUpdateCallback) for c in ec.callback_handler.callbacks)
    dense, _ = _model()
    gd = GBPOTrainer(dense, args=args, train_dataset=_dataset(), item_index=index)
    assert not any(isinstance(c, AuxFreeBiasUpdateCallback) for c in gd.callback_handler.callbacks)
