"""Building blocks shared by OneRec-V1 and OneRec-V2: attention through the transformers attention
interface, feature embedders for the batch schema, and the shared-context beam search.

Conventions
-----------
* Semantic IDs use per-level vocabularies of sizes ``level_sizes`` (``K`` per level, optionally a
  different size for a TIGER-style extra level). History codes equal to ``PAD_CODE`` (-1) map to a
  padding row of each level table.
* Decoder "tokens" for :meth:`generate` use one flat id space: code ``c`` of any level is id ``c``
  and BOS is id ``max(level_sizes)`` (``config.bos_token_id``), PAD ``max(level_sizes) + 1``; the
  level of a token is its position. Logits of a level smaller than ``max(level_sizes)`` are padded with the dtype minimum.
* Decoder hidden states carry a candidate axis: ``[B, M, T, d]`` with ``M`` candidates (1 while
  training, the beam while searching, ``G`` in ``sid_log_probs``). Cross-attention folds the
  candidates into the query axis, so the context (V1 encoder output / V2 context K/V) is computed
  and stored **once per user** and shared by every candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from kwaiformers.data.schema import PAD_CODE, validate_onerec_batch


def normalize_level_sizes(codebook_size: int | Sequence[int], num_sid_levels: int) -> list[int]:
    """``codebook_size`` (int or per-level list) -> list of ``num_sid_levels`` positive ints."""
    if isinstance(num_sid_levels, bool) or not isinstance(num_sid_levels, int) or num_sid_levels < 1:
        raise ValueError(f"num_sid_levels must be a positive int, got {num_sid_levels!r}")
    if isinstance(codebook_size, int) and not isinstance(codebook_size, bool):
        sizes = [codebook_size] * num_sid_levels
    elif isinstance(codebook_size, Sequence) and not isinstance(codebook_size, str):
        sizes = [int(s) for s in codebook_size]
        if len(sizes) != num_sid_levels:
            raise ValueError(
                f"codebook_size has {len(sizes)} per-level sizes, expected num_sid_levels={num_sid_levels}"
            )
    else:
        raise TypeError(f"codebook_size must be an int or a list of ints, got {codebook_size!r}")
    if any(s < 1 for s in sizes):
        raise ValueError(f"codebook_size entries must be >= 1, got {sizes}")
    return sizes


# --------------------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention (``[B, H, Q, D]`` query, ``[B, G, S, D]`` key/value, additive mask)."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, weights


@torch.no_grad()
def init_common_weights(module: nn.Module, std: float) -> None:
    """Shared ``_init_weights`` of both OneRec generations: normal(0, std) Linear/Embedding
    weights, zero biases and padding rows, unit RMSNorm scales, normal ``bos_embedding`` /
    ``queries`` parameters when a module owns them directly."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.RMSNorm):
        nn.init.ones_(module.weight)
    for name in ("bos_embedding", "queries"):
        param = module._parameters.get(name)
        if param is not None:
            nn.init.normal_(param, std=std)


def any_true(mask: torch.Tensor) -> bool:
    """``bool(mask.any())``, but ``False`` for meta tensors (shape-only runs such as FLOP counting)."""
    return mask.device.type != "meta" and bool(mask.any())


def validate_batch(batch: Mapping[str, torch.Tensor], num_levels: int) -> None:
    """:func:`~kwaiformers.data.schema.validate_onerec_batch`, skipped for meta tensors."""
    if all(getattr(v, "device", None) is None or v.device.type != "meta" for v in batch.values()):
        validate_onerec_batch(batch, num_levels=num_levels)


def additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool ``keep`` mask -> additive float mask (0 where kept, dtype minimum elsewhere)."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(
        ~keep, torch.finfo(dtype).min
    )


def padding_mask(keep: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Key-padding mask ``[B, S]`` -> additive ``[B, 1, 1, S]`` (``None`` when all kept)."""
    if keep is None or (keep.device.type != "meta" and bool(keep.all())):
        return None
    return additive_mask(keep[:, None, None, :], dtype)


def causal_mask(q_len: int, past_len: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive causal mask ``[1, 1, q_len, past_len + q_len]``."""
    q_pos = torch.arange(q_len, device=device)[:, None] + past_len
    k_pos = torch.arange(past_len + q_len, device=device)[None, :]
    return additive_mask((k_pos <= q_pos)[None, None], dtype)


class OneRecAttention(nn.Module):
    """Multi-head attention dispatched through ``ALL_ATTENTION_FUNCTIONS`` (sdpa default, eager fallback).

    Three uses:

    * self-attention (``kv_states=None``), optionally causal with a ``Cache`` (``layer_idx``);
    * cross-attention with its own ``W_k/W_v`` (V1, QFormer): call :meth:`project_kv` once on the
      memory and pass the result as ``kv``;
    * *lazy* cross-attention (V2, ``has_kv_proj=False``): only ``W_q``/``W_o``; ``kv`` is the
      context processor's ``(k, v)`` of shape ``[B, G_kv, S, d_head]`` (GQA over ``G_kv`` groups).
    """

    def __init__(
        self,
        config,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        num_kv_heads: int | None = None,
        kv_input_size: int | None = None,
        has_kv_proj: bool = True,
        is_causal: bool = False,
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        num_kv_heads = num_kv_heads or num_heads
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} must be a multiple of num_kv_heads={num_kv_heads}")
        self.config = config
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.num_key_value_groups = num_heads // num_kv_heads
        self.head_dim = head_dim
        self.scaling = head_dim**-0.5
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        self.attention_dropout = float(getattr(config, "attention_dropout", 0.0))
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        if has_kv_proj:
            kv_in = kv_input_size or hidden_size
            self.k_proj = nn.Linear(kv_in, num_kv_heads * head_dim, bias=False)
            self.v_proj = nn.Linear(kv_in, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=False)

    def project_kv(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory ``[B, S, d]`` -> ``(k, v)`` each ``[B, H_kv, S, head_dim]``."""
        b, s, _ = states.shape
        k = self.k_proj(states).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(states).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        return k, v

    def _attend(self, q, k, v, mask) -> torch.Tensor:
        interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        out, _ = interface(
            self,
            q,
            k,
            v,
            mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
        )
        return out

    def forward(
        self,
        hidden_states: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
    ) -> torch.Tensor:
        """``hidden_states [B, Q, d]``; ``kv`` given -> cross-attention, else self-attention."""
        b, q_len, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(b, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        if kv is None:
            k, v = self.project_kv(hidden_states)
            past_len = 0
            if past_key_values is not None:
                past_len = past_key_values.get_seq_length(self.layer_idx)
                k, v = past_key_values.update(k, v, self.layer_idx)
            if self.is_causal and q_len > 1:
                causal = causal_mask(q_len, past_len, q.dtype, q.device)
                attention_mask = causal if attention_mask is None else attention_mask + causal
        else:
            k, v = kv
        out = self._attend(q, k.to(q.dtype), v.to(q.dtype), attention_mask)
        return self.o_proj(out.reshape(b, q_len, self.num_heads * self.head_dim))


class PreNormSelfAttentionLayer(GradientCheckpointingLayer):
    """Pre-norm full (bidirectional) attention layer: ``z += SelfAttn(RMSNorm(z))``,
    ``z += FFN(RMSNorm(z))``, with an additive key-padding ``attention_mask`` (:func:`padding_mask`).
    V1's encoder layers and V2's optional context self-attention."""

    def __init__(self, config, hidden_size: int, num_heads: int, head_dim: int, mlp: nn.Module) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(hidden_size, eps=config.rms_norm_eps)
        self.self_attn = OneRecAttention(config, hidden_size, num_heads, head_dim)
        self.ffn_norm = nn.RMSNorm(hidden_size, eps=config.rms_norm_eps)
        self.mlp = mlp

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = hidden_states + self.self_attn(self.attn_norm(hidden_states), attention_mask=attention_mask)
        return h + self.mlp(self.ffn_norm(h))


class DenseBlock(nn.Module):
    """``Dense(LeakyReLU(Dense(x)))`` (OneRec TR §2.2.1)."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.leaky_relu(self.fc1(x)))


# --------------------------------------------------------------------------------------------------
# feature embedding (batch schema -> per-position vectors)
# --------------------------------------------------------------------------------------------------


class SidEmbeddings(nn.Module):
    """Per-level semantic-ID tables (``PAD_CODE`` -> a zero padding row), combined by sum or concat."""

    def __init__(self, level_sizes: Sequence[int], embed_dim: int, combine: str = "sum") -> None:
        super().__init__()
        if combine not in ("sum", "concat"):
            raise ValueError(f"sid_combine must be 'sum' or 'concat', got {combine!r}")
        self.level_sizes = list(level_sizes)
        self.combine = combine
        self.tables = nn.ModuleList(
            [nn.Embedding(k + 1, embed_dim, padding_idx=k) for k in self.level_sizes]
        )
        self.out_dim = embed_dim * (len(self.level_sizes) if combine == "concat" else 1)

    def forward(self, sids: torch.Tensor, name: str = "sids") -> torch.Tensor:
        if sids.shape[-1] != len(self.level_sizes):
            raise ValueError(
                f"batch[{name!r}] has {sids.shape[-1]} levels, expected {len(self.level_sizes)}"
            )
        parts = []
        for level, (table, k) in enumerate(zip(self.tables, self.level_sizes)):
            codes = sids[..., level]
            bad = (codes >= k) | ((codes < 0) & (codes != PAD_CODE))
            if any_true(bad):
                raise ValueError(
                    f"batch[{name!r}] level {level} has codes outside [0, {k}) (padding is {PAD_CODE})"
                )
            parts.append(table(torch.where(codes == PAD_CODE, torch.full_like(codes, k), codes)))
        if self.combine == "sum":
            return torch.stack(parts, 0).sum(0)
        return torch.cat(parts, -1)


class ItemIdEmbedding(nn.Embedding):
    """Optional per-item (or hashed) ID embedding of the history positions, concatenated with the
    SID embedding in the short and long pathways (``item_id_buckets`` of OneRec-V1 and V2; 0 = off,
    the papers' SID-only input). Item id ``i`` -> row ``i % buckets`` (one row per item when the
    buckets cover the ids); ``-1`` (padding) -> a zero padding row. The ids come from
    ``batch["{name}_item_ids"]`` ``[B, T]``, which the collator emits."""

    def __init__(self, buckets: int, embed_dim: int) -> None:
        super().__init__(buckets + 1, embed_dim, padding_idx=buckets)
        self.buckets = buckets

    def for_pathway(self, batch: Mapping[str, torch.Tensor], name: str, shape: Sequence[int]) -> torch.Tensor:
        """The ``[B, T, embed_dim]`` ID embeddings of pathway ``name`` (``"short"`` / ``"long"``)."""
        ids = batch.get(f"{name}_item_ids")
        if ids is None or tuple(ids.shape) != tuple(shape):
            raise ValueError(f"config.item_id_buckets > 0 needs batch['{name}_item_ids'] [B, T] (item ids, "
                             f"-1 = padding) matching {name}_sids; got "
                             f"{None if ids is None else tuple(ids.shape)}")
        ids = ids.long()
        return self(torch.where(ids < 0, torch.full_like(ids, self.buckets), ids % self.buckets))


class PathwayEmbedder(nn.Module):
    """One history pathway: SID embedding ++ projected continuous features ++ projected labels ->
    ``DenseBlock`` -> ``out_size`` per position (OneRec TR §2.2.1; V2 context "Linear block")."""

    def __init__(
        self,
        sid_dim: int,
        num_continuous: int,
        num_labels: int,
        feat_dim: int,
        hidden_size: int,
        out_size: int,
    ) -> None:
        super().__init__()
        self.num_continuous = num_continuous
        self.num_labels = num_labels
        self.feat_proj = nn.Linear(num_continuous, feat_dim) if num_continuous else None
        self.label_proj = nn.Linear(num_labels, feat_dim) if num_labels else None
        in_size = sid_dim + feat_dim * (int(num_continuous > 0) + int(num_labels > 0))
        self.dense = DenseBlock(in_size, hidden_size, out_size)

    def forward(
        self, sid_emb: torch.Tensor, feats: torch.Tensor | None, labels: torch.Tensor | None, name: str
    ) -> torch.Tensor:
        parts = [sid_emb]
        for proj, value, count, key in (
            (self.feat_proj, feats, self.num_continuous, f"{name}_feats"),
            (self.label_proj, labels, self.num_labels, f"{name}_labels"),
        ):
            if proj is None:
                continue
            if value is None:
                value = sid_emb.new_zeros(*sid_emb.shape[:-1], count)
            elif value.shape[-1] != count or value.shape[:-1] != sid_emb.shape[:-1]:
                raise ValueError(
                    f"batch[{key!r}] must be [B, T, {count}] matching the SIDs, got {tuple(value.shape)}"
                )
            parts.append(proj(torch.nan_to_num(value.to(sid_emb.dtype))))
        return self.dense(torch.cat(parts, -1))


class UserStaticEmbedder(nn.Module):
    """Categorical user features -> ``num_tokens`` vectors of ``out_size`` (TR user-static pathway)."""

    def __init__(
        self, vocab_sizes: Sequence[int], embed_dim: int, hidden_size: int, out_size: int, num_tokens: int
    ) -> None:
        super().__init__()
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        if not self.vocab_sizes or any(v < 1 for v in self.vocab_sizes):
            raise ValueError(f"user_feature_vocab_sizes must be positive ints, got {vocab_sizes}")
        self.num_tokens = num_tokens
        self.out_size = out_size
        self.tables = nn.ModuleList([nn.Embedding(v, embed_dim) for v in self.vocab_sizes])
        self.dense = DenseBlock(embed_dim * len(self.vocab_sizes), hidden_size, out_size * num_tokens)

    def forward(self, user_static: torch.Tensor) -> torch.Tensor:
        if user_static.dim() != 2 or user_static.shape[1] != len(self.vocab_sizes):
            raise ValueError(
                f"batch['user_static'] must be [B, {len(self.vocab_sizes)}], got {tuple(user_static.shape)}"
            )
        limits = torch.tensor(self.vocab_sizes, device=user_static.device)
        if any_true((user_static < 0) | (user_static >= limits)):
            raise ValueError(
                f"batch['user_static'] has ids outside [0, user_feature_vocab_sizes={self.vocab_sizes})"
            )
        emb = torch.cat([t(user_static[:, i]) for i, t in enumerate(self.tables)], -1)
        return self.dense(emb).view(user_static.shape[0], self.num_tokens, self.out_size)


# --------------------------------------------------------------------------------------------------
# outputs and the shared-context beam search
# --------------------------------------------------------------------------------------------------


@dataclass
class GenerativeRecommendationOutput(ModelOutput):
    """Forward output of the OneRec models.

    Attributes:
        loss: NTP loss (V1: summed over levels/items; V2: mean over levels), averaged over users.
        logits: ``[B, L, K]`` per-level logits, teacher-forced on ``target_sids`` (``[B, S, L, K]``
            for session-wise V1, or ``[B, T, K]`` when called with ``input_ids``/``decoder_input_ids``).
        past_key_values: self-attention cache when ``use_cache``.
        context_kv: V2 context K/V sets (reused by :meth:`generate`).
        encoder_last_hidden_state: V1 encoder output.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Any = None
    context_kv: Any = None
    encoder_last_hidden_state: torch.FloatTensor | None = None


@dataclass
class RecommendationOutput(ModelOutput):
    """Output of ``recommend``: ``item_ids [B, n]`` (-1 = illegal tuple or no index), ``sids [B, n, L]``,
    ``log_probs [B, n]`` (item-level, summed over levels), ``legal [B, n]``."""

    item_ids: torch.LongTensor | None = None
    sids: torch.LongTensor | None = None
    log_probs: torch.FloatTensor | None = None
    legal: torch.BoolTensor | None = None


def pad_level_logits(level_logits: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """Stack per-level logits ``[..., K_l]`` into ``[..., L, width]`` padding with the dtype minimum."""
    padded = []
    for x in level_logits:
        if x.shape[-1] < width:
            x = F.pad(x, (0, width - x.shape[-1]), value=torch.finfo(x.dtype).min)
        padded.append(x)
    return torch.stack(padded, -2)


def reorder_cache(cache, index: torch.Tensor) -> None:
    """Gather rows ``index`` of every self-attention layer of a transformers ``Cache`` in place."""
    for layer in getattr(cache, "layers", []):
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)


def validate_sid_candidates(sids: torch.Tensor, batch_size: int, level_sizes: Sequence[int]) -> None:
    """Check ``sids`` is ``LongTensor[B, G, L]`` of legal code values."""
    if not isinstance(sids, torch.Tensor) or sids.dtype not in (torch.long, torch.int32, torch.int64):
        raise TypeError("sids must be an integer torch.Tensor of shape [B, G, L]")
    if sids.dim() != 3 or sids.shape[0] != batch_size or sids.shape[2] != len(level_sizes):
        raise ValueError(
            f"sids must be [B={batch_size}, G, L={len(level_sizes)}], got {tuple(sids.shape)}"
        )
    limits = torch.tensor(level_sizes, device=sids.device)
    if any_true((sids < 0) | (sids >= limits)):
        raise ValueError(f"sids has codes outside [0, level_size) for level sizes {list(level_sizes)}")


@torch.no_grad()
def shared_context_beam_search(
    step_fn: Callable[[torch.Tensor, int, Any], tuple[torch.Tensor, Any]],
    batch_size: int,
    level_sizes: Sequence[int],
    beam_size: int,
    device: torch.device,
    item_index=None,
    constrained: bool = True,
    state: Any = None,
    reorder_fn: Callable[[Any, torch.Tensor], Any] | None = None,
    exclusion: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-length beam search over the ``L`` code levels with the context shared per user.

    ``step_fn(codes, level, state) -> (log_probs [B, M, K_level], state)`` runs the decoder on the
    newest token of each of the ``M`` current candidates (``codes`` is ``[B, M]``; the BOS step
    passes ``codes=None`` with ``M = 1``). ``reorder_fn(state, flat_index)`` gathers the
    self-attention cache rows (``flat_index`` indexes the flattened ``[B * M_prev]`` rows).

    ``exclusion`` (an :class:`~kwaiformers.models.onerec.item_index.ItemExclusion`, constrained
    search only) masks, per user, every code whose subtree holds only excluded items (seen-item
    exclusion inside the search, so the surviving beams all end in allowed items).

    Returns ``(sids [B, beam, L], scores [B, beam])`` sorted by score; dead beams (fewer legal
    tuples than ``beam_size``) have score ``-inf``.
    """
    if constrained and item_index is None:
        raise ValueError("constrained beam search needs an item_index (a SemanticIdIndex)")
    if exclusion is not None and not constrained:
        raise ValueError("exclude_items needs the constrained (trie) beam search")
    num_levels = len(level_sizes)
    scores = torch.zeros(batch_size, 1, device=device)
    sids = torch.zeros(batch_size, 1, 0, dtype=torch.long, device=device)
    codes = None
    for level in range(num_levels):
        logp, state = step_fn(codes, level, state)  # [B, M, K]
        logp = logp.float()
        m, k = logp.shape[1], logp.shape[2]
        if constrained:
            allowed = item_index.allowed_next_codes(sids.reshape(batch_size * m, level).cpu())
            allowed = torch.as_tensor(allowed, device=device).reshape(batch_size, m, -1)
            if allowed.shape[-1] != k:
                raise ValueError(
                    f"item_index.allowed_next_codes returned {allowed.shape[-1]} codes for level "
                    f"{level}, the model has {k}"
                )
            if exclusion is not None:
                allowed = allowed & ~exclusion.dead_children(sids.reshape(batch_size, m, level)).to(device)
            logp = logp.masked_fill(~allowed, float("-inf"))
        total = (scores[:, :, None] + logp).reshape(batch_size, m * k)
        width = min(beam_size, m * k)
        top, flat = total.topk(width, dim=-1)
        parent = torch.div(flat, k, rounding_mode="floor")
        codes = flat % k
        sids = torch.cat([sids.gather(1, parent[..., None].expand(-1, -1, level)), codes[..., None]], -1)
        scores = top
        if level < num_levels - 1 and reorder_fn is not None:
            rows = (torch.arange(batch_size, device=device)[:, None] * m + parent).reshape(-1)
            state = reorder_fn(state, rows)
    return sids, scores


def finalize_recommendations(
    sids: torch.Tensor,
    scores: torch.Tensor,
    num_items: int,
    item_index=None,
    exclusion: Any = None,
) -> RecommendationOutput:
    """Map beam tuples to item ids (most popular item of a colliding tuple, via ``item_index.lookup``;
    with ``exclusion``, the most popular non-excluded one)."""
    b, beam, num_levels = sids.shape
    if num_items > beam:
        raise ValueError(f"num_items={num_items} must be <= beam_size={beam}")
    sids, scores = sids[:, :num_items], scores[:, :num_items]
    if exclusion is not None:
        items = exclusion.lookup(sids).to(sids.device).long()
    elif item_index is not None:
        items = torch.as_tensor(item_index.lookup(sids.reshape(-1, num_levels).cpu()))
        items = items.to(sids.device).reshape(b, num_items).long()
    else:
        items = torch.full((b, num_items), -1, dtype=torch.long, device=sids.device)
    alive = torch.isfinite(scores)
    items = items.masked_fill(~alive, -1)
    return RecommendationOutput(item_ids=items, sids=sids, log_probs=scores, legal=items >= 0)


def check_recommend_args(num_items: int, beam_size: int) -> None:
    for name, value in (("num_items", num_items), ("beam_size", beam_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if num_items > beam_size:
        raise ValueError(f"num_items={num_items} must be <= beam_size={beam_size}")


def validate_context_batch(
    batch: Mapping[str, torch.Tensor], num_levels: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Validate the context part of a schema batch (``target_sids`` optional) and move it to ``device``."""
    if not isinstance(batch, Mapping):
        raise TypeError(f"batch must be a mapping of tensors, got {type(batch).__name__}")
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    if "user_static" not in tensors:
        raise ValueError("batch is missing required key 'user_static' (see kwaiformers.data.schema)")
    check = dict(tensors)
    if "target_sids" not in check:
        check["target_sids"] = torch.zeros(
            tensors["user_static"].shape[0], num_levels, dtype=torch.long
        )
    validate_batch(check, num_levels)
    return {k: v.to(device) for k, v in tensors.items()}


def trie_prefix_allowed_tokens_fn(item_index, level_sizes: Sequence[int], bos_token_id: int):
    """A ``prefix_allowed_tokens_fn`` for :meth:`generate` built from ``item_index`` (flat ids).

    The generated sequence is ``[BOS, c_1, ..., c_l]``; returns the codes allowed at level ``l``.
    """

    def fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        prefix = input_ids[1:].reshape(1, -1).cpu()
        level = prefix.shape[1]
        if level >= len(level_sizes):
            return [bos_token_id]
        allowed = item_index.allowed_next_codes(prefix)[0]
        return torch.nonzero(torch.as_tensor(allowed)).flatten().tolist()

    return fn
