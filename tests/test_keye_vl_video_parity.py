"""Keye-VL video processing against the official pipeline.

- Keye-VL-1.5: live differential tests against ``keye-vl-utils`` 1.5.x (test extra) on generated
  video files (several sizes, rates, lengths; moving / dark / bright / scene-cut / static content)
  and frame lists of odd and even counts: equal frame counts, timestamps, slow/fast types, grids,
  token counts and pixels; plus hypothesis-generated cases for the frame count, the token budget
  search and the frame similarity.
- Keye-VL-Preview: its ``keye-vl-utils`` line (1.0.0) cannot be installed next to 1.5.x, so its
  outputs are fixtures made by ``tests/fixtures/keye_vl_preview/make_fixtures.py`` (which also pins
  the torchvision resize kernel that :func:`resize_bicubic_antialias` reproduces).

``keye_vl_utils`` imports torchvision at module level but its 1.5 functions never call it (decoding
is decord's, resizing ``torch.nn.functional.interpolate``'s); PyPI's torchvision does not import
beside the project's torch CPU wheel, so a placeholder module is put in ``sys.modules`` only while
``keye_vl_utils`` is imported, and only when no torchvision is installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import types
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from utils import make_tiny_keye_vl

from kwaiformers.models.keye_vl.image_processing_keye_vl import (
    KEYE_IMAGE_MAX_PIXELS,
    KEYE_IMAGE_MIN_PIXELS,
    smart_resize,
)
from kwaiformers.models.keye_vl.processing_keye_vl import KeyeVLProcessor
from kwaiformers.models.keye_vl.video_processing_keye_vl import (
    KeyeVL1_5VideoProcessor,
    KeyeVLVideoProcessor,
    load_video,
    resize_bicubic_antialias,
    sample_frame_indices,
    slow_fast_frame_sizes,
    slow_fast_frame_types,
    vision_smart_resize,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "keye_vl_preview")


def _load_fixture_script():
    spec = importlib.util.spec_from_file_location("keye_preview_fixtures", os.path.join(FIXTURES, "make_fixtures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIX = _load_fixture_script()
with open(os.path.join(FIXTURES, "expected.json"), encoding="utf-8") as _f:
    EXPECTED = json.load(_f)


def _import_keye_vl_utils():
    """``keye_vl_utils.vision_process`` (1.5.x), with a placeholder torchvision if none is installed."""
    stubs = {}
    if importlib.util.find_spec("torchvision") is None:
        tv = types.ModuleType("torchvision")
        tv.__version__ = "0.0+placeholder"
        tv.io = types.ModuleType("torchvision.io")
        tv.transforms = types.ModuleType("torchvision.transforms")
        tv.transforms.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic", BILINEAR="bilinear")
        stubs = {"torchvision": tv, "torchvision.io": tv.io, "torchvision.transforms": tv.transforms}
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        from keye_vl_utils import vision_process
    finally:
        for key, old in saved.items():
            if old is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = old
    version = importlib.metadata.version("keye-vl-utils")
    assert version.startswith("1.5."), version
    return vision_process


KVU = _import_keye_vl_utils()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread is faster than oversubscribing a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sha(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).hexdigest()


def _frames_from_pixels(pixels: torch.Tensor, grid: list[int]) -> np.ndarray:
    """Invert normalisation + raster patching: ``(t*h*w, 3, 14, 14)`` -> uint8 ``(t, 14h, 14w, 3)``."""
    t, h, w = grid
    x = pixels.reshape(t, h, w, 3, 14, 14).permute(0, 1, 4, 2, 5, 3).reshape(t, h * 14, w * 14, 3)
    x = ((x * 0.5 + 0.5) * 255).round()
    assert float((x - x.round()).abs().max()) == 0 and x.min() >= 0 and x.max() <= 255
    return x.to(torch.uint8).numpy()


def _split_frames(pixels: torch.Tensor, grids: torch.Tensor) -> list[np.ndarray]:
    out, start = [], 0
    for row in grids.tolist():
        n = row[0] * row[1] * row[2]
        out.append(_frames_from_pixels(pixels[start : start + n], row)[0] if row[0] == 1 else None)
        start += n
    return out


# ------------------------------------------------------------------------- Preview (fixtures)
def _decord(path: str) -> tuple[np.ndarray, float]:
    """The frames and rate keye-vl-utils reads (it decodes with decord when installed)."""
    import decord

    reader = decord.VideoReader(path)
    return reader.get_batch(list(range(len(reader)))).asnumpy(), reader.get_avg_fps()


def test_preview_decoded_videos_match_keye_vl_utils_1_0():
    decoded = {}
    for case in EXPECTED["decoded"]:
        if case["file"] not in decoded:
            decoded[case["file"]] = _decord(os.path.join(FIXTURES, case["file"]))
        frames, video_fps = decoded[case["file"]]
        proc = KeyeVLVideoProcessor(**{k: case[k] for k in ("min_pixels", "total_pixels") if k in case})
        # the keye-vl-utils stage alone (an image-processor range that never resizes) ...
        out = proc(frames, video_fps=video_fps, fps=case["fps"], image_pixel_range=(28 * 28, 10**9))
        grid = out["video_grid_thw"][0].tolist()
        assert grid == [case["num_frames"], case["size"][0] // 14, case["size"][1] // 14], case
        assert out["second_per_grid_ts"].item() == pytest.approx(1 / case["sample_fps"], rel=1e-6)
        assert _sha(_frames_from_pixels(out["pixel_values_videos"], grid)) == case["sha256"], case
        # ... then the hub image processor's cap (3136..1003520 pixels) on those frames
        h, w = smart_resize(*case["size"], 28, KEYE_IMAGE_MIN_PIXELS, KEYE_IMAGE_MAX_PIXELS)
        if (h, w) != tuple(case["size"]):  # e.g. 28x84 frames are raised to the 3136-pixel minimum
            capped = proc(frames, video_fps=video_fps, fps=case["fps"])["video_grid_thw"].tolist()
            assert capped == [[case["num_frames"], h // 14, w // 14]]
            n_capped = decoded.setdefault("n_capped", 0)
            decoded["n_capped"] = n_capped + 1
    assert decoded["n_capped"] >= 1


def test_load_video_matches_decord():
    """PyAV (ours) and decord (keye-vl-utils) give the same frame count and rate, and the same RGB
    frames up to 1/255 in rare pixels (their bundled FFmpeg builds round YUV->RGB differently)."""
    for spec in FIX.CLIPS:
        path = os.path.join(FIXTURES, f"clip_{spec[0]}.mp4")
        ours, fps = load_video(path)
        ref, ref_fps = _decord(path)
        assert ours.shape == ref.shape and fps == ref_fps == spec[3]
        diff = np.abs(ours.astype(int) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert np.array_equal(load_video(os.path.join(FIXTURES, "clip_moving.mp4"))[0],
                          _decord(os.path.join(FIXTURES, "clip_moving.mp4"))[0])


@pytest.mark.parametrize("case", EXPECTED["lists"], ids=lambda c: f"{c['input']}-{c['fps']}")
def test_preview_frame_list_matches_keye_vl_utils_1_0(case):
    i, (name, n, h, w) = next((i, spec) for i, spec in enumerate(FIX.LISTS) if spec[0] == case["input"])
    frames = [Image.fromarray(f) for f in FIX.list_frames(n, h, w, i)]
    out = KeyeVLVideoProcessor()([frames], fps=case["fps"])
    grid = out["video_grid_thw"][0].tolist()
    assert grid == [case["num_frames"], case["size"][0] // 14, case["size"][1] // 14]
    assert out["second_per_grid_ts"].item() == pytest.approx(1 / case["sample_fps"])
    assert _sha(_frames_from_pixels(out["pixel_values_videos"], grid)) == case["sha256"]


def test_preview_frame_count_and_smart_resize_tables():
    for case in EXPECTED["nframes"]:
        try:
            got = len(sample_frame_indices(case["total"], case["video_fps"], case["fps"], case["num_frames"])[0])
        except ValueError:
            got = None
        assert got == case["n"], case
    for case in EXPECTED["smart_resize"]:
        try:
            got = list(vision_smart_resize(*case["hw"], 28, *case["range"]))
        except ValueError:
            got = None
        assert got == case["out"], case


def test_resize_kernel_matches_torchvision_bicubic_antialias():
    x = torch.from_numpy(FIX.kernel_input())
    for case in EXPECTED["resize"]:
        assert _sha(resize_bicubic_antialias(x, *case["size"]).numpy()) == case["sha256"], case["size"]


def test_preview_processor_issue_example_frame_list_tokens():
    """5 frames of 64x96 (issue 18): padded to 6, image budgets -> [[6, 4, 6]], 36 tokens."""
    _, proc = make_tiny_keye_vl("preview")
    proc = KeyeVLProcessor(image_processor=type(proc.image_processor)(), tokenizer=proc.tokenizer,
                           video_processor=KeyeVLVideoProcessor())
    frames = [np.full((64, 96, 3), 40 * i, np.uint8) for i in range(5)]
    out = proc(text="<|vision_start|><|video_pad|><|vision_end|>", videos=[frames], return_tensors="pt")
    assert out["video_grid_thw"].tolist() == [[6, 4, 6]]
    assert int((out["input_ids"] == proc.video_token_id).sum()) == 36


# ------------------------------------------------------------------------- 1.5 (live keye-vl-utils)
CLIPS_15 = [
    ("moving", 90, 160, 30, 45, "moving"),
    ("one_second", 90, 160, 30, 30, "moving"),
    ("dark", 72, 128, 25, 60, "dark"),
    ("bright", 120, 96, 10, 33, "bright"),
    ("cuts", 64, 112, 12, 48, "cuts"),
    ("static", 56, 56, 1, 5, "bright"),
]


def _clip(h, w, n, content):
    if content != "cuts":
        return FIX.clip_frames(h, w, n, content)
    scenes = [FIX.clip_frames(h, w, n, "moving"), FIX.clip_frames(h, w, n, "dark"), FIX.clip_frames(h, w, n, "bright")]
    return np.stack([scenes[(t // 5) % 3][t] for t in range(n)])


@pytest.fixture(scope="module")
def clips_15(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keye15")
    paths = []
    for name, h, w, fps, n, content in CLIPS_15:
        path = str(folder / f"{name}.mp4")
        FIX.write_video(path, _clip(h, w, n, content), fps)
        paths.append(path)
    paths += [os.path.join(FIXTURES, f"clip_{c[0]}.mp4") for c in FIX.CLIPS]
    return paths


def _official_15(ele):
    frames, kw = KVU.fetch_video(ele)
    types_ = kw["frame_types"].tolist()
    sizes = {0: (kw["height"], kw["width"]), 1: (kw["fast_height"], kw["fast_width"])}
    per_frame = [resize_bicubic_antialias(frames[i : i + 1], *sizes[t])[0].permute(1, 2, 0).numpy()
                 for i, t in enumerate(types_)]
    stamps = kw["timestamps"].tolist() if "timestamps" in kw else None
    return types_, sizes, per_frame, stamps


def _check_15(out, types_, sizes, per_frame, stamps):
    assert out["num_frames"].tolist() == [len(types_)]
    assert out["frame_types"] == [types_]
    assert out["video_grid_thw"].tolist() == [[1, sizes[t][0] // 14, sizes[t][1] // 14] for t in types_]
    if stamps is not None:
        assert out["timestamps"] == [stamps]
    ours = _split_frames(out["pixel_values_videos"], out["video_grid_thw"])
    for a, b in zip(ours, per_frame):
        assert np.array_equal(a, b)


BUDGETS_15 = [({}, {}), ({"video_total_pixels": 300 * 784, "max_pixels": 256 * 784},
                         {"total_tokens": 300, "max_tokens": 256})]


@pytest.mark.parametrize("budget", BUDGETS_15, ids=["default", "small"])
def test_keye_1_5_decoded_videos_match_keye_vl_utils(clips_15, budget):
    ele_extra, ours_kwargs = budget
    proc = KeyeVL1_5VideoProcessor(**ours_kwargs)
    seen_types = set()
    # default budgets on the generated clips, the small budget on the Preview fixture clips
    for path in clips_15[:6] if ours_kwargs == {} else clips_15[6:]:
        expected = _official_15({"video": path, **ele_extra})
        frames, video_fps = _decord(path)  # the decoded video keye-vl-utils saw
        _check_15(proc(frames, video_fps=video_fps), *expected)
        seen_types.update(expected[0])
    assert seen_types == {0, 1}  # the clips exercise both slow and fast frames


@pytest.mark.parametrize("count", [3, 4, 7])
@pytest.mark.parametrize("fps", [None, 3.0])
def test_keye_1_5_frame_lists_match_keye_vl_utils(count, fps):
    frames = FIX.list_frames(count, 50, 70, count)
    frames[1:3] = frames[0]  # repeated frames become fast frames
    pil = [Image.fromarray(f) for f in frames]
    ele = {"video": pil} if fps is None else {"video": pil, "fps": fps}
    types_, sizes, per_frame, stamps = _official_15(ele)
    out = KeyeVL1_5VideoProcessor()([pil], fps=fps)
    _check_15(out, types_, sizes, per_frame, stamps)
    if fps is None:  # keye-vl-utils gives no timestamps; ours are index / 2 fps
        assert out["timestamps"] == [[i / 2.0 for i in range(len(types_))]]


@settings(max_examples=300, deadline=None)
@given(total=st.integers(1, 5000), video_fps=st.sampled_from([0.5, 1.0, 2.0, 2.5, 12.0, 23.976, 25.0, 29.97,
                                                              30.0, 59.94, 60.0, 120.0]),
       fps=st.sampled_from([0.5, 1.0, 2.0, 4.0]))
def test_keye_1_5_frame_count_matches_smart_nframes(total, video_fps, fps):
    official = KVU.smart_nframes({"fps": fps}, total_frames=total, video_fps=video_fps)
    try:
        ours = len(sample_frame_indices(total, video_fps, fps, slow_fast=True, max_frames=None,
                                        budget_max_frames=int(65536 * 784 / (48 * 784)))[0])
    except ValueError:
        ours = 0  # keye-vl-utils returns 0 frames (and fails later); we raise
    assert ours == official


@settings(max_examples=200, deadline=None)
@given(h=st.integers(28, 2000), w=st.integers(28, 2000), n_slow=st.integers(1, 400), n_fast=st.integers(0, 2000))
def test_keye_1_5_budget_search_matches_fetch_video(h, w, n_slow, n_fast):
    if max(h, w) / min(h, w) > 200:
        return
    kinds = torch.tensor([0] * n_slow + [1] * n_fast, dtype=torch.int32)
    fake = torch.zeros(1, 3, h, w, dtype=torch.uint8).expand(len(kinds), -1, -1, -1)
    with mock.patch.object(KVU, "_read_video_decord", lambda ele: (fake, None, kinds)):
        _, kw = KVU.fetch_video({"video": "unused.mp4"})
    slow, fast = slow_fast_frame_sizes(h, w, n_slow, n_fast)
    assert slow == (kw["height"], kw["width"]) and fast == (kw["fast_height"], kw["fast_width"])


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_keye_1_5_frame_similarity_matches_extract_slow_fast_frames(data):
    h, w = data.draw(st.sampled_from([(28, 28), (40, 90), (120, 64)]))
    n = data.draw(st.integers(2, 4))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        kind = data.draw(st.sampled_from(["black", "noise", "flat", "partly_black", "repeat"]))
        if kind == "repeat" and frames:
            frames.append(frames[-1].copy())
            continue
        f = np.zeros((h, w, 3), np.uint8)
        if kind == "noise":
            f = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == "flat":
            f[:] = rng.integers(0, 256, 3)
        elif kind == "partly_black":
            f[: h // 2] = rng.integers(0, 256, (h // 2, w, 3))
        frames.append(f)
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    assert slow_fast_frame_types(clip) == KVU.extract_slow_fast_frames(clip).tolist()


def test_keye_1_5_processor_prompt_and_tokens_match_official():
    _, tiny = make_tiny_keye_vl("1.5")
    proc = KeyeVLProcessor(image_processor=tiny.image_processor, tokenizer=tiny.tokenizer,
                           video_processor=KeyeVL1_5VideoProcessor())
    path = os.path.join(FIXTURES, "clip_long.mp4")  # slow and fast frames; read with PyAV here
    types_, sizes, _, stamps = _official_15({"video": path})
    assert set(types_) == {0, 1}
    out = proc(text="<|vision_start|><|video_pad|><|vision_end|>", videos=[path], return_tensors="pt")
    prompt = "".join(
        f"<|frame|>{ts:.1f}" + ("<|fast_start|>" if t else "")
        + "<|video_pad|>" * (sizes[t][0] * sizes[t][1] // 28 // 28) + ("<|fast_end|>" if t else "")
        for t, ts in zip(types_, stamps)
    )
    expected = proc.tokenizer("<|vision_start|>" + prompt + "<|vision_end|>", return_tensors="pt")["input_ids"]
    assert torch.equal(out["input_ids"], expected)


def test_keye_1_5_issue_examples():
    # a 1 s, 30-frame clip gives 2 frames; 720x1280 fast frames are 308x532 (0.3 x the slow frame's tokens)
    assert len(sample_frame_indices(30, 30.0, 2.0, slow_fast=True, max_frames=None)[0]) == 2
    assert slow_fast_frame_sizes(720, 1280, 1, 100)[1] == (308, 532)
    # a mostly black clip with a small moving square: every frame is slow (black patches left out)
    clip = torch.zeros(6, 3, 112, 112, dtype=torch.uint8)
    for t in range(6):
        clip[t, :, 10 + 12 * t : 22 + 12 * t, 10:30] = 200
    assert slow_fast_frame_types(clip) == [0] * 6
