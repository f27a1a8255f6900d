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
        assert reward(completions=completions, tests=[tests] * 4) == [1.0, 0.0, -1.0, -0.5]
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


def test_klear_code_extraction_only_python_fences():
    from kwaiformers.rewards.code_reward import extract_klear_code

    assert extract_klear_code("<think>a</think>\n```python\nx = 1\n```") == "x = 1"
    # the last python block after </think>; a later non-python block does not count
    two = "<think>a</think>\n```python\nfirst\n```\ntext\n```python\nsecond\n```\n```\nout\n```"
    assert extract_klear_code(two) == "second"
    assert extract_klear_code("<think>```python\nx\n```</think> none") == ""  # before </think>
    for fence in ("```", "```py", "```cpp", "```python3", "```Python"):
        assert extract_klear_code(f"<think>a</think>\n{fence}\nprint(1)\n```") == ""
    assert extract_klear_code("<think>a</think>\n```python\n\n```") == ""  # empty block
    assert extract_klear_code("<think>a</think>\n```python\nprint(1)") == ""  # unclosed
    with pytest.raises(TypeError, match="response"):
        extract_klear_code(None)  # type: ignore[arg-type]


def test_klear_code_format_rules_are_official_defaults_and_configurable():
    # format errors are decided before any code runs, so no sandbox is needed here
    reward = KlearCodeReward(sandbox=object())
    code = "\n```python\nprint(1)\n```"
    cases = {
        f"<think>plan{code}": -0.5,  # no </think> (checked first, as official)
        code: -0.5,
        f"plan</think>{code}": -2.0,  # no <think>
        "<think>plan</think>\n```\nprint(1)\n```": -1.0,  # not a python fence
        "<think>plan</think>\n```cpp\nint main(){}\n```": -1.0,
        "<think>plan</think> no code at all": -1.0,
    }
    got = reward(completions=list(cases), tests=[[{"input": "", "output": "1"}]] * len(cases))
    assert got == list(cases.values())
    assert reward.format_reward(f"plan</think>{code}", prompt="Q\n<think>\n") is None  # prefilled
    strict = KlearCodeReward(sandbox=object(), accept_prefilled_think=False)
    assert strict.format_reward(f"plan</think>{code}", prompt="Q\n<think>\n") == -2.0
    # the previous behaviour is one setting away
    lenient = KlearCodeReward(sandbox=object(), missing_think_end_reward=None,
                              missing_think_start_reward=None, code_fence="any")
    assert lenient.format_reward(code) is None and lenient.format_reward(f"p</think>{code}") is None
    assert lenient(completions=[f"<think>p{code}"], tests=[[{"input": "", "output": "1"}]]) == [-1.0]
    assert lenient.extract("<think>p</think>\n```\nprint(2)\n```") == "print(2)"
    with pytest.raises(ValueError, match="code_fence"):
        KlearCodeReward(sandbox=object(), code_fence="cpp")
