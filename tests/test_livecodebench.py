"""LiveCodeBench: private-test decoding (restricted unpickler), loader + date windows, official
prompt / extraction / grading semantics (through the sandbox), pass@k, runner scoring mode."""

from __future__ import annotations

import base64
import json
import math
import os
import pickle
import zlib

import pytest

from kwaiformers.evaluation.livecodebench import (
    SYSTEM_MESSAGE,
    LCBProblem,
    LiveCodeBenchTask,
    build_messages,
    decode_private_tests,
    encode_private_tests,
    extract_code,
    load_livecodebench,
    run_tests,
    score_livecodebench,
)
from kwaiformers.evaluation.runner import evaluate_task
from kwaiformers.sandbox import Sandbox, SandboxConfig

TWO_SUM_STARTER = "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        "


def _row(qid, platform, date, difficulty, public, private, starter="", func=None, encode=False):
    return {
        "question_title": f"title {qid}",
        "question_content": f"Problem {qid}: solve it.",
        "platform": platform,
        "question_id": qid,
        "contest_id": f"c-{qid}",
        "contest_date": date,
        "starter_code": starter,
        "difficulty": difficulty,
        "public_test_cases": json.dumps(public),
        "private_test_cases": encode_private_tests(private) if encode else json.dumps(private),
        "metadata": json.dumps({"func_name": func} if func else {}),
    }


def fixture_rows():
    fn = "functional"
    return {
        "test5.jsonl": [
            # LeetCode, call-based, private tests in the base64/zlib/pickle encoding (v5 window)
            _row("lc-1", "leetcode", "2024-09-14T00:00:00", "easy",
                 [{"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": fn}],
                 [{"input": "[3,2,4]\n6", "output": "[1, 2]", "testtype": fn},
                  {"input": "[3,3]\n6", "output": "[0, 1]", "testtype": fn}],
                 starter=TWO_SUM_STARTER, func="twoSum", encode=True),
            # AtCoder stdin (v5 window)
            _row("abc-1", "atcoder", "2024-12-07T00:00:00", "medium",
                 [{"input": "3 4\n", "output": "7\n", "testtype": "stdin"}],
                 [{"input": "10 -2\n", "output": "8\n", "testtype": "stdin"}]),
            # before both windows
            _row("abc-0", "atcoder", "2024-07-20T00:00:00", "easy",
                 [{"input": "1\n", "output": "1\n", "testtype": "stdin"}], []),
        ],
        "test6.jsonl": [
            # Codeforces stdin (v6 window), float output
            _row("cf-1", "codeforces", "2025-03-01T00:00:00", "hard",
                 [{"input": "1 4\n", "output": "0.25\n", "testtype": "stdin"}],
                 [{"input": "3 4\n", "output": "0.75\n", "testtype": "stdin"}], encode=True),
        ],
    }


@pytest.fixture
def lcb_dir(tmp_path):
    for name, rows in fixture_rows().items():
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(tmp_path)


@pytest.fixture(scope="module")
def sandbox():
    if os.geteuid() != 0:
        pytest.skip("namespace isolation needs root (CI runs as root)")
    return Sandbox(SandboxConfig(allow_code_execution=True, startup_grace=1.0))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/kwf-lcb-pwned",))


def test_private_tests_decoding_and_malicious_pickle():
    tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    assert decode_private_tests(json.dumps(tests)) == tests
    assert decode_private_tests(encode_private_tests(tests)) == tests
    assert decode_private_tests("") == []
    evil = base64.b64encode(zlib.compress(pickle.dumps(_Evil()))).decode()
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle global"):
        decode_private_tests(evil)
    assert not os.path.exists("/tmp/kwf-lcb-pwned")
    not_str = base64.b64encode(zlib.compress(pickle.dumps([1, 2]))).decode()
    with pytest.raises(ValueError, match="expected a JSON string"):
        decode_private_tests(not_str)
    with pytest.raises(ValueError, match="neither JSON nor base64"):
        decode_private_tests("%%% not base64 %%%")


def test_loader_windows_and_filters(lcb_dir):
    everything = load_livecodebench(lcb_dir, subset="v5_v6")
    assert [p.question_id for p in everything] == ["abc-0", "lc-1", "abc-1", "cf-1"]
    lc = everything[1]
    assert lc.fn_name == "twoSum" and len(lc.private_tests) == 2
    assert lc.input_output()["inputs"][0] == "[2,7,11,15]\n9"
    assert [p.question_id for p in load_livecodebench(lcb_dir, window="v5", subset="v5_v6")] == [
        "lc-1", "abc-1"]
    assert [p.question_id for p in load_livecodebench(lcb_dir, window="v6", subset="v5_v6")] == [
        "cf-1"]
    custom = load_livecodebench(lcb_dir, subset="v5_v6", start_date="2024-07-01",
                                end_date="2024-12-31", platforms=["atcoder"])
    assert [p.question_id for p in custom] == ["abc-0", "abc-1"]
    assert len(load_livecodebench(lcb_dir, subset="v6")) == 1
    # the datasets (Arrow) path: a parquet file through load_dataset("parquet")
    import datasets

    parquet = os.path.join(lcb_dir, "lcb.parquet")
    datasets.Dataset.from_list(fixture_rows()["test5.jsonl"]).to_parquet(parquet)
    assert [p.question_id for p in load_livecodebench(parquet, window="v5")] == ["lc-1", "abc-1"]
    with pytest.raises(ValueError, match="window must be one of"):
        load_livecodebench(lcb_dir, window="v7")
    with pytest.raises(ValueError, match="subset must look like"):
        load_livecodebench(lcb_dir, subset="latest")


def test_prompt_and_extraction(lcb_dir):
    problems = {p.question_id: p for p in load_livecodebench(lcb_dir, subset="v5_v6")}
    msgs = build_messages(problems["lc-1"])
    assert msgs[0] == {"role": "system", "content": SYSTEM_MESSAGE}
    assert "### Question:\nProblem lc-1: solve it." in msgs[1]["content"]
    assert "starter code" in msgs[1]["content"] and TWO_SUM_STARTER in msgs[1]["content"]
    user = build_messages(problems["abc-1"], system_message=None)[0]["content"]
    assert user.startswith(SYSTEM_MESSAGE) and "# YOUR CODE HERE" in user
    assert user.endswith("### Answer: (use the provided format with backticks)\n\n")
    response = "<think>```python\nprint('draft')\n```</think>\nA\n```python\nx = 1\n```\nB\n" \
               "```python\nprint(2)\n```\nDone."
    assert extract_code(response) == "print(2)"
    assert extract_code("```python\nprint(1)\n```") == ""  # reasoning never ended
    assert extract_code("```python\nprint(1)\n```", require_think_end=False) == "print(1)"
    assert extract_code("</think> no code") == ""


def test_grading_semantics(sandbox):
    stdin_tests = [{"input": "1 4\n", "output": "0.25\n"}, {"input": "3 4\n", "output": "0.75"},
                   {"input": "1 8\n", "output": "0.125\n"}]
    ratio = "a, b = map(int, input().split())\nprint(a / b)\n"
    wrong_second = "a, b = map(int, input().split())\nprint(0.25)\n"
    slow = "import time\ntime.sleep(10)\n"
    call_tests = [{"input": "[2,7,11,15]\n9", "output": "[0, 1]"},
                  {"input": "[3,2,4]\n6", "output": "[1, 2]"}]
    tuple_solution = ("class Solution:\n    def twoSum(self, nums, target):\n"
                      "        seen = {}\n        for i, x in enumerate(nums):\n"
                      "            if target - x in seen:\n                return (seen[target - x], i)\n"
                      "            seen[x] = i\n")
    main_guard = ("def main():\n    a, b = map(int, input().split())\n    print(f'{a / b:.4f}')\n"
                  "if __name__ == '__main__':\n    main()\n")
    crash = "raise SystemExit(0) if False else int('x')\n"
    results = {
        "ratio": run_tests(ratio, stdin_tests, sandbox=sandbox),
        "wrong_second": run_tests(wrong_second, stdin_tests, sandbox=sandbox),
        "wrong_all": run_tests(wrong_second, stdin_tests, sandbox=sandbox,
                               stop_on_first_failure=False),
        "slow": run_tests(slow, stdin_tests, sandbox=sandbox, timeout=1.0),
        "tuple": run_tests(tuple_solution, call_tests, fn_name="twoSum", sandbox=sandbox),
        "main_guard": run_tests(main_guard, stdin_tests, sandbox=sandbox),  # 0.2500 == 0.25
        "crash": run_tests(crash, stdin_tests, sandbox=sandbox),
        "isolated": run_tests(tuple_solution, call_tests, fn_name="twoSum", sandbox=sandbox,
                              isolate_tests=True),
    }
    assert [o.status for o in results["ratio"]] == ["passed"] * 3
    assert [o.status for o in results["wrong_second"]] == ["passed", "wrong_answer"]
    assert [o.passed for o in results["wrong_all"]] == [True, False, False]
    assert [o.status for o in results["slow"]] == ["timeout"]
    assert [o.status for o in results["tuple"]] == ["passed", "passed"]
    assert [o.status for o in results["main_guard"]] == ["passed"] * 3
    assert [o.status for o in results["crash"]] == ["runtime_error"]
    assert [o.status for o in results["isolated"]] == ["passed", "passed"]
    with pytest.raises(ValueError, match="'input' and 'output'"):
        run_tests("pass", [{"in": "1"}], sandbox=sandbox)


def test_score_and_runner_scoring_mode(tmp_path, lcb_dir, sandbox):
    task = LiveCodeBenchTask(lcb_dir, subset="v5_v6", window="v5", sandbox=sandbox, timeout=2.0)
    good_lc = ("<think>ok</think>\n```python\nclass Solution:\n    def twoSum(self, nums, target):\n"
               "        for i in range(len(nums)):\n            for j in range(i + 1, len(nums)):\n"
               "                if nums[i] + nums[j] == target:\n                    return [i, j]\n"
               "```")
    good_abc = "<think>add</think>\n```python\nprint(sum(map(int, input().split())))\n```"
    bad_abc = "<think>sub</think>\n```python\na, b = map(int, input().split())\nprint(a - b)\n```"
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(json.dumps(r) for r in [
        {"id": "lc-1", "responses": [good_lc, "no code at all"]},
        {"id": "abc-1", "responses": [good_abc, bad_abc]},
    ]))
    results = evaluate_task(task, output_dir=tmp_path / "out", predictions=preds,
                            k_values=(1, 2), progress=False)
    m = results["metrics"]
    assert math.isclose(m["pass@1"], 50.0) and math.isclose(m["pass@2"], 100.0)
    assert math.isclose(m["pass@1/easy"], 50.0) and math.isclose(m["pass@1/atcoder"], 50.0)
    assert m["num_problems/leetcode"] == 1.0 and math.isclose(m["no_code_rate"], 25.0)
    assert results["num_problems"] == 2 and results["metrics_unit"] == "percent"
    assert results["dataset"]["start_date"] == "2024-08-01"
    per = {r["id"]: r["verdicts"] for r in results["per_sample"]}
    assert per == {"lc-1": ["passed", "no_code"], "abc-1": ["passed", "wrong_answer"]}
    assert "pass@1 (livecodebench_v5, %)" in (tmp_path / "out" / "README.md").read_text()
    # the evaluate-style entry point on raw references gives the same numbers, as fractions
    problems = [p for p in load_livecodebench(lcb_dir, window="v5", subset="v5_v6")]
    refs = [p.to_reference() for p in problems]
    metrics, _ = score_livecodebench([[good_lc, "x"], [good_abc, bad_abc]], refs, (1, 2),
                                     sandbox=sandbox)
    assert math.isclose(metrics["pass@1"], 0.5) and math.isclose(metrics["no_code_rate"], 0.25)
    with pytest.raises(ValueError, match="no test cases"):
        score_livecodebench([["x"]], [json.dumps({"inputs": [], "outputs": [], "fn_name": None})],
                            sandbox=sandbox)
    assert isinstance(LCBProblem.from_row(fixture_rows()["test6.jsonl"][0]).private_tests, list)


def test_cli_scoring_only(tmp_path, lcb_dir, monkeypatch):
    from kwaiformers.cli import main

    if os.geteuid() != 0:
        pytest.skip("namespace isolation needs root (CI runs as root)")
    monkeypatch.delenv("KWAIFORMERS_ALLOW_CODE_EXECUTION", raising=False)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "cf-1", "responses": [
        "<think>r</think>\n```python\na, b = map(int, input().split())\nprint(a / b)\n```"]}))
    args = ["eval", "livecodebench", "--dataset", lcb_dir, "--subset", "v5_v6", "--window", "v6",
            "--predictions", str(preds), "--output-dir", str(tmp_path / "o"), "--no-progress"]
    from kwaiformers.sandbox import CodeExecutionNotAllowedError

    with pytest.raises(CodeExecutionNotAllowedError):
        main(args)
    assert main([*args, "--allow-code-execution"]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["metrics"]["pass@1"] == 100.0 and results["num_problems"] == 1
    assert results["dataset"]["num_problems"] == 1 and results["info"]["window"] == "v6"
