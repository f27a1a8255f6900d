"""Keye-VL model: config parsing, forward/backward shapes, the 3D-RoPE rule (golden example), vision
attention isolation, projector variants and save/load."""

from __future__ import annotations

import pytest
import torch

from kwaiformers.models.keye_vl.configuration_keye_vl import (
    KeyeConfig,
    KeyeVL1_5Config,
    KeyeVLConfig,
)
from kwaiformers.models.keye_vl.modeling_keye_vl import (
    KeyeVLForConditionalGeneration,
    KeyeVLModel,
    split_grid_per_frame,
)

IMG, VID, VS, VE = 100, 101, 102, 103


def tiny_config(version: str = "preview", **overrides) -> KeyeVLConfig:
    text = dict(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        bos_token_id=0,
        eos_token_id=1,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]},
    )
    vision = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        image_size=56, patch_size=14,
    )
    return KeyeVLConfig(
        text_config=text, vision_config=vision, keye_version=version, image_token_id=IMG,
        video_token_id=VID, vision_start_token_id=VS, vision_end_token_id=VE, **overrides,
    )


def golden_ids() -> torch.Tensor:
    # [t1, t2, <vs>, 6x<img>, <ve>, t3, <vs>, 12x<vid>, <ve>, t4, t5]  (design note, Sec. 1.5)
    return torch.tensor([[5, 6, VS] + [IMG] * 6 + [VE, 7, VS] + [VID] * 12 + [VE, 8, 9]])


def test_rope_index_golden_example():
    model = KeyeVLModel(tiny_config())
    pos, delta = model.get_rope_index(
        golden_ids(), torch.tensor([[1, 4, 6]]), torch.tensor([[3, 4, 4]]), second_per_grid_ts=[0.5]
    )
    t = [0, 1, 2] + [3] * 6 + [6, 7, 8] + [9] * 4 + [10] * 4 + [11] * 4 + [12, 13, 14]
    h = [0, 1, 2] + [3, 3, 3, 4, 4, 4] + [6, 7, 8] + [9, 9, 10, 10] * 3 + [12, 13, 14]
    w = [0, 1, 2] + [3, 4, 5, 3, 4, 5] + [6, 7, 8] + [9, 10, 9, 10] * 3 + [12, 13, 14]
    assert pos[:, 0].tolist() == [t, h, w]
    assert delta.tolist() == [[-12]]
    # fps 4 (0.25 s per frame): truncation makes frames 0 and 1 share t = 9; fps 1 steps by 2.
    pos4, _ = model.get_rope_index(golden_ids(), torch.tensor([[1, 4, 6]]), torch.tensor([[3, 4, 4]]),
                                   second_per_grid_ts=[0.25])
    assert pos4[0, 0, 12:24].tolist() == [9] * 8 + [10] * 4
    pos1, _ = model.get_rope_index(golden_ids(), torch.tensor([[1, 4, 6]]), torch.tensor([[3, 4, 4]]),
                                   second_per_grid_ts=[1.0])
    assert pos1[0, 0, 12:24].tolist() == [9] * 4 + [11] * 4 + [13] * 4
    assert pos1[0, 0, -3:].tolist() == [14, 15, 16]  # text resumes at max + 1


def test_rope_index_text_only_and_left_padding():
    model = KeyeVLModel(tiny_config())
    ids = torch.tensor([[5, 6, 7, 8]])
    pos, delta = model.get_rope_index(ids)
    assert all(row == [0, 1, 2, 3] for row in pos[:, 0].tolist()) and delta.tolist() == [[0]]
    # Left padding: the padded sample gets the same ids on its valid tokens.
    ids = golden_ids()
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    batch = torch.cat([torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1), padded])
    mask = torch.ones_like(batch)
    mask[0, -3:] = 0
    mask[1, :3] = 0
    grids = torch.tensor([[1, 4, 6], [1, 4, 6]]), torch.tensor([[3, 4, 4], [3, 4, 4]])
    pos, delta = model.get_rope_index(batch, *grids, second_per_grid_ts=[0.5, 0.5], attention_mask=mask)
    # rope_deltas = max + 1 - padded length (the remote code's rule): 15 - 30 for both rows
    assert torch.equal(pos[:, 0, :-3], pos[:, 1, 3:]) and delta.tolist() == [[-15], [-15]]


def test_rope_index_rejects_mismatched_grids():
    model = KeyeVLModel(tiny_config())
    with pytest.raises(ValueError, match="consecutive placeholder"):
        model.get_rope_index(golden_ids(), torch.tensor([[1, 4, 8]]), torch.tensor([[3, 4, 4]]))
    with pytest.raises(ValueError, match="placeholder blocks"):
        model.get_rope_index(golden_ids(), torch.tensor([[1, 4, 4]]), torch.tensor([[3, 4, 4]]))
    with pytest.raises(ValueError, match="more image/video grids"):
        model.get_rope_index(golden_ids(), torch.tensor([[1, 4, 6], [1, 2, 2]]), torch.tensor([[3, 4, 4]]))


def test_rope_index_keye_1_5_frames_positioned_like_images():
    model = KeyeVLModel(tiny_config("1.5"))
    # two frames (each 2x2 merged) separated by a timestamp token
    ids = torch.tensor([[5, VS, 40, 41] + [VID] * 4 + [42] + [VID] * 4 + [VE, 6]])
    pos, _ = model.get_rope_index(ids, video_grid_thw=torch.tensor([[2, 4, 4]]))
    assert pos[0, 0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 6, 7, 7, 7, 7, 9, 10]
    assert pos[1, 0, 4:8].tolist() == [4, 4, 5, 5]
    assert split_grid_per_frame(torch.tensor([[2, 4, 4], [1, 2, 6]])).tolist() == [
        [1, 4, 4], [1, 4, 4], [1, 2, 6]
    ]


@pytest.mark.parametrize("version", ["preview", "1.5"])
def test_forward_backward_shapes(version):
    torch.manual_seed(0)
    model = KeyeVLForConditionalGeneration(tiny_config(version))
    ids = golden_ids().repeat(2, 1)
    out = model(
        input_ids=ids,
        pixel_values=torch.randn(48, 3, 14, 14),
        image_grid_thw=torch.tensor([[1, 4, 6], [1, 4, 6]]),
        pixel_values_videos=torch.randn(96, 3, 14, 14),
        video_grid_thw=torch.tensor([[3, 4, 4], [3, 4, 4]]),
        second_per_grid_ts=torch.tensor([0.5, 0.5]),
        labels=ids,
    )
    assert out.logits.shape == (2, 27, 128)
    assert out.rope_deltas.tolist() == ([[-12], [-12]] if version == "preview" else out.rope_deltas.tolist())
    out.loss.backward()
    for name in ("visual.vision_model.embeddings.patch_embedding.weight", "mlp_AR.linear_1.weight",
                 "model.layers.0.self_attn.q_proj.weight", "lm_head.weight"):
        assert model.get_parameter(name).grad is not None, name
    expected_norm = 16 if version == "preview" else 64
    assert model.mlp_AR.pre_norm.weight.shape == (expected_norm,)


def test_text_only_matches_plain_rope():
    """Text-only: the three position rows are equal, so the model is a plain Qwen3 decoder."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    model = KeyeVLForConditionalGeneration(tiny_config()).eval()
    qcfg = Qwen3Config(**{k: v for k, v in model.config.text_config.to_dict().items()
                          if k in Qwen3Config.__dataclass_fields__ and k != "rope_parameters"},
                       rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    qwen = Qwen3ForCausalLM(qcfg).eval()
    missing = qwen.load_state_dict(
        {**{k: v for k, v in model.state_dict().items() if k.startswith(("model.", "lm_head."))}},
        strict=True,
    )
    assert not missing.missing_keys
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    torch.testing.assert_close(model(input_ids=ids).logits, qwen(input_ids=ids).logits)


def test_vision_attention_is_block_diagonal():
    """Two images in one call give the same features as each alone (no cross-image leak)."""
    torch.manual_seed(0)
    model = KeyeVLModel(tiny_config()).eval()
    a, b = torch.randn(16, 3, 14, 14), torch.randn(24, 3, 14, 14)
    both = model.get_image_features(torch.cat([a, b]), torch.tensor([[1, 4, 4], [1, 4, 6]]))
    alone_a = model.get_image_features(a, torch.tensor([[1, 4, 4]]))[0]
    alone_b = model.get_image_features(b, torch.tensor([[1, 4, 6]]))[0]
    torch.testing.assert_close(both[0], alone_a)
    torch.testing.assert_close(both[1], alone_b)


def test_video_attention_clip_vs_frame():
    """Preview attends across the whole clip; 1.5 (and video_attention='frame') per frame."""
    torch.manual_seed(0)
    clip = KeyeVLModel(tiny_config()).eval()
    frame = KeyeVLModel(tiny_config(video_attention="frame")).eval()
    frame.load_state_dict(clip.state_dict())
    video = torch.randn(32, 3, 14, 14)
    grid = torch.tensor([[2, 4, 4]])
    per_frame = frame.get_video_features(video, grid)[0]
    f0 = frame.get_video_features(video[:16], torch.tensor([[1, 4, 4]]))[0]
    torch.testing.assert_close(per_frame[:4], f0)
    assert not torch.allclose(clip.get_video_features(video, grid)[0], per_frame)


def test_projector_raster_merge_order():
    model = KeyeVLModel(tiny_config())
    feats = torch.arange(2 * 4 * 1, dtype=torch.float32).view(8, 1)  # 2x4 grid, d=1
    merged = model.mlp_AR.merge_patches(feats, torch.tensor([[1, 2, 4]]))
    assert merged.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7]]


def test_hub_flat_config_and_versions():
    hub = {
        "auto_map": {"AutoConfig": "configuration_keye.KeyeConfig"}, "model_type": "Keye",
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 128, "rope_theta": 1000000,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]}, "torch_dtype": "bfloat16",
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 16,
                          "auto_map": {"AutoConfig": "x.Y"}},
    }
    cfg = KeyeConfig.from_dict(hub)
    assert cfg.text_config.hidden_size == 32 and cfg.text_config.rope_parameters["rope_type"] == "default"
    assert cfg.text_config.rope_parameters["mrope_section"] == [2, 1, 1]
    assert cfg.vision_config.model_type == "keye_vl_vision" and not hasattr(cfg, "auto_map")
    assert (cfg.keye_version, cfg.projector_norm, cfg.video_attention) == ("preview", "pre_merge", "clip")
    resaved = {**hub, "rope_scaling": {"mrope_section": [2, 1, 1], "rope_type": "default", "type": "default"}}
    assert KeyeConfig.from_dict(resaved).text_config.rope_parameters["rope_type"] == "default"
    v15 = KeyeVL1_5Config.from_dict({**hub, "model_type": "KeyeVL1_5"})
    assert (v15.keye_version, v15.projector_norm, v15.video_attention) == ("1.5", "post_merge", "frame")
    nested = KeyeVLConfig.from_dict(cfg.to_dict())
    assert nested.text_config.hidden_size == 32
    with pytest.raises(ValueError, match="keye_version"):
        KeyeVLConfig(keye_version="2.0")
    with pytest.raises(ValueError, match="mrope_section"):
        KeyeVLConfig(text_config={"head_dim": 8, "rope_parameters": {"rope_type": "default",
                                                                     "mrope_section": [4, 4, 4]}})


def test_save_and_reload_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = KeyeVLForConditionalGeneration(tiny_config("1.5")).eval()
    model.save_pretrained(tmp_path)
    again = KeyeVLForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert again.config.keye_version == "1.5"
    ids = golden_ids()
    kwargs = dict(pixel_values=torch.randn(24, 3, 14, 14), image_grid_thw=torch.tensor([[1, 4, 6]]),
                  pixel_values_videos=torch.randn(48, 3, 14, 14), video_grid_thw=torch.tensor([[3, 4, 4]]))
    # 1.5 needs per-frame placeholder blocks; here the 12 contiguous video tokens = 3 frames of 4
    torch.testing.assert_close(model(input_ids=ids, **kwargs).logits, again(input_ids=ids, **kwargs).logits)


def test_bad_inputs_raise():
    model = KeyeVLForConditionalGeneration(tiny_config())
    with pytest.raises(ValueError, match="placeholder tokens"):
        model(input_ids=torch.tensor([[5, IMG, IMG]]), pixel_values=torch.randn(24, 3, 14, 14),
              image_grid_thw=torch.tensor([[1, 4, 6]]))
    with pytest.raises(ValueError, match="grid_thw covers"):
        model.get_image_features(torch.randn(10, 3, 14, 14), torch.tensor([[1, 4, 6]]))
    with pytest.raises(ValueError, match="pixel values must have shape"):
        model.get_image_features(torch.randn(24, 588), torch.tensor([[1, 4, 6]]))


def test_eager_and_sdpa_attention_agree():
    torch.manual_seed(0)
    sdpa = KeyeVLForConditionalGeneration(tiny_config()).eval()
    eager = KeyeVLForConditionalGeneration(tiny_config()).eval()
    eager.load_state_dict(sdpa.state_dict())
    eager.set_attn_implementation("eager")
    assert eager.visual.config._attn_implementation == "eager"
    kwargs = dict(input_ids=golden_ids(), pixel_values=torch.randn(24, 3, 14, 14),
                  image_grid_thw=torch.tensor([[1, 4, 6]]), pixel_values_videos=torch.randn(48, 3, 14, 14),
                  video_grid_thw=torch.tensor([[3, 4, 4]]), second_per_grid_ts=torch.tensor([0.5]))
    torch.testing.assert_close(eager(**kwargs).logits, sdpa(**kwargs).logits, atol=1e-5, rtol=1e-4)
