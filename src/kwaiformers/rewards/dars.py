"""Duration-Aware Reward Shaping (DARS), OneRec-V2 technical report §3.1.1.

Pure and vectorised (no Python loop over samples). For a target exposure ``i`` of user ``u``:

1. bucket the duration on a log scale, ``F(d) = floor(log_beta(d + epsilon))``;
2. take the user's own history ``H_u = {(d_k, p_k)}`` restricted to the target's bucket,
   ``P_{u,b} = {p_j : F(d_j) = b}``;
3. the play-time percentile ``q_i = |{p_j in P_{u,b} : p_j <= p_i}| / |P_{u,b}|``;
4. the batch threshold ``tau_B`` = the ``1 - quantile`` quantile of the valid ``q`` in the batch
   (with ``quantile = 0.25``: the top quarter);
5. ``A_i = +1`` if ``q_i > tau_B`` and not negative; ``-1`` on explicit negative feedback (e.g.
   KuaiRand ``is_hate``); ``0`` otherwise (filtered out). No normalisation (the paper found it hurt).

Choices where the paper is silent (§10 q. 11 of the design note), all :class:`DARSConfig` fields:
``beta=2`` (one bucket per doubling of the duration), ``history_window=None`` (all the history
given; the history must *exclude* the target, as the sample builder provides it), negative signals
``("is_hate",)``, and the small-bucket fallback ``"population"``: when the user has fewer than
``min_bucket_size`` history entries in the target's bucket, ``q`` is the percentile among the
*population's* play times in that bucket (by default every history entry of the batch's users; a
fixed reference sample can be passed), and ``NaN`` (never positive) when that bucket is also
smaller than ``min_bucket_size``. The percentile therefore always compares videos of similar
length. The earlier default ``"user"`` (the user's whole history, all durations) leaks duration:
a long video watched half-way out-plays most of a user's short videos, so it becomes a positive
(see :func:`advantage_rate_by_duration` and ``docs/onerec_alignment.md`` for the measured leak).
``tau_B`` is computed per batch as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

__all__ = [
    "DARSConfig",
    "DARSOutput",
    "advantage_rate_by_duration",
    "duration_aware_advantages",
    "duration_buckets",
    "negatives_from_labels",
    "play_time_percentiles",
]


@dataclass
class DARSConfig:
    """Hyper-parameters of duration-aware reward shaping (OneRec-V2 §3.1.1).

    Attributes:
        beta: log base of the duration buckets ``floor(log_beta(d + epsilon))``; > 1. The paper does
            not give it; 2.0 puts 10 s and 15 s in one bucket and 60 s in another.
        epsilon: the small constant inside the log (the paper: "e.g. 1e-6").
        quantile: the top fraction of the batch's percentiles that counts as positive (0.25 = the
            paper's top quartile); ``tau_B`` is the ``1 - quantile`` quantile.
        history_window: use only the last ``history_window`` valid history entries (``None``: all).
        negative_signals: names of the feedback labels that mark an explicit negative (used by
            :func:`negatives_from_labels`; the paper names "dislike", i.e. KuaiRand ``is_hate``).
        empty_bucket_fallback: what ``q`` is when the user has fewer than ``min_bucket_size``
            history entries in the target's bucket: ``"population"`` (default: the percentile
            among the population's play times in the same bucket -- the batch's pooled histories
            or the ``population_*`` reference passed to :func:`play_time_percentiles` -- NaN if
            that bucket is also smaller than ``min_bucket_size``), ``"user"`` (the percentile among
            all of the user's history, whatever the durations: leaks duration, kept for
            comparison), ``"zero"`` (``q = 0``: never positive) or ``"nan"`` (excluded from
            ``tau_B`` and never positive).
        min_bucket_size: the fewest same-bucket entries a percentile is computed from (the
            user's own bucket, and the population's bucket in the fallback); >= 1. Default 3:
            a percentile of one or two plays is mostly noise, and on the simulator 3 makes the
            positive rate flat across durations (1 is the paper's rule whenever the user's bucket
            is non-empty).
        inclusive_threshold: use ``q >= tau_B`` instead of the paper's strict ``q > tau_B``
            (useful with short histories where many ``q`` tie at 1.0).
    """

    beta: float = 2.0
    epsilon: float = 1e-6
    quantile: float = 0.25
    history_window: int | None = None
    negative_signals: tuple[str, ...] = field(default_factory=lambda: ("is_hate",))
    empty_bucket_fallback: Literal["population", "user", "zero", "nan"] = "population"
    inclusive_threshold: bool = False
    min_bucket_size: int = 3

    def __post_init__(self) -> None:
        if not self.beta > 1:
            raise ValueError(f"DARSConfig.beta must be > 1, got {self.beta}")
        if not self.epsilon > 0:
            raise ValueError(f"DARSConfig.epsilon must be > 0, got {self.epsilon}")
        if not 0 < self.quantile < 1:
            raise ValueError(f"DARSConfig.quantile must be in (0, 1), got {self.quantile}")
        if self.history_window is not None and self.history_window < 1:
            raise ValueError(
                f"DARSConfig.history_window must be None or >= 1, got {self.history_window}"
            )
        if self.empty_bucket_fallback not in ("population", "user", "zero", "nan"):
            raise ValueError(
                "DARSConfig.empty_bucket_fallback must be 'population', 'user', 'zero' or 'nan', got "
                f"{self.empty_bucket_fallback!r}"
            )
        if isinstance(self.min_bucket_size, bool) or not isinstance(self.min_bucket_size, int) or (
            self.min_bucket_size < 1
        ):
            raise ValueError(f"DARSConfig.min_bucket_size must be an int >= 1, got {self.min_bucket_size!r}")
        self.negative_signals = tuple(self.negative_signals)


@dataclass
class DARSOutput:
    """Advantages and the intermediate quantities (for logging and tests)."""

    advantages: torch.Tensor  #: FloatTensor[B] in {-1, 0, +1}
    percentiles: torch.Tensor  #: FloatTensor[B] q_i (NaN when undefined)
    threshold: float  #: tau_B (NaN when no sample has a defined q)

    @property
    def positive_frac(self) -> float:
        return float((self.advantages > 0).float().mean()) if self.advantages.numel() else 0.0

    @property
    def negative_frac(self) -> float:
        return float((self.advantages < 0).float().mean()) if self.advantages.numel() else 0.0


def duration_buckets(durations: torch.Tensor, beta: float = 2.0, epsilon: float = 1e-6) -> torch.Tensor:
    """``F(d) = floor(log_beta(d + epsilon))`` as a float64 tensor of integers; NaN durations give
    NaN (a bucket equal to no other)."""
    if not isinstance(durations, torch.Tensor):
        raise TypeError(f"durations must be a torch.Tensor, got {type(durations).__name__}")
    d = durations.double()
    if (d[~torch.isnan(d)] < 0).any():
        raise ValueError("durations must be >= 0 (seconds)")
    return torch.floor(torch.log(d + epsilon) / math.log(beta))


def _window_mask(valid: torch.Tensor, window: int | None) -> torch.Tensor:
    if window is None:
        return valid
    # count valid entries from the end (most recent last); keep the last `window` of them
    from_end = torch.flip(torch.cumsum(torch.flip(valid.long(), [-1]), -1), [-1])
    return valid & (from_end <= window)


def play_time_percentiles(
    *,
    durations: torch.Tensor,
    play_times: torch.Tensor,
    history_durations: torch.Tensor,
    history_play_times: torch.Tensor,
    config: DARSConfig | None = None,
    population_durations: torch.Tensor | None = None,
    population_play_times: torch.Tensor | None = None,
) -> torch.Tensor:
    """Steps 1-3: the percentile ``q_i`` of each target's play time in the user's own bucket.

    Args:
        durations, play_times: FloatTensor[B] of the targets (seconds).
        history_durations, history_play_times: FloatTensor[B, H], the user's earlier exposures in
            time order (most recent last), NaN-padded; must not contain the target itself.
        config: :class:`DARSConfig`.
        population_durations, population_play_times: FloatTensor[P], the reference exposures of
            the ``"population"`` fallback (NaN entries ignored); default: every (windowed) history
            entry of the batch.

    Returns:
        FloatTensor[B] (float32); NaN where undefined (see ``empty_bucket_fallback``).
    """
    cfg = config or DARSConfig()
    for name, t, dim in (
        ("durations", durations, 1),
        ("play_times", play_times, 1),
        ("history_durations", history_durations, 2),
        ("history_play_times", history_play_times, 2),
    ):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != dim:
            shape = "[B]" if dim == 1 else "[B, H]"
            raise ValueError(f"{name} must be {shape}, got {tuple(t.shape)}")
    bsz = durations.shape[0]
    if play_times.shape != (bsz,):
        raise ValueError(f"play_times has shape {tuple(play_times.shape)}, expected ({bsz},)")
    if history_durations.shape != history_play_times.shape or history_durations.shape[0] != bsz:
        raise ValueError(
            "history_durations and history_play_times must both be [B, H] with B = "
            f"{bsz}, got {tuple(history_durations.shape)} and {tuple(history_play_times.shape)}"
        )
    if torch.isnan(durations).any() or torch.isnan(play_times).any():
        raise ValueError("durations/play_times of the targets must not be NaN")
    hd, hp = history_durations.double(), history_play_times.double()
    valid = ~(torch.isnan(hd) | torch.isnan(hp))
    valid = _window_mask(valid, cfg.history_window)
    tb = duration_buckets(durations, cfg.beta, cfg.epsilon)
    hb = duration_buckets(torch.where(valid, hd, torch.nan), cfg.beta, cfg.epsilon)
    le = valid & (hp <= play_times.double()[:, None])
    same = valid & (hb == tb[:, None])
    n_same = same.sum(-1)
    q_bucket = (le & same).sum(-1).double() / n_same.clamp(min=1)
    n_all = valid.sum(-1)
    small = n_same < cfg.min_bucket_size
    if cfg.empty_bucket_fallback == "population":
        if (population_durations is None) != (population_play_times is None):
            raise ValueError("pass both population_durations and population_play_times, or neither")
        if population_durations is None:
            pd_, pp_ = hd[valid], hp[valid]
        else:
            pd_, pp_ = population_durations.double().flatten(), population_play_times.double().flatten()
            if pd_.shape != pp_.shape:
                raise ValueError("population_durations and population_play_times must have the same length")
            ok = ~(torch.isnan(pd_) | torch.isnan(pp_))
            pd_, pp_ = pd_[ok], pp_[ok]
        pb = duration_buckets(pd_, cfg.beta, cfg.epsilon).to(tb.device)
        psame = pb[None, :] == tb[:, None]  # [B, P]
        n_pop = psame.sum(-1)
        p_le = (psame & (pp_.to(tb.device)[None, :] <= play_times.double()[:, None])).sum(-1)
        fallback = torch.where(n_pop >= cfg.min_bucket_size, p_le.double() / n_pop.clamp(min=1), torch.nan)
    elif cfg.empty_bucket_fallback == "user":
        fallback = torch.where(n_all > 0, le.sum(-1).double() / n_all.clamp(min=1), torch.nan)
    elif cfg.empty_bucket_fallback == "zero":
        fallback = torch.where(n_all > 0, torch.zeros_like(q_bucket), torch.nan)
    else:
        fallback = torch.full_like(q_bucket, torch.nan)
    return torch.where(~small, q_bucket, fallback).float()


def negatives_from_labels(
    labels: torch.Tensor, label_names: Sequence[str], negative_signals: Sequence[str] = ("is_hate",)
) -> torch.Tensor:
    """BoolTensor[B]: any of ``negative_signals`` set in ``labels`` (FloatTensor[B, F] whose columns
    are ``label_names``, e.g. :data:`kwaiformers.data.schema.FEEDBACK_LABELS`)."""
    if labels.dim() != 2 or labels.shape[1] != len(label_names):
        raise ValueError(
            f"labels must be [B, {len(label_names)}] matching label_names, got {tuple(labels.shape)}"
        )
    unknown = [s for s in negative_signals if s not in label_names]
    if unknown:
        raise ValueError(f"negative signal(s) {unknown} not in label_names {list(label_names)}")
    cols = [list(label_names).index(s) for s in negative_signals]
    if not cols:
        return torch.zeros(labels.shape[0], dtype=torch.bool, device=labels.device)
    return (labels[:, cols] > 0.5).any(-1)


def duration_aware_advantages(
    *,
    durations: torch.Tensor,
    play_times: torch.Tensor,
    history_durations: torch.Tensor,
    history_play_times: torch.Tensor,
    negatives: torch.Tensor | None = None,
    config: DARSConfig | None = None,
    return_details: bool = False,
    population_durations: torch.Tensor | None = None,
    population_play_times: torch.Tensor | None = None,
) -> torch.Tensor | DARSOutput:
    """OneRec-V2 §3.1.1 advantages ``A in {-1, 0, +1}`` for a batch of logged exposures.

    Args:
        durations, play_times: FloatTensor[B] of the target exposures (seconds).
        history_durations, history_play_times: FloatTensor[B, H] of each user's earlier exposures,
            NaN-padded (e.g. the batch keys ``history_durations`` / ``history_play_times``).
        negatives: BoolTensor[B] of explicit negative feedback (``target_is_negative``; see
            :func:`negatives_from_labels`); ``None``: no negatives.
        config: :class:`DARSConfig` (defaults documented there).
        return_details: return a :class:`DARSOutput` with ``q`` and ``tau_B`` instead of the tensor.
        population_durations, population_play_times: the ``"population"`` fallback's reference
            exposures (see :func:`play_time_percentiles`).

    Returns:
        FloatTensor[B] advantages (or :class:`DARSOutput`). An empty batch returns empty tensors.
    """
    cfg = config or DARSConfig()
    q = play_time_percentiles(
        durations=durations,
        play_times=play_times,
        history_durations=history_durations,
        history_play_times=history_play_times,
        config=cfg,
        population_durations=population_durations,
        population_play_times=population_play_times,
    )
    if negatives is None:
        negatives = torch.zeros_like(q, dtype=torch.bool)
    if not isinstance(negatives, torch.Tensor) or negatives.shape != q.shape:
        raise ValueError(f"negatives must be a BoolTensor[{q.shape[0]}] (one flag per target)")
    negatives = negatives.bool()
    defined = ~torch.isnan(q)
    if defined.any():
        tau = float(torch.quantile(q[defined].double(), 1.0 - cfg.quantile))
        above = (q >= tau) if cfg.inclusive_threshold else (q > tau)
        positive = defined & above & ~negatives
    else:
        tau = math.nan
        positive = torch.zeros_like(negatives)
    adv = torch.zeros_like(q)
    adv = adv.masked_fill(positive, 1.0).masked_fill(negatives, -1.0)
    if return_details:
        return DARSOutput(advantages=adv, percentiles=q, threshold=tau)
    return adv


def advantage_rate_by_duration(
    advantages: torch.Tensor,
    durations: torch.Tensor,
    true_completion: torch.Tensor,
    edges: Sequence[float] = (32.0, 64.0),
    low_quantile: float = 0.25,
    low_within_bucket: bool = False,
) -> dict[str, dict[str, float]]:
    """The duration-leak statistic of DARS: ``P(A = +1 | low true completion)`` per duration bucket.

    DARS exists to stop play time from rewarding long videos; if it works, exposures the user did
    *not* enjoy (true completion in the bottom ``low_quantile``) are rarely positive, whatever the
    video's length. ``true_completion`` is the ground truth (e.g. the simulator's
    ``completion_rate``), not the realised play ratio. "Low" is the bottom ``low_quantile`` of all
    exposures (the leak as users see it), or, with ``low_within_bucket``, of the exposures in the
    same duration bucket (long videos have lower completion in general; DARS ranks a video
    against videos of similar length, so this is the statistic it can make flat).

    Returns ``{bucket label: {"p_positive_low": ..., "p_positive": ..., "n_low": ..., "n": ...}}``
    with buckets ``< edges[0]``, ``[edges[0], edges[1])``, ..., ``>= edges[-1]`` seconds.
    """
    a, d, c = (torch.as_tensor(x).double().flatten() for x in (advantages, durations, true_completion))
    if not (a.shape == d.shape == c.shape):
        raise ValueError("advantages, durations and true_completion must have the same length")
    if not 0 < low_quantile < 1:
        raise ValueError(f"low_quantile must be in (0, 1), got {low_quantile}")
    edges = [float(e) for e in edges]
    if any(b <= x for x, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must increase, got {edges}")
    bounds = [-math.inf, *edges, math.inf]
    low = torch.zeros_like(c, dtype=torch.bool)
    if c.numel() and not low_within_bucket:
        low = c <= torch.quantile(c, low_quantile)
    elif c.numel():
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            m = (d >= lo) & (d < hi)
            if m.any():
                low |= m & (c <= torch.quantile(c[m], low_quantile))
    out: dict[str, dict[str, float]] = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if lo == -math.inf:
            label = "all" if hi == math.inf else f"< {hi:g} s"
        else:
            label = f">= {lo:g} s" if hi == math.inf else f"{lo:g}-{hi:g} s"
        m = (d >= lo) & (d < hi)
        ml = m & low
        out[label] = {
            "p_positive_low": float((a[ml] > 0).double().mean()) if ml.any() else math.nan,
            "p_positive": float((a[m] > 0).double().mean()) if m.any() else math.nan,
            "n_low": int(ml.sum()),
            "n": int(m.sum()),
        }
    return out
