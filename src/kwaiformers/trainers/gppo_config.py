"""Configuration of :class:`~kwaiformers.trainers.gppo_trainer.GPPOTrainer` (Klear-Reasoner GPPO)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

__all__ = ["GPPOConfig", "ZERO_STD_MODES"]

#: Values of :attr:`GPPOConfig.zero_std_groups`.
ZERO_STD_MODES: tuple[str, ...] = ("keep", "mask", "resample")


@dataclass
class GPPOConfig(GRPOConfig):
    r"""TRL's :class:`~trl.GRPOConfig` plus the Klear-Reasoner (arXiv 2508.07629) knobs.

    The clip range is TRL's: ``epsilon`` (= epsilon_low, 0.2) and ``epsilon_high`` (default here
    **0.28**, DAPO clip-higher as in Klear). The aggregation is TRL's ``loss_type``
    (``"dapo"``, ``"grpo"``, ``"bnpo"``, ``"dr_grpo"``, ``"luspo"``); only the per-token surrogate
    changes.

    **Token mean: dapo vs Klear.** Klear's ``token-mean`` (its verl ``dp_actor.py``) takes the
    token mean of each micro-batch on each rank, scales it by ``1 / GA`` (or, with the official
    scripts' ``use_dynamic_bsz``, by the micro-batch's share of the rank's mini-batch) and
    averages gradients over ranks. TRL's ``"bnpo"`` has that structure: the token mean of each
    device's micro-batch, divided by ``gradient_accumulation_steps``, averaged over devices by
    DDP; on one device with ``gradient_accumulation_steps=1`` it is exactly each optimizer step's
    token mean. TRL's ``"dapo"`` instead divides every step by the rollout's *average* tokens per
    step over all devices (``num_items_in_batch`` of the whole generation batch x
    ``gradient_accumulation_steps / steps_per_generation``): with one optimizer step per rollout
    it is the step's global token mean, but with several (``steps_per_generation > GA``, as in
    Klear's recipes) a step whose completions are longer than average gets a larger loss scale.
    The Klear recipes therefore use ``loss_type="bnpo"`` (the math recipe with GA 1). Neither
    reproduces the official micro-batches bit for bit: Klear packs them by a token budget
    (``ppo_max_token_len_per_gpu``) on its own many-GPU, sequence-parallel layout.

    **Off-policy matters.** With TRL's defaults (``num_iterations=1`` and
    ``steps_per_generation == gradient_accumulation_steps``) the old log-probs are the current
    ones, the ratio is identically 1, no token is ever clipped and GPPO *equals* GRPO. Klear
    takes several optimizer steps per rollout batch (8 for math, 4 for code): set
    ``steps_per_generation = k * gradient_accumulation_steps`` (or ``num_iterations > 1``),
    as the recipes in ``trainers/configs/klear_gppo_*.yaml`` do.

    Parameters:
        gppo_beta_low: gradient scale beta_1 of clip-low tokens (A<0, r<1-eps_low); Klear 1.0,
            CE-GPPO tunes it below 1 to regulate entropy.
        gppo_beta_high: gradient scale beta_2 of clip-high tokens (A>0, r>1+eps_high); Klear 1.0.
        dual_clip_c: dual-clip constant c > 1 for negative advantages (Klear: 10.0), or ``None``.
        positive_nll_coef: coefficient of Klear's NLL ("SFT") loss on positive completions
            (Klear: 0.1; 0 disables it). The NLL is a token mean over the positive completions of
            the micro-batch, like Klear's ``positive_loss``.
        positive_reward_threshold: a completion is positive when its (weighted) reward is
            ``>=`` this value, i.e. the reward's maximum (Klear: a correct answer / all sampled
            tests passed, reward 1.0).
        zero_std_groups: what to do with groups whose rewards are all equal (advantage 0, no
            learning signal): ``"keep"`` (TRL's behaviour), ``"mask"`` (drop them from the loss,
            the batch shrinks; Klear's ``max_num_gen_batches=1``), or ``"resample"`` (DAPO
            dynamic sampling: draw more prompts, keep groups with reward std > 0 and refill the
            batch, for at most ``dynamic_sampling_max_rounds`` extra generation rounds; whatever is
            still missing stays masked, and the trainer logs what happened).
        dynamic_sampling_max_rounds: cap on the extra generation rounds per batch (>= 0).
        dynamic_sampling_oversample: each refill round draws ``ceil(missing_groups * factor)``
            prompts (Klear generates 2x the prompts it trains on).
        zero_std_tolerance: a group's reward std ``<=`` this counts as zero.
    """

    epsilon_high: float | None = field(
        default=0.28,
        metadata={"help": "Upper clip epsilon (Klear / DAPO clip-higher: 0.28)."},
    )
    gppo_beta_low: float = field(
        default=1.0, metadata={"help": "Gradient scale of clip-low tokens (CE-GPPO beta_1)."}
    )
    gppo_beta_high: float = field(
        default=1.0, metadata={"help": "Gradient scale of clip-high tokens (CE-GPPO beta_2)."}
    )
    dual_clip_c: float | None = field(
        default=None, metadata={"help": "Dual-clip constant c > 1 for A < 0 (Klear: 10)."}
    )
    positive_nll_coef: float = field(
        default=0.0, metadata={"help": "Coefficient of the NLL loss on positive completions."}
    )
    positive_reward_threshold: float = field(
        default=1.0, metadata={"help": "A completion is positive when reward >= this value."}
    )
    zero_std_groups: str = field(
        default="keep",
        metadata={"help": "Zero-std group handling: 'keep', 'mask' or 'resample'.",
                  "choices": list(ZERO_STD_MODES)},
    )
    dynamic_sampling_max_rounds: int = field(
        default=4, metadata={"help": "Max extra generation rounds per batch when resampling."}
    )
    dynamic_sampling_oversample: float = field(
        default=2.0, metadata={"help": "Prompts drawn per refill round / missing groups."}
    )
    zero_std_tolerance: float = field(
        default=1e-6, metadata={"help": "Reward std <= this counts as zero."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.gppo_beta_low >= 0 and self.gppo_beta_high >= 0):
            raise ValueError(
                f"gppo_beta_low and gppo_beta_high must be >= 0, got {self.gppo_beta_low}, "
                f"{self.gppo_beta_high}"
            )
        if self.dual_clip_c is not None and not self.dual_clip_c > 1.0:
            raise ValueError(f"dual_clip_c must be > 1 or None, got {self.dual_clip_c}")
        if self.positive_nll_coef < 0:
            raise ValueError(f"positive_nll_coef must be >= 0, got {self.positive_nll_coef}")
        if self.zero_std_groups not in ZERO_STD_MODES:
            raise ValueError(
                f"zero_std_groups must be one of {ZERO_STD_MODES}, got {self.zero_std_groups!r}"
            )
        if not isinstance(self.dynamic_sampling_max_rounds, int) or self.dynamic_sampling_max_rounds < 0:
            raise ValueError(
                "dynamic_sampling_max_rounds must be an int >= 0, got "
                f"{self.dynamic_sampling_max_rounds!r}"
            )
        if not self.dynamic_sampling_oversample >= 1.0:
            raise ValueError(
                f"dynamic_sampling_oversample must be >= 1, got {self.dynamic_sampling_oversample}"
            )
        if not self.zero_std_tolerance >= 0:
            raise ValueError(f"zero_std_tolerance must be >= 0, got {self.zero_std_tolerance}")
