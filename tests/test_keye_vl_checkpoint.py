"""Checkpoint compatibility: a config.json written key-for-key in the public hub format (with the
remote-code ``auto_map``) and a safetensors file holding every tensor name of the public checkpoints
(built independently from the module tree in the design note, Sec. 2.3, incl. the two unused blocks)
load through the transformers Auto classes with zero missing / unexpected / mismatched keys, for
Keye-VL-8B-Preview (``model_type="Keye"``) and Keye-VL-1.5 (``"KeyeVL1_5"``)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from utils import make_tiny_tokenizer

import kwaiformers  # noqa: F401  (registers the Keye model types with the Auto classes)

# Tiny stand-ins for the 8B sizes; every key of the public config.json is kept.
T = dict(hidden=32, inter=64, layers=2, heads=4, kv=2, head_dim=8, vocab=96)
V = dict(hidden=16, inter=32, layers=2, heads=2, patch=14, image=56)


def hub_config(model_type: str) -> dict:
    arch = "KeyeForConditionalGeneration" if model_type == "Keye" else "KeyeVL1_5ForConditionalGeneration"
    module = "keye" if model_type == "Keye" else "keye_vl_1_5"
    return {
        "auto_map": {
            "AutoConfig": f"configuration_{module}.{model_type}Config",
            "AutoModel": f"modeling_{module}.{arch}",
            "AutoModelForCausalLM": f"modeling_{module}.{arch}",
        },
        "architectures": [arch],
        "model_type": model_type,
        "bos_token_id": 0, "eos_token_id": 2,
        "vision_start_token_id": 90, "vision_end_token_id": 91, "vision_token_id": 92,
        "image_token_id": 93, "video_token_id": 94,
        "head_dim": T["head_dim"], "hidden_act": "silu", "hidden_size": T["hidden"],
        "intermediate_size": T["inter"], "max_position_embeddings": 40960, "max_window_layers": T["layers"],
        "num_attention_heads": T["heads"], "num_hidden_layers": T["layers"],
        "num_key_value_heads": T["kv"], "rms_norm_eps": 1e-06, "rope_theta": 1000000,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]},
        "attention_bias": False, "attention_dropout": 0.0, "sliding_window": None,
        "use_sliding_window": False, "tie_word_embeddings": False, "torch_dtype": "float32",
        "use_cache": True, "initializer_range": 0.02, "initializer_factor": 1.0,
        "vocab_size": T["vocab"], "transformers_version": "4.41.2",
        "vision_config": {
            "architectures": ["SiglipVisionModel"],
            "auto_map": {"AutoConfig": f"configuration_{module}.KeyeVisionConfig",
                         "AutoModel": f"modeling_{module}.SiglipVisionModel"},
            "model_type": "siglip_vision_model", "hidden_size": V["hidden"], "image_size": V["image"],
            "intermediate_size": V["inter"], "num_attention_heads": V["heads"],
            "num_hidden_layers": V["layers"], "patch_size": V["patch"], "spatial_merge_size": 2,
            "tokens_per_second": 2, "temporal_patch_size": 2, "attention_dropout": 0.0,
        },
    }


def hub_state_dict(model_type: str) -> dict[str, torch.Tensor]:
    """Every tensor of the public checkpoint, by name and shape (design note Sec. 2.3)."""
    d, vd, merged = T["hidden"], V["hidden"], V["hidden"] * 4
    shapes: dict[str, tuple[int, ...]] = {}
    norm = vd if model_type == "Keye" else merged  # 1.5 normalises after the 2x2 merge
    shapes.update({"mlp_AR.pre_norm.weight": (norm,), "mlp_AR.pre_norm.bias": (norm,),
                   "mlp_AR.linear_1.weight": (merged, merged), "mlp_AR.linear_1.bias": (merged,),
                   "mlp_AR.linear_2.weight": (d, merged), "mlp_AR.linear_2.bias": (d,)})
    vm = "visual.vision_model."
    n_pos = (V["image"] // V["patch"]) ** 2
    shapes.update({vm + "embeddings.patch_embedding.weight": (vd, 3, V["patch"], V["patch"]),
                   vm + "embeddings.patch_embedding.bias": (vd,),
                   vm + "embeddings.position_embedding.weight": (n_pos, vd),
                   vm + "embeddings.packing_position_embedding.weight": (32768, vd),
                   vm + "post_layernorm.weight": (vd,), vm + "post_layernorm.bias": (vd,)})
    for i in range(V["layers"]):
        p = f"{vm}encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            shapes[p + n + ".weight"] = shapes[p + n + ".bias"] = (vd,)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{p}self_attn.{n}.weight"] = (vd, vd)
            shapes[f"{p}self_attn.{n}.bias"] = (vd,)
        shapes.update({p + "mlp.fc1.weight": (V["inter"], vd), p + "mlp.fc1.bias": (V["inter"],),
                       p + "mlp.fc2.weight": (vd, V["inter"]), p + "mlp.fc2.bias": (vd,)})
    h = vm + "head."  # SigLIP pooling head: in the checkpoint, never run
    shapes.update({h + "probe": (1, 1, vd), h + "attention.in_proj_weight": (3 * vd, vd),
                   h + "attention.in_proj_bias": (3 * vd,), h + "attention.out_proj.weight": (vd, vd),
                   h + "attention.out_proj.bias": (vd,), h + "layernorm.weight": (vd,),
                   h + "layernorm.bias": (vd,), h + "mlp.fc1.weight": (V["inter"], vd),
                   h + "mlp.fc1.bias": (V["inter"],), h + "mlp.fc2.weight": (vd, V["inter"]),
                   h + "mlp.fc2.bias": (vd,)})
    q, kv = T["heads"] * T["head_dim"], T["kv"] * T["head_dim"]
    shapes["model.embed_tokens.weight"] = (T["vocab"], d)
    for i in range(T["layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (q, d), p + "self_attn.k_proj.weight": (kv, d),
                       p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, q),
                       p + "self_attn.q_norm.weight": (T["head_dim"],),
                       p + "self_attn.k_norm.weight": (T["head_dim"],),
                       p + "mlp.gate_proj.weight": (T["inter"], d), p + "mlp.up_proj.weight": (T["inter"], d),
                       p + "mlp.down_proj.weight": (d, T["inter"]),
                       p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,)})
    shapes["model.norm.weight"] = (d,)
    shapes["lm_head.weight"] = (T["vocab"], d)
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=gen) for k, s in shapes.items()}


UNUSED = ("packing_position_embedding", "vision_model.head.")


def write_hub_checkpoint(path, model_type: str) -> dict[str, torch.Tensor]:
    state = hub_state_dict(model_type)
    (path / "config.json").write_text(json.dumps(hub_config(model_type), indent=2))
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return state


@pytest.mark.parametrize("model_type", ["Keye", "KeyeVL1_5"])
def test_hub_checkpoint_loads_with_no_missing_or_unexpected_keys(tmp_path, model_type):
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

    state = write_hub_checkpoint(tmp_path, model_type)
    config = AutoConfig.from_pretrained(tmp_path)  # auto_map present, trust_remote_code unset
    assert type(config).__name__ == ("KeyeConfig" if model_type == "Keye" else "KeyeVL1_5Config")
    model, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True, trust_remote_code=False)
    expected = "KeyeForConditionalGeneration" if model_type == "Keye" else "KeyeVL1_5ForConditionalGeneration"
    assert type(model).__name__ == expected and hasattr(model, "generate")
    assert info["missing_keys"] == set() or list(info["missing_keys"]) == []
    assert list(info["unexpected_keys"]) == [] and list(info["mismatched_keys"]) == []
    loaded = model.state_dict()
    used = {k for k in state if not any(u in k for u in UNUSED)}
    assert set(loaded) == used  # the model's own names ARE the checkpoint's names
    for k in used:
        assert torch.equal(loaded[k], state[k]), k
    again = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert torch.equal(again.mlp_AR.pre_norm.weight, state["mlp_AR.pre_norm.weight"])


def test_preview_weights_do_not_load_into_1_5_projector(tmp_path):
    """The projector norm shapes differ (1152 vs 4608 at full size): a mix-up fails loudly."""
    from kwaiformers.models.keye_vl.modeling_keye_vl import KeyeVL1_5ForConditionalGeneration

    write_hub_checkpoint(tmp_path, "Keye")
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_type"] = "KeyeVL1_5"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises((RuntimeError, ValueError)):
        KeyeVL1_5ForConditionalGeneration.from_pretrained(tmp_path)


def test_backbone_ignores_lm_head_and_save_roundtrip(tmp_path):
    from kwaiformers.models.keye_vl.modeling_keye_vl import KeyeForConditionalGeneration, KeyeModel

    state = write_hub_checkpoint(tmp_path, "Keye")
    backbone, info = KeyeModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    full = KeyeForConditionalGeneration.from_pretrained(tmp_path)
    out = tmp_path / "resaved"
    full.save_pretrained(out)
    from safetensors.torch import load_file

    saved = load_file(str(out / "model.safetensors"))
    assert set(saved) == {k for k in state if not any(u in k for u in UNUSED)}  # hub names written back
    assert json.loads((out / "config.json").read_text())["model_type"] == "Keye"
    reloaded = KeyeForConditionalGeneration.from_pretrained(out)
    assert torch.equal(reloaded.lm_head.weight, state["lm_head.weight"])


def test_hub_processor_files_load_natively(tmp_path):
    """preprocessor_config.json as on the hub (processor_class KeyeProcessor, remote auto_map, no
    image_processor_type, no video config) resolves to kwaiformers' processor classes."""
    from transformers import AutoProcessor

    (tmp_path / "config.json").write_text(json.dumps(hub_config("Keye")))
    tok = make_tiny_tokenizer(extra_special_tokens=["<|vision_start|>", "<|vision_end|>",
                                                    "<|image_pad|>", "<|video_pad|>"])
    tok.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "auto_map": {"AutoImageProcessor": "image_processing_keye.SiglipImageProcessor",
                     "AutoProcessor": "processing_keye.KeyeProcessor"},
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "max_pixels": 1003520,
        "merge_size": 2, "min_pixels": 3136, "patch_size": 14, "processor_class": "KeyeProcessor",
        "resample": 3, "rescale_factor": 0.00392156862745098, "temporal_patch_size": 1,
    }))
    proc = AutoProcessor.from_pretrained(tmp_path)
    assert type(proc).__name__ == "KeyeProcessor"
    assert type(proc.image_processor).__name__ == "KeyeVLImageProcessor"
    assert proc.image_processor.size["shortest_edge"] == 3136
    assert proc.image_processor.size["longest_edge"] == 1003520
    assert not proc.slow_fast and proc.video_processor.min_pixels == 128 * 28 * 28
