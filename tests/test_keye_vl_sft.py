"""Keye-VL SFT: the five cold-start formats, assistant-only label masks, and the tiny TRL recipe."""

from __future__ import annotations

import json

import pytest
import torch
from utils import make_tiny_keye_vl

from kwaiformers.data.keye_sft import (
    KeyeSFTCollator,
    format_keye_sft_sample,
    load_keye_sft_records,
    write_synthetic_keye_sft_data,
)


def _assistant(example):
    return [m["content"] for m in example.messages if m["role"] == "assistant"]


def _last_user_text(example):
    user = [m for m in example.messages if m["role"] == "user"][0]
    return user["content"][-1]["text"]


def test_five_modes_render_their_tags():
    base = {"question": "2+2?", "answer": "4", "images": ["a.png"]}
    ex = format_keye_sft_sample({**base, "mode": "thinking", "reasoning": "two twos"})
    assert _assistant(ex) == ["<think>two twos</think><answer>4</answer>"]
    assert _last_user_text(ex).endswith("/think")
    ex = format_keye_sft_sample({**base, "mode": "non_thinking"})
    assert _assistant(ex) == ["4"] and _last_user_text(ex).endswith("/no_think")
    ex = format_keye_sft_sample({**base, "mode": "auto_think", "analysis": "easy"})
    assert _assistant(ex) == ["<analysis>easy</analysis>4"] and _last_user_text(ex) == "2+2?"
    ex = format_keye_sft_sample({**base, "mode": "auto_think", "analysis": "hard", "reasoning": "r"})
    assert _assistant(ex) == ["<analysis>hard</analysis><think>r</think><answer>4</answer>"]
    ex = format_keye_sft_sample({**base, "mode": "think_with_image", "reasoning": "done",
                                 "steps": [{"reasoning": "zoom", "code": "crop()", "observation": "ok",
                                            "image": "b.png"}]})
    assert _assistant(ex)[0] == "<think>zoom</think><code>```python\ncrop()\n```</code>"
    assert ex.images == ["a.png", "b.png"] and [m["role"] for m in ex.messages] == [
        "user", "assistant", "user", "assistant"]
    ex = format_keye_sft_sample({"mode": "video", "question": "q", "answer": "a", "video": "v.npy"})
    assert ex.videos == ["v.npy"] and _last_user_text(ex).endswith("/no_think")
    assert ex.messages[0]["content"][0] == {"type": "video"}


@pytest.mark.parametrize("bad, match", [
    ({"mode": "deep", "question": "q", "answer": "a"}, "mode"),
    ({"mode": "thinking", "question": "q", "answer": "a"}, "reasoning"),
    ({"mode": "auto_think", "question": "q", "answer": "a"}, "analysis"),
    ({"mode": "think_with_image", "question": "q", "answer": "a", "reasoning": "r"}, "image"),
    ({"mode": "video", "question": "q", "answer": "a"}, "video"),
])
def test_invalid_records_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        format_keye_sft_sample(bad)


def test_collator_masks_everything_but_assistant_turns(tmp_path):
    path = write_synthetic_keye_sft_data(str(tmp_path), num_samples=5, image_size=28)
    records = load_keye_sft_records(path)
    _, proc = make_tiny_keye_vl()
    collator = KeyeSFTCollator(proc, root=str(tmp_path))
    batch = collator(records)
    tok = proc.tokenizer
    assert batch["pixel_values_videos"] is not None and batch["pixel_values"] is not None
    for b, record in enumerate(records):
        kept = batch["labels"][b][batch["labels"][b] != -100].tolist()
        text = tok.decode(kept)
        assert text.endswith("<|im_end|>") and "<|im_start|>" not in text
        assert "<|image_pad|>" not in text and record["question"] not in text
        assert record["answer"] in text
    twi = records.index(next(r for r in records if r["mode"] == "think_with_image"))
    text = tok.decode(batch["labels"][twi][batch["labels"][twi] != -100])
    assert "<code>" in text and "<observation>" not in text  # tool results are not trained on
    with pytest.raises(ValueError, match="max_length"):
        KeyeSFTCollator(proc, root=str(tmp_path), max_length=10)(records[:1])


def test_bad_jsonl_reports_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"mode": "thinking", "question": "q", "answer": "a"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_keye_sft_records(str(path))


def test_tiny_recipe_trains_with_lora(tmp_path):
    from kwaiformers.trainers.keye_sft_recipe import build_keye_sft_trainer, load_keye_sft_config

    cfg = load_keye_sft_config("trainers/configs/keye_sft_tiny.yaml")
    cfg["training"]["max_steps"] = 2
    trainer = build_keye_sft_trainer(cfg, output_dir=str(tmp_path))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))
    changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed and all("lora_" in n for n in changed)
