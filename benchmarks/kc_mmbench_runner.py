"""KC-MMBench runner mechanics on CPU with a tiny random Keye-VL (no download, no network).

    python benchmarks/kc_mmbench_runner.py --quick     # < 1 minute: the fixture once (14 samples)
    python benchmarks/kc_mmbench_runner.py             # 8 copies (112 samples)

Measured in one run, on the generated six-task fixture (``tests/utils.py::make_tiny_kc_mmbench``):

* generation wall time with ``batch_size=1`` vs ``batch_size=4`` (the speed-up of batching);
* a rerun of the finished run (everything comes from ``generations.jsonl``) vs the first run:
  the cost of resuming;
* a resumed run after an interruption half-way: the fraction of samples generated again (goal:
  exactly the missing half) and whether the predictions equal those of an uninterrupted run;
* scoring throughput of ``score_kc_mmbench`` (official Y/N extraction + rule mode) on 60k synthetic
  responses.

The model is random, so accuracies are meaningless; only the ratios are. Prints a table and ends
with one JSON line of headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from utils import make_tiny_kc_mmbench, make_tiny_keye_vl  # noqa: E402

from kwaiformers.evaluation import kc_mmbench as kc  # noqa: E402
from kwaiformers.evaluation.runner import (  # noqa: E402
    GenerationConfig,
    TransformersBackend,
    evaluate_task,
)


class _Crash(RuntimeError):
    pass


class _Backend(TransformersBackend):
    def __init__(self, *args, die_after_prompts: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.generated = 0
        self.die_after_prompts = die_after_prompts

    def generate(self, conversations, config, seed=0):
        if self.die_after_prompts is not None and self.generated >= self.die_after_prompts:
            raise _Crash()
        self.generated += len(conversations)
        return super().generate(conversations, config, seed=seed)


def _run(task, model, processor, out, batch_size, max_new_tokens, **backend_kwargs):
    backend = _Backend(model, processor, model_name="tiny-keye-vl", **backend_kwargs)
    config = GenerationConfig(temperature=0.0, max_new_tokens=max_new_tokens,
                              batch_size=batch_size)
    start = time.perf_counter()
    res = evaluate_task(task, output_dir=out, backend=backend, config=config, progress=False)
    return res, time.perf_counter() - start, backend.generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="< 1 minute")
    parser.add_argument("--copies", type=int, default=None, help="fixture copies (14 rows each)")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()
    copies = args.copies or (1 if args.quick else 8)

    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    model, processor = make_tiny_keye_vl(init_std=0.5)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_tiny_kc_mmbench(os.path.join(tmp, "data"), repeat=copies)
        task = kc.KCMMBenchTask(path=data, think="think")
        n = len(task.load_samples())
        res1, t_b1, _ = _run(task, model, processor, os.path.join(tmp, "b1"), 1,
                             args.max_new_tokens)
        res4, t_b4, _ = _run(task, model, processor, os.path.join(tmp, "b4"), 4,
                             args.max_new_tokens)
        _, t_rerun, regen = _run(task, model, processor, os.path.join(tmp, "b4"), 4,
                                 args.max_new_tokens)
        half = (n // 2) // 4 * 4
        try:
            _run(task, model, processor, os.path.join(tmp, "cut"), 4, args.max_new_tokens,
                 die_after_prompts=half)
        except _Crash:
            pass
        res_cut, _, resumed = _run(task, model, processor, os.path.join(tmp, "cut"), 4,
                                   args.max_new_tokens)
        same = [r["prediction"] for r in res_cut["per_sample"]] == [
            r["prediction"] for r in res4["per_sample"]]
        batched_equal = [r["prediction"] for r in res1["per_sample"]] == [
            r["prediction"] for r in res4["per_sample"]]

    rng = random.Random(0)
    pool = ["是", "否", "是。", "是的", "<think>…</think>否", "Yes", "no", "[是，否，是]", "红色",
            "2,1,3", "我认为是"]
    m = 60_000
    tasks = [rng.choice(kc.TASKS) for _ in range(m)]
    refs = ["是" if t in kc.YN_TASKS else "是_否_是" if t == "Hot_Videos_Aggregation" else "红色"
            for t in tasks]
    preds = [rng.choice(pool) for _ in range(m)]
    start = time.perf_counter()
    kc.score_kc_mmbench(preds, refs, tasks, progress=False)
    t_score = time.perf_counter() - start

    rows = [
        ("samples", f"{n}"),
        ("generate, batch_size=1 (s)", f"{t_b1:.2f}"),
        ("generate, batch_size=4 (s)", f"{t_b4:.2f}"),
        ("batching speed-up", f"{t_b1 / t_b4:.2f}x"),
        ("batched == unbatched predictions", str(batched_equal)),
        ("rerun from cache (s)", f"{t_rerun:.2f}  ({regen} prompts regenerated)"),
        ("rerun / first run", f"{t_rerun / t_b4:.3f}"),
        ("resume after crash at", f"{half}/{n} prompts"),
        ("prompts regenerated on resume", f"{resumed} (missing: {n - half})"),
        ("resumed == uninterrupted predictions", str(same)),
        (f"scoring {m} responses (s)", f"{t_score:.2f}  ({m / t_score:,.0f}/s)"),
    ]
    width = max(len(k) for k, _ in rows) + 2
    print("KC-MMBench runner on CPU, tiny random Keye-VL (ratios only are meaningful)")
    for key, value in rows:
        print(f"  {key:<{width}}{value}")
    print(json.dumps({
        "samples": n,
        "batching_speedup": round(t_b1 / t_b4, 3),
        "rerun_over_first_run": round(t_rerun / t_b4, 4),
        "rerun_regenerated": regen,
        "resume_regenerated": resumed,
        "resume_missing": n - half,
        "resumed_equals_uninterrupted": same,
        "batched_equals_unbatched": batched_equal,
        "scoring_per_second": round(m / t_score),
    }))


if __name__ == "__main__":
    main()
