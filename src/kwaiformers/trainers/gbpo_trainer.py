"""GBPO on logged exposures with duration-aware rewards (OneRec-V2 §3), as a ``trl.GRPOTrainer``
subclass; plus the hybrid mode with reward-model rollouts (V2 Table 7).

Per generation batch of logged exposures (real user feedback):

* DARS advantages (:func:`~kwaiformers.rewards.duration_aware_advantages`): +1 for the batch's
  top-quantile play-time percentiles within the user's own duration bucket, -1 on explicit
  negatives (``target_is_negative``, e.g. KuaiRand ``is_hate``), 0 (filtered out) otherwise;
* ``pi_old`` = the logged generation probability (``target_logged_prob``) when the model itself
  served the exposure (``target_served_by_model``), ``sg(pi)`` for every other exposure (V2
  §3.1.2; ``GBPOConfig.old_policy_prob``);
* loss = ``rl_weight`` x mean over exposures with A != 0 of :func:`~kwaiformers.trainers.losses.
  gbpo_loss` + ``sft_weight`` x the NTP loss on the exposures kept by the RSFT filter;
* hybrid: ``num_generations`` beam-search rollouts per exposure's user, scored by the reward model,
  group-normalised advantages, GBPO (or ECPO) on them as an independent sample set, weighted by
  ``rollout_weight``.

Users with no history get ``q = NaN`` in DARS (never positive; negatives still count); rows whose
advantage is 0 only feed the SFT term. See :mod:`kwaiformers.trainers.onerec_rl_common` for what
of ``GRPOTrainer`` is reused and what cannot be. Metrics: ``reward`` (mean DARS advantage),
``dars/positive_frac``, ``dars/negative_frac``, ``dars/tau``, ``gbpo/bound_active_frac``,
``gbpo/logged_prob_frac``, ``rl_loss``, ``sft_loss`` and, in hybrid mode, ``rollout/reward``,
``legality``, ``rollout_loss``.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

from kwaiformers.rewards.dars import duration_aware_advantages

from .gbpo_config import GBPOConfig
from .losses import ecpo_loss, gbpo_loss
from .onerec_rl_common import OneRecRLTrainerMixin

__all__ = ["GBPOTrainer"]

_DARS_KEYS = ("target_play_time", "target_duration", "history_durations", "history_play_times")


class GBPOTrainer(OneRecRLTrainerMixin, GRPOTrainer):
    """GBPO with DARS on logged exposures (+ hybrid rollouts); see the module docstring.

    Args:
        model: a OneRec generative recommender (``sid_log_probs`` + ``recommend``) or its path.
        args: :class:`GBPOConfig`.
        train_dataset: map-style dataset of logged exposures; the collated batch must carry
            ``target_play_time``, ``target_duration``, ``history_durations`` and
            ``history_play_times`` (NaN-padded), optionally ``target_is_negative`` and
            ``target_logged_prob``.
        reward_model: needed in ``mode="hybrid"`` (as for :class:`ECPOTrainer`).
        data_collator, item_index: as for :class:`ECPOTrainer`.
    """

    _name = "GBPO"

    def __init__(
        self,
        model: Any,
        args: GBPOConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        data_collator: Any = None,
        reward_model: Any = None,
        item_index: Any = None,
        callbacks: Any = None,
        optimizers: tuple = (None, None),
    ) -> None:
        args = args if args is not None else GBPOConfig(output_dir="onerec-gbpo")
        if not isinstance(args, GBPOConfig):
            raise TypeError(f"args must be a GBPOConfig, got {type(args).__name__}")
        if args.mode == "hybrid" and reward_model is None:
            raise ValueError("GBPOConfig(mode='hybrid') needs a reward_model to score rollouts")
        self.dars = args.dars_config()
        self._setup(model, args, train_dataset, eval_dataset, data_collator, reward_model,
                    item_index, callbacks, optimizers)

    def _group_size(self, train: bool) -> int:
        return 1  # rows are single logged exposures: no repetition inside a generation batch

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        args: GBPOConfig = self.args
        batch = self._collate(inputs)
        missing = [k for k in _DARS_KEYS if k not in batch]
        if missing:
            raise ValueError(
                f"GBPO with duration-aware rewards needs batch keys {missing} (see "
                "kwaiformers.data.schema: target play time/duration and the user's history)"
            )
        n = batch["target_sids"].shape[0]
        neg = batch.get("target_is_negative")
        # DARS' threshold is a quantile of the whole (global) batch: computed on every process'
        # rows, then this process' advantages are taken
        hist = [self.accelerator.pad_across_processes(batch[k].float(), dim=1, pad_index=float("nan"))
                for k in ("history_durations", "history_play_times")]
        dars = duration_aware_advantages(
            durations=self._gather_rows(batch["target_duration"].float()),
            play_times=self._gather_rows(batch["target_play_time"].float()),
            history_durations=self._gather_rows(hist[0]),
            history_play_times=self._gather_rows(hist[1]),
            negatives=self._gather_rows(neg.bool()) if neg is not None else None,
            config=self.dars,
            return_details=True,
        )
        old_item = self.old_log_probs(batch, args.old_policy_prob)
        sft = self._sft_mask(batch, args.sft_filter_quantile) if args.sft_weight > 0 else torch.zeros(
            n, dtype=torch.bool, device=batch["target_sids"].device
        )
        out = {
            **self._ctx(batch),
            "advantages": self._local_rows(dars.advantages, n).to(batch["target_sids"].device),
            "old_logps": old_item,
            "sft_mask": sft,
        }
        self._log_metric("reward", self._local_rows(dars.advantages, n).mean())
        self._log_metric("dars/positive_frac", dars.positive_frac)
        self._log_metric("dars/negative_frac", dars.negative_frac)
        self._log_metric("dars/tau", dars.threshold)
        self._log_metric("gbpo/logged_prob_frac", (~torch.isnan(old_item)).float().mean())
        if args.mode == "hybrid":
            g = self.num_generations
            sids, old, legal = self._rollouts(batch, g, args.beam_size, args.constrained_rollouts)
            rewards = self._score_rollouts(batch, sids, legal, None)
            adv, valid = self.group_advantages(rewards, args.scale_rewards, gather=self._gather_rows)
            out.update(rollout_sids=sids, rollout_old_logps=old, rollout_advantages=adv, rollout_mask=valid)
            finite = torch.isfinite(rewards)
            self._log_metric("rollout/reward", rewards[finite].mean() if finite.any() else float("nan"))
            self._log_metric("legality", legal.float().mean())
        return out

    @staticmethod
    def old_log_probs(batch: dict[str, torch.Tensor], source: str = "served") -> torch.Tensor:
        """Item-level ``log pi_old`` per logged exposure; NaN means ``sg(pi)`` (see
        ``GBPOConfig.old_policy_prob``: ``"served"`` keeps ``target_logged_prob`` only where
        ``target_served_by_model`` is True)."""
        n = batch["target_sids"].shape[0]
        device = batch["target_sids"].device
        nan = torch.full((n,), float("nan"), device=device)
        logged = batch.get("target_logged_prob")
        if source == "current" or logged is None:
            return nan
        lp = logged.float()
        bad = (lp <= 0) | (lp > 1)
        if bad.any():
            raise ValueError(f"target_logged_prob must be in (0, 1] or NaN, got e.g. {lp[bad][0].item()}")
        old = torch.log(lp)  # NaN stays NaN -> sg(pi)
        if source == "logged":
            return old
        if source != "served":
            raise ValueError(f"old_policy_prob must be 'served', 'logged' or 'current', got {source!r}")
        served = batch.get("target_served_by_model")
        if served is None:
            return nan
        if served.shape != (n,):
            raise ValueError(f"target_served_by_model must be a BoolTensor[{n}], got {tuple(served.shape)}")
        return torch.where(served.bool(), old, nan)

    def _compute_loss(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        args: GBPOConfig = self.args
        batch = self._unctx(inputs)
        policy = self._policy()
        level = args.probability_level
        adv = inputs["advantages"]
        keep = adv != 0
        loss = torch.zeros((), device=adv.device)
        rl = torch.zeros((), device=adv.device)
        bound = torch.zeros((), device=adv.device)
        if bool(keep.any()):
            sub = {k: v[keep] for k, v in batch.items()}
            logps_tok = policy.sid_log_probs(sub, sub["target_sids"][:, None, :])[:, 0]
            if level == "item":
                logps, old = logps_tok.sum(-1), inputs["old_logps"][keep]
            else:  # logged probabilities are item-level: per-token pi_old falls back to sg(pi)
                logps, old = logps_tok, None
            if args.logged_loss == "gbpo":
                per, info = gbpo_loss(logps=logps, old_logps=old, advantages=adv[keep], return_info=True)
                bound = info["bound_active"].float().reshape(len(per), -1).mean(-1).sum()
            elif args.logged_loss == "ecpo":
                per = ecpo_loss(logps=logps, old_logps=old, advantages=adv[keep],
                                epsilon=args.epsilon, delta=args.early_clip_delta)
            else:  # plain policy gradient at ratio 1 (the V2 gradient analysis' baseline)
                a = adv[keep] if logps.dim() == 1 else adv[keep][:, None]
                per = -a * torch.exp(logps - logps.detach())
            rl = self._reduce_loss(per).sum()
        rl = self._global_share(rl, keep)  # mean over the A != 0 rows of all processes
        if args.logged_loss == "gbpo" and bool(self._global_count(keep) > 0):
            self._log_metric("gbpo/bound_active_frac", self._global_share(bound, keep))
        loss = loss + args.rl_weight * rl
        self._log_metric("rl_loss", rl.detach())
        sft = torch.zeros((), device=adv.device)
        sft_mask = inputs["sft_mask"]
        if args.sft_weight > 0:
            if bool(sft_mask.any()):
                sft = model(**{k: v[sft_mask] for k, v in batch.items()}).loss * sft_mask.sum()
            sft = self._global_share(sft, sft_mask)  # mean over the SFT rows of all processes
            loss = loss + args.sft_weight * sft
        self._log_metric("sft_loss", sft.detach())
        if args.mode == "hybrid":
            sids = inputs["rollout_sids"]
            lp = policy.sid_log_probs(batch, sids)  # [N, G, L]
            logps, old = self._token_or_item(lp, level), self._token_or_item(inputs["rollout_old_logps"], level)
            radv = inputs["rollout_advantages"]
            if args.rollout_loss == "gbpo":
                per = gbpo_loss(logps=logps, old_logps=old, advantages=radv)
            else:
                per = ecpo_loss(logps=logps, old_logps=old, advantages=radv,
                                epsilon=args.epsilon, delta=args.early_clip_delta)
            rloss = self._global_masked_mean(self._reduce_loss(per), inputs["rollout_mask"])
            loss = loss + args.rollout_weight * rloss
            self._log_metric("rollout_loss", rloss.detach())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"GBPO loss is not finite ({loss.item()}); check the model outputs")
        if not loss.requires_grad:  # nothing to learn from in this micro-batch (all A = 0, no SFT)
            loss = loss + 0.0 * sum(p.sum() for p in model.parameters() if p.requires_grad)
        return self._ga_scale(loss)
