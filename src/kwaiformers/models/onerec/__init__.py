"""OneRec (V1) models, semantic-ID item tokenizer and item index (see docs/recommendation.md).

Names resolve lazily (``from kwaiformers.models.onerec import OneRecConfig``), so importing this
package stays cheap.
"""

from __future__ import annotations

from kwaiformers.utils.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
