"""Configuration of :class:`~kwaiformers.trainers.gbpo_trainer.GBPOTrainer` (OneRec-V2 §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trl import GRPOConfig

from .ecpo_config import _check_common


@dataclass
class GBPOConfig(GRPOConfig):
    """:class:`trl.GRPOConfig` plus OneRec-V2's alignment with real user feedback.

    A training row is one **logged exposure** (a user context and the item shown, with its play
    time, duration and feedback). ``per_device_train_batch_size`` counts exposures (>= 2: the DARS
    threshold ``tau_B`` is a quantile over the batch). ``num_generations`` is only used in the
    ``"hybrid"`` mode, as the number of reward-model rollouts per exposure's user; TRL's check that
    a generation batch holds whole prompt groups does not apply to logged rows and is skipped.

    Parameters:
        mode: ``"logged"`` (GBPO on logged exposures with DARS advantages, the deployed V2 way) or
            ``"hybrid"`` (plus reward-model rollouts as an independent sample set, V2 Table 7).
        dars_beta, dars_epsilon, dars_quantile, dars_history_window, dars_negative_signals,
        dars_empty_bucket_fallback, dars_min_bucket_size, dars_inclusive_threshold: the
            :class:`~kwaiformers.rewards.dars.DARSConfig` fields (documented there).
        probability_level: ``"item"`` (default) or ``"token"``; with ``"token"`` the logged
            (item-level) generation probability cannot be split over levels, so ``pi_old`` falls
            back to ``sg(pi)`` per token.
        old_policy_prob: where ``pi_old`` of a logged exposure comes from. ``"served"`` (default,
            the V2 rule): the logged generation probability ``target_logged_prob`` only for
            exposures the model itself served (batch key ``target_served_by_model`` True),
            ``sg(pi)`` for every other exposure (another pipeline's, or no flag in the batch);
            ``"logged"``: any logged probability is taken as the old policy's (only right when the
            logs hold nothing but this model's probabilities); ``"current"``: ``sg(pi)`` always.
            A legacy logging policy's probability is not the model's ``pi_old``: on the simulator
            it is ~10x the model's ``pi`` and shrinks the RL term accordingly.
        rl_weight: weight of the GBPO term on logged exposures.
        logged_loss: loss on logged exposures: ``"gbpo"`` (default), or the ablations of the V2
            gradient analysis ``"ecpo"`` (early-clipped PPO with the logged ``pi_old``) and
            ``"pg"`` (plain policy gradient at ratio 1, ``-A pi / sg(pi)``).
        sft_weight: weight of the joint NTP term (0: off).
        sft_filter_quantile: drop exposures below this play-time quantile from the SFT term
            (default 0: keep all. A play-time filter is itself an alignment method on play time --
            it keeps long videos and high true play time -- so it is off by default and, when
            used, reported as its own "filtered SFT" baseline; 0.5 is V1's RSFT).
        rollout_weight: weight of the hybrid rollout term.
        rollout_loss: loss on hybrid rollouts, ``"gbpo"`` or ``"ecpo"`` (the V2 report does not say
            which its reward-model arm used).
        early_clip_delta: ECPO margin when ``rollout_loss="ecpo"``.
        beam_size, constrained_rollouts: rollout search of the hybrid mode.
    """

    mode: Literal["logged", "hybrid"] = field(default="logged", metadata={"help": "'logged' or 'hybrid'."})
    dars_beta: float = 2.0
    dars_epsilon: float = 1e-6
    dars_quantile: float = 0.25
    dars_history_window: int | None = None
    dars_negative_signals: list[str] = field(default_factory=lambda: ["is_hate"])
    dars_empty_bucket_fallback: Literal["population", "user", "zero", "nan"] = "population"
    dars_min_bucket_size: int = 3
    dars_inclusive_threshold: bool = False
    probability_level: Literal["item", "token"] = "item"
    old_policy_prob: Literal["served", "logged", "current"] = "served"
    rl_weight: float = 1.0
    logged_loss: Literal["gbpo", "ecpo", "pg"] = "gbpo"
    sft_weight: float = 1.0
    sft_filter_quantile: float = 0.0
    rollout_weight: float = 1.0
    rollout_loss: Literal["gbpo", "ecpo"] = "gbpo"
    early_clip_delta: float = 0.1
    beam_size: int | None = None
    constrained_rollouts: bool = False

    def __post_init__(self) -> None:
        if self.per_device_train_batch_size < 2:
            raise ValueError(
                "GBPOConfig.per_device_train_batch_size must be >= 2: the DARS threshold tau_B is a "
                "quantile over the batch"
            )
        rollouts, rollouts_eval = self.num_generations, self.num_generations_eval
        # TRL checks that generation batches hold whole groups of `num_generations` rows; GBPO rows
        # are single exposures, so the check runs with a group of one per-device batch.
        self.num_generations = self.per_device_train_batch_size
        self.num_generations_eval = self.per_device_eval_batch_size
        try:
            super().__post_init__()
        finally:
            self.num_generations, self.num_generations_eval = rollouts, rollouts_eval
        _check_common(self)
        if self.mode not in ("logged", "hybrid"):
            raise ValueError(f"GBPOConfig.mode must be 'logged' or 'hybrid', got {self.mode!r}")
        if self.logged_loss not in ("gbpo", "ecpo", "pg"):
            raise ValueError(f"GBPOConfig.logged_loss must be 'gbpo', 'ecpo' or 'pg', got {self.logged_loss!r}")
        if self.old_policy_prob not in ("served", "logged", "current"):
            raise ValueError(
                f"GBPOConfig.old_policy_prob must be 'served', 'logged' or 'current', got {self.old_policy_prob!r}"
            )
        if self.rollout_loss not in ("gbpo", "ecpo"):
            raise ValueError(f"GBPOConfig.rollout_loss must be 'gbpo' or 'ecpo', got {self.rollout_loss!r}")
        if self.mode == "hybrid" and self.num_generations < 2:
            raise ValueError("hybrid mode needs num_generations >= 2 rollouts per user")
        if self.beta != 0.0:
            raise ValueError("GBPOConfig.beta must be 0: GBPO has no KL term (OneRec-V2 §3.1.2)")
        self.dars_negative_signals = list(self.dars_negative_signals)
        self.dars_config()  # validate

    def dars_config(self):
        """The :class:`~kwaiformers.rewards.dars.DARSConfig` of these settings."""
        from kwaiformers.rewards.dars import DARSConfig

        return DARSConfig(
            beta=self.dars_beta,
            epsilon=self.dars_epsilon,
            quantile=self.dars_quantile,
            history_window=self.dars_history_window,
            negative_signals=tuple(self.dars_negative_signals),
            empty_bucket_fallback=self.dars_empty_bucket_fallback,
            min_bucket_size=self.dars_min_bucket_size,
            inclusive_threshold=self.dars_inclusive_threshold,
        )
