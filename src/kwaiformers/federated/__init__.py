"""E-Tree: tree-structured decentralised aggregation, KMA clustering and baselines.

Names resolve lazily (this package must not import torch on ``import kwaiformers.federated``).
"""

from __future__ import annotations

from kwaiformers.utils.lazy import lazy_exports

_LAZY: dict[str, str] = {
    "Group": "tree",
    "TreeSpec": "tree",
    "block_placement": "tree",
    "partition": "partition",
    "label_histograms": "partition",
    "kma": "kma",
    "KMAResult": "kma",
    "all_pairs_min_delay": "kma",
    "random_geometric_delays": "kma",
    "select_public_nodes": "kma",
    "medoid": "kma",
    "ETreeAverager": "averagers",
    "FedAvgAverager": "averagers",
    "GossipAverager": "averagers",
    "GroupedAverager": "averagers",
    "IndividualTraining": "averagers",
    "DeviceFailure": "averagers",
    "check_not_sharded": "averagers",
    "flatten_model": "averagers",
    "load_flat": "averagers",
    "ETreeCallback": "callbacks",
    "make_train_dataloader_rank_local": "callbacks",
    "register_checkpoint_hooks": "checkpoint",
    "save_device_states": "checkpoint",
    "load_device_states": "checkpoint",
    "ETreeRecipeConfig": "recipe",
    "run_recipe": "recipe",
    "check_launch": "launch",
    "launch_local": "launch",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
