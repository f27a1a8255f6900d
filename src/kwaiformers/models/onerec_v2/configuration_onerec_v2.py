"""Configuration of OneRec-V2, the lazy decoder-only generative recommender (arXiv 2508.20900 §2.2)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from kwaiformers.data.schema import CONTINUOUS_FEATURES, FEEDBACK_LABELS

# V2 Table 5 (d_model, layers, heads, embed_dim); d_head = d_model / heads (64 for 0.1B/0.2B, 128 else).
_V2_TABLE5: dict[str, dict[str, Any]] = {
    "onerec-v2-0.1b": dict(hidden_size=640, num_hidden_layers=12, num_attention_heads=10, embed_dim=32),
    "onerec-v2-0.2b": dict(hidden_size=896, num_hidden_layers=12, num_attention_heads=14, embed_dim=45),
    "onerec-v2-0.5b": dict(hidden_size=1408, num_hidden_layers=14, num_attention_heads=11, embed_dim=70),
    "onerec-v2-1b": dict(hidden_size=1792, num_hidden_layers=18, num_attention_heads=14, embed_dim=90),
    "onerec-v2-2b": dict(hidden_size=2304, num_hidden_layers=22, num_attention_heads=18, embed_dim=115),
    "onerec-v2-4b": dict(hidden_size=2944, num_hidden_layers=26, num_attention_heads=23, embed_dim=147),
    "onerec-v2-8b": dict(hidden_size=3584, num_hidden_layers=34, num_attention_heads=28, embed_dim=179),
    "onerec-v2-moe-4b": dict(
        hidden_size=1408,
        num_hidden_layers=14,
        num_attention_heads=11,
        embed_dim=70,
        use_moe=True,
        first_k_dense=2,
        num_routed_experts=53,
        num_shared_experts=1,
        num_experts_per_tok=3,
        moe_intermediate_size=1408,
    ),
}
for _preset in _V2_TABLE5.values():
    _preset["head_dim"] = _preset["hidden_size"] // _preset["num_attention_heads"]
    _preset["num_kv_groups"] = _preset["num_attention_heads"]  # G_kv = N_head (V2 §2.2 defaults)
    _preset["intermediate_size"] = 4 * _preset["hidden_size"]


class OneRecV2Config(PretrainedConfig):
    """OneRec-V2 lazy decoder-only configuration.

    Context (V2 §2.2.1, Fig. 4): ``num_user_tokens`` user-static tokens (N_s), ``short_seq_len``
    (T_short) and ``long_seq_len`` (T_long) history positions. Each context position is mapped by its
    pathway's ``Dense-LeakyReLU-Dense`` block to ``d_context = S_kv * L_kv * G_kv * head_dim`` and
    split into per-set K/V (RMSNorm each; V = K when ``kv_split=1``).

    Choices where the paper is silent (documented, configurable):

    * ``embed_dim`` is the per-feature embedding size (SID level tables, continuous and label
      projections; Table 5's embed_dim column); history SIDs are ``sid_combine="concat"``-ed.
    * ``context_position_embeddings``: learnable positions added to the context before the split.
    * ``item_id_buckets`` (default 0 = off, the paper's SID-only input): a per-item ID embedding
      (``embed_dim``, item id hashed modulo ``item_id_buckets``; per item when the buckets cover
      the ids; :class:`~kwaiformers.models.onerec.modeling_common.ItemIdEmbedding`, shared with V1)
      concatenated with the SID embedding in the short and long pathways; needs
      ``short_item_ids``/``long_item_ids`` in the batch (the collator emits them). V2 otherwise
      sees a history item only through its codes.
    * ``context_self_attention_layers`` (default 0 = the paper: every context position is encoded
      independently by its pathway): that many pre-norm bidirectional self-attention layers
      (:class:`~kwaiformers.models.onerec.modeling_common.PreNormSelfAttentionLayer`, SwiGLU FFN of
      ``4 * d_context``) over the whole context at width ``d_context``, after the position
      embeddings and before the K/V split, with padded positions masked as keys;
      ``context_attention_heads`` defaults to ``d_context / head_dim``. The context is still
      computed once per user, so the decoder stays lazy.
    * The dense FFN is SwiGLU with ``intermediate_size`` (default ``4 * hidden_size``).
    * Decoder input: per-position tables (BOS vector, then one table per level, V2 "embedding
      tables"). Output: position-specific RMSNorm + Linear heads.

    Args (selection): ``codebook_size`` int or per-level list (K); ``num_sid_levels`` (L);
    ``num_kv_sets`` (L_kv), ``kv_split`` (S_kv in {1, 2}), ``num_kv_groups`` (G_kv);
    ``use_moe``/``first_k_dense``/``num_routed_experts``/``num_shared_experts``/
    ``num_experts_per_tok``/``moe_intermediate_size``/``router``/``aux_free_bias_update_speed``.
    """

    model_type = "onerec_v2"

    def __init__(
        self,
        user_feature_vocab_sizes: Sequence[int] = (100_000, 3, 10),
        num_sid_levels: int = 3,
        codebook_size: int | Sequence[int] = 8192,
        num_continuous_features: int = len(CONTINUOUS_FEATURES),
        num_feedback_labels: int = len(FEEDBACK_LABELS),
        num_user_tokens: int = 1,
        short_seq_len: int = 20,
        long_seq_len: int = 491,
        embed_dim: int = 90,
        sid_combine: str = "concat",
        context_hidden_size: int | None = None,
        context_position_embeddings: bool = True,
        item_id_buckets: int = 0,
        context_self_attention_layers: int = 0,
        context_attention_heads: int | None = None,
        hidden_size: int = 1792,
        num_hidden_layers: int = 18,
        num_attention_heads: int = 14,
        head_dim: int | None = None,
        num_kv_groups: int | None = None,
        num_kv_sets: int = 1,
        kv_split: int = 1,
        intermediate_size: int | None = None,
        use_moe: bool = False,
        first_k_dense: int = 2,
        num_routed_experts: int = 53,
        num_shared_experts: int = 1,
        num_experts_per_tok: int = 3,
        moe_intermediate_size: int = 1408,
        router: str = "sigmoid",
        norm_topk_prob: bool | None = None,
        aux_free_bias: bool = True,
        aux_free_bias_update_speed: float = 0.001,
        rms_norm_eps: float = 1e-6,
        attention_dropout: float = 0.0,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        **kwargs: Any,
    ) -> None:
        from kwaiformers.models.onerec.configuration_onerec import check_common_config

        self.user_feature_vocab_sizes = [int(v) for v in user_feature_vocab_sizes]
        self.num_sid_levels = num_sid_levels
        self.codebook_size = codebook_size if isinstance(codebook_size, int) else list(codebook_size)
        self.num_continuous_features = num_continuous_features
        self.num_feedback_labels = num_feedback_labels
        self.num_user_tokens = num_user_tokens
        self.short_seq_len = short_seq_len
        self.long_seq_len = long_seq_len
        self.embed_dim = embed_dim
        self.sid_combine = sid_combine
        self.context_hidden_size = context_hidden_size or hidden_size
        self.context_position_embeddings = context_position_embeddings
        self.item_id_buckets = item_id_buckets
        self.context_self_attention_layers = context_self_attention_layers
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.num_kv_groups = num_kv_groups or num_attention_heads
        self.num_kv_sets = num_kv_sets
        self.kv_split = kv_split
        self.intermediate_size = intermediate_size or 4 * hidden_size
        self.use_moe = use_moe
        self.first_k_dense = first_k_dense
        self.num_routed_experts = num_routed_experts
        self.num_shared_experts = num_shared_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.moe_intermediate_size = moe_intermediate_size
        self.router = router
        self.norm_topk_prob = norm_topk_prob
        self.aux_free_bias = aux_free_bias
        self.aux_free_bias_update_speed = aux_free_bias_update_speed
        self.rms_norm_eps = rms_norm_eps
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        level_sizes = check_common_config(self)
        if kv_split not in (1, 2):
            raise ValueError(f"kv_split (S_kv) must be 1 or 2, got {kv_split}")
        if num_kv_sets < 1 or num_kv_sets > num_hidden_layers:
            raise ValueError(f"num_kv_sets (L_kv) must be in [1, num_hidden_layers], got {num_kv_sets}")
        if self.num_attention_heads % self.num_kv_groups:
            raise ValueError(
                f"num_attention_heads={num_attention_heads} must be a multiple of num_kv_groups="
                f"{self.num_kv_groups} (GQA over G_kv groups)"
            )
        if not isinstance(context_self_attention_layers, int) or context_self_attention_layers < 0:
            raise ValueError(
                f"context_self_attention_layers must be an int >= 0, got {context_self_attention_layers!r}"
            )
        self.context_attention_heads = context_attention_heads or self.context_dim // self.head_dim
        if self.context_attention_heads < 1 or self.context_dim % self.context_attention_heads:
            raise ValueError(
                f"context_attention_heads={context_attention_heads} must divide d_context={self.context_dim}"
                " (S_kv * L_kv * G_kv * head_dim)"
            )
        kwargs.setdefault("bos_token_id", max(level_sizes))
        kwargs.setdefault("pad_token_id", max(level_sizes) + 1)
        kwargs.setdefault("is_encoder_decoder", False)
        super().__init__(**kwargs)

    @property
    def level_sizes(self) -> list[int]:
        """Per-level codebook sizes ``[K_1, ..., K_L]``."""
        from kwaiformers.models.onerec.modeling_common import normalize_level_sizes

        return normalize_level_sizes(self.codebook_size, self.num_sid_levels)

    @property
    def context_dim(self) -> int:
        """``d_context = S_kv * L_kv * G_kv * d_head`` (V2 §2.2.1)."""
        return self.kv_split * self.num_kv_sets * self.num_kv_groups * self.head_dim

    def kv_set_for_layer(self, layer_idx: int) -> int:
        """KV set used by lazy block ``l``: ``floor(l * L_kv / N_layer)`` (V2 §2.2.2)."""
        return (layer_idx * self.num_kv_sets) // self.num_hidden_layers

    @classmethod
    def presets(cls) -> list[str]:
        """Names accepted by :meth:`from_preset` (V2 Table 5)."""
        return sorted(_V2_TABLE5)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> OneRecV2Config:
        """A paper-size configuration (V2 Table 5), e.g. ``"onerec-v2-1b"`` or ``"onerec-v2-moe-4b"``."""
        if name not in _V2_TABLE5:
            raise ValueError(f"unknown OneRec-V2 preset {name!r}; choose from {cls.presets()}")
        kwargs = copy.deepcopy(_V2_TABLE5[name])
        kwargs.update(overrides)
        return cls(**kwargs)
