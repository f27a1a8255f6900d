"""All training losses as pure functions (tensors in, per-sample or per-token losses out).

Each function validates its inputs, documents its shapes, cites the paper equation it implements,
and is unit-tested alone against an independent re-derivation in ``tests/``. Trainers import from
here; nothing else defines a loss.
"""

from __future__ import annotations

import math

import torch

__all__: list[str] = ["cispo_per_token_loss", "ecpo_loss", "gbpo_loss", "gppo_per_token_loss"]


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
# OneRec preference alignment (ECPO: OneRec Technical Report §2.4.1; GBPO: OneRec-V2 §3.1.2)
# --------------------------------------------------------------------------------------------
#
# Probability granularity. ``logps`` may be *item-level* (default, one value per sample: the sum
# of the per-level log-probabilities, i.e. log of the product of the code probabilities
# pi(o|u) = prod_j pi(s^j | u, s^<j)), or *token-level* (one value per semantic-ID level,
# ``logps`` of shape ``[..., L]`` with ``advantages`` of shape ``[...]`` broadcast over ``L``;
# average the returned per-token loss over the last dimension to get a per-sample loss). Both
# losses are element-wise, so the same function serves both granularities.


def _onerec_inputs(
    logps: torch.Tensor, old_logps: torch.Tensor | None, advantages: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ECPO/GBPO inputs; return (old log-probs with NaN -> sg(logps), broadcast advantages)."""
    if not isinstance(logps, torch.Tensor):
        raise TypeError(f"logps must be a torch.Tensor, got {type(logps).__name__}")
    if not isinstance(advantages, torch.Tensor):
        raise TypeError(f"advantages must be a torch.Tensor, got {type(advantages).__name__}")
    if not logps.is_floating_point():
        raise TypeError(f"logps must be a floating tensor, got {logps.dtype}")
    if logps.dim() == 0:
        raise ValueError("logps must have at least one (sample) dimension, got a 0-dim tensor")
    if advantages.shape != logps.shape:
        if advantages.shape != logps.shape[: advantages.dim()]:
            raise ValueError(
                f"advantages has shape {tuple(advantages.shape)}; expected {tuple(logps.shape)} or a "
                f"leading prefix of it (per-sample advantages for token-level logps)"
            )
        advantages = advantages.reshape(*advantages.shape, *([1] * (logps.dim() - advantages.dim())))
    if torch.isnan(advantages).any():
        raise ValueError("advantages contains NaN (drop or zero those samples before the loss)")
    if torch.isnan(logps).any() or (logps > 1e-4).any():
        raise ValueError("logps must be log-probabilities (finite-or--inf values <= 0), got NaN or > 0")
    sg = logps.detach()
    if old_logps is None:
        old = sg
    else:
        if not isinstance(old_logps, torch.Tensor):
            raise TypeError(f"old_logps must be a torch.Tensor or None, got {type(old_logps).__name__}")
        if old_logps.shape != logps.shape:
            raise ValueError(
                f"old_logps has shape {tuple(old_logps.shape)}, expected {tuple(logps.shape)}"
            )
        old_logps = old_logps.detach().to(logps.dtype)
        old = torch.where(torch.isnan(old_logps), sg, old_logps)
    return old, advantages.to(logps.dtype)


def ecpo_loss(
    *,
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    epsilon: float = 0.2,
    delta: float = 0.1,
    return_info: bool = False,
):
    r"""Early-Clipped GRPO loss (OneRec TR §2.4.1, restated as a loss in OneRec-V2 §3.1.2).

    .. math::
        \pi'_{old} = \max\big(\mathrm{sg}(\pi_\theta)/(1+\epsilon+\delta),\ \pi_{old}\big),\quad
        r = \pi_\theta/\pi'_{old},\quad
        \ell = -\min\big(r A,\ \mathrm{clip}(r, 1-\epsilon, 1+\epsilon) A\big)

    computed in log space. The early clip caps the effective ratio at ``1+epsilon+delta`` so a
    negative-advantage sample whose probability collapsed keeps a bounded, non-zero gradient.

    Args:
        logps: log pi_theta(o|u), differentiable. Item-level ``[N]`` (sum over the semantic-ID
            levels, the default) or token-level ``[N, L]`` (see the module note).
        old_logps: log pi_old(o|u) of the policy that produced the sample, same shape as
            ``logps``; ``None`` or ``NaN`` entries mean "not logged" and use ``sg(logps)``.
        advantages: ``[N]`` (broadcast over trailing dims) or the shape of ``logps``.
        epsilon: PPO clip range (TRL's ``epsilon``; not given by the paper, default 0.2).
        delta: early-clip margin (the TR uses 0.1), must be > 0.
        return_info: also return a dict of boolean masks ``clipped_low`` / ``clipped_high``
            (where the PPO clip removed the gradient, TRL's ``clip_ratio/*`` semantics) and
            ``early_clipped`` (where the ``sg(pi)/(1+eps+delta)`` term won the max).

    Returns:
        The per-sample (or per-token) loss, same shape as ``logps`` (and the info dict).
    """
    if not epsilon > 0 or not delta > 0:
        raise ValueError(f"epsilon and delta must be > 0, got epsilon={epsilon}, delta={delta}")
    old, adv = _onerec_inputs(logps, old_logps, advantages)
    early = logps.detach() - math.log1p(epsilon + delta)
    old_prime = torch.maximum(early, old)
    ratio = torch.exp(logps - old_prime)
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon)
    loss = -torch.minimum(ratio * adv, clipped * adv)
    if not return_info:
        return loss
    with torch.no_grad():
        info = {
            "clipped_low": (ratio < 1.0 - epsilon) & (adv < 0),
            "clipped_high": (ratio > 1.0 + epsilon) & (adv > 0),
            "early_clipped": early > old,
            "ratio": ratio.detach(),
        }
    return loss, info


def gbpo_loss(
    *,
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    min_denominator: float = 1e-12,
    return_info: bool = False,
):
    r"""Gradient-Bounded Policy Optimization loss (OneRec-V2 §3.1.2, the abstract's "Adaptive
    Ratio Clipping").

    .. math::
        \ell = -A\,\frac{\pi_\theta}{\pi'_{old}},\qquad
        \pi'_{old} = \begin{cases}\max(\pi_{old},\ \mathrm{sg}(\pi_\theta)) & A \ge 0\\
                                   \max(\pi_{old},\ 1-\mathrm{sg}(\pi_\theta)) & A < 0\end{cases}

    No ratio clipping (no sample's gradient is discarded); the dynamic denominator bounds the
    gradient by the BCE gradient: ``|A| grad(pi) / max(pi_old, 1 - pi)`` for negatives instead of
    plain policy gradient's ``|A| grad(pi) / pi``, which explodes as ``pi -> 0``.

    Args:
        logps: log pi_theta(o|u), differentiable; item-level ``[N]`` (default) or token-level
            ``[N, L]`` (see the module note).
        old_logps: log of the logged generation probability, same shape; ``None``/``NaN`` means
            not logged (legacy-pipeline exposures) and uses ``sg(pi_theta)``.
        advantages: ``[N]`` or the shape of ``logps`` (e.g. DARS advantages in {-1, 0, +1}).
        min_denominator: floor on the denominator (guards ``pi_old = 0`` with ``pi = 1``).
        return_info: also return ``{"bound_active": mask}``: where the ``sg(pi)`` (A >= 0) or
            ``1 - sg(pi)`` (A < 0) term strictly exceeds ``pi_old`` (with ``pi_old`` missing,
            this is ``pi < 0.5`` on negatives and never on positives).

    Returns:
        The per-sample (or per-token) loss, same shape as ``logps`` (and the info dict).
    """
    old, adv = _onerec_inputs(logps, old_logps, advantages)
    sg = logps.detach()
    # log(1 - pi), computed stably; -inf when pi == 1
    log1m = torch.where(sg > -0.6931, torch.log(-torch.expm1(sg)), torch.log1p(-torch.exp(sg)))
    dynamic = torch.where(adv >= 0, sg, log1m)
    log_den = torch.clamp(torch.maximum(old, dynamic), min=math.log(min_denominator))
    loss = -adv * torch.exp(logps - log_den)
    if not return_info:
        return loss
    with torch.no_grad():
        info = {"bound_active": dynamic > old, "ratio": torch.exp(logps - log_den).detach()}
    return loss, info


# --------------------------------------------------------------------------------------------
# GPPO (Klear-Reasoner, arXiv 2508.07629 §2.2, Eq. 5-7; general beta form: README / CE-GPPO)
# --------------------------------------------------------------------------------------------


def _check_per_token_inputs(
    per_token_logps: torch.Tensor, old_per_token_logps: torch.Tensor, advantages: torch.Tensor
) -> torch.Tensor:
    """Validate ``(B, T)`` log-probs, matching old log-probs and ``(B,)``/``(B, 1)``/``(B, T)``
    advantages; return the advantages as a 2-D tensor (broadcastable over tokens)."""
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
    return advantages.to(per_token_logps.dtype)


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
    advantages = _check_per_token_inputs(per_token_logps, old_per_token_logps, advantages)
    if not 0.0 <= epsilon_low < 1.0:
        raise ValueError(f"epsilon_low must be in [0, 1), got {epsilon_low}")
    if not epsilon_high >= 0.0:
        raise ValueError(f"epsilon_high must be >= 0, got {epsilon_high}")
    if not (beta_low >= 0.0 and beta_high >= 0.0):
        raise ValueError(f"beta_low and beta_high must be >= 0, got {beta_low}, {beta_high}")
    if dual_clip_c is not None and not dual_clip_c > 1.0:
        raise ValueError(f"dual_clip_c must be > 1 or None, got {dual_clip_c}")

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


# --------------------------------------------------------------------------------------------
# CISPO (MiniMax-M1, arXiv 2506.13585 §3.1, Eq. 4-5)
# --------------------------------------------------------------------------------------------


def cispo_per_token_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_high: float,
    epsilon_low: float | None = None,
) -> torch.Tensor:
    r"""Clipped IS-weight Policy Optimization, per-token loss (to be minimised).

    .. math::
        \ell = -\mathrm{sg}(\hat r)\,A\,\log\pi_\theta,\qquad
        \hat r = \mathrm{clip}(r, 1-\epsilon_{low}^{IS}, 1+\epsilon_{high}^{IS}),\quad
        r = \pi_\theta/\pi_{old}

    (MiniMax-M1 Eq. 4 with the IS weight of Eq. 5). Every token keeps the REINFORCE gradient
    :math:`-\hat r A \nabla\log\pi_\theta`; only the (stop-gradient) weight is clipped, there is no
    PPO ``min``. MiniMax drops the lower bound (``epsilon_low=None``, the default), which is what
    TRL's ``loss_type="cispo"`` does; TRL's ``epsilon_high`` is the absolute cap ``1 + epsilon_high``
    here (TRL ``epsilon_high=1.28`` = ours ``0.28``), so with ``epsilon_low=None`` the value and
    gradient equal TRL 1.16's ``-clamp(r, max=cap).detach() * A * logp``.

    Args:
        per_token_logps: ``(B, T)`` log pi_theta of the sampled tokens (differentiable).
        old_per_token_logps: same shape, log pi_old (treated as a constant).
        advantages: ``(B,)`` per-sequence, ``(B, 1)`` or ``(B, T)``.
        epsilon_high: upper clip of the IS weight, ``1 + epsilon_high`` (>= 0).
        epsilon_low: lower clip ``1 - epsilon_low`` (in ``[0, 1)``), or ``None`` for no lower bound.

    Returns:
        The per-token loss, shape ``(B, T)``; mask and aggregate it yourself.
    """
    advantages = _check_per_token_inputs(per_token_logps, old_per_token_logps, advantages)
    if not epsilon_high >= 0.0:
        raise ValueError(f"epsilon_high must be >= 0, got {epsilon_high}")
    if epsilon_low is not None and not 0.0 <= epsilon_low < 1.0:
        raise ValueError(f"epsilon_low must be in [0, 1) or None, got {epsilon_low}")
    with torch.no_grad():
        ratio = torch.exp(per_token_logps - old_per_token_logps.to(per_token_logps.dtype))
        weight = torch.clamp(
            ratio, min=None if epsilon_low is None else 1.0 - epsilon_low, max=1.0 + epsilon_high
        )
    return -weight * advantages * per_token_logps
