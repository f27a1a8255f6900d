"""`evaluate.load("eval/livecodebench")` from a checkout: opt-in, references as JSON (plain or raw
dataset rows with encoded private tests), pass@k through the sandbox."""

from __future__ import annotations

import json
import math
import os

import pytest

from kwaiformers.evaluation.livecodebench import encode_private_tests
from kwaiformers.sandbox import CodeExecutionNotAllowedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def lcb():
    evaluate = pytest.importorskip("evaluate")
    if os.geteuid() != 0:
        pytest.skip("namespace isolation needs root (CI runs as root)")
    return evaluate.load(os.path.join(ROOT, "eval", "livecodebench"), keep_in_memory=True)


def test_livecodebench_module(lcb, monkeypatch):
    monkeypatch.delenv("KWAIFORMERS_ALLOW_CODE_EXECUTION", raising=False)
    plain = json.dumps({"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"], "fn_name": None,
                        "difficulty": "easy", "platform": "atcoder"})
    raw_row = json.dumps({
        "question_id": "q2", "question_content": "double", "platform": "leetcode",
        "difficulty": "medium", "starter_code": "class Solution:\n    def double(self, x):",
        "public_test_cases": json.dumps([{"input": "2", "output": "4", "testtype": "functional"}]),
        "private_test_cases": encode_private_tests(
            [{"input": "-3", "output": "-6", "testtype": "functional"}]),
        "metadata": json.dumps({"func_name": "double"}), "contest_date": "2025-03-01T00:00:00",
    })
    add = "<think>sum</think>\n```python\nprint(sum(map(int, input().split())))\n```"
    sub = "<think>oops</think>\n```python\na, b = map(int, input().split())\nprint(a - b)\n```"
    dbl = ("<think>easy</think>\n```python\nclass Solution:\n    def double(self, x):\n"
           "        return 2 * x\n```")
    with pytest.raises(CodeExecutionNotAllowedError):
        lcb.compute(predictions=[[add, sub]], references=[plain])
    result = lcb.compute(predictions=[[add, sub], [dbl, "no code"]], references=[plain, raw_row],
                         k=[1, 2], allow_code_execution=True, return_details=True)
    # fractions in [0, 1], as evaluate's code_eval
    assert math.isclose(result["pass@1"], 0.5) and math.isclose(result["pass@2"], 1.0)
    assert math.isclose(result["pass@1/atcoder"], 0.5)
    assert math.isclose(result["pass@1/leetcode"], 0.5)
    assert result["details"][0]["verdicts"] == ["passed", "wrong_answer"]
    assert result["details"][1]["verdicts"] == ["passed", "no_code"]
