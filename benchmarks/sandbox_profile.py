"""Where the time of one sandbox job goes: bubblewrap set-up, interpreter start, prelude, memory
cgroup, LiveCodeBench harness, for one bubblewrap sandbox per job vs the fork server, next to
the official grader's cost per sample (PyPI ``nvidia-livecodebench``, when installed).

One worker, jobs run one after another, median wall time per job.

    KWAIFORMERS_ALLOW_CODE_EXECUTION=1 python benchmarks/sandbox_profile.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def median_ms(fn, n: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 jobs per row (< 1 minute)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per row (default 20)")
    args = parser.parse_args()
    n = args.jobs or (5 if args.quick else 20)
    if n < 1:
        parser.error("--jobs must be >= 1")
    os.environ.setdefault("KWAIFORMERS_ALLOW_CODE_EXECUTION", "1")
    warnings.simplefilter("ignore", RuntimeWarning)
    from kwaiformers.evaluation.livecodebench import _grading_job
    from kwaiformers.sandbox import Job, Sandbox, SandboxConfig

    fresh_plain = Sandbox(SandboxConfig(num_workers=1, zygote=False, memory_cgroup="off"))
    fresh = Sandbox(SandboxConfig(num_workers=1, zygote=False))
    forked = Sandbox(SandboxConfig(num_workers=1))
    program = "n = int(input())\nprint(n * 2)"
    inputs = [f"{i}\n" for i in range(1, 6)]
    outputs = [f"{2 * i}\n" for i in range(1, 6)]

    def grading():
        return _grading_job(program, inputs, outputs, None, 6.0, True, "@@kwf-profile@@")

    head, tail = fresh._bwrap_base
    bwrap = [*head, "--tmpfs", "/tmp", *tail, "--"]
    python = [sys.executable, "-I", "-S", "-B", "-c", "pass"]
    rows: list[tuple[str, float]] = [
        ("bubblewrap set-up (bwrap ... /bin/true)",
         median_ms(lambda: subprocess.run([*bwrap, "/bin/true"], check=True), n)),
        ("  + a fresh interpreter inside (python -I -S)",
         median_ms(lambda: subprocess.run([*bwrap, *python], check=True), n)),
        ("a fresh interpreter on the host", median_ms(lambda: subprocess.run(python), n)),
        ("per job: Job('pass'), no memory cgroup", median_ms(lambda: fresh_plain.run(Job("pass")), n)),
    ]
    if fresh.cgroups is not None:
        cg = fresh.cgroups
        rows += [("per job: Job('pass'), memory cgroup per job",
                  median_ms(lambda: fresh.run(Job("pass")), n)),
                 ("  cgroup create + remove alone", median_ms(lambda: cg.remove(cg.create(1 << 30)), n))]
    rows.append(("per job: LCB grading job, 5 tests", median_ms(lambda: fresh.run(grading()), n)))
    if forked.uses_zygote:
        rows += [("fork server: Job('pass')", median_ms(lambda: forked.run(Job("pass")), n)),
                 ("fork server: LCB grading job, 5 tests",
                  median_ms(lambda: forked.run(grading()), n))]
        cpu = statistics.median(forked.run(grading()).cpu_time or 0.0 for _ in range(n))
        rows.append(("  its CPU time (all processes of the job)", round(cpu * 1000, 1)))
    try:
        from lcb_corpus import official_grader_stdio
        from livecodebench.evaluation.compute_code_generation_metrics import evaluate_generations

        sample = {"input_output": json.dumps({"inputs": inputs, "outputs": outputs})}

        def official():
            with official_grader_stdio():
                evaluate_generations([sample] * 10, [[program]] * 10, num_process_evaluate=1,
                                     timeout=6)

        rows.append(("official grader: per sample (10 samples, 1 worker)",
                     round(median_ms(official, max(1, n // 4)) / 10, 1)))
    except ImportError:
        pass
    for sandbox in (fresh_plain, fresh, forked):
        sandbox.close()
    print(f"\nsandbox job profile, 1 worker, median of {n}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, ms in rows:
        print(f"{name:52} {ms:8.1f} ms")
    print(json.dumps({"jobs_per_row": n, "load_average": [round(x, 2) for x in os.getloadavg()],
                      "ms": dict(rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
