"""Mixture-of-Experts feed-forward layer shared by OneRec-V1 and OneRec-V2.

* Experts are SwiGLU FFNs (OneRec TR §2.2.2): ``down(silu(gate(x)) * up(x))``.
* Routing is top-k over softmax (KDD Eq. for :math:`g_{i,t}`, DeepSeekMoE style) or sigmoid affinities
  (DeepSeek-V3 Eq. 15-16), chosen by ``router``.
* Optional shared experts are always active (OneRec-V2 MoE: 1 shared + 53 routed, top-3).
* **Auxiliary-loss-free balancing** (DeepSeek-V3 §2.1.2): a per-expert bias :math:`b_i` is added to the
  affinities *for selection only*; the gate value uses the raw affinity. After every optimiser step
  :class:`AuxFreeBiasUpdateCallback` moves :math:`b_i \\leftarrow b_i - \\gamma` for overloaded and
  :math:`b_i \\leftarrow b_i + \\gamma` for underloaded experts, using the token counts the layer
  accumulated since the previous update. No auxiliary loss term is added.

Expert load is counted in a non-persistent buffer (``tokens_per_expert``) during training; the bias
``e_score_correction_bias`` is a persistent buffer, so it is saved with the weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback


class SwiGLU(nn.Module):
    """SwiGLU feed-forward network: ``down_proj(silu(gate_proj(x)) * up_proj(x))``."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class OneRecMoE(nn.Module):
    """Top-k routed SwiGLU experts with optional shared experts and aux-loss-free bias.

    Args:
        hidden_size: model width ``d``.
        num_experts: number of routed experts ``N``.
        num_experts_per_tok: experts selected per token ``k``.
        expert_intermediate_size: hidden size of each routed expert.
        num_shared_experts: always-active experts (0 = none); they form one SwiGLU of width
            ``num_shared_experts * shared_intermediate_size``.
        shared_intermediate_size: hidden size per shared expert (defaults to the routed size).
        router: ``"softmax"`` (KDD, no renormalisation by default) or ``"sigmoid"`` (DeepSeek-V3,
            gates renormalised over the selected experts).
        norm_topk_prob: renormalise the selected gates to sum to 1 (``None``: True for sigmoid,
            False for softmax).
        aux_free_bias: use the selection bias (DeepSeek-V3 aux-loss-free balancing).
    """

    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        num_experts_per_tok: int,
        expert_intermediate_size: int,
        num_shared_experts: int = 0,
        shared_intermediate_size: int | None = None,
        router: str = "softmax",
        norm_topk_prob: bool | None = None,
        aux_free_bias: bool = True,
    ) -> None:
        super().__init__()
        if router not in ("softmax", "sigmoid"):
            raise ValueError(f"router must be 'softmax' or 'sigmoid', got {router!r}")
        if not 1 <= num_experts_per_tok <= num_experts:
            raise ValueError(
                f"num_experts_per_tok must be in [1, num_experts={num_experts}], got {num_experts_per_tok}"
            )
        self.num_experts = num_experts
        self.top_k = num_experts_per_tok
        self.router = router
        self.norm_topk_prob = (router == "sigmoid") if norm_topk_prob is None else norm_topk_prob
        self.aux_free_bias = aux_free_bias
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.experts = nn.ModuleList(
            [SwiGLU(hidden_size, expert_intermediate_size) for _ in range(num_experts)]
        )
        self.shared_experts = (
            SwiGLU(hidden_size, num_shared_experts * (shared_intermediate_size or expert_intermediate_size))
            if num_shared_experts > 0
            else None
        )
        self.register_buffer("e_score_correction_bias", torch.zeros(num_experts), persistent=True)
        self.register_buffer("tokens_per_expert", torch.zeros(num_experts), persistent=False)
        self.register_buffer("logged_tokens_per_expert", torch.zeros(num_experts), persistent=False)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(weights [N, k], expert_index [N, k])`` for flat tokens ``x [N, d]``."""
        logits = self.gate(x).float()
        scores = logits.softmax(-1) if self.router == "softmax" else logits.sigmoid()
        choice = scores
        if self.aux_free_bias:
            choice = scores + self.e_score_correction_bias.float()
        index = choice.topk(self.top_k, dim=-1).indices
        weights = scores.gather(-1, index)
        if self.norm_topk_prob:
            weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-20)
        return weights.to(x.dtype), index

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, shape[-1])
        weights, index = self.route(x)
        if self.training:
            with torch.no_grad():
                counts = torch.bincount(index.flatten(), minlength=self.num_experts).to(
                    self.tokens_per_expert.dtype
                )
                self.tokens_per_expert += counts
                self.logged_tokens_per_expert += counts
        out = torch.zeros_like(x)
        flat_index = index.flatten()
        token_ids = torch.arange(x.shape[0], device=x.device).repeat_interleave(self.top_k)
        flat_weights = weights.flatten()
        order = flat_index.argsort()
        counts = torch.bincount(flat_index, minlength=self.num_experts).tolist()
        start = 0
        for expert_id, count in enumerate(counts):
            if count == 0:
                continue
            sel = order[start : start + count]
            start += count
            tok = token_ids[sel]
            y = self.experts[expert_id](x[tok]) * flat_weights[sel, None]
            out.index_add_(0, tok, y)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out.reshape(shape)

    @torch.no_grad()
    def update_bias(self, update_speed: float) -> torch.Tensor:
        """DeepSeek-V3 bias step from the counts since the last call; returns the counts used."""
        load = self.tokens_per_expert.clone()
        if load.sum() > 0 and self.aux_free_bias:
            self.e_score_correction_bias += update_speed * torch.sign(load.mean() - load)
        self.tokens_per_expert.zero_()
        return load


def moe_layers(model: nn.Module) -> list[tuple[str, OneRecMoE]]:
    """All :class:`OneRecMoE` sub-modules of ``model`` with their names (PEFT wrappers included)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, OneRecMoE)]


def _sum_over_processes(tensors: list[torch.Tensor]) -> None:
    """In-place sum of the per-process expert counts (no-op in one process)."""
    from kwaiformers.utils.distributed import all_reduce_sum_, world_size

    if tensors and world_size() > 1:
        flat = all_reduce_sum_(torch.cat([t.reshape(-1) for t in tensors]))
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(part.view_as(t))


def exclude_moe_counters_from_ddp(model: nn.Module) -> list[str]:
    """Keep DDP from broadcasting rank 0's expert counters to the other ranks before every forward
    (``broadcast_buffers``), which would drop their routing counts; the counts are summed over
    the processes at the bias update / logging instead. Returns the ignored buffer names."""
    names = [f"{name}.{buf}" for name, _ in moe_layers(model)
             for buf in ("tokens_per_expert", "logged_tokens_per_expert")]
    if names:
        old = list(getattr(model, "_ddp_params_and_buffers_to_ignore", []))
        model._ddp_params_and_buffers_to_ignore = sorted(set(old) | set(names))
    return names


def update_aux_free_biases(model: nn.Module, update_speed: float) -> int:
    """Apply one aux-loss-free bias step to every MoE layer of ``model``; returns the layer count.

    Under data parallelism the expert loads are summed over the processes first, so every rank
    applies the same step (the one of a single process on the global batch)."""
    layers = moe_layers(model)
    _sum_over_processes([layer.tokens_per_expert for _, layer in layers])
    for _, layer in layers:
        layer.update_bias(update_speed)
    return len(layers)


def moe_load_stats(model: nn.Module, reset: bool = True) -> dict[str, float]:
    """Expert-load statistics accumulated since the last call (for logging).

    Returns ``moe/max_load_ratio`` (max expert load / mean load, 1.0 = perfect balance, averaged
    over layers), ``moe/load_cv`` (coefficient of variation of the load) and
    ``moe/bias_abs_mean``. Empty when the model has no MoE layer or no token was routed.
    Under data parallelism the loads of all processes are summed (call it on every process).
    """
    ratios, cvs, biases = [], [], []
    layers = moe_layers(model)
    _sum_over_processes([layer.logged_tokens_per_expert for _, layer in layers])  # global load
    for _, layer in layers:
        load = layer.logged_tokens_per_expert
        if load.sum() > 0:
            mean = load.mean()
            ratios.append(float(load.max() / mean))
            cvs.append(float(load.std(unbiased=False) / mean))
        biases.append(float(layer.e_score_correction_bias.abs().mean()))
        if reset:
            layer.logged_tokens_per_expert.zero_()
    if not ratios:
        return {}
    return {
        "moe/max_load_ratio": sum(ratios) / len(ratios),
        "moe/load_cv": sum(cvs) / len(cvs),
        "moe/bias_abs_mean": sum(biases) / len(biases),
    }


class AuxFreeBiasUpdateCallback(TrainerCallback):
    """``TrainerCallback`` running the DeepSeek-V3 aux-loss-free bias update after each optimiser step.

    Args:
        update_speed: the bias step :math:`\\gamma` (DeepSeek-V3 used 0.001). ``None`` reads
            ``model.config.aux_free_bias_update_speed``.
    """

    def __init__(self, update_speed: float | None = None) -> None:
        if update_speed is not None and (not math.isfinite(update_speed) or update_speed < 0):
            raise ValueError(f"update_speed must be a finite number >= 0, got {update_speed}")
        self.update_speed = update_speed

    def on_init_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            exclude_moe_counters_from_ddp(model)
        return control

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is None:
            return control
        speed = self.update_speed
        if speed is None:
            config = getattr(model, "config", None)
            speed = getattr(config, "aux_free_bias_update_speed", 0.001)
        update_aux_free_biases(model, float(speed))
        return control
