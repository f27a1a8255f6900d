"""Configuration of OneRec (V1), the encoder-decoder generative recommender (OneRec TR, arXiv 2506.13695)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from kwaiformers.data.schema import CONTINUOUS_FEATURES, FEEDBACK_LABELS


def check_common_config(config: PretrainedConfig) -> list[int]:
    """Validate the fields V1 and V2 share; returns the per-level codebook sizes."""
    from kwaiformers.models.onerec.modeling_common import normalize_level_sizes

    sizes = normalize_level_sizes(config.codebook_size, config.num_sid_levels)
    vocab = config.user_feature_vocab_sizes
    if not vocab or any(int(v) < 1 for v in vocab):
        raise ValueError(f"user_feature_vocab_sizes must be a non-empty list of ints >= 1, got {vocab}")
    for name in ("hidden_size", "num_attention_heads", "head_dim"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    for name in ("num_continuous_features", "num_feedback_labels", "short_seq_len", "long_seq_len"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if config.router not in ("softmax", "sigmoid"):
        raise ValueError(f"router must be 'softmax' or 'sigmoid', got {config.router!r}")
    if config.sid_combine not in ("sum", "concat"):
        raise ValueError(f"sid_combine must be 'sum' or 'concat', got {config.sid_combine!r}")
    buckets = getattr(config, "item_id_buckets", 0)
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 0:
        raise ValueError(f"item_id_buckets must be an int >= 0, got {buckets!r}")
    return sizes


# OneRec TR Table 1 ("Layers" = encoder + decoder, equal depth) and the V2 paper's 1B
# encoder-decoder baseline (V2 Table 2, Enc:Dec 1:1, sized like V2-1B).
_V1_PRESETS: dict[str, dict[str, Any]] = {
    "onerec-0.015b": dict(
        hidden_size=128, num_encoder_layers=2, num_decoder_layers=2, num_attention_heads=4,
        intermediate_size=256,
    ),
    "onerec-0.121b": dict(
        hidden_size=1024, num_encoder_layers=4, num_decoder_layers=4, num_attention_heads=8,
        intermediate_size=2048,
    ),
    "onerec-0.935b": dict(
        hidden_size=1024, num_encoder_layers=4, num_decoder_layers=4, num_attention_heads=8,
        intermediate_size=2048, num_experts=24, num_experts_per_tok=2, moe_layers="decoder",
        expert_intermediate_size=2048,
    ),
    "onerec-2.633b": dict(
        hidden_size=1024, num_encoder_layers=12, num_decoder_layers=12, num_attention_heads=8,
        intermediate_size=2048, num_experts=24, num_experts_per_tok=4,
        moe_layers="encoder_decoder", expert_intermediate_size=2048,
    ),
    "onerec-encdec-1b": dict(
        hidden_size=1792, num_encoder_layers=9, num_decoder_layers=9, num_attention_heads=14,
        intermediate_size=4 * 1792,
    ),
}


class OneRecConfig(PretrainedConfig):
    """OneRec-V1 encoder-decoder configuration (TR §2.2; KDD session-wise option).

    Encoder input (TR §2.2.1): user-static -> ``num_user_tokens`` token(s); short-term
    (``short_seq_len`` = L_s = 20); positive-feedback (``long_seq_len`` = L_p = 256, the schema's
    ``long_*`` pathway); lifelong (``lifelong_seq_len`` positions compressed by a QFormer with
    ``num_lifelong_queries`` = N_q queries and ``qformer_layers`` = N_l blocks), plus learnable
    positions over all encoder tokens.

    Choices where the paper is silent (documented, configurable): history items are represented by
    their semantic IDs (TR §4.2.2 "SID input"), the per-level embeddings combined by ``sid_combine``
    (``"sum"`` by default); decoder sub-layers are pre-norm (RMSNorm); FFNs are SwiGLU; the decoder
    uses per-level output heads on a final RMSNorm; the QFormer and encoder blocks are pre-norm
    residual.

    ``item_id_buckets`` (default 0 = off, SID-only input): a per-item ID embedding
    (``sid_embed_dim``, item id hashed modulo ``item_id_buckets``; per item when the buckets cover
    the ids; :class:`~kwaiformers.models.onerec.modeling_common.ItemIdEmbedding`, the same module as
    OneRec-V2's) concatenated with the SID embedding in the short-term and positive-feedback
    pathways (the TR's ``vid`` feature); needs ``short_item_ids``/``long_item_ids`` in the batch (the
    collator emits them). The lifelong pathway stays SID-only.

    MoE (TR §2.2.2): ``num_experts`` > 0 turns the FFN of the layers named by ``moe_layers``
    (``"decoder"`` or ``"encoder_decoder"``) into :class:`~kwaiformers.models.onerec.modeling_moe.OneRecMoE`
    with ``num_experts_per_tok`` active experts, ``router`` softmax (KDD) or sigmoid (DeepSeek-V3)
    and aux-loss-free balancing (``aux_free_bias_update_speed`` = gamma).

    ``session_len`` = 1 is the TR's point-wise target; 5 is the KDD session-wise target (the
    decoder input is ``S`` blocks ``[BOS, s^1..s^L]``; the NTP loss sums over all items and levels).
    """

    model_type = "onerec"

    def __init__(
        self,
        user_feature_vocab_sizes: Sequence[int] = (100_000, 3, 10),
        num_sid_levels: int = 3,
        codebook_size: int | Sequence[int] = 8192,
        num_continuous_features: int = len(CONTINUOUS_FEATURES),
        num_feedback_labels: int = len(FEEDBACK_LABELS),
        num_user_tokens: int = 1,
        short_seq_len: int = 20,
        long_seq_len: int = 256,
        lifelong_seq_len: int = 2000,
        num_lifelong_queries: int = 128,
        qformer_layers: int = 2,
        user_feature_embed_dim: int = 64,
        sid_embed_dim: int | None = None,
        sid_combine: str = "sum",
        item_id_buckets: int = 0,
        feature_embed_dim: int = 128,
        hidden_size: int = 1024,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        num_attention_heads: int = 8,
        head_dim: int | None = None,
        intermediate_size: int | None = None,
        num_experts: int = 0,
        num_experts_per_tok: int = 2,
        moe_layers: str = "decoder",
        expert_intermediate_size: int | None = None,
        num_shared_experts: int = 0,
        router: str = "softmax",
        norm_topk_prob: bool | None = None,
        aux_free_bias: bool = True,
        aux_free_bias_update_speed: float = 0.001,
        session_len: int = 1,
        rms_norm_eps: float = 1e-6,
        attention_dropout: float = 0.0,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        **kwargs: Any,
    ) -> None:
        self.user_feature_vocab_sizes = [int(v) for v in user_feature_vocab_sizes]
        self.num_sid_levels = num_sid_levels
        self.codebook_size = codebook_size if isinstance(codebook_size, int) else list(codebook_size)
        self.num_continuous_features = num_continuous_features
        self.num_feedback_labels = num_feedback_labels
        self.num_user_tokens = num_user_tokens
        self.short_seq_len = short_seq_len
        self.long_seq_len = long_seq_len
        self.lifelong_seq_len = lifelong_seq_len
        self.num_lifelong_queries = num_lifelong_queries
        self.qformer_layers = qformer_layers
        self.user_feature_embed_dim = user_feature_embed_dim
        self.sid_embed_dim = sid_embed_dim or hidden_size
        self.sid_combine = sid_combine
        self.item_id_buckets = item_id_buckets
        self.feature_embed_dim = feature_embed_dim
        self.hidden_size = hidden_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.num_attention_heads = num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.intermediate_size = intermediate_size or 2 * hidden_size
        self.num_experts = num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.moe_layers = moe_layers
        self.expert_intermediate_size = expert_intermediate_size or self.intermediate_size
        self.num_shared_experts = num_shared_experts
        self.router = router
        self.norm_topk_prob = norm_topk_prob
        self.aux_free_bias = aux_free_bias
        self.aux_free_bias_update_speed = aux_free_bias_update_speed
        self.session_len = session_len
        self.rms_norm_eps = rms_norm_eps
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.num_hidden_layers = num_decoder_layers  # what transformers' caches size themselves by
        level_sizes = check_common_config(self)
        if moe_layers not in ("decoder", "encoder_decoder"):
            raise ValueError(f"moe_layers must be 'decoder' or 'encoder_decoder', got {moe_layers!r}")
        if not isinstance(session_len, int) or session_len < 1:
            raise ValueError(f"session_len must be a positive int, got {session_len!r}")
        if num_experts and not 1 <= num_experts_per_tok <= num_experts:
            raise ValueError(f"num_experts_per_tok must be in [1, num_experts], got {num_experts_per_tok}")
        kwargs.setdefault("bos_token_id", max(level_sizes))
        kwargs.setdefault("pad_token_id", max(level_sizes) + 1)
        kwargs.setdefault("decoder_start_token_id", max(level_sizes))
        kwargs["is_encoder_decoder"] = True
        super().__init__(**kwargs)

    @property
    def level_sizes(self) -> list[int]:
        """Per-level codebook sizes ``[K_1, ..., K_L]``."""
        from kwaiformers.models.onerec.modeling_common import normalize_level_sizes

        return normalize_level_sizes(self.codebook_size, self.num_sid_levels)

    @classmethod
    def presets(cls) -> list[str]:
        """Names accepted by :meth:`from_preset` (TR Table 1 and the V2 paper's 1B enc-dec baseline)."""
        return sorted(_V1_PRESETS)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> OneRecConfig:
        """A paper-size configuration, e.g. ``"onerec-0.935b"`` (TR Table 1)."""
        if name not in _V1_PRESETS:
            raise ValueError(f"unknown OneRec preset {name!r}; choose from {cls.presets()}")
        kwargs = copy.deepcopy(_V1_PRESETS[name])
        kwargs.update(overrides)
        return cls(**kwargs)
