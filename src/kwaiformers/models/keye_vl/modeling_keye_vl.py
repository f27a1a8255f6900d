"""Kwai Keye-VL as native transformers-5 modules (Preview, arXiv 2507.01949; 1.5, arXiv 2509.01563).

Module tree (= the hub checkpoints' parameter names, so they load with 0 missing / 0 unexpected)::

    KeyeVLForConditionalGeneration
    ├── visual   PaddleOCRVisionModel     visual.vision_model.{embeddings,encoder.layers.N,post_layernorm}
    ├── mlp_AR   KeyeVLProjector          mlp_AR.{pre_norm,linear_1,linear_2}
    ├── model    KeyeVLTextModel (Qwen3)  model.{embed_tokens,layers.N,norm}
    └── lm_head

Building blocks reused from transformers 5.23: ``PaddleOCRVisionModel`` (SigLIP-400M with the
interpolated 27x27 position table + 2D RoPE, the same weights and numerics as Keye's encoder),
``Qwen3Model`` / ``Qwen3DecoderLayer`` (q_norm/k_norm GQA attention through
``ALL_ATTENTION_FUNCTIONS``, sdpa by default), ``Qwen2VLRotaryEmbedding`` (non-interleaved
M-RoPE), ``DynamicCache`` and ``GenerationMixin``. Vision attention is block-diagonal in every
backend (varlen ``cu_seqlens`` for FlashAttention, one call per segment otherwise): one segment
per image, per whole video (Preview, ``video_attention="clip"``) or per frame (1.5).

The two unused tensors of the hub checkpoints (``packing_position_embedding`` and the SigLIP pooling
``head``) are never run by Keye; they are ignored on load (``_keys_to_ignore_on_load_unexpected``)
and not re-saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import GELUActivation
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast, ModelOutput
from transformers.modeling_utils import PreTrainedModel
from transformers.models.paddleocr_vl.modeling_paddleocr_vl import (
    PaddleOCRVisionEmbeddings,
    PaddleOCRVisionModel,
)
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLRotaryEmbedding
from transformers.models.qwen3.modeling_qwen3 import Qwen3Model
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs
from transformers.vision_utils import get_vision_cu_seqlens

from .configuration_keye_vl import (
    KeyeConfig,
    KeyeVL1_5Config,
    KeyeVLConfig,
    KeyeVLTextConfig,
)

__all__ = [
    "KeyeForConditionalGeneration",
    "KeyeModel",
    "KeyeVL1_5ForConditionalGeneration",
    "KeyeVL1_5Model",
    "KeyeVLForConditionalGeneration",
    "KeyeVLModel",
    "KeyeVLPreTrainedModel",
    "KeyeVLProjector",
    "KeyeVLTextModel",
    "split_grid_per_frame",
]


def split_grid_per_frame(grid_thw: torch.Tensor) -> torch.Tensor:
    """``(n, 3)`` grids ``[t, h, w]`` -> ``(sum t, 3)`` rows ``[1, h, w]`` (one per frame)."""
    if grid_thw.ndim != 2 or grid_thw.shape[-1] != 3:
        raise ValueError(f"grid_thw must have shape (n, 3), got {tuple(grid_thw.shape)}")
    ones = torch.ones_like(grid_thw[:, :1])
    return torch.cat([ones, grid_thw[:, 1:]], dim=1).repeat_interleave(grid_thw[:, 0], dim=0)


@dataclass
class KeyeVLModelOutputWithPast(BaseModelOutputWithPast):
    """Backbone output plus the cached ``rope_deltas`` (``max(position) + 1 - seq_len``)."""

    rope_deltas: torch.LongTensor | None = None


@dataclass
class KeyeVLCausalLMOutputWithPast(ModelOutput):
    """Language-modelling output of :class:`KeyeVLForConditionalGeneration`."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    rope_deltas: torch.LongTensor | None = None


class KeyeVLProjector(nn.Module):
    """``mlp_AR``: LayerNorm, raster 2x2 patch merge, Linear-GELU(erf)-Linear.

    Preview normalises the 1152-wide patches before merging (``projector_norm="pre_merge"``);
    1.5 normalises the merged 4608-wide tokens (``"post_merge"``). Input patches are in raster
    order per frame; the merge concatenates ``(2i,2j), (2i,2j+1), (2i+1,2j), (2i+1,2j+1)``.
    """

    def __init__(self, config: KeyeVLConfig):
        super().__init__()
        self.merge = config.vision_config.spatial_merge_size
        vision_dim = config.vision_config.hidden_size
        merged_dim = vision_dim * self.merge * self.merge
        self.norm_after_merge = config.projector_norm == "post_merge"
        self.pre_norm = nn.LayerNorm(merged_dim if self.norm_after_merge else vision_dim, eps=1e-5)
        self.linear_1 = nn.Linear(merged_dim, merged_dim, bias=True)
        self.act = GELUActivation()
        self.linear_2 = nn.Linear(merged_dim, config.text_config.hidden_size, bias=True)

    def merge_patches(self, features: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """``(sum t*h*w, d)`` -> ``(sum t*h*w/m^2, m^2*d)`` in raster order of the merged grid."""
        m = self.merge
        chunks = features.split(grid_thw.prod(-1).tolist(), dim=0)
        merged = []
        for chunk, (t, h, w) in zip(chunks, grid_thw.tolist()):
            if h % m or w % m:
                raise ValueError(f"grid h and w must be divisible by spatial_merge_size={m}, got {h}x{w}")
            d = chunk.shape[-1]
            x = chunk.reshape(t, h // m, m, w // m, m, d).transpose(2, 3)
            merged.append(x.reshape(t * (h // m) * (w // m), m * m * d))
        return torch.cat(merged, dim=0)

    def forward(self, features: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        if not self.norm_after_merge:
            features = self.pre_norm(features)
        hidden = self.merge_patches(features, grid_thw)
        if self.norm_after_merge:
            hidden = self.pre_norm(hidden)
        return self.linear_2(self.act(self.linear_1(hidden)))


class KeyeVLTextRotaryEmbedding(Qwen2VLRotaryEmbedding):
    """Qwen2-VL M-RoPE: the half-dim frequencies split by ``mrope_section`` over rows (t, h, w)."""


class KeyeVLTextModel(Qwen3Model):
    """Qwen3 decoder whose rotary positions are 3-row (t, h, w) M-RoPE ids.

    ``position_ids`` may be ``(bs, seq)`` (text only: all rows equal, i.e. plain Qwen3 RoPE),
    ``(3, bs, seq)`` or ``(4, bs, seq)`` where row 0 holds the text positions used for the mask
    (the transformers-5 convention produced by ``generate``).
    """

    config: KeyeVLTextConfig
    config_class = KeyeVLTextConfig

    def __init__(self, config: KeyeVLTextConfig):
        super().__init__(config)
        self.rotary_emb = KeyeVLTextRotaryEmbedding(config=config)

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)

        if position_ids is None:
            past_seen = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen
            position_ids = position_ids.view(1, 1, -1).expand(3, inputs_embeds.shape[0], -1)
        elif position_ids.ndim == 2:
            position_ids = position_ids[None].expand(3, position_ids.shape[0], -1)
        if position_ids.ndim != 3 or position_ids.shape[0] not in (3, 4):
            raise ValueError(
                "position_ids must have shape (bs, seq), (3, bs, seq) or (4, bs, seq), "
                f"got {tuple(position_ids.shape)}"
            )
        if position_ids.shape[0] == 4:
            text_position_ids, position_ids = position_ids[0], position_ids[1:]
        else:
            text_position_ids = None

        if not isinstance(mask_mapping := attention_mask, dict):
            mask_kwargs = {
                "config": self.config,
                "inputs_embeds": inputs_embeds,
                "attention_mask": attention_mask,
                "past_key_values": past_key_values,
                "position_ids": text_position_ids,
            }
            mask_mapping = {"full_attention": create_causal_mask(**mask_kwargs)}
            if self.has_sliding_layers:
                mask_mapping["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)

        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for i, layer in enumerate(self.layers[: self.config.num_hidden_layers]):
            hidden_states = layer(
                hidden_states,
                attention_mask=mask_mapping[self.config.layer_types[i]],
                position_embeddings=position_embeddings,
                position_ids=text_position_ids,
                past_key_values=past_key_values,
                use_cache=use_cache,
                **kwargs,
            )
        hidden_states = self.norm(hidden_states)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            past_key_values=past_key_values if use_cache else None,
        )


class KeyeVLPreTrainedModel(PreTrainedModel):
    """Shared loading/initialisation settings for the Keye-VL classes."""

    config: KeyeVLConfig
    config_class = KeyeVLConfig
    base_model_prefix = "model"
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen3DecoderLayer", "PaddleOCRVisionEncoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False
    # Present in the hub checkpoints but never run by Keye (see the module docstring).
    _keys_to_ignore_on_load_unexpected = [r"packing_position_embedding", r"vision_model\.head\."]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, PaddleOCRVisionEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))


class KeyeVLModel(KeyeVLPreTrainedModel):
    """Keye-VL backbone: vision tower + ``mlp_AR`` + Qwen3 decoder (no LM head)."""

    accepts_loss_kwargs = False
    _keys_to_ignore_on_load_unexpected = [
        *KeyeVLPreTrainedModel._keys_to_ignore_on_load_unexpected,
        r"^lm_head\.",
    ]

    def __init__(self, config: KeyeVLConfig):
        super().__init__(config)
        self.visual = PaddleOCRVisionModel._from_config(config.vision_config)
        self.mlp_AR = KeyeVLProjector(config)
        self.model = KeyeVLTextModel._from_config(config.text_config)
        self.rope_deltas: torch.LongTensor | None = None
        self.post_init()

    # ----------------------------------------------------------------- embeddings
    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed_tokens = value

    @property
    def language_model(self) -> KeyeVLTextModel:
        """The Qwen3 decoder (transformers-5 name for ``self.model``)."""
        return self.model

    # ----------------------------------------------------------------- vision
    def _encode_vision(
        self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, merge_temporal: bool, **kwargs
    ) -> torch.Tensor:
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != (
            self.config.vision_config.num_channels,
            self.config.vision_config.patch_size,
            self.config.vision_config.patch_size,
        ):
            raise ValueError(
                "pixel values must have shape (num_patches, channels, patch_size, patch_size), got "
                f"{tuple(pixel_values.shape)}"
            )
        grid_thw = torch.as_tensor(grid_thw, device=pixel_values.device).long()
        if int(grid_thw.prod(-1).sum()) != pixel_values.shape[0]:
            raise ValueError(
                f"grid_thw covers {int(grid_thw.prod(-1).sum())} patches but pixel values hold "
                f"{pixel_values.shape[0]}"
            )
        cu_seqlens = get_vision_cu_seqlens(grid_thw, merge_temporal=merge_temporal).to(grid_thw.device)
        pixel_values = pixel_values.to(self.visual.dtype).unsqueeze(0)
        out = self.visual(pixel_values=pixel_values, grid_thw=grid_thw, cu_seqlens=cu_seqlens, **kwargs)
        return self.mlp_AR(out.last_hidden_state, grid_thw)

    def get_image_features(
        self, pixel_values: torch.Tensor, image_grid_thw: torch.LongTensor, **kwargs
    ) -> tuple[torch.Tensor, ...]:
        """Per-image LLM embeddings ``(t*h*w/4, hidden)`` (one attention segment per image)."""
        embeds = self._encode_vision(pixel_values, image_grid_thw, merge_temporal=False, **kwargs)
        m2 = self.config.vision_config.spatial_merge_size**2
        return torch.split(embeds, (torch.as_tensor(image_grid_thw).prod(-1) // m2).tolist())

    def get_video_features(
        self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.LongTensor, **kwargs
    ) -> tuple[torch.Tensor, ...]:
        """Per-video LLM embeddings; ViT attention spans the clip (Preview) or one frame (1.5)."""
        clip = self.config.video_attention == "clip"
        embeds = self._encode_vision(pixel_values_videos, video_grid_thw, merge_temporal=clip, **kwargs)
        m2 = self.config.vision_config.spatial_merge_size**2
        return torch.split(embeds, (torch.as_tensor(video_grid_thw).prod(-1) // m2).tolist())

    def _scatter(
        self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, features: torch.Tensor, token_id: int
    ) -> torch.Tensor:
        mask = input_ids == token_id
        n_tokens = int(mask.sum())
        if n_tokens != features.shape[0]:
            kind = "image" if token_id == self.config.image_token_id else "video"
            raise ValueError(
                f"{kind} features and {kind} tokens do not match: {n_tokens} placeholder tokens in "
                f"input_ids but {features.shape[0]} features (check the processor expanded the pads)"
            )
        features = features.to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(mask.unsqueeze(-1).expand_as(inputs_embeds), features)

    # ----------------------------------------------------------------- 3D RoPE
    def get_rope_index(
        self,
        input_ids: torch.LongTensor,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        second_per_grid_ts: torch.Tensor | list[float] | None = None,
        attention_mask: torch.Tensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Keye's multimodal RoPE ids (Keye-VL report, Sec. 2.1 "3D RoPE"; the remote ``get_rope_index``).

        Text gets ``arange`` ids on all three rows, starting at ``max(previous ids) + 1``. A vision
        block with merged grid ``(T, H, W)`` starting after ``st`` gets ``t = st + int(frame *
        second_per_grid_t * tokens_per_second)`` (0 for images), ``h = st + row``, ``w = st +
        col``; the following text resumes at ``max + 1`` (unlike 5.23's Qwen2.5-VL rule). In 1.5
        (``video_attention="frame"``) every video frame is its own block positioned like an image.
        ``second_per_grid_ts`` defaults to 1.0 per video when not given (the remote code's default).

        Returns:
            ``position_ids`` ``(3, bs, seq)`` (padding positions hold 1) and ``rope_deltas``
            ``(bs, 1)`` = ``max(ids) + 1 - seq`` (the padded length, as the remote code), so that a
            cached decode step at ``cache_position`` gets ``cache_position + rope_deltas``.
        """
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must have shape (bs, seq), got {tuple(input_ids.shape)}")
        cfg = self.config
        merge = cfg.vision_config.spatial_merge_size
        tps = cfg.vision_config.tokens_per_second
        device = input_ids.device
        per_frame = cfg.video_attention == "frame"

        images = [] if image_grid_thw is None else torch.as_tensor(image_grid_thw).tolist()
        if video_grid_thw is None:
            videos: list[tuple[list[int], float]] = []
        else:
            vgrid = torch.as_tensor(video_grid_thw)
            if second_per_grid_ts is None:
                seconds = [1.0] * len(vgrid)
            else:
                seconds = torch.as_tensor(second_per_grid_ts, dtype=torch.float64).flatten().tolist()
                if len(seconds) != len(vgrid):
                    raise ValueError(
                        f"second_per_grid_ts has {len(seconds)} entries for {len(vgrid)} videos"
                    )
            if per_frame:
                counts = vgrid[:, 0].tolist()
                vgrid = split_grid_per_frame(vgrid)
                seconds = [s for s, n in zip(seconds, counts) for _ in range(n)]
            videos = list(zip(vgrid.tolist(), seconds))

        if mm_token_type_ids is not None:
            token_types = torch.as_tensor(mm_token_type_ids, device=device).long()
        else:
            token_types = torch.zeros_like(input_ids)
            token_types[input_ids == cfg.image_token_id] = 1
            token_types[input_ids == cfg.video_token_id] = 2

        position_ids = torch.ones(3, *input_ids.shape, dtype=torch.long, device=device)
        deltas = []
        image_iter, video_iter = iter(images), iter(videos)
        for b in range(input_ids.shape[0]):
            types = token_types[b]
            if attention_mask is not None:
                types = types[attention_mask[b].bool()]
            types = types.tolist()
            pieces: list[torch.Tensor] = []
            next_pos, i, n = 0, 0, len(types)
            while i < n:
                if types[i] == 0:
                    j = i
                    while j < n and types[j] == 0:
                        j += 1
                    pieces.append(torch.arange(next_pos, next_pos + j - i).expand(3, -1))
                    next_pos += j - i
                    i = j
                    continue
                kind = types[i]
                try:
                    if kind == 1:
                        (t, h, w), sec = next(image_iter), 0.0
                    else:
                        (t, h, w), sec = next(video_iter)
                except StopIteration:
                    name = "image" if kind == 1 else "video"
                    raise ValueError(f"more {name} placeholder blocks than {name}_grid_thw rows") from None
                gh, gw = h // merge, w // merge
                length = t * gh * gw
                if types[i : i + length] != [kind] * length:
                    raise ValueError(
                        f"expected {length} consecutive placeholder tokens for grid {[t, h, w]} "
                        f"at position {i}"
                    )
                frames = (torch.arange(t, dtype=torch.float64) * sec * tps).long()
                tt = frames.view(-1, 1, 1).expand(t, gh, gw)
                hh = torch.arange(gh).view(1, -1, 1).expand(t, gh, gw)
                ww = torch.arange(gw).view(1, 1, -1).expand(t, gh, gw)
                block = torch.stack([tt, hh, ww]).reshape(3, -1) + next_pos
                pieces.append(block)
                next_pos = int(block.max()) + 1
                i += length
            ids = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.long)
            ids = ids.to(device)
            if attention_mask is not None:
                position_ids[:, b, attention_mask[b].bool()] = ids
            else:
                position_ids[:, b] = ids
            # The remote code (like 4.x Qwen2-VL) subtracts the *padded* row length, so that a cached
            # decode step at ``cache_position = seq_len`` lands on ``max + 1`` for every row.
            deltas.append((int(ids.max()) + 1 if ids.numel() else 0) - input_ids.shape[1])
        if next(image_iter, None) is not None or next(video_iter, None) is not None:
            raise ValueError("more image/video grids than placeholder blocks in input_ids")
        return position_ids, torch.tensor(deltas, device=device).unsqueeze(1)

    def compute_3d_position_ids(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor,
        image_grid_thw: torch.Tensor | None,
        video_grid_thw: torch.Tensor | None,
        second_per_grid_ts: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        past_key_values: Cache | None,
        mm_token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Position ids for a forward without explicit ``position_ids`` (prefill or cached decode)."""
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        has_vision = image_grid_thw is not None or video_grid_thw is not None
        if input_ids is not None and past == 0:
            if not has_vision:
                self.rope_deltas = None
                return None
            position_ids, self.rope_deltas = self.get_rope_index(
                input_ids,
                image_grid_thw=image_grid_thw,
                video_grid_thw=video_grid_thw,
                second_per_grid_ts=second_per_grid_ts,
                attention_mask=attention_mask,
                mm_token_type_ids=mm_token_type_ids,
            )
            return position_ids
        if past > 0 and self.rope_deltas is not None:
            bs, seq = inputs_embeds.shape[:2]
            pos = torch.arange(past, past + seq, device=inputs_embeds.device).view(1, 1, -1)
            delta = self.rope_deltas.to(inputs_embeds.device)
            delta = delta.repeat_interleave(bs // delta.shape[0], dim=0)
            return pos.expand(3, bs, -1) + delta.view(1, bs, 1)
        return None

    # ----------------------------------------------------------------- forward
    def _backbone(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> KeyeVLModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        has_pixels = pixel_values is not None or pixel_values_videos is not None
        if has_pixels and input_ids is None:
            raise ValueError("pixel inputs need input_ids to locate the image/video placeholder tokens")
        if pixel_values is not None:
            if image_grid_thw is None:
                raise ValueError("pixel_values given without image_grid_thw")
            feats = torch.cat(self.get_image_features(pixel_values, image_grid_thw), dim=0)
            inputs_embeds = self._scatter(input_ids, inputs_embeds, feats, self.config.image_token_id)
        if pixel_values_videos is not None:
            if video_grid_thw is None:
                raise ValueError("pixel_values_videos given without video_grid_thw")
            feats = torch.cat(self.get_video_features(pixel_values_videos, video_grid_thw), dim=0)
            inputs_embeds = self._scatter(input_ids, inputs_embeds, feats, self.config.video_token_id)

        if position_ids is None:
            position_ids = self.compute_3d_position_ids(
                input_ids=input_ids,
                inputs_embeds=inputs_embeds,
                image_grid_thw=image_grid_thw,
                video_grid_thw=video_grid_thw,
                second_per_grid_ts=second_per_grid_ts,
                attention_mask=attention_mask,
                past_key_values=past_key_values,
                mm_token_type_ids=mm_token_type_ids,
            )
        out = self.model(
            input_ids=None,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            **kwargs,
        )
        return KeyeVLModelOutputWithPast(
            last_hidden_state=out.last_hidden_state,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            rope_deltas=self.rope_deltas,
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> KeyeVLModelOutputWithPast:
        """Hidden states for text with optional images (``pixel_values``, ``image_grid_thw``) and
        videos (``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``)."""
        return self._backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
            pixel_values=pixel_values, pixel_values_videos=pixel_values_videos,
            image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw,
            second_per_grid_ts=second_per_grid_ts, mm_token_type_ids=mm_token_type_ids, **kwargs,
        )


class KeyeVLForConditionalGeneration(KeyeVLModel, GenerationMixin):
    """Keye-VL with its (untied) LM head; what ``AutoModel`` returns for Keye checkpoints.

    The hub README calls ``AutoModel.from_pretrained(...).generate(...)``, so kwaiformers registers
    this class for ``AutoModel`` as well as ``AutoModelForImageTextToText`` / ``AutoModelForCausalLM``
    (the bare backbone stays available as :class:`KeyeVLModel`).
    """

    accepts_loss_kwargs = True
    _keys_to_ignore_on_load_unexpected = list(KeyeVLPreTrainedModel._keys_to_ignore_on_load_unexpected)
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: KeyeVLConfig):
        super().__init__(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> KeyeVLCausalLMOutputWithPast:
        """Next-token logits (and the shifted cross-entropy ``loss`` when ``labels`` are given)."""
        loss_kwargs = {k: kwargs.pop(k) for k in ("num_items_in_batch",) if k in kwargs}
        out = self._backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
            pixel_values=pixel_values, pixel_values_videos=pixel_values_videos,
            image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw,
            second_per_grid_ts=second_per_grid_ts, mm_token_type_ids=mm_token_type_ids, **kwargs,
        )
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, int):
            hidden = hidden[:, -logits_to_keep:, :] if logits_to_keep > 0 else hidden
        else:
            hidden = hidden[:, logits_to_keep, :]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **loss_kwargs
            )
        return KeyeVLCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            rope_deltas=out.rope_deltas,
        )

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        # 4-row [text; t; h; w] ids for the prompt; generate() then extends every row by +1.
        text_positions = super()._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)
        if "input_ids" in model_kwargs and model_kwargs["input_ids"].shape[1] > 0:
            inputs_tensor = model_kwargs["input_ids"]
        is_ids = inputs_tensor.ndim == 2 and inputs_tensor.dtype in (torch.int, torch.long)
        has_grids = (
            model_kwargs.get("image_grid_thw") is not None or model_kwargs.get("video_grid_thw") is not None
        )
        if is_ids and has_grids:
            vision_positions, deltas = self.get_rope_index(
                inputs_tensor,
                image_grid_thw=model_kwargs.get("image_grid_thw"),
                video_grid_thw=model_kwargs.get("video_grid_thw"),
                second_per_grid_ts=model_kwargs.get("second_per_grid_ts"),
                attention_mask=model_kwargs.get("attention_mask"),
                mm_token_type_ids=model_kwargs.get("mm_token_type_ids"),
            )
            self.rope_deltas = deltas
        else:
            vision_positions = text_positions.unsqueeze(0).expand(3, -1, -1)
            self.rope_deltas = torch.zeros(
                text_positions.shape[0], 1, dtype=torch.long, device=text_positions.device
            )
        return torch.cat([text_positions[None], vision_positions.to(text_positions.device)], dim=0)

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None, **model_kwargs
    ):
        # Packed pixel tensors are per image/video, not per sample: repeat each sample's own chunk.
        if expand_size == 1:
            return input_ids, model_kwargs
        packed = {}
        for pix_key, grid_key, token_id in (
            ("pixel_values", "image_grid_thw", self.config.image_token_id),
            ("pixel_values_videos", "video_grid_thw", self.config.video_token_id),
        ):
            if model_kwargs.get(pix_key) is None or model_kwargs.get(grid_key) is None:
                continue
            if input_ids is None:
                raise ValueError("expanding packed pixel inputs for generation needs input_ids")
            pix, grid = model_kwargs.pop(pix_key), model_kwargs.pop(grid_key)
            seconds = model_kwargs.pop("second_per_grid_ts", None) if pix_key.endswith("videos") else None
            m2 = self.config.vision_config.spatial_merge_size**2
            tokens_per_item = (grid.prod(-1) // m2).tolist()
            per_sample = (input_ids == token_id).sum(-1).tolist()
            items_of, k = [], 0
            for count in per_sample:
                start = k
                while count > 0:
                    count -= tokens_per_item[k]
                    k += 1
                if count != 0:
                    raise ValueError(f"{grid_key} does not match the placeholder tokens per sample")
                items_of.append(list(range(start, k)))
            patch_chunks = list(pix.split(grid.prod(-1).tolist()))
            order = [i for items in items_of for _ in range(expand_size) for i in items]
            packed[pix_key] = torch.cat([patch_chunks[i] for i in order]) if order else pix
            packed[grid_key] = grid[order] if order else grid
            if seconds is not None:
                packed["second_per_grid_ts"] = torch.as_tensor(seconds)[order]
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=is_encoder_decoder, input_ids=input_ids, **model_kwargs
        )
        model_kwargs.update(packed)
        return input_ids, model_kwargs


# ---------------------------------------------------------------------------------------------
# Classes bound to the hub checkpoints' own model_type strings ("Keye", "KeyeVL1_5"); the Auto
# factories require each registered model class to name its config class.
class KeyeModel(KeyeVLModel):
    """:class:`KeyeVLModel` for ``model_type="Keye"`` (Keye-VL-8B-Preview)."""

    config_class = KeyeConfig


class KeyeForConditionalGeneration(KeyeVLForConditionalGeneration):
    """:class:`KeyeVLForConditionalGeneration` for ``model_type="Keye"`` (Keye-VL-8B-Preview)."""

    config_class = KeyeConfig


class KeyeVL1_5Model(KeyeVLModel):  # noqa: N801 - hub class name
    """:class:`KeyeVLModel` for ``model_type="KeyeVL1_5"`` (Keye-VL-1.5)."""

    config_class = KeyeVL1_5Config


class KeyeVL1_5ForConditionalGeneration(KeyeVLForConditionalGeneration):  # noqa: N801
    """:class:`KeyeVLForConditionalGeneration` for ``model_type="KeyeVL1_5"`` (Keye-VL-1.5)."""

    config_class = KeyeVL1_5Config
