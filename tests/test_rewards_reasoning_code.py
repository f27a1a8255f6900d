"""Klear soft code reward: pass rate over sampled tests, executed only through the sandbox."""

from __future__ import annotations

import json
import os

import pytest

from kwaiformers.rewards.code_reward import KlearCodeReward, pass_rate_reward


def test_pass_rate_scales():
    assert pass_rate_reward(0.75) == 0.5
    assert pass_rate_reward(0.75, "unit") == 0.75
    with pytest.raises(ValueError, match="scale"):
        pass_rate_reward(0.5, "log")
    with pytest.raises(ValueError, match="pass_rate"):
        pass_rate_reward(1.5)


def test_refuses_without_opt_in(monkeypatch):
    from kwaiformers.sandbox import CodeExecutionNotAllowedError

    monkeypatch.delenv("KWAIFORMERS_ALLOW_CODE_EXECUTION", raising=False)
    with pytest.raises(CodeExecutionNotAllowedError):
        KlearCodeReward()
    with pytest.raises(ValueError, match="max_tests"):
        KlearCodeReward(max_tests=0, sandbox=object())


@pytest.fixture(scope="module")
def sandbox():
    from kwaiformers.sandbox import Sandbox, SandboxConfig

    if os.geteuid() != 0:
        pytest.skip("namespace isolation needs root (CI runs as root)")
    return Sandbox(SandboxConfig(allow_code_execution=True, startup_grace=1.0))


def _fence(code: str) -> str:
    return f"<think>plan</think>\n```python\n{code}\n```"


def test_soft_reward_through_the_sandbox(sandbox):
    # doubles its input; the "wrong" program fails exactly the tests with input >= 3
    tests = [{"input": f"{i}\n", "output": f"{2 * i}\n"} for i in range(1, 5)]
    right = "print(2 * int(input()))"
    half = "x = int(input())\nprint(2 * x if x < 3 else 0)"
    completions = [_fence(right), _fence(half), "<think>no code</think> sorry",
                   "```python\nprint(1)\n```"]  # no </think>: the reasoning never ended
    for isolate in (False, True):
        reward = KlearCodeReward(sandbox=sandbox, isolate_tests=isolate, timeout=5.0, seed=0)
        assert reward(completions=completions, tests=[tests] * 4) == [1.0, 0.0, -1.0, -1.0]
    unit = KlearCodeReward(sandbox=sandbox, scale="unit", isolate_tests=False)
    conv = [[{"role": "assistant", "content": _fence(half)}]]
    assert unit(completions=conv, tests=[json.dumps({"inputs": [t["input"] for t in tests],
                                                     "outputs": [t["output"] for t in tests]})]) == [0.5]
    assert unit.__name__ == "klear_code_reward"


def test_samples_at_most_max_tests(sandbox):
    tests = [{"input": f"{i}\n", "output": f"{i}\n"} for i in range(40)]
    reward = KlearCodeReward(sandbox=sandbox, max_tests=3, isolate_tests=False, seed=1)
    cases, _ = reward._sample(tests, None)
    assert len(cases) == 3 and all(c in tests for c in cases)
    # echo passes every sampled test
    assert reward(completions=[_fence("print(input())")], tests=[tests]) == [1.0]
    with pytest.raises(ValueError, match="test cases in a dataset column"):
        reward(completions=["x"], other=[1])
