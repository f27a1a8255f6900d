"""Keye-VL video processor: frame sampling, per-frame pixel budgets, Slow-Fast frame typing, packing.

The rules are those of the official pipeline, ``keye-vl-utils`` followed by the hub processor, for
both generations (``slow_fast`` switches between them). There are two kinds of input:

- a **decoded video**: a file path (decoded with PyAV, the ``video`` extra; the frame rate is read
  from the file) or frames with ``video_fps`` = the source frame rate. Frames are *sampled*, then
  resized with antialiased bicubic interpolation (:func:`resize_bicubic_antialias`, torchvision's
  ``resize(BICUBIC, antialias=True)`` on uint8 frames, reproduced with ``torch`` alone);
- a **frame list**: frames with ``video_fps=None`` (a list of PIL images / ``(H, W, 3)`` arrays, a
  ``(T, H, W, 3)`` array or a ``(T, 3, H, W)`` tensor). As ``keye-vl-utils`` does for a list of
  images, every frame is first sized like an image (``fetch_image``: ``vision_smart_resize``, PIL
  bicubic); ``fps`` (default 2) is the rate the frames were taken at.

**Preview** (``keye-vl-utils`` 1.0.0 + the hub ``KeyeProcessor``; Keye-VL report Sec. 2.2):

- decoded: ``n = clamp(T / video_fps * fps, min_frames, min(max_frames, T))`` floored to even
  (``fps=2``, 4..768; or ``num_frames`` rounded to even) at ``linspace(0, T - 1, n).round()``;
  every frame resized to ``vision_smart_resize(H, W)`` with ``min_pixels = 128*28^2`` and
  ``max_pixels = max(min(768*28^2, total_pixels / n * budget_factor), 1.05 * min_pixels)``
  (``total_pixels = 128000*28^2*0.9``, ``budget_factor = 2``: the reference lets a video use up to
  twice the stated budget because Keye's temporal patch is 1); ``second_per_grid_ts = T / (n *
  video_fps)``;
- frame list: **every** frame is kept, each sized with the image budgets (``frame_list_min_pixels``
  / ``frame_list_max_pixels`` = 4 / 16384 tokens), and the list is padded to an even count by
  repeating the last frame; ``second_per_grid_ts = 1 / fps``;
- then the processor step of the hub ``SiglipImageProcessor``: every frame is resized (PIL bicubic,
  only when the size changes) to the image processor's ``smart_resize`` of frame 0 with its
  ``min_pixels`` / ``max_pixels`` (``image_pixel_range``, passed by :class:`KeyeVLProcessor`);
- output ``pixel_values_videos (T*h*w, 3, 14, 14)`` raster per frame, ``video_grid_thw (T, h, w)``.

**1.5 Slow-Fast** (``keye-vl-utils`` 1.5.2; Keye-VL-1.5 report Sec. 2.2):

- frame count ``n = min(int(T / video_fps * min(fps, video_fps)), max_frames)`` with ``max_frames
  = int(total_tokens / min_tokens)`` (= 1365; ``max_frames`` can lower it) and no minimum, at
  ``linspace(0, T - 1, n).round()``; a frame list keeps its frames (the same formula with
  ``video_fps = fps``) after sizing each with the video budgets ``[min_tokens, max_tokens]``;
- frame types (:func:`slow_fast_frame_types`): frame 0 is slow; a frame becomes a new slow frame
  when fewer than ``min_frame_similarity`` (0.9) of its 28x28 patches have cosine similarity >
  ``patch_similarity`` (0.7) with the last slow frame, computed on bilinear antialiased copies of
  ``smart_resize(H, W, min_tokens .. similarity_max_tokens = 256)`` in OpenCV's uint8 HSV, leaving
  out patches that are black in both frames (a pair with no other patch counts as fast);
- budgets (:func:`slow_fast_frame_sizes`): a binary search returns the first slow token count ``s``
  in ``[min_tokens, max_tokens]`` with ``s * n_slow + max(int(0.3 s), min_tokens) * n_fast >
  total_tokens`` (65536), as the official search; slow frames get ``smart_resize(H, W, min_tokens,
  s)``, fast frames ``max(int(0.3 * slow frame's tokens), min_tokens)`` tokens;
- output per frame: ``video_grid_thw`` rows ``(1, h, w)``, plus ``timestamps`` (``float32(index /
  video_fps)``; for a frame list ``index / fps``), ``frame_types`` (0 slow, 1 fast) and ``num_frames``
  per video, which the processor turns into the ``<|frame|>`` prompt.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.video_processing_utils import BaseVideoProcessor

from .image_processing_keye_vl import KEYE_IMAGE_MAX_PIXELS, KEYE_IMAGE_MIN_PIXELS, smart_resize

__all__ = [
    "KeyeVL1_5VideoProcessor",
    "KeyeVLVideoProcessor",
    "load_video",
    "resize_bicubic_antialias",
    "rgb_to_hsv_opencv",
    "sample_frame_indices",
    "slow_fast_frame_sizes",
    "slow_fast_frame_types",
    "vision_smart_resize",
]

_TOKEN_PIXELS = 28 * 28


# ----------------------------------------------------------------------------- building blocks
def vision_smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: float = 4 * _TOKEN_PIXELS,
    max_pixels: float = 16384 * _TOKEN_PIXELS,
) -> tuple[int, int]:
    """``keye-vl-utils``' ``smart_resize``: sides multiples of ``factor``, area in the budget.

    Unlike the image processor's rule, short sides are not first scaled up to ``factor`` and the
    budgets may be floats (the video budgets are).
    """
    if min(height, width) < 1:
        raise ValueError(f"a frame must be at least 1x1, got {height}x{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return max(h_bar, factor), max(w_bar, factor)


def resize_bicubic_antialias(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)`` -> uint8 ``(T, 3, height, width)``, antialiased bicubic.

    Equals torchvision's ``resize(..., InterpolationMode.BICUBIC, antialias=True)`` on uint8
    tensors (float interpolation, clamp to [0, 255], round), which ``keye-vl-utils`` applies to
    decoded videos; no torchvision needed.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise TypeError(f"frames must be a uint8 (T, C, H, W) tensor, got {frames.dtype} {tuple(frames.shape)}")
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    out = F.interpolate(frames.float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0, 255).round_().to(torch.uint8)


def _pil_resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL bicubic (``fetch_image`` and the hub image processor); identity when the size is kept."""
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC))


def _opencv_hsv_tables() -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(256, dtype=np.float64)
    safe = np.maximum(i, 1)
    sdiv = np.where(i > 0, np.rint((255 << 12) / safe), 0).astype(np.int32)
    hdiv = np.where(i > 0, np.rint((180 << 12) / (6.0 * safe)), 0).astype(np.int32)
    return sdiv, hdiv


_SDIV, _HDIV = _opencv_hsv_tables()


def rgb_to_hsv_opencv(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's ``cvtColor(RGB2HSV)`` on uint8 (H in [0, 180), S and V in [0, 255]), bit for bit.

    OpenCV's fixed-point rule (12-bit reciprocal tables); verified on all 2^24 colours.
    """
    x = rgb.astype(np.int32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)
    s = (diff * _SDIV[v] + (1 << 11)) >> 12
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * _HDIV[diff] + (1 << 11)) >> 12
    h = np.where(h < 0, h + 180, h)
    return np.stack([h, s, v], -1).astype(np.uint8)


def load_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode every frame of a video file: uint8 ``(T, H, W, 3)`` RGB and the average frame rate.

    Uses PyAV (``pip install 'kwaiformers[video]'``); ``keye-vl-utils`` decodes the same frames with
    decord (both run FFmpeg's RGB conversion; equality is tested).
    """
    try:
        import av
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading video files needs PyAV: pip install 'kwaiformers[video]'") from err
    path = os.fspath(path)
    if path.startswith("file://"):
        path = path[len("file://"):]
    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise ValueError(f"no video frames in {path!r}")
    if not rate:
        raise ValueError(f"{path!r} has no frame rate; decode it yourself and pass video_fps")
    return np.stack(frames), float(rate)


def sample_frame_indices(
    total_frames: int,
    video_fps: float,
    fps: float = 2.0,
    num_frames: int | None = None,
    min_frames: int = 4,
    max_frames: int | None = 768,
    slow_fast: bool = False,
    budget_max_frames: int | None = None,
) -> tuple[list[int], float]:
    """Indices of the frames a decoded video keeps, and the effective sampling rate.

    Preview (``keye-vl-utils`` 1.0.0 ``smart_nframes``): ``clamp(T / video_fps * fps, min_frames,
    min(max_frames, T))`` floored to even, or ``num_frames`` rounded to even. 1.5 (``slow_fast``):
    ``min(int(T / video_fps * min(fps, video_fps)), budget_max_frames, max_frames)``, no minimum
    (``num_frames`` overrides it). Indices are ``torch.linspace(0, T - 1, n).round()`` (float32, as
    the reference).
    """
    if total_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {total_frames}")
    if video_fps is None or video_fps <= 0 or fps <= 0:
        raise ValueError(f"video_fps and fps must be positive, got {video_fps} and {fps}")
    if slow_fast:
        if num_frames is not None:
            n = int(num_frames)
        else:
            n = int(total_frames / video_fps * min(fps, video_fps))
            for cap in (budget_max_frames, max_frames):
                if cap is not None:
                    n = min(n, int(cap))
        if not 1 <= n <= total_frames:
            raise ValueError(
                f"a {total_frames}-frame video at {video_fps} fps gives {n} frames at {fps} fps; "
                f"need 1..{total_frames} (the clip is too short for the sampling rate)"
            )
    else:
        if num_frames is not None:
            n = round(num_frames / 2) * 2
        else:
            lo = math.ceil(min_frames / 2) * 2
            hi = math.floor(min(max_frames if max_frames is not None else 768, total_frames) / 2) * 2
            n = total_frames / video_fps * fps
            n = math.floor(min(max(n, lo), hi, total_frames) / 2) * 2
        if not 2 <= n <= total_frames:
            raise ValueError(f"Keye-VL needs 2..{total_frames} frames (an even count) from this video, got {n}")
    indices = torch.linspace(0, total_frames - 1, n).round().long().tolist()
    return indices, n / total_frames * float(video_fps)


def slow_fast_frame_types(
    frames: torch.Tensor | Sequence[Any],
    patch_similarity: float = 0.7,
    min_frame_similarity: float = 0.9,
    min_pixels: float = 48 * _TOKEN_PIXELS,
    max_pixels: float = 256 * _TOKEN_PIXELS,
) -> list[int]:
    """0 (slow / key frame) or 1 (fast) per frame (``keye-vl-utils`` 1.5 ``extract_slow_fast_frames``).

    Frames (uint8 ``(T, 3, H, W)`` or a list of ``(H, W, 3)`` frames of one size) are resized with
    bilinear antialiasing to ``smart_resize(H, W, 28, min_pixels, max_pixels)``, converted to OpenCV's
    uint8 HSV and cut into 28x28 patches. The similarity of a frame to the last slow frame is the
    fraction of patches with cosine similarity > ``patch_similarity``, leaving out patches black in
    both frames; below ``min_frame_similarity`` the frame is a new slow frame. When every patch is
    black in both frames the fraction is undefined and, as in the reference, the frame is fast.
    """
    if not isinstance(frames, torch.Tensor):
        frames = torch.from_numpy(np.stack(_to_frames(list(frames)))).permute(0, 3, 1, 2)
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise TypeError("frames must be uint8 (T, 3, H, W)")
    h, w = frames.shape[-2:]
    rh, rw = vision_smart_resize(h, w, 28, min_pixels=min_pixels, max_pixels=max_pixels)
    small = F.interpolate(frames, [rh, rw], mode="bilinear", antialias=True).float()

    def patches(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hsv = rgb_to_hsv_opencv(frame.permute(1, 2, 0).numpy().astype(np.uint8))
        x = torch.from_numpy(hsv).permute(2, 0, 1).float()
        x = x.reshape(3, rh // 28, 28, rw // 28, 28).permute(1, 3, 0, 2, 4).reshape(rh // 28, rw // 28, -1)
        norm = torch.norm(x, p=2, dim=-1, keepdim=True) + 1e-8
        return x / norm, norm[..., 0]

    types = [0]
    key, key_norm = patches(small[0])
    for i in range(1, small.shape[0]):
        cur, cur_norm = patches(small[i])
        cos = (key * cur).sum(-1)
        counted = ~((key_norm < 0.01) & (cur_norm < 0.01))
        sim = (cos[counted] > patch_similarity).float().mean().item()  # nan when nothing is counted
        if sim < min_frame_similarity:
            types.append(0)
            key, key_norm = cur, cur_norm
        else:
            types.append(1)
    return types


def slow_fast_frame_sizes(
    height: int,
    width: int,
    n_slow: int,
    n_fast: int,
    min_tokens: int = 48,
    max_tokens: int = 768,
    total_tokens: int = 65536,
    fast_token_ratio: float = 0.3,
    factor: int = 28,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Slow and fast frame sizes of a Keye-VL-1.5 video (``keye-vl-utils`` 1.5 ``fetch_video``).

    A binary search over slow tokens per frame ``s`` in ``[min_tokens, max_tokens]`` returns the
    first ``s`` whose estimate ``s * n_slow + max(int(ratio * s), min_tokens) * n_fast`` exceeds
    ``total_tokens`` (or ``max_tokens``); slow frames are ``smart_resize``-d into ``s`` tokens, fast
    frames into ``max(int(ratio * slow frame's tokens), min_tokens)`` tokens.
    """
    unit = factor * factor
    min_pixels = min_tokens * unit
    lo, hi = min_pixels / unit, max_tokens * unit / unit
    total_pixels = total_tokens * unit
    while lo < hi:
        mid = int(lo + hi) // 2
        estimate = n_slow * mid * unit + n_fast * max(int(fast_token_ratio * mid), min_tokens) * unit
        if estimate > total_pixels:
            hi = mid
        else:
            lo = mid + 1
    slow = vision_smart_resize(height, width, factor, min_pixels=min_pixels, max_pixels=lo * unit)
    slow_tokens = slow[0] * slow[1] / unit
    fast_max = max(int(slow_tokens * fast_token_ratio) * unit, min_pixels)
    fast = vision_smart_resize(height, width, factor, min_pixels=min_pixels, max_pixels=fast_max)
    return slow, fast


def _to_frames(video: Any) -> list[np.ndarray]:
    """Frames -> list of uint8 ``(H, W, 3)`` arrays (floats in [0, 1] are scaled by 255)."""
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().numpy()
        if video.ndim == 4 and video.shape[1] in (1, 3) and video.shape[-1] not in (1, 3):
            video = video.transpose(0, 2, 3, 1)
    if isinstance(video, np.ndarray):
        if video.ndim != 4:
            raise ValueError(f"a video array must have shape (T, H, W, 3), got {video.shape}")
        frames = list(video)
    elif isinstance(video, Sequence) and not isinstance(video, (str, bytes)):
        frames = list(video)
    else:
        raise TypeError(
            "videos must be file paths, arrays (T, H, W, 3), tensors (T, 3, H, W) or lists of frames, got "
            f"{type(video).__name__}"
        )
    if not frames:
        raise ValueError("a video needs at least one frame")
    out = []
    for frame in frames:
        if isinstance(frame, Image.Image):
            frame = np.asarray(frame.convert("RGB"))
        elif isinstance(frame, torch.Tensor):
            frame = frame.detach().cpu().numpy()
        frame = np.asarray(frame)
        if frame.ndim == 3 and frame.shape[0] in (1, 3) and frame.shape[-1] not in (1, 3):
            frame = frame.transpose(1, 2, 0)
        if frame.ndim == 2:
            frame = np.stack([frame] * 3, -1)
        if frame.ndim != 3 or frame.shape[-1] not in (1, 3):
            raise ValueError(f"a frame must have shape (H, W, 3), got {frame.shape}")
        if frame.shape[-1] == 1:
            frame = np.repeat(frame, 3, -1)
        if frame.dtype != np.uint8:
            scale = 255.0 if float(np.max(frame, initial=0)) <= 1.0 else 1.0
            frame = np.clip(frame.astype(np.float32) * scale, 0, 255).round().astype(np.uint8)
        out.append(np.ascontiguousarray(frame))
    return out


def _stack(frames: list[np.ndarray]) -> torch.Tensor:
    sizes = {f.shape for f in frames}
    if len(sizes) != 1:
        raise ValueError(f"all frames of a video must have one size, got {sorted(sizes)}")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


class KeyeVLVideoProcessor(BaseVideoProcessor):
    """Video processor for Keye-VL (module docstring); ``slow_fast=True`` selects the 1.5 rules."""

    model_input_names = ["pixel_values_videos", "video_grid_thw"]
    patch_size = 14
    merge_size = 2
    temporal_patch_size = 1
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    fps = 2.0
    min_frames = 4
    max_frames: int | None = 768
    min_pixels = 128 * _TOKEN_PIXELS
    max_pixels = 768 * _TOKEN_PIXELS
    total_pixels = int(128000 * _TOKEN_PIXELS * 0.9)
    budget_factor = 2.0
    frame_list_min_pixels = 4 * _TOKEN_PIXELS
    frame_list_max_pixels = 16384 * _TOKEN_PIXELS
    image_min_pixels = KEYE_IMAGE_MIN_PIXELS
    image_max_pixels = KEYE_IMAGE_MAX_PIXELS
    slow_fast = False
    min_tokens = 48
    max_tokens = 768
    total_tokens = 65536
    fast_token_ratio = 0.3
    patch_similarity = 0.7
    min_frame_similarity = 0.9
    similarity_max_tokens = 256

    _config_keys = (
        "patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std", "fps",
        "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels", "budget_factor",
        "frame_list_min_pixels", "frame_list_max_pixels", "image_min_pixels", "image_max_pixels",
        "slow_fast", "min_tokens", "max_tokens", "total_tokens", "fast_token_ratio",
        "patch_similarity", "min_frame_similarity", "similarity_max_tokens",
    )

    def __init__(self, **kwargs):
        own = {k: kwargs.pop(k) for k in list(kwargs) if k in self._config_keys}
        super().__init__(**kwargs)
        for key in self._config_keys:
            setattr(self, key, own.get(key, getattr(type(self), key)))
        if self.temporal_patch_size != 1:
            raise ValueError(f"Keye-VL packs every frame separately: temporal_patch_size must be 1, "
                             f"got {self.temporal_patch_size}")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update({k: getattr(self, k) for k in self._config_keys})
        return out

    # ------------------------------------------------------------------ helpers
    @property
    def _factor(self) -> int:
        return self.patch_size * self.merge_size

    def _normalize_and_patchify(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(T, 3, H, W)`` -> ``(T * H/14 * W/14, 3, 14, 14)`` raster patches, mean/std 0.5."""
        x = frames.float() / 255.0
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        x = (x - mean) / std
        t, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(t, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(t * (h // p) * (w // p), c, p, p)

    def _size_frame_list(self, frames: list[np.ndarray], min_pixels: float, max_pixels: float) -> list[np.ndarray]:
        """``fetch_image`` on every listed frame: its own ``vision_smart_resize`` size, PIL bicubic."""
        out = []
        for f in frames:
            rh, rw = vision_smart_resize(f.shape[0], f.shape[1], self._factor, min_pixels, max_pixels)
            out.append(_pil_resize(f, rh, rw))
        return out

    def _load(self, video: Any, video_fps: float | None) -> tuple[list[np.ndarray], float | None]:
        if isinstance(video, (str, os.PathLike)):
            frames, file_fps = load_video(video)
            return list(frames), float(video_fps) if video_fps is not None else file_fps
        return _to_frames(video), video_fps

    def process_one(
        self, video: Any, video_fps: float | None = None, fps: float | None = None,
        num_frames: int | None = None, image_pixel_range: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Sample, resize and pack one video; returns tensors and the per-frame metadata."""
        frames, video_fps = self._load(video, video_fps)
        fps = float(fps if fps is not None else self.fps)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if self.slow_fast:
            return self._process_slow_fast(frames, video_fps, fps, num_frames)
        return self._process_preview(frames, video_fps, fps, num_frames, image_pixel_range)

    def _process_preview(
        self, frames: list[np.ndarray], video_fps: float | None, fps: float, num_frames: int | None,
        image_pixel_range: tuple[int, int] | None,
    ) -> dict[str, Any]:
        if video_fps is None:  # frame list: keep every frame, image budgets, pad to even
            frames = self._size_frame_list(frames, self.frame_list_min_pixels, self.frame_list_max_pixels)
            if len(frames) % 2:
                frames.append(frames[-1])
            rate = fps
        else:  # decoded video: sample, video budgets, antialiased bicubic
            indices, rate = sample_frame_indices(
                len(frames), video_fps, fps, num_frames, self.min_frames, self.max_frames
            )
            clip = _stack(frames)[indices]
            max_pixels = max(
                min(self.max_pixels, self.total_pixels / len(indices) * self.budget_factor),
                int(self.min_pixels * 1.05),
            )
            rh, rw = vision_smart_resize(clip.shape[2], clip.shape[3], self._factor, self.min_pixels, max_pixels)
            clip = resize_bicubic_antialias(clip, rh, rw)
            frames = list(clip.permute(0, 2, 3, 1).numpy())
        # the hub image processor: every frame to the smart_resize size of frame 0 (PIL bicubic)
        lo, hi = image_pixel_range or (self.image_min_pixels, self.image_max_pixels)
        ph, pw = smart_resize(frames[0].shape[0], frames[0].shape[1], self._factor, min_pixels=lo, max_pixels=hi)
        clip = torch.from_numpy(np.stack([_pil_resize(f, ph, pw) for f in frames])).permute(0, 3, 1, 2)
        return {
            "pixel_values_videos": self._normalize_and_patchify(clip),
            "video_grid_thw": torch.tensor([[len(clip), ph // self.patch_size, pw // self.patch_size]]),
            "second_per_grid_ts": 1.0 / rate,
            "num_frames": len(clip),
        }

    def _process_slow_fast(
        self, frames: list[np.ndarray], video_fps: float | None, fps: float, num_frames: int | None
    ) -> dict[str, Any]:
        unit = self._factor**2
        if video_fps is None:  # frame list: each frame sized with the video budgets, rate = fps
            frames = self._size_frame_list(frames, self.min_tokens * unit, self.max_tokens * unit)
            video_fps = fps
        clip = _stack(frames)
        budget_max_frames = int(self.total_tokens * unit / (self.min_tokens * unit))
        indices, _ = sample_frame_indices(
            len(clip), video_fps, fps, num_frames, max_frames=self.max_frames, slow_fast=True,
            budget_max_frames=budget_max_frames,
        )
        clip = clip[indices]
        timestamps = torch.tensor([(1 / video_fps) * i for i in indices], dtype=torch.float32).tolist()
        types = slow_fast_frame_types(
            clip, self.patch_similarity, self.min_frame_similarity, self.min_tokens * unit,
            self.similarity_max_tokens * unit,
        )
        n_fast = sum(types)
        sizes = slow_fast_frame_sizes(
            clip.shape[2], clip.shape[3], len(types) - n_fast, n_fast, self.min_tokens, self.max_tokens,
            self.total_tokens, self.fast_token_ratio, self._factor,
        )
        resized: dict[int, torch.Tensor] = {}
        for kind in (0, 1):
            picked = [i for i, t in enumerate(types) if t == kind]
            if picked:
                resized.update(zip(picked, resize_bicubic_antialias(clip[picked], *sizes[kind])))
        out_pixels = [self._normalize_and_patchify(resized[i][None]) for i in range(len(types))]
        grids = [[1, sizes[k][0] // self.patch_size, sizes[k][1] // self.patch_size] for k in types]
        return {
            "pixel_values_videos": torch.cat(out_pixels),
            "video_grid_thw": torch.tensor(grids),
            "second_per_grid_ts": 1.0 / fps,
            "num_frames": len(types),
            "timestamps": timestamps,
            "frame_types": types,
        }

    def preprocess(self, videos: Any, **kwargs) -> BatchFeature:  # noqa: D401
        return self(videos, **kwargs)

    def __call__(
        self,
        videos: Any,
        video_fps: float | Sequence[float | None] | None = None,
        fps: float | None = None,
        num_frames: int | None = None,
        return_tensors: str | None = "pt",
        image_pixel_range: tuple[int, int] | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Process one video or a list of videos.

        ``videos``: file paths, arrays, tensors or frame lists (module docstring); ``video_fps``:
        source rate per video (``None``: a frame list); ``fps``: sampling rate (frame lists: the rate
        they were taken at); ``image_pixel_range``: the image processor's ``(min_pixels,
        max_pixels)`` applied to Preview frames. Returns ``pixel_values_videos``,
        ``video_grid_thw``, ``second_per_grid_ts`` and ``num_frames`` (plus ``timestamps`` /
        ``frame_types`` lists with ``slow_fast``).
        """
        if kwargs:
            raise TypeError(f"unexpected video processor arguments: {sorted(kwargs)}")
        if isinstance(videos, (str, os.PathLike)):
            videos = [videos]
        elif isinstance(videos, np.ndarray) and videos.ndim == 4:
            videos = [videos]
        elif isinstance(videos, torch.Tensor) and videos.ndim == 4:
            videos = [videos]
        elif isinstance(videos, Sequence) and videos and isinstance(videos[0], Image.Image):
            videos = [videos]
        if not isinstance(videos, Sequence) or isinstance(videos, (str, bytes)) or not videos:
            raise TypeError("videos must be a video or a non-empty list of videos")
        if video_fps is None or isinstance(video_fps, (int, float)):
            rates = [video_fps] * len(videos)
        else:
            rates = list(video_fps)
            if len(rates) != len(videos):
                raise ValueError(f"video_fps has {len(rates)} entries for {len(videos)} videos")
        results = [self.process_one(v, r, fps, num_frames, image_pixel_range) for v, r in zip(videos, rates)]
        data: dict[str, Any] = {
            "pixel_values_videos": torch.cat([r["pixel_values_videos"] for r in results]),
            "video_grid_thw": torch.cat([r["video_grid_thw"] for r in results]),
            "second_per_grid_ts": torch.tensor([r["second_per_grid_ts"] for r in results]),
            "num_frames": torch.tensor([r["num_frames"] for r in results]),
        }
        if self.slow_fast:
            data["timestamps"] = [r["timestamps"] for r in results]
            data["frame_types"] = [r["frame_types"] for r in results]
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        return BatchFeature(data=data)

    def get_num_of_video_patches(self, num_frames: int, height: int, width: int, videos_kwargs=None) -> int:
        """Patches for a Preview *frame list* of ``num_frames`` frames of ``height x width``."""
        if self.slow_fast:
            raise ValueError("Keye-VL-1.5 patch counts depend on the frame content (Slow-Fast types)")
        n = num_frames + num_frames % 2
        fh, fw = vision_smart_resize(height, width, self._factor, self.frame_list_min_pixels,
                                     self.frame_list_max_pixels)
        rh, rw = smart_resize(fh, fw, self._factor, self.image_min_pixels, self.image_max_pixels)
        return n * (rh // self.patch_size) * (rw // self.patch_size)


class KeyeVL1_5VideoProcessor(KeyeVLVideoProcessor):  # noqa: N801 - hub naming
    """Keye-VL-1.5 defaults: Slow-Fast frames with per-frame timestamps; frames capped only by the
    token budget (``int(total_tokens / min_tokens)``)."""

    slow_fast = True
    max_frames = None
