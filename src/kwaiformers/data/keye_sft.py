"""Keye-VL SFT data: the five cold-start modes as conversation formats, a formatter and a collator.

Keye-VL report (arXiv 2507.01949) Sec. 4.2, "CoT cold start": a mixture of non-reasoning,
reasoning, auto-reasoning, agentic *think-with-image* and video data. Each record is a dict:

=================== ========================================================================
key                 meaning
=================== ========================================================================
``mode``            ``thinking`` | ``non_thinking`` | ``auto_think`` | ``think_with_image`` | ``video``
``question``        the user's text
``answer``          the final answer (always)
``reasoning``       chain of thought; required for ``thinking`` / ``think_with_image``;
                    ``auto_think`` / ``video`` think when it is given
``analysis``        ``auto_think`` only (required): the complexity analysis
``images``          list of images (paths, PIL images or ``(H, W, 3)`` arrays); may be empty
``video``           ``video`` mode only: frames (list of paths / arrays, or a ``.npy`` path)
``video_fps``       optional source frame rate of ``video``
``steps``           ``think_with_image`` only: list of ``{"reasoning", "code", "observation",
                    "image"}`` tool rounds (``image`` = the transformed image, optional)
=================== ========================================================================

Rendered assistant texts (user suffixes follow the model card's thinking switch):

- ``thinking``: user ``.../think``; assistant ``<think>R</think><answer>A</answer>``.
- ``non_thinking``: user ``.../no_think``; assistant ``A``.
- ``auto_think``: no suffix; assistant ``<analysis>X</analysis>`` then ``A`` or, with reasoning,
  ``<think>R</think><answer>A</answer>``.
- ``think_with_image``: user ``.../think``; per step an assistant turn
  ``<think>r</think><code>```python\\ncode\\n```</code>`` and a user turn carrying the executed result
  (``<observation>o</observation>`` and the result image); then ``<think>R</think><answer>A</answer>``.
- ``video``: user (video + question) with ``/think`` when reasoning is given else ``/no_think``.

The loss covers assistant turns only (system / user / tool-result tokens are masked with -100).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "KEYE_SFT_MODES",
    "KeyeSFTCollator",
    "KeyeSFTExample",
    "format_keye_sft_sample",
    "load_keye_sft_records",
    "write_synthetic_keye_sft_data",
]

KEYE_SFT_MODES = ("thinking", "non_thinking", "auto_think", "think_with_image", "video")


@dataclass
class KeyeSFTExample:
    """A formatted sample: chat ``messages`` plus the images / videos in placeholder order."""

    messages: list[dict[str, Any]]
    images: list[Any] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)
    video_fps: list[float | None] = field(default_factory=list)


def _require(sample: dict[str, Any], key: str, mode: str) -> str:
    value = sample.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"mode {mode!r} needs a non-empty string {key!r}, got {value!r}")
    return value


def _think_answer(reasoning: str, answer: str) -> str:
    return f"<think>{reasoning}</think><answer>{answer}</answer>"


def _user(question: str, n_images: int = 0, video: bool = False, suffix: str = "") -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    if video:
        content.append({"type": "video"})
    content.append({"type": "text", "text": question + suffix})
    return {"role": "user", "content": content}


def format_keye_sft_sample(sample: dict[str, Any], system: str | None = None) -> KeyeSFTExample:
    """Turn one record of the schema (module docstring) into chat messages with the mode's tags."""
    if not isinstance(sample, dict):
        raise TypeError(f"a Keye SFT sample must be a dict, got {type(sample).__name__}")
    mode = sample.get("mode")
    if mode not in KEYE_SFT_MODES:
        raise ValueError(f"sample['mode'] must be one of {KEYE_SFT_MODES}, got {mode!r}")
    question = _require(sample, "question", mode)
    answer = _require(sample, "answer", mode)
    images = list(sample.get("images") or [])
    reasoning = sample.get("reasoning") or None
    messages: list[dict[str, Any]] = [] if system is None else [{"role": "system", "content": system}]
    videos: list[Any] = []
    fps: list[float | None] = []
    if mode == "thinking":
        messages += [_user(question, len(images), suffix="/think"),
                     {"role": "assistant", "content": _think_answer(_require(sample, "reasoning", mode), answer)}]
    elif mode == "non_thinking":
        messages += [_user(question, len(images), suffix="/no_think"), {"role": "assistant", "content": answer}]
    elif mode == "auto_think":
        analysis = _require(sample, "analysis", mode)
        body = _think_answer(reasoning, answer) if reasoning else answer
        messages += [_user(question, len(images)),
                     {"role": "assistant", "content": f"<analysis>{analysis}</analysis>{body}"}]
    elif mode == "think_with_image":
        if not images:
            raise ValueError("mode 'think_with_image' needs at least one image")
        final_reasoning = _require(sample, "reasoning", mode)
        steps = sample.get("steps") or []
        if not isinstance(steps, list) or not steps:
            raise ValueError("mode 'think_with_image' needs a non-empty list 'steps' of tool rounds")
        messages.append(_user(question, len(images), suffix="/think"))
        for i, step in enumerate(steps):
            if not isinstance(step, dict) or not step.get("code"):
                raise ValueError(f"steps[{i}] must be a dict with a non-empty 'code'")
            thought = step.get("reasoning") or ""
            messages.append({"role": "assistant",
                             "content": f"<think>{thought}</think><code>```python\n{step['code']}\n```</code>"})
            content: list[dict[str, Any]] = []
            if step.get("image") is not None:
                images.append(step["image"])
                content.append({"type": "image"})
            content.append({"type": "text", "text": f"<observation>{step.get('observation') or ''}</observation>"})
            messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": _think_answer(final_reasoning, answer)})
    else:  # video
        video = sample.get("video")
        if video is None:
            raise ValueError("mode 'video' needs 'video' frames")
        videos.append(video)
        fps.append(sample.get("video_fps"))
        suffix = "/think" if reasoning else "/no_think"
        body = _think_answer(reasoning, answer) if reasoning else answer
        messages += [_user(question, len(images), video=True, suffix=suffix),
                     {"role": "assistant", "content": body}]
    return KeyeSFTExample(messages=messages, images=images, videos=videos, video_fps=fps)


def _load_image(image: Any, root: str | None) -> Any:
    if isinstance(image, str):
        from PIL import Image

        path = image if os.path.isabs(image) or root is None else os.path.join(root, image)
        with Image.open(path) as im:
            return im.convert("RGB")
    if isinstance(image, np.ndarray):
        return image
    if hasattr(image, "convert"):
        return image.convert("RGB")
    if isinstance(image, list):  # nested lists from Arrow
        return np.asarray(image, dtype=np.uint8)
    raise TypeError(f"unsupported image type {type(image).__name__}")


def _load_video(video: Any, root: str | None) -> Any:
    if isinstance(video, str):
        path = video if os.path.isabs(video) or root is None else os.path.join(root, video)
        if not path.endswith(".npy"):
            raise ValueError(f"a video path must be a .npy file of frames (T, H, W, 3), got {video!r}")
        return np.load(path, allow_pickle=False)
    if isinstance(video, (list, tuple)):
        return [_load_image(f, root) for f in video]
    return video


class KeyeSFTCollator:
    """Formats records, renders the chat template, runs :class:`KeyeVLProcessor`, masks labels.

    Args:
        processor: a Keye-VL processor (tokenizer + image + video processor).
        max_length: drop (with a ``ValueError``) samples longer than this many tokens; ``None`` = no
            limit. Truncation would cut vision placeholder blocks, so it is refused rather than done.
        root: directory that relative image / video paths are resolved against.
        system: optional system prompt (the template's default otherwise).
    """

    def __init__(self, processor, max_length: int | None = None, root: str | None = None,
                 system: str | None = None):
        self.processor = processor
        self.max_length = max_length
        self.root = root
        self.system = system
        tok = processor.tokenizer
        self.im_start = tok.convert_tokens_to_ids("<|im_start|>")
        self.im_end = tok.convert_tokens_to_ids("<|im_end|>")
        self.header = tok("assistant\n", add_special_tokens=False)["input_ids"]
        if self.im_start is None or self.im_end is None:
            raise ValueError("the tokenizer needs <|im_start|> and <|im_end|> tokens")

    def assistant_mask(self, ids: Sequence[int]) -> list[bool]:
        """True on assistant content tokens and their closing ``<|im_end|>``."""
        mask = [False] * len(ids)
        n, h = len(ids), len(self.header)
        i = 0
        while i < n:
            if ids[i] == self.im_start and list(ids[i + 1 : i + 1 + h]) == self.header:
                j = i + 1 + h
                while j < n and ids[j] != self.im_end:
                    mask[j] = True
                    j += 1
                if j < n:
                    mask[j] = True
                i = j + 1
            else:
                i += 1
        return mask

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        examples = [f if isinstance(f, KeyeSFTExample) else format_keye_sft_sample(f, self.system)
                    for f in features]
        texts = [self.processor.apply_chat_template(e.messages, tokenize=False) for e in examples]
        images = [_load_image(im, self.root) for e in examples for im in e.images]
        videos = [_load_video(v, self.root) for e in examples for v in e.videos]
        rates = [r for e in examples for r in e.video_fps]
        kwargs: dict[str, Any] = {}
        if images:
            kwargs["images"] = images
        if videos:
            kwargs["videos"] = videos
            kwargs["video_fps"] = rates
        batch = self.processor(text=texts, padding=True, return_tensors="pt", **kwargs)
        ids = batch["input_ids"]
        if self.max_length is not None and int(batch["attention_mask"].sum(-1).max()) > self.max_length:
            raise ValueError(
                f"a sample has {int(batch['attention_mask'].sum(-1).max())} tokens > max_length="
                f"{self.max_length}; lower the pixel budgets or raise max_length"
            )
        labels = torch.full_like(ids, -100)
        for b in range(ids.shape[0]):
            mask = torch.tensor(self.assistant_mask(ids[b].tolist()), dtype=torch.bool)
            mask &= batch["attention_mask"][b].bool()
            labels[b, mask] = ids[b, mask]
        batch["labels"] = labels
        return batch


_RECORD_KEYS = ("mode", "question", "answer", "reasoning", "analysis", "images", "video", "video_fps", "steps")
_STEP_KEYS = ("reasoning", "code", "observation", "image")


def _normalize(record: dict[str, Any]) -> dict[str, Any]:
    """Same keys on every record (Arrow tables take their columns from the records)."""
    unknown = set(record) - set(_RECORD_KEYS)
    if unknown:
        raise ValueError(f"unknown record keys {sorted(unknown)}; expected a subset of {_RECORD_KEYS}")
    out = {k: record.get(k) for k in _RECORD_KEYS}
    out["images"] = list(out["images"] or [])
    if out["steps"] is not None:
        out["steps"] = [{k: step.get(k) for k in _STEP_KEYS} for step in out["steps"]]
    return out


def load_keye_sft_records(path: str) -> list[dict[str, Any]]:
    """Read a JSONL file of records (module docstring); validates every record's mode and fields."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({exc})") from None
            try:
                format_keye_sft_sample(record)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from None
            records.append(_normalize(record))
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


def write_synthetic_keye_sft_data(directory: str, num_samples: int = 10, seed: int = 0,
                                  image_size: int = 32, num_frames: int = 4) -> str:
    """Write ``num_samples`` records cycling through the five modes (numpy images / frames saved as
    PNG / ``.npy``) plus ``train.jsonl``; returns the JSONL path. For offline smoke runs and tests."""
    from PIL import Image

    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(num_samples):
        mode = KEYE_SFT_MODES[i % len(KEYE_SFT_MODES)]
        image_name = f"img_{i}.png"
        Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)).save(
            os.path.join(directory, image_name))
        a, b = int(rng.integers(0, 9)), int(rng.integers(0, 9))
        record: dict[str, Any] = {"mode": mode, "question": f"{a}+{b}=?", "answer": str(a + b),
                                  "images": [image_name]}
        if mode in ("thinking", "think_with_image"):
            record["reasoning"] = f"{a} plus {b} is {a + b}"
        if mode == "auto_think":
            record["analysis"] = "simple arithmetic"
            if i % 2:
                record["reasoning"] = f"add {a} and {b}"
        if mode == "think_with_image":
            crop = f"crop_{i}.png"
            Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)).save(
                os.path.join(directory, crop))
            record["steps"] = [{"reasoning": "zoom in", "code": "image.crop((0, 0, 16, 16))",
                                "observation": "cropped", "image": crop}]
        if mode == "video":
            video_name = f"video_{i}.npy"
            np.save(os.path.join(directory, video_name),
                    rng.integers(0, 256, (num_frames, image_size, image_size, 3), dtype=np.uint8))
            record.update(video=video_name, video_fps=2.0, images=[])
        lines.append(json.dumps(record))
    path = os.path.join(directory, "train.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path
