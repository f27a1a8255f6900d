"""Keye-VL image processor (the hub's ``SiglipImageProcessor``), PIL/NumPy backend.

Rules (``image_processing_keye.py`` of the Preview checkpoint): ``smart_resize`` each image so both
sides are multiples of ``patch_size * merge_size`` (28) and the area lies in
``[min_pixels, max_pixels]`` (hub: 3136 and 1003520, i.e. 4 to 1280 LLM tokens), bicubic; rescale by
1/255 and normalise with mean = std = 0.5; cut into raster-ordered 14x14 patches, giving
``pixel_values`` of shape ``(sum patches, 3, 14, 14)`` and ``image_grid_thw`` rows ``(1, h, w)`` in
patch units. This is transformers 5.23's PaddleOCR-VL image processor with Keye's defaults; only
the PIL backend is provided so no torchvision is needed. The hub keys ``min_pixels`` /
``max_pixels`` are accepted at construction.
"""

from __future__ import annotations

from transformers.models.paddleocr_vl.image_processing_pil_paddleocr_vl import (
    PaddleOCRVLImageProcessorPil,
    smart_resize,
)

__all__ = ["KeyeVLImageProcessor", "smart_resize"]

KEYE_IMAGE_MIN_PIXELS = 4 * 28 * 28
KEYE_IMAGE_MAX_PIXELS = 1280 * 28 * 28


class KeyeVLImageProcessor(PaddleOCRVLImageProcessorPil):
    """Native-resolution patch packing for Keye-VL images (see the module docstring)."""

    size = {"shortest_edge": KEYE_IMAGE_MIN_PIXELS, "longest_edge": KEYE_IMAGE_MAX_PIXELS}
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
