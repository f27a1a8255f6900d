"""OneRec preference alignment on the simulator: aligned vs SFT, and GBPO vs ECPO vs plain PG.

    python benchmarks/onerec_alignment.py [--quick] [--seeds 0 1 2]

Per seed: simulator logs (with logged exposure probabilities) -> semantic IDs -> pretrain a tiny
OneRec-V2 (the SFT model) -> from the same SFT weights, align on the logged exposures with

* ``gbpo``: GBPO (V2 §3.1.2) with DARS advantages + joint SFT,
* ``ecpo``: ECPO-style early-clipped PPO with the logged pi_old + joint SFT,
* ``pg``:   plain policy gradient at ratio 1 (``-A pi / sg(pi)``) + joint SFT,
* ``sft``:  the SFT term alone for the same number of steps (control for the extra training),

then evaluate each on held-out impressions with the simulator's ground truth (expected play time
per recommendation, completion rate, dislike rate, Recall@10, legality).

Gradient analysis (V2's argument): on the SFT model, for logged batches containing negatives
(``is_hate``), the per-sample gradient scale ``|d loss / d pi|`` of each loss on negatives and the
norm of the RL term's parameter gradient per batch. Expected: plain PG's ``|A| / pi`` explodes on
negatives with small pi; GBPO's ``|A| / max(pi_old, 1 - pi)`` stays <= the BCE bound ``1/(1 - pi)``.

Prints a table, then ONE JSON line of headline figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time

import torch

QUICK = dict(num_users=150, num_items=120, days=4, pretrain_steps=60, align_steps=15,
             batch_size=64, hidden_size=32, eval_users=150, grad_batches=4)
FULL = dict(num_users=600, num_items=400, days=6, pretrain_steps=300, align_steps=60,
            batch_size=128, hidden_size=64, eval_users=600, grad_batches=10)
ARMS = ("sft", "gbpo", "ecpo", "pg")
METRICS = ("expected_play_time", "completion_rate", "dislike_rate", "recall@10", "legality")


def gradient_stats(model, data, num_batches: int, batch_size: int, seed: int) -> dict[str, dict]:
    """Per-loss gradient statistics on logged batches (RL term only, no SFT term)."""
    from kwaiformers.rewards.dars import DARSConfig, duration_aware_advantages
    from kwaiformers.trainers.losses import ecpo_loss, gbpo_loss

    ds = data.splits["train"]
    neg_rows = [i for i, v in enumerate(ds["target_is_negative"]) if v]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(ds), generator=g).tolist()
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
        old = torch.log(sub["target_logged_prob"].float())  # NaN (not logged) -> sg(pi)
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
            # |d loss_i / d pi_i| per sample (undo the 1/n of the mean)
            scale = (pi.grad.abs() * len(per))[negm]
            out[name]["neg_scale"] += scale.tolist()
            out[name]["neg_pi"] += pi.detach()[negm].tolist()
    model.zero_grad()
    return out


def run_seed(seed: int, sizes: dict, workdir: str, logged_prob: bool = True) -> dict:
    from kwaiformers.trainers.onerec_rl_recipe import (
        align,
        build_tiny_model,
        evaluate_recommender,
        prepare_data,
        pretrain,
    )

    data = prepare_data(num_users=sizes["num_users"], num_items=sizes["num_items"], days=sizes["days"],
                        seed=seed, simulator_kwargs={"log_exposure_prob": logged_prob})
    sft = build_tiny_model(data.spec, hidden_size=sizes["hidden_size"], seed=seed)
    pretrain(sft, data, os.path.join(workdir, f"pre{seed}"), max_steps=sizes["pretrain_steps"],
             batch_size=sizes["batch_size"], seed=seed, progress=False)
    res: dict = {"base": evaluate_recommender(sft, data, max_users=sizes["eval_users"])}
    res["grad"] = gradient_stats(copy.deepcopy(sft), data, sizes["grad_batches"], sizes["batch_size"], seed)
    for arm in ARMS:
        model = copy.deepcopy(sft)
        kw = dict(max_steps=sizes["align_steps"], per_device_train_batch_size=sizes["batch_size"],
                  learning_rate=5e-4, logging_steps=1, seed=seed, dars_inclusive_threshold=True,
                  sft_weight=1.0)
        if arm == "sft":
            kw["rl_weight"] = 0.0
        else:
            kw["logged_loss"] = arm
        trainer = align("gbpo", model, data, os.path.join(workdir, f"{arm}{seed}"), progress=False, **kw)
        res[arm] = evaluate_recommender(model, data, max_users=sizes["eval_users"])
        res[arm]["train_grad_norm_max"] = max(h.get("grad_norm", 0.0) for h in trainer.state.log_history)
    return res


def _mean(xs):
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def _std(xs):
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / max(len(xs) - 1, 1)) if len(xs) > 1 else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute per seed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--results", default=None, help="also write all numbers to this JSON file")
    parser.add_argument("--no-logged-prob", action="store_true",
                        help="legacy exposures: no logged pi_old, GBPO/ECPO use sg(pi) (the quickstart setting)")
    parser.add_argument("--from-results", nargs="+", default=None,
                        help="aggregate the runs of earlier --results files instead of running")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    sizes = QUICK if args.quick else FULL
    t0 = time.time()
    runs = []
    if args.from_results:
        args.seeds = []
        for path in args.from_results:
            with open(path) as f:
                saved = json.load(f)
            runs += saved["runs"]
            args.seeds += saved.get("seeds", [])
            sizes = saved["sizes"]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for seed in args.seeds:
                runs.append(run_seed(seed, sizes, tmp, logged_prob=not args.no_logged_prob))
                print(f"seed {seed} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    print(f"OneRec alignment on the simulator ({'quick' if sizes == QUICK else 'full'}; seeds {args.seeds}; "
          f"{sizes['align_steps']} alignment steps from the same SFT model)\n")
    print(f"{'model':<10}" + "".join(f"{m:>22}" for m in METRICS))
    summary = {}
    for arm in ("base", *ARMS):
        row = {m: (_mean([r[arm][m] for r in runs]), _std([r[arm][m] for r in runs])) for m in METRICS}
        summary[arm] = row
        print(f"{arm:<10}" + "".join(f"{row[m][0]:>14.4f} ± {row[m][1]:<5.3f}" for m in METRICS))
    print("\nPaired change vs base, per seed (mean ± std of arm/base - 1, in %):")
    print(f"{'model':<10}" + "".join(f"{m:>22}" for m in METRICS))
    paired = {}
    for arm in ARMS:
        row = {}
        for m in METRICS:
            rel = [100 * (r[arm][m] / r["base"][m] - 1) for r in runs if r["base"][m]]
            row[m] = (_mean(rel), _std(rel))
        paired[arm] = row
        print(f"{arm:<10}" + "".join(f"{row[m][0]:>+13.1f}% ± {row[m][1]:<5.1f}" for m in METRICS))
    print("\n'base' = SFT model before alignment; 'sft' = SFT term only for the same steps;"
          " gbpo/ecpo/pg = that SFT term + the RL loss on logged exposures (DARS advantages).\n")
    print("Gradient analysis on negatives (is_hate), SFT model, logged batches:")
    print(f"{'loss':<8}{'median |dl/dpi|':>18}{'max |dl/dpi|':>16}{'mean batch |grad|':>20}{'max batch |grad|':>19}")
    grad = {}
    for name in ("pg", "ecpo", "gbpo"):
        scales = [s for r in runs for s in r["grad"][name]["neg_scale"]]
        norms = [n for r in runs for n in r["grad"][name]["grad_norms"]]
        med = sorted(scales)[len(scales) // 2] if scales else float("nan")
        grad[name] = {"median_neg_scale": med, "max_neg_scale": max(scales, default=float("nan")),
                      "mean_grad_norm": _mean(norms), "max_grad_norm": max(norms, default=float("nan"))}
        g = grad[name]
        print(f"{name:<8}{g['median_neg_scale']:>18.3f}{g['max_neg_scale']:>16.3f}{g['mean_grad_norm']:>20.4f}"
              f"{g['max_grad_norm']:>19.4f}")
    pis = [p for r in runs for p in r["grad"]["gbpo"]["neg_pi"]]
    if pis:
        print(f"(negatives' item probability pi: median {sorted(pis)[len(pis) // 2]:.2e}, min {min(pis):.2e}; "
              "BCE bound on |dl/dpi| = 1/(1-pi) ~ 1)")
    headline = {
        "benchmark": "onerec_alignment", "quick": sizes == QUICK, "seeds": args.seeds,
        "play_time_gbpo_vs_base": summary["gbpo"]["expected_play_time"][0] / summary["base"]["expected_play_time"][0],
        "play_time_gbpo_vs_sft_control": summary["gbpo"]["expected_play_time"][0] / summary["sft"]["expected_play_time"][0],
        "dislike_gbpo_vs_base": summary["gbpo"]["dislike_rate"][0] / summary["base"]["dislike_rate"][0],
        "neg_grad_scale_pg_over_gbpo_median": grad["pg"]["median_neg_scale"] / grad["gbpo"]["median_neg_scale"],
        "batch_grad_norm_pg_over_gbpo_max": grad["pg"]["max_grad_norm"] / grad["gbpo"]["max_grad_norm"],
        "paired_play_time_change_pct": {a: paired[a]["expected_play_time"][0] for a in ARMS},
        "paired_dislike_change_pct": {a: paired[a]["dislike_rate"][0] for a in ARMS},
        "seconds": round(time.time() - t0, 1),
    }
    if args.results:
        with open(args.results, "w") as f:
            json.dump({"summary": summary, "grad": grad, "runs": runs, "sizes": sizes,
                       "seeds": args.seeds}, f, default=float)
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
