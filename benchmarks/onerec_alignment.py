"""OneRec preference alignment on the simulator: GBPO + NTP vs the NTP control on a personalised base.

    python benchmarks/onerec_alignment.py [--quick] [--seeds 0 1 2] [--arms ntp gbpo filtered_ntp ecpo]

One simulated world (``--data-seed``) -> semantic IDs (every item reachable) -> a tiny OneRec-V2
pretrained with NTP (the **base**) -> the personalisation diagnostic; on a context-blind base the
comparison is refused (``--allow-context-blind`` overrides, marked). Then, from the same base weights,
per trainer seed (the seed only changes the order of the logged exposures), the same number of steps
on the same logged exposures:

* ``ntp``: plain next-token training on every exposure (the control for "more training");
* ``gbpo``: GBPO with DARS advantages (V2 §3) + the same NTP term;
* ``filtered_ntp`` (opt-in): NTP on exposures above the batch median play time (V1's RSFT filter),
  a separately named baseline (the filter alone is an alignment method on play time);
* ``ecpo`` (opt-in): the early-clipped loss on the same logged exposures + NTP. With ``pi_old =
  sg(pi)`` on exposures the model did not serve (the V2 rule, all of the simulator's) its ratio is
  1 and it equals plain policy gradient; on-policy ECPO needs a reward model (the
  ``onerec_v1_ecpo.yaml`` recipe).

Each is scored on one test impression per user with the simulator's ground truth: completion rate,
dislike rate, mean recommended duration, expected play time (duration x completion) and
Recall/NDCG@10 of the logged next item; paired differences vs the NTP control with 95% t-intervals
over the trainer seeds. Also printed: the DARS duration-leak statistic with the old ``"user"``
fallback and the population fallback, and V2's gradient analysis (per-sample ``|d loss / d pi|`` on
negatives for GBPO / ECPO / plain PG on the base model).

Prints tables, then ONE JSON line of headline figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time

import torch

QUICK = dict(num_users=150, num_items=120, days=4, pretrain_steps=150, pretrain_lr=3e-3, batch_size=64,
             align_steps=10, align_batch_size=64, align_lr=5e-4, hidden_size=32, eval_users=150,
             diag_rows=600, grad_batches=3, policy_temperature=4.0, popularity_mix=0.1)
FULL = dict(num_users=600, num_items=400, days=6, pretrain_steps=600, pretrain_lr=3e-3, batch_size=128,
            align_steps=60, align_batch_size=128, align_lr=5e-4, hidden_size=64, eval_users=600,
            diag_rows=2400, grad_batches=8, policy_temperature=4.0, popularity_mix=0.1)


def gradient_stats(model, data, num_batches: int, batch_size: int, seed: int, pi_old: str) -> dict[str, dict]:
    """Per-loss gradient statistics of the RL term on logged batches (V2's gradient analysis)."""
    from kwaiformers.rewards.dars import DARSConfig, duration_aware_advantages
    from kwaiformers.trainers.gbpo_trainer import GBPOTrainer
    from kwaiformers.trainers.losses import ecpo_loss, gbpo_loss

    ds = data.splits["train"]
    neg_rows = [i for i, v in enumerate(ds["target_is_negative"]) if v]
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    out: dict[str, dict] = {k: {"grad_norms": [], "neg_scale": [], "neg_pi": []} for k in ("gbpo", "ecpo", "pg")}
    model.train()
    for b in range(num_batches):
        idx = perm[b * batch_size:(b + 1) * batch_size]
        idx = idx[: batch_size - 4] + neg_rows[(4 * b) % max(len(neg_rows), 1):][:4]  # ensure negatives
        batch = data.collator([ds[i] for i in idx])
        adv = duration_aware_advantages(
            durations=batch["target_duration"], play_times=batch["target_play_time"],
            history_durations=batch["history_durations"], history_play_times=batch["history_play_times"],
            negatives=batch["target_is_negative"], config=DARSConfig(inclusive_threshold=True))
        keep = adv != 0
        sub = {k: v[keep] for k, v in batch.items()}
        old = GBPOTrainer.old_log_probs(sub, pi_old)  # NaN -> sg(pi)
        for name in out:
            model.zero_grad()
            lp = model.sid_log_probs(sub, sub["target_sids"][:, None])[:, 0].sum(-1)
            pi = lp.exp()
            pi.retain_grad()
            logp = torch.log(pi)
            if name == "gbpo":
                per = gbpo_loss(logps=logp, old_logps=old, advantages=adv[keep])
            elif name == "ecpo":
                per = ecpo_loss(logps=logp, old_logps=old, advantages=adv[keep], epsilon=0.2, delta=0.1)
            else:
                per = -adv[keep] * torch.exp(logp - logp.detach())
            per.mean().backward()
            norm = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters() if p.grad is not None))
            out[name]["grad_norms"].append(float(norm))
            negm = adv[keep] < 0
            scale = (pi.grad.abs() * len(per))[negm]  # |d loss_i / d pi_i| (undo the mean's 1/n)
            out[name]["neg_scale"] += scale.tolist()
            out[name]["neg_pi"] += pi.detach()[negm].tolist()
    model.zero_grad()
    return out


def dars_leak(data, batches: int = 40, batch_size: int = 128) -> dict[str, dict]:
    """P(A=+1 | low true completion) and P(A=+1) by duration bucket, old "user" fallback vs the
    population fallback (the default), on training batches of logged exposures."""
    from kwaiformers.rewards.dars import (
        DARSConfig,
        advantage_rate_by_duration,
        duration_aware_advantages,
    )

    ds = data.splits["train"]
    n = min(len(ds) // batch_size, batches) * batch_size
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n].tolist()
    batch = data.collator([ds[i] for i in perm])
    comp = torch.as_tensor(data.simulator.score(batch["user_id"].numpy(), batch["target_item_id"].numpy())
                           ["completion_rate"])
    out = {}
    for name, cfg in (("user fallback (old)", DARSConfig(inclusive_threshold=True, empty_bucket_fallback="user",
                                                          min_bucket_size=1)),
                      ("population, min 3 (new)", DARSConfig(inclusive_threshold=True))):
        adv = torch.cat([duration_aware_advantages(
            durations=batch["target_duration"][s:s + batch_size].float(),
            play_times=batch["target_play_time"][s:s + batch_size].float(),
            history_durations=batch["history_durations"][s:s + batch_size].float(),
            history_play_times=batch["history_play_times"][s:s + batch_size].float(),
            negatives=batch["target_is_negative"][s:s + batch_size].bool(), config=cfg)
            for s in range(0, n, batch_size)])
        out[name] = advantage_rate_by_duration(adv, batch["target_duration"], comp)
        out[name + " | low within bucket"] = advantage_rate_by_duration(
            adv, batch["target_duration"], comp, low_within_bucket=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (too small to personalise)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="trainer seeds")
    parser.add_argument("--data-seed", type=int, default=0, help="simulated world and pretraining seed")
    parser.add_argument("--arms", nargs="+", default=["ntp", "gbpo"],
                        help="arms (ntp, gbpo, filtered_ntp, ecpo); ntp is the control")
    parser.add_argument("--pi-old", choices=["served", "logged"], default="served",
                        help="'served': V2 rule (sg(pi) on exposures the model did not serve); "
                             "'logged': the legacy logging policy's probability (the old benchmark)")
    parser.add_argument("--allow-context-blind", action="store_true",
                        help="run the arms even when the base is not personalised (marked)")
    parser.add_argument("--results", default=None, help="also write all numbers to this JSON file")
    args = parser.parse_args(argv)
    if "ntp" not in args.arms:
        print("error: --arms must include ntp (the control)", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from kwaiformers.evaluation.recommendation import (
        format_personalization,
        personalization_diagnostic,
    )
    from kwaiformers.trainers.onerec_rl_recipe import (
        ALIGNMENT_ARMS,
        ARM_METRICS,
        build_tiny_model,
        context_blind_message,
        format_arms_table,
        paired_differences,
        prepare_data,
        pretrain,
        run_alignment_arms,
    )

    unknown = [a for a in args.arms if a not in ALIGNMENT_ARMS]
    if unknown:
        print(f"error: unknown arm(s) {unknown}; expected some of {sorted(ALIGNMENT_ARMS)}", file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    t0 = time.time()
    sim = {"policy_temperature": sizes["policy_temperature"], "popularity_mix": sizes["popularity_mix"],
           "log_exposure_prob": args.pi_old == "logged"}
    data = prepare_data(num_users=sizes["num_users"], num_items=sizes["num_items"], days=sizes["days"],
                        seed=args.data_seed, simulator_kwargs=sim, disambiguate=True)
    base = build_tiny_model(data.spec, hidden_size=sizes["hidden_size"], seed=args.data_seed)
    with tempfile.TemporaryDirectory() as tmp:
        pretrain(base, data, os.path.join(tmp, "pre"), max_steps=sizes["pretrain_steps"],
                 batch_size=sizes["batch_size"], learning_rate=sizes["pretrain_lr"], seed=args.data_seed,
                 progress=False)
        val = data.splits["validation"]
        rows = [val[i] for i in range(min(len(val), sizes["diag_rows"]))]
        diag = personalization_diagnostic(base, [data.collator(rows[i:i + 256]) for i in range(0, len(rows), 256)],
                                          data.index, torch.as_tensor(data.splits["train"]["target_sids"]), k=10)
        print(f"OneRec alignment on the simulator ({'quick' if args.quick else 'full'}; world {args.data_seed}; "
              f"trainer seeds {args.seeds}; {sizes['align_steps']} alignment steps per arm; pi_old: {args.pi_old}; "
              f"item coverage {100 * data.info['item_coverage']:.0f}%)\n")
        print(format_personalization(diag))
        print(f"  (base pretrained {sizes['pretrain_steps']} steps; {time.time() - t0:.0f} s so far)", file=sys.stderr)
        headline: dict = {"benchmark": "onerec_alignment", "quick": bool(args.quick), "seeds": args.seeds,
                          "personalised": diag["personalised"],
                          "diagnostic": {k: diag[k] for k in ("loss_gain", "distinct_items", "mean_jaccard",
                                                              "first_level_kl")}}
        arms = None
        if not diag["personalised"]:
            msg = context_blind_message(diag)
            if not args.allow_context_blind:
                print(f"\nrefused: {msg}")
                headline["refused"] = True
                headline["seconds"] = round(time.time() - t0, 1)
                print(json.dumps(headline))
                return 1
            print(f"\nWARNING (--allow-context-blind): {msg}")
        grad = gradient_stats(copy.deepcopy(base), data, sizes["grad_batches"], sizes["align_batch_size"],
                              args.data_seed, args.pi_old)
        leak = dars_leak(data)
        arms = run_alignment_arms(base, data, tmp, arms=args.arms, seeds=args.seeds,
                                  max_steps=sizes["align_steps"], batch_size=sizes["align_batch_size"],
                                  learning_rate=sizes["align_lr"], eval_users=sizes["eval_users"], progress=False,
                                  dars_inclusive_threshold=True, old_policy_prob=args.pi_old)
    logs = arms.pop("logs")
    print()
    print(format_arms_table(arms))
    print("\nDARS duration leak: P(A=+1 | low true completion) [P(A=+1)] by video duration")
    for name, st in leak.items():
        print(f"  {name:<45}" + "  ".join(f"{b}: {v['p_positive_low']:.3f} [{v['p_positive']:.3f}]"
                                           for b, v in st.items()))
    print("\nGradient analysis on negatives (is_hate), base model, logged batches, RL term only:")
    print(f"{'loss':<8}{'median |dl/dpi|':>18}{'max |dl/dpi|':>16}{'mean batch |grad|':>20}{'max batch |grad|':>19}")
    gsum = {}
    for name in ("pg", "ecpo", "gbpo"):
        scales, norms = grad[name]["neg_scale"], grad[name]["grad_norms"]
        med = sorted(scales)[len(scales) // 2] if scales else float("nan")
        gsum[name] = {"median_neg_scale": med, "max_neg_scale": max(scales, default=float("nan")),
                      "mean_grad_norm": sum(norms) / len(norms), "max_grad_norm": max(norms)}
        g = gsum[name]
        print(f"{name:<8}{g['median_neg_scale']:>18.3f}{g['max_neg_scale']:>16.3f}{g['mean_grad_norm']:>20.4f}"
              f"{g['max_grad_norm']:>19.4f}")
    pis = grad["gbpo"]["neg_pi"]
    if pis:
        print(f"(negatives' item probability pi: median {sorted(pis)[len(pis) // 2]:.2e}, min {min(pis):.2e})")
    for arm in args.arms:
        if arm == "ntp":
            continue
        diff = paired_differences(arms, arm, "ntp")
        headline[f"{arm}_vs_ntp"] = {k: [round(diff[k]["mean"], 6), round(diff[k]["half_width"], 6),
                                         round(diff[k]["relative"], 6)] for k, _, _ in ARM_METRICS}
    headline["dars_leak_p_pos_low_ge64"] = {k: v[">= 64 s"]["p_positive_low"] for k, v in leak.items()
                                            if "within" not in k}
    headline["neg_grad_scale_pg_over_gbpo_median"] = gsum["pg"]["median_neg_scale"] / gsum["gbpo"]["median_neg_scale"]
    headline["seconds"] = round(time.time() - t0, 1)
    if args.results:
        with open(args.results, "w") as f:
            json.dump({"diagnostic": diag, "arms": arms, "logs": logs, "grad": gsum, "dars_leak": leak,
                       "sizes": sizes, "seeds": args.seeds, "headline": headline}, f, default=float)
    print("(headline lists: [mean paired difference, 95% half-width, relative change])")
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
