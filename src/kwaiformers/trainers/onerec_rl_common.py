"""Shared machinery of the OneRec alignment trainers (ECPO, GBPO) built on ``trl.GRPOTrainer``.

What of ``GRPOTrainer`` is reused, and what is not (and why):

* **Reused as is**: the training loop hooks ``training_step``, ``_prepare_inputs`` (generate once
  per ``steps_per_generation * num_iterations`` micro-steps, shuffle, split and buffer the
  generation batch), ``get_train_dataloader`` (generation-batch-sized loading), the
  ``RepeatSampler`` grouping of ``num_generations`` rows per user (ECPO), ``compute_loss`` ->
  ``_compute_loss`` dispatch, ``prediction_step``, ``log`` (metric averaging under TRL's names),
  checkpoint saving (model card) and all of ``transformers.Trainer`` (optimiser, schedules,
  accelerate, DDP/FSDP/DeepSpeed, callbacks, ``report_to``, resuming).
* **Not reused**: ``GRPOTrainer.__init__`` requires a tokenizer/processor (it loads one with
  ``AutoProcessor`` when ``processing_class=None``), patches a fused LM head onto ``lm_head`` and
  builds a text ``GenerationConfig``; a generative recommender has none of these (inputs are
  feature tensors, outputs semantic-ID codes from per-level heads). The subclasses therefore call
  ``transformers.Trainer.__init__`` (through TRL's ``_BaseTrainer``) and set the GRPO state the
  reused methods read. ``_generate_and_score_completions`` (text sampling, chat templates, tool
  calls, vLLM) is replaced by beam-search rollouts over semantic IDs / logged exposures;
  ``_get_per_token_logps_and_entropies`` by the model's ``sid_log_probs`` (per-level
  log-probabilities of candidate tuples with the user context encoded once);
  ``_calculate_rewards`` by the reward model's ``score`` (or DARS); ``_compute_loss`` by the
  ECPO/GBPO losses of :mod:`kwaiformers.trainers.losses` plus the joint NTP term.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, Trainer
from trl import GRPOTrainer
from trl.trainer.utils import RepeatSampler, identity

from kwaiformers.data.schema import validate_onerec_batch
from kwaiformers.utils.distributed import call_through_wrapper

__all__ = ["EpochRepeatSampler", "OneRecRLTrainerMixin", "stack_collator"]

CTX = "ctx."


def stack_collator(rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Default collator: stack equally-shaped per-row fields into tensors (pre-padded rows, e.g.
    the output of a collator un-batched, or ``datasets`` rows with fixed-length lists)."""
    if len(rows) == 0:
        raise ValueError("cannot collate an empty list of rows (empty batch)")
    out: dict[str, torch.Tensor] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if any(v is None for v in values):
            raise ValueError(f"field {key!r} is None in some rows")
        if isinstance(values[0], str):
            continue
        tensors = [torch.as_tensor(v) for v in values]
        try:
            out[key] = torch.stack(tensors)
        except RuntimeError as exc:
            raise ValueError(
                f"field {key!r} has rows of different shapes; pass a padding data_collator "
                f"(e.g. kwaiformers.data's OneRec collator)"
            ) from exc
    for key in ("short_mask", "long_mask", "lifelong_mask", "target_is_negative", "target_served_by_model"):
        if key in out:
            out[key] = out[key].bool()
    return out


class EpochRepeatSampler(RepeatSampler):
    """TRL's ``RepeatSampler`` with ``set_epoch``: the permutation of epoch ``e`` depends only on
    ``(seed, e)``, so a run resumed from a checkpoint sees the same batches as an uninterrupted one
    (``Trainer`` calls ``set_epoch`` at every epoch; TRL's sampler draws from one running
    generator, which a resumed run cannot reproduce)."""

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle:
            self.generator.manual_seed((self.seed or 0) + 1_000_003 * int(epoch))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``mask`` (0 when the mask is empty; never NaN, keeps the graph)."""
    m = mask.to(x.dtype)
    return (torch.where(mask, x, torch.zeros_like(x)) * m).sum() / m.sum().clamp(min=1.0)


class OneRecRLTrainerMixin:
    """Set-up and helpers shared by :class:`ECPOTrainer` and :class:`GBPOTrainer` (see module doc)."""

    _tag_names = ["trl", "kwaiformers", "onerec"]

    def _setup(
        self,
        model,
        args,
        train_dataset,
        eval_dataset,
        data_collator,
        reward_model,
        item_index,
        callbacks,
        optimizers,
    ) -> None:
        if isinstance(model, str):
            from transformers import AutoModel

            model = AutoModel.from_pretrained(model)
        if not isinstance(model, PreTrainedModel):
            raise TypeError(f"model must be a PreTrainedModel or a path, got {type(model).__name__}")
        for attr in ("sid_log_probs", "recommend"):
            if not callable(getattr(model, attr, None)):
                raise TypeError(
                    f"{type(model).__name__} has no `{attr}`; OneRec trainers need a generative "
                    "recommender (OneRecForGenerativeRecommendation / OneRecV2ForGenerativeRecommendation)"
                )
        if train_dataset is not None and not hasattr(train_dataset, "__len__"):
            raise TypeError("train_dataset must be a map-style dataset (datasets.Dataset or a list of rows)")
        if isinstance(reward_model, str):
            from transformers import AutoModel

            reward_model = AutoModel.from_pretrained(reward_model)
        self.reward_model = reward_model
        self.item_index = item_index if item_index is not None else getattr(model, "item_index", None)
        self.batch_collator = data_collator if data_collator is not None else stack_collator
        # GRPO state read by the reused GRPOTrainer methods
        self.num_generations = args.num_generations
        self.num_generations_eval = args.num_generations_eval or args.num_generations
        self.num_iterations = args.num_iterations
        self.shuffle_dataset = args.shuffle_dataset
        self.epsilon_low = args.epsilon
        self.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
        self.beta = 0.0
        self.ref_model = None
        self.reward_funcs = []
        self.log_completions = False
        self.use_adaptive_entropy = False
        self.use_vllm = False
        self.loss_type = "onerec"
        self._step = 0
        self._buffered_inputs = None
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._current_train_step_time = 0.0
        Trainer.__init__(  # GRPOTrainer.__init__ is text-specific (see module docstring)
            self,
            model=model,
            args=args,
            data_collator=identity,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=None,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        self._add_moe_bias_callback()
        if self.reward_model is not None and isinstance(self.reward_model, torch.nn.Module):
            self.reward_model = self.reward_model.to(self.accelerator.device).eval()
            for p in self.reward_model.parameters():
                p.requires_grad_(False)

    def _add_moe_bias_callback(self) -> None:
        """When the policy has MoE layers, run the DeepSeek-V3 aux-loss-free bias update after every
        optimiser step, as in pretraining (OneRec TR §2.3: no auxiliary loss); the expert loads
        are counted in the training-mode forwards of the RL and SFT terms (rollout search runs in
        eval mode and does not count)."""
        from kwaiformers.models.onerec.modeling_moe import (
            AuxFreeBiasUpdateCallback,
            exclude_moe_counters_from_ddp,
            moe_layers,
        )

        if not moe_layers(self.model):
            return
        exclude_moe_counters_from_ddp(self.model)  # counts are summed over processes at the update
        if any(isinstance(cb, AuxFreeBiasUpdateCallback) for cb in self.callback_handler.callbacks):
            return  # the caller passed one (e.g. with its own update speed)
        self.add_callback(AuxFreeBiasUpdateCallback())

    def _make_sampler(self, dataset, repeat: int, train: bool) -> EpochRepeatSampler:
        if train:
            return EpochRepeatSampler(
                data_source=dataset,
                mini_repeat_count=repeat,
                batch_size=self.args.generation_batch_size // repeat,
                repeat_count=self.num_iterations * self.args.steps_per_generation,
                shuffle=self.shuffle_dataset,
                seed=self.args.seed,
            )
        return EpochRepeatSampler(data_source=dataset, mini_repeat_count=repeat, seed=self.args.seed)

    def _get_train_sampler(self, dataset=None):
        return self._make_sampler(dataset if dataset is not None else self.train_dataset, self._group_size(True), True)

    def _get_eval_sampler(self, eval_dataset):
        return self._make_sampler(eval_dataset, self._group_size(False), False)

    def _group_size(self, train: bool) -> int:
        """Rows per user in a generation batch (``num_generations`` for ECPO, 1 for GBPO)."""
        return self.num_generations if train else self.num_generations_eval

    # ------------------------------------------------------------------ helpers
    def _collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if len(rows) == 0:
            raise ValueError("empty batch: no rows to train on")
        batch = self.batch_collator(list(rows))
        if not isinstance(batch, Mapping):
            raise TypeError(f"data_collator must return a mapping of tensors, got {type(batch).__name__}")
        batch = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        validate_onerec_batch(batch, num_levels=self._policy().config.num_sid_levels)
        if batch["target_sids"].dim() != 2:
            raise ValueError("OneRec alignment trainers need one target per sample: target_sids [B, L]")
        device = self.accelerator.device
        return {k: v.to(device) for k, v in batch.items()}

    def _policy(self):
        return self.accelerator.unwrap_model(self.model) if hasattr(self, "accelerator") else self.model

    @staticmethod
    def _ctx(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {CTX + k: v for k, v in batch.items()}

    @staticmethod
    def _unctx(inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {k[len(CTX):]: v for k, v in inputs.items() if k.startswith(CTX)}

    def _sft_mask(self, batch: Mapping[str, torch.Tensor], quantile: float) -> torch.Tensor:
        """RSFT filter: keep targets whose play time is at least the batch ``quantile``."""
        n = batch["target_sids"].shape[0]
        keep = torch.ones(n, dtype=torch.bool, device=batch["target_sids"].device)
        play = batch.get("target_play_time")
        if quantile > 0 and play is not None:
            finite = torch.isfinite(play)
            everyone = self._gather_rows(play.double())  # the cut of the global batch
            if torch.isfinite(everyone).any():
                cut = torch.quantile(everyone[torch.isfinite(everyone)], quantile)
                keep = finite & (play.double() >= cut)
        return keep

    def _rollouts(self, batch: Mapping[str, torch.Tensor], g: int, beam_size: int | None, constrained: bool):
        """Beam-search ``g`` items per user from the current policy (no grad).

        Returns ``(sids [B, g, L], old per-level log-probs [B, g, L], legal [B, g])``. The
        generation-time log-probabilities are recomputed with ``sid_log_probs`` so that they use
        exactly the computation of the loss (ratios are 1 at the first update, as in TRL)."""
        policy = self._policy()
        was_training = policy.training
        policy.eval()
        try:
            with torch.no_grad():
                out = policy.recommend(
                    batch,
                    num_items=g,
                    beam_size=max(g, beam_size or g),
                    constrained=constrained and self.item_index is not None,
                    item_index=self.item_index,
                )
                sids = out.sids.to(batch["target_sids"].device)
                if sids.shape[1] < g:
                    raise RuntimeError(
                        f"rollout search returned {sids.shape[1]} items per user, expected {g} "
                        "(too few legal items for a constrained search?)"
                    )
                sids = sids[:, :g].clamp(min=0)
                old = policy.sid_log_probs(batch, sids).detach()
        finally:
            policy.train(was_training)
        if self.item_index is not None:
            legal = self.item_index.is_legal(sids.reshape(-1, sids.shape[-1]).cpu()).view(sids.shape[:2])
        else:
            legal = torch.ones(sids.shape[:2], dtype=torch.bool)
        return sids, old, legal.to(sids.device)

    def _score_rollouts(self, batch, sids: torch.Tensor, legal: torch.Tensor, illegal_reward):
        """Rewards ``[B, G]`` of rollouts from ``reward_model`` (a model with ``score(batch, sids)``
        or a callable ``f(batch=..., sids=..., legal=...)``)."""
        if self.reward_model is None:
            raise ValueError("rollouts need a reward_model (e.g. a trained PScoreModel)")
        if hasattr(self.reward_model, "score"):
            rewards = self.reward_model.score(batch, sids)
        else:
            rewards = self.reward_model(batch=batch, sids=sids, legal=legal)
        rewards = torch.as_tensor(rewards, dtype=torch.float32, device=sids.device)
        if rewards.shape != sids.shape[:2]:
            raise ValueError(f"reward model returned shape {tuple(rewards.shape)}, expected {tuple(sids.shape[:2])}")
        if illegal_reward is not None:
            rewards = torch.where(legal, rewards, torch.full_like(rewards, float(illegal_reward)))
        return rewards

    @staticmethod
    def group_advantages(rewards: torch.Tensor, scale: str, gather=None) -> tuple[torch.Tensor, torch.Tensor]:
        """GRPO advantages of rewards ``[B, G]``: ``r - mean`` over the finite rewards of the group,
        divided by their std (``scale="group"``, the TR's formula), the batch std (``"batch"``) or
        not (``"none"``). NaN rewards get advantage 0 and ``valid=False`` (dropped from the loss).
        A group's rollouts always live on one process; ``gather`` (rows of every process, e.g.
        ``self._gather_rows``) makes the ``"batch"`` std the one of the global batch."""
        valid = torch.isfinite(rewards)
        r = torch.where(valid, rewards, torch.zeros_like(rewards))
        n = valid.sum(1, keepdim=True).clamp(min=1)
        mean = r.sum(1, keepdim=True) / n
        centred = torch.where(valid, r - mean, torch.zeros_like(r))
        if scale == "group":
            std = (centred.pow(2).sum(1, keepdim=True) / (n - 1).clamp(min=1)).sqrt()
            adv = centred / (std + 1e-4)
        elif scale == "batch":
            all_c, all_v = (gather(centred), gather(valid)) if gather is not None else (centred, valid)
            std = all_c[all_v].std() if all_v.sum() > 1 else torch.tensor(0.0)
            adv = centred / (std + 1e-4)
        elif scale == "none":
            adv = centred
        else:
            raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale!r}")
        valid = valid & (valid.sum(1, keepdim=True) >= 2)  # a group needs 2 finite rewards
        return torch.where(valid, adv, torch.zeros_like(adv)), valid

    # ------------------------------------------------------------------ several processes
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """``_compute_loss`` evaluated inside the DDP/FSDP wrapper's forward (the losses call
        ``sid_log_probs``, which would otherwise bypass the gradient all-reduce)."""
        if return_outputs:
            raise ValueError(f"The {self._name}Trainer does not support returning outputs")
        return call_through_wrapper(model, lambda inner: self._compute_loss(inner, inputs))

    def _gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Rows ``[b, ...]`` of every process concatenated in rank order (``b`` equal on all
        ranks, as accelerate's ``even_batches`` makes it); ``x`` itself in one process."""
        if self.accelerator.num_processes == 1:
            return x
        dtype = x.dtype
        out = self.accelerator.gather(x.contiguous().to(torch.float64 if dtype == torch.bool else x.dtype))
        return out.to(dtype)

    def _local_rows(self, x: torch.Tensor, b: int) -> torch.Tensor:
        start = self.accelerator.process_index * b
        return x[start:start + b]

    def _global_count(self, mask: torch.Tensor) -> torch.Tensor:
        n = mask.sum().to(torch.float32).reshape(1)
        if self.accelerator.num_processes > 1:
            n = self.accelerator.reduce(n, reduction="sum")
        return n[0]

    def _global_share(self, local_sum: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """This process' share of a mean over the *global* batch: ``local_sum * W / N_global``.

        DDP averages gradients over the ``W`` processes, so the update equals the one of the
        global masked mean, as with one process on the whole batch (a per-process mean would
        weight the rows of a process with few valid rows more). Collective: every process must
        call it, whatever its local mask."""
        n = self._global_count(mask)
        return local_sum * self.accelerator.num_processes / n.clamp(min=1.0)

    def _global_masked_mean(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:func:`masked_mean` over the rows of all processes (see :meth:`_global_share`)."""
        m = mask.to(x.dtype)
        return self._global_share((torch.where(mask, x, torch.zeros_like(x)) * m).sum(), mask)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Merge every process' metric values before TRL averages them (TRL gathers its own
        metrics when it records them; the OneRec trainers record per-process values)."""
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            mode = "train" if self.model.training else "eval"
            merged: dict[str, list[float]] = defaultdict(list)
            for part in gather_object([dict(self._metrics[mode])]):
                for key, values in part.items():
                    merged[key].extend(values)
            self._metrics[mode] = merged
        super().log(logs, start_time)

    def _log_metric(self, name: str, value: float | torch.Tensor) -> None:
        mode = "train" if self.model.training else "eval"
        v = float(value)
        self._metrics[mode][name].append(v if math.isfinite(v) else float("nan"))

    def _ga_scale(self, loss: torch.Tensor) -> torch.Tensor:
        mode = "train" if self.model.training else "eval"
        ga = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        return loss / ga if mode == "train" else loss

    def _token_or_item(self, logps_tok: torch.Tensor, level: str) -> torch.Tensor:
        """Per-level log-probs ``[..., L]`` -> item-level (sum: product of probabilities) or kept."""
        return logps_tok.sum(-1) if level == "item" else logps_tok

    def _reduce_loss(self, per: torch.Tensor) -> torch.Tensor:
        """Token-level losses ``[..., L]`` -> per-sample mean over levels; item-level unchanged."""
        return per.mean(-1) if self.args.probability_level == "token" else per


# keep the GRPOTrainer import visible for subclasses' MRO documentation
_ = GRPOTrainer
