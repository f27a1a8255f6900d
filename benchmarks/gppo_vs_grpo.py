"""GPPO vs GRPO clip-higher vs CISPO on a tiny reasoning task trained from scratch on CPU.

Task: two-number addition with a short column-wise chain of thought
(``Q: 57+68\\nA:`` -> ``<think>7+8=15 5+6+1=12</think>125``), scored by the Klear math reward
(math-verify after ``</think>``). A tiny Qwen3 with a character tokenizer is first SFT-ed (TRL
``SFTTrainer``) to partial accuracy, then trained with RL from that same checkpoint with
identical seeds, data, group size, off-policy schedule and step budget for:

- ``grpo_clip_higher``: TRL ``GRPOTrainer``, ``loss_type="dapo"``, eps 0.2 / 0.28 (DAPO);
- ``cispo``: TRL ``GRPOTrainer``, ``loss_type="cispo"``, IS-weight cap ``1 + 0.28``;
- ``gppo``: :class:`kwaiformers.trainers.GPPOTrainer`, eps 0.2 / 0.28, no dual clip;
- ``gppo_dual_clip``: the same with dual clip c = 10 (Klear's setting).

Off-policy as in Klear: ``steps_per_generation`` optimizer steps per rollout batch (otherwise
every ratio is 1 and all four are the same algorithm). The positive-sample NLL and dynamic
sampling are off for every arm, so only the policy loss differs.

Run: ``python benchmarks/gppo_vs_grpo.py [--quick]``. Prints a table and one JSON line; writes
an accuracy-curve plot (``--plot``, needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

METHODS = ("grpo_clip_higher", "cispo", "gppo", "gppo_dual_clip")


def evaluate(model, tokenizer, dataset, reward, batch_size: int = 64, max_new_tokens: int = 40):
    """Greedy accuracy (reward == +1) on ``dataset``."""
    model.eval()
    correct = 0
    prompts, answers = dataset["prompt"], dataset["answer"]
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, padding_side="left")
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            rewards = reward(prompts=batch, completions=texts, answer=answers[start:start + batch_size])
            correct += sum(r == 1.0 for r in rewards)
    model.train()
    return correct / len(prompts)


def sft(model, tokenizer, train, steps: int, lr: float, seed: int, out: str):
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=32,
                     learning_rate=lr, lr_scheduler_type="constant_with_warmup", max_length=64, use_cpu=True,
                     bf16=False, report_to="none", save_strategy="no", logging_steps=50, seed=seed,
                     disable_tqdm=True, gradient_checkpointing=False, warmup_steps=20,
                     dataset_num_proc=None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train.remove_columns("answer"),
                         processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer.model


def rl_run(method: str, base_model, tokenizer, train, evalset, reward, *, seed: int, steps: int,
           eval_every: int, lr: float, num_generations: int, prompts_per_step: int,
           steps_per_generation: int, out: str):
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from kwaiformers.trainers.gppo_config import GPPOConfig
    from kwaiformers.trainers.gppo_trainer import GPPOTrainer

    common = dict(
        output_dir=out, per_device_train_batch_size=prompts_per_step * num_generations,
        num_generations=num_generations, gradient_accumulation_steps=1,
        steps_per_generation=steps_per_generation, max_completion_length=40, temperature=1.0,
        learning_rate=lr, lr_scheduler_type="constant", max_steps=steps, beta=0.0,
        use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=1,
        seed=seed, disable_tqdm=True, epsilon=0.2, gradient_checkpointing=False,
    )
    if method == "grpo_clip_higher":
        cls, args = GRPOTrainer, GRPOConfig(**common, loss_type="dapo", epsilon_high=0.28)
    elif method == "cispo":  # TRL's epsilon_high is the absolute cap of the IS weight
        cls, args = GRPOTrainer, GRPOConfig(**common, loss_type="cispo", epsilon_high=1.28)
    elif method in ("gppo", "gppo_dual_clip"):
        dual = 10.0 if method == "gppo_dual_clip" else None
        cls, args = GPPOTrainer, GPPOConfig(**common, loss_type="dapo", epsilon_high=0.28,
                                            dual_clip_c=dual)
    else:
        raise ValueError(f"unknown method {method!r}")
    curve: list[tuple[int, float]] = []

    class Evaluate(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % eval_every == 0:
                curve.append((state.global_step, evaluate(model, tokenizer, evalset, reward)))

    model = base_model
    trainer = cls(model=model, reward_funcs=reward, args=args, train_dataset=train,
                  processing_class=tokenizer, callbacks=[Evaluate()])
    trainer.remove_callback(PrinterCallback)
    curve.append((0, evaluate(model, tokenizer, evalset, reward)))
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]

    def mean_of(key):
        values = [e[key] for e in logs if key in e and not math.isnan(e[key])]
        return statistics.fmean(values) if values else float("nan")

    clip_key = "cispo_clip_ratio" if method == "cispo" else "clip_ratio/region_mean"
    return {
        "curve": curve,
        "final": curve[-1][1],
        "clip_frac": mean_of(clip_key),
        "entropy": mean_of("entropy"),
        "final_entropy": logs[-1].get("entropy", float("nan")) if logs else float("nan"),
        "reward": mean_of("reward"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, tiny budget (< 1 minute)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--sft-lr", type=float, default=1e-3)
    parser.add_argument("--rl-steps", type=int, default=60)
    parser.add_argument("--rl-lr", type=float, default=5e-5)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--steps-per-generation", type=int, default=4)
    parser.add_argument("--eval-size", type=int, default=200)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--max-value", type=int, default=99, help="operands in [10, max-value]")
    parser.add_argument("--plot", default="docs/gppo_vs_grpo.png")
    parser.add_argument("--results", default=None, help="also write the raw results as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sft-cache", default=None,
                        help="directory to save / reuse the SFT checkpoint (same settings only)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.sft_steps, args.rl_steps, args.eval_every = [0], 20, 4, 2
        args.eval_size, args.methods = 32, ["grpo_clip_higher", "gppo"]
        args.plot = None
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()

    from kwaiformers.rewards.math_reward import KlearMathReward
    from kwaiformers.trainers.recipes_reasoning import (
        make_arithmetic_dataset,
        make_char_tokenizer,
        make_tiny_causal_lm,
    )

    start = time.perf_counter()
    tokenizer = make_char_tokenizer()
    reward = KlearMathReward()
    sft_data = make_arithmetic_dataset(4000, seed=100, min_value=10, max_value=args.max_value)
    rl_data = make_arithmetic_dataset(2000, seed=200, min_value=10, max_value=args.max_value)
    evalset = make_arithmetic_dataset(args.eval_size, seed=300, min_value=10,
                                      max_value=args.max_value)
    base = make_tiny_causal_lm(tokenizer, hidden_size=args.hidden_size, num_hidden_layers=2,
                               intermediate_size=2 * args.hidden_size, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        # every RL arm starts from a fresh load of the SFT checkpoint (never a deepcopy of a model
        # a Trainer has prepared: accelerate may have wrapped its forward, which copies share)
        cache = Path(args.sft_cache) if args.sft_cache else Path(tmp) / "sft-checkpoint"
        if (cache / "model.safetensors").is_file():
            print(f"SFT checkpoint loaded from {cache}")
        else:
            trained = sft(base, tokenizer, sft_data, args.sft_steps, args.sft_lr, 0, tmp + "/sft")
            trained.save_pretrained(cache)
            del trained
        from transformers import Qwen3ForCausalLM

        base = Qwen3ForCausalLM.from_pretrained(cache)
        sft_acc = evaluate(base, tokenizer, evalset, reward)
        print(f"SFT ({args.sft_steps} steps): greedy accuracy {sft_acc:.3f} on {len(evalset)} problems"
              f" [{time.perf_counter() - start:.0f}s]", flush=True)
        results: dict[str, list[dict]] = {m: [] for m in args.methods}
        for seed in args.seeds:
            for method in args.methods:
                t0 = time.perf_counter()
                res = rl_run(method, Qwen3ForCausalLM.from_pretrained(cache), tokenizer, rl_data,
                             evalset, reward, seed=seed,
                             steps=args.rl_steps, eval_every=args.eval_every, lr=args.rl_lr,
                             num_generations=args.num_generations,
                             prompts_per_step=args.prompts_per_step,
                             steps_per_generation=args.steps_per_generation,
                             out=f"{tmp}/{method}-{seed}")
                res["seconds"] = time.perf_counter() - t0
                results[method].append(res)
                print(f"  seed {seed} {method:<17} curve {[round(a, 3) for _, a in res['curve']]}"
                      f"  clip "
                      f"{res['clip_frac']:.4f}  entropy {res['entropy']:.3f}  "
                      f"[{res['seconds']:.0f}s]", flush=True)

    def spread(values):
        return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)

    print()
    print(f"Tiny addition task, SFT accuracy {sft_acc:.3f}; RL {args.rl_steps} steps x "
          f"{args.prompts_per_step} prompts x {args.num_generations} samples, "
          f"{args.steps_per_generation} optimizer steps per rollout, lr {args.rl_lr}, "
          f"seeds {args.seeds}")
    header = (f"{'method':<18}{'final acc (mean ± std)':>24}{'best seed':>11}{'clip frac':>11}"
              f"{'entropy':>9}{'final ent':>10}{'mean reward':>13}")
    print(header)
    print("-" * len(header))
    headline = {"sft_accuracy": round(sft_acc, 4)}
    for method, runs in results.items():
        mean, std = spread([r["final"] for r in runs])
        print(f"{method:<18}{mean:>15.3f} ± {std:.3f}{max(r['final'] for r in runs):>11.3f}"
              f"{statistics.fmean(r['clip_frac'] for r in runs):>11.4f}"
              f"{statistics.fmean(r['entropy'] for r in runs):>9.3f}"
              f"{statistics.fmean(r['final_entropy'] for r in runs):>10.3f}"
              f"{statistics.fmean(r['reward'] for r in runs):>13.3f}")
        headline[method] = {"final_acc_mean": round(mean, 4), "final_acc_std": round(std, 4)}
    if args.results:
        Path(args.results).write_text(json.dumps({"args": vars(args), "sft_accuracy": sft_acc,
                                                  "results": results}, indent=1))
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib not installed: no plot (pip install 'kwaiformers[plot]')",
                  file=sys.stderr)
        else:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for method, runs in results.items():
                steps = [s for s, _ in runs[0]["curve"]]
                per_step = list(zip(*[[a for _, a in r["curve"]] for r in runs]))
                means = [statistics.fmean(v) for v in per_step]
                stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_step]
                ax.plot(steps, means, marker="o", label=method)
                ax.fill_between(steps, [m - s for m, s in zip(means, stds)],
                                [m + s for m, s in zip(means, stds)], alpha=0.15)
            ax.set_xlabel("RL optimizer step")
            ax.set_ylabel("greedy accuracy (held-out)")
            ax.set_title(f"Tiny addition task, {len(args.seeds)} seeds (mean ± std)")
            ax.grid(alpha=0.3)
            ax.legend()
            Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(args.plot, dpi=120, bbox_inches="tight")
            print(f"plot written to {args.plot}")
    headline["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
