"""Reward functions and reward models (usable by any TRL trainer where they are text rewards).

Names resolve lazily (no torch import on ``import kwaiformers.rewards``).
"""

from __future__ import annotations

from kwaiformers.utils.lazy import lazy_exports

# public name -> defining module (one line each)
_LAZY: dict[str, str] = {
    "DARSConfig": "kwaiformers.rewards.dars",
    "DARSOutput": "kwaiformers.rewards.dars",
    "duration_aware_advantages": "kwaiformers.rewards.dars",
    "play_time_percentiles": "kwaiformers.rewards.dars",
    "negatives_from_labels": "kwaiformers.rewards.dars",
    "advantage_rate_by_duration": "kwaiformers.rewards.dars",
    "format_reward_advantages": "kwaiformers.rewards.format_reward",
    "legality_rate": "kwaiformers.rewards.format_reward",
    "PScoreConfig": "kwaiformers.rewards.configuration_pscore",
    "PScoreModel": "kwaiformers.rewards.modeling_pscore",
    "pscore_labels_from_batch": "kwaiformers.rewards.modeling_pscore",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
