"""``kwaiformers quickstart``: OneRec-V2 preference alignment end to end, offline, on CPU.

simulator logs (KuaiRand schema) -> semantic IDs (every item reachable) -> pretrain a tiny
OneRec-V2 until it is personalised (checked by the personalisation diagnostic; the comparison is
refused on a context-blind base) -> from the same base, per trainer seed: the **NTP control**
(plain next-token training on the logged exposures) and **GBPO + NTP** (DARS advantages), the same
steps, data and order -> ground-truth metrics side by side with paired seed intervals -> save the
GBPO model -> reload with ``AutoModel.from_pretrained`` -> results table + PNG plot.

No arguments, no downloads; sizes are options (``--smoke`` for a < 2 minute pipeline check, which
is too small to personalise: it needs ``--allow-context-blind``). With ``--kuairand-dir`` the same
pipeline runs on a real KuaiRand folder; there is no ground truth then, so only Recall/NDCG are
meaningful.

Why the logging-policy settings: the simulator's default logging policy is mostly popularity
(mutual information between user and logged item ~0.23 nats of ~5.5), so a next-impression model
of those logs has almost nothing personal to learn; the quickstart's logs are sharper
(``policy_temperature=4``, ``popularity_mix=0.1``: ~0.9 nats), the setting where "which items to
show this user" is learnable and alignment can be measured.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

SIZES: dict[str, dict[str, Any]] = {
    "default": dict(num_users=600, num_items=400, days=6, pretrain_steps=600, pretrain_lr=3e-3,
                    batch_size=128, align_steps=60, align_batch_size=128, align_lr=5e-4,
                    hidden_size=64, eval_users=600, diag_rows=2400, policy_temperature=4.0,
                    popularity_mix=0.1, seeds=3),
    "smoke": dict(num_users=60, num_items=80, days=3, pretrain_steps=12, pretrain_lr=3e-3,
                  batch_size=32, align_steps=3, align_batch_size=32, align_lr=5e-4, hidden_size=32,
                  eval_users=24, diag_rows=96, policy_temperature=4.0, popularity_mix=0.1, seeds=2),
}
_INT_OPTIONS = ("num_users", "num_items", "days", "pretrain_steps", "align_steps", "hidden_size", "seeds")
_FLOAT_OPTIONS = ("pretrain_lr", "policy_temperature", "popularity_mix")


def add_arguments(parser) -> None:
    parser.add_argument("--output-dir", default="onerec-quickstart", help="where to write results")
    parser.add_argument("--kuairand-dir", default=None, help="a real KuaiRand folder instead of the simulator")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, under 2 minutes (not personalised)")
    parser.add_argument("--num-users", type=int, default=None)
    parser.add_argument("--num-items", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--pretrain-steps", type=int, default=None)
    parser.add_argument("--pretrain-lr", type=float, default=None)
    parser.add_argument("--align-steps", type=int, default=None)
    parser.add_argument("--hidden-size", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None, help="trainer seeds per arm (default 3)")
    parser.add_argument("--policy-temperature", type=float, default=None,
                        help="simulator logging policy's affinity temperature (default 4)")
    parser.add_argument("--popularity-mix", type=float, default=None,
                        help="simulator logging policy's popularity share (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="data and pretraining seed")
    parser.add_argument("--allow-context-blind", action="store_true",
                        help="report the arms even when the base is not personalised (marked as such)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _sizes(args) -> dict[str, Any]:
    sizes = dict(SIZES["smoke" if args.smoke else "default"])
    for key in _INT_OPTIONS + _FLOAT_OPTIONS:
        val = getattr(args, key, None)
        if val is None:
            continue
        if key == "popularity_mix":
            if not 0 <= val <= 1:
                raise ValueError(f"--popularity-mix must be in [0, 1], got {val}")
        elif val <= 0:
            raise ValueError(f"--{key.replace('_', '-')} must be > 0, got {val}")
        sizes[key] = val
    return sizes


def run_quickstart(args) -> dict[str, Any]:
    """The pipeline; returns the results dict that :func:`run` prints (``refused`` set when the
    base is context-blind and ``--allow-context-blind`` was not given)."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import torch
    from tqdm.auto import tqdm

    import kwaiformers
    from kwaiformers.evaluation.recommendation import personalization_diagnostic
    from kwaiformers.trainers.onerec_rl_recipe import (
        build_tiny_model,
        context_blind_message,
        prepare_data,
        pretrain,
        run_alignment_arms,
    )

    sizes = _sizes(args)
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    progress = not args.no_progress
    torch.manual_seed(args.seed)
    t0 = time.time()
    bar = tqdm(total=6, desc="quickstart", disable=not progress)

    bar.set_postfix_str("simulator logs -> semantic IDs -> samples")
    sim_kwargs = {"policy_temperature": sizes["policy_temperature"], "popularity_mix": sizes["popularity_mix"]}
    data = prepare_data(kuairand_dir=args.kuairand_dir, num_users=sizes["num_users"],
                        num_items=sizes["num_items"], days=sizes["days"], seed=args.seed,
                        simulator_kwargs=None if args.kuairand_dir else sim_kwargs, disambiguate=True)
    bar.update(1)

    bar.set_postfix_str("pretraining a tiny OneRec-V2")
    model = build_tiny_model(data.spec, version="v2", hidden_size=sizes["hidden_size"],
                             num_heads=4, seed=args.seed)
    pre_log = pretrain(model, data, os.path.join(out, "pretrain"), max_steps=sizes["pretrain_steps"],
                       batch_size=sizes["batch_size"], learning_rate=sizes["pretrain_lr"],
                       seed=args.seed, progress=progress)
    model.save_pretrained(os.path.join(out, "sft"))
    bar.update(1)

    bar.set_postfix_str("personalisation diagnostic")
    val = data.splits["validation"]
    rows = [val[i] for i in range(min(len(val), sizes["diag_rows"]))]
    batches = [data.collator(rows[i:i + 256]) for i in range(0, len(rows), 256)]
    train_sids = torch.as_tensor(data.splits["train"]["target_sids"])
    diag = personalization_diagnostic(model, batches, data.index, train_sids, k=10)
    bar.update(1)
    results: dict[str, Any] = {
        "sizes": sizes, "diagnostic": diag, "pretrain_log": pre_log,
        "data": {k: v for k, v in data.info.items() if isinstance(v, (int, float))},
    }
    if not diag["personalised"]:
        results["refused"] = context_blind_message(diag)
        if not args.allow_context_blind:
            bar.close()
            results["seconds"] = round(time.time() - t0, 1)
            _write(results, out)
            return results

    bar.set_postfix_str("NTP control vs GBPO + NTP, per trainer seed")
    seeds = list(range(sizes["seeds"]))
    arms = run_alignment_arms(model, data, out, arms=("ntp", "gbpo"), seeds=seeds,
                              max_steps=sizes["align_steps"], batch_size=sizes["align_batch_size"],
                              learning_rate=sizes["align_lr"], eval_users=sizes["eval_users"],
                              progress=progress, dars_inclusive_threshold=True, return_models=True)
    aligned = arms.pop("models")["gbpo"]
    results["arms"] = {k: v for k, v in arms.items() if k != "logs"}
    results["align_log"] = arms["logs"][f"gbpo-{seeds[0]}"]
    bar.update(1)

    bar.set_postfix_str("save + reload with AutoModel")
    final = os.path.join(out, "aligned")
    aligned.save_pretrained(final)
    data.index.save_pretrained(os.path.join(final, "item_index"))
    from transformers import AutoModel

    kwaiformers.register_auto_classes()
    reloaded = AutoModel.from_pretrained(final)
    probe = data.collator([data.splits["test"][0]])
    same = torch.equal(
        reloaded.recommend(probe, num_items=5, beam_size=16, item_index=data.index).item_ids,
        aligned.eval().recommend(probe, num_items=5, beam_size=16, item_index=data.index).item_ids,
    )
    if not same:
        raise RuntimeError("the reloaded checkpoint recommends differently from the trained model")
    bar.update(1)
    bar.close()
    results.update(reload_identical=same, checkpoint=final, seconds=round(time.time() - t0, 1))
    _write(results, out)
    if not args.no_plot:
        results["plot"] = _plot(results, os.path.join(out, "quickstart.png"))
    return results


def _write(results: dict[str, Any], out: str) -> None:
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)


def _plot(results: dict[str, Any], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the optional `plot` extra
        print("matplotlib is not installed (pip install kwaiformers[plot]); skipping the plot")
        return None
    from kwaiformers.trainers.onerec_rl_recipe import ARM_METRICS, paired_differences

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    pre = results["pretrain_log"]
    axes[0].plot([h["step"] for h in pre], [h["loss"] for h in pre], marker=".", label="model")
    pop = results["diagnostic"]["popularity_loss"]
    axes[0].axhline(pop, color="#999999", ls="--", label="context-free popularity (val)")
    axes[0].set(title="pretraining (next-impression loss)", xlabel="step", ylabel="loss")
    axes[0].legend(fontsize=8)
    al = results["align_log"]
    steps = [h["step"] for h in al]
    for key, label in (("loss", "total loss"), ("sft_loss", "NTP loss"), ("rl_loss", "GBPO loss"),
                       ("dars/positive_frac", "DARS positive frac")):
        vals = [h.get(key) for h in al]
        if any(v is not None for v in vals):
            axes[1].plot(steps, [float("nan") if v is None else v for v in vals], marker=".", label=label)
    axes[1].set(title="GBPO + NTP (seed 0)", xlabel="step")
    axes[1].legend(fontsize=8)
    diff = paired_differences(results["arms"], "gbpo", "ntp")
    names = [lbl for _, lbl, _ in ARM_METRICS]
    rel = [100 * diff[k]["relative"] for k, _, _ in ARM_METRICS]
    err = [100 * diff[k]["half_width"] / abs(diff[k]["control_mean"]) if diff[k]["control_mean"] else 0.0
           for k, _, _ in ARM_METRICS]
    axes[2].bar(range(len(names)), rel, yerr=err, color="#d9480f", capsize=3)
    axes[2].axhline(0, color="black", lw=0.8)
    axes[2].set_xticks(range(len(names)), names, rotation=20, fontsize=7)
    axes[2].set(title="GBPO + NTP vs NTP control (paired, 95% CI)", ylabel="change (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args) -> int:
    from kwaiformers.evaluation.recommendation import format_personalization
    from kwaiformers.trainers.onerec_rl_recipe import format_arms_table

    results = run_quickstart(args)
    print()
    print(format_personalization(results["diagnostic"]))
    if "arms" not in results:
        print(f"\nrefused: {results['refused']}")
        return 1
    if results.get("refused"):
        print(f"\nWARNING (--allow-context-blind): {results['refused']}")
    d = results["data"]
    print(f"\n(item coverage {100 * d.get('item_coverage', float('nan')):.0f}% of "
          f"{int(d.get('num_items', 0))} items; {results['sizes']['align_steps']} alignment steps "
          f"per arm and seed)")
    print(format_arms_table(results["arms"]))
    print(f"(users evaluated: {int(results['arms']['base']['num_users'])}; {results['seconds']} s)")
    print(f"checkpoint: {results['checkpoint']} (GBPO + NTP, seed 0; reloaded with "
          f"AutoModel.from_pretrained: {'identical' if results['reload_identical'] else 'DIFFERENT'})")
    if results.get("plot"):
        print(f"plot: {results['plot']}")
    return 0
