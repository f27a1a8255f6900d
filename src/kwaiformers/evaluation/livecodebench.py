"""LiveCodeBench (arXiv 2403.07974) code generation: grading, loading, prompts and pass@k.

Grading follows the official ``lcb_runner`` semantics (see :mod:`._lcb_harness`), always inside
:mod:`kwaiformers.sandbox`: one sandbox job per (program, test set) runs the tests in order with
a per-test alarm (6 s by default) and stops at the first failure; a sample is correct iff every
test passes. ``isolate_tests=True`` instead runs each test in its own sandbox job with the
expected output never entering the sandbox (slower, but a program cannot read the expected
outputs to forge a pass; use it for RL rewards against adversarial policies).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 6.0
_HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lcb_harness.py")


@dataclass
class TestOutcome:
    """Verdict for one test case. ``status`` is a :data:`kwaiformers.sandbox.STATUSES` value."""

    index: int
    status: str
    time: float = 0.0
    detail: str = ""

    __test__ = False  # not a pytest class

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def normalize_test_cases(
    test_cases: Any, fn_name: str | None = None
) -> tuple[list[str], list[str], str | None]:
    """Accept ``[{"input", "output", ...}]``, ``{"inputs": [...], "outputs": [...], "fn_name"}``
    (LiveCodeBench's ``input_output``) or its JSON string; return (inputs, outputs, fn_name)."""
    if isinstance(test_cases, str):
        try:
            test_cases = json.loads(test_cases)
        except json.JSONDecodeError as exc:
            raise ValueError(f"test_cases is a string but not JSON: {exc}") from None
    if isinstance(test_cases, Mapping):
        if "inputs" not in test_cases or "outputs" not in test_cases:
            raise ValueError("test_cases mapping must have 'inputs' and 'outputs' lists")
        inputs, outputs = list(test_cases["inputs"]), list(test_cases["outputs"])
        fn_name = fn_name or test_cases.get("fn_name")
    elif isinstance(test_cases, Sequence):
        inputs, outputs = [], []
        for i, case in enumerate(test_cases):
            if not isinstance(case, Mapping) or "input" not in case or "output" not in case:
                raise ValueError(
                    f"test_cases[{i}] must be a mapping with 'input' and 'output', got {case!r:.80}")
            inputs.append(case["input"])
            outputs.append(case["output"])
    else:
        raise TypeError(f"test_cases must be a list of dicts, a dict or JSON, got {type(test_cases)}")
    if len(inputs) != len(outputs):
        raise ValueError(f"test_cases has {len(inputs)} inputs but {len(outputs)} outputs")
    for name, values in (("input", inputs), ("output", outputs)):
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise TypeError(f"test case {i} {name} must be a str, got {type(v).__name__}")
    return inputs, outputs, (fn_name or None)


def _grading_job(code: str, inputs: list[str], outputs: list[str], fn_name: str | None,
                 timeout: float, stop: bool, nonce: str, compare: bool = True):
    from kwaiformers.sandbox import Job

    with open(_HARNESS, encoding="utf-8") as f:
        harness = f.read()
    spec = {"inputs": inputs, "outputs": outputs, "fn_name": fn_name, "timeout": timeout,
            "nonce": nonce, "stop_on_first_failure": stop, "compare": compare}
    wall = (timeout + 1) * max(1, len(inputs)) + 5  # the official global timeout
    return Job(harness, timeout=wall, cpu_seconds=int(wall) + 1,
               files={"solution.py": code, "tests.json": json.dumps(spec)})


def _parse_outcomes(result, nonce: str, n_tests: int, stop: bool,
                    raw: dict[int, str] | None = None) -> list[TestOutcome]:
    outcomes: dict[int, TestOutcome] = {}
    for line in result.stdout.split("\n"):
        if line.startswith(nonce):
            try:
                rec = json.loads(line[len(nonce):])
                outcomes.setdefault(int(rec["index"]), TestOutcome(
                    int(rec["index"]), str(rec["status"]), float(rec["time"]), str(rec["detail"])))
                if raw is not None and isinstance(rec.get("output"), str):
                    raw.setdefault(int(rec["index"]), rec["output"])
            except (ValueError, KeyError, TypeError):
                continue
    ordered = [outcomes[i] for i in range(n_tests) if i in outcomes]
    complete = len(ordered) == n_tests or (ordered and stop and not ordered[-1].passed)
    if result.status != "passed" or not complete:
        # the harness died (wall/CPU/memory limit, killed): the next test gets the job's verdict
        status = result.status if result.status != "passed" else "runtime_error"
        ordered = [o for i, o in enumerate(ordered) if o.index == i]
        first = len(ordered)
        if first < n_tests:
            detail = result.reason or result.stderr.strip()[-300:]
            ordered.append(TestOutcome(first, status, result.time, detail))
            if not stop:
                ordered += [TestOutcome(i, status, 0.0, "not run: " + detail)
                            for i in range(first + 1, n_tests)]
    return ordered


def run_tests(
    code: str,
    test_cases: Any,
    *,
    fn_name: str | None = None,
    stop_on_first_failure: bool = True,
    sandbox=None,
    timeout: float = DEFAULT_TIMEOUT,
    isolate_tests: bool = False,
) -> list[TestOutcome]:
    """Grade ``code`` on ``test_cases`` (see :func:`normalize_test_cases`) in the sandbox.

    Returns one :class:`TestOutcome` per test that ran: with ``stop_on_first_failure`` the list
    ends at the first failure (official semantics); otherwise every test has an outcome, so
    ``mean(o.passed)`` is the pass rate (Klear's soft code reward). Requires the sandbox opt-in.
    """
    return run_tests_batch([(code, test_cases, fn_name)], stop_on_first_failure=stop_on_first_failure,
                           sandbox=sandbox, timeout=timeout, isolate_tests=isolate_tests)[0]


def run_tests_batch(
    items: Sequence[tuple[str, Any, str | None]],
    *,
    stop_on_first_failure: bool = True,
    sandbox=None,
    timeout: float = DEFAULT_TIMEOUT,
    isolate_tests: bool = False,
    progress: bool = False,
) -> list[list[TestOutcome]]:
    """:func:`run_tests` for many ``(code, test_cases, fn_name)`` triples, in parallel."""
    from kwaiformers.sandbox import Sandbox

    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    sandbox = sandbox if sandbox is not None else _default_sandbox()
    if not isinstance(sandbox, Sandbox):
        raise TypeError(f"sandbox must be a kwaiformers.sandbox.Sandbox, got {type(sandbox)}")
    prepared = []
    for code, cases, fn in items:
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        prepared.append((code, *normalize_test_cases(cases, fn)))
    if isolate_tests:
        return _run_isolated(prepared, sandbox, timeout, stop_on_first_failure, progress)
    jobs, nonces = [], []
    for code, inputs, outputs, fn in prepared:
        nonce = "@@kwf-" + secrets.token_hex(8) + "@@"
        nonces.append(nonce)
        jobs.append(_grading_job(code, inputs, outputs, fn, timeout, stop_on_first_failure, nonce))
    results = sandbox.run_batch(jobs, progress=progress, desc="grading")
    return [_parse_outcomes(r, nonce, len(p[1]), stop_on_first_failure)
            for r, nonce, p in zip(results, nonces, prepared)]


def _run_isolated(prepared, sandbox, timeout, stop, progress) -> list[list[TestOutcome]]:
    """One sandbox job per test; expected outputs never enter the sandbox (compared here)."""
    from kwaiformers.sandbox import outputs_match

    jobs, index = [], []
    for p, (code, inputs, _outputs, fn) in enumerate(prepared):
        for t, inp in enumerate(inputs):
            nonce = "@@kwf-" + secrets.token_hex(8) + "@@"
            jobs.append((nonce, _grading_job(code, [inp], [""], fn, timeout, True, nonce, False)))
            index.append((p, t))
    results = sandbox.run_batch([j for _, j in jobs], progress=progress, desc="grading")
    out: list[list[TestOutcome]] = [[] for _ in prepared]
    for (p, t), (nonce, _), res in zip(index, jobs, results):
        raw: dict[int, str] = {}
        o = _parse_outcomes(res, nonce, 1, True, raw)[0]
        o.index = t
        want, fn = prepared[p][2][t], prepared[p][3]
        if o.status == "passed":
            got = raw.get(0, "")
            if fn:
                try:
                    ok = json.loads(got) == json.loads(want)
                except json.JSONDecodeError:
                    ok = False
            else:
                ok = outputs_match(got, want)
            if not ok:
                o.status, o.detail = "wrong_answer", "got " + got[:300]
        out[p].append(o)
    if stop:  # same verdicts as the sequential run: cut after the first failure
        for p, outcomes in enumerate(out):
            first = next((i for i, o in enumerate(outcomes) if not o.passed), None)
            if first is not None:
                out[p] = outcomes[: first + 1]
    return out


_SANDBOX = None


def _default_sandbox():
    global _SANDBOX
    from kwaiformers.sandbox import Sandbox

    if _SANDBOX is None:
        _SANDBOX = Sandbox()
    return _SANDBOX
