"""GPPO vs GRPO clip-higher vs CISPO: a paired, powered comparison on a tiny CPU reasoning task.

**What this drives.** The RL loop here calls the project's pure loss functions directly,
the same ones :class:`~kwaiformers.trainers.GPPOTrainer` calls
(:mod:`kwaiformers.trainers.losses`). It does not go through the TRL trainer, which is too slow
on 2 shared CPUs for 10 seeds x 4 arms x an lr grid. The four arms are:

- ``grpo_clip_higher``: ``gppo_per_token_loss(beta_low=0, beta_high=0)``. This is exactly
  DAPO/TRL's clipped surrogate ``-min(rA, clip(r, 1-0.2, 1+0.28)A)``, in value and gradient
  (``tests/test_cispo_loss.py``).
- ``cispo``: ``cispo_per_token_loss(epsilon_high=0.28)``, which equals TRL's ``loss_type="cispo"``
  with ``epsilon_high=1.28``.
- ``gppo``: ``gppo_per_token_loss`` with betas 1, Klear's loss.
- ``gppo_dual_clip``: the same with dual clip ``c`` (``--dual-clip-c``, default 3).
  Klear uses c = 10, but a ratio of 10 is never reached at this scale (the earlier recorded
  run had ``gppo`` and ``gppo_dual_clip`` bit-identical), so the default is the dual-clip
  paper's and verl's c = 3. Pass ``--dual-clip-c 10`` for Klear's value.

``--trainer-sanity`` adds one short run through the real ``GPPOTrainer`` from the same SFT
checkpoint.

**Task.** ``--task add3`` (default) is 3-digit addition with a compact column-wise chain of
thought: ``357+468=`` -> ``<think>15 12 8</think>825``. ``--task add2`` is the 2-digit version.
The policy is a from-scratch tiny Qwen3 (hidden 64, 2 layers, character tokenizer). It is
SFT-ed on the task until its *sampled* (T = 1) accuracy reaches ``--sft-target`` (0.45), so
8-sample groups carry signal. The reward is 1 when the text after ``</think>`` equals the sum,
else 0. Group-normalised advantages make the scale irrelevant.

**RL, as in Klear.** Each rollout samples ``P`` prompts x ``G`` = 8 completions at
temperature ``T``. Zero-variance groups are masked out. The remaining groups are split into
``--steps-per-rollout`` (8) mini-batches, one optimizer step each, so later steps are
off-policy. The loss is a token mean per mini-batch, plus ``beta`` x TRL's k3 KL to the SFT
policy. The optimizer is AdamW (wd 0.1) with grad-clip 1.0.

**Pairing.** For a given seed, every arm and lr uses:

- the same SFT checkpoint;
- the same prompt order;
- the same sampling random stream (a generator seeded by (seed, rollout)).

Paired differences against GRPO clip-higher are taken per seed, with percentile bootstrap 95 %
intervals over seeds. The curve metric is the held-out mean of pi(reference solution | prompt)
at T: the exact probability that one sample is the canonical chain + answer, a noise-free lower
bound on sampled pass@1 that costs one forward pass. Greedy accuracy saturates near 0.95 within a
few rollouts, so it cannot separate the arms. The differences are in the best value and in the
area under the curve (trapezoid mean over the evaluation points). Greedy and sampled accuracy
are also reported at the end of each run. Each arm is compared at its own best lr, picked by mean
AUC over the same seeds, and also at every matched lr.

**Per-step logs.** Logged per rollout:

- clip fractions (high / low, and CISPO's cap);
- entropy and KL;
- ``|g_GPPO - g_GRPO| / |g_GRPO|``: both policy-gradient losses differentiated on the same
  mini-batch, the rollout's last and most off-policy one;
- the log-probability change over one optimizer step of the tokens that were in the clip-high
  and clip-low regions before that step.

**Micro-benchmark (noise-free).** One fixed rollout batch from the SFT policy gets
``--micro-steps`` full-batch optimizer steps with each loss, under AdamW and under plain SGD.
Per step it records:

- the clip fractions;
- the mean one-step log-prob change of the tokens in each clipped region;
- the mean log-ratio of positive- and negative-advantage tokens.

Run: ``python benchmarks/gppo_vs_grpo.py [--quick]`` (``--quick`` is a smoke run of the code path
on a 30-step SFT model, its numbers mean nothing; the recorded run is in ``docs/gppo.md``). It prints tables and ends with ONE JSON
line of headline figures, including the paired differences and their intervals.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ARMS = ("grpo_clip_higher", "cispo", "gppo", "gppo_dual_clip")
BASELINE = "grpo_clip_higher"


# ----------------------------------------------------------------------------------- task
def column_cot(a: int, b: int, digits: int) -> str:
    """``<think>15 12 8</think>825`` for 357+468: the column sums (with carry), then the answer."""
    sums, carry = [], 0
    for i in range(digits):
        total = (a // 10**i) % 10 + (b // 10**i) % 10 + carry
        sums.append(str(total))
        carry = total // 10
    return f"<think>{' '.join(sums)}</think>{a + b}"


@dataclass
class Task:
    """Fixed-width ``digits``-digit addition; prompts share one length (no padding needed)."""

    digits: int
    tokenizer: object

    def encode(self, problems: list[tuple[int, int]]) -> tuple[torch.Tensor, list[str]]:
        ids = [self.tokenizer.encode(f"{a}+{b}=", add_special_tokens=False) for a, b in problems]
        return torch.tensor(ids), [str(a + b) for a, b in problems]

    def problems(self, n: int, seed: int) -> list[tuple[int, int]]:
        rng = random.Random(seed)
        lo, hi = 10 ** (self.digits - 1), 10**self.digits - 1
        return [(rng.randint(lo, hi), rng.randint(lo, hi)) for _ in range(n)]


class Scorer:
    """Reward 1.0 when the tokens after ``</think>`` (up to EOS) spell the answer, else 0.0."""

    def __init__(self, tokenizer):
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id
        self.think_end = tokenizer.convert_tokens_to_ids("</think>")
        self.text = {i: t for t, i in tokenizer.get_vocab().items()}

    def __call__(self, completions: torch.Tensor, answers: list[str]) -> torch.Tensor:
        out = []
        for row, answer in zip(completions.tolist(), answers):
            if self.eos not in row:
                out.append(0.0)
                continue
            row = row[: row.index(self.eos)]
            if self.think_end not in row:
                out.append(0.0)
                continue
            tail = row[len(row) - row[::-1].index(self.think_end):]
            out.append(1.0 if "".join(self.text[i] for i in tail) == answer else 0.0)
        return torch.tensor(out)


# ----------------------------------------------------------------------------------- policy
def sample(model, prompt_ids: torch.Tensor, max_new: int, eos: int, pad: int, *,
           temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Completions ``(B, max_new)`` (right-padded with ``pad`` after EOS); greedy if
    ``generator`` is None. KV-cached incremental decoding."""
    with torch.inference_mode():
        out = model(prompt_ids, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        done = torch.zeros(prompt_ids.shape[0], dtype=torch.bool)
        tokens = []
        for _ in range(max_new):
            if generator is None:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits.float() / temperature, -1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            tokens.append(nxt)
            done = done | (nxt == eos)
            if bool(done.all()):
                break
            out = model(nxt[:, None], past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1]
    comp = torch.stack(tokens, 1)
    if comp.shape[1] < max_new:
        comp = torch.cat([comp, comp.new_full((comp.shape[0], max_new - comp.shape[1]), pad)], 1)
    return comp


def completion_mask(comp: torch.Tensor, eos: int) -> torch.Tensor:
    """1.0 up to and including the first EOS, 0.0 after (TRL's completion mask)."""
    is_eos = comp == eos
    after = (is_eos.cumsum(1) - is_eos.long()) > 0
    return (~after).float()


def token_logps(model, prompt_ids, comp, temperature: float, with_entropy: bool = False):
    """Log-probabilities (and entropies) of ``comp`` under ``model`` at ``temperature`` (TRL:
    logits divided by the temperature)."""
    ids = torch.cat([prompt_ids, comp], 1)
    logits = model(ids).logits[:, prompt_ids.shape[1] - 1:-1].float() / temperature
    logp_all = torch.log_softmax(logits, -1)
    logps = logp_all.gather(-1, comp.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return logps
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logps, entropy.detach()


def greedy_accuracy(model, prompts, answers, scorer, max_new, eos, pad, batch=256) -> float:
    correct = 0.0
    for s in range(0, len(answers), batch):
        comp = sample(model, prompts[s:s + batch], max_new, eos, pad)
        correct += float(scorer(comp, answers[s:s + batch]).sum())
    return correct / len(answers)


def reference_pass_prob(model, prompts, ref_comp, temperature: float, batch: int = 256) -> float:
    """Mean over problems of pi(reference solution | prompt) at ``temperature``: the exact
    probability that one sample is the canonical chain of thought + answer. It is a noise-free
    lower bound on sampled pass@1 (a correct answer reached through a different chain counts
    only in pass@1), computed with one forward pass instead of sampling."""
    total = 0.0
    with torch.inference_mode():
        for s in range(0, len(prompts), batch):
            comp, m = ref_comp[0][s:s + batch], ref_comp[1][s:s + batch]
            logps = token_logps(model, prompts[s:s + batch], comp, temperature)
            total += float(torch.exp((logps * m).sum(1)).sum())
    return total / len(prompts)


def reference_completions(task: Task, tokenizer, problems) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded canonical completions (chain of thought + answer + EOS) and their mask."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    targets = [tokenizer.encode(column_cot(a, b, task.digits), add_special_tokens=False) + [eos]
               for a, b in problems]
    width = max(len(t) for t in targets)
    comp = torch.tensor([t + [pad] * (width - len(t)) for t in targets])
    return comp, completion_mask(comp, eos)


def sampled_accuracy(model, prompts, answers, scorer, max_new, eos, pad, temperature, seed) -> float:
    gen = torch.Generator().manual_seed(seed)
    comp = sample(model, prompts, max_new, eos, pad, temperature=temperature, generator=gen)
    return float(scorer(comp, answers).mean())


def sft(model, task: Task, tokenizer, scorer, *, lr: float, batch: int, max_steps: int,
        target: float, check_every: int, max_new: int, seed: int, log) -> dict:
    """Teacher-forced SFT on the chain of thought until the sampled (T=1) accuracy on 256
    held-out problems reaches ``target`` (or ``max_steps``)."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    train = task.problems(20000, seed=100)
    check_prompts, check_answers = task.encode(task.problems(256, seed=400))
    prompts, _ = task.encode(train)
    comp, mask = reference_completions(task, tokenizer, train)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    history = []
    step = 0
    acc = sampled_accuracy(model, check_prompts, check_answers, scorer, max_new, eos, pad, 1.0, 0)
    while step < max_steps and acc < target:
        for _ in range(check_every):
            idx = torch.randint(0, len(train), (batch,), generator=gen)
            logps = token_logps(model, prompts[idx], comp[idx], 1.0)
            loss = -(logps * mask[idx]).sum() / mask[idx].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        acc = sampled_accuracy(model, check_prompts, check_answers, scorer, max_new, eos, pad, 1.0, 0)
        history.append((step, round(acc, 4)))
        log(f"  SFT step {step}: loss {loss.item():.3f}, sampled accuracy {acc:.3f}")
    return {"steps": step, "sampled_accuracy": acc, "history": history}


# ----------------------------------------------------------------------------------- losses
@dataclass
class RLConfig:
    lr: float = 1e-5
    beta: float = 0.02                 # KL coefficient (TRL k3 to the SFT policy)
    temperature: float = 1.0
    rollouts: int = 12
    prompts_per_rollout: int = 8
    num_generations: int = 8
    steps_per_rollout: int = 8         # optimizer steps per rollout batch (Klear: 8)
    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip_c: float = 3.0
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    eval_every: int = 2                # rollouts between held-out evaluations
    max_new: int = 20


def policy_loss(arm: str, logps, old, adv, cfg: RLConfig) -> torch.Tensor:
    """Per-token policy loss of ``arm`` (the project's pure loss functions)."""
    from kwaiformers.trainers.losses import cispo_per_token_loss, gppo_per_token_loss

    if arm == "grpo_clip_higher":
        return gppo_per_token_loss(logps, old, adv, cfg.eps_low, cfg.eps_high,
                                   beta_low=0.0, beta_high=0.0)
    if arm == "cispo":
        return cispo_per_token_loss(logps, old, adv, cfg.eps_high)
    if arm == "gppo":
        return gppo_per_token_loss(logps, old, adv, cfg.eps_low, cfg.eps_high)
    if arm == "gppo_dual_clip":
        return gppo_per_token_loss(logps, old, adv, cfg.eps_low, cfg.eps_high,
                                   dual_clip_c=cfg.dual_clip_c)
    raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def regions(logps, old, adv, cfg: RLConfig) -> dict[str, torch.Tensor]:
    """Boolean masks of the clip-high (A>0, r>1+eps_h) and clip-low (A<0, r<1-eps_l) tokens."""
    r = torch.exp(logps.detach() - old)
    a = adv.expand_as(r)
    return {"high": (a > 0) & (r > 1 + cfg.eps_high), "low": (a < 0) & (r < 1 - cfg.eps_low),
            "dual": (a < 0) & (r > cfg.dual_clip_c), "cispo_cap": r > 1 + cfg.eps_high}


def grad_vector(loss, params) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


# ----------------------------------------------------------------------------------- RL run
def rl_run(arm: str, seed: int, cfg: RLConfig, make_model, sft_state, ref_model, task_data,
           scorer, eos: int, pad: int) -> dict:
    """One RL run; returns the held-out pi(reference) curve, end-of-run accuracies and
    per-rollout logs."""
    train_prompts, train_answers, eval_prompts, eval_answers, eval_ref = task_data
    torch.manual_seed(seed)
    model = make_model()
    model.load_state_dict(sft_state)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = random.Random(seed)  # prompt order: identical for every arm of this seed
    G, P = cfg.num_generations, cfg.prompts_per_rollout
    curve, logs = [], []
    for k in range(cfg.rollouts + 1):
        if k % cfg.eval_every == 0 or k == cfg.rollouts:
            curve.append((k, reference_pass_prob(model, eval_prompts, eval_ref, cfg.temperature)))
        if k == cfg.rollouts:
            break
        idx = torch.tensor(order.sample(range(len(train_answers)), P)).repeat_interleave(G)
        prompts = train_prompts[idx]
        answers = [train_answers[i] for i in idx.tolist()]
        gen = torch.Generator().manual_seed(1_000_003 * seed + k)  # shared sampling stream
        comp = sample(model, prompts, cfg.max_new, eos, pad, temperature=cfg.temperature,
                      generator=gen)
        mask = completion_mask(comp, eos)
        rewards = scorer(comp, answers).view(P, G)
        std = rewards.std(1)
        keep_groups = torch.nonzero(std > 1e-6).squeeze(1)  # zero-variance groups masked
        adv = ((rewards - rewards.mean(1, keepdim=True)) / (std[:, None] + 1e-6)).view(-1, 1)
        entry = {"rollout": k, "reward": float(rewards.mean()),
                 "kept_group_frac": len(keep_groups) / P}
        if len(keep_groups) == 0:
            logs.append(entry)
            continue
        with torch.no_grad():
            old = token_logps(model, prompts, comp, cfg.temperature)
            ref = token_logps(ref_model, prompts, comp, cfg.temperature) if cfg.beta else None
        chunks = [c for c in torch.tensor_split(keep_groups, min(cfg.steps_per_rollout,
                                                                 len(keep_groups))) if len(c)]
        acc = {key: [] for key in ("clip_high", "clip_low", "dual_clip", "cispo_cap", "entropy",
                                   "kl", "max_log_ratio")}
        for j, groups in enumerate(chunks):
            rows = (groups[:, None] * G + torch.arange(G)).reshape(-1)
            lp, ent = token_logps(model, prompts[rows], comp[rows], cfg.temperature, True)
            m, a, o = mask[rows], adv[rows], old[rows]
            pg = policy_loss(arm, lp, o, a, cfg)
            per_token = pg
            if cfg.beta:
                delta = ref[rows] - lp
                kl = torch.exp(delta) - delta - 1
                per_token = pg + cfg.beta * kl
                acc["kl"].append(float(masked_mean(kl.detach(), m)))
            loss = masked_mean(per_token, m)
            reg = regions(lp, o, a, cfg)
            for key, name in (("high", "clip_high"), ("low", "clip_low"), ("dual", "dual_clip"),
                              ("cispo_cap", "cispo_cap")):
                acc[name].append(float(masked_mean(reg[key].float(), m)))
            acc["entropy"].append(float(masked_mean(ent, m)))
            acc["max_log_ratio"].append(float(((lp.detach() - o).abs() * m).max()))
            last = j == len(chunks) - 1
            if last:  # most off-policy mini-batch: gradient difference on the same batch
                g_gppo = grad_vector(masked_mean(policy_loss("gppo", lp, o, a, cfg), m), params)
                g_grpo = grad_vector(masked_mean(policy_loss(BASELINE, lp, o, a, cfg), m), params)
                entry["grad_rel_diff"] = float((g_gppo - g_grpo).norm()
                                               / g_grpo.norm().clamp(min=1e-12))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            if last:  # one-step log-prob change of the tokens in the clipped regions
                with torch.no_grad():
                    new = token_logps(model, prompts[rows], comp[rows], cfg.temperature)
                step_delta = new - lp.detach()
                for key in ("high", "low"):
                    sel = reg[key] & (m > 0)
                    entry[f"dlogp_{key}"] = float(step_delta[sel].mean()) if sel.any() else None
                entry["dlogp_other"] = float(step_delta[~(reg["high"] | reg["low"]) & (m > 0)]
                                             .mean())
        for key, values in acc.items():
            if values:
                entry[key] = (max(values) if key == "max_log_ratio" else statistics.fmean(values))
        entry["optimizer_steps"] = len(chunks)
        logs.append(entry)
    accs = [a for _, a in curve]
    final_greedy = greedy_accuracy(model, eval_prompts, eval_answers, scorer, cfg.max_new, eos, pad)
    final_sampled = sampled_accuracy(model, eval_prompts, eval_answers, scorer, cfg.max_new, eos,
                                     pad, cfg.temperature, seed=12345)
    return {"curve": curve, "best": max(accs[1:]), "final": accs[-1], "auc": auc(curve),
            "final_greedy": final_greedy, "final_sampled": final_sampled, "logs": logs}


_WORKER: dict = {}  # read-only state shared with forked worker processes


def _run_job(job: tuple[str, float, int]) -> dict:
    arm, lr, seed = job
    w = _WORKER
    torch.set_num_threads(w["threads"])
    t0 = time.perf_counter()
    res = rl_run(arm, seed, RLConfig(**{**asdict(w["cfg"]), "lr": lr}), w["make_model"],
                 w["sft_state"], w["ref_model"], w["task_data"], w["scorer"], w["eos"], w["pad"])
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def auc(curve: list[tuple[int, float]]) -> float:
    """Trapezoid mean of the curve over the evaluated rollouts (in [0, 1])."""
    xs, ys = [x for x, _ in curve], [y for _, y in curve]
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
    return area / (xs[-1] - xs[0])


# ----------------------------------------------------------------------------------- stats
def bootstrap_ci(values: list[float], reps: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of ``values``."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(reps))
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def paired(a: list[float], b: list[float]) -> dict:
    diffs = [x - y for x, y in zip(a, b)]
    lo, hi = bootstrap_ci(diffs)
    return {"mean_diff": round(statistics.fmean(diffs), 4), "ci95": [round(lo, 4), round(hi, 4)],
            "wins": sum(d > 0 for d in diffs), "losses": sum(d < 0 for d in diffs)}


# ----------------------------------------------------------------------------------- micro
def micro_benchmark(make_model, sft_state, task_data, scorer, eos, pad, cfg: RLConfig, *,
                    steps: int, lr_adam: float, lr_sgd: float, seed: int = 0) -> dict:
    """Fixed rollout batch, ``steps`` full-batch steps per loss, no KL: how far do the tokens in
    the clipped regions move per step, and which way."""
    train_prompts, train_answers = task_data[:2]
    model = make_model()
    model.load_state_dict(sft_state)
    G, P = cfg.num_generations, cfg.prompts_per_rollout
    idx = torch.tensor(random.Random(seed).sample(range(len(train_answers)), P)).repeat_interleave(G)
    prompts, answers = train_prompts[idx], [train_answers[i] for i in idx.tolist()]
    comp = sample(model, prompts, cfg.max_new, eos, pad, temperature=cfg.temperature,
                  generator=torch.Generator().manual_seed(seed))
    mask = completion_mask(comp, eos)
    rewards = scorer(comp, answers).view(P, G)
    keep = (rewards.std(1) > 1e-6).repeat_interleave(G).float()
    adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6))
    adv = adv.view(-1, 1)
    mask = mask * keep[:, None]
    with torch.no_grad():
        old = token_logps(model, prompts, comp, cfg.temperature)
    shared = opposite_shared(comp, mask, adv, G) & (mask > 0)
    out = {"batch": {"sequences": P * G, "tokens": int(mask.sum()),
                     "shared_token_frac": float(shared.sum() / mask.sum()),
                     "kept_groups": int(keep.sum()) // G, "reward": float(rewards.mean())}}
    for opt_name, lr in (("adamw", lr_adam), ("sgd", lr_sgd)):
        for arm in ARMS:
            net = make_model()
            net.load_state_dict(sft_state)
            params = list(net.parameters())
            opt = (torch.optim.AdamW(params, lr=lr, weight_decay=0.0) if opt_name == "adamw"
                   else torch.optim.SGD(params, lr=lr))
            rows = []
            lp = token_logps(net, prompts, comp, cfg.temperature)
            for t in range(steps):
                reg = regions(lp, old, adv, cfg)
                loss = masked_mean(policy_loss(arm, lp, old, adv, cfg), mask)
                opt.zero_grad()
                loss.backward()
                opt.step()
                before = lp.detach()
                lp = token_logps(net, prompts, comp, cfg.temperature)  # also the next step's input
                new = lp.detach()
                d = new - before
                row = {"step": t + 1}
                for key in ("high", "low"):
                    sel = reg[key] & (mask > 0)
                    row[f"frac_{key}"] = float(sel.sum() / mask.sum())
                    row[f"dlogp_{key}"] = float(d[sel].mean()) if sel.any() else None
                    for name, part in (("shared", sel & shared), ("own", sel & ~shared)):
                        row[f"n_{key}_{name}"] = int(part.sum())
                        row[f"dlogp_{key}_{name}"] = float(d[part].mean()) if part.any() else None
                pos, neg = (adv > 0).expand_as(d) & (mask > 0), (adv < 0).expand_as(d) & (mask > 0)
                row["log_ratio_pos"] = float((new - old)[pos].mean())
                row["log_ratio_neg"] = float((new - old)[neg].mean())
                rows.append(row)
            out[f"{opt_name}/{arm}"] = rows
    return out


def opposite_shared(comp: torch.Tensor, mask: torch.Tensor, adv: torch.Tensor, G: int) -> torch.Tensor:
    """True where a token, with its whole prefix, also occurs in a sequence of the same group with
    an advantage of the opposite sign (same context and token, so the same ratio)."""
    out = torch.zeros_like(mask, dtype=torch.bool)
    rows = comp.tolist()
    signs = torch.sign(adv.view(-1)).tolist()
    for g in range(comp.shape[0] // G):
        members = range(g * G, (g + 1) * G)
        for i in members:
            if signs[i] == 0:
                continue
            others = [rows[j] for j in members if signs[j] == -signs[i]]
            for t in range(int(mask[i].sum())):
                prefix = rows[i][: t + 1]
                out[i, t] = any(o[: t + 1] == prefix for o in others)
    return out


def summarize_micro(rows: list[dict]) -> dict:
    def mean_of(key):
        vals = [r[key] for r in rows if r[key] is not None]
        return statistics.fmean(vals) if vals else float("nan")

    return {"steps_with_high": sum(r["dlogp_high"] is not None for r in rows),
            "mean_dlogp_high": mean_of("dlogp_high"),
            "mean_dlogp_low": mean_of("dlogp_low"),
            "mean_dlogp_low_shared": mean_of("dlogp_low_shared"),
            "mean_dlogp_low_own": mean_of("dlogp_low_own"),
            "final_low_shared_frac": rows[-1]["n_low_shared"] / max(
                1, rows[-1]["n_low_shared"] + rows[-1]["n_low_own"]),
            "final_frac_high": rows[-1]["frac_high"], "final_frac_low": rows[-1]["frac_low"],
            "final_log_ratio_pos": rows[-1]["log_ratio_pos"],
            "final_log_ratio_neg": rows[-1]["log_ratio_neg"]}


# ----------------------------------------------------------------------------------- trainer sanity
def trainer_sanity(cache_dir: Path, tokenizer, task: Task, scorer, cfg: RLConfig, eval_data,
                   max_steps: int, out_dir: str) -> dict:
    """A short run of the real GPPOTrainer from the same SFT checkpoint (same task, reward,
    KL, schedule): the pure-loss benchmark and the trainer share the loss function; this checks
    the trainer trains this policy too."""
    from datasets import Dataset
    from transformers import PrinterCallback, Qwen3ForCausalLM

    from kwaiformers.trainers.gppo_config import GPPOConfig
    from kwaiformers.trainers.gppo_trainer import GPPOTrainer

    problems = task.problems(2000, seed=200)
    data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a, b in problems],
                              "answer": [str(a + b) for a, b in problems]})

    def reward(prompts, completions, answer, **kwargs):
        ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
        width = max(len(i) for i in ids) + 1
        comp = torch.tensor([i + [tokenizer.eos_token_id] + [tokenizer.pad_token_id]
                             * (width - len(i) - 1) for i in ids])
        return scorer(comp, list(answer)).tolist()

    model = Qwen3ForCausalLM.from_pretrained(cache_dir)
    eval_prompts, eval_answers = eval_data
    before = greedy_accuracy(model, eval_prompts, eval_answers, scorer, cfg.max_new,
                             tokenizer.eos_token_id, tokenizer.pad_token_id)
    mb = cfg.prompts_per_rollout * cfg.num_generations // cfg.steps_per_rollout
    args = GPPOConfig(
        output_dir=out_dir, per_device_train_batch_size=mb, num_generations=cfg.num_generations,
        steps_per_generation=cfg.steps_per_rollout, gradient_accumulation_steps=1,
        max_completion_length=cfg.max_new, temperature=cfg.temperature, learning_rate=cfg.lr,
        lr_scheduler_type="constant", max_steps=max_steps, beta=cfg.beta, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, epsilon=cfg.eps_low, epsilon_high=cfg.eps_high,
        loss_type="dapo", zero_std_groups="mask", use_cpu=True, bf16=False, report_to="none",
        save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True,
        gradient_checkpointing=False,
    )
    trainer = GPPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data,
                          processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    after = greedy_accuracy(trainer.model, eval_prompts, eval_answers, scorer, cfg.max_new,
                            tokenizer.eos_token_id, tokenizer.pad_token_id)
    logs = [e for e in trainer.state.log_history if "loss" in e]

    def mean_of(key):
        vals = [e[key] for e in logs if key in e and not math.isnan(e[key])]
        return round(statistics.fmean(vals), 5) if vals else None

    return {"steps": max_steps, "acc_before": before, "acc_after": after,
            "clip_ratio_region": mean_of("clip_ratio/region_mean"), "reward": mean_of("reward"),
            "kl": mean_of("kl"), "entropy": mean_of("entropy")}


# ----------------------------------------------------------------------------------- plots
def plot_all(path: str, results, sft_acc, best_lr, micro, cfg) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'kwaiformers[plot]')", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for arm in ARMS:
        runs = results.get((arm, best_lr.get(arm)), [])
        if not runs:
            continue
        xs = [x * cfg.steps_per_rollout for x, _ in runs[0]["curve"]]
        per_x = list(zip(*[[a for _, a in r["curve"]] for r in runs]))
        mean = [statistics.fmean(v) for v in per_x]
        sem = [statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0 for v in per_x]
        axes[0].plot(xs, mean, marker="o", ms=3, label=f"{arm} (lr {best_lr[arm]:g})")
        axes[0].fill_between(xs, [m - s for m, s in zip(mean, sem)],
                             [m + s for m, s in zip(mean, sem)], alpha=0.15)
    axes[0].axhline(sft_acc, color="k", ls=":", label="SFT start")
    axes[0].set_xlabel("optimizer step")
    axes[0].set_ylabel("held-out mean pi(reference solution), T=1")
    axes[0].set_title(f"RL curves, mean ± s.e.m. over {len(next(iter(results.values())))} paired seeds")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    if micro:
        for arm in ARMS:
            rows = micro.get(f"adamw/{arm}")
            if rows:
                axes[1].plot([r["step"] for r in rows], [r["log_ratio_pos"] for r in rows],
                             marker="o", ms=3, label=f"{arm}: A>0 tokens")
                axes[1].plot([r["step"] for r in rows], [r["log_ratio_neg"] for r in rows],
                             ls="--", marker="x", ms=3, label=f"{arm}: A<0 tokens")
        axes[1].axhline(math.log(1 + cfg.eps_high), color="grey", lw=0.8)
        axes[1].axhline(math.log(1 - cfg.eps_low), color="grey", lw=0.8)
        axes[1].set_xlabel("optimizer step on one fixed rollout batch (AdamW)")
        axes[1].set_ylabel("mean log(pi/pi_old)")
        axes[1].set_title("Micro-benchmark: grey lines = clip bounds")
        axes[1].legend(fontsize=7)
        axes[1].grid(alpha=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def plot_diagnostics(path: str, runs_by_key: dict[str, list[dict]], best_lr: dict[str, float]) -> None:
    """Per-rollout diagnostics (mean over seeds) of every arm at its best lr."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    panels = [("reward", "training reward (sampled accuracy, T)"),
              ("clip_low", "clip-low fraction (A<0, r<1-eps_l)"),
              ("clip_high", "clip-high fraction (A>0, r>1+eps_h)"),
              ("entropy", "entropy (nats/token)"),
              ("grad_rel_diff", "|g_GPPO - g_GRPO| / |g_GRPO| (last mini-batch)"),
              ("dlogp_low", "one-step dlog pi of clip-low tokens")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, (key, title) in zip(axes.flat, panels):
        for arm, lr in best_lr.items():
            runs = runs_by_key[f"{arm}@{lr:g}"]
            steps = sorted({e["rollout"] for r in runs for e in r["logs"]})
            ys = []
            for k in steps:
                vals = [e[key] for r in runs for e in r["logs"]
                        if e["rollout"] == k and e.get(key) is not None]
                ys.append(statistics.fmean(vals) if vals else float("nan"))
            ax.plot(steps, ys, marker="o", ms=2, label=f"{arm} (lr {lr:g})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("rollout (8 optimizer steps each)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def plot_micro_steps(path: str, micro: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for i, opt_name in enumerate(("adamw", "sgd")):
        for j, key in enumerate(("high", "low")):
            ax = axes[i][j]
            for arm in ARMS:
                rows = micro[f"{opt_name}/{arm}"]
                ax.plot([r["step"] for r in rows],
                        [r[f"dlogp_{key}"] if r[f"dlogp_{key}"] is not None else float("nan")
                         for r in rows], marker="o", ms=3, label=arm)
            ax.axhline(0, color="k", lw=0.8)
            region = "clip-high (A>0, r>1+eps_h)" if key == "high" else "clip-low (A<0, r<1-eps_l)"
            ax.set_title(f"{opt_name}: one-step dlog pi of {region} tokens", fontsize=9)
            ax.grid(alpha=0.3)
            if i == 1:
                ax.set_xlabel("optimizer step (fixed rollout batch)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


# ----------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 1 minute)")
    parser.add_argument("--task", choices=("add2", "add3"), default="add3")
    parser.add_argument("--seeds", type=int, default=10, help="paired seeds 0..N-1")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 3e-5],
                        help="per-arm learning-rate grid (every arm runs every lr)")
    parser.add_argument("--beta", type=float, default=0.02, help="KL coefficient")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--rollouts", type=int, default=12)
    parser.add_argument("--prompts-per-rollout", type=int, default=8)
    parser.add_argument("--steps-per-rollout", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--eval-size", type=int, default=256)
    parser.add_argument("--dual-clip-c", type=float, default=3.0)
    parser.add_argument("--sft-target", type=float, default=0.45,
                        help="stop SFT when the sampled (T=1) accuracy reaches this")
    parser.add_argument("--sft-lr", type=float, default=1e-3)
    parser.add_argument("--sft-max-steps", type=int, default=6000)
    parser.add_argument("--sft-cache", default="runs/gppo_sft",
                        help="directory to save / reuse the SFT checkpoint (keyed by task + target)")
    parser.add_argument("--micro-steps", type=int, default=16)
    parser.add_argument("--micro-lr-adam", type=float, default=3e-5)
    parser.add_argument("--micro-lr-sgd", type=float, default=0.003)
    parser.add_argument("--skip-micro", action="store_true")
    parser.add_argument("--micro-only", action="store_true", help="run only the micro-benchmark")
    parser.add_argument("--trainer-sanity", type=int, default=16,
                        help="optimizer steps of the GPPOTrainer sanity run (0 = skip)")
    parser.add_argument("--plot", default="docs/gppo_vs_grpo.png")
    parser.add_argument("--results", default=None, help="also write the raw results as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--workers", type=int, default=3,
                        help="RL runs in parallel processes (results are identical to 1 worker)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.lrs, args.rollouts, args.eval_every = 2, [3e-5], 2, 1
        args.eval_size, args.arms, args.prompts_per_rollout = 32, ["grpo_clip_higher", "gppo"], 4
        args.micro_steps, args.trainer_sanity, args.plot = 2, 0, None
        args.sft_max_steps, args.sft_target, args.workers = 30, 1.0, 1
    if args.seeds < 2:
        print("error: --seeds must be >= 2 for paired intervals", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    from transformers import Qwen3ForCausalLM

    from kwaiformers.trainers.recipes_reasoning import make_char_tokenizer, make_tiny_causal_lm

    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f}s] {msg}", flush=True)

    tokenizer = make_char_tokenizer()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    task = Task(digits=3 if args.task == "add3" else 2, tokenizer=tokenizer)
    scorer = Scorer(tokenizer)

    def make_model():
        return make_tiny_causal_lm(tokenizer, hidden_size=64, num_hidden_layers=2,
                                   intermediate_size=128, seed=0)

    cfg = RLConfig(beta=args.beta, temperature=args.temperature, rollouts=args.rollouts,
                   prompts_per_rollout=args.prompts_per_rollout,
                   steps_per_rollout=args.steps_per_rollout, eval_every=args.eval_every,
                   dual_clip_c=args.dual_clip_c, max_new=4 * task.digits + 8)
    train_prompts, train_answers = task.encode(task.problems(5000, seed=200))
    eval_problems = task.problems(args.eval_size, seed=300)
    eval_prompts, eval_answers = task.encode(eval_problems)
    eval_ref = reference_completions(task, tokenizer, eval_problems)
    task_data = (train_prompts, train_answers, eval_prompts, eval_answers, eval_ref)

    cache = Path(args.sft_cache) / f"{args.task}-target{args.sft_target}"
    if args.quick:
        cache = Path(args.sft_cache) / "quick"
    if (cache / "model.safetensors").is_file():
        sft_info = json.loads((cache / "sft_info.json").read_text())
        log(f"SFT checkpoint loaded from {cache}")
    else:
        torch.manual_seed(0)
        model = make_model()
        sft_info = sft(model, task, tokenizer, scorer, lr=args.sft_lr, batch=64,
                       max_steps=args.sft_max_steps, target=args.sft_target,
                       check_every=30 if args.quick else 100, max_new=cfg.max_new, seed=0, log=log)
        model.save_pretrained(cache)
        (cache / "sft_info.json").write_text(json.dumps(sft_info))
    ref_model = Qwen3ForCausalLM.from_pretrained(cache).eval()
    for p in ref_model.parameters():
        p.requires_grad_(False)
    sft_state = copy.deepcopy(ref_model.state_dict())
    sft_acc = greedy_accuracy(ref_model, eval_prompts, eval_answers, scorer, cfg.max_new, eos, pad)
    sft_sampled = sampled_accuracy(ref_model, eval_prompts, eval_answers, scorer, cfg.max_new, eos,
                                   pad, cfg.temperature, 1)
    sft_pref = reference_pass_prob(ref_model, eval_prompts, eval_ref, cfg.temperature)
    log(f"SFT ({sft_info['steps']} steps): greedy accuracy {sft_acc:.3f}, sampled (T="
        f"{cfg.temperature}) {sft_sampled:.3f}, pi(reference solution) {sft_pref:.3f} on "
        f"{len(eval_answers)} held-out problems")

    headline: dict = {"task": args.task, "sft_greedy_accuracy": round(sft_acc, 4),
                      "sft_sampled_accuracy": round(sft_sampled, 4),
                      "sft_reference_pass_prob": round(sft_pref, 4)}

    # ---- micro-benchmark
    micro = None
    if not args.skip_micro:
        micro = micro_benchmark(make_model, sft_state, task_data, scorer, eos, pad, cfg,
                                steps=args.micro_steps, lr_adam=args.micro_lr_adam,
                                lr_sgd=args.micro_lr_sgd)
        b = micro["batch"]
        print(f"\nMicro-benchmark: one fixed rollout batch ({b['sequences']} sequences, "
              f"{b['kept_groups']} non-zero-variance groups, {b['tokens']} tokens, reward "
              f"{b['reward']:.3f}; {b['shared_token_frac']:.2f} of the tokens also occur, same "
              f"prefix, in an opposite-advantage sample), {args.micro_steps} full-batch steps "
              f"per loss, no KL. dlogp = mean one-step change of log pi of the tokens in the "
              f"region before the step (low: all / shared with a positive / own)")
        hdr = (f"{'optimizer/arm':<22}{'steps w/ high':>14}{'dlogp high':>11}"
               f"{'dlogp low':>10}{'shared':>8}{'own':>8}{'frac high':>10}{'frac low':>9}"
               f"{'log r A>0':>10}{'log r A<0':>10}")
        print(hdr)
        print("-" * len(hdr))
        headline["micro"] = {}
        for key, rows in micro.items():
            if key == "batch":
                continue
            s = summarize_micro(rows)
            headline["micro"][key] = {k: (round(v, 5) if isinstance(v, float) else v)
                                      for k, v in s.items()}
            print(f"{key:<22}{s['steps_with_high']:>14}{s['mean_dlogp_high']:>11.4f}"
                  f"{s['mean_dlogp_low']:>10.4f}{s['mean_dlogp_low_shared']:>8.3f}"
                  f"{s['mean_dlogp_low_own']:>8.3f}{s['final_frac_high']:>10.4f}"
                  f"{s['final_frac_low']:>9.4f}{s['final_log_ratio_pos']:>10.4f}"
                  f"{s['final_log_ratio_neg']:>10.4f}")
        log("micro-benchmark done")
        if args.plot:
            plot_micro_steps(str(Path(args.plot).with_name("gppo_micro_benchmark.png")), micro)

    if args.micro_only:
        if args.results:
            Path(args.results).parent.mkdir(parents=True, exist_ok=True)
            Path(args.results).write_text(json.dumps({"args": vars(args), "micro": micro}))
        headline["seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(_clean(headline)))
        return 0

    # ---- paired RL grid
    jobs = [(arm, lr, seed) for seed in range(args.seeds) for lr in args.lrs for arm in args.arms]
    _WORKER.update(cfg=cfg, make_model=make_model, sft_state=sft_state, ref_model=ref_model,
                   task_data=task_data, scorer=scorer, eos=eos, pad=pad, threads=args.threads)
    results: dict[tuple[str, float], list[dict]] = {}
    if args.workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(args.workers)
        outputs = pool.imap(_run_job, jobs)
    else:
        pool, outputs = None, map(_run_job, jobs)
    for (arm, lr, seed), res in zip(jobs, outputs):
        results.setdefault((arm, lr), []).append(res)
        log(f"lr {lr:g} seed {seed} {arm:<17} curve "
            f"{[round(a, 2) for _, a in res['curve']]} best {res['best']:.3f} "
            f"auc {res['auc']:.3f} [{res['seconds']:.0f}s]")
    if pool is not None:
        pool.close()
        pool.join()

    def agg(runs, key):
        vals = [e[key] for r in runs for e in r["logs"] if e.get(key) is not None]
        return statistics.fmean(vals) if vals else float("nan")

    print(f"\nTask {args.task}: SFT pi(reference) {sft_pref:.3f}, greedy accuracy {sft_acc:.3f} "
          f"(sampled {sft_sampled:.3f}); RL "
          f"{args.rollouts} rollouts x {args.prompts_per_rollout} prompts x {cfg.num_generations} "
          f"samples, {args.steps_per_rollout} optimizer steps per rollout, KL beta {args.beta}, "
          f"T {args.temperature}, {args.seeds} paired seeds")
    print("best / final / AUC: held-out mean pi(reference solution) at T (noise-free sampled pass@1"
          " lower bound); greedy / sampled: held-out accuracy at the end")
    hdr = (f"{'arm':<17}{'lr':>7}{'best':>7}{'final':>7}{'AUC':>7}{'greedy':>7}{'sampled':>8}"
           f"{'final<SFT':>10}"
           f"{'clip hi':>9}{'clip lo':>9}{'entropy':>9}{'|dg|/|g|':>9}{'dlogp hi':>10}"
           f"{'dlogp lo':>10}")
    print(hdr)
    print("-" * len(hdr))
    grid = {}
    for (arm, lr), runs in sorted(results.items(), key=lambda kv: (ARMS.index(kv[0][0]), kv[0][1])):
        row = {"best": statistics.fmean(r["best"] for r in runs),
               "final": statistics.fmean(r["final"] for r in runs),
               "auc": statistics.fmean(r["auc"] for r in runs),
               "final_below_sft": sum(r["final"] < sft_pref for r in runs),
               "final_greedy": statistics.fmean(r["final_greedy"] for r in runs),
               "final_sampled": statistics.fmean(r["final_sampled"] for r in runs),
               "clip_high": agg(runs, "clip_high"), "clip_low": agg(runs, "clip_low"),
               "entropy": agg(runs, "entropy"), "grad_rel_diff": agg(runs, "grad_rel_diff"),
               "dlogp_high": agg(runs, "dlogp_high"), "dlogp_low": agg(runs, "dlogp_low"),
               "dual_clip": agg(runs, "dual_clip"), "cispo_cap": agg(runs, "cispo_cap")}
        grid[f"{arm}@{lr:g}"] = {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}
        print(f"{arm:<17}{lr:>7g}{row['best']:>7.3f}{row['final']:>7.3f}{row['auc']:>7.3f}"
              f"{row['final_greedy']:>7.3f}{row['final_sampled']:>8.3f}"
              f"{row['final_below_sft']:>7}/{len(runs):<2}{row['clip_high']:>9.4f}"
              f"{row['clip_low']:>9.4f}{row['entropy']:>9.3f}{row['grad_rel_diff']:>9.3f}"
              f"{row['dlogp_high']:>10.4f}{row['dlogp_low']:>10.4f}")

    best_lr = {arm: max((lr for a, lr in results if a == arm),
                        key=lambda lr: statistics.fmean(r["auc"] for r in results[(arm, lr)]))
               for arm in args.arms}
    print(f"\nPaired differences vs {BASELINE} ({args.seeds} seeds, bootstrap 95% CI over seeds)")
    hdr = f"{'arm (lr) vs baseline (lr)':<44}{'d best':>12}{'95% CI':>18}{'d AUC':>9}{'95% CI':>18}{'W/L(AUC)':>10}"
    print(hdr)
    print("-" * len(hdr))
    comparisons = {}
    if BASELINE in args.arms:
        pairs = [(arm, best_lr[arm], best_lr[BASELINE], "best lr") for arm in args.arms
                 if arm != BASELINE]
        pairs += [(arm, lr, lr, "same lr") for lr in args.lrs for arm in args.arms
                  if arm != BASELINE and (lr, lr) != (best_lr[arm], best_lr[BASELINE])]
        for arm, lr, base_lr, kind in pairs:
            runs, base = results[(arm, lr)], results[(BASELINE, base_lr)]
            d_best = paired([r["best"] for r in runs], [r["best"] for r in base])
            d_auc = paired([r["auc"] for r in runs], [r["auc"] for r in base])
            key = f"{arm}@{lr:g}-vs-{BASELINE}@{base_lr:g}"
            comparisons[key] = {"kind": kind, "best_acc": d_best, "auc": d_auc}
            print(f"{key if len(key) < 44 else arm + ' (' + kind + ')':<44}"
                  f"{d_best['mean_diff']:>+12.4f}  [{d_best['ci95'][0]:+.3f}, {d_best['ci95'][1]:+.3f}]"
                  f"{d_auc['mean_diff']:>+9.4f}  [{d_auc['ci95'][0]:+.3f}, {d_auc['ci95'][1]:+.3f}]"
                  f"{d_auc['wins']:>6}/{d_auc['losses']}")
    headline["best_lr"] = {k: v for k, v in best_lr.items()}
    headline["at_best_lr"] = {arm: {k: grid[f"{arm}@{lr:g}"][k] for k in (
        "best", "auc", "final", "final_greedy", "final_sampled", "final_below_sft", "clip_high",
        "clip_low", "grad_rel_diff", "dlogp_high", "dlogp_low")} for arm, lr in best_lr.items()}
    headline["paired_vs_grpo_clip_higher"] = comparisons

    if args.trainer_sanity:
        run_cfg = RLConfig(**{**asdict(cfg), "lr": best_lr.get("gppo", args.lrs[0])})
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            sanity = trainer_sanity(cache, tokenizer, task, scorer, run_cfg,
                                    (eval_prompts, eval_answers), args.trainer_sanity, tmp)
        sanity["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"\nGPPOTrainer sanity run ({args.trainer_sanity} optimizer steps, lr {run_cfg.lr:g}, "
              f"beta {run_cfg.beta}): greedy accuracy {sanity['acc_before']:.3f} -> "
              f"{sanity['acc_after']:.3f}; mean clip region {sanity['clip_ratio_region']}, reward "
              f"{sanity['reward']}, kl {sanity['kl']} [{sanity['seconds']:.0f}s]")
        headline["trainer_sanity"] = sanity

    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps({
            "args": vars(args), "config": asdict(cfg), "sft": sft_info, "sft_greedy_accuracy": sft_acc,
            "sft_sampled_accuracy": sft_sampled, "micro": micro,
            "runs": {f"{arm}@{lr:g}": runs for (arm, lr), runs in results.items()},
            "headline": headline}, indent=None))
    if args.plot:
        plot_all(args.plot, results, sft_pref, best_lr, micro, cfg)
        plot_diagnostics(str(Path(args.plot).with_name("gppo_vs_grpo_diagnostics.png")),
                         {f"{arm}@{lr:g}": runs for (arm, lr), runs in results.items()}, best_lr)
    headline["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(_clean(headline)))
    return 0


def _clean(obj):
    """NaN -> None so the JSON line is strict JSON."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


if __name__ == "__main__":
    sys.exit(main())
