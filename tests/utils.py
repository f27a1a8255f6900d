"""Builders for tiny local artefacts shared by the whole test-suite (no network, no hub).

- :func:`make_tiny_tokenizer`: a character-level fast tokenizer built in memory, with a
  Qwen3-style chat template (``<|im_start|>``/``<|im_end|>``) and ``<think>``/``</think>`` tags.
- :func:`make_tiny_qwen3`: a randomly initialised ``Qwen3ForCausalLM`` of a few thousand
  parameters sized to that tokenizer.
- :func:`save_and_reload`: ``save_pretrained`` into a temporary directory, reload with
  ``from_pretrained`` and return the reloaded object (for round-trip tests).
- :func:`assert_state_dicts_equal`: exact comparison of two modules' weights.
"""

from __future__ import annotations

import string
import tempfile
from collections.abc import Iterable
from typing import Any

import torch

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
)

#: Qwen3-style chat template with thinking support (``enable_thinking=False`` inserts an empty
#: think block, like Qwen3's official template).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\n\n</think>\n\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


def make_tiny_tokenizer(
    extra_special_tokens: Iterable[str] = (),
    alphabet: str = string.printable,
):
    """A character-level ``PreTrainedTokenizerFast`` built in memory.

    Every character of ``alphabet`` is one token; the special tokens (and
    ``extra_special_tokens``, e.g. vision placeholders) are atomic. ``pad`` = ``eos`` =
    ``<|endoftext|>``... except ``eos_token`` is ``<|im_end|>`` as in Qwen3 chat models.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys([*SPECIAL_TOKENS, *extra_special_tokens]))
    chars = list(dict.fromkeys(alphabet))
    vocab = {tok: i for i, tok in enumerate([*specials, "<unk>", *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        bos_token=None,
        additional_special_tokens=[t for t in specials if t not in {"<|endoftext|>", "<|im_end|>"}],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def make_tiny_qwen3(
    tokenizer=None,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 64,
    seed: int = 0,
    **config_kwargs: Any,
):
    """A randomly initialised ``Qwen3ForCausalLM`` sized to ``tokenizer`` (built if ``None``)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = tokenizer if tokenizer is not None else make_tiny_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=hidden_size // num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
        **config_kwargs,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_and_reload(obj, loader=None, **load_kwargs: Any):
    """``obj.save_pretrained(tmp)`` then ``loader.from_pretrained(tmp)`` (``loader`` defaults to
    ``type(obj)``); returns the reloaded object. The directory is removed afterwards."""
    loader = loader if loader is not None else type(obj)
    with tempfile.TemporaryDirectory() as tmp:
        obj.save_pretrained(tmp)
        return loader.from_pretrained(tmp, **load_kwargs)


def assert_state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Assert two modules hold exactly the same tensors under the same names."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys(), f"key mismatch: {sorted(set(sa) ^ set(sb))}"
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"tensor {key!r} differs"


#: Rows of the tiny KC-MMBench fixture: hub file name -> (task, [(index, question, answer,
#: n_images, category)]). Answers follow the published formats.
KC_MMBENCH_FIXTURE_ROWS: dict[str, tuple[str, list[tuple[str, str, str, int, str]]]] = {
    "CPV.tsv": ("CPV", [
        ("0", "这个商品的颜色是什么？", "红色", 1, "颜色"),
        ("1", "这个商品的材质是什么？", "纯棉", 2, "材质"),
        ("2", "这个商品的尺码是什么？", "XL", 1, "尺码"),
    ]),
    "Video_Topic.tsv": ("Hot_Videos_Aggregation", [
        ("10", "以下视频是否与第一个视频属于同一个主题？", "是_否_是", 4, ""),
        ("11", "以下视频是否与第一个视频属于同一个主题？", "否_否", 3, ""),
    ]),
    "Video_Order.tsv": ("Collection_Order", [
        ("20", "请给出这些视频的逻辑顺序。", "2,1,3", 3, ""),
        ("21", "请给出这些视频的逻辑顺序。", "1,3,2", 3, ""),
    ]),
    "PornComment.tsv": ("Pornographic_Comment", [
        ("30", "这条评论是否包含色情内容？评论：今天天气真好", "否", 1, "comment"),
        ("31", "这条评论是否包含色情内容？评论：……", "是", 1, "comment"),
        ("32", "这条评论是否包含色情内容？评论：好看", "否", 2, "video"),
    ]),
    "High_like.tsv": ("High_like", [
        ("40", "这个短视频的点赞率高吗？", "是", 3, ""),
        ("41", "这个短视频的点赞率高吗？", "否", 3, ""),
    ]),
    "SPU.tsv": ("SPU", [
        ("50", "这两个商品是否是同一款？", "是", 2, "服饰"),
        ("51", "这两个商品是否是同一款？", "否", 2, "数码"),
    ]),
}


def make_tiny_kc_mmbench(root, image_size: int = 16, repeat: int = 1) -> str:
    """Write a tiny KC-MMBench copy in the published layout under ``root``: ``subsets/<hub file>.tsv``
    (columns ``index, question, answer, image_path, category``; ``image_path`` a single path for
    one image, a Python-list literal otherwise) and ``images/<task>/<index>_<k>.png`` (generated
    solid-colour PNGs). ``repeat > 1`` writes every row ``repeat`` times (indices offset by 1000
    per copy; benchmarks). Returns ``str(root)``."""
    import csv
    import os

    from PIL import Image

    os.makedirs(os.path.join(root, "subsets"), exist_ok=True)
    for fname, (task, rows) in KC_MMBENCH_FIXTURE_ROWS.items():
        os.makedirs(os.path.join(root, "images", task), exist_ok=True)
        with open(os.path.join(root, "subsets", fname), "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["index", "question", "answer", "image_path", "category"])
            copies = [(str(int(r[0]) + 1000 * c), *r[1:]) for c in range(repeat) for r in rows]
            for index, question, answer, n_images, category in copies:
                rels = []
                for k in range(n_images):
                    rel = f"{task}/{index}_{k}.png"
                    colour = ((int(index) * 37 + k * 91) % 256, (k * 53) % 256, 128)
                    Image.new("RGB", (image_size, image_size), colour).save(
                        os.path.join(root, "images", rel)
                    )
                    rels.append(rel)
                cell = rels[0] if n_images == 1 else str(rels)
                writer.writerow([index, question, answer, cell, category])
    return str(root)


#: Minimal multimodal chat template (one placeholder block per image item, then the text).
VLM_CHAT_TEMPLATE = (
    "{%- for message in messages -%}{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- '<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


def make_tiny_paddleocr_vl(seed: int = 0, init_std: float | None = 0.5):
    """A tiny randomly initialised ``PaddleOCRVLForConditionalGeneration`` and its processor
    (character tokenizer, PIL image processor bounded to <= 56x56 pixels, the chat template above).
    A generic offline image-text-to-text model for runner tests; reloadable with
    ``AutoProcessor`` / ``AutoModelForImageTextToText`` after ``save_pretrained``. ``init_std``
    re-draws every weight matrix from N(0, init_std^2) so greedy outputs vary with the input."""
    from transformers import (
        AutoTokenizer,
        PaddleOCRVLConfig,
        PaddleOCRVLForConditionalGeneration,
        PaddleOCRVLProcessor,
    )
    from transformers.models.paddleocr_vl.image_processing_pil_paddleocr_vl import (
        PaddleOCRVLImageProcessorPil,
    )

    base = make_tiny_tokenizer(
        extra_special_tokens=["<|IMAGE_START|>", "<|IMAGE_END|>", "<|IMAGE_PLACEHOLDER|>",
                              "<|video_pad|>"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        base.save_pretrained(tmp)
        tok = AutoTokenizer.from_pretrained(tmp, image_token="<|IMAGE_PLACEHOLDER|>")
    tok.padding_side = "left"
    processor = PaddleOCRVLProcessor(
        image_processor=PaddleOCRVLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56),
        tokenizer=tok,
        chat_template=VLM_CHAT_TEMPLATE,
    )
    ids = tok.convert_tokens_to_ids
    config = PaddleOCRVLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                             "mrope_section": [1, 1, 2]},
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        ),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, patch_size=14, spatial_merge_size=2,
                           image_size=56),
        image_token_id=ids("<|IMAGE_PLACEHOLDER|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|IMAGE_START|>"), vision_end_token_id=ids("<|IMAGE_END|>"),
    )
    torch.manual_seed(seed)
    model = PaddleOCRVLForConditionalGeneration(config)
    if init_std is not None:
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() > 1:
                    param.normal_(0.0, init_std)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, processor


#: Vision special tokens of the Keye-VL tokenizer (Preview + the 1.5 per-frame tokens).
KEYE_VL_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<|frame|>", "<|fast_start|>", "<|fast_end|>",
)


def make_tiny_keye_vl(version: str = "preview", seed: int = 0, init_std: float | None = None):
    """A tiny randomly initialised Keye-VL (``KeyeVLForConditionalGeneration``) and its
    ``KeyeVLProcessor``, built fully offline: character tokenizer with the Keye vision tokens,
    images resized to <= 16 LLM tokens, video frames to <= 4 tokens (1.5: Slow-Fast with <= 4 slow
    tokens per frame). ``version`` is ``"preview"`` or ``"1.5"``. ``init_std`` re-draws every weight
    matrix from N(0, init_std^2) so greedy outputs vary with the input. Returns ``(model, processor)``;
    both reload with ``AutoModelForImageTextToText`` / ``AutoProcessor`` after ``save_pretrained``."""
    from kwaiformers.models.keye_vl.configuration_keye_vl import KeyeVLConfig
    from kwaiformers.models.keye_vl.image_processing_keye_vl import KeyeVLImageProcessor
    from kwaiformers.models.keye_vl.modeling_keye_vl import KeyeVLForConditionalGeneration
    from kwaiformers.models.keye_vl.processing_keye_vl import KeyeVLProcessor
    from kwaiformers.models.keye_vl.video_processing_keye_vl import KeyeVLVideoProcessor

    tok = make_tiny_tokenizer(extra_special_tokens=KEYE_VL_SPECIAL_TOKENS)
    ids = {t: tok.convert_tokens_to_ids(t) for t in KEYE_VL_SPECIAL_TOKENS}
    config = KeyeVLConfig(
        keye_version=version,
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=2048,
            bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]},
        ),
        vision_config=dict(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            image_size=56, patch_size=14,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"], frame_token_id=ids["<|frame|>"],
        fast_start_token_id=ids["<|fast_start|>"], fast_end_token_id=ids["<|fast_end|>"],
    )
    torch.manual_seed(seed)
    model = KeyeVLForConditionalGeneration(config).eval()
    if init_std is not None:
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2:
                    p.normal_(0.0, init_std)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = None
    video = KeyeVLVideoProcessor(
        min_pixels=28 * 28, max_pixels=4 * 28 * 28, total_pixels=64 * 28 * 28, min_frames=2,
        max_frames=8, slow_fast=version == "1.5", min_tokens=1, max_tokens=4, total_tokens=24,
    )
    processor = KeyeVLProcessor(
        image_processor=KeyeVLImageProcessor(min_pixels=28 * 28, max_pixels=16 * 28 * 28),
        tokenizer=tok,
        video_processor=video,
    )
    return model, processor
