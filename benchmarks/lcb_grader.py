"""LiveCodeBench grader: kwaiformers (bubblewrap sandbox) vs the official grader of PyPI
``nvidia-livecodebench`` (``livecodebench.evaluation.compute_code_generation_metrics``).

Grades the generated differential corpus of ``tests/lcb_corpus.py`` (>= 300 programs crossing
input/output/exit styles, call-based return types and failure modes, with hypothesis-generated
inputs) with both graders at the same per-test timeout and worker count and reports

- parity: identical first-failure category (passed / wrong_answer / runtime_error / timeout /
  killed) and first-failing test index, program by program;
- throughput on the programs without a timeout (a timed-out test costs both graders the same
  wall time), timed ``--repeats`` times interleaved, median; the ratio is official / ours.

The official grader is the installed test extra; if it is missing it is installed for this
benchmark only (``pip install --no-deps --target <tmp>``).

    KWAIFORMERS_ALLOW_CODE_EXECUTION=1 python benchmarks/lcb_grader.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from lcb_corpus import (  # noqa: E402
    TIMEOUT_NAMES,
    build_corpus,
    official_category,
    official_first_failure,
    official_grader_stdio,
    ours_category,
)

REFERENCE_PACKAGE = "nvidia-livecodebench"
REFERENCE_DIR = os.path.join(tempfile.gettempdir(), "kwaiformers-bench-lcb-reference")


def load_reference():
    """``(evaluate_generations, version)`` of the official grader, or ``(None, reason)``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        from livecodebench.evaluation.compute_code_generation_metrics import evaluate_generations

        try:
            return evaluate_generations, version(REFERENCE_PACKAGE)
        except PackageNotFoundError:
            return evaluate_generations, "?"
    except ImportError:
        pass
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
           REFERENCE_DIR, REFERENCE_PACKAGE]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"pip install failed: {proc.stderr.strip()[-300:]}"
    sys.path.insert(0, REFERENCE_DIR)
    try:
        from livecodebench.evaluation.compute_code_generation_metrics import evaluate_generations
    except Exception as exc:  # noqa: BLE001
        return None, f"import failed: {exc!r}"
    return evaluate_generations, "(side install)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="every 4th program, no timeouts, 1 repeat (< 1 minute)")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds per test (default 6, the official value; --quick 2)")
    parser.add_argument("--workers", type=int, default=None, help="parallel workers (both)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions of the no-timeout programs (default 3, quick 1)")
    parser.add_argument("--no-zygote", action="store_true",
                        help="one bubblewrap sandbox per job instead of a fork server per worker")
    args = parser.parse_args()
    if args.timeout is not None and args.timeout < 1:
        parser.error("--timeout must be an int >= 1 (the official grader uses signal.alarm)")
    os.environ.setdefault("KWAIFORMERS_ALLOW_CODE_EXECUTION", "1")
    from kwaiformers.evaluation.livecodebench import run_tests_batch
    from kwaiformers.sandbox import Sandbox, SandboxConfig

    timeout = args.timeout or (2 if args.quick else 6)
    repeats = args.repeats or (1 if args.quick else 3)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    workers = args.workers or max(1, len(os.sched_getaffinity(0)))
    corpus = build_corpus()
    if args.quick:
        corpus = [c for i, c in enumerate(corpus) if i % 4 == 0 and c[0] not in TIMEOUT_NAMES]
    fast = [i for i, c in enumerate(corpus) if c[0] not in TIMEOUT_NAMES]
    load_start = os.getloadavg()
    sandbox = Sandbox(SandboxConfig(num_workers=workers, zygote=False if args.no_zygote else None))
    sandbox.run_batch([])  # probe the isolation once, outside the timed region
    evaluate_generations, ref_version = load_reference()

    def run_ours(subset):
        start = time.perf_counter()
        graded = run_tests_batch([(corpus[i][2], corpus[i][1], None) for i in subset],
                                 sandbox=sandbox, timeout=float(timeout))
        return graded, time.perf_counter() - start

    def run_reference(subset):
        start = time.perf_counter()
        with official_grader_stdio():
            results, meta = evaluate_generations(
                [{"input_output": json.dumps(corpus[i][1])} for i in subset],
                [[corpus[i][2]] for i in subset], num_process_evaluate=workers, timeout=timeout)
        return [(results[k][0], meta[k][0]) for k in range(len(subset))], \
            time.perf_counter() - start

    everything = list(range(len(corpus)))
    ours, ours_all_s = run_ours(everything)
    ours_cat = [ours_category(o, len(c[1]["inputs"])) for o, c in zip(ours, corpus)]
    launcher = "fork server per worker" if sandbox.uses_zygote else "one sandbox per job"
    summary = {"programs": len(corpus), "timeout_s": timeout, "workers": workers,
               "isolation": sandbox.isolation, "launcher": launcher,
               "memory_limit": sandbox.memory_limit_scope, "ours_all_seconds": round(ours_all_s, 2)}
    print(f"\nLiveCodeBench grader: {len(corpus)} generated programs, {workers} workers, "
          f"{timeout} s per test, sandbox {sandbox.isolation} ({launcher}), memory limit per "
          f"{sandbox.memory_limit_scope}")
    if evaluate_generations is None:
        print(f"official grader unavailable ({ref_version}); kwaiformers only")
        summary["reference"] = f"unavailable: {ref_version}"
        print(json.dumps(summary))
        return 0
    ref, ref_all_s = run_reference(everything)
    ref_cat = [official_category(r, m) for r, m in ref]
    diffs = []
    for i, (name, _, _) in enumerate(corpus):
        same_index = ref_cat[i] in ("passed", "killed") or official_first_failure(
            ref[i][0]) == len(ours[i]) - 1
        if ref_cat[i] != ours_cat[i] or not same_index:
            diffs.append(name)
    ours_times, ref_times = [], []
    for _ in range(repeats):
        ours_times.append(run_ours(fast)[1])
        ref_times.append(run_reference(fast)[1])
    ours_fast, ref_fast = statistics.median(ours_times), statistics.median(ref_times)

    header = f"{'category (first failure)':26} {'official':>9} {'kwaiformers':>12}"
    print(header)
    print("-" * len(header))
    counts_ref, counts_ours = Counter(ref_cat), Counter(ours_cat)
    for cat in ("passed", "wrong_answer", "runtime_error", "timeout", "killed", "memory"):
        if counts_ref[cat] or counts_ours[cat]:
            print(f"{cat:26} {counts_ref[cat]:>9} {counts_ours[cat]:>12}")
    print(f"\nparity: {len(corpus) - len(diffs)}/{len(corpus)} identical (category and index)")
    for name in diffs[:20]:
        i = [c[0] for c in corpus].index(name)
        print(f"  differs: {name}: official {ref_cat[i]} {ref[i][0]}, ours {ours_cat[i]}")
    print(f"time, all {len(corpus)} programs: official {ref_all_s:.1f} s, kwaiformers "
          f"{ours_all_s:.1f} s -> {ref_all_s / ours_all_s:.2f}x")
    print(f"time, the {len(fast)} programs without a timeout (median of {repeats}): official "
          f"{ref_fast:.1f} s, kwaiformers {ours_fast:.1f} s -> {ref_fast / ours_fast:.2f}x "
          f"(goal >= 2x)")
    load_end = os.getloadavg()
    print(f"load average (1, 5, 15 min) at the start {load_start[0]:.2f} {load_start[1]:.2f} "
          f"{load_start[2]:.2f}, at the end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    summary.update({
        "reference": f"{REFERENCE_PACKAGE} {ref_version}",
        "parity": round((len(corpus) - len(diffs)) / len(corpus), 4),
        "differences": len(diffs),
        "ref_all_seconds": round(ref_all_s, 2),
        "no_timeout_programs": len(fast),
        "ours_no_timeout_seconds": round(ours_fast, 2),
        "ref_no_timeout_seconds": round(ref_fast, 2),
        "ours_programs_per_s": round(len(fast) / ours_fast, 2),
        "ref_programs_per_s": round(len(fast) / ref_fast, 2),
        "throughput_ratio_no_timeouts": round(ref_fast / ours_fast, 2),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
    })
    sandbox.close()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
