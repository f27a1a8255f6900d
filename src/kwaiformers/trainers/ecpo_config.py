"""Configuration of :class:`~kwaiformers.trainers.ecpo_trainer.ECPOTrainer` (OneRec TR §2.4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trl import GRPOConfig


@dataclass
class ECPOConfig(GRPOConfig):
    """:class:`trl.GRPOConfig` plus the knobs of Early-Clipped GRPO for generative recommenders.

    TRL's knobs keep their meaning where they apply: ``num_generations`` is the group size ``G``
    (rollouts per user, the TR's rule of thumb is 4x the number of items served),
    ``per_device_train_batch_size`` / ``generation_batch_size`` count *rollouts* (rows), as in
    TRL, so a generation batch holds ``generation_batch_size / G`` users; ``epsilon`` is the PPO
    clip; ``scale_rewards`` the advantage normalisation (``"group"``: the TR's
    ``(r - mean) / std``); ``num_iterations`` / ``steps_per_generation`` the reuse of rollouts
    (ratios differ from 1 only then). ``beta`` must stay 0 (ECPO has no KL term; RSFT keeps the
    policy stable) and TRL's ``delta`` (two-sided clip) must stay ``None``: ECPO's own margin is
    ``early_clip_delta``. ``loss_type``, sampling knobs (temperature, top-p, vLLM) do not apply:
    rollouts are beam search over semantic IDs (TR Table 8: beam search beats sampling).

    Parameters:
        early_clip_delta: ``delta`` of ``pi'_old = max(sg(pi) / (1 + eps + delta), pi_old)``
            (TR: 0.1).
        beam_size: beam width of the rollout search (``None``: ``num_generations``).
        constrained_rollouts: restrict rollouts to legal items with the item-index trie. The TR
            does not constrain (legality is taught by the format reward), so the default is False.
        probability_level: ``"item"`` (ratio of item probabilities, product over the code levels;
            default) or ``"token"`` (one ratio per level, loss averaged over levels).
        illegal_reward: reward given to rollouts that map to no item (``None``: the reward model's
            score is kept).
        format_reward_k: ``K`` of the format reward (TR §2.4.2: pick K of the G rollouts at
            random; legal ones get A=1, illegal ones are dropped); 0 disables it.
        format_reward_weight: weight of the format-reward ECPO term.
        sft_weight: weight of the joint NTP (RSFT) term on the users' logged targets (0: off).
        sft_filter_quantile: RSFT filter: drop targets whose play time is below this quantile of
            the batch (TR §3.5: the bottom 50%, i.e. 0.5); default 0 keeps all (the filter alone
            raises play time, so comparisons name it as its own baseline); ignored without
            ``target_play_time``.
    """

    early_clip_delta: float = field(default=0.1, metadata={"help": "ECPO early-clip margin delta."})
    beam_size: int | None = field(default=None, metadata={"help": "Rollout beam width."})
    constrained_rollouts: bool = field(default=False, metadata={"help": "Trie-constrained rollouts."})
    probability_level: Literal["item", "token"] = field(
        default="item", metadata={"help": "'item' (product over levels) or 'token' ratios."}
    )
    illegal_reward: float | None = field(default=None, metadata={"help": "Reward of illegal rollouts."})
    format_reward_k: int = field(default=0, metadata={"help": "K of the format reward (0: off)."})
    format_reward_weight: float = field(default=1.0, metadata={"help": "Format-reward weight."})
    sft_weight: float = field(default=1.0, metadata={"help": "Joint NTP (RSFT) weight."})
    sft_filter_quantile: float = field(default=0.0, metadata={"help": "RSFT play-time filter."})

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_common(self)
        if self.beta != 0.0:
            raise ValueError("ECPOConfig.beta must be 0: ECPO has no KL term (OneRec TR §2.4.1)")
        if self.format_reward_k < 0 or self.format_reward_k > self.num_generations:
            raise ValueError(
                f"ECPOConfig.format_reward_k must be in [0, num_generations={self.num_generations}]"
                f", got {self.format_reward_k}"
            )
        if self.beam_size is not None and self.beam_size < self.num_generations:
            raise ValueError(
                f"ECPOConfig.beam_size ({self.beam_size}) must be >= num_generations "
                f"({self.num_generations})"
            )


def _check_common(cfg) -> None:
    """Checks shared by ECPOConfig and GBPOConfig."""
    if cfg.delta is not None:
        raise ValueError(
            "TRL's `delta` (two-sided clip) is not used by OneRec trainers; ECPO's margin is "
            "`early_clip_delta`"
        )
    if not cfg.early_clip_delta > 0:
        raise ValueError(f"early_clip_delta must be > 0, got {cfg.early_clip_delta}")
    if cfg.probability_level not in ("item", "token"):
        raise ValueError(f"probability_level must be 'item' or 'token', got {cfg.probability_level!r}")
    if not 0.0 <= cfg.sft_filter_quantile < 1.0:
        raise ValueError(f"sft_filter_quantile must be in [0, 1), got {cfg.sft_filter_quantile}")
    if cfg.sft_weight < 0:
        raise ValueError(f"sft_weight must be >= 0, got {cfg.sft_weight}")
