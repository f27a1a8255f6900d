"""LiveCodeBench grader: kwaiformers (sandboxed) vs the reference grader of PyPI
``nvidia-livecodebench`` (``livecodebench.evaluation.compute_code_generation_metrics``).

Builds >= 50 (problem, solution) pairs -- correct, wrong, slow, crashing, both test types
(stdin/stdout and call-based) -- grades them with both graders at the same per-test timeout and
worker count, and reports the verdict agreement (sample level: all tests pass or not; and the
first-failure category) and the throughput ratio (pairs per second, ours / reference).

The reference is installed for this benchmark only (``pip install --no-deps --target <cache>``,
never into the project environment). If it cannot be installed or imported, the benchmark still
grades with kwaiformers and says so.

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

REFERENCE_PACKAGE = "nvidia-livecodebench"
REFERENCE_DIR = os.path.join(tempfile.gettempdir(), "kwaiformers-bench-lcb-reference")

# -- problems ---------------------------------------------------------------------------------------

ADD = {"inputs": ["1 2\n", "10 -3\n", "100000 200000\n"], "outputs": ["3\n", "7\n", "300000\n"],
       "fn_name": None}
DIV = {"inputs": ["1 4\n", "3 4\n", "1 8\n"], "outputs": ["0.25\n", "0.750\n", "0.125\n"],
       "fn_name": None}
SORT = {"inputs": ["5\n3 1 2 5 4\n", "1\n7\n", "3\n9 8 7\n"],
        "outputs": ["1 2 3 4 5\n", "7\n", "7 8 9\n"], "fn_name": None}
LINES = {"inputs": ["3\n", "1\n"], "outputs": ["1\n2\n3\n", "1\n"], "fn_name": None}
FIB = {"inputs": ["10\n", "3000\n"], "outputs": [], "fn_name": None}
TWO_SUM = {"inputs": ["[2,7,11,15]\n9", "[3,2,4]\n6", "[3,3]\n6"],
           "outputs": ["[0, 1]", "[1, 2]", "[0, 1]"], "fn_name": "twoSum"}
REVERSE = {"inputs": ['"abc"', '"racecar"', '""'], "outputs": ['"cba"', '"racecar"', '""'],
           "fn_name": "reverseString"}
GRID = {"inputs": ["[[1,2],[3,4]]", "[[5]]", "[[1,-1,2]]"], "outputs": ["10", "5", "2"],
        "fn_name": "gridSum"}
PAIRS = {"inputs": ["[1,2,3]\n2", "[5]\n1"], "outputs": ["[[1, 2], [2, 3]]", "[[5]]"],
         "fn_name": "windows"}


def _fib_outputs():
    a, b = 0, 1
    values = {}
    for i in range(3001):
        values[i] = a
        a, b = b, a + b
    return [f"{values[10]}\n", f"{values[3000]}\n"]


FIB["outputs"] = _fib_outputs()

SLOW = "import time\ntime.sleep(1000)\n"
BUSY = "while True:\n    pass\n"
CRASH = "x = int('not a number')\n"
SYNTAX = "def broken(:\n    pass\n"


def build_pairs() -> list[tuple[str, dict, str, str]]:
    """(name, problem input_output, code, expected category) -- >= 50 pairs."""
    pairs = []

    def add(problem_name, problem, cases):
        for kind, code in cases:
            pairs.append((f"{problem_name}/{kind}", problem, code, kind))

    add("add", ADD, [
        ("correct", "a, b = map(int, input().split())\nprint(a + b)\n"),
        ("correct_main_guard", "def main():\n    a, b = map(int, input().split())\n"
         "    print(a + b)\n\nif __name__ == '__main__':\n    main()\n"),
        ("correct_sys_stdin", "import sys\na, b = map(int, sys.stdin.readline().split())\n"
         "sys.stdout.write(str(a + b) + '\\n')\n"),
        ("correct_spaces", "a, b = map(int, input().split())\nprint('  ', a + b, '  ')\n"),
        ("correct_exit", "import sys\na, b = map(int, input().split())\nprint(a + b)\nsys.exit(0)\n"),
        ("wrong", "a, b = map(int, input().split())\nprint(a - b)\n"),
        ("wrong_extra_line", "a, b = map(int, input().split())\nprint(a + b)\nprint('done')\n"),
        ("crash", CRASH), ("syntax", SYNTAX), ("slow_sleep", SLOW), ("slow_busy", BUSY),
        ("crash_late", "a, b = map(int, input().split())\nassert a < 50\nprint(a + b)\n"),
    ])
    add("div", DIV, [
        ("correct", "a, b = map(int, input().split())\nprint(a / b)\n"),
        ("correct_format", "a, b = map(int, input().split())\nprint(f'{a / b:.3f}')\n"),
        ("wrong_rounding", "a, b = map(int, input().split())\nprint(round(a / b, 1))\n"),
        ("wrong_int", "a, b = map(int, input().split())\nprint(a // b)\n"),
        ("crash_zero", "a, b = map(int, input().split())\nprint(a / 0)\n"),
    ])
    add("sort", SORT, [
        ("correct", "import sys\ndata = sys.stdin.read().split()\n"
         "print(' '.join(map(str, sorted(map(int, data[1:])))))\n"),
        ("correct_input", "n = int(input())\nxs = sorted(map(int, input().split()))\nprint(*xs)\n"),
        ("wrong_reverse", "n = int(input())\nprint(*sorted(map(int, input().split()), reverse=True))\n"),
        ("wrong_unsorted", "n = int(input())\nprint(input())\n"),
        ("slow_quadratic_loop", "n = int(input())\nxs = list(map(int, input().split()))\n"
         "while True:\n    xs.sort()\n"),
        ("crash_index", "xs = input().split()\nprint(xs[10])\n"),
    ])
    add("lines", LINES, [
        ("correct", "for i in range(1, int(input()) + 1):\n    print(i)\n"),
        ("correct_join", "n = int(input())\nprint('\\n'.join(str(i) for i in range(1, n + 1)))\n"),
        ("wrong_count", "for i in range(int(input())):\n    print(i)\n"),
        ("wrong_one_line", "print(*range(1, int(input()) + 1))\n"),
    ])
    add("fib", FIB, [
        ("correct_iterative", "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n"
         "    a, b = b, a + b\nprint(a)\n"),
        ("correct_recursive_memo", "from functools import lru_cache\n@lru_cache(None)\n"
         "def f(k):\n    return k if k < 2 else f(k - 1) + f(k - 2)\n"
         "n = int(input())\nfor i in range(0, n, 500):\n    f(i)\nprint(f(n))\n"),
        ("slow_naive", "def f(k):\n    return k if k < 2 else f(k - 1) + f(k - 2)\nprint(f(int(input())))\n"),
        ("wrong_off_by_one", "n = int(input())\na, b = 0, 1\nfor _ in range(n + 1):\n"
         "    a, b = b, a + b\nprint(a)\n"),
    ])
    add("two_sum", TWO_SUM, [
        ("correct_tuple", "class Solution:\n    def twoSum(self, nums, target):\n"
         "        seen = {}\n        for i, x in enumerate(nums):\n"
         "            if target - x in seen:\n                return (seen[target - x], i)\n"
         "            seen[x] = i\n"),
        ("correct_brute", "from typing import List\nclass Solution:\n"
         "    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
         "        for i in range(len(nums)):\n            for j in range(i + 1, len(nums)):\n"
         "                if nums[i] + nums[j] == target:\n                    return [i, j]\n"),
        ("correct_prints", "class Solution:\n    def twoSum(self, nums, target):\n"
         "        print('debugging', nums)\n        for i in range(len(nums)):\n"
         "            for j in range(i + 1, len(nums)):\n"
         "                if nums[i] + nums[j] == target:\n                    return [i, j]\n"),
        ("wrong_order", "class Solution:\n    def twoSum(self, nums, target):\n"
         "        for i in range(len(nums)):\n            for j in range(i + 1, len(nums)):\n"
         "                if nums[i] + nums[j] == target:\n                    return [j, i]\n"),
        ("wrong_none", "class Solution:\n    def twoSum(self, nums, target):\n        pass\n"),
        ("crash", "class Solution:\n    def twoSum(self, nums, target):\n        return nums[99]\n"),
        ("slow", "class Solution:\n    def twoSum(self, nums, target):\n"
         "        while True:\n            pass\n"),
        ("syntax", "class Solution:\n    def twoSum(self, nums, target)\n        return []\n"),
        ("missing_method", "class Solution:\n    def other(self):\n        return 1\n"),
    ])
    add("reverse", REVERSE, [
        ("correct", "class Solution:\n    def reverseString(self, s):\n        return s[::-1]\n"),
        ("correct_loop", "class Solution:\n    def reverseString(self, s):\n        out = ''\n"
         "        for c in s:\n            out = c + out\n        return out\n"),
        ("wrong", "class Solution:\n    def reverseString(self, s):\n        return s\n"),
        ("crash_empty", "class Solution:\n    def reverseString(self, s):\n"
         "        return s[-1] + s[:-1][::-1]\n"),
        ("slow_sleep", "import time\nclass Solution:\n    def reverseString(self, s):\n"
         "        time.sleep(1000)\n"),
    ])
    add("grid", GRID, [
        ("correct", "class Solution:\n    def gridSum(self, grid):\n"
         "        return sum(map(sum, grid))\n"),
        ("correct_float_equal", "class Solution:\n    def gridSum(self, grid):\n"
         "        return float(sum(map(sum, grid)))\n"),
        ("wrong_abs", "class Solution:\n    def gridSum(self, grid):\n"
         "        return sum(abs(x) for row in grid for x in row)\n"),
        ("crash_type", "class Solution:\n    def gridSum(self, grid):\n        return sum(grid)\n"),
    ])
    add("pairs", PAIRS, [
        ("correct", "class Solution:\n    def windows(self, xs, k):\n"
         "        return [xs[i:i + k] for i in range(len(xs) - k + 1)]\n"),
        ("wrong_tuples_inside", "class Solution:\n    def windows(self, xs, k):\n"
         "        return [tuple(xs[i:i + k]) for i in range(len(xs) - k + 1)]\n"),
        ("wrong_short", "class Solution:\n    def windows(self, xs, k):\n        return [xs[:k]]\n"),
    ])
    return pairs


# -- graders ------------------------------------------------------------------------------------------

REFERENCE_CODES = {True: "passed", -1: "timeout", -2: "wrong_answer", -3: "timeout",
                   -4: "runtime_error", -5: "runtime_error"}


def reference_category(results: list) -> str:
    if results and all(r is True for r in results):
        return "passed"
    first = next((r for r in results if r is not True), -4)
    if first is False:
        return "wrong_answer"
    return REFERENCE_CODES.get(first, "runtime_error")


def ours_category(outcomes, n_tests: int) -> str:
    if len(outcomes) == n_tests and all(o.passed for o in outcomes):
        return "passed"
    status = outcomes[-1].status if outcomes else "runtime_error"
    return "runtime_error" if status in ("memory", "killed") else status


def load_reference():
    """Import the reference grader, installing nvidia-livecodebench into a side directory first
    if needed. Returns (evaluate_generations, version) or (None, reason)."""
    def attempt():
        import importlib

        if REFERENCE_DIR not in sys.path:
            sys.path.insert(0, REFERENCE_DIR)
        sys.path_importer_cache.pop(REFERENCE_DIR, None)
        importlib.invalidate_caches()
        from importlib.metadata import PathDistribution
        from pathlib import Path

        from livecodebench.evaluation.compute_code_generation_metrics import evaluate_generations

        dists = list(Path(REFERENCE_DIR).glob("nvidia_livecodebench-*.dist-info"))
        version = PathDistribution(dists[0]).version if dists else "?"
        return evaluate_generations, version

    try:
        return attempt()
    except ImportError:
        pass
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
           REFERENCE_DIR, REFERENCE_PACKAGE]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"pip install failed: {proc.stderr.strip()[-300:]}"
    try:
        return attempt()
    except Exception as exc:  # noqa: BLE001
        return None, f"import failed: {exc!r}"


def project_ratio(n_pairs: int, n_fast: int, ours_all: float, ours_fast: float, ref_all: float,
                  ref_fast: float, shares=(0.0, 0.01, 0.02, 0.05, 0.1)) -> dict[float, float]:
    """Amdahl projection of the end-to-end ratio (reference / ours) for a workload in which a
    ``share`` of the samples time out, from the measured wall time per pair of each kind (the
    fast pairs from the no-timeout run, the slow ones from the difference with the full run)."""
    n_slow = n_pairs - n_fast
    out = {}
    for share in (*shares, n_slow / n_pairs):
        per_pair = []
        for total, fast in ((ours_all, ours_fast), (ref_all, ref_fast)):
            slow_cost = max(total - fast, 0.0) / max(n_slow, 1)
            per_pair.append(share * slow_cost + (1 - share) * fast / n_fast)
        out[round(share, 4)] = round(per_pair[1] / per_pair[0], 2)
    return dict(sorted(out.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s per-test timeout (< 1 minute)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per test (default 6, "
                        "--quick 1)")
    parser.add_argument("--workers", type=int, default=None, help="parallel workers (both graders)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions of the no-timeout subset (default 5, --quick 2)")
    args = parser.parse_args()
    os.environ.setdefault("KWAIFORMERS_ALLOW_CODE_EXECUTION", "1")
    from kwaiformers.evaluation.livecodebench import run_tests_batch
    from kwaiformers.sandbox import Sandbox, SandboxConfig

    timeout = args.timeout or (1.0 if args.quick else 6.0)
    args.repeats = args.repeats or (2 if args.quick else 5)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    workers = args.workers or max(1, len(os.sched_getaffinity(0)))
    pairs = build_pairs()
    sandbox = Sandbox(SandboxConfig(num_workers=workers))
    sandbox.run_batch([])  # probe the isolation once, outside the timed region

    def run_ours(subset):
        start = time.perf_counter()
        graded = run_tests_batch([(pairs[i][2], pairs[i][1], None) for i in subset],
                                 sandbox=sandbox, timeout=timeout)
        return graded, time.perf_counter() - start

    def run_reference(subset):
        samples = [{"input_output": json.dumps(pairs[i][1])} for i in subset]
        gens = [[pairs[i][2]] for i in subset]
        start = time.perf_counter()
        # the reference takes an int timeout (signal.alarm)
        results, _ = evaluate_generations(samples, gens, num_process_evaluate=workers,
                                          timeout=max(1, int(round(timeout))))
        return results, time.perf_counter() - start

    everything = list(range(len(pairs)))
    no_timeouts = [i for i, p in enumerate(pairs) if not p[3].startswith("slow")]
    ours, ours_seconds = run_ours(everything)
    ours_cat = [ours_category(o, len(p["inputs"])) for o, (_, p, _, _) in zip(ours, pairs)]

    evaluate_generations, ref_version = load_reference()
    ref_cat, ref_seconds, ref_fast_seconds = None, None, None
    if evaluate_generations is not None:
        results, ref_seconds = run_reference(everything)
        ref_cat = [reference_category(results[i][0]) for i in range(len(pairs))]
    # the no-timeout subset takes ~1-4 s: time it args.repeats times, interleaved, and keep the
    # median of each grader so one noisy run does not decide the overhead ratio
    ours_times, ref_times = [], []
    for _ in range(args.repeats):
        ours_times.append(run_ours(no_timeouts)[1])
        if evaluate_generations is not None:
            ref_times.append(run_reference(no_timeouts)[1])
    ours_fast_seconds = statistics.median(ours_times)
    if ref_times:
        ref_fast_seconds = statistics.median(ref_times)

    print(f"\nLiveCodeBench grader: {len(pairs)} (problem, solution) pairs, {workers} workers, "
          f"{timeout:g} s per test, sandbox isolation: {sandbox.isolation}")
    header = f"{'pair':34} {'expected':16} {'kwaiformers':14} {'reference':14}"
    print(header)
    print("-" * len(header))
    for i, (name, _, _, kind) in enumerate(pairs):
        expected = ("passed" if kind.startswith("correct") else "wrong_answer"
                    if kind.startswith("wrong") else "timeout" if kind.startswith("slow")
                    else "runtime_error")
        ref = ref_cat[i] if ref_cat else "n/a"
        flag = "" if ref_cat is None or ref == ours_cat[i] else "  <-- differs"
        print(f"{name:34} {expected:16} {ours_cat[i]:14} {ref:14}{flag}")
    summary = {
        "pairs": len(pairs),
        "timeout_s": timeout,
        "workers": workers,
        "ours_seconds": round(ours_seconds, 2),
        "ours_pairs_per_s": round(len(pairs) / ours_seconds, 2),
        "ours_pass_rate": round(sum(c == "passed" for c in ours_cat) / len(pairs), 4),
    }
    if ref_cat is not None:
        same_pass = sum((a == "passed") == (b == "passed") for a, b in zip(ours_cat, ref_cat))
        same_cat = sum(a == b for a, b in zip(ours_cat, ref_cat))
        summary.update({
            "reference": f"{REFERENCE_PACKAGE} {ref_version}",
            "ref_seconds": round(ref_seconds, 2),
            "ref_pairs_per_s": round(len(pairs) / ref_seconds, 2),
            "agreement_pass_fail": round(same_pass / len(pairs), 4),
            "agreement_category": round(same_cat / len(pairs), 4),
            "throughput_ratio_ours_over_ref": round(ref_seconds / ours_seconds, 2),
            "no_timeout_pairs": len(no_timeouts),
            "ours_no_timeout_seconds": round(ours_fast_seconds, 2),
            "ref_no_timeout_seconds": round(ref_fast_seconds, 2),
            "throughput_ratio_no_timeouts": round(ref_fast_seconds / ours_fast_seconds, 2),
        })
        print(f"\nagreement (pass/fail): {same_pass}/{len(pairs)}   agreement (category): "
              f"{same_cat}/{len(pairs)}")
        print(f"time, all {len(pairs)} pairs: kwaiformers {ours_seconds:.1f} s, reference "
              f"{ref_seconds:.1f} s -> {ref_seconds / ours_seconds:.2f}x")
        print(f"time, the {len(no_timeouts)} pairs without a timeout (grading overhead, median of "
              f"{args.repeats}): "
              f"kwaiformers {ours_fast_seconds:.1f} s, reference {ref_fast_seconds:.1f} s -> "
              f"{ref_fast_seconds / ours_fast_seconds:.2f}x")
        projection = project_ratio(len(pairs), len(no_timeouts), ours_seconds, ours_fast_seconds,
                                   ref_seconds, ref_fast_seconds)
        print("\nprojected end-to-end ratio by share of samples that time out (from this run's "
              "per-pair costs;\na timed-out test costs both graders the same wall time, so it "
              "bounds the ratio):")
        for share, ratio in projection.items():
            print(f"  {share:>6.1%} timed out -> {ratio:.2f}x")
        summary["projected_ratio_by_timeout_share"] = {f"{k:g}": v for k, v in projection.items()}
    else:
        summary["reference"] = f"unavailable: {ref_version}"
        print(f"\nreference grader unavailable ({ref_version}); kwaiformers only")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
