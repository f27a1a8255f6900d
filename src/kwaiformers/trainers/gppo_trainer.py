"""GPPO (Klear-Reasoner, arXiv 2508.07629) as a subclass of TRL's :class:`~trl.GRPOTrainer`.

What changes with respect to GRPO (everything else, generation, rewards, advantages, logging, is
TRL's):

- the per-token surrogate is :func:`kwaiformers.trainers.losses.gppo_per_token_loss`: same forward
  value as PPO/DAPO clip-higher, but tokens in the clipped regions keep a bounded gradient
  ``beta*(1 +- eps)*A`` (Eq. 7), with an optional dual clip ``c`` for negative advantages;
- Klear's NLL term on positive completions (``positive_nll_coef``);
- zero-variance groups (all rewards equal: advantage 0) are kept, masked, or replaced by **dynamic
  sampling** (DAPO; oversample prompts, keep std > 0 groups, refill, cap on rounds), which TRL
  1.16 lacks (trl issue #3708).

The overrides follow TRL's own extension pattern (``trl/experimental/gmpo``): ``_compute_loss``,
``_calculate_rewards`` and ``_generate_and_score_completions``, private API pinned to
``trl==1.16.*`` and guarded by ``tests/test_gppo_trainer.py::test_trl_private_api_contract``.

**With TRL's defaults the importance ratio is identically 1 and GPPO equals GRPO**: see
:class:`~kwaiformers.trainers.gppo_config.GPPOConfig` and the recipes, which set
``steps_per_generation`` so updates are off-policy as in Klear.
"""

from __future__ import annotations

import logging
import math
import random
import textwrap
from typing import Any

import torch
from trl import GRPOTrainer
from trl.trainer.utils import nanmax, nanmin, nanstd

from .gppo_config import GPPOConfig
from .losses import gppo_per_token_loss

__all__ = ["GPPOTrainer", "SUPPORTED_LOSS_TYPES"]

logger = logging.getLogger(__name__)

#: TRL ``loss_type`` values whose *aggregation* GPPO reuses (the surrogate is always GPPO's).
SUPPORTED_LOSS_TYPES: tuple[str, ...] = ("dapo", "grpo", "bnpo", "dr_grpo", "luspo")

_MULTIMODAL_KEYS = (
    "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
    "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids",
)


def _check_config(args: GPPOConfig) -> None:
    """Reject, at init, the TRL options this trainer does not implement."""
    if args.loss_type not in SUPPORTED_LOSS_TYPES:
        raise NotImplementedError(
            f"GPPOTrainer replaces the clipped surrogate and reuses the aggregation of loss_type in "
            f"{SUPPORTED_LOSS_TYPES}; loss_type={args.loss_type!r} defines its own surrogate and is "
            "not supported (use trl.GRPOTrainer for it)"
        )
    if args.delta is not None:
        raise NotImplementedError("GPPOTrainer does not support the two-sided clip `delta`; "
                                  "use dual_clip_c for negative advantages instead")
    if args.entropy_coef != 0.0 or args.use_adaptive_entropy:
        raise NotImplementedError(
            "GPPOTrainer does not support the entropy bonus (entropy_coef / use_adaptive_entropy); "
            "Klear trains without one (use gppo_beta_low to regulate entropy, as CE-GPPO)"
        )


class GPPOTrainer(GRPOTrainer):
    """Gradient-Preserving clipping Policy Optimization trainer (Klear-Reasoner).

    Same constructor as :class:`trl.GRPOTrainer`; ``args`` must be a
    :class:`~kwaiformers.trainers.gppo_config.GPPOConfig`. Supported TRL options: token/sequence
    importance level, KL ``beta`` (with ``use_bias_correction_kl``), PEFT, vLLM with importance
    sampling correction (the IS ratio multiplies the GPPO per-token loss, as in GRPO),
    ``top_entropy_quantile``, ``off_policy_mask_threshold``, ``mask_truncated_completions``,
    tools, MoE aux loss, multi-process training. Not supported (``NotImplementedError`` at init):
    loss types with their own surrogate (``cispo``, ``sapo``, ``vespo``), ``delta``, the entropy
    bonus; and, for ``zero_std_groups="resample"`` only, iterable datasets, multimodal
    processors, environments, and several processes whose generation batches
    (``per_device_train_batch_size * steps_per_generation``) are not whole groups.

    Extra metrics: ``gppo/kept_group_frac`` (fraction of freshly generated groups whose reward
    std > 0), ``gppo/trained_group_frac`` (fraction of the batch's groups that carry loss),
    ``gppo/dynamic_sampling_rounds``, ``gppo/dual_clip_ratio``, ``gppo/positive_nll``.
    """

    _tag_names = ["trl", "gppo", "kwaiformers"]
    _name = "GPPO"
    _paper = {
        "title": "Klear-Reasoner: Advancing Reasoning Capability via Gradient-Preserving Clipping "
        "Policy Optimization",
        "id": "2508.07629",
        "citation": textwrap.dedent("""\
            @article{su2025klearreasoner,
                title        = {{Klear-Reasoner: Advancing Reasoning Capability via Gradient-Preserving Clipping Policy Optimization}},
                author       = {Zhenpeng Su and others},
                year         = 2025,
                eprint       = {arXiv:2508.07629},
            }"""),  # noqa: E501
    }

    def __init__(self, model: Any, reward_funcs: Any = None, args: GPPOConfig | None = None,
                 train_dataset: Any = None, *pos: Any, **kwargs: Any) -> None:
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "")
            args = GPPOConfig(output_dir=f"{str(name).split('/')[-1] or 'model'}-GPPO")
        if not isinstance(args, GPPOConfig):
            raise TypeError(f"args must be a GPPOConfig, got {type(args).__name__}")
        _check_config(args)
        super().__init__(model, reward_funcs, args, train_dataset, *pos, **kwargs)
        if args.zero_std_groups == "resample":
            self._check_resample_supported()
        # each process draws its own refill prompts (process 0: the single-process stream)
        self._gppo_rng = random.Random(args.seed + 1_000_003 * self.accelerator.process_index)
        self._gppo_last_rewards: torch.Tensor | None = None
        self._gppo_nested = False

    # ------------------------------------------------------------------ dynamic sampling set-up
    def _check_resample_supported(self) -> None:
        from torch.utils.data import IterableDataset
        from transformers import ProcessorMixin

        problems = []
        per_process = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if self.accelerator.num_processes > 1 and per_process % self.num_generations:
            problems.append(
                f"several processes with groups that straddle them (per_device_train_batch_size x "
                f"steps_per_generation = {per_process} rows per process is not a multiple of "
                f"num_generations={self.num_generations})")
        if self.train_dataset is None or isinstance(self.train_dataset, IterableDataset) or not hasattr(
            self.train_dataset, "__getitem__"
        ):
            problems.append("a train_dataset that cannot be indexed (an IterableDataset)")
        if isinstance(self.processing_class, ProcessorMixin):
            problems.append("multimodal processors")
        if getattr(self, "environment_factories", None) is not None:
            problems.append("environment_factory")
        if problems:
            raise NotImplementedError(
                "zero_std_groups='resample' (dynamic sampling) does not support " + "; ".join(problems)
            )

    # ------------------------------------------------------------------ rewards bookkeeping
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gppo_last_rewards = rewards_per_func  # gathered across processes, global row order
        return rewards_per_func

    def _reward_stats(self, num_generations: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keep, positive) boolean masks over the *global* rows of the last scored batch."""
        rewards_per_func = self._gppo_last_rewards
        if rewards_per_func is None:  # pragma: no cover - TRL always calls _calculate_rewards
            raise RuntimeError("no rewards recorded; GRPOTrainer's private API changed")
        weights = self.reward_weights.to(rewards_per_func.device)
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        rewards[unscorable] = torch.nan
        if num_generations > 1:
            std = nanstd(rewards.view(-1, num_generations), dim=1)
            keep_group = torch.nan_to_num(std, nan=0.0) > self.args.zero_std_tolerance
        else:
            keep_group = torch.ones(rewards.numel(), dtype=torch.bool, device=rewards.device)
        keep = keep_group.repeat_interleave(num_generations)
        positive = torch.nan_to_num(rewards, nan=-math.inf) >= self.args.positive_reward_threshold
        return keep, positive

    def _local(self, rows: torch.Tensor, n_local: int) -> torch.Tensor:
        start = self.accelerator.process_index * n_local
        return rows[start:start + n_local]

    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        output = super()._generate_and_score_completions(inputs)
        if self._gppo_nested:  # a refill round inside dynamic sampling: the caller post-processes
            return output
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        keep, positive = self._reward_stats(num_generations)
        n_local = len(inputs)
        keep_local, positive_local = self._local(keep, n_local), self._local(positive, n_local)
        strategy = self.args.zero_std_groups if mode == "train" else "keep"
        self._metrics[mode]["gppo/kept_group_frac"].append(keep.float().mean().item())
        rounds = 0
        if strategy == "resample" and self._on_any_process(not bool(keep_local.all())):
            output, keep_local, positive_local, rounds = self._dynamic_sampling(
                inputs, output, keep_local, positive_local, num_generations
            )
        if strategy == "keep":
            keep_local = torch.ones_like(keep_local)
        device = output["completion_mask"].device
        output["gppo_keep"] = keep_local.to(device=device, dtype=torch.float32)
        output["gppo_positive"] = positive_local.to(device=device, dtype=torch.float32)
        if strategy != "keep":
            loss_mask = output["completion_mask"]
            if "tool_mask" in output:
                loss_mask = loss_mask * output["tool_mask"]
            local_items = (loss_mask * output["gppo_keep"].unsqueeze(1)).sum()
            output["num_items_in_batch"] = self.accelerator.gather(local_items).sum()
        trained = self.accelerator.gather(output["gppo_keep"]).mean().item()
        self._metrics[mode]["gppo/trained_group_frac"].append(trained)
        if strategy == "resample":
            self._metrics[mode]["gppo/dynamic_sampling_rounds"].append(float(rounds))
        return output

    def _on_any_process(self, flag: bool) -> bool:
        if self.accelerator.num_processes == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(t, reduction="sum")[0] > 0)

    def _max_over_processes(self, value: int) -> int:
        if self.accelerator.num_processes == 1:
            return value
        t = torch.tensor([float(value)], device=self.accelerator.device)
        return int(self.accelerator.gather(t).max())

    def _dynamic_sampling(self, inputs, output, keep, positive, num_generations):
        """DAPO dynamic sampling: refill zero-std groups with freshly generated groups of random
        training prompts, for at most ``dynamic_sampling_max_rounds`` rounds.

        Several processes: every process holds whole groups and refills its own; generation is
        collective (rewards are gathered), so all processes run the same rounds, each
        generating for the largest number of missing groups of any process (a process that is
        already full discards its extra groups)."""
        group_size = num_generations
        n_groups = len(inputs) // group_size
        kept_parts: list[tuple[dict, torch.Tensor, torch.Tensor]] = []
        orig_group_keep = keep.view(-1, group_size)[:, 0]
        kept_rows = torch.nonzero(keep, as_tuple=True)[0]
        kept_parts.append((output, kept_rows, positive[kept_rows]))
        have = int(orig_group_keep.sum())
        first_kept = have
        rounds, drawn = 0, 0
        dataset = self.train_dataset
        while rounds < self.args.dynamic_sampling_max_rounds:
            missing = n_groups - have
            need = self._max_over_processes(missing)
            if need == 0:
                break
            rounds += 1
            n_prompts = math.ceil(need * self.args.dynamic_sampling_oversample)
            drawn += n_prompts
            indices = [self._gppo_rng.randrange(len(dataset)) for _ in range(n_prompts)]
            new_inputs = [dict(dataset[i]) for i in indices for _ in range(group_size)]
            self._gppo_nested = True
            try:
                new_output = super()._generate_and_score_completions(new_inputs)
            finally:
                self._gppo_nested = False
            new_keep, new_positive = self._reward_stats(group_size)  # global rows
            new_keep = self._local(new_keep, len(new_inputs))
            new_positive = self._local(new_positive, len(new_inputs))
            good_groups = torch.nonzero(new_keep.view(-1, group_size)[:, 0], as_tuple=True)[0]
            good_groups = good_groups[:missing]
            if len(good_groups):
                rows = (good_groups.unsqueeze(1) * group_size
                        + torch.arange(group_size, device=good_groups.device)).reshape(-1)
                kept_parts.append((new_output, rows, new_positive[rows]))
                have += len(good_groups)
        still_missing = n_groups - have
        if still_missing:
            # train on what is left (Klear's behaviour at max_num_gen_batches): pad the batch with
            # zero-std groups of the original batch, masked out of the loss
            bad_groups = torch.nonzero(~orig_group_keep, as_tuple=True)[0][:still_missing]
            rows = (bad_groups.unsqueeze(1) * group_size
                    + torch.arange(group_size, device=bad_groups.device)).reshape(-1)
            kept_parts.append((output, rows, None))
        if rounds or still_missing:
            message = (
                f"GPPO dynamic sampling: {first_kept}/{n_groups} groups of the batch had reward std > 0; "
                f"{rounds} refill round(s) generated {drawn} more prompt group(s), "
                f"{have - first_kept} of them kept"
            )
            if still_missing:
                logger.warning(
                    message + f"; cap dynamic_sampling_max_rounds={self.args.dynamic_sampling_max_rounds}"
                    f" reached, {still_missing} zero-std group(s) stay masked out of the loss"
                )
            else:
                logger.info(message + "; batch refilled")
        merged, keep_out, positive_out = self._merge_parts(kept_parts)
        return merged, keep_out, positive_out, rounds

    def _merge_parts(self, parts):
        pad_id = self._tokenizer.pad_token_id
        tensors: dict[str, list[torch.Tensor]] = {}
        keeps, positives = [], []
        for out, rows, pos in parts:
            if len(rows) == 0:
                continue
            for key, value in out.items():
                if key == "num_items_in_batch":
                    continue
                if not isinstance(value, torch.Tensor) or value.dim() == 0:
                    raise NotImplementedError(
                        f"dynamic sampling cannot merge the batch field {key!r} (multimodal/tool "
                        "fields are not supported with zero_std_groups='resample')"
                    )
                tensors.setdefault(key, []).append(value[rows.to(value.device)])
            keeps.append(torch.full((len(rows),), pos is not None, dtype=torch.bool))
            positives.append(pos.cpu() if pos is not None else torch.zeros(len(rows), dtype=torch.bool))
        merged: dict[str, Any] = {}
        for key, values in tensors.items():
            if values[0].dim() == 1:
                merged[key] = torch.cat(values)
                continue
            side = "left" if key.startswith("prompt_") else "right"
            fill = pad_id if key in ("prompt_ids", "completion_ids") else (1 if key == "tool_mask" else 0)
            width = max(v.shape[1] for v in values)
            padded = []
            for v in values:
                extra = width - v.shape[1]
                if extra:
                    block = v.new_full((v.shape[0], extra, *v.shape[2:]), fill)
                    v = torch.cat([block, v] if side == "left" else [v, block], dim=1)
                padded.append(v)
            merged[key] = torch.cat(padded)
        merged["num_items_in_batch"] = parts[0][0]["num_items_in_batch"]  # recomputed by caller
        return merged, torch.cat(keeps), torch.cat(positives)

    # ------------------------------------------------------------------ the loss
    def _compute_loss(self, model, inputs):
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logits_to_keep = completion_ids.size(1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        keep = inputs.get("gppo_keep")
        if keep is not None:
            mask = mask * keep.unsqueeze(1).to(mask.dtype)

        per_token_logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
            **{key: inputs.get(key) for key in _MULTIMODAL_KEYS},
        )
        entropy_mask = (
            self.get_high_entropy_mask(entropies, mask, 1 - self.top_entropy_quantile)
            if self.top_entropy_quantile < 1.0 else None
        )
        advantages = inputs["advantages"]
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1)
        old_per_token_logps = inputs.get("old_per_token_logps")
        if old_per_token_logps is None:
            old_per_token_logps = per_token_logps.detach()
        if self.off_policy_mask_threshold is not None:
            off_policy_mask = self.get_off_policy_mask(
                advantages=advantages,
                per_token_logps=per_token_logps,
                sampling_per_token_logps=inputs.get("sampling_per_token_logps", old_per_token_logps),
                mask=mask,
                off_policy_threshold=self.off_policy_mask_threshold,
            )

        if self.importance_sampling_level == "token":
            logps, old_logps = per_token_logps, old_per_token_logps
        elif self.importance_sampling_level == "sequence":  # GSPO: mean log-ratio per sequence
            denom = mask.sum(-1, keepdim=True).clamp(min=1.0)
            logps = (per_token_logps * mask).sum(-1, keepdim=True) / denom
            old_logps = (old_per_token_logps * mask).sum(-1, keepdim=True) / denom
        else:
            raise ValueError(
                f"importance_sampling_level must be 'token' or 'sequence', got "
                f"{self.importance_sampling_level!r}"
            )
        per_token_loss = gppo_per_token_loss(
            logps, old_logps, advantages, self.epsilon_low, self.epsilon_high,
            beta_low=self.args.gppo_beta_low, beta_high=self.args.gppo_beta_high,
            dual_clip_c=self.args.dual_clip_c,
        )
        coef_1 = torch.exp(logps - old_logps)  # the ratio (same tensor TRL's KL correction uses)

        if self.beta != 0.0:
            ref_per_token_logps = inputs["ref_per_token_logps"]
            per_token_kl = (
                torch.exp(ref_per_token_logps - per_token_logps)
                - (ref_per_token_logps - per_token_logps) - 1
            )
            if self.args.use_bias_correction_kl:
                per_token_kl = per_token_kl * coef_1
        if self.off_policy_mask_threshold is not None:
            per_token_loss = per_token_loss * off_policy_mask
        if entropy_mask is not None:
            per_token_loss = per_token_loss * entropy_mask
        if self.use_vllm and self.vllm_importance_sampling_correction:
            per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]
        if self.beta != 0.0:
            per_token_loss = per_token_loss + self.beta * per_token_kl

        mode = "train" if self.model.training else "eval"
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        if self.loss_type == "grpo":
            loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / accumulation
        elif self.loss_type == "bnpo":
            loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0) / accumulation
        elif self.loss_type == "dr_grpo":
            loss = (per_token_loss * mask).sum() / (
                per_token_loss.size(0) * self.max_completion_length) / accumulation
        elif self.loss_type == "dapo":
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
            loss = (per_token_loss * mask).sum() / normalizer
        elif self.loss_type == "luspo":
            loss = (per_token_loss * mask).sum(-1).mean() / accumulation
        else:  # pragma: no cover - rejected at init
            raise NotImplementedError(f"loss_type {self.loss_type!r}")

        if self.args.positive_nll_coef > 0.0:
            positive = inputs.get("gppo_positive")
            pos_mask = mask * (positive.unsqueeze(1).to(mask.dtype) if positive is not None else 0.0)
            nll = -(per_token_logps * pos_mask).sum() / pos_mask.sum().clamp(min=1.0)
            loss = loss + self.args.positive_nll_coef * nll / accumulation
            self._metrics[mode]["gppo/positive_nll"].append(
                self.accelerator.gather(nll.detach()).mean().item()
            )

        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * aux_loss / accumulation
            self._metrics[mode]["aux_loss"].append(
                self.accelerator.gather_for_metrics(aux_loss).mean().item()
            )

        self._log_loss_metrics(mode, mask, entropies, coef_1.detach(), advantages,
                               per_token_kl if self.beta != 0.0 else None)
        return loss

    def _log_loss_metrics(self, mode, mask, entropies, ratio, advantages, per_token_kl) -> None:
        """TRL's metric keys (same definitions) plus ``gppo/dual_clip_ratio``."""

        def masked_seq_mean(x):
            if x.shape[1] == 1:
                return x.squeeze(1)
            return (x * mask).sum(-1) / mask.sum(-1)

        def global_masked_mean(x):
            if x.shape[1] == 1:
                local = torch.stack([x.sum(), torch.tensor(float(x.shape[0]), device=x.device)])
            else:
                local = torch.stack([(x * mask).sum(), mask.sum().float()])
            totals = self.accelerator.reduce(local, reduction="sum")
            return (totals[0] / totals[1].clamp(min=1.0)).item()

        if per_token_kl is not None:
            self._metrics[mode]["kl"].append(global_masked_mean(per_token_kl))
        self._metrics[mode]["entropy"].append(global_masked_mean(entropies))
        is_low = ((ratio < 1 - self.epsilon_low) & (advantages < 0)).float()
        is_high = ((ratio > 1 + self.epsilon_high) & (advantages > 0)).float()
        self._metrics[mode]["clip_ratio/low_mean"].append(global_masked_mean(is_low))
        self._metrics[mode]["clip_ratio/high_mean"].append(global_masked_mean(is_high))
        self._metrics[mode]["clip_ratio/region_mean"].append(
            global_masked_mean(torch.clamp(is_low + is_high, max=1.0))
        )
        self._metrics[mode]["clip_ratio/low_min"].append(
            nanmin(self.accelerator.gather(masked_seq_mean(is_low))).item()
        )
        self._metrics[mode]["clip_ratio/high_max"].append(
            nanmax(self.accelerator.gather(masked_seq_mean(is_high))).item()
        )
        if self.args.dual_clip_c is not None:
            dual = ((ratio > self.args.dual_clip_c) & (advantages < 0)).float()
            self._metrics[mode]["gppo/dual_clip_ratio"].append(global_masked_mean(dual))
