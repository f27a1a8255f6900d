"""OneRec (V1): encoder-decoder generative recommender (OneRec TR arXiv 2506.13695 §2.2; KDD 2502.18965).

* :class:`OneRecFeatureEncoder` — the four pathways of TR §2.2.1: user static -> ``num_user_tokens``
  token(s), short-term -> ``L_s`` tokens, positive-feedback (the schema's ``long_*``) -> ``L_p``
  tokens, lifelong -> :class:`OneRecLifelongQFormer` (``N_q`` queries, ``N_l`` blocks of
  cross-attention + FFN(RMSNorm)); learnable positions over all encoder tokens.
* :class:`OneRecEncoder` — pre-norm full-attention layers ``z += SelfAttn(RMSNorm(z))``,
  ``z += FFN(RMSNorm(z))`` (FFN or MoE).
* :class:`OneRecDecoderLayer` — ``d += CausalSelfAttn(RMSNorm(d))``, ``d += CrossAttn(RMSNorm(d), Z)``,
  ``d += MoE(RMSNorm(d))`` (TR §2.2.2; pre-norm on the attention sub-layers is our documented choice).
* NTP loss summed over the L semantic-ID tokens predicted from ``[BOS, s^1, .., s^{L-1}]`` (TR Eq.
  L_NTP), and over all items for the KDD session-wise target (``session_len`` S > 1).

LoRA target modules (PEFT): ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj`` (all attentions),
``gate_proj``/``up_proj``/``down_proj`` (FFNs and experts), ``fc1``/``fc2`` (feature encoder) and
``heads.*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .configuration_onerec import OneRecConfig
from .modeling_common import (
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
from .modeling_moe import OneRecMoE, SwiGLU

_BATCH_KEYS = tuple(
    f"{p}_{f}" for p in ("short", "long", "lifelong") for f in ("sids", "feats", "labels", "mask")
) + ("user_static", "short_item_ids", "long_item_ids")


@dataclass
class OneRecEncoderOutput(ModelOutput):
    """``last_hidden_state [B, N, d]`` and the encoder keep-mask ``attention_mask`` (bool ``[B, N]``)."""

    last_hidden_state: torch.FloatTensor | None = None
    attention_mask: torch.BoolTensor | None = None


def _make_ffn(config: OneRecConfig, moe: bool) -> nn.Module:
    if moe:
        return OneRecMoE(
            config.hidden_size, config.num_experts, config.num_experts_per_tok,
            config.expert_intermediate_size, num_shared_experts=config.num_shared_experts,
            router=config.router, norm_topk_prob=config.norm_topk_prob,
            aux_free_bias=config.aux_free_bias,
        )
    return SwiGLU(config.hidden_size, config.intermediate_size)


class OneRecLifelongQFormer(nn.Module):
    """``N_q`` learnable queries, ``N_l`` blocks: ``h += CrossAttn(RMSNorm(h), v_l)``,
    ``h += FFN(RMSNorm(h))`` (TR §2.2.1, lifelong pathway)."""

    def __init__(self, config: OneRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.queries = nn.Parameter(torch.zeros(config.num_lifelong_queries, d))
        self.attn_norms = nn.ModuleList([nn.RMSNorm(d, eps=config.rms_norm_eps) for _ in range(config.qformer_layers)])
        self.attns = nn.ModuleList(
            [OneRecAttention(config, d, config.num_attention_heads, config.head_dim)
             for _ in range(config.qformer_layers)]
        )
        self.ffn_norms = nn.ModuleList([nn.RMSNorm(d, eps=config.rms_norm_eps) for _ in range(config.qformer_layers)])
        self.ffns = nn.ModuleList([SwiGLU(d, config.intermediate_size) for _ in range(config.qformer_layers)])

    def forward(self, memory: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b = memory.shape[0]
        h = self.queries[None].expand(b, -1, -1).to(memory.dtype)
        mask = padding_mask(keep, memory.dtype)
        for norm, attn, fnorm, ffn in zip(self.attn_norms, self.attns, self.ffn_norms, self.ffns):
            h = h + attn(norm(h), kv=attn.project_kv(memory), attention_mask=mask)
            h = h + ffn(fnorm(h))
        return h


class OneRecFeatureEncoder(nn.Module):
    """The multi-scale feature encoder (TR §2.2.1). Returns ``(z [B, N, d], keep [B, N])``."""

    def __init__(self, config: OneRecConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.sid_embeddings = SidEmbeddings(config.level_sizes, config.sid_embed_dim, config.sid_combine)
        self.user = UserStaticEmbedder(
            config.user_feature_vocab_sizes, config.user_feature_embed_dim, d, d, config.num_user_tokens
        )
        pathway = dict(
            sid_dim=self.sid_embeddings.out_dim,
            num_continuous=config.num_continuous_features,
            num_labels=config.num_feedback_labels,
            feat_dim=config.feature_embed_dim,
            hidden_size=d,
            out_size=d,
        )
        buckets = getattr(config, "item_id_buckets", 0)
        self.item_embeddings = ItemIdEmbedding(buckets, config.sid_embed_dim) if buckets else None
        with_ids = dict(pathway, sid_dim=pathway["sid_dim"] + (config.sid_embed_dim if buckets else 0))
        self.short = PathwayEmbedder(**with_ids)
        self.long = PathwayEmbedder(**with_ids)
        self.use_lifelong = config.num_lifelong_queries > 0 and config.lifelong_seq_len > 0
        if self.use_lifelong:
            self.lifelong = PathwayEmbedder(**pathway)
            self.qformer = OneRecLifelongQFormer(config)
        self.num_positions = (
            config.num_user_tokens + config.short_seq_len + config.long_seq_len
            + (config.num_lifelong_queries if self.use_lifelong else 0)
        )
        self.position_embeddings = nn.Embedding(self.num_positions, d)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        user = self.user(batch["user_static"])
        b, device = user.shape[0], user.device
        parts = [user]
        keeps = [torch.ones(b, cfg.num_user_tokens, dtype=torch.bool, device=device)]
        positions = [torch.arange(cfg.num_user_tokens, device=device)]
        offset = cfg.num_user_tokens
        for name, module, max_len in (("short", self.short, cfg.short_seq_len), ("long", self.long, cfg.long_seq_len)):
            sids = batch[f"{name}_sids"]
            if sids.shape[1] > max_len:
                raise ValueError(f"batch['{name}_sids'] has {sids.shape[1]} positions, the config allows {max_len}")
            if sids.shape[1] > 0:
                emb = self.sid_embeddings(sids, f"{name}_sids").to(user.dtype)
                if self.item_embeddings is not None:
                    ids = self.item_embeddings.for_pathway(batch, name, sids.shape[:2]).to(user.dtype)
                    emb = torch.cat([emb, ids], -1)
                parts.append(module(emb, batch.get(f"{name}_feats"), batch.get(f"{name}_labels"), name))
                keeps.append(batch[f"{name}_mask"].bool())
                positions.append(torch.arange(offset + max_len - sids.shape[1], offset + max_len, device=device))
            offset += max_len
        life = batch.get("lifelong_sids")
        if self.use_lifelong and life is not None and life.shape[1] > 0:
            if life.shape[1] > cfg.lifelong_seq_len:
                raise ValueError(
                    f"batch['lifelong_sids'] has {life.shape[1]} positions, the config allows {cfg.lifelong_seq_len}"
                )
            keep_l = batch["lifelong_mask"].bool()
            emb = self.sid_embeddings(life, "lifelong_sids").to(user.dtype)
            v_l = self.lifelong(emb, batch.get("lifelong_feats"), batch.get("lifelong_labels"), "lifelong")
            h_l = self.qformer(v_l, keep_l)
            parts.append(h_l)
            # a user without any lifelong interaction contributes no lifelong tokens
            keeps.append(keep_l.any(1, keepdim=True).expand(-1, h_l.shape[1]))
            positions.append(torch.arange(offset, offset + cfg.num_lifelong_queries, device=device))
        z = torch.cat(parts, 1) + self.position_embeddings(torch.cat(positions))[None].to(user.dtype)
        return z, torch.cat(keeps, 1)


class OneRecEncoderLayer(PreNormSelfAttentionLayer):
    def __init__(self, config: OneRecConfig, layer_idx: int) -> None:
        moe = config.num_experts > 0 and config.moe_layers == "encoder_decoder"
        super().__init__(config, config.hidden_size, config.num_attention_heads, config.head_dim,
                         _make_ffn(config, moe))


class OneRecEncoder(nn.Module):
    """Feature encoder + pre-norm full-attention layers (returned by ``get_encoder()``)."""

    main_input_name = "user_static"

    def __init__(self, config: OneRecConfig) -> None:
        super().__init__()
        self.config = config
        self.features = OneRecFeatureEncoder(config)
        self.layers = nn.ModuleList([OneRecEncoderLayer(config, i) for i in range(config.num_encoder_layers)])
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(
        self, user_static: torch.Tensor | None = None, return_dict: bool = True, **kwargs: Any
    ) -> OneRecEncoderOutput:
        """Schema batch (context keys) -> encoder output; other keys are ignored."""
        batch = {k: v for k, v in kwargs.items() if k in _BATCH_KEYS}
        batch["user_static"] = user_static
        device = self.norm.weight.device
        batch = validate_context_batch(batch, self.config.num_sid_levels, device)
        z, keep = self.features(batch)
        mask = padding_mask(keep, z.dtype)
        for layer in self.layers:
            z = layer(z, mask)
        return OneRecEncoderOutput(last_hidden_state=self.norm(z), attention_mask=keep)


class OneRecDecoderLayer(GradientCheckpointingLayer):
    """Causal self-attention -> cross-attention over the encoder output -> FFN/MoE (TR §2.2.2)."""

    def __init__(self, config: OneRecConfig, layer_idx: int) -> None:
        super().__init__()
        d = config.hidden_size
        self.layer_idx = layer_idx
        self.self_norm = nn.RMSNorm(d, eps=config.rms_norm_eps)
        self.self_attn = OneRecAttention(
            config, d, config.num_attention_heads, config.head_dim, is_causal=True, layer_idx=layer_idx
        )
        self.cross_norm = nn.RMSNorm(d, eps=config.rms_norm_eps)
        self.cross_attn = OneRecAttention(config, d, config.num_attention_heads, config.head_dim)
        self.ffn_norm = nn.RMSNorm(d, eps=config.rms_norm_eps)
        self.mlp = _make_ffn(config, config.num_experts > 0)

    def forward(
        self,
        hidden_states: torch.Tensor,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
    ) -> torch.Tensor:
        """``hidden_states [B, M, T, d]``; the encoder K/V ``[B, H, N, d_head]`` is shared by the
        ``M`` candidates of a user."""
        b, m, t, d = hidden_states.shape
        x = self.self_norm(hidden_states).reshape(b * m, t, d)
        h = hidden_states + self.self_attn(x, past_key_values=past_key_values).view(b, m, t, d)
        x = self.cross_norm(h).reshape(b, m * t, d)
        h = h + self.cross_attn(x, kv=memory_kv, attention_mask=memory_mask).view(b, m, t, d)
        return h + self.mlp(self.ffn_norm(h))


class OneRecPreTrainedModel(PreTrainedModel):
    config_class = OneRecConfig
    config: OneRecConfig
    base_model_prefix = "onerec"
    main_input_name = "user_static"
    supports_gradient_checkpointing = True
    _no_split_modules = ["OneRecEncoderLayer", "OneRecDecoderLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        init_common_weights(module, self.config.initializer_range)


class OneRecForGenerativeRecommendation(OneRecPreTrainedModel, GenerationMixin):
    """OneRec-V1 encoder-decoder with per-level output heads.

    ``forward(**batch)`` returns ``loss`` (NTP summed over the L levels — and the S items of a
    session-wise target — averaged over users) and ``logits [B, L, K]`` (``[B, S, L, K]`` when
    ``target_sids`` is ``[B, S, L]``). :meth:`sid_log_probs` and :meth:`recommend` score/generate
    single items (the first item of a session); :meth:`generate` works as an ordinary
    encoder-decoder ``generate`` over the flat token space (BOS = ``config.bos_token_id``).
    """

    def __init__(self, config: OneRecConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.level_sizes = config.level_sizes
        self.block = len(self.level_sizes) + 1
        self.encoder = OneRecEncoder(config)
        self.bos_embedding = nn.Parameter(torch.zeros(d))
        self.code_embeddings = nn.ModuleList([nn.Embedding(k, d) for k in self.level_sizes])
        self.decoder_position_embeddings = nn.Embedding(config.session_len * self.block, d)
        self.decoder_layers = nn.ModuleList(
            [OneRecDecoderLayer(config, i) for i in range(config.num_decoder_layers)]
        )
        self.decoder_norm = nn.RMSNorm(d, eps=config.rms_norm_eps)
        self.heads = nn.ModuleList([nn.Linear(d, k, bias=False) for k in self.level_sizes])
        self.item_index = None  # optional SemanticIdIndex used by recommend() when none is passed
        self.post_init()

    def get_encoder(self) -> OneRecEncoder:
        return self.encoder

    # ---------------------------------------------------------------- pieces
    def encode(self, batch: Mapping[str, torch.Tensor]):
        """Encoder output, per-layer cross-attention K/V and the memory mask, once per user."""
        enc = self.encoder(**{k: v for k, v in batch.items() if k in _BATCH_KEYS})
        return self.memory_from_encoder(enc.last_hidden_state, enc.attention_mask)

    def memory_from_encoder(self, hidden: torch.Tensor, keep: torch.Tensor | None):
        kvs = [layer.cross_attn.project_kv(hidden) for layer in self.decoder_layers]
        return kvs, padding_mask(keep, hidden.dtype)

    def embed_tokens(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """Embeddings of decoder tokens ``[B, M, T]`` at flat positions ``start..start+T-1``."""
        pieces = []
        for j in range(tokens.shape[-1]):
            pos = start + j
            if pos >= self.decoder_position_embeddings.num_embeddings:
                raise ValueError(f"decoder position {pos} exceeds session_len * (L + 1)")
            slot = pos % self.block
            if slot == 0:
                e = self.bos_embedding.view(1, 1, -1).expand(*tokens.shape[:2], -1)
            else:
                codes, size = tokens[..., j], self.level_sizes[slot - 1]
                if any_true((codes < 0) | (codes >= size)):
                    raise ValueError(f"codes of level {slot - 1} must be in [0, {size})")
                e = self.code_embeddings[slot - 1](codes)
            pieces.append(e + self.decoder_position_embeddings.weight[pos])
        return torch.stack(pieces, 2)

    def decode(self, hidden, memory, past_key_values=None) -> torch.Tensor:
        kvs, mask = memory
        for layer, kv in zip(self.decoder_layers, kvs):
            hidden = layer(hidden, kv, mask, past_key_values=past_key_values)
        return self.decoder_norm(hidden)

    def _session_tokens(self, sids: torch.Tensor) -> torch.Tensor:
        """``[B, M, S, L]`` targets -> decoder input ``[B, M, S*(L+1) - 1]`` (BOS id as placeholder)."""
        bos = torch.full((*sids.shape[:-1], 1), self.config.bos_token_id, dtype=sids.dtype, device=sids.device)
        return torch.cat([bos, sids], -1).flatten(-2)[..., :-1]

    def teacher_forced_logits(self, memory, sids: torch.Tensor) -> list[torch.Tensor]:
        """Per-level logits ``[B, M, S, K_l]`` for targets ``sids [B, M, S, L]``."""
        tokens = self._session_tokens(sids)
        hidden = self.decode(self.embed_tokens(tokens, 0), memory)
        b, m, s, num_levels = sids.shape
        hidden = F.pad(hidden, (0, 0, 0, 1)).view(b, m, s, self.block, -1)
        return [self.heads[i](hidden[:, :, :, i]) for i in range(num_levels)]

    # ---------------------------------------------------------------- public API
    def forward(
        self,
        target_sids: torch.LongTensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        encoder_outputs: OneRecEncoderOutput | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        **batch: Any,
    ) -> GenerativeRecommendationOutput:
        """Training: schema batch with ``target_sids [B, L]`` (or ``[B, S, L]``) -> ``loss``, ``logits``.
        Generation: ``decoder_input_ids [B, T]`` (flat ids, BOS first) -> next-code ``logits [B, T, K+1]``."""
        batch = {k: v for k, v in batch.items() if k in _BATCH_KEYS}
        if decoder_input_ids is None:
            if target_sids is None:
                raise ValueError("forward needs batch['target_sids'] (or decoder_input_ids for generation)")
            validate_batch(dict(batch, target_sids=target_sids), self.config.num_sid_levels)
            sids = target_sids.to(self.device)
            session = sids.dim() == 3
            sids = sids if session else sids[:, None]
            if sids.shape[1] > self.config.session_len:
                raise ValueError(
                    f"target_sids has {sids.shape[1]} items per session, config.session_len={self.config.session_len}"
                )
            for i, k in enumerate(self.level_sizes):
                if any_true(sids[..., i] >= k):
                    raise ValueError(f"target_sids level {i} has codes >= {k}")
            memory = self.encode(batch)
            level_logits = self.teacher_forced_logits(memory, sids[:, None])  # M = 1
            nll = torch.stack(
                [F.cross_entropy(lg[:, 0].float().transpose(1, 2), sids[..., i], reduction="none")
                 for i, lg in enumerate(level_logits)], -1
            )  # [B, S, L]
            loss = nll.sum((1, 2)).mean()
            logits = pad_level_logits([lg[:, 0] for lg in level_logits], max(self.level_sizes))
            return GenerativeRecommendationOutput(
                loss=loss, logits=logits if session else logits[:, 0]
            )
        # generation mode
        if encoder_outputs is None:
            encoder_outputs = self.encoder(**batch)
        elif isinstance(encoder_outputs, tuple):
            encoder_outputs = OneRecEncoderOutput(*encoder_outputs)
        self_cache = past_key_values
        if isinstance(past_key_values, EncoderDecoderCache):
            self_cache = past_key_values.self_attention_cache
            cross = past_key_values.cross_attention_cache
            if past_key_values.is_updated.get(0):
                kvs = [(cross.layers[i].keys, cross.layers[i].values) for i in range(len(self.decoder_layers))]
            else:
                kvs, _ = self.memory_from_encoder(encoder_outputs.last_hidden_state, None)
                for i, (k, v) in enumerate(kvs):
                    cross.update(k, v, i)
                    past_key_values.is_updated[i] = True
            memory = (kvs, padding_mask(encoder_outputs.attention_mask, kvs[0][0].dtype))
        else:
            memory = self.memory_from_encoder(encoder_outputs.last_hidden_state, encoder_outputs.attention_mask)
        if use_cache and self_cache is None:
            self_cache = past_key_values = DynamicCache()
        start = self_cache.get_seq_length(0) if self_cache is not None else 0
        tokens = decoder_input_ids.to(self.device)
        hidden = self.decode(self.embed_tokens(tokens[:, None], start), memory,
                             past_key_values=self_cache if use_cache else None)
        level_logits = []
        for j in range(tokens.shape[1]):
            slot = (start + j) % self.block
            level_logits.append(self.heads[min(slot, len(self.heads) - 1)](hidden[:, 0, j]))
        logits = pad_level_logits(level_logits, max(self.level_sizes) + 2)
        for j in range(tokens.shape[1]):
            if (start + j) % self.block == len(self.level_sizes):  # block done: the next token is BOS
                logits[:, j] = torch.finfo(logits.dtype).min
                logits[:, j, self.config.bos_token_id] = 0
        return GenerativeRecommendationOutput(
            logits=logits, past_key_values=past_key_values if use_cache else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
        )

    def sid_log_probs(self, batch: Mapping[str, torch.Tensor], sids: torch.Tensor) -> torch.Tensor:
        """Per-level log-probabilities ``[B, G, L]`` of candidate items ``sids [B, G, L]`` (encoder
        run once per user, shared by the G candidates; differentiable)."""
        b = batch["user_static"].shape[0]
        validate_sid_candidates(sids, b, self.level_sizes)
        sids = sids.to(self.device)
        level_logits = self.teacher_forced_logits(self.encode(batch), sids[:, :, None])
        out = [lg[:, :, 0].float().log_softmax(-1).gather(-1, sids[..., i : i + 1]).squeeze(-1)
               for i, lg in enumerate(level_logits)]
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
        """Top-``num_items`` items per user by beam search over the L levels; the encoder output and
        its cross-attention K/V are computed once per user and shared by all beams.

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
        memory = self.encode(batch)
        cache = DynamicCache()

        def step(codes, level, state):
            if codes is None:
                tokens = torch.full((b, 1, 1), self.config.bos_token_id, dtype=torch.long, device=self.device)
            else:
                tokens = codes[..., None]
            hidden = self.decode(self.embed_tokens(tokens, level), memory, past_key_values=cache)
            return self.heads[level](hidden[:, :, -1]).float().log_softmax(-1), state

        def reorder(state, rows):
            reorder_cache(cache, rows)
            return state

        sids, scores = shared_context_beam_search(
            step, b, self.level_sizes, beam_size, self.device, item_index=item_index,
            constrained=constrained, reorder_fn=reorder, exclusion=exclusion,
        )
        return finalize_recommendations(sids, scores, num_items, item_index, exclusion)

    def generate(self, inputs: torch.Tensor | None = None, **kwargs: Any):
        """Encoder-decoder ``transformers`` generation; pass the schema batch as keyword arguments.
        Returns ``[BOS, c_1, ..., c_L]`` per sequence (``max_new_tokens`` defaults to L)."""
        kwargs.setdefault("max_new_tokens", len(self.level_sizes))
        kwargs.setdefault("do_sample", False)
        kwargs.setdefault("eos_token_id", None)
        kwargs.setdefault("pad_token_id", self.config.pad_token_id)
        kwargs.setdefault("decoder_start_token_id", self.config.bos_token_id)
        for key in ("target_sids", "target_item_id"):
            kwargs.pop(key, None)
        return super().generate(inputs, **kwargs)

    def prepare_inputs_for_generation(
        self,
        decoder_input_ids,
        past_key_values=None,
        encoder_outputs=None,
        user_static=None,
        short_sids=None,
        short_feats=None,
        short_labels=None,
        short_mask=None,
        long_sids=None,
        long_feats=None,
        long_labels=None,
        long_mask=None,
        lifelong_sids=None,
        lifelong_feats=None,
        lifelong_labels=None,
        lifelong_mask=None,
        **kwargs,
    ):
        if past_key_values is not None:
            cache = past_key_values.self_attention_cache if isinstance(past_key_values, EncoderDecoderCache) else past_key_values
            done = cache.get_seq_length(0)
            if done > 0:
                decoder_input_ids = decoder_input_ids[:, done:]
        return dict(
            decoder_input_ids=decoder_input_ids, past_key_values=past_key_values,
            encoder_outputs=encoder_outputs, use_cache=kwargs.get("use_cache", True),
        )

    def prefix_allowed_tokens_fn(self, item_index):
        """A trie ``prefix_allowed_tokens_fn`` for :meth:`generate` (flat ids, BOS first)."""
        return trie_prefix_allowed_tokens_fn(item_index, self.level_sizes, self.config.bos_token_id)


__all__ = [
    "OneRecDecoderLayer",
    "OneRecEncoder",
    "OneRecEncoderLayer",
    "OneRecFeatureEncoder",
    "OneRecForGenerativeRecommendation",
    "OneRecLifelongQFormer",
    "OneRecPreTrainedModel",
]
