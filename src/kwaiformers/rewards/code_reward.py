"""Klear-Reasoner's soft code reward as a TRL reward function (usable by any TRL trainer).

Protocol (KlearReasoner ``verl/utils/reward_score/code_r1_compute.py``,
``compute_score(is_longcot=True)`` with ``reward_config.py``; paper §2.3 "soft reward"; design
note §1.6), the defaults being the official rules:

1. no ``</think>`` in the response: ``missing_think_end_reward`` (-0.5, the reasoning was cut);
2. no ``<think>``: ``missing_think_start_reward`` (-2; ``None`` disables the check; a ``<think>``
   pre-filled at the end of the prompt counts as present unless ``accept_prefilled_think=False``,
   a documented deviation: officially such a response gets -2);
3. the code is the last ```` ```python ```` block after ``</think>`` (Klear's regex search,
   :func:`extract_klear_code`); any other fence
   (```` ``` ````, ```` ```py ````, ```` ```cpp ````) or an empty block is a format error:
   ``no_code_reward`` (-1). ``code_fence="any"`` takes the last fenced block of any language
   instead (LiveCodeBench's rule, :func:`kwaiformers.evaluation.livecodebench.extract_code`);
4. otherwise the program runs on up to ``max_tests`` (16) randomly sampled test cases and the
   reward is the pass rate ``p``: ``2p - 1`` (``scale="signed"``, Klear's mean of +-1 per test)
   or ``p`` (``scale="unit"``). Under GRPO's group normalisation both give identical advantages;
   they differ for the positive-sample NLL threshold (all sampled tests pass: 1.0 in both
   scales) and for the format-error constants (which keep Klear's values in both scales).

Generated code runs **only** through :mod:`kwaiformers.sandbox` (via
:func:`kwaiformers.evaluation.livecodebench.run_tests_batch`), by default with every test in its
own sandbox job and the expected output kept outside it (``isolate_tests=True``: a policy cannot
read the expected outputs to forge a pass). Executing requires the sandbox opt-in
(``KWAIFORMERS_ALLOW_CODE_EXECUTION=1`` or a ``Sandbox(SandboxConfig(allow_code_execution=True))``
passed as ``sandbox``); the reward checks it at construction, not mid-training.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .math_reward import completion_text, prompt_text

__all__ = ["CODE_FENCES", "KlearCodeReward", "extract_klear_code", "pass_rate_reward"]

_SCALES = ("signed", "unit")
#: Values of :attr:`KlearCodeReward.code_fence`.
CODE_FENCES = ("python", "any")


def extract_klear_code(response: str, *, think_end: str = "</think>") -> str:
    """Klear's code extraction: the last ```` ```python ```` block after ``think_end``.

    The official search (``re.DOTALL``) is: ``</think>``, then greedily up to the last
    ```` ```python ```` + newline that a newline + closing fence follows, then lazily up to the
    first newline + closing fence. ``""`` when there is none (other fences do not count)."""
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    pattern = re.escape(think_end) + r".*```python\n(.*?)\n```"
    match = re.search(pattern, response, flags=re.DOTALL)
    return match.group(1) if match else ""


def pass_rate_reward(pass_rate: float, scale: str = "signed") -> float:
    """Map a pass rate ``p`` in [0, 1] to the soft reward (``2p - 1`` or ``p``)."""
    if not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"pass_rate must be in [0, 1], got {pass_rate}")
    if scale == "signed":
        return 2.0 * pass_rate - 1.0
    if scale == "unit":
        return pass_rate
    raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")


@dataclass
class KlearCodeReward:
    """Callable TRL reward: ``reward(completions=..., tests=[...], **kwargs)``.

    The test column (``tests_key``, falling back to ``test_cases``, ``input_output`` and
    ``ground_truth``) holds, per row, test cases in any form
    :func:`kwaiformers.evaluation.livecodebench.normalize_test_cases` accepts: a list of
    ``{"input", "output"}``, a LiveCodeBench ``{"inputs", "outputs", "fn_name"}`` mapping, or its
    JSON string. An optional ``fn_name`` column selects call-based (LeetCode-style) grading.

    Attributes:
        max_tests: test cases sampled per completion (Klear: 16; all of them if fewer).
        scale: ``"signed"`` (``2p - 1``, Klear) or ``"unit"`` (``p``).
        no_code_reward: reward without an extractable program (Klear's format error; default:
            the minimum of the scale, -1 signed / 0 unit).
        missing_think_end_reward: no ``</think>`` (Klear: -0.5); ``None`` treats it as "no code".
        missing_think_start_reward: no ``<think>`` (Klear: -2); ``None`` disables the check.
        accept_prefilled_think: a ``<think>`` at the end of the prompt counts as present.
        code_fence: ``"python"`` (only ```` ```python ```` blocks count, Klear) or ``"any"``.
        think_start, think_end: the reasoning tags.
        timeout: seconds per test case.
        isolate_tests: one sandbox job per test, expected outputs never enter the sandbox.
        seed: seed of the test-sampling RNG (``None``: nondeterministic).
        sandbox: a :class:`kwaiformers.sandbox.Sandbox` (default: the shared one of the
            LiveCodeBench grader, which needs ``KWAIFORMERS_ALLOW_CODE_EXECUTION=1``).
    """

    tests_key: str = "tests"
    max_tests: int = 16
    scale: str = "signed"
    no_code_reward: float | None = None
    timeout: float = 6.0
    isolate_tests: bool = True
    seed: int | None = None
    missing_think_end_reward: float | None = -0.5
    missing_think_start_reward: float | None = -2.0
    accept_prefilled_think: bool = True
    code_fence: str = "python"
    think_start: str = "<think>"
    think_end: str = "</think>"
    sandbox: Any = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.scale not in _SCALES:
            raise ValueError(f"scale must be one of {_SCALES}, got {self.scale!r}")
        if not isinstance(self.max_tests, int) or self.max_tests < 1:
            raise ValueError(f"max_tests must be a positive int, got {self.max_tests!r}")
        if self.code_fence not in CODE_FENCES:
            raise ValueError(f"code_fence must be one of {CODE_FENCES}, got {self.code_fence!r}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if self.no_code_reward is None:
            self.no_code_reward = -1.0 if self.scale == "signed" else 0.0
        if self.sandbox is None:
            from kwaiformers.sandbox import require_code_execution

            require_code_execution()  # fail at construction, not in the middle of training
        self._rng = random.Random(self.seed)

    @property
    def __name__(self) -> str:  # TRL names reward columns after it
        return "klear_code_reward"

    def _tests(self, kwargs: Mapping[str, Any], n: int) -> Sequence[Any]:
        for key in (self.tests_key, "test_cases", "input_output", "ground_truth"):
            if kwargs.get(key) is not None:
                tests = kwargs[key]
                if len(tests) != n:
                    raise ValueError(f"column {key!r} has {len(tests)} values for {n} completions")
                return tests
        raise ValueError(
            f"the code reward needs test cases in a dataset column {self.tests_key!r} (or "
            f"'test_cases' / 'input_output' / 'ground_truth'); got columns {sorted(kwargs)}"
        )

    def _sample(self, tests: Any, fn_name: str | None) -> tuple[list[dict[str, str]], str | None]:
        from kwaiformers.evaluation.livecodebench import normalize_test_cases

        if isinstance(tests, str):
            tests = json.loads(tests)
        inputs, outputs, fn = normalize_test_cases(tests, fn_name)
        if not inputs:
            raise ValueError("a code problem has no test cases")
        chosen = list(range(len(inputs)))
        if len(chosen) > self.max_tests:
            chosen = sorted(self._rng.sample(chosen, self.max_tests))
        return [{"input": inputs[i], "output": outputs[i]} for i in chosen], fn

    def format_reward(self, text: str, prompt: Any = None) -> float | None:
        """The reward for a response-format error (missing think tags), ``None`` when the
        format is fine."""
        if self.think_end not in text and self.missing_think_end_reward is not None:
            return float(self.missing_think_end_reward)
        if self.missing_think_start_reward is not None and self.think_start not in text:
            if not (self.accept_prefilled_think
                    and prompt_text(prompt).rstrip().endswith(self.think_start)):
                return float(self.missing_think_start_reward)
        return None

    def extract(self, text: str) -> str:
        """The program to run (``""``: none), by :attr:`code_fence`."""
        if self.code_fence == "python":
            return extract_klear_code(text, think_end=self.think_end)
        from kwaiformers.evaluation.livecodebench import extract_code

        return extract_code(text, think_end=self.think_end)

    def __call__(self, completions: Sequence[Any], prompts: Sequence[Any] | None = None,
                 **kwargs: Any) -> list[float]:
        from kwaiformers.evaluation.livecodebench import run_tests_batch

        all_tests = self._tests(kwargs, len(completions))
        fn_names = kwargs.get("fn_name") or [None] * len(completions)
        prompts = prompts if prompts is not None else [None] * len(completions)
        rewards: list[float | None] = [None] * len(completions)
        items, where, counts = [], [], []
        for i, (completion, tests, fn_name, prompt) in enumerate(
                zip(completions, all_tests, fn_names, prompts)):
            text = completion_text(completion)
            bad_format = self.format_reward(text, prompt)
            if bad_format is not None:
                rewards[i] = bad_format
                continue
            code = self.extract(text)
            if not code.strip():
                rewards[i] = float(self.no_code_reward)
                continue
            cases, fn = self._sample(tests, fn_name)
            items.append((code, cases, fn))
            where.append(i)
            counts.append(len(cases))
        if items:
            outcomes = run_tests_batch(items, stop_on_first_failure=False, sandbox=self.sandbox,
                                       timeout=self.timeout, isolate_tests=self.isolate_tests)
            for i, n_cases, result in zip(where, counts, outcomes):
                passed = sum(o.passed for o in result)  # tests that did not run count as failed
                rewards[i] = pass_rate_reward(passed / n_cases, self.scale)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and completions:
            log_metric("klear_code/no_code_frac", (len(completions) - len(items)) / len(completions))
        return [float(r) for r in rewards]  # type: ignore[arg-type]
