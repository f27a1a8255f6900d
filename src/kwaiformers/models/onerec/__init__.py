"""OneRec (V1) models, semantic-ID item tokenizer and item index (see docs/recommendation.md).

Names resolve lazily (``from kwaiformers.models.onerec import OneRecConfig``), so importing this
package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "OneRecConfig": "configuration_onerec",
    "OneRecForGenerativeRecommendation": "modeling_onerec",
    "OneRecPreTrainedModel": "modeling_onerec",
    "OneRecMoE": "modeling_moe",
    "AuxFreeBiasUpdateCallback": "modeling_moe",
    "RecommendationOutput": "modeling_common",
    "SemanticIdTokenizer": "semantic_ids",
    "SemanticIdIndex": "item_index",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
