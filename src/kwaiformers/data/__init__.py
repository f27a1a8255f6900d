"""Recommendation data: loaders for public logs, sample builders, collators and a user simulator.

The tensor batch every OneRec model consumes is specified once, in :mod:`kwaiformers.data.schema`.
Names below resolve lazily (importing this package imports neither torch nor datasets).
"""

from __future__ import annotations

from kwaiformers.utils.lazy import lazy_exports

_LAZY: dict[str, str] = {
    "OneRecCollator": "kwaiformers.data.collator",
    "OneRecSampleBuilder": "kwaiformers.data.samples",
    "OneRecFeatureSpec": "kwaiformers.data.samples",
    "chronological_cut_times": "kwaiformers.data.samples",
    "leave_one_out_segments": "kwaiformers.data.samples",
    "OneRecData": "kwaiformers.data.pipeline",
    "build_onerec_data": "kwaiformers.data.pipeline",
    "build_onerec_model": "kwaiformers.data.pipeline",
    "UserSimulator": "kwaiformers.data.simulator",
    "SimulatorConfig": "kwaiformers.data.simulator",
    "SimulatedLogs": "kwaiformers.data.simulator",
    "load_kuairand": "kwaiformers.data.loaders",
    "load_kuairec": "kwaiformers.data.loaders",
    "load_movielens": "kwaiformers.data.loaders",
    "standardize_kuairand": "kwaiformers.data.loaders",
    "INTERACTION_COLUMNS": "kwaiformers.data.loaders",
    "text_embeddings": "kwaiformers.data.embeddings",
    "collaborative_embeddings": "kwaiformers.data.embeddings",
    "completion_svd_embeddings": "kwaiformers.data.embeddings",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
