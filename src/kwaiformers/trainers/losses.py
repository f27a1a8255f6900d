"""All training losses as pure functions (tensors in, per-sample or per-token losses out).

Each function validates its inputs, documents its shapes, cites the paper equation it implements,
and is unit-tested alone against an independent re-derivation in ``tests/``. Trainers import from
here; nothing else defines a loss.
"""

from __future__ import annotations

import torch

__all__: list[str] = ["gppo_per_token_loss"]


def _check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise ``TypeError``/``ValueError`` unless every argument is a tensor of one common shape."""
    shape = None
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if shape is None:
            shape = value.shape
        elif value.shape != shape:
            raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)}")


# --------------------------------------------------------------------------------------------
# GPPO (Klear-Reasoner, arXiv 2508.07629 §2.2, Eq. 5-7; general beta form: README / CE-GPPO)
# --------------------------------------------------------------------------------------------


def gppo_per_token_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
    beta_low: float = 1.0,
    beta_high: float = 1.0,
    dual_clip_c: float | None = None,
) -> torch.Tensor:
    r"""Gradient-Preserving clipping Policy Optimization, per-token loss (to be minimised).

    With :math:`r = \pi_\theta/\pi_{old}` and the decoupled clip of DAPO, Klear's objective
    (Eq. 7) replaces the constant clip bounds by bounds that carry the ratio's gradient,
    :math:`\mathrm{clip}(r, (1-\epsilon_l)\,r/\mathrm{sg}(r), (1+\epsilon_h)\,r/\mathrm{sg}(r))`:

    - **forward value** = PPO/DAPO's :math:`-\min(rA, \mathrm{clip}(r, 1-\epsilon_l, 1+\epsilon_h)A)`
      exactly (so logged losses are comparable with GRPO runs);
    - **gradient** :math:`-w\,A\,\nabla\log\pi_\theta` with
      :math:`w = \beta_h(1+\epsilon_h)` where :math:`A>0, r>1+\epsilon_h` (clip-high),
      :math:`w = \beta_l(1-\epsilon_l)` where :math:`A<0, r<1-\epsilon_l` (clip-low), and
      :math:`w = r` elsewhere (PPO's weight; 0 replaces the two clipped weights in PPO);
    - **dual clip** (arXiv 1912.09729, applied on top as in Klear): for :math:`A<0` the loss is
      :math:`\min(\ell, -cA)`, i.e. constant (zero gradient) where :math:`r > c`.

    The betas follow the "general form with tunable scaling" of the Klear README (CE-GPPO's
    beta1 = ``beta_low``, beta2 = ``beta_high``). Design choice: unlike Klear's
    ``compute_gppo_loss_general_beta``, which also scales the *forward value* of clipped tokens by
    beta, beta here scales only the gradient (``bound * exp(beta * (log r - sg(log r)))``), so the
    forward value stays PPO's for every beta; gradients are identical to Klear's.

    Args:
        per_token_logps: ``(B, T)`` log pi_theta of the sampled tokens (differentiable), or
            ``(B, 1)`` sequence-level (GSPO-style mean) log-probabilities.
        old_per_token_logps: same shape, log pi_old (treated as a constant).
        advantages: ``(B,)`` per-sequence (broadcast over tokens), ``(B, 1)`` or ``(B, T)``.
        epsilon_low, epsilon_high: clip range ``[1 - epsilon_low, 1 + epsilon_high]``
            (Klear: 0.2 / 0.28); ``0 <= epsilon_low < 1``, ``epsilon_high >= 0``.
        beta_low, beta_high: gradient scales of the clip-low / clip-high tokens (>= 0; Klear 1).
        dual_clip_c: dual-clip constant ``c > 1`` for negative advantages, or ``None`` (Klear 10).

    Returns:
        The per-token loss, shape ``(B, T)`` (or ``(B, 1)``); mask and aggregate it yourself.
    """
    if not isinstance(per_token_logps, torch.Tensor):
        raise TypeError(
            f"per_token_logps must be a torch.Tensor, got {type(per_token_logps).__name__}"
        )
    if not isinstance(old_per_token_logps, torch.Tensor):
        raise TypeError(
            f"old_per_token_logps must be a torch.Tensor, got {type(old_per_token_logps).__name__}"
        )
    if not isinstance(advantages, torch.Tensor):
        raise TypeError(f"advantages must be a torch.Tensor, got {type(advantages).__name__}")
    if per_token_logps.dim() != 2 or not per_token_logps.is_floating_point():
        raise ValueError(
            f"per_token_logps must be a floating (B, T) tensor, got shape "
            f"{tuple(per_token_logps.shape)} and dtype {per_token_logps.dtype}"
        )
    if old_per_token_logps.shape != per_token_logps.shape:
        raise ValueError(
            f"old_per_token_logps has shape {tuple(old_per_token_logps.shape)}, expected "
            f"{tuple(per_token_logps.shape)}"
        )
    batch = per_token_logps.shape[0]
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    if advantages.dim() != 2 or advantages.shape[0] != batch or advantages.shape[1] not in (
        1,
        per_token_logps.shape[1],
    ):
        raise ValueError(
            f"advantages must have shape ({batch},), ({batch}, 1) or "
            f"{tuple(per_token_logps.shape)}, got {tuple(advantages.shape)}"
        )
    if not 0.0 <= epsilon_low < 1.0:
        raise ValueError(f"epsilon_low must be in [0, 1), got {epsilon_low}")
    if not epsilon_high >= 0.0:
        raise ValueError(f"epsilon_high must be >= 0, got {epsilon_high}")
    if not (beta_low >= 0.0 and beta_high >= 0.0):
        raise ValueError(f"beta_low and beta_high must be >= 0, got {beta_low}, {beta_high}")
    if dual_clip_c is not None and not dual_clip_c > 1.0:
        raise ValueError(f"dual_clip_c must be > 1 or None, got {dual_clip_c}")

    advantages = advantages.to(per_token_logps.dtype)
    log_ratio = per_token_logps - old_per_token_logps.detach().to(per_token_logps.dtype)
    ratio = torch.exp(log_ratio)
    # value exactly 1, gradient d(log pi): the stop-gradient trick r / sg(r) in log space
    grad_carrier = log_ratio - log_ratio.detach()
    low_bound = 1.0 - epsilon_low
    high_bound = 1.0 + epsilon_high
    with torch.no_grad():
        is_low = (ratio < low_bound) & (advantages < 0)
        is_high = (ratio > high_bound) & (advantages > 0)
    loss_unclipped = -ratio * advantages
    loss_low = -low_bound * torch.exp(beta_low * grad_carrier) * advantages
    loss_high = -high_bound * torch.exp(beta_high * grad_carrier) * advantages
    loss = torch.where(is_high, loss_high, torch.where(is_low, loss_low, loss_unclipped))
    if dual_clip_c is not None:
        dual_bound = -dual_clip_c * advantages  # > 0 where advantages < 0
        dual_active = (advantages < 0) & (loss.detach() > dual_bound)
        loss = torch.where(dual_active, dual_bound.expand_as(loss), loss)
    return loss
