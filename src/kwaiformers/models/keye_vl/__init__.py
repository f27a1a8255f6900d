"""Kwai Keye-VL (Preview and 1.5) as native transformers classes.

Import-light: names resolve lazily (``from kwaiformers.models.keye_vl import KeyeVLConfig``)
so importing the package does not import torch.
"""

from __future__ import annotations

from kwaiformers.utils.lazy import lazy_exports

_NAMES: dict[str, str] = {
    "KeyeVLConfig": "configuration_keye_vl",
    "KeyeConfig": "configuration_keye_vl",
    "KeyeVL1_5Config": "configuration_keye_vl",
    "KeyeVLTextConfig": "configuration_keye_vl",
    "KeyeVLVisionConfig": "configuration_keye_vl",
    "KeyeVLModel": "modeling_keye_vl",
    "KeyeVLForConditionalGeneration": "modeling_keye_vl",
    "KeyeVLPreTrainedModel": "modeling_keye_vl",
    "KeyeVLProjector": "modeling_keye_vl",
    "KeyeVLTextModel": "modeling_keye_vl",
    "KeyeModel": "modeling_keye_vl",
    "KeyeForConditionalGeneration": "modeling_keye_vl",
    "KeyeVL1_5Model": "modeling_keye_vl",
    "KeyeVL1_5ForConditionalGeneration": "modeling_keye_vl",
    "KeyeVLImageProcessor": "image_processing_keye_vl",
    "KeyeVLVideoProcessor": "video_processing_keye_vl",
    "KeyeVL1_5VideoProcessor": "video_processing_keye_vl",
    "KeyeVLProcessor": "processing_keye_vl",
    "KeyeProcessor": "processing_keye_vl",
    "KeyeVL1_5Processor": "processing_keye_vl",
    "build_keye_messages": "chat_keye_vl",
    "parse_keye_response": "chat_keye_vl",
}

__all__ = sorted(_NAMES)


__getattr__, __dir__ = lazy_exports(__name__, _NAMES, globals())
