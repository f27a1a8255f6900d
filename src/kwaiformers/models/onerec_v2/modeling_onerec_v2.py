"""OneRec-V2: the lazy decoder-only generative recommender (arXiv 2508.20900 §2.2).

* :class:`OneRecV2ContextProcessor` (§2.2.1): user-static, short-term and long-term pathways, each a
  ``Dense-LeakyReLU-Dense`` block to ``d_context = S_kv * L_kv * G_kv * d_head``; the result is split
  into ``S_kv * L_kv`` chunks and normalised per set: ``k_l = RMSNorm_{k,l}(C_{l S_kv})``,
  ``v_l = RMSNorm_{v,l}(C_{l S_kv + 1})`` or ``v_l = k_l`` when ``S_kv = 1`` (tied K = V). There are no
  ``W_k``/``W_v`` anywhere in the decoder.
* :class:`OneRecV2LazyBlock` (§2.2.2): ``h += CrossAttn(RMSNorm(h), k_lkv, v_lkv)`` with only
  ``W_q``/``W_o`` and GQA over ``G_kv`` groups, KV set ``l_kv = floor(l * L_kv / N_layer)``; then
  ``h += CausalSelfAttn(RMSNorm(h))``; then ``h += FFN(RMSNorm(h))`` (SwiGLU, or MoE after the first
  ``first_k_dense`` blocks).
* Optional (``context_self_attention_layers``, off by default as in the paper): bidirectional
  self-attention over the context before the K/V split.
* Position-specific output RMSNorm + Linear per SID level; ``L_Gen`` is the mean over the ``L`` code
  positions (§2.2.2, "Loss").

LoRA target modules (PEFT): ``q_proj``, ``o_proj`` (cross- and self-attention), ``k_proj``,
``v_proj`` (self-attention), ``gate_proj``/``up_proj``/``down_proj`` (FFNs and experts), the context
processor's ``fc1``/``fc2`` and the ``heads.*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer

from kwaiformers.models.onerec.modeling_common import (
    GenerativeRecommendationOutput,
    ItemIdEmbedding,
    OneRecAttention,
    PathwayEmbedder,
    PreNormSelfAttentionLayer,
    RecommendationOutput,
    SidEmbeddings,
    UserStaticEmbedder,
    any_true,
    check_recommend_args,
    finalize_recommendations,
    init_common_weights,
    pad_level_logits,
    padding_mask,
    reorder_cache,
    shared_context_beam_search,
    trie_prefix_allowed_tokens_fn,
    validate_batch,
    validate_context_batch,
    validate_sid_candidates,
)
from kwaiformers.models.onerec.modeling_moe import OneRecMoE, SwiGLU

from .configuration_onerec_v2 import OneRecV2Config

_BATCH_KEYS = (
    "user_static",
    "short_sids",
    "short_feats",
    "short_labels",
    "short_mask",
    "long_sids",
    "long_feats",
    "long_labels",
    "long_mask",
)


def _right_aligned_positions(offset: int, max_len: int, length: int, name: str, device) -> torch.Tensor:
    if length > max_len:
        raise ValueError(f"batch['{name}_sids'] has {length} positions, the config allows {max_len}")
    return torch.arange(offset + max_len - length, offset + max_len, device=device)


class OneRecV2ContextProcessor(nn.Module):
    """Maps the user context to ``L_kv`` KV sets (V2 §2.2.1). Returns ``([(k_l, v_l)], keep_mask)``
    with ``k_l, v_l`` of shape ``[B, G_kv, N_ctx, d_head]`` and ``keep_mask`` ``[B, N_ctx]``."""

    def __init__(self, config: OneRecV2Config) -> None:
        super().__init__()
        self.config = config
        d_ctx, chunk = config.context_dim, config.num_kv_groups * config.head_dim
        self.sid_embeddings = SidEmbeddings(config.level_sizes, config.embed_dim, config.sid_combine)
        self.user = UserStaticEmbedder(
            config.user_feature_vocab_sizes, config.embed_dim, config.context_hidden_size, d_ctx,
            config.num_user_tokens,
        )
        buckets = getattr(config, "item_id_buckets", 0)
        self.item_embeddings = ItemIdEmbedding(buckets, config.embed_dim) if buckets else None
        pathway = dict(
            sid_dim=self.sid_embeddings.out_dim + (config.embed_dim if buckets else 0),
            num_continuous=config.num_continuous_features,
            num_labels=config.num_feedback_labels,
            feat_dim=config.embed_dim,
            hidden_size=config.context_hidden_size,
            out_size=d_ctx,
        )
        self.short = PathwayEmbedder(**pathway)
        self.long = PathwayEmbedder(**pathway)
        self.num_positions = config.num_user_tokens + config.short_seq_len + config.long_seq_len
        self.position_embeddings = (
            nn.Embedding(self.num_positions, d_ctx) if config.context_position_embeddings else None
        )
        heads = config.context_attention_heads
        self.context_layers = nn.ModuleList(
            [
                PreNormSelfAttentionLayer(config, d_ctx, heads, d_ctx // heads, SwiGLU(d_ctx, 4 * d_ctx))
                for _ in range(config.context_self_attention_layers)
            ]
        )
        self.k_norms = nn.ModuleList(
            [nn.RMSNorm(chunk, eps=config.rms_norm_eps) for _ in range(config.num_kv_sets)]
        )
        self.v_norms = (
            nn.ModuleList([nn.RMSNorm(chunk, eps=config.rms_norm_eps) for _ in range(config.num_kv_sets)])
            if config.kv_split == 2
            else None
        )

    def forward(self, batch: Mapping[str, torch.Tensor]):
        cfg = self.config
        user = self.user(batch["user_static"])
        b, device = user.shape[0], user.device
        parts, masks, positions = [user], [torch.ones(b, cfg.num_user_tokens, dtype=torch.bool, device=device)], [
            torch.arange(cfg.num_user_tokens, device=device)
        ]
        offset = cfg.num_user_tokens
        for name, module, max_len in (
            ("short", self.short, cfg.short_seq_len),
            ("long", self.long, cfg.long_seq_len),
        ):
            sids = batch[f"{name}_sids"]
            if sids.shape[1] > 0:
                emb = self.sid_embeddings(sids, f"{name}_sids").to(user.dtype)
                if self.item_embeddings is not None:
                    emb = torch.cat([emb, self.item_embeddings.for_pathway(batch, name, sids.shape[:2]).to(user.dtype)], -1)
                parts.append(module(emb, batch.get(f"{name}_feats"), batch.get(f"{name}_labels"), name))
                masks.append(batch[f"{name}_mask"].bool())
                positions.append(_right_aligned_positions(offset, max_len, sids.shape[1], name, device))
            offset += max_len
        ctx = torch.cat(parts, 1)
        if self.position_embeddings is not None:
            ctx = ctx + self.position_embeddings(torch.cat(positions))[None].to(ctx.dtype)
        keep = torch.cat(masks, 1)
        if len(self.context_layers):  # a user with no kept position attends to all (no NaN rows)
            mask = padding_mask(keep | ~keep.any(1, keepdim=True), ctx.dtype)
            for layer in self.context_layers:
                ctx = layer(ctx, attention_mask=mask)
        n = ctx.shape[1]
        chunks = ctx.view(b, n, cfg.num_kv_sets * cfg.kv_split, cfg.num_kv_groups * cfg.head_dim)
        kv = []
        for l_kv in range(cfg.num_kv_sets):
            k = self.k_norms[l_kv](chunks[:, :, l_kv * cfg.kv_split])
            k = k.view(b, n, cfg.num_kv_groups, cfg.head_dim).transpose(1, 2)
            if self.v_norms is None:  # S_kv = 1: tied K = V (one tensor)
                v = k
            else:
                v = self.v_norms[l_kv](chunks[:, :, l_kv * cfg.kv_split + 1])
                v = v.view(b, n, cfg.num_kv_groups, cfg.head_dim).transpose(1, 2)
            kv.append((k, v))
        return kv, keep


class OneRecV2LazyBlock(GradientCheckpointingLayer):
    """Lazy decoder block: lazy cross-attention -> causal self-attention -> FFN/MoE (V2 §2.2.2)."""

    def __init__(self, config: OneRecV2Config, layer_idx: int) -> None:
        super().__init__()
        d = config.hidden_size
        self.layer_idx = layer_idx
        self.kv_set = config.kv_set_for_layer(layer_idx)
        self.cross_norm = nn.RMSNorm(d, eps=config.rms_norm_eps)
        self.cross_attn = OneRecAttention(
            config, d, config.num_attention_heads, config.head_dim,
            num_kv_heads=config.num_kv_groups, has_kv_proj=False,
        )
        self.self_norm = nn.RMSNorm(d, eps=config.rms_norm_eps)
        self.self_attn = OneRecAttention(
            config, d, config.num_attention_heads, config.head_dim, is_causal=True, layer_idx=layer_idx
        )
        self.ffn_norm = nn.RMSNorm(d, eps=config.rms_norm_eps)
        self.is_moe = config.use_moe and layer_idx >= config.first_k_dense
        if self.is_moe:
            self.mlp = OneRecMoE(
                d, config.num_routed_experts, config.num_experts_per_tok, config.moe_intermediate_size,
                num_shared_experts=config.num_shared_experts, router=config.router,
                norm_topk_prob=config.norm_topk_prob, aux_free_bias=config.aux_free_bias,
            )
        else:
            self.mlp = SwiGLU(d, config.intermediate_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        context_kv: list[tuple[torch.Tensor, torch.Tensor]],
        context_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
    ) -> torch.Tensor:
        """``hidden_states [B, M, T, d]``; the context K/V ``[B, G_kv, N, d_head]`` is shared by the
        ``M`` candidates of a user (they are folded into the query axis)."""
        b, m, t, d = hidden_states.shape
        x = self.cross_norm(hidden_states).reshape(b, m * t, d)
        h = hidden_states + self.cross_attn(
            x, kv=context_kv[self.kv_set], attention_mask=context_mask
        ).view(b, m, t, d)
        x = self.self_norm(h).reshape(b * m, t, d)
        h = h + self.self_attn(x, past_key_values=past_key_values).view(b, m, t, d)
        return h + self.mlp(self.ffn_norm(h))


class OneRecV2PreTrainedModel(PreTrainedModel):
    config_class = OneRecV2Config
    config: OneRecV2Config
    base_model_prefix = "onerec_v2"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["OneRecV2LazyBlock"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        init_common_weights(module, self.config.initializer_range)


class OneRecV2ForGenerativeRecommendation(OneRecV2PreTrainedModel, GenerationMixin):
    """OneRec-V2 lazy decoder-only model with position-specific heads.

    ``forward(**batch)`` (schema batch, ``target_sids [B, L]``) returns ``loss`` (mean over the
    ``L`` code positions, then over users) and ``logits [B, L, K]``. :meth:`sid_log_probs` scores
    candidate tuples, :meth:`recommend` runs the shared-context beam search, and :meth:`generate`
    works as usual for ``input_ids`` = ``[[bos_token_id]]`` (added when missing).
    """

    def __init__(self, config: OneRecV2Config) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.level_sizes = config.level_sizes
        self.context_processor = OneRecV2ContextProcessor(config)
        self.bos_embedding = nn.Parameter(torch.zeros(d))
        # position-specific input tables: position i >= 1 holds the level i-1 code
        self.code_embeddings = nn.ModuleList([nn.Embedding(k, d) for k in self.level_sizes[:-1]])
        self.layers = nn.ModuleList(
            [OneRecV2LazyBlock(config, i) for i in range(config.num_hidden_layers)]
        )
        self.output_norms = nn.ModuleList(
            [nn.RMSNorm(d, eps=config.rms_norm_eps) for _ in self.level_sizes]
        )
        self.heads = nn.ModuleList([nn.Linear(d, k, bias=False) for k in self.level_sizes])
        self.gradient_checkpointing = False
        self.item_index = None  # optional SemanticIdIndex used by recommend() when none is passed
        self.post_init()

    # ---------------------------------------------------------------- context and decoder pieces
    def encode_context(self, batch: Mapping[str, torch.Tensor]):
        """Context K/V sets and the additive context mask, computed once per user."""
        batch = validate_context_batch(batch, self.config.num_sid_levels, self.device)
        kv, keep = self.context_processor(batch)
        return kv, padding_mask(keep, kv[0][0].dtype)

    def embed_positions(self, codes: torch.Tensor | None, start: int, batch_size: int, m: int) -> torch.Tensor:
        """Decoder input embeddings for positions ``start..start+T-1``.

        ``codes [B, M, T]`` are the tokens at those positions (position 0 is BOS whatever its id).
        """
        dtype = self.bos_embedding.dtype
        if codes is None:
            return self.bos_embedding.view(1, 1, 1, -1).expand(batch_size, m, 1, -1)
        pieces = []
        for j in range(codes.shape[-1]):
            pos = start + j
            if pos == 0:
                pieces.append(self.bos_embedding.view(1, 1, -1).expand(*codes.shape[:2], -1))
            else:
                if pos - 1 >= len(self.code_embeddings):
                    raise ValueError(f"decoder position {pos} is beyond the {len(self.level_sizes)} levels")
                level_codes = codes[..., j]
                size = self.level_sizes[pos - 1]
                if any_true((level_codes < 0) | (level_codes >= size)):
                    raise ValueError(f"codes of level {pos - 1} must be in [0, {size})")
                pieces.append(self.code_embeddings[pos - 1](level_codes).to(dtype))
        return torch.stack(pieces, 2)

    def decode(self, hidden, context_kv, context_mask, past_key_values=None) -> torch.Tensor:
        for layer in self.layers:
            hidden = layer(hidden, context_kv, context_mask, past_key_values=past_key_values)
        return hidden

    def level_logits(self, hidden: torch.Tensor, level: int) -> torch.Tensor:
        """Position-specific RMSNorm + head of ``level``."""
        return self.heads[level](self.output_norms[level](hidden))

    def teacher_forced_logits(self, batch, sids: torch.Tensor, context=None) -> list[torch.Tensor]:
        """Per-level logits ``[B, M, K_l]`` for candidate tuples ``sids [B, M, L]`` (context shared)."""
        kv, mask = context if context is not None else self.encode_context(batch)
        b, m, num_levels = sids.shape
        emb = torch.cat(
            [self.embed_positions(None, 0, b, m), self.embed_positions(sids[..., :-1], 1, b, m)], 2
        ) if num_levels > 1 else self.embed_positions(None, 0, b, m)
        hidden = self.decode(emb, kv, mask)
        return [self.level_logits(hidden[:, :, i], i) for i in range(num_levels)]

    # ---------------------------------------------------------------- public API
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        target_sids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        context_kv: Any = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        **batch: Any,
    ) -> GenerativeRecommendationOutput:
        """Two modes.

        * Training/scoring: schema ``batch`` with ``target_sids [B, L]`` -> ``loss`` (V2 ``L_Gen``,
          mean over the L positions and users) and ``logits [B, L, K]``.
        * Generation (``input_ids [B, T]`` = ``[BOS, c_1, ...]``): logits ``[B, T, K]`` of the
          next code at each position, with a self-attention ``past_key_values`` cache and the
          context K/V returned in ``context_kv`` for reuse.
        """
        batch = {k: v for k, v in batch.items() if k in _BATCH_KEYS or k.startswith("target_")
                 or k in ("user_id", "history_durations", "history_play_times", "short_item_ids",
                          "long_item_ids")}
        if input_ids is None:
            if target_sids is None:
                raise ValueError("forward needs batch['target_sids'] [B, L] (or input_ids for generation)")
            full = dict(batch, target_sids=target_sids)
            validate_batch(full, self.config.num_sid_levels)
            if target_sids.dim() != 2:
                raise ValueError(f"OneRec-V2 target_sids must be [B, L], got {tuple(target_sids.shape)}")
            sids = target_sids.to(self.device)[:, None, :]
            validate_sid_candidates(sids, sids.shape[0], self.level_sizes)
            level_logits = self.teacher_forced_logits(full, sids)
            losses = [
                F.cross_entropy(lg[:, 0].float(), sids[:, 0, i], reduction="none")
                for i, lg in enumerate(level_logits)
            ]
            loss = torch.stack(losses, -1).mean(-1).mean()
            logits = pad_level_logits([lg[:, 0] for lg in level_logits], max(self.level_sizes))
            return GenerativeRecommendationOutput(loss=loss, logits=logits)
        # generation mode
        if context_kv is None:
            context_kv = self.encode_context(batch)
        kv, mask = context_kv
        start = past_key_values.get_seq_length(0) if past_key_values is not None else 0
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        b, t = input_ids.shape
        emb = self.embed_positions(input_ids.to(self.device)[:, None, :], start, b, 1)
        hidden = self.decode(emb, kv, mask, past_key_values=past_key_values if use_cache else None)
        level_logits = []
        for j in range(t):
            pos = start + j
            level = min(pos, len(self.level_sizes) - 1)
            level_logits.append(self.level_logits(hidden[:, 0, j], level))
        logits = pad_level_logits(level_logits, max(self.level_sizes) + 2)
        if start + t > len(self.level_sizes):  # after the last level only BOS (end) is allowed
            logits[:, -1] = torch.finfo(logits.dtype).min
            logits[:, -1, self.config.bos_token_id] = 0
        return GenerativeRecommendationOutput(
            logits=logits, past_key_values=past_key_values if use_cache else None, context_kv=context_kv
        )

    def sid_log_probs(self, batch: Mapping[str, torch.Tensor], sids: torch.Tensor) -> torch.Tensor:
        """Per-level log-probabilities ``[B, G, L]`` of candidate tuples ``sids [B, G, L]``.

        The context is encoded once per user and shared by the ``G`` candidates; differentiable.
        """
        b = batch["user_static"].shape[0]
        validate_sid_candidates(sids, b, self.level_sizes)
        sids = sids.to(self.device)
        level_logits = self.teacher_forced_logits(batch, sids)
        out = [
            lg.float().log_softmax(-1).gather(-1, sids[..., i : i + 1]).squeeze(-1)
            for i, lg in enumerate(level_logits)
        ]
        return torch.stack(out, -1)

    @torch.no_grad()
    def recommend(
        self,
        batch: Mapping[str, torch.Tensor],
        num_items: int = 10,
        beam_size: int = 128,
        constrained: bool = True,
        item_index=None,
        exclude_items: Any = None,
    ) -> RecommendationOutput:
        """Top-``num_items`` items per user by beam search over the L levels (context K/V computed
        once per user and shared by all beams; trie-constrained through
        ``item_index.allowed_next_codes`` when ``constrained``).

        ``exclude_items`` (one collection of item ids per user, or ``LongTensor[B, N]`` padded with
        ``-1``; e.g. the items the user has already seen) are masked inside the constrained search
        (:class:`~kwaiformers.models.onerec.item_index.ItemExclusion`): never returned, and
        ``num_items`` items still come back whenever that many non-excluded tuples exist."""
        check_recommend_args(num_items, beam_size)
        item_index = item_index if item_index is not None else self.item_index
        b = batch["user_static"].shape[0]
        exclusion = None
        if exclude_items is not None:
            if item_index is None or not constrained:
                raise ValueError("exclude_items needs constrained=True and an item_index")
            exclusion = item_index.exclusion(exclude_items, b)
        kv, mask = self.encode_context(batch)
        cache = DynamicCache()

        def step(codes, level, state):
            if codes is None:
                emb = self.embed_positions(None, 0, b, 1)
            else:
                emb = self.embed_positions(codes[..., None], level, b, codes.shape[1])
            hidden = self.decode(emb, kv, mask, past_key_values=cache)
            return self.level_logits(hidden[:, :, -1], level).float().log_softmax(-1), state

        def reorder(state, rows):
            reorder_cache(cache, rows)
            return state

        sids, scores = shared_context_beam_search(
            step, b, self.level_sizes, beam_size, self.device, item_index=item_index,
            constrained=constrained, reorder_fn=reorder, exclusion=exclusion,
        )
        return finalize_recommendations(sids, scores, num_items, item_index, exclusion)

    # ---------------------------------------------------------------- transformers generate()
    def generate(self, inputs: torch.Tensor | None = None, **kwargs: Any):
        """``transformers`` generation over the flat token space (BOS = ``config.bos_token_id``).

        Pass the schema batch as keyword arguments; ``input_ids`` defaults to ``[[BOS]] * B`` and
        ``max_new_tokens`` to ``L``. Returned sequences are ``[BOS, c_1, ..., c_L]``.
        """
        if inputs is None and kwargs.get("input_ids") is None:
            b = kwargs["user_static"].shape[0]
            kwargs["input_ids"] = torch.full(
                (b, 1), self.config.bos_token_id, dtype=torch.long, device=kwargs["user_static"].device
            )
        kwargs.setdefault("max_new_tokens", len(self.level_sizes))
        kwargs.setdefault("do_sample", False)
        kwargs.setdefault("eos_token_id", None)
        kwargs.setdefault("pad_token_id", self.config.pad_token_id)
        for key in ("target_sids", "target_item_id"):
            kwargs.pop(key, None)
        return super().generate(inputs, **kwargs)

    def prepare_inputs_for_generation(
        self,
        input_ids,
        past_key_values=None,
        context_kv=None,
        use_cache=True,
        user_static=None,
        short_sids=None,
        short_feats=None,
        short_labels=None,
        short_mask=None,
        long_sids=None,
        long_feats=None,
        long_labels=None,
        long_mask=None,
        **kwargs,
    ):
        if past_key_values is not None and past_key_values.get_seq_length(0) > 0:
            input_ids = input_ids[:, past_key_values.get_seq_length(0):]
        inputs = dict(
            user_static=user_static, short_sids=short_sids, short_feats=short_feats,
            short_labels=short_labels, short_mask=short_mask, long_sids=long_sids,
            long_feats=long_feats, long_labels=long_labels, long_mask=long_mask,
        )
        inputs = {k: v for k, v in inputs.items() if v is not None}
        inputs.update(input_ids=input_ids, past_key_values=past_key_values, context_kv=context_kv,
                      use_cache=use_cache)
        return inputs

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False,
                                            num_new_tokens=1):
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        model_kwargs["context_kv"] = outputs.context_kv
        return model_kwargs

    def prefix_allowed_tokens_fn(self, item_index):
        """A trie ``prefix_allowed_tokens_fn`` for :meth:`generate` (flat ids, BOS first)."""
        return trie_prefix_allowed_tokens_fn(item_index, self.level_sizes, self.config.bos_token_id)


__all__ = [
    "OneRecV2ContextProcessor",
    "OneRecV2ForGenerativeRecommendation",
    "OneRecV2LazyBlock",
    "OneRecV2PreTrainedModel",
]
