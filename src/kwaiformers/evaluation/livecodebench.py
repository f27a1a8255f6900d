"""LiveCodeBench (arXiv 2403.07974) code generation: grading, loading, prompts and pass@k.

Grading follows the official ``lcb_runner`` semantics (see :mod:`._lcb_harness`), always inside
:mod:`kwaiformers.sandbox`: one sandbox job per (program, test set) runs the tests in order with
a per-test alarm (6 s by default) and stops at the first failure; a sample is correct iff every
test passes. ``isolate_tests=True`` instead runs each test in its own sandbox job with the
expected output never entering the sandbox (slower, but a program cannot read the expected
outputs to forge a pass; use it for RL rewards against adversarial policies).
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import secrets
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kwaiformers.evaluation.runner import EvalSample, TaskAdapter, TaskResult, to_percent

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
    tests = json.dumps(spec)
    # the harness holds the decoded tests in memory: grow the address-space limit with them
    return Job(harness, timeout=wall, cpu_seconds=int(wall) + 1, extra_memory_mb=8 * len(
        tests) // (1 << 20), files={"solution.py": code, "tests.json": tests},
        trusted_program=True)  # the harness is ours: the fork server may compile it once


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
        # the grading process ended early (the program exited it, a signal, the job's wall or
        # CPU limit): the official grader's -1 ("killed"), or "memory" for the sandbox's memory
        # limit (the official grader has none: a documented deviation)
        status = "memory" if result.status == "memory" else "killed"
        ordered = [o for i, o in enumerate(ordered) if o.index == i]
        first = len(ordered)
        if first < n_tests:
            detail = f"grading process ended ({result.status}): " + (
                result.reason or result.stderr.strip()[-300:])
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
            got = raw.get(0)
            if got is None:  # call-based result that is not a plain JSON value
                ok = False
            elif fn:
                try:
                    ok = json.loads(got) == json.loads(want)
                except json.JSONDecodeError:
                    ok = False
            else:
                ok = outputs_match(got, want)
            if not ok:
                o.status = "wrong_answer"
                o.detail = o.detail or "got " + (got or "")[:300]
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


# -- dataset: loading, private-test decoding, windows ---------------------------------------------


LCB_HUB_ID = "livecodebench/code_generation_lite"
#: Date windows of the reasoning papers (Klear-Reasoner, DeepSeek-R1, Qwen3), inclusive bounds at
#: midnight like the official ``compute_scores.py --start_date/--end_date``.
WINDOWS: dict[str, tuple[str, str]] = {
    "v5": ("2024-08-01", "2025-02-01"),
    "v6": ("2025-02-01", "2025-05-01"),
}
#: The files that cover the windows above (release_v4 starts before 2024-08-01).
DEFAULT_WINDOW_SUBSET = "v4_v6"

SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem specification) "
    "and will generate a correct Python program that matches the specification and passes all "
    "tests."
)
FORMAT_WITH_STARTER = ("You will use the following starter code to write the solution to the "
                       "problem and enclose your code within delimiters.")
FORMAT_WITHOUT_STARTER = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly "
    "test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when "
    "the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT."
)


class _StringOnlyUnpickler(pickle.Unpickler):
    """Refuses every global lookup: only plain data (a ``str`` here) can be unpickled."""

    def find_class(self, module: str, name: str):  # noqa: D102
        raise pickle.UnpicklingError(
            f"refusing to unpickle global {module}.{name}: LiveCodeBench private tests must be a "
            "pickled JSON string")

    def persistent_load(self, pid):  # noqa: D102
        raise pickle.UnpicklingError("refusing persistent ids in LiveCodeBench private tests")


def _decode_pickled(value: str) -> Any:
    try:
        raw = zlib.decompress(base64.b64decode(value, validate=False))
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"private_test_cases is neither JSON nor base64/zlib data: {exc}") \
            from None
    try:
        payload = _StringOnlyUnpickler(io.BytesIO(raw)).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # truncated / corrupt pickle stream
        raise ValueError(f"private_test_cases pickle is corrupt: {exc!r}") from None
    if not isinstance(payload, str):
        raise ValueError(f"private_test_cases pickle holds a {type(payload).__name__}, "
                         "expected a JSON string")
    return json.loads(payload)


def decode_private_tests(value: str) -> list[dict[str, Any]]:
    """Decode ``private_test_cases``: a JSON list, or ``base64(zlib(pickle(json_string)))`` read
    with a restricted unpickler that accepts nothing but a plain ``str``."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise TypeError(f"private_test_cases must be a str, got {type(value).__name__}")
    if not value.strip():
        return []
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        decoded = _decode_pickled(value)
    if not isinstance(decoded, list):
        raise ValueError(f"private_test_cases must decode to a list, got {type(decoded).__name__}")
    return decoded


def encode_private_tests(tests: list[dict[str, Any]]) -> str:
    """The dataset's encoding (for fixtures): base64(zlib(pickle(json.dumps(tests))))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


@dataclass
class LCBProblem:
    """One ``code_generation_lite`` row (tests decoded)."""

    question_id: str
    question_title: str
    question_content: str
    platform: str
    contest_id: str
    contest_date: str
    starter_code: str
    difficulty: str
    public_tests: list[dict[str, Any]]
    private_tests: list[dict[str, Any]]
    fn_name: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LCBProblem:
        missing = [k for k in ("question_id", "question_content", "public_test_cases") if k not in row]
        if missing:
            raise ValueError(f"LiveCodeBench row lacks {missing}; columns: {sorted(row)}")
        public = row["public_test_cases"]
        public = json.loads(public) if isinstance(public, str) else list(public or [])
        metadata = row.get("metadata") or "{}"
        metadata = json.loads(metadata) if isinstance(metadata, str) else dict(metadata)
        date = row.get("contest_date")
        return cls(
            question_id=str(row["question_id"]), question_title=str(row.get("question_title", "")),
            question_content=str(row["question_content"]), platform=str(row.get("platform", "")),
            contest_id=str(row.get("contest_id", "")),
            contest_date=date.isoformat() if hasattr(date, "isoformat") else str(date or ""),
            starter_code=str(row.get("starter_code") or ""),
            difficulty=str(row.get("difficulty", "")), public_tests=public,
            private_tests=decode_private_tests(row.get("private_test_cases") or ""),
            fn_name=metadata.get("func_name") or None)

    @property
    def date(self) -> datetime:
        return datetime.fromisoformat(self.contest_date)

    def input_output(self) -> dict[str, Any]:
        """The official harness's ``input_output``: public then private tests."""
        tests = [*self.public_tests, *self.private_tests]
        return {"inputs": [t["input"] for t in tests], "outputs": [t["output"] for t in tests],
                "fn_name": self.fn_name}

    def to_reference(self) -> str:
        """The JSON reference string of the ``eval/livecodebench`` metric."""
        return json.dumps({"question_id": self.question_id, "difficulty": self.difficulty,
                           "platform": self.platform, **self.input_output()})


def _subset_files(subset: str) -> list[str]:
    """``release_vN`` -> test.jsonl..testN.jsonl; ``vN`` -> testN.jsonl; ``vX_vY`` -> X..Y."""
    def name(i: int) -> str:
        return "test.jsonl" if i == 1 else f"test{i}.jsonl"

    try:
        if subset.startswith("release_v"):
            return [name(i) for i in range(1, int(subset[len("release_v"):]) + 1)]
        if "_" in subset:
            a, b = subset.split("_")
            return [name(i) for i in range(int(a.lstrip("v")), int(b.lstrip("v")) + 1)]
        return [name(int(subset.lstrip("v")))]
    except ValueError:
        raise ValueError(f"subset must look like 'release_v6', 'v6' or 'v4_v6', got {subset!r}") \
            from None


def resolve_window(window: str | None = None, start_date: str | None = None,
                   end_date: str | None = None) -> tuple[datetime | None, datetime | None]:
    """``window`` in :data:`WINDOWS` (``"v5"``, ``"v6"``) or explicit ISO dates (inclusive)."""
    if window is not None:
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {sorted(WINDOWS)} (or pass dates), "
                             f"got {window!r}")
        start_date, end_date = start_date or WINDOWS[window][0], end_date or WINDOWS[window][1]
    parse = lambda d: datetime.fromisoformat(d) if d else None  # noqa: E731
    try:
        start, end = parse(start_date), parse(end_date)
    except ValueError as exc:
        raise ValueError(f"dates must be ISO format (YYYY-MM-DD): {exc}") from None
    if start and end and start > end:
        raise ValueError(f"start_date {start_date} is after end_date {end_date}")
    return start, end


def _iter_json_lines(paths: Sequence[str]):
    """Stream rows of local ``.jsonl`` files (or a ``.json`` list) without an Arrow cache."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".json"):
                rows = json.load(f)
                if not isinstance(rows, list):
                    raise ValueError(f"{path}: expected a JSON list of problems")
                yield from rows
                continue
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{lineno}: invalid JSON ({exc})") from None


def load_livecodebench(
    source: str = LCB_HUB_ID,
    *,
    subset: str | None = None,
    window: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    revision: str | None = None,
    platforms: Sequence[str] | None = None,
    difficulties: Sequence[str] | None = None,
) -> list[LCBProblem]:
    """Load LiveCodeBench problems without the (datasets>=4-incompatible) loading script.

    ``source``: the Hub dataset (its ``testN.jsonl`` files are read with the ``json`` builder;
    ``subset`` picks them, default ``release_v6`` or :data:`DEFAULT_WINDOW_SUBSET` with a window),
    a parquet mirror id ending in ``@parquet`` (e.g. ``lighteval/code_generation_lite@parquet``,
    loaded with ``subset`` as config), a local ``.parquet`` file (``load_dataset("parquet")``),
    a local ``.jsonl``/``.json`` file, or a directory of ``testN.jsonl`` files (local JSON is
    streamed directly, without building an Arrow cache). Problems are filtered by the date ``window`` / dates
    (inclusive), platforms and difficulties, and sorted by date then id.
    """
    import datasets

    start, end = resolve_window(window, start_date, end_date)
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a Hub id, a file or a directory, got {source!r}")
    if subset is None:
        subset = DEFAULT_WINDOW_SUBSET if (start or end) else "release_v6"
    if os.path.isdir(source):
        files = [os.path.join(source, f) for f in _subset_files(subset)
                 if os.path.exists(os.path.join(source, f))]
        if not files:
            raise ValueError(f"{source} holds none of {_subset_files(subset)}")
        ds = _iter_json_lines(files)
    elif os.path.isfile(source) and not source.endswith(".parquet"):
        ds = _iter_json_lines([source])
    elif os.path.isfile(source):
        ds = datasets.load_dataset("parquet", data_files=source, split="train")
    elif source.endswith("@parquet"):
        ds = datasets.load_dataset(source[: -len("@parquet")], subset, split="test",
                                   revision=revision)
    else:
        at = f"@{revision}" if revision else ""
        files = [f"hf://datasets/{source}{at}/{f}" for f in _subset_files(subset)]
        ds = datasets.load_dataset("json", data_files=files, split="train")
    problems = []
    for row in ds:
        problem = LCBProblem.from_row(row)
        if start or end:
            date = problem.date
            if (start and date < start) or (end and date > end):
                continue
        if platforms and problem.platform not in platforms:
            continue
        if difficulties and problem.difficulty not in difficulties:
            continue
        problems.append(problem)
    problems.sort(key=lambda p: (p.contest_date, p.question_id))
    return problems


# -- prompt, extraction, scoring ------------------------------------------------------------------


def build_prompt(problem: LCBProblem) -> str:
    """The official generic user prompt (``lcb_runner/prompts/code_generation.py``)."""
    prompt = f"### Question:\n{problem.question_content}\n\n"
    if problem.starter_code:
        prompt += f"### Format: {FORMAT_WITH_STARTER}\n```python\n{problem.starter_code}\n```\n\n"
    else:
        prompt += f"### Format: {FORMAT_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return prompt + "### Answer: (use the provided format with backticks)\n\n"


def build_messages(problem: LCBProblem, system_message: str | None = SYSTEM_MESSAGE) -> list[dict]:
    """Official chat format: system message + user prompt (``system_message=None`` merges them
    into a single user turn, the official ``OpenAIReasonPreview`` style)."""
    if system_message is None:
        return [{"role": "user", "content": SYSTEM_MESSAGE + "\n\n" + build_prompt(problem)}]
    return [{"role": "system", "content": system_message},
            {"role": "user", "content": build_prompt(problem)}]


def extract_code(response: str, *, think_end: str = "</think>",
                 require_think_end: bool = True) -> str:
    """The last fenced code block after the last ``think_end``: the lines between the last two
    lines containing a triple backtick (official rule); ``""`` if there is none or the reasoning
    never ended (``require_think_end``)."""
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    index = response.rfind(think_end)
    if index < 0 and require_think_end:
        return ""
    text = response[index + len(think_end):] if index >= 0 else response
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1: fences[-1]])


def problem_from_reference(reference: str | Mapping[str, Any]) -> dict[str, Any]:
    """Parse an ``eval/livecodebench`` reference: JSON with ``inputs``/``outputs``/``fn_name``
    (or ``input_output``), or a raw dataset row; optional ``difficulty``/``platform``."""
    ref = json.loads(reference) if isinstance(reference, str) else dict(reference)
    if not isinstance(ref, dict):
        raise ValueError("a LiveCodeBench reference must be a JSON object")
    if "public_test_cases" in ref:
        p = LCBProblem.from_row(ref)
        return {"id": p.question_id, "difficulty": p.difficulty, "platform": p.platform,
                **p.input_output()}
    io_ = ref.get("input_output", ref)
    io_ = json.loads(io_) if isinstance(io_, str) else io_
    inputs, outputs, fn = normalize_test_cases(io_, ref.get("fn_name"))
    return {"id": str(ref.get("question_id", ref.get("id", ""))),
            "difficulty": ref.get("difficulty") or "unknown",
            "platform": ref.get("platform") or "unknown",
            "inputs": inputs, "outputs": outputs, "fn_name": fn}


def score_livecodebench(
    predictions: Sequence[Sequence[str]],
    problems: Sequence[LCBProblem | Mapping[str, Any] | str],
    k_values: Sequence[int] = (1,),
    *,
    finish_reasons: Sequence[Sequence[str]] | None = None,
    require_think_end: bool = True,
    extract: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    sandbox=None,
    progress: bool = False,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """pass@1 (= avg@n) and unbiased pass@k, overall and per difficulty and platform, as
    fractions in [0, 1] (``evaluate``'s convention, like ``code_eval``; the runner shows percent).

    ``predictions[p]`` holds the n full responses for problem p (code is extracted with
    :func:`extract_code` unless ``extract=False``); truncated responses (``finish_reason ==
    "length"``) and responses without code count as wrong without being run.
    """
    from kwaiformers.evaluation.runner import check_responses_per_problem, pass_at_k

    n = check_responses_per_problem(predictions, problems, k_values, "problems")
    parsed = []
    for prob in problems:
        if isinstance(prob, LCBProblem):
            parsed.append({"id": prob.question_id, "difficulty": prob.difficulty,
                           "platform": prob.platform, **prob.input_output()})
        else:
            parsed.append(problem_from_reference(prob))
        if not parsed[-1]["inputs"]:
            raise ValueError(f"problem {parsed[-1]['id'] or len(parsed) - 1} has no test cases; "
                             "it cannot be graded")
    items, where, codes = [], [], []
    for p, responses in enumerate(predictions):
        if isinstance(responses, str):
            raise TypeError(f"predictions[{p}] must be a list of responses, not a str")
        reasons = finish_reasons[p] if finish_reasons is not None else ["stop"] * n
        row = []
        for j, (text, reason) in enumerate(zip(responses, reasons)):
            code = (extract_code(text, require_think_end=require_think_end) if extract
                    else text) if reason != "length" else ""
            row.append(code)
            if code.strip():
                items.append((code, {"inputs": parsed[p]["inputs"],
                                     "outputs": parsed[p]["outputs"]}, parsed[p]["fn_name"]))
                where.append((p, j))
        codes.append(row)
    graded = run_tests_batch(items, sandbox=sandbox, timeout=timeout, progress=progress) \
        if items else []
    verdicts = [[("truncated" if finish_reasons and finish_reasons[p][j] == "length" else
                  "no_code") for j in range(n)] for p in range(len(predictions))]
    for (p, j), outcomes in zip(where, graded):
        n_tests = len(parsed[p]["inputs"])
        ok = len(outcomes) == n_tests and all(o.passed for o in outcomes)
        verdicts[p][j] = "passed" if ok else (outcomes[-1].status if outcomes else "runtime_error")
    per_problem = []
    for p, info in enumerate(parsed):
        correct = [v == "passed" for v in verdicts[p]]
        per_problem.append({"id": info["id"], "difficulty": info["difficulty"],
                            "platform": info["platform"], "verdicts": verdicts[p],
                            "num_correct": sum(correct), "pass@1": sum(correct) / n})

    def block(rows: list[dict[str, Any]], suffix: str = "") -> dict[str, float]:
        out = {}
        for k in sorted(set(k_values) | {1}):
            out[f"pass@{k}{suffix}"] = sum(
                pass_at_k(n, r["num_correct"], k) for r in rows) / len(rows)
        return out

    metrics = block(per_problem)
    for field_name in ("difficulty", "platform"):
        for value in sorted({r[field_name] for r in per_problem} - {"", "unknown"}):
            rows = [r for r in per_problem if r[field_name] == value]
            metrics.update(block(rows, f"/{value}"))
            metrics[f"num_problems/{value}"] = float(len(rows))
    total = n * len(predictions)
    metrics["no_code_rate"] = sum(v.count("no_code") for v in verdicts) / total
    metrics["truncated_rate"] = sum(v.count("truncated") for v in verdicts) / total
    return metrics, per_problem


# -- runner task and CLI: kwaiformers eval livecodebench -------------------------------------------


class LiveCodeBenchTask(TaskAdapter):
    """LiveCodeBench as a :class:`~kwaiformers.evaluation.runner.TaskAdapter` (code generation,
    official prompt, sandboxed grading)."""

    dataset_split = "test"
    dataset_config = None

    def __init__(self, source: str = LCB_HUB_ID, *, subset: str | None = None,
                 window: str | None = None, start_date: str | None = None,
                 end_date: str | None = None, revision: str | None = None,
                 platforms: Sequence[str] | None = None, difficulties: Sequence[str] | None = None,
                 system_message: str | None = SYSTEM_MESSAGE, require_think_end: bool = True,
                 timeout: float = DEFAULT_TIMEOUT, sandbox=None, limit: int | None = None) -> None:
        resolve_window(window, start_date, end_date)  # validate early
        self.source, self.subset, self.window = source, subset, window
        self.start_date = start_date or (WINDOWS[window][0] if window else None)
        self.end_date = end_date or (WINDOWS[window][1] if window else None)
        self.dataset_revision = revision
        self.platforms, self.difficulties = platforms, difficulties
        self.system_message, self.require_think_end = system_message, require_think_end
        self.timeout, self.sandbox, self.limit = timeout, sandbox, limit
        self.name = f"livecodebench_{window}" if window else "livecodebench"
        self.dataset_type = source if not os.path.exists(source) else "local"
        self.dataset_name = "LiveCodeBench" + (f" {window}" if window else "")
        self._problems: dict[str, LCBProblem] = {}

    def load_samples(self) -> list[EvalSample]:
        problems = load_livecodebench(
            self.source, subset=self.subset, start_date=self.start_date, end_date=self.end_date,
            revision=self.dataset_revision, platforms=self.platforms,
            difficulties=self.difficulties)
        if self.limit:
            problems = problems[: self.limit]
        self._problems = {p.question_id: p for p in problems}
        return [EvalSample(p.question_id, {"difficulty": p.difficulty, "platform": p.platform})
                for p in problems]

    def build_messages(self, sample) -> list[dict[str, Any]]:
        return build_messages(self._problems[sample.id], self.system_message)

    def dataset_args(self) -> dict[str, Any]:
        return {"subset": self.subset, "start_date": self.start_date, "end_date": self.end_date,
                "num_problems": len(self._problems) or None}

    def score(self, samples, generations, k_values) -> TaskResult:
        preds = [[g.text for g in generations[s.id]] for s in samples]
        reasons = [[g.finish_reason for g in generations[s.id]] for s in samples]
        metrics, per_problem = score_livecodebench(
            preds, [self._problems[s.id] for s in samples], k_values, finish_reasons=reasons,
            require_think_end=self.require_think_end, timeout=self.timeout,
            sandbox=self.sandbox, progress=True)
        metrics = to_percent(metrics)  # results.json / table / model-index: percent, labelled
        card = [("pass@1", metrics["pass@1"])] + [
            (f"pass@{k}", metrics[f"pass@{k}"]) for k in k_values if k > 1]
        info = {"num_problems": len(samples), "window": self.window,
                "start_date": self.start_date, "end_date": self.end_date,
                "timeout_per_test": self.timeout}
        return TaskResult(metrics, card, per_problem, info, metrics_unit="percent")


def add_arguments(parser) -> None:
    from kwaiformers.evaluation.runner import add_common_arguments

    parser.add_argument("--dataset", default=LCB_HUB_ID,
                        help="Hub id, '<id>@parquet' mirror, a local jsonl/parquet file or a "
                             "directory of testN.jsonl files")
    parser.add_argument("--subset", default=None,
                        help="release_vN | vN | vX_vY (default: v4_v6 with a window, else "
                             "release_v6)")
    parser.add_argument("--window", choices=sorted(WINDOWS), default=None,
                        help="v5 = 2024-08-01..2025-02-01, v6 = 2025-02-01..2025-05-01")
    parser.add_argument("--start-date", default=None, help="custom window start (YYYY-MM-DD)")
    parser.add_argument("--end-date", default=None, help="custom window end (inclusive)")
    parser.add_argument("--revision", default=None, help="dataset revision (commit) to pin")
    parser.add_argument("--platform", action="append", default=None,
                        help="leetcode | codeforces | atcoder (repeatable)")
    parser.add_argument("--difficulty", action="append", default=None,
                        help="easy | medium | hard (repeatable)")
    parser.add_argument("--no-system-message", action="store_true",
                        help="put the official system sentence in the user turn instead")
    parser.add_argument("--no-think", action="store_true",
                        help="non-reasoning model: extract code without requiring </think>")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per test")
    parser.add_argument("--allow-code-execution", action="store_true",
                        help="opt in to running generated code in the sandbox (or set "
                             "KWAIFORMERS_ALLOW_CODE_EXECUTION=1)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")
    add_common_arguments(parser, default_n=1)


def run(args) -> int:
    from kwaiformers.evaluation.runner import print_summary, run_from_args
    from kwaiformers.sandbox import Sandbox, SandboxConfig

    sandbox = Sandbox(SandboxConfig(allow_code_execution=True if args.allow_code_execution
                                    else None))
    task = LiveCodeBenchTask(
        args.dataset, subset=args.subset, window=args.window, start_date=args.start_date,
        end_date=args.end_date, revision=args.revision, platforms=args.platform,
        difficulties=args.difficulty,
        system_message=None if args.no_system_message else SYSTEM_MESSAGE,
        require_think_end=not args.no_think, timeout=args.timeout, sandbox=sandbox,
        limit=args.limit)
    results = run_from_args(task, args)
    print_summary(results)
    print(f"results: {os.path.join(args.output_dir, 'results.json')}")
    return 0
