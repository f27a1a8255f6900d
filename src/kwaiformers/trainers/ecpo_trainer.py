"""ECPO: Early-Clipped GRPO for generative recommenders (OneRec Technical Report §2.4), as a
``trl.GRPOTrainer`` subclass.

Per generation batch: the current policy beam-searches ``G = num_generations`` items per user
(on-policy, TR Table 9), the reward model (P-Score) scores them, advantages are group-normalised
``(r - mean) / std``, and the loss is

    L = mean_i ECPO(o_i)  +  w_fmt * mean_{selected legal} ECPO(A=1)  +  w_sft * L_NTP(filtered)

with :func:`~kwaiformers.trainers.losses.ecpo_loss` (``pi'_old = max(sg(pi)/(1+eps+delta),
pi_old)``), the optional format reward (TR §2.4.2: K of G rollouts at random, legal -> A=1,
illegal dropped) and the joint RSFT next-token term on the users' logged targets whose play time
is in the top ``1 - sft_filter_quantile`` of the batch. No KL (beta = 0).

See :mod:`kwaiformers.trainers.onerec_rl_common` for which parts of ``GRPOTrainer`` are reused and
which cannot be (text generation, tokenizer-bound ``__init__``, LM-head log-probs) and why.
Logged metrics: TRL's ``reward``, ``reward_std``, ``frac_reward_zero_std``,
``clip_ratio/{low_mean,high_mean,region_mean}``, plus ``legality``, ``ecpo/early_clip_frac``,
``reward/nan_frac``, ``format/selected_legal_frac``, ``rl_loss``, ``sft_loss``.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

from .ecpo_config import ECPOConfig
from .losses import ecpo_loss
from .onerec_rl_common import OneRecRLTrainerMixin

__all__ = ["ECPOTrainer"]


class ECPOTrainer(OneRecRLTrainerMixin, GRPOTrainer):
    """On-policy ECPO with reward-model rollouts (see the module docstring).

    Args:
        model: a OneRec generative recommender (``sid_log_probs`` + ``recommend``) or its path.
        reward_model: a model with ``score(batch, sids [B, G, L]) -> [B, G]`` (e.g.
            :class:`~kwaiformers.rewards.PScoreModel`), a path to one, or a callable
            ``f(batch=..., sids=..., legal=...) -> [B, G]``. NaN rewards are dropped (advantage 0).
        args: :class:`ECPOConfig`.
        train_dataset: map-style dataset of user samples (rows the ``data_collator`` turns into
            the OneRec batch schema; ``target_sids`` is the logged target used by the SFT term).
        data_collator: rows -> schema batch, e.g. ``kwaiformers.data.collator.OneRecCollator``
            for :class:`~kwaiformers.data.samples.OneRecSampleBuilder` samples (default:
            :func:`~kwaiformers.trainers.onerec_rl_common.stack_collator` for pre-padded rows).
        item_index: the ``SemanticIdIndex`` (legality, constrained rollouts); default
            ``model.item_index``.
    """

    _name = "ECPO"

    def __init__(
        self,
        model: Any,
        reward_model: Any = None,
        args: ECPOConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        data_collator: Any = None,
        item_index: Any = None,
        callbacks: Any = None,
        optimizers: tuple = (None, None),
    ) -> None:
        args = args if args is not None else ECPOConfig(output_dir="onerec-ecpo")
        if not isinstance(args, ECPOConfig):
            raise TypeError(f"args must be an ECPOConfig, got {type(args).__name__}")
        if reward_model is None:
            raise ValueError("ECPOTrainer needs a reward_model to score its rollouts")
        self._setup(model, args, train_dataset, eval_dataset, data_collator, reward_model,
                    item_index, callbacks, optimizers)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        args: ECPOConfig = self.args
        mode = "train" if self.model.training else "eval"
        g = self.num_generations if mode == "train" else self.num_generations_eval
        if len(inputs) == 0:
            raise ValueError("empty batch: no rows to train on")
        if len(inputs) % g:
            raise ValueError(f"the generation batch ({len(inputs)} rows) must hold whole groups of {g}")
        users = self._collate(inputs[::g])  # RepeatSampler repeats each user g times in a row
        b = users["target_sids"].shape[0]
        sids, old, legal = self._rollouts(users, g, args.beam_size, args.constrained_rollouts)
        rewards = self._score_rollouts(users, sids, legal, args.illegal_reward)
        adv, valid = self.group_advantages(rewards, args.scale_rewards, gather=self._gather_rows)
        fmt_adv = torch.zeros_like(adv)
        fmt_mask = torch.zeros_like(valid)
        if args.format_reward_k > 0:
            from kwaiformers.rewards.format_reward import format_reward_advantages

            gen = torch.Generator().manual_seed(args.seed * 1_000_003 + self.state.global_step)
            # drawn for the global batch, then this process' rows: the same draws as one process
            everyone = self._gather_rows(legal)
            fmt_adv, fmt_mask = format_reward_advantages(everyone, args.format_reward_k, generator=gen)
            fmt_adv, fmt_mask = self._local_rows(fmt_adv, b), self._local_rows(fmt_mask, b)
        sft_user = self._sft_mask(users, args.sft_filter_quantile) if args.sft_weight > 0 else (
            torch.zeros(b, dtype=torch.bool, device=sids.device)
        )
        sft_mask = torch.zeros(b, g, dtype=torch.bool, device=sids.device)
        sft_mask[:, 0] = sft_user  # the SFT target counted once per user
        # metrics (TRL names where they apply), over the rewards of all processes as in TRL
        everyone = self._gather_rows(rewards)
        finite = torch.isfinite(everyone)
        self._log_metric("reward", everyone[finite].mean() if finite.any() else float("nan"))
        self._log_metric("reward_std", everyone[finite].std() if finite.sum() > 1 else float("nan"))
        std_g = torch.nan_to_num(everyone, nan=0.0).std(1)
        self._log_metric("frac_reward_zero_std", (std_g < 1e-6).float().mean())
        self._log_metric("reward/nan_frac", (~finite).float().mean())
        self._log_metric("legality", legal.float().mean())
        if args.format_reward_k > 0:
            self._log_metric("format/selected_legal_frac", fmt_mask.float().sum() / (b * args.format_reward_k))
        # one row per rollout, users repeated (the layout TRL's sampler produced)
        ctx = {k: v.repeat_interleave(g, 0) for k, v in users.items()}
        return {
            **self._ctx(ctx),
            "rollout_sids": sids.reshape(b * g, -1),
            "old_logps": old.reshape(b * g, -1),
            "advantages": adv.reshape(-1),
            "rl_mask": valid.reshape(-1),
            "format_advantages": fmt_adv.reshape(-1),
            "format_mask": fmt_mask.reshape(-1),
            "sft_mask": sft_mask.reshape(-1),
        }

    def _compute_loss(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        args: ECPOConfig = self.args
        batch = self._unctx(inputs)
        sids = inputs["rollout_sids"]
        policy = self._policy()
        logps_tok = policy.sid_log_probs(batch, sids[:, None, :])[:, 0]
        level = args.probability_level
        logps, old = self._token_or_item(logps_tok, level), self._token_or_item(inputs["old_logps"], level)
        per, info = ecpo_loss(logps=logps, old_logps=old, advantages=inputs["advantages"],
                              epsilon=args.epsilon, delta=args.early_clip_delta, return_info=True)
        rl_mask = inputs["rl_mask"]
        rl = self._global_masked_mean(self._reduce_loss(per), rl_mask)
        loss = rl
        if args.format_reward_k > 0:
            fmt_per = ecpo_loss(logps=logps, old_logps=old, advantages=inputs["format_advantages"],
                                epsilon=args.epsilon, delta=args.early_clip_delta)
            loss = loss + args.format_reward_weight * self._global_masked_mean(
                self._reduce_loss(fmt_per), inputs["format_mask"]
            )
        sft = torch.zeros((), device=logps.device)
        sft_mask = inputs["sft_mask"]
        if args.sft_weight > 0:
            n_local = sft_mask.sum()
            if bool(sft_mask.any()):
                sft = model(**{k: v[sft_mask] for k, v in batch.items()}).loss * n_local
            sft = self._global_share(sft, sft_mask)  # mean over the SFT rows of all processes
            loss = loss + args.sft_weight * sft
        # metrics
        m = rl_mask
        if level == "token":
            m = m[:, None].expand_as(info["clipped_low"])
        low, high = info["clipped_low"][m].float(), info["clipped_high"][m].float()
        if low.numel():
            self._log_metric("clip_ratio/low_mean", low.mean())
            self._log_metric("clip_ratio/high_mean", high.mean())
            self._log_metric("clip_ratio/region_mean", (low + high).clamp(max=1).mean())
            self._log_metric("ecpo/early_clip_frac", info["early_clipped"][m].float().mean())
        self._log_metric("rl_loss", rl.detach())
        self._log_metric("sft_loss", sft.detach())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"ECPO loss is not finite ({loss.item()}); check the model outputs")
        return self._ga_scale(loss)
