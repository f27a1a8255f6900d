"""OneRec-V1 encoder-decoder: shapes, summed NTP loss, session-wise targets, masking, save/load, beam search."""

from __future__ import annotations

import math

import pytest
import torch
from onerec_testkit import LEVELS, make_batch, random_index, v1_config
from utils import assert_state_dicts_equal, save_and_reload

from kwaiformers.models.onerec.configuration_onerec import OneRecConfig
from kwaiformers.models.onerec.modeling_onerec import OneRecForGenerativeRecommendation

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _model(**overrides):
    torch.manual_seed(0)
    return OneRecForGenerativeRecommendation(v1_config(**overrides)).eval()


def test_forward_shapes_summed_loss_and_lifelong_pathway():
    model = _model()
    batch = make_batch(lifelong_len=8)
    out = model(**batch)
    assert out.logits.shape == (3, len(LEVELS), max(LEVELS))
    lp = model.sid_log_probs(batch, batch["target_sids"][:, None])
    torch.testing.assert_close(out.loss, -lp.sum(-1).mean(), rtol=1e-5, atol=1e-5)
    z, keep = model.encoder.features(batch)
    assert z.shape[1] == 1 + 4 + 6 + 3 and keep.shape == z.shape[:2]  # user + L_s + L_p + N_q
    without = model(**{k: v for k, v in batch.items() if not k.startswith("lifelong")})
    assert not torch.allclose(without.logits, out.logits)
    changed = dict(batch, lifelong_sids=batch["lifelong_sids"].flip(1), lifelong_mask=batch["lifelong_mask"].flip(1))
    assert not torch.allclose(model(**changed).logits, out.logits)


def test_loss_hand_checkable_uniform_heads_sums_levels_and_items():
    model = _model(session_len=2)
    for head in model.heads:
        torch.nn.init.zeros_(head.weight)
    point = model(**make_batch())
    assert point.loss.item() == pytest.approx(sum(math.log(k) for k in LEVELS), rel=1e-6)
    session = model(**make_batch(session=2))
    assert session.logits.shape == (3, 2, len(LEVELS), max(LEVELS))
    assert session.loss.item() == pytest.approx(2 * sum(math.log(k) for k in LEVELS), rel=1e-6)
    with pytest.raises(ValueError, match="session_len"):
        model(**make_batch(session=3))


def test_causal_masking_within_and_across_session_items():
    model = _model(session_len=2)
    batch = make_batch(session=2)
    base = model(**batch).logits
    changed = dict(batch, target_sids=batch["target_sids"].clone())
    changed["target_sids"][:, 0, 2] = (changed["target_sids"][:, 0, 2] + 1) % LEVELS[2]
    new = model(**changed).logits
    torch.testing.assert_close(new[:, 0], base[:, 0])  # item 0 never sees its own last code
    assert not torch.allclose(new[:, 1], base[:, 1])  # item 1 does
    changed = dict(batch, target_sids=batch["target_sids"].clone())
    changed["target_sids"][:, 1, 1] = (changed["target_sids"][:, 1, 1] + 1) % LEVELS[1]
    new = model(**changed).logits
    torch.testing.assert_close(new[:, 0], base[:, 0])
    torch.testing.assert_close(new[:, 1, :2], base[:, 1, :2])
    assert not torch.allclose(new[:, 1, 2], base[:, 1, 2])


def test_constrained_beam_equals_exhaustive_and_generate_agrees():
    model = _model()
    batch = make_batch(lifelong_len=8)
    index = random_index(num_items=12)
    legal = index.all_tuples()
    scores = model.sid_log_probs(batch, legal[None].expand(3, -1, -1)).sum(-1)
    top = scores.topk(4, dim=-1)
    rec = model.recommend(batch, num_items=4, beam_size=len(legal), item_index=index)
    assert rec.legal.all()
    torch.testing.assert_close(rec.log_probs, top.values, rtol=1e-5, atol=1e-5)
    assert torch.equal(rec.sids, legal[top.indices])
    small = model.recommend(batch, num_items=4, beam_size=8, item_index=index)
    gen = model.generate(
        **batch, num_beams=8, num_return_sequences=4, length_penalty=0.0,
        prefix_allowed_tokens_fn=model.prefix_allowed_tokens_fn(index),
        output_scores=True, return_dict_in_generate=True,
    )
    assert torch.equal(gen.sequences[:, 1:].view(3, 4, 3), small.sids)
    torch.testing.assert_close(gen.sequences_scores.view(3, 4), small.log_probs, rtol=1e-4, atol=1e-4)


def test_moe_decoder_save_load_auto_and_presets(tmp_path):
    from transformers import AutoConfig, AutoModel

    import kwaiformers  # noqa: F401  (registers the Auto classes lazily)

    model = _model(num_experts=4, num_experts_per_tok=2, expert_intermediate_size=8, moe_layers="encoder_decoder")
    assert type(model.decoder_layers[0].mlp).__name__ == "OneRecMoE"
    assert type(model.encoder.layers[0].mlp).__name__ == "OneRecMoE"
    assert_state_dicts_equal(model, save_and_reload(model))
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "onerec"
    auto = AutoModel.from_pretrained(tmp_path).eval()
    assert type(auto) is OneRecForGenerativeRecommendation
    batch = make_batch()
    torch.testing.assert_close(auto(**batch).logits, model(**batch).logits)
    cfg = OneRecConfig.from_preset("onerec-0.935b")
    assert (cfg.hidden_size, cfg.num_experts, cfg.num_experts_per_tok) == (1024, 24, 2)
    with torch.device("meta"):
        tiny = OneRecForGenerativeRecommendation(OneRecConfig.from_preset("onerec-0.015b"))
    assert tiny.config.num_encoder_layers + tiny.config.num_decoder_layers == 4
    with pytest.raises(ValueError, match="preset"):
        OneRecConfig.from_preset("onerec-99b")


def test_gradient_checkpointing_and_eager():
    model = _model()
    batch = make_batch()
    ref = model(**batch).logits
    model.set_attn_implementation("eager")
    torch.testing.assert_close(model(**batch).logits, ref, rtol=1e-5, atol=1e-5)
    model.train()
    model.gradient_checkpointing_enable()
    loss = model(**batch).loss
    loss.backward()
    assert model.heads[0].weight.grad is not None
