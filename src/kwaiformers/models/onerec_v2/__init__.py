"""OneRec-V2 (lazy decoder-only). Names resolve lazily so importing this package stays cheap."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "OneRecV2Config": "configuration_onerec_v2",
    "OneRecV2ForGenerativeRecommendation": "modeling_onerec_v2",
    "OneRecV2PreTrainedModel": "modeling_onerec_v2",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
