"""``KeyeVLProcessor`` = tokenizer + :class:`KeyeVLImageProcessor` + :class:`KeyeVLVideoProcessor`.

Placeholder expansion (hub ``processing_keye.py`` / vLLM ``keye_vl1_5.py``):

- every ``<|image_pad|>`` becomes ``prod(image_grid_thw) / merge^2`` copies of itself;
- Preview: every ``<|video_pad|>`` becomes ``prod(video_grid_thw) / merge^2`` copies and the model
  receives ``second_per_grid_ts = 1 / sampling fps`` (temporal RoPE ids);
- 1.5 (video processor with ``slow_fast=True``): each frame becomes
  ``<|frame|>{timestamp:.1f}`` + ``h*w/merge^2`` pads, wrapped in ``<|fast_start|>`` /
  ``<|fast_end|>`` for fast frames; ``video_grid_thw`` has one ``(1, h, w)`` row per frame.

The processor also returns ``mm_token_type_ids`` (0 text, 1 image, 2 video), the transformers-5
convention; the model uses them to locate vision tokens in its 3D-RoPE rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file
from transformers.video_processing_utils import BaseVideoProcessor

from .chat_keye_vl import KEYE_CHAT_TEMPLATE, THINKING_MODES, parse_keye_response
from .video_processing_keye_vl import KeyeVL1_5VideoProcessor, KeyeVLVideoProcessor

__all__ = ["KeyeProcessor", "KeyeVL1_5Processor", "KeyeVLProcessor"]

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
FRAME_TOKEN = "<|frame|>"
FAST_START = "<|fast_start|>"
FAST_END = "<|fast_end|>"
_SENTINEL_IMAGE = "\x00KEYE_IMAGE\x00"
_SENTINEL_VIDEO = "\x00KEYE_VIDEO\x00"


class KeyeVLProcessor(ProcessorMixin):
    """Keye-VL processor (module docstring). Call with ``text``, ``images`` and/or ``videos``."""

    return_mm_token_type_ids = True
    #: video processor used when a checkpoint ships no ``video_preprocessor_config.json``
    default_video_processor_class: type[KeyeVLVideoProcessor] = KeyeVLVideoProcessor

    def __init__(self, image_processor=None, tokenizer=None, video_processor=None, chat_template=None, **kwargs):
        if chat_template is None:
            chat_template = KEYE_CHAT_TEMPLATE
        super().__init__(image_processor, tokenizer, video_processor, chat_template=chat_template)
        self.image_token = IMAGE_TOKEN
        self.video_token = VIDEO_TOKEN
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
        unk = tokenizer.unk_token_id
        for name, tid in (("image", self.image_token_id), ("video", self.video_token_id)):
            if tid is None or (unk is not None and tid == unk):
                raise ValueError(f"the tokenizer has no {name} placeholder token ({IMAGE_TOKEN}/{VIDEO_TOKEN})")

    def check_argument_for_proper_class(self, argument_name, argument):
        # Without torchvision transformers exposes only a dummy BaseVideoProcessor; accept ours.
        if argument_name == "video_processor" and isinstance(argument, BaseVideoProcessor):
            return type(argument)
        return super().check_argument_for_proper_class(argument_name, argument)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Tokenizer and image processor through the Auto classes; the video processor directly
        (``AutoVideoProcessor`` needs torchvision): from ``video_preprocessor_config.json`` when present,
        otherwise the generation's defaults (the hub checkpoints ship no video config)."""
        from transformers import AutoImageProcessor

        kwargs.pop("subfolder", None)
        tokenizer = cls._load_tokenizer_from_pretrained("tokenizer", pretrained_model_name_or_path, **kwargs)
        image_processor = AutoImageProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        video_file = cached_file(
            pretrained_model_name_or_path, "video_preprocessor_config.json",
            _raise_exceptions_for_missing_entries=False, **hub_kwargs,
        )
        saved = (processor_dict or {}).get("video_processor")
        if not isinstance(saved, dict) and video_file is not None:
            import json

            with open(video_file, encoding="utf-8") as f:
                saved = json.load(f)
        if isinstance(saved, dict):
            named = {c.__name__: c for c in (KeyeVLVideoProcessor, KeyeVL1_5VideoProcessor)}
            video_cls = named.get(saved.get("video_processor_type"), cls.default_video_processor_class)
            video_processor = video_cls(**{k: v for k, v in saved.items() if k != "video_processor_type"})
        else:
            video_processor = cls.default_video_processor_class()
        return [image_processor, tokenizer, video_processor]

    @property
    def slow_fast(self) -> bool:
        """True for Keye-VL-1.5 videos (per-frame timestamps and Slow-Fast frames)."""
        return bool(getattr(self.video_processor, "slow_fast", False))

    def _frame_prompt(self, grid_rows: torch.Tensor, timestamps: Sequence[float], types: Sequence[int]) -> str:
        m2 = self.video_processor.merge_size**2
        for tok in (FRAME_TOKEN, FAST_START, FAST_END):
            tid = self.tokenizer.convert_tokens_to_ids(tok)
            if tid is None or tid == self.tokenizer.unk_token_id:
                raise ValueError(f"Keye-VL-1.5 video prompts need the special token {tok} in the tokenizer")
        parts = []
        for row, ts, kind in zip(grid_rows.tolist(), timestamps, types):
            pads = VIDEO_TOKEN * (row[0] * row[1] * row[2] // m2)
            prefix = f"{FRAME_TOKEN}{ts:.1f}"
            parts.append(prefix + (FAST_START + pads + FAST_END if kind == 1 else pads))
        return "".join(parts)

    def __call__(
        self,
        images: Any = None,
        text: str | list[str] | None = None,
        videos: Any = None,
        video_fps: float | Sequence[float | None] | None = None,
        fps: float | None = None,
        num_frames: int | None = None,
        padding: bool | str = False,
        truncation: bool | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_mm_token_type_ids: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Tokenise ``text`` with the vision placeholders expanded; process ``images`` / ``videos``.

        ``images``: one image or a flat list (PIL, ``(H, W, 3)`` arrays or tensors), consumed in
        order by the ``<|image_pad|>`` placeholders of all texts. ``videos``: a video or a list;
        ``video_fps`` (source rate, scalar or per video), ``fps`` (sampling rate) and
        ``num_frames`` control frame sampling.
        """
        if text is None:
            raise ValueError("text is required (use apply_chat_template to build it from messages)")
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a list of strings")
        data: dict[str, Any] = {}
        image_grids = video_grids = None
        if images is not None:
            image_inputs = self.image_processor(images=images, return_tensors="pt")
            data["pixel_values"] = image_inputs["pixel_values"]
            image_grids = data["image_grid_thw"] = image_inputs["image_grid_thw"]
        video_meta: dict[str, Any] = {}
        if videos is not None:
            size = self.image_processor.size
            pixel_range = (size["shortest_edge"], size["longest_edge"])  # the hub processor's cap on frames
            video_inputs = self.video_processor(
                videos, video_fps=video_fps, fps=fps, num_frames=num_frames, image_pixel_range=pixel_range
            )
            data["pixel_values_videos"] = video_inputs["pixel_values_videos"]
            video_grids = data["video_grid_thw"] = video_inputs["video_grid_thw"]
            if self.slow_fast:
                video_meta = {k: video_inputs[k] for k in ("timestamps", "frame_types", "num_frames")}
            else:
                data["second_per_grid_ts"] = video_inputs["second_per_grid_ts"]

        n_image_slots = sum(t.count(IMAGE_TOKEN) for t in texts)
        n_video_slots = sum(t.count(VIDEO_TOKEN) for t in texts)
        n_images = 0 if image_grids is None else len(image_grids)
        n_videos = 0 if video_grids is None else (
            len(video_meta["num_frames"]) if self.slow_fast else len(video_grids)
        )
        if n_image_slots != n_images:
            raise ValueError(f"text has {n_image_slots} {IMAGE_TOKEN} placeholders but {n_images} images were given")
        if n_video_slots != n_videos:
            raise ValueError(f"text has {n_video_slots} {VIDEO_TOKEN} placeholders but {n_videos} videos were given")

        m2 = self.image_processor.merge_size**2
        image_idx = video_idx = 0
        frame_offsets = [0]
        if self.slow_fast and video_grids is not None:
            for n in video_meta["num_frames"].tolist():
                frame_offsets.append(frame_offsets[-1] + n)
        expanded = []
        for t in texts:
            t = t.replace(IMAGE_TOKEN, _SENTINEL_IMAGE).replace(VIDEO_TOKEN, _SENTINEL_VIDEO)
            while _SENTINEL_IMAGE in t:
                count = int(image_grids[image_idx].prod()) // m2
                t = t.replace(_SENTINEL_IMAGE, IMAGE_TOKEN * count, 1)
                image_idx += 1
            while _SENTINEL_VIDEO in t:
                if self.slow_fast:
                    rows = video_grids[frame_offsets[video_idx] : frame_offsets[video_idx + 1]]
                    prompt = self._frame_prompt(
                        rows, video_meta["timestamps"][video_idx], video_meta["frame_types"][video_idx]
                    )
                else:
                    prompt = VIDEO_TOKEN * (int(video_grids[video_idx].prod()) // m2)
                t = t.replace(_SENTINEL_VIDEO, prompt, 1)
                video_idx += 1
            expanded.append(t)

        enc = self.tokenizer(
            expanded, padding=padding, truncation=truncation, max_length=max_length,
            return_tensors=return_tensors, **kwargs,
        )
        data.update(enc)
        want_types = self.return_mm_token_type_ids if return_mm_token_type_ids is None else return_mm_token_type_ids
        if want_types:
            ids = enc["input_ids"]
            as_tensor = torch.as_tensor(ids) if return_tensors == "pt" else None
            if as_tensor is not None:
                types = torch.zeros_like(as_tensor)
                types[as_tensor == self.image_token_id] = 1
                types[as_tensor == self.video_token_id] = 2
            else:
                rows = ids if isinstance(ids[0], list) else [ids]
                types = [[1 if i == self.image_token_id else 2 if i == self.video_token_id else 0 for i in r]
                         for r in rows]
                types = types if isinstance(ids[0], list) else types[0]
            data["mm_token_type_ids"] = types
        return BatchFeature(data=data, tensor_type=return_tensors)

    def apply_chat_template(self, conversation, chat_template=None, thinking_mode: str | None = None, **kwargs):
        """``ProcessorMixin.apply_chat_template`` with ``thinking_mode`` = ``think``/``no_think``/``auto``."""
        if thinking_mode is not None:
            if thinking_mode not in THINKING_MODES:
                raise ValueError(f"thinking_mode must be one of {THINKING_MODES}, got {thinking_mode!r}")
            kwargs["thinking_mode"] = thinking_mode
        return super().apply_chat_template(conversation, chat_template=chat_template, **kwargs)

    def post_process_image_text_to_text(
        self, generated_outputs, skip_special_tokens: bool = True, parse: bool = False, **kwargs
    ):
        """Decode generations; with ``parse=True`` return :func:`parse_keye_response` dicts."""
        texts = self.tokenizer.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)
        return [parse_keye_response(t) for t in texts] if parse else texts

    @property
    def model_input_names(self) -> list[str]:
        names = list(self.tokenizer.model_input_names)
        names += ["pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"]
        return names + ["mm_token_type_ids"]


class KeyeProcessor(KeyeVLProcessor):
    """Hub class name of the Keye-VL-8B-Preview processor (``processor_class: KeyeProcessor``)."""


class KeyeVL1_5Processor(KeyeVLProcessor):  # noqa: N801 - hub class name
    """Hub class name of the Keye-VL-1.5 processor (Slow-Fast video by default)."""

    default_video_processor_class = KeyeVL1_5VideoProcessor
