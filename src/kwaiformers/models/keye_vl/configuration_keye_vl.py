"""Configuration of Kwai Keye-VL (Keye-VL-8B-Preview, arXiv 2507.01949; Keye-VL-1.5, arXiv 2509.01563).

Three ``model_type`` strings share one implementation:

- ``"keye_vl"`` (:class:`KeyeVLConfig`): kwaiformers' own type; ``keye_version`` picks the generation.
- ``"Keye"`` (:class:`KeyeConfig`): the Keye-VL-8B-Preview hub checkpoint's ``model_type``.
- ``"KeyeVL1_5"`` (:class:`KeyeVL1_5Config`): the Keye-VL-1.5 hub checkpoint's ``model_type``.

The hub ``config.json`` is *flat* (the Qwen3 text fields sit at the top level, ``rope_scaling``
is ``{"type": "mrope", "mrope_section": [16, 24, 24]}``) with a ``vision_config`` whose
``model_type`` is ``"siglip_vision_model"``; these configs accept it key for key (as well as a
nested ``text_config``) and ``save_pretrained`` writes the nested transformers-5 layout, which
loads back through the same classes. The hub's ``auto_map`` (remote code) is dropped on load so
re-saved checkpoints always resolve to these native classes.

Generation differences (config options, defaults derived from ``keye_version``):

- ``projector_norm``: ``"pre_merge"`` (Preview: ``LayerNorm(1152)`` before the 2x2 merge) or
  ``"post_merge"`` (1.5: ``LayerNorm(4608)`` after it).
- ``video_attention``: ``"clip"`` (Preview: one ViT attention segment per whole video, what the
  checkpoint was trained with under FlashAttention-2) or ``"frame"`` (1.5: per frame, each frame
  positioned like an image in the LLM's 3D RoPE and preceded by its timestamp text).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers.configuration_utils import PreTrainedConfig
from transformers.models.paddleocr_vl.configuration_paddleocr_vl import PaddleOCRVisionConfig
from transformers.models.qwen3.configuration_qwen3 import Qwen3Config

__all__ = [
    "KeyeConfig",
    "KeyeVL1_5Config",
    "KeyeVLConfig",
    "KeyeVLTextConfig",
    "KeyeVLVisionConfig",
]

KEYE_VERSIONS = ("preview", "1.5")
_DEFAULT_MROPE_SECTION = [16, 24, 24]
#: keys of the hub config.json that only address the remote code; dropped on load.
_REMOTE_CODE_KEYS = ("auto_map",)


@strict
class KeyeVLVisionConfig(PaddleOCRVisionConfig):
    """SigLIP-400M/14 vision tower at native resolution (PaddleOCR-VL's encoder in transformers 5).

    Adds the two hub keys ``tokens_per_second`` (temporal RoPE ids per second of video, 2) and
    ``temporal_patch_size`` (present in config.json but unused: every frame is its own t-slice).
    """

    model_type = "keye_vl_vision"
    base_config_key = "vision_config"

    tokens_per_second: int = 2
    temporal_patch_size: int = 2

    def __post_init__(self, **kwargs):
        for key in _REMOTE_CODE_KEYS:
            kwargs.pop(key, None)
        # The hub writes "siglip_vision_model"; keep our type so the class round-trips.
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)


@strict
class KeyeVLTextConfig(Qwen3Config):
    """Qwen3-8B decoder with Qwen2-VL (non-interleaved) multimodal RoPE, ``mrope_section`` [16,24,24]."""

    model_type = "keye_vl_text"
    base_config_key = "text_config"
    ignore_keys_at_rope_validation = {"mrope_section"}
    default_theta = 1000000.0

    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 12288
    num_hidden_layers: int = 36
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 8
    head_dim: int = 128
    max_position_embeddings: int = 40960
    max_window_layers: int = 36
    bos_token_id: int | None = 151643
    eos_token_id: int | list[int] | None = 151645
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)
        self.rope_parameters.setdefault("mrope_section", list(_DEFAULT_MROPE_SECTION))
        section = self.rope_parameters["mrope_section"]
        if sum(section) * 2 != self.head_dim:
            raise ValueError(
                f"rope_parameters['mrope_section'] must sum to head_dim // 2 = {self.head_dim // 2}, "
                f"got {section}"
            )

    def convert_rope_params_to_dict(self, **kwargs):
        """Accept the hub's ``rope_scaling`` ({"type": "mrope"} or {"type"/"rope_type": "default"})."""
        rope_scaling = kwargs.pop("rope_scaling", None)
        params = dict(rope_scaling or self.rope_parameters or {})
        params.setdefault("rope_theta", kwargs.pop("rope_theta", self.default_theta))
        kind = params.get("rope_type", params.get("type", "default"))
        if kind == "mrope":
            kind = "default"
        params["rope_type"] = kind
        params.pop("type", None)
        self.rope_parameters = params
        self.standardize_rope_params()
        return kwargs


@strict
class KeyeVLConfig(PreTrainedConfig):
    """Keye-VL: SigLIP vision tower + ``mlp_AR`` projector + Qwen3 decoder with 3D RoPE.

    Args:
        text_config: :class:`KeyeVLTextConfig` (or dict); built from flat top-level keys if absent.
        vision_config: :class:`KeyeVLVisionConfig` (or dict).
        keye_version: ``"preview"`` (Keye-VL-8B-Preview) or ``"1.5"`` (Keye-VL-1.5).
        projector_norm: ``"pre_merge"`` / ``"post_merge"``; ``None`` = the version's default.
        video_attention: ``"clip"`` / ``"frame"``; ``None`` = the version's default.
        image_token_id, video_token_id, vision_start_token_id, vision_end_token_id,
        vision_token_id: special token ids (hub values by default).
        frame_token_id, fast_start_token_id, fast_end_token_id: the 1.5 per-frame prompt tokens
            (``<|frame|>``, ``<|fast_start|>``, ``<|fast_end|>``); informational, the model only
            needs ``video_token_id``.
    """

    model_type = "keye_vl"
    sub_configs_defaults = {"vision_config": KeyeVLVisionConfig, "text_config": KeyeVLTextConfig}
    keys_to_ignore_at_inference = ["past_key_values"]
    default_keye_version = "preview"

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    keye_version: str | None = None
    projector_norm: str | None = None
    video_attention: str | None = None
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    vision_token_id: int = 151654
    frame_token_id: int | None = None
    fast_start_token_id: int | None = None
    fast_end_token_id: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        for key in _REMOTE_CODE_KEYS:
            kwargs.pop(key, None)
        if self.text_config is None:
            # Hub configs are flat: the text fields live at the top level (Qwen2VLConfig pattern).
            text_keys = set(KeyeVLTextConfig.__dataclass_fields__) | {
                "rope_parameters",
                "rope_scaling",
                "rope_theta",
            }
            text_keys.discard("tie_word_embeddings")
            self.text_config = {k: kwargs.pop(k) for k in list(kwargs) if k in text_keys}
            dtype = kwargs.get("torch_dtype", kwargs.get("dtype"))
            if dtype is not None:
                self.text_config["dtype"] = dtype
        if isinstance(self.text_config, dict):
            self.text_config = {k: v for k, v in self.text_config.items() if k != "model_type"}
        if isinstance(self.vision_config, dict):
            self.vision_config = {
                k: v for k, v in self.vision_config.items() if k not in ("model_type", "auto_map")
            }
        version = self.keye_version if self.keye_version is not None else self.default_keye_version
        if version not in KEYE_VERSIONS:
            raise ValueError(f"keye_version must be one of {KEYE_VERSIONS}, got {version!r}")
        self.keye_version = version
        if self.projector_norm is None:
            self.projector_norm = "pre_merge" if version == "preview" else "post_merge"
        if self.projector_norm not in ("pre_merge", "post_merge"):
            raise ValueError(
                f"projector_norm must be 'pre_merge' or 'post_merge', got {self.projector_norm!r}"
            )
        if self.video_attention is None:
            self.video_attention = "clip" if version == "preview" else "frame"
        if self.video_attention not in ("clip", "frame"):
            raise ValueError(f"video_attention must be 'clip' or 'frame', got {self.video_attention!r}")
        super().__post_init__(**kwargs)

    # Convenience mirrors so generation utilities find the vocabulary.
    @property
    def vocab_size(self) -> int:  # noqa: D401
        return self.text_config.vocab_size


@strict
class KeyeConfig(KeyeVLConfig):
    """``model_type="Keye"``: the Kwai-Keye/Keye-VL-8B-Preview checkpoint (Preview generation)."""

    model_type = "Keye"
    default_keye_version = "preview"


@strict
class KeyeVL1_5Config(KeyeVLConfig):  # noqa: N801 - hub class name
    """``model_type="KeyeVL1_5"``: the Kwai-Keye/Keye-VL-1_5-8B checkpoint (1.5 generation)."""

    model_type = "KeyeVL1_5"
    default_keye_version = "1.5"
