"""A tiny random Keye-VL (model + processor) built fully offline, for smoke runs of the recipes.

The tokenizer is character-level (every printable character is a token) with the Qwen chat tokens,
``<think>``/``</think>`` and the Keye vision tokens as atomic specials; pixel budgets are tiny.
"""

from __future__ import annotations

import string
from typing import Any

__all__ = ["KEYE_SPECIAL_TOKENS", "build_tiny_keye_vl"]

KEYE_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<|frame|>", "<|fast_start|>", "<|fast_end|>",
)


def _char_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*KEYE_SPECIAL_TOKENS, "<unk>", *dict.fromkeys(string.printable)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>", eos_token="<|im_end|>",
        additional_special_tokens=[t for t in KEYE_SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
    )
    tok.padding_side = "left"
    return tok


def build_tiny_keye_vl(
    version: str = "preview",
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    vision_hidden_size: int = 16,
    seed: int = 0,
    **text_overrides: Any,
):
    """Return ``(model, processor)``: a randomly initialised tiny Keye-VL of generation ``version``."""
    import torch

    from .configuration_keye_vl import KeyeVLConfig
    from .image_processing_keye_vl import KeyeVLImageProcessor
    from .modeling_keye_vl import KeyeVLForConditionalGeneration
    from .processing_keye_vl import KeyeVLProcessor
    from .video_processing_keye_vl import KeyeVLVideoProcessor

    if hidden_size % 4:
        raise ValueError(f"hidden_size must be divisible by 4 (4 heads), got {hidden_size}")
    tok = _char_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in KEYE_SPECIAL_TOKENS}
    head_dim = hidden_size // 4
    quarter = head_dim // 4
    text = dict(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers, num_attention_heads=4, num_key_value_heads=2,
        head_dim=head_dim, max_position_embeddings=4096, bos_token_id=None,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                         "mrope_section": [head_dim // 2 - 2 * quarter, quarter, quarter]},
    )
    text.update(text_overrides)
    config = KeyeVLConfig(
        keye_version=version, text_config=text,
        vision_config=dict(hidden_size=vision_hidden_size, intermediate_size=2 * vision_hidden_size,
                           num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"], frame_token_id=ids["<|frame|>"],
        fast_start_token_id=ids["<|fast_start|>"], fast_end_token_id=ids["<|fast_end|>"],
    )
    torch.manual_seed(seed)
    model = KeyeVLForConditionalGeneration(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = None
    processor = KeyeVLProcessor(
        image_processor=KeyeVLImageProcessor(min_pixels=28 * 28, max_pixels=16 * 28 * 28),
        tokenizer=tok,
        video_processor=KeyeVLVideoProcessor(
            min_pixels=28 * 28, max_pixels=4 * 28 * 28, total_pixels=64 * 28 * 28, min_frames=2,
            max_frames=8, slow_fast=version == "1.5", min_tokens=1, max_tokens=4, total_tokens=24,
        ),
    )
    return model, processor
