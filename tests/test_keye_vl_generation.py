"""Keye-VL generation: text, image, multi-image and video prompts; KV cache vs full recompute;
batched left padding; num_return_sequences over packed pixels; both generations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from utils import make_tiny_keye_vl

from kwaiformers.models.keye_vl.chat_keye_vl import build_keye_messages

RNG = np.random.default_rng(1)
IMAGES = [RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8), RNG.integers(0, 256, (56, 28, 3), dtype=np.uint8)]
VIDEO = RNG.integers(0, 256, (6, 40, 56, 3), dtype=np.uint8)


def _inputs(proc, kind: str, question: str = "What is it?"):
    n_img = {"text": 0, "image": 1, "multi_image": 2, "video": 0}[kind]
    n_vid = 1 if kind == "video" else 0
    text = proc.apply_chat_template(build_keye_messages(question, images=n_img, videos=n_vid),
                                    add_generation_prompt=True)
    kwargs = {}
    if n_img:
        kwargs["images"] = IMAGES[:n_img]
    if n_vid:
        kwargs.update(videos=[VIDEO], video_fps=2.0)
    return proc(text=[text], return_tensors="pt", **kwargs)


def _greedy_without_cache(model, inputs, steps: int) -> list[int]:
    """Reference decoder: full forward (no KV cache) on the growing sequence each step."""
    ids = inputs["input_ids"]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    out = []
    for _ in range(steps):
        logits = model(input_ids=ids, use_cache=False, **extra).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(int(nxt))
        ids = torch.cat([ids, nxt], dim=1)
    return out


@pytest.mark.parametrize("version", ["preview", "1.5"])
def test_generate_each_input_kind_matches_recompute(version):
    model, proc = make_tiny_keye_vl(version, init_std=0.5)
    for kind in ("text", "image", "multi_image", "video"):
        inputs = _inputs(proc, kind)
        with torch.no_grad():
            gen = model.generate(**inputs, max_new_tokens=4, do_sample=False, min_new_tokens=4)
            ref = _greedy_without_cache(model, inputs, 4)
        assert gen[0, inputs["input_ids"].shape[1]:].tolist() == ref, kind


def test_batched_left_padding_matches_single():
    model, proc = make_tiny_keye_vl(init_std=0.5)
    proc.tokenizer.padding_side = "left"
    texts = [
        proc.apply_chat_template(build_keye_messages("Hi", images=1), add_generation_prompt=True),
        proc.apply_chat_template(build_keye_messages("A longer question here", images=1),
                                 add_generation_prompt=True),
    ]
    batch = proc(text=texts, images=IMAGES, padding=True, return_tensors="pt")
    assert (batch["attention_mask"][0] == 0).any()  # the first prompt is left-padded
    with torch.no_grad():
        gen = model.generate(**batch, max_new_tokens=4, do_sample=False, min_new_tokens=4)
        for i, (text, image) in enumerate(zip(texts, IMAGES)):
            single = proc(text=[text], images=[image], return_tensors="pt")
            one = model.generate(**single, max_new_tokens=4, do_sample=False, min_new_tokens=4)
            assert gen[i, -4:].tolist() == one[0, -4:].tolist()


def test_num_return_sequences_expands_packed_pixels():
    model, proc = make_tiny_keye_vl(init_std=0.5)
    proc.tokenizer.padding_side = "left"
    texts = [proc.apply_chat_template(build_keye_messages("Q", images=n), add_generation_prompt=True)
             for n in (2, 1)]
    batch = proc(text=texts, images=[IMAGES[0], IMAGES[1], IMAGES[0]], padding=True, return_tensors="pt")
    with torch.no_grad():
        # top_k=1 sampling is greedy: both returned sequences of a prompt must equal its greedy output
        gen = model.generate(**batch, max_new_tokens=3, do_sample=True, top_k=1, num_return_sequences=2,
                             min_new_tokens=3)
        greedy = model.generate(**batch, max_new_tokens=3, do_sample=False, min_new_tokens=3)
    assert gen.shape[0] == 4
    for i in range(2):
        assert gen[2 * i].tolist() == gen[2 * i + 1].tolist() == greedy[i].tolist()


def test_manual_cached_decoding_of_left_padded_batch_matches_no_cache_forward():
    """Cached decoding by hand (no ``position_ids``: the model adds its stored ``rope_deltas``) of a
    left-padded batch gives the logits of a full no-cache forward over the grown sequences."""
    model, proc = make_tiny_keye_vl(init_std=0.5)
    proc.tokenizer.padding_side = "left"
    texts = [
        proc.apply_chat_template(build_keye_messages("Hi", images=1), add_generation_prompt=True),
        proc.apply_chat_template(build_keye_messages("A much longer question about it", images=1),
                                 add_generation_prompt=True),
    ]
    batch = proc(text=texts, images=IMAGES, padding=True, return_tensors="pt")
    assert (batch["attention_mask"][0] == 0).sum() >= 3  # the first prompt is left-padded
    vision = {k: batch[k] for k in ("pixel_values", "image_grid_thw")}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        out = model(**batch, use_cache=True)
        cache = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(2):
            ids = torch.cat([ids, nxt], 1)
            mask = torch.cat([mask, torch.ones_like(nxt)], 1)
            step = model(input_ids=nxt, attention_mask=mask, past_key_values=cache, use_cache=True)
            full = model(input_ids=ids, attention_mask=mask, use_cache=False, **vision)
            torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1], rtol=1e-4, atol=1e-4)
            cache = step.past_key_values
            nxt = full.logits[:, -1].argmax(-1, keepdim=True)
