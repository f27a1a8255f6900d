"""OneRec-V2 (lazy decoder-only). Names resolve lazily so importing this package stays cheap."""

from __future__ import annotations

from kwaiformers.utils.lazy import lazy_exports

_LAZY = {
    "OneRecV2Config": "configuration_onerec_v2",
    "OneRecV2ForGenerativeRecommendation": "modeling_onerec_v2",
    "OneRecV2PreTrainedModel": "modeling_onerec_v2",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
