"""Keye-VL video processor: frame sampling, per-frame pixel budgets, Slow-Fast frame typing, packing.

Two generations (``slow_fast`` switches between them):

**Preview** (``keye-vl-utils`` 1.0.0 rules, Keye-VL report Sec. 2.2):

- sample ``n = clamp(total / video_fps * fps, min_frames, min(max_frames, total))`` frames (default
  ``fps=2``, 4..768), floored to an even count, at ``linspace(0, total - 1, n).round()``; the
  effective rate is ``n / total * video_fps`` and ``second_per_grid_ts = 1 / rate``.
- every frame is resized (bicubic) to frame 0's ``smart_resize`` size with ``min_pixels = 128*28^2``
  and ``max_pixels = max(min(768*28^2, total_pixels / n * budget_factor), 1.05 * min_pixels)``;
  ``total_pixels`` = 128000*28^2*0.9 and ``budget_factor = 2`` reproduce the reference (which lets a
  video use up to twice the stated budget because Keye's temporal patch is 1).
- output ``pixel_values_videos (T*h*w, 3, 14, 14)`` raster per frame, ``video_grid_thw (T, h, w)``.

**1.5 Slow-Fast** (``keye-vl-utils`` 1.5.2, Keye-VL-1.5 report Sec. 2.2):

- ``fps = min(2, video_fps)``; frame 0 is *slow*; a frame becomes a new slow frame when fewer than
  ``min_frame_similarity`` (0.9) of its 28x28 patches have cosine similarity > ``patch_similarity``
  (0.7) with the last slow frame (both downscaled to <= 256 tokens, HSV); otherwise it is *fast*.
- a binary search picks the slow tokens per frame ``s`` in [48, 768] with
  ``s * n_slow + max(0.3 s, 48) * n_fast <= total_tokens`` (65536); fast frames get ``max(0.3 s, 48)``.
- output is per frame: ``video_grid_thw`` rows ``(1, h, w)``, plus ``timestamps``
  (``frame_index / video_fps``), ``frame_types`` (0 slow, 1 fast) and ``num_frames`` per video, which
  the processor turns into the ``<|frame|>`` prompt and does not pass to the model.

Videos are NumPy arrays ``(T, H, W, 3)`` (uint8 or float in [0, 1]), torch tensors ``(T, 3, H, W)``
or lists of frames (PIL images / ``(H, W, 3)`` arrays). ``video_fps`` gives the source frame rate; when
it is ``None`` the frames are taken as already sampled at ``fps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.video_processing_utils import BaseVideoProcessor

from .image_processing_keye_vl import smart_resize

__all__ = [
    "KeyeVL1_5VideoProcessor",
    "KeyeVLVideoProcessor",
    "sample_frame_indices",
    "slow_fast_frame_types",
]

_TOKEN_PIXELS = 28 * 28


def sample_frame_indices(
    total_frames: int,
    video_fps: float | None,
    fps: float = 2.0,
    num_frames: int | None = None,
    min_frames: int = 4,
    max_frames: int = 768,
    frame_factor: int = 2,
) -> tuple[list[int], float]:
    """Frame indices to keep and the effective sampling rate (keye-vl-utils ``smart_nframes``)."""
    if total_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {total_frames}")
    if num_frames is not None:
        n = int(num_frames)
    elif video_fps is None:
        n = total_frames
    else:
        if video_fps <= 0 or fps <= 0:
            raise ValueError(f"video_fps and fps must be positive, got {video_fps} and {fps}")
        n = total_frames / video_fps * fps
        n = min(max(n, min_frames), max_frames, total_frames)
    n = max(1, min(int(n), total_frames))
    if n >= frame_factor:
        n = n // frame_factor * frame_factor
    indices = np.linspace(0, total_frames - 1, n).round().astype(int).tolist()
    if video_fps is None:
        rate = float(fps)
    else:
        rate = n / total_frames * float(video_fps)
    return indices, rate


def _to_frames(video: Any) -> list[np.ndarray]:
    """A video -> list of uint8 ``(H, W, 3)`` arrays."""
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
            "videos must be arrays (T, H, W, 3), tensors (T, 3, H, W) or lists of frames, got "
            f"{type(video).__name__}"
        )
    if not frames:
        raise ValueError("a video needs at least one frame")
    out = []
    for frame in frames:
        if isinstance(frame, Image.Image):
            frame = np.asarray(frame.convert("RGB"))
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
        out.append(frame)
    return out


def _resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC))


def slow_fast_frame_types(
    frames: list[np.ndarray],
    patch_similarity: float = 0.7,
    min_frame_similarity: float = 0.9,
    max_tokens: int = 256,
) -> list[int]:
    """0 (slow / key frame) or 1 (fast) per frame, by HSV patch similarity to the last slow frame."""
    h, w = frames[0].shape[:2]
    rh, rw = smart_resize(h, w, 28, min_pixels=4 * _TOKEN_PIXELS, max_pixels=max_tokens * _TOKEN_PIXELS)

    def patches(frame: np.ndarray) -> np.ndarray:
        hsv = np.asarray(Image.fromarray(_resize(frame, h, w)).resize((rw, rh)).convert("HSV"))
        x = hsv.astype(np.float32).reshape(rh // 28, 28, rw // 28, 28, 3).transpose(0, 2, 1, 3, 4)
        return x.reshape(-1, 28 * 28 * 3)

    def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
        sim = (a * b).sum(-1) / np.maximum(na * nb, 1e-6)
        both_zero = (na < 1e-6) & (nb < 1e-6)  # two black patches are identical
        return np.where(both_zero, 1.0, sim)

    types, key = [0], patches(frames[0])
    for frame in frames[1:]:
        cur = patches(frame)
        similar = float((cosine(cur, key) > patch_similarity).mean())
        if similar < min_frame_similarity:
            types.append(0)
            key = cur
        else:
            types.append(1)
    return types


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
    max_frames = 768
    min_pixels = 128 * _TOKEN_PIXELS
    max_pixels = 768 * _TOKEN_PIXELS
    total_pixels = int(128000 * _TOKEN_PIXELS * 0.9)
    budget_factor = 2.0
    slow_fast = False
    min_tokens = 48
    max_tokens = 768
    total_tokens = 65536
    fast_token_ratio = 0.3
    patch_similarity = 0.7
    min_frame_similarity = 0.9

    _config_keys = (
        "patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std", "fps",
        "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels", "budget_factor",
        "slow_fast", "min_tokens", "max_tokens", "total_tokens", "fast_token_ratio",
        "patch_similarity", "min_frame_similarity",
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
    def _normalize_and_patchify(self, frames: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        x = (x - mean) / std
        t, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(t, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(t * (h // p) * (w // p), c, p, p)

    def _slow_tokens(self, n_slow: int, n_fast: int) -> int:
        lo, hi, best = self.min_tokens, self.max_tokens, self.min_tokens
        while lo <= hi:
            mid = (lo + hi) // 2
            fast = max(int(mid * self.fast_token_ratio), self.min_tokens)
            if mid * n_slow + fast * n_fast <= self.total_tokens:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        return best

    def process_one(
        self, video: Any, video_fps: float | None = None, fps: float | None = None,
        num_frames: int | None = None,
    ) -> dict[str, Any]:
        """Sample, resize and pack one video; returns tensors and the per-frame metadata."""
        frames = _to_frames(video)
        factor = self.patch_size * self.merge_size
        fps = float(fps if fps is not None else self.fps)
        if self.slow_fast and video_fps is not None:
            fps = min(fps, float(video_fps))
        indices, rate = sample_frame_indices(
            len(frames), video_fps, fps, num_frames, self.min_frames, self.max_frames,
            frame_factor=1 if self.slow_fast else 2,
        )
        frames = [frames[i] for i in indices]
        if not self.slow_fast and len(frames) % 2:
            frames.append(frames[-1])  # keye-vl-utils pads frame lists to an even count
            indices.append(indices[-1])
        h0, w0 = frames[0].shape[:2]
        if not self.slow_fast:
            max_pixels = max(
                min(self.max_pixels, self.total_pixels / len(frames) * self.budget_factor),
                int(self.min_pixels * 1.05),
            )
            rh, rw = smart_resize(h0, w0, factor, min_pixels=self.min_pixels, max_pixels=int(max_pixels))
            frames = [_resize(f, rh, rw) for f in frames]
            return {
                "pixel_values_videos": self._normalize_and_patchify(frames),
                "video_grid_thw": torch.tensor([[len(frames), rh // self.patch_size, rw // self.patch_size]]),
                "second_per_grid_ts": 1.0 / rate,
                "num_frames": len(frames),
            }
        types = slow_fast_frame_types(frames, self.patch_similarity, self.min_frame_similarity)
        n_fast = sum(types)
        slow = self._slow_tokens(len(types) - n_fast, n_fast)
        fast = max(int(slow * self.fast_token_ratio), self.min_tokens)
        sizes = {
            0: smart_resize(h0, w0, factor, self.min_tokens * _TOKEN_PIXELS, slow * _TOKEN_PIXELS),
            1: smart_resize(h0, w0, factor, self.min_tokens * _TOKEN_PIXELS, fast * _TOKEN_PIXELS),
        }
        pixels, grids = [], []
        for frame, kind in zip(frames, types):
            rh, rw = sizes[kind]
            pixels.append(self._normalize_and_patchify([_resize(frame, rh, rw)]))
            grids.append([1, rh // self.patch_size, rw // self.patch_size])
        src_fps = float(video_fps) if video_fps is not None else fps
        return {
            "pixel_values_videos": torch.cat(pixels),
            "video_grid_thw": torch.tensor(grids),
            "second_per_grid_ts": 1.0 / rate,
            "num_frames": len(frames),
            "timestamps": [i / src_fps for i in indices],
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
        **kwargs,
    ) -> BatchFeature:
        """Process one video or a list of videos.

        Returns ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts`` and
        ``num_frames`` (plus ``timestamps`` / ``frame_types`` lists with ``slow_fast``).
        """
        if kwargs:
            raise TypeError(f"unexpected video processor arguments: {sorted(kwargs)}")
        if isinstance(videos, np.ndarray) and videos.ndim == 4:
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
        results = [self.process_one(v, r, fps, num_frames) for v, r in zip(videos, rates)]
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
        """Patches for a pre-sampled Preview video of ``num_frames`` frames of ``height x width``."""
        n = num_frames + num_frames % 2
        max_pixels = max(min(self.max_pixels, self.total_pixels / n * self.budget_factor),
                         int(self.min_pixels * 1.05))
        rh, rw = smart_resize(height, width, self.patch_size * self.merge_size, self.min_pixels,
                              int(max_pixels))
        return n * (rh // self.patch_size) * (rw // self.patch_size)


class KeyeVL1_5VideoProcessor(KeyeVLVideoProcessor):  # noqa: N801 - hub naming
    """Keye-VL-1.5 defaults: Slow-Fast frames with per-frame timestamps."""

    slow_fast = True
