"""Keye-VL processors: image resizing/patch packing, video frame sampling and Slow-Fast typing,
placeholder expansion, chat template thinking modes, response parsing, save/load via AutoProcessor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from utils import make_tiny_keye_vl

from kwaiformers.models.keye_vl.chat_keye_vl import (
    add_thinking_suffix,
    build_keye_messages,
    parse_keye_response,
)
from kwaiformers.models.keye_vl.image_processing_keye_vl import KeyeVLImageProcessor
from kwaiformers.models.keye_vl.video_processing_keye_vl import (
    KeyeVLVideoProcessor,
    sample_frame_indices,
    slow_fast_frame_types,
)

RNG = np.random.default_rng(0)


def _image(h, w):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_image_processor_budget_and_raster_patches():
    hub = KeyeVLImageProcessor(min_pixels=3136, max_pixels=1003520)
    # design-note worked examples: 720x1280 -> 728x1288 (4784 patches), 224x224 -> 256 patches
    assert hub.get_number_of_image_patches(720, 1280) == 52 * 92
    assert hub.get_number_of_image_patches(1080, 1920) == 4888
    assert hub.get_number_of_image_patches(224, 224) == 256
    img = _image(56, 84)  # already a multiple of 28 and inside the budget: no resize
    out = KeyeVLImageProcessor(min_pixels=784, max_pixels=56 * 84)(images=[img], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 4, 6]]
    assert out["pixel_values"].shape == (24, 3, 14, 14)
    expected = (torch.from_numpy(img[14:28, 28:42]).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(out["pixel_values"][1 * 6 + 2], expected)  # raster order (row 1, col 2)


def test_frame_sampling_rules():
    idx, rate = sample_frame_indices(30, video_fps=10.0, fps=2.0)
    assert idx == [0, 6, 12, 17, 23, 29] and rate == pytest.approx(2.0)
    idx, rate = sample_frame_indices(5, video_fps=30.0, fps=2.0, min_frames=4)
    assert len(idx) == 4  # clamped to min_frames, even count
    assert len(sample_frame_indices(7, 30.0, num_frames=5)[0]) == 4  # num_frames rounds to even
    # 1.5: min(int(T / video_fps * min(fps, video_fps)), cap), no minimum of 4
    assert sample_frame_indices(30, 30.0, slow_fast=True, max_frames=None)[0] == [0, 29]
    assert len(sample_frame_indices(9, 1.0, slow_fast=True, max_frames=None)[0]) == 9  # fps = min(2, 1)
    assert len(sample_frame_indices(10**5, 60.0, slow_fast=True, max_frames=None, budget_max_frames=1365)[0]) == 1365
    with pytest.raises(ValueError, match="too short"):
        sample_frame_indices(10, 30.0, slow_fast=True)
    with pytest.raises(ValueError, match="positive"):
        sample_frame_indices(10, video_fps=0.0)


def test_frame_lists_keep_every_frame_and_pad_to_even():
    proc = KeyeVLVideoProcessor()
    frames = [np.full((64, 96, 3), 50 * i, np.uint8) for i in range(5)]
    out = proc([frames])
    assert out["video_grid_thw"].tolist() == [[6, 4, 6]] and out["second_per_grid_ts"].tolist() == [0.5]
    last = out["pixel_values_videos"].reshape(6, 24, 3, 14, 14)
    assert torch.equal(last[5], last[4]) and not torch.equal(last[4], last[3])
    assert proc.get_num_of_video_patches(5, 64, 96) == 6 * 24
    assert proc([frames[:4]], fps=4.0)["second_per_grid_ts"].tolist() == [0.25]


def test_video_processor_preview_pixels_and_seconds():
    proc = KeyeVLVideoProcessor(min_pixels=784, max_pixels=4 * 784, total_pixels=64 * 784, min_frames=2)
    video = RNG.integers(0, 256, (8, 40, 60, 3), dtype=np.uint8)
    out = proc(video, video_fps=4.0, image_pixel_range=(784, 16 * 784))
    t, h, w = out["video_grid_thw"][0].tolist()
    assert t == 4 and (h * 14) % 28 == 0 and (w * 14) % 28 == 0 and h * w * 196 <= 4 * 784
    assert out["pixel_values_videos"].shape == (t * h * w, 3, 14, 14)
    assert out["second_per_grid_ts"].tolist() == [0.5]
    with pytest.raises(TypeError, match="videos must be"):
        proc(42)


def test_slow_fast_frame_typing():
    black = np.zeros((56, 56, 3), np.uint8)
    white = np.full((56, 56, 3), 255, np.uint8)
    half = black.copy()
    half[:, :28] = 255
    frames = [black, black, white, white, half, half]
    assert slow_fast_frame_types(frames) == [0, 1, 0, 1, 0, 1]


def test_processor_image_and_video_expansion_preview():
    _, proc = make_tiny_keye_vl("preview")
    text = proc.apply_chat_template(build_keye_messages("Q", images=2, videos=1), add_generation_prompt=True)
    images = [_image(40, 60), _image(30, 30)]
    video = RNG.integers(0, 256, (6, 40, 60, 3), dtype=np.uint8)
    out = proc(text=text, images=images, videos=[video], video_fps=2.0, return_tensors="pt")
    ids = out["input_ids"][0]
    n_img = int(out["image_grid_thw"].prod(-1).sum()) // 4
    n_vid = int(out["video_grid_thw"].prod(-1).sum()) // 4
    assert int((ids == proc.image_token_id).sum()) == n_img
    assert int((ids == proc.video_token_id).sum()) == n_vid
    assert out["mm_token_type_ids"][0].tolist() == [
        1 if i == proc.image_token_id else 2 if i == proc.video_token_id else 0 for i in ids.tolist()
    ]
    assert out["second_per_grid_ts"].tolist() == [0.5]
    with pytest.raises(ValueError, match="placeholders but 1 images"):
        proc(text=text, images=images[:1], videos=[video])


def test_processor_keye_1_5_frame_prompt():
    _, proc = make_tiny_keye_vl("1.5")
    assert proc.slow_fast
    black = np.zeros((56, 56, 3), np.uint8)
    white = np.full((56, 56, 3), 255, np.uint8)
    video = np.stack([black, black, white, white])
    text = proc.apply_chat_template(build_keye_messages("Q", videos=1), add_generation_prompt=True)
    out = proc(text=text, videos=[video], video_fps=2.0, return_tensors="pt")
    decoded = proc.tokenizer.decode(out["input_ids"][0])
    assert "<|frame|>0.0<|video_pad|>" in decoded
    assert "<|frame|>0.5<|fast_start|><|video_pad|>" in decoded and "<|fast_end|><|frame|>1.0" in decoded
    assert out["video_grid_thw"].shape[0] == 4 and "second_per_grid_ts" not in out
    assert int((out["input_ids"] == proc.video_token_id).sum()) == int(out["video_grid_thw"].prod(-1).sum()) // 4


def test_chat_template_thinking_modes():
    _, proc = make_tiny_keye_vl()
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    think = proc.apply_chat_template(msgs, thinking_mode="think", add_generation_prompt=True)
    assert "Describe./think<|im_end|>" in think and think.startswith("<|im_start|>system\n")
    assert "Describe./no_think<|im_end|>" in proc.apply_chat_template(msgs, thinking_mode="no_think")
    auto = proc.apply_chat_template(msgs, thinking_mode="auto")
    assert "Describe.<|im_end|>" in auto and "/think" not in auto
    with pytest.raises(ValueError, match="thinking_mode"):
        proc.apply_chat_template(msgs, thinking_mode="deep")
    assert add_thinking_suffix(msgs, "no_think")[0]["content"][1]["text"] == "Describe./no_think"
    assert msgs[0]["content"][1]["text"] == "Describe."  # input not mutated
    labelled = proc.apply_chat_template(build_keye_messages("Q", images=2), add_vision_id=True)
    assert "Picture 1: <|vision_start|>" in labelled and "Picture 2: " in labelled


def test_parse_keye_response():
    assert parse_keye_response("<analysis>easy</analysis>Paris")["answer"] == "Paris"
    out = parse_keye_response("<analysis>hard</analysis><think>a\nb</think><answer>x = \\boxed{42}</answer>")
    assert out == {"analysis": "hard", "think": "a\nb", "answer": "42"}
    assert parse_keye_response("<think>r</think>\n\nplain")["answer"] == "plain"
    with pytest.raises(TypeError):
        parse_keye_response(3)


def test_processor_save_and_auto_reload(tmp_path):
    from transformers import AutoProcessor

    _, proc = make_tiny_keye_vl("1.5")
    proc.save_pretrained(tmp_path)
    again = AutoProcessor.from_pretrained(tmp_path)
    assert type(again).__name__ == "KeyeVLProcessor" and again.slow_fast
    assert again.image_processor.size["longest_edge"] == 16 * 28 * 28
    assert again.video_processor.total_tokens == proc.video_processor.total_tokens
    img = _image(40, 60)
    a = proc(text="<|image_pad|>x", images=[img], return_tensors="pt")
    b = again(text="<|image_pad|>x", images=[img], return_tensors="pt")
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["pixel_values"], b["pixel_values"])
