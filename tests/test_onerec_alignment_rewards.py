"""DARS (OneRec-V2 §3.1.1), the format reward (TR §2.4.2) and the P-Score reward model."""

from __future__ import annotations

import math

import pytest
import torch

from kwaiformers.rewards import (
    DARSConfig,
    duration_aware_advantages,
    format_reward_advantages,
    negatives_from_labels,
    play_time_percentiles,
)

NAN = math.nan


def _valid_history(hist, cfg):
    valid = [(hd, hp) for hd, hp in hist if not (math.isnan(hd) or math.isnan(hp))]
    if cfg.history_window is not None:
        valid = valid[-cfg.history_window :]
    return valid


def ref_percentile(d, p, hist, cfg, population=()):
    """Loop re-derivation of q_i with the documented fallbacks (``population``: the pooled
    (duration, play) pairs of the ``"population"`` fallback)."""
    valid = _valid_history(hist, cfg)

    def bucket(x):
        return math.floor(math.log(x + cfg.epsilon) / math.log(cfg.beta))

    same = [hp for hd, hp in valid if bucket(hd) == bucket(d)]
    if len(same) >= cfg.min_bucket_size:
        return sum(hp <= p for hp in same) / len(same)
    if cfg.empty_bucket_fallback == "population":
        pop = [pp for pd, pp in population if bucket(pd) == bucket(d)]
        return sum(pp <= p for pp in pop) / len(pop) if len(pop) >= cfg.min_bucket_size else NAN
    if not valid or cfg.empty_bucket_fallback == "nan":
        return NAN
    if cfg.empty_bucket_fallback == "zero":
        return 0.0
    return sum(hp <= p for _, hp in valid) / len(valid)


def ref_advantages(qs, negs, cfg):
    defined = sorted(q for q in qs if not math.isnan(q))
    if defined:
        # linear-interpolation quantile (torch.quantile's default), written out
        pos = (1 - cfg.quantile) * (len(defined) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        tau = defined[lo] + (defined[hi] - defined[lo]) * (pos - lo)
    else:
        tau = NAN
    out = []
    for q, n in zip(qs, negs):
        if n:
            out.append(-1.0)
        elif not math.isnan(q) and (q >= tau if cfg.inclusive_threshold else q > tau):
            out.append(1.0)
        else:
            out.append(0.0)
    return out, tau


def test_hand_example():
    # target 10 s -> bucket floor(log2 10) = 3; history buckets [3, 3, 4, 2]
    out = duration_aware_advantages(
        durations=torch.tensor([10.0]),
        play_times=torch.tensor([6.0]),
        history_durations=torch.tensor([[9.0, 12.0, 30.0, 5.0]]),
        history_play_times=torch.tensor([[3.0, 8.0, 20.0, 5.0]]),
        config=DARSConfig(min_bucket_size=1),  # the paper's rule: any non-empty user bucket
        return_details=True,
    )
    assert out.percentiles.item() == pytest.approx(0.5)  # {3, 8}: one of two <= 6


@pytest.mark.parametrize(
    "cfg",
    [
        DARSConfig(),
        DARSConfig(beta=3.0, quantile=0.5, empty_bucket_fallback="zero"),
        DARSConfig(history_window=3, empty_bucket_fallback="nan", inclusive_threshold=True),
        DARSConfig(empty_bucket_fallback="user", min_bucket_size=1),
        DARSConfig(history_window=4, min_bucket_size=2),
        DARSConfig(beta=1.5, min_bucket_size=1),
    ],
)
def test_matches_loop_reference(cfg):
    g = torch.Generator().manual_seed(1)
    bsz, h = 24, 7
    dur = torch.exp(torch.rand(bsz, generator=g) * 5).double()
    play = dur * torch.rand(bsz, generator=g).double() * 1.2
    hd = torch.exp(torch.rand(bsz, h, generator=g) * 5).double()
    hp = hd * torch.rand(bsz, h, generator=g).double()
    lengths = torch.randint(0, h + 1, (bsz,), generator=g)
    lengths[0] = 0  # a user with no history at all
    pad = torch.arange(h)[None, :] < (h - lengths[:, None])  # left padding
    hd[pad], hp[pad] = NAN, NAN
    neg = torch.rand(bsz, generator=g) < 0.2
    out = duration_aware_advantages(
        durations=dur, play_times=play, history_durations=hd, history_play_times=hp,
        negatives=neg, config=cfg, return_details=True,
    )
    hists = [list(zip(hd[i].tolist(), hp[i].tolist())) for i in range(bsz)]
    pooled = [e for hist in hists for e in _valid_history(hist, cfg)]
    ref_q = [ref_percentile(dur[i].item(), play[i].item(), hists[i], cfg, pooled) for i in range(bsz)]
    torch.testing.assert_close(out.percentiles.double(), torch.tensor(ref_q, dtype=torch.float64),
                               equal_nan=True)
    ref_a, tau = ref_advantages(out.percentiles.tolist(), neg.tolist(), cfg)
    assert out.advantages.tolist() == ref_a
    assert out.threshold == pytest.approx(tau, nan_ok=True)
    if cfg.empty_bucket_fallback != "population":  # (the population fallback rates anyone)
        assert math.isnan(out.percentiles[0]) and out.advantages[0] <= 0  # no history: never positive


def test_branches_negative_wins_and_all_empty_batch():
    cfg = DARSConfig()
    # every q undefined -> tau NaN, no positives, negatives still -1
    out = duration_aware_advantages(
        durations=torch.tensor([5.0, 6.0]), play_times=torch.tensor([5.0, 1.0]),
        history_durations=torch.full((2, 3), NAN), history_play_times=torch.full((2, 3), NAN),
        negatives=torch.tensor([False, True]), config=cfg, return_details=True,
    )
    assert out.advantages.tolist() == [0.0, -1.0] and math.isnan(out.threshold)
    assert out.negative_frac == 0.5 and out.positive_frac == 0.0
    # a would-be positive with a dislike gets -1; q = [1, 1, 0, 0, 0, 0] -> tau = 0.75 quantile = 0.25
    a = duration_aware_advantages(
        durations=torch.full((6,), 5.0), play_times=torch.tensor([9.0, 9.0, 0.0, 0.0, 0.0, 0.0]),
        history_durations=torch.full((6, 2), 5.0), history_play_times=torch.tensor([[1.0, 2.0]] * 6),
        negatives=torch.tensor([True, False, False, False, False, True]),
    )
    assert a.tolist() == [-1.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    # ties at the top: the paper's strict q > tau keeps none, inclusive keeps them
    kw = dict(durations=torch.full((4,), 5.0), play_times=torch.tensor([9.0, 9.0, 0.0, 0.0]),
              history_durations=torch.full((4, 2), 5.0),
              history_play_times=torch.tensor([[1.0, 2.0]] * 4))
    assert duration_aware_advantages(**kw).tolist() == [0.0] * 4
    assert duration_aware_advantages(**kw, config=DARSConfig(inclusive_threshold=True)).tolist() == [
        1.0, 1.0, 0.0, 0.0,
    ]
    # empty batch: empty output, no crash
    e = duration_aware_advantages(
        durations=torch.zeros(0), play_times=torch.zeros(0),
        history_durations=torch.zeros(0, 3), history_play_times=torch.zeros(0, 3),
    )
    assert e.shape == (0,)


def test_bad_inputs():
    with pytest.raises(ValueError, match="beta"):
        DARSConfig(beta=1.0)
    with pytest.raises(ValueError, match="quantile"):
        DARSConfig(quantile=1.5)
    with pytest.raises(ValueError, match="empty_bucket_fallback"):
        DARSConfig(empty_bucket_fallback="mean")
    with pytest.raises(ValueError, match="history_durations"):
        play_time_percentiles(durations=torch.ones(2), play_times=torch.ones(2),
                              history_durations=torch.ones(3, 2), history_play_times=torch.ones(3, 2))
    with pytest.raises(ValueError, match="must not be NaN"):
        play_time_percentiles(durations=torch.tensor([NAN]), play_times=torch.ones(1),
                              history_durations=torch.ones(1, 2), history_play_times=torch.ones(1, 2))
    with pytest.raises(ValueError, match="not in label_names"):
        negatives_from_labels(torch.zeros(2, 2), ["a", "b"], ["is_hate"])
    assert negatives_from_labels(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), ["a", "is_hate"]).tolist() == [
        True, False,
    ]


def test_format_reward_random_k_of_g():
    legal = torch.tensor([[True, False, True, True, False, True]] * 50)
    g = torch.Generator().manual_seed(0)
    adv, mask = format_reward_advantages(legal, k=2, generator=g)
    assert adv.shape == legal.shape and mask.dtype == torch.bool
    assert (mask <= legal).all()  # illegal ones dropped
    assert ((adv == 1) == mask).all() and ((adv == 0) == ~mask).all()
    assert (mask.sum(1) <= 2).all()
    # random selection: every legal position gets picked for some user
    assert mask.any(0).tolist() == legal[0].tolist()
    with pytest.raises(ValueError, match="k must be"):
        format_reward_advantages(legal, k=7)


def _tiny_batch(bsz=8, levels=2, k=5, t=4, seed=0):
    from kwaiformers.data.schema import CONTINUOUS_FEATURES, FEEDBACK_LABELS, PAD_CODE

    g = torch.Generator().manual_seed(seed)
    short = torch.randint(0, k, (bsz, t, levels), generator=g)
    mask = torch.ones(bsz, t, dtype=torch.bool)
    mask[0] = False  # a user with no history
    short[~mask] = PAD_CODE
    return {
        "user_static": torch.randint(0, 3, (bsz, 2), generator=g),
        "short_sids": short,
        "short_feats": torch.rand(bsz, t, len(CONTINUOUS_FEATURES), generator=g),
        "short_labels": (torch.rand(bsz, t, len(FEEDBACK_LABELS), generator=g) > 0.5).float(),
        "short_mask": mask,
        "long_sids": short.clone(),
        "long_mask": mask.clone(),
        "target_sids": torch.randint(0, k, (bsz, levels), generator=g),
        "target_play_time": torch.rand(bsz, generator=g) * 30,
        "target_duration": torch.full((bsz,), 20.0),
        "target_is_negative": torch.rand(bsz, generator=g) > 0.7,
    }


def test_pscore_loss_formula_training_and_roundtrip(tmp_path):
    import torch.nn.functional as F
    from transformers import AutoConfig, AutoModel, Trainer, TrainingArguments

    from kwaiformers.rewards import PScoreConfig, PScoreModel, pscore_labels_from_batch

    cfg = PScoreConfig(num_levels=2, codebook_size=5, user_feature_vocab_sizes=[3, 3], hidden_size=16,
                       tower_hidden_size=8, objectives=["long_view", "complete", "is_hate"],
                       objective_weights=[2.0, 1.0, 0.5])
    model = PScoreModel(cfg)
    batch = _tiny_batch()
    labels = pscore_labels_from_batch(batch, cfg)
    assert labels[:, 2].tolist() == batch["target_is_negative"].float().tolist()
    out = model(**batch, labels=labels)
    # independent recomputation of the TR's weighted BCE (+ tower BCE)
    p = torch.sigmoid(out.logits)
    tgt = torch.stack([labels[:, 0], labels[:, 1], 1 - labels[:, 2]], -1)
    w = torch.tensor([2.0, 1.0, 0.5])
    combined = -(w * (tgt * p[:, None].log() + (1 - tgt) * (1 - p[:, None]).log())).sum(-1)
    towers = F.binary_cross_entropy_with_logits(out.tower_logits, labels, reduction="none").sum(-1)
    torch.testing.assert_close(out.loss, (combined + towers).mean(), rtol=1e-5, atol=1e-6)
    assert torch.isfinite(out.logits[0])  # user without history
    # score() of G candidates agrees with forward on the target
    g = model.score(batch, torch.stack([batch["target_sids"], batch["target_sids"]], 1))
    torch.testing.assert_close(g[:, 0], torch.sigmoid(out.logits), rtol=1e-5, atol=1e-6)

    # trainable with transformers.Trainer on rows of the schema
    from datasets import Dataset

    rows = [{k: v[i] for k, v in batch.items()} | {"labels": labels[i]} for i in range(8)]

    def collate(items):
        return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}

    ds = Dataset.from_list([{k: v.tolist() for k, v in r.items()} for r in rows])
    args = TrainingArguments(output_dir=str(tmp_path / "ps"), max_steps=15, learning_rate=5e-2,
                             per_device_train_batch_size=8, report_to=[], use_cpu=True,
                             logging_steps=1, save_strategy="no", remove_unused_columns=False,
                             disable_tqdm=True)
    before = model(**batch, labels=labels).loss.item()
    Trainer(model=model, args=args, train_dataset=ds, data_collator=collate).train()
    assert model(**batch, labels=labels).loss.item() < before
    model.save_pretrained(tmp_path / "saved")
    assert AutoConfig.from_pretrained(tmp_path / "saved").model_type == "onerec_pscore"
    reloaded = AutoModel.from_pretrained(tmp_path / "saved")
    assert type(reloaded).__name__ == "PScoreModel"
    torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)
    with pytest.raises(ValueError, match="labels must be"):
        model(**batch, labels=labels[:, :2])
    with pytest.raises(ValueError, match="objective_weights"):
        PScoreConfig(objectives=["a", "b"], objective_weights=[1.0])


def test_dars_population_fallback_stops_the_duration_leak_by_hand():
    # users who only watched short videos; the target is a long video watched 30 s of 200 s
    # (completion 0.15). Against the user's whole history ("user") 30 s out-plays everything;
    # against the population's long videos (other users watched them 150-190 s) it is low.
    short_hist_d = torch.tensor([[10.0, 12.0, 9.0, 11.0]] * 3)
    short_hist_p = torch.tensor([[8.0, 10.0, 7.0, 9.0]] * 3)
    long_hist_d = torch.tensor([[200.0, 180.0, 210.0, 190.0]])
    long_hist_p = torch.tensor([[150.0, 170.0, 190.0, 160.0]])
    kw = dict(durations=torch.tensor([200.0, 10.0, 10.0, 150.0]),
              play_times=torch.tensor([30.0, 9.5, 2.0, 140.0]),
              history_durations=torch.cat([short_hist_d, long_hist_d]),
              history_play_times=torch.cat([short_hist_p, long_hist_p]))
    leak = play_time_percentiles(**kw, config=DARSConfig(empty_bucket_fallback="user"))
    fixed = play_time_percentiles(**kw)  # default: population fallback, min_bucket_size=3
    assert leak[0] == 1.0 and fixed[0] == 0.0
    assert fixed[1].item() == pytest.approx(0.75) and fixed[3].item() == 0.0  # own buckets
    # an explicit population reference replaces the batch's pooled histories
    ref = play_time_percentiles(**kw, population_durations=torch.tensor([200.0, 220.0, 190.0]),
                                population_play_times=torch.tensor([10.0, 20.0, 40.0]))
    assert ref[0].item() == pytest.approx(2 / 3)
    # own buckets (4 plays) below min_bucket_size=5: the short bucket's population holds 12
    # plays, the long bucket's only 4 -> NaN (never positive)
    q = play_time_percentiles(**kw, config=DARSConfig(min_bucket_size=5))
    assert torch.isnan(q).tolist() == [True, False, False, True] and q[1].item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="min_bucket_size"):
        DARSConfig(min_bucket_size=0)
    with pytest.raises(ValueError, match="population_durations"):
        play_time_percentiles(**kw, population_durations=torch.ones(3))


def test_dars_duration_leak_guard_on_the_simulator():
    """The leak statistic (docs/onerec_alignment.md): with the population fallback the positive
    rate is flat across durations, and exposures with low true completion are rarely positive
    however long the video; the old "user" fallback fails the same checks."""
    from kwaiformers.rewards import advantage_rate_by_duration
    from kwaiformers.trainers.onerec_rl_recipe import prepare_data

    data = prepare_data(num_users=150, num_items=120, days=4, seed=0, codebook_sizes=(8, 4, 4),
                        disambiguate=True)
    # (the same data checks item coverage: with the extra level every item has its own tuple)
    assert data.info["item_coverage"] == 1.0 and data.index.num_levels == 4
    items = data.index.item_ids
    assert torch.equal(data.index.lookup(data.index.item_codes(items)), items)
    ds = data.splits["train"]
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[: 128 * 10].tolist()
    batch = data.collator([ds[i] for i in perm])
    truth = data.simulator.score(batch["user_id"].numpy(), batch["target_item_id"].numpy())
    comp = torch.as_tensor(truth["completion_rate"])

    def stats(cfg):
        adv = torch.cat([
            duration_aware_advantages(
                durations=batch["target_duration"][s:s + 128].float(),
                play_times=batch["target_play_time"][s:s + 128].float(),
                history_durations=batch["history_durations"][s:s + 128].float(),
                history_play_times=batch["history_play_times"][s:s + 128].float(),
                negatives=batch["target_is_negative"][s:s + 128].bool(), config=cfg)
            for s in range(0, len(perm), 128)])
        return advantage_rate_by_duration(adv, batch["target_duration"], comp, edges=(32.0, 64.0))

    fixed = stats(DARSConfig(inclusive_threshold=True))
    leak = stats(DARSConfig(inclusive_threshold=True, empty_bucket_fallback="user"))
    rate = [v["p_positive"] for v in fixed.values()]
    rate_leak = [v["p_positive"] for v in leak.values()]
    assert all(v["n_low"] >= 40 for v in fixed.values())
    assert max(rate) - min(rate) < 0.1, fixed
    assert max(rate_leak) - min(rate_leak) > 0.15, leak  # the guard can fail
    assert fixed[">= 64 s"]["p_positive_low"] < leak[">= 64 s"]["p_positive_low"] - 0.08
    assert fixed[">= 64 s"]["p_positive_low"] < 0.2
    with pytest.raises(ValueError, match="edges"):
        advantage_rate_by_duration(torch.zeros(3), torch.ones(3), torch.ones(3), edges=(5.0, 2.0))
