"""OneRec-V2 lazy decoder: shapes, loss, masking, KV sharing/GQA, save/load, Auto, LoRA, beam search."""

from __future__ import annotations

import math

import pytest
import torch
from onerec_testkit import LEVELS, all_tuples, make_batch, random_index, v2_config
from utils import assert_state_dicts_equal, save_and_reload

from kwaiformers.models.onerec_v2.modeling_onerec_v2 import OneRecV2ForGenerativeRecommendation

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _model(**overrides):
    torch.manual_seed(0)
    return OneRecV2ForGenerativeRecommendation(v2_config(**overrides)).eval()


def test_forward_shapes_and_loss_matches_log_probs():
    model = _model()
    batch = make_batch()
    out = model(**batch)
    assert out.logits.shape == (3, len(LEVELS), max(LEVELS))
    # levels smaller than max(K) are padded with the dtype minimum
    assert (out.logits[:, 0, LEVELS[0]:] == torch.finfo(out.logits.dtype).min).all()
    lp = model.sid_log_probs(batch, batch["target_sids"][:, None, :])
    assert lp.shape == (3, 1, len(LEVELS))
    torch.testing.assert_close(out.loss, -lp.mean(), rtol=1e-5, atol=1e-6)


def test_loss_hand_checkable_uniform_heads():
    model = _model()
    for head in model.heads:
        torch.nn.init.zeros_(head.weight)
    loss = model(**make_batch()).loss
    expected = sum(math.log(k) for k in LEVELS) / len(LEVELS)  # V2: mean over the L positions
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_causal_masking_later_codes_never_change_earlier_logits():
    model = _model()
    batch = make_batch()
    base = model(**batch).logits
    changed = dict(batch, target_sids=batch["target_sids"].clone())
    changed["target_sids"][:, 1] = (changed["target_sids"][:, 1] + 1) % LEVELS[1]
    new = model(**changed).logits
    torch.testing.assert_close(new[:, :2], base[:, :2])  # levels 0, 1 see codes < 1 only
    assert not torch.allclose(new[:, 2], base[:, 2])


def test_kv_sets_gqa_and_tied_kv():
    config = v2_config(num_hidden_layers=4, num_kv_sets=2, num_kv_groups=1)
    assert [config.kv_set_for_layer(i) for i in range(4)] == [0, 0, 1, 1]
    assert config.context_dim == 1 * 2 * 1 * config.head_dim
    single = v2_config(num_hidden_layers=3, num_kv_sets=1)
    assert {single.kv_set_for_layer(i) for i in range(3)} == {0}
    model = OneRecV2ForGenerativeRecommendation(config).eval()
    block = model.layers[0]
    assert not hasattr(block.cross_attn, "k_proj") and not hasattr(block.cross_attn, "v_proj")
    assert block.cross_attn.num_key_value_groups == config.num_attention_heads
    kv, _ = model.encode_context(make_batch())
    assert len(kv) == 2
    for k, v in kv:
        assert k.shape[1] == 1 and k.shape[-1] == config.head_dim
        assert k is v  # S_kv = 1: tied K = V
    split = OneRecV2ForGenerativeRecommendation(v2_config(kv_split=2)).eval()
    (k, v), = split.encode_context(make_batch())[0]
    assert split.config.context_dim == 2 * split.config.num_kv_groups * split.config.head_dim
    assert not torch.equal(k, v)
    # the last layers really read their own KV set: perturbing set 1 changes the output, and a
    # model whose layers all read set 0 is unaffected
    batch = make_batch()
    ctx = model.encode_context(batch)
    emb = model.embed_positions(None, 0, 3, 1)
    out = model.decode(emb, *ctx)
    (k0, v0), (k1, v1) = ctx[0]
    perturbed = [(k0, v0), (k1 + 1.0, v1 + 1.0)]
    assert not torch.allclose(model.decode(emb, perturbed, ctx[1]), out)
    hidden = model.layers[0](emb, perturbed, ctx[1])
    torch.testing.assert_close(hidden, model.layers[0](emb, *ctx))


def test_eager_matches_sdpa():
    model = _model()
    batch = make_batch()
    sdpa = model(**batch).logits
    model.set_attn_implementation("eager")
    torch.testing.assert_close(model(**batch).logits, sdpa, rtol=1e-5, atol=1e-5)


def test_save_load_and_auto_classes(tmp_path):
    from transformers import AutoConfig, AutoModel

    import kwaiformers  # noqa: F401  (registers the Auto classes lazily)

    model = _model(use_moe=True, first_k_dense=1, num_routed_experts=4, num_experts_per_tok=2,
                   moe_intermediate_size=8)
    model.layers[1].mlp.e_score_correction_bias.fill_(0.25)
    reloaded = save_and_reload(model)
    assert_state_dicts_equal(model, reloaded)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "onerec_v2"
    auto = AutoModel.from_pretrained(tmp_path).eval()
    assert type(auto) is OneRecV2ForGenerativeRecommendation
    batch = make_batch()
    torch.testing.assert_close(auto(**batch).logits, model(**batch).logits)
    half = AutoModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert torch.isfinite(half(**batch).loss)


def test_gradient_checkpointing_same_gradients():
    model = _model()
    model.train()
    batch = make_batch()
    model(**batch).loss.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.layers[0].gradient_checkpointing
    model(**batch).loss.backward()
    for n, p in model.named_parameters():
        if n in ref:
            torch.testing.assert_close(p.grad, ref[n], rtol=1e-5, atol=1e-6)


def test_constrained_beam_equals_exhaustive_search():
    model = _model()
    batch = make_batch()
    index = random_index(num_items=12)
    legal = index.all_tuples()
    # exhaustive: score every legal tuple for every user
    scores = model.sid_log_probs(batch, legal[None].expand(3, -1, -1)).sum(-1)
    top = scores.topk(5, dim=-1)
    rec = model.recommend(batch, num_items=5, beam_size=len(legal), item_index=index)
    assert rec.legal.all() and (rec.item_ids >= 0).all()
    assert index.is_legal(rec.sids.reshape(-1, 3)).all()
    torch.testing.assert_close(rec.log_probs, top.values, rtol=1e-5, atol=1e-5)
    assert torch.equal(rec.sids, legal[top.indices])
    assert torch.equal(rec.item_ids, index.lookup(rec.sids.reshape(-1, 3)).view(3, 5))


def test_unconstrained_beam_full_width_equals_exhaustive():
    model = _model()
    batch = make_batch()
    tuples = all_tuples()
    scores = model.sid_log_probs(batch, tuples[None].expand(3, -1, -1)).sum(-1)
    top = scores.topk(6, dim=-1)
    index = random_index(num_items=12)
    # beam 512 > the 210 tuples: the search keeps every tuple, i.e. it is exhaustive
    rec = model.recommend(batch, num_items=6, beam_size=512, constrained=False, item_index=index)
    torch.testing.assert_close(rec.log_probs, top.values, rtol=1e-5, atol=1e-5)
    assert torch.equal(rec.item_ids >= 0, index.is_legal(rec.sids.reshape(-1, 3)).view(3, 6))
    no_index = model.recommend(batch, num_items=2, beam_size=4, constrained=False)
    assert (no_index.item_ids == -1).all()
    with pytest.raises(ValueError, match="item_index"):
        model.recommend(batch, num_items=2, beam_size=4, constrained=True)
    with pytest.raises(ValueError, match="num_items"):
        model.recommend(batch, num_items=5, beam_size=4, item_index=index)


def test_generate_matches_recommend():
    model = _model()
    batch = make_batch()
    index = random_index(num_items=12)
    rec = model.recommend(batch, num_items=4, beam_size=8, item_index=index)
    gen = model.generate(
        **batch, num_beams=8, num_return_sequences=4, length_penalty=0.0,
        prefix_allowed_tokens_fn=model.prefix_allowed_tokens_fn(index),
        output_scores=True, return_dict_in_generate=True,
    )
    assert torch.equal(gen.sequences[:, 1:].view(3, 4, 3), rec.sids)
    torch.testing.assert_close(gen.sequences_scores.view(3, 4), rec.log_probs, rtol=1e-4, atol=1e-4)


def test_bad_inputs_raise_clear_errors():
    model = _model()
    batch = make_batch()
    with pytest.raises(ValueError, match="target_sids"):
        model(**{k: v for k, v in batch.items() if k != "target_sids"})
    bad = dict(batch, user_static=batch["user_static"] + 100)
    with pytest.raises(ValueError, match="user_static"):
        model(**bad)
    with pytest.raises(ValueError, match="sids"):
        model.sid_log_probs(batch, torch.full((3, 2, 3), 9))
    with pytest.raises(ValueError, match="kv_split"):
        v2_config(kv_split=3)


def test_lora_adapter_trains_saves_reloads(tmp_path):
    peft = pytest.importorskip("peft")
    model = _model()
    lora = peft.get_peft_model(
        model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj", "gate_proj"])
    )
    batch = make_batch()
    opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    lora.train()
    first = lora(**batch).loss.item()
    for _ in range(5):
        opt.zero_grad()
        loss = lora(**batch).loss
        loss.backward()
        opt.step()
    lora.eval()
    assert lora(**batch).loss.item() < first
    expected = lora(**batch).logits
    lora.save_pretrained(tmp_path)
    reloaded = peft.PeftModel.from_pretrained(_model(), tmp_path).eval()
    torch.testing.assert_close(reloaded(**batch).logits, expected)


def test_recommend_with_the_library_semantic_id_index():
    from kwaiformers.models.onerec.item_index import SemanticIdIndex

    model = _model()
    batch = make_batch()
    reference = random_index(num_items=12)
    index = SemanticIdIndex.from_codes(reference.codes, level_sizes=list(LEVELS),
                                       popularity=torch.rand(12, generator=torch.Generator().manual_seed(1)))
    ours = model.recommend(batch, num_items=5, beam_size=16, item_index=index)
    ref = model.recommend(batch, num_items=5, beam_size=16, item_index=reference)
    assert torch.equal(ours.sids, ref.sids) and ours.legal.all()
    assert torch.equal(ours.item_ids, index.lookup(ours.sids.reshape(-1, 3)).view(3, 5))


def test_context_self_attention_option():
    """``context_self_attention_layers``: off by default (no weights; a position's K/V depends on
    that position only, the paper's design); on, a position's K/V depends on the other kept
    positions but never on padded ones; it trains, saves/reloads and beam-searches; bad sizes raise."""
    batch = make_batch(batch_size=8)
    short_mask = batch["short_mask"].bool()
    counts = short_mask.sum(1)  # a row with left padding and >= 2 kept positions in the short history
    b = int(torch.nonzero((counts >= 2) & (counts < short_mask.shape[1]))[0])
    pad_pos, kept = int(torch.nonzero(~short_mask[b])[0]), torch.nonzero(short_mask[b])[:, 0]
    first, other = int(kept[0]), int(kept[-1])

    def with_codes(pos: int) -> dict[str, torch.Tensor]:
        sids = batch["short_sids"].clone()
        sids[b, pos] = (sids[b, pos] + 1) % torch.tensor(LEVELS)
        return dict(batch, short_sids=sids)

    def short_keys(model, inputs) -> torch.Tensor:  # K of the short history positions, [B, G, T, d]
        kv, _ = model.encode_context(inputs)
        start = model.config.num_user_tokens
        return kv[0][0][:, :, start:start + inputs["short_sids"].shape[1]]

    off = _model()
    assert off.config.context_self_attention_layers == 0
    assert not any("context_layers" in k for k in off.state_dict())
    with torch.no_grad():
        base, moved = short_keys(off, batch), short_keys(off, with_codes(other))
    torch.testing.assert_close(moved[b, :, first], base[b, :, first])  # positions encoded independently

    on = _model(context_self_attention_layers=2)
    assert on.config.context_attention_heads == on.config.context_dim // on.config.head_dim
    assert sum("context_layers" in k for k in on.state_dict()) > 0
    with torch.no_grad():
        base = short_keys(on, batch)
        assert not torch.allclose(short_keys(on, with_codes(other))[b, :, first], base[b, :, first])
        padded = short_keys(on, with_codes(pad_pos))  # a padded position is masked as a key
        torch.testing.assert_close(padded[b, :, kept], base[b, :, kept])
        torch.testing.assert_close(padded[b + 1:], base[b + 1:])
    on.train()
    loss = on(**batch).loss
    loss.backward()
    grads = [p.grad for n, p in on.named_parameters() if "context_layers" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    on.eval()
    again = save_and_reload(on)
    assert again.config.context_self_attention_layers == 2
    assert_state_dicts_equal(on, again)
    index = random_index(num_items=12)
    out = on.recommend(batch, num_items=3, beam_size=4, item_index=index)
    assert out.item_ids.shape == (8, 3) and (out.item_ids >= 0).all()
    with pytest.raises(ValueError, match="context_self_attention_layers"):
        v2_config(context_self_attention_layers=-1)
    with pytest.raises(ValueError, match="context_attention_heads"):
        v2_config(context_self_attention_layers=1, context_attention_heads=3)
