"""``kwaiformers quickstart``: OneRec-V2 preference alignment end to end, offline, on CPU.

simulator logs (KuaiRand schema) -> semantic IDs -> pretrain a tiny OneRec-V2 -> GBPO with
duration-aware rewards -> evaluate SFT vs aligned on held-out impressions with the simulator's
ground truth -> save -> reload with ``AutoModel.from_pretrained`` -> results table + PNG plot.

No arguments, no downloads; sizes are options (``--smoke`` for a < 2 minute run). With
``--kuairand-dir`` the same pipeline runs on a real KuaiRand folder; there is no ground truth then,
so only Recall@10 and legality are reported.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

SIZES: dict[str, dict[str, Any]] = {
    "default": dict(num_users=600, num_items=400, days=6, pretrain_steps=300, align_steps=60,
                    batch_size=64, align_batch_size=128, hidden_size=64, eval_users=600),
    "smoke": dict(num_users=60, num_items=80, days=3, pretrain_steps=12, align_steps=3,
                  batch_size=32, align_batch_size=32, hidden_size=32, eval_users=40),
}

METRICS = (
    ("expected_play_time", "expected play time (s) / rec", True),
    ("completion_rate", "completion rate", True),
    ("dislike_rate", "dislike rate", False),
    ("recall@10", "Recall@10", True),
    ("legality", "legality (free beam search)", True),
)


def add_arguments(parser) -> None:
    parser.add_argument("--output-dir", default="onerec-quickstart", help="where to write results")
    parser.add_argument("--kuairand-dir", default=None, help="a real KuaiRand folder instead of the simulator")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, under 2 minutes")
    parser.add_argument("--num-users", type=int, default=None)
    parser.add_argument("--num-items", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--pretrain-steps", type=int, default=None)
    parser.add_argument("--align-steps", type=int, default=None)
    parser.add_argument("--hidden-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _sizes(args) -> dict[str, Any]:
    sizes = dict(SIZES["smoke" if args.smoke else "default"])
    for key in ("num_users", "num_items", "days", "pretrain_steps", "align_steps", "hidden_size"):
        val = getattr(args, key, None)
        if val is not None:
            if val <= 0:
                raise ValueError(f"--{key.replace('_', '-')} must be > 0, got {val}")
            sizes[key] = val
    return sizes


def run_quickstart(args) -> dict[str, Any]:
    """The pipeline; returns the results dict that :func:`run` prints."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import torch
    from tqdm.auto import tqdm

    import kwaiformers
    from kwaiformers.trainers.onerec_rl_recipe import (
        align,
        build_tiny_model,
        evaluate_recommender,
        prepare_data,
        pretrain,
    )

    sizes = _sizes(args)
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    progress = not args.no_progress
    torch.manual_seed(args.seed)
    t0 = time.time()
    bar = tqdm(total=7, desc="quickstart", disable=not progress)

    bar.set_postfix_str("simulator logs -> semantic IDs -> samples")
    data = prepare_data(kuairand_dir=args.kuairand_dir, num_users=sizes["num_users"],
                        num_items=sizes["num_items"], days=sizes["days"], seed=args.seed)
    bar.update(2)

    bar.set_postfix_str("pretraining a tiny OneRec-V2")
    model = build_tiny_model(data.spec, version="v2", hidden_size=sizes["hidden_size"],
                             num_heads=4, seed=args.seed)
    pre_log = pretrain(model, data, os.path.join(out, "pretrain"), max_steps=sizes["pretrain_steps"],
                       batch_size=sizes["batch_size"], seed=args.seed, progress=progress)
    sft_dir = os.path.join(out, "sft")
    model.save_pretrained(sft_dir)
    bar.update(1)

    bar.set_postfix_str("evaluating the SFT model")
    before = evaluate_recommender(model, data, max_users=sizes["eval_users"])
    bar.update(1)

    bar.set_postfix_str("GBPO with duration-aware rewards")
    trainer = align("gbpo", model, data, os.path.join(out, "gbpo"), progress=progress,
                    max_steps=sizes["align_steps"], per_device_train_batch_size=sizes["align_batch_size"],
                    learning_rate=5e-4, logging_steps=1, seed=args.seed, sft_weight=1.0,
                    dars_inclusive_threshold=True)
    bar.update(1)

    bar.set_postfix_str("evaluating the aligned model")
    after = evaluate_recommender(model, data, max_users=sizes["eval_users"])
    bar.update(1)

    bar.set_postfix_str("save + reload with AutoModel")
    final = os.path.join(out, "aligned")
    model.save_pretrained(final)
    data.index.save_pretrained(os.path.join(final, "item_index"))
    from transformers import AutoModel

    kwaiformers.register_auto_classes()
    reloaded = AutoModel.from_pretrained(final)
    probe = {k: v for k, v in data.collator([data.splits["test"][0]]).items()}
    same = torch.equal(
        reloaded.recommend(probe, num_items=5, beam_size=16, item_index=data.index).item_ids,
        model.eval().recommend(probe, num_items=5, beam_size=16, item_index=data.index).item_ids,
    )
    if not same:
        raise RuntimeError("the reloaded checkpoint recommends differently from the trained model")
    bar.update(1)
    bar.close()

    align_log = [h for h in trainer.state.log_history if "loss" in h]
    results = {
        "sft": before,
        "aligned": after,
        "reload_identical": same,
        "checkpoint": final,
        "sizes": sizes,
        "seconds": round(time.time() - t0, 1),
        "data": {k: v for k, v in data.info.items() if isinstance(v, (int, float))},
        "pretrain_log": pre_log,
        "align_log": align_log,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    if not args.no_plot:
        results["plot"] = _plot(results, os.path.join(out, "quickstart.png"))
    return results


def _plot(results: dict[str, Any], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the optional `plot` extra
        print("matplotlib is not installed (pip install kwaiformers[plot]); skipping the plot")
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    pre = results["pretrain_log"]
    axes[0].plot([h["step"] for h in pre], [h["loss"] for h in pre], marker=".")
    axes[0].set(title="pretraining (next-impression loss)", xlabel="step", ylabel="loss")
    al = results["align_log"]
    steps = [h["step"] for h in al]
    for key, label in (("loss", "total loss"), ("sft_loss", "SFT loss"), ("rl_loss", "GBPO loss"),
                       ("dars/positive_frac", "DARS positive frac")):
        vals = [h.get(key) for h in al]
        if any(v is not None for v in vals):
            axes[1].plot(steps, [float("nan") if v is None else v for v in vals], marker=".", label=label)
    axes[1].set(title="GBPO alignment", xlabel="step")
    axes[1].legend(fontsize=8)
    names = [m for m, _, _ in METRICS]
    sft = [results["sft"][m] for m in names]
    ali = [results["aligned"][m] for m in names]
    rel = [a / s if s else float("nan") for s, a in zip(sft, ali)]
    axes[2].bar(range(len(names)), [1.0] * len(names), width=0.4, label="SFT", color="#999999")
    axes[2].bar([i + 0.4 for i in range(len(names))], rel, width=0.4, label="aligned (GBPO)",
                color="#d9480f")
    axes[2].set_xticks([i + 0.2 for i in range(len(names))], [lbl for _, lbl, _ in METRICS],
                       rotation=20, fontsize=7)
    axes[2].set(title="aligned / SFT (ground truth)", ylabel="ratio")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(results: dict[str, Any]) -> str:
    lines = [f"{'metric':<34}{'SFT':>10}{'aligned':>10}{'change':>10}", "-" * 64]
    for key, label, higher in METRICS:
        s, a = results["sft"][key], results["aligned"][key]
        change = (a - s) / abs(s) * 100 if s else float("nan")
        better = "" if change != change or abs(change) < 1e-9 else ("+" if (change > 0) == higher else "-")
        lines.append(f"{label:<34}{s:>10.4f}{a:>10.4f}{change:>+9.1f}%{better}")
    lines.append(f"(users evaluated: {int(results['sft']['num_users'])}; '+' = better; "
                 f"{results['seconds']} s)")
    return "\n".join(lines)


def run(args) -> int:
    results = run_quickstart(args)
    print()
    print(format_table(results))
    print(f"checkpoint: {results['checkpoint']} (reloaded with AutoModel.from_pretrained: "
          f"{'identical' if results['reload_identical'] else 'DIFFERENT'})")
    if results.get("plot"):
        print(f"plot: {results['plot']}")
    return 0
