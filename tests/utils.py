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


def make_tiny_kc_mmbench(root, image_size: int = 16) -> str:
    """Write a tiny KC-MMBench copy in the published layout under ``root``: ``subsets/<hub file>.tsv``
    (columns ``index, question, answer, image_path, category``; ``image_path`` a single path for
    one image, a Python-list literal otherwise) and ``images/<task>/<index>_<k>.png`` (generated
    solid-colour PNGs). Returns ``str(root)``."""
    import csv
    import os

    from PIL import Image

    os.makedirs(os.path.join(root, "subsets"), exist_ok=True)
    for fname, (task, rows) in KC_MMBENCH_FIXTURE_ROWS.items():
        os.makedirs(os.path.join(root, "images", task), exist_ok=True)
        with open(os.path.join(root, "subsets", fname), "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["index", "question", "answer", "image_path", "category"])
            for index, question, answer, n_images, category in rows:
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
