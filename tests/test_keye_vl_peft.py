"""PEFT LoRA on Keye-VL: documented targets (LLM attention/MLP, optional projector, never the vision
tower by default), a few training steps, save and reload of the adapter."""

from __future__ import annotations

import numpy as np
import torch
from utils import make_tiny_keye_vl

from kwaiformers.models.keye_vl.chat_keye_vl import build_keye_messages
from kwaiformers.models.keye_vl.peft_keye_vl import keye_lora_config, keye_lora_target_modules


def _batch(proc):
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    msgs = build_keye_messages("Color?", images=1, thinking_mode="no_think")
    msgs.append({"role": "assistant", "content": "red"})
    text = proc.apply_chat_template(msgs)
    batch = proc(text=[text], images=[image], return_tensors="pt")
    batch["labels"] = batch["input_ids"].clone()
    return batch


def test_lora_targets_train_save_reload(tmp_path):
    from peft import PeftModel, get_peft_model

    model, proc = make_tiny_keye_vl()
    peft_model = get_peft_model(model, keye_lora_config(r=4, lora_alpha=8, lora_dropout=0.0,
                                                         include_projector=True))
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_parameters() if ".lora_A" in n}
    assert any(".model.layers.0.self_attn.q_proj" in n for n in adapted)
    assert any(".model.layers.1.mlp.down_proj" in n for n in adapted)
    assert any(".mlp_AR.linear_1" in n for n in adapted)
    assert not any("visual" in n for n in adapted)
    assert len(adapted) == 2 * 7 + 2
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    batch = _batch(proc)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=5e-2)
    peft_model.train()
    losses = []
    for _ in range(4):
        loss = peft_model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]

    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(**batch).logits
    peft_model.save_pretrained(tmp_path)
    base, _ = make_tiny_keye_vl()
    reloaded = PeftModel.from_pretrained(base, tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected)


def test_target_regex_variants():
    import re

    llm_only = keye_lora_target_modules()
    assert re.fullmatch(llm_only, "model.layers.3.self_attn.o_proj")
    assert not re.fullmatch(llm_only, "visual.vision_model.encoder.layers.0.self_attn.q_proj")
    assert not re.fullmatch(llm_only, "mlp_AR.linear_1")
    with_vision = keye_lora_target_modules(include_vision=True)
    assert re.fullmatch(with_vision, "visual.vision_model.encoder.layers.0.self_attn.q_proj")
    assert re.fullmatch(with_vision, "model.layers.0.mlp.up_proj")
