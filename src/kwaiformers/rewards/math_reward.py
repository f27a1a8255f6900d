"""Klear-Reasoner's math reward as a TRL reward function (usable by any TRL trainer).

Protocol (KlearReasoner ``verl/utils/reward_score/math_dapo.py``, ``compute_score(is_longcot=True,
is_use_math_verify=True)`` with ``reward_config.py``; design note §1.6): a response without
``</think>`` gets ``missing_think_end_reward`` (-0.5), one without ``<think>`` gets
``missing_think_start_reward`` (-2), otherwise math-verify on the text after the last
``</think>`` (:mod:`kwaiformers.evaluation.math_scoring`: default extraction configs, gold parsed
once as ``\\boxed{gold}``) gives ``correct_reward`` (+1) or ``wrong_reward`` (-1).

Documented deviations, each a field (set it to get the official behaviour):

- ``accept_prefilled_think=True``: a ``<think>`` pre-filled by the chat template at the end of the
  prompt counts as present (officially such a response gets -2; ``False`` restores that);
- ``multi_box="last"``: the last box wins when the answer holds several separate boxes
  (officially math-verify 0.9 reads them as a set, scored -1; ``"math_verify"`` restores that);
- ``unparsable_gold_reward=None``: an empty gold, or one math-verify cannot parse, yields ``None``
  (TRL: "not applicable", advantage 0) instead of a crash or the official -1 (set ``-1.0`` for
  the official value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kwaiformers.evaluation.math_scoring import parse_gold, score_response

__all__ = ["KlearMathReward", "completion_text", "klear_math_reward", "prompt_text"]


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversational list of messages (the
    assistant contents are concatenated)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and all(isinstance(m, dict) for m in completion):
        parts = []
        for message in completion:
            content = message.get("content", "")
            if isinstance(content, list):  # content blocks
                content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
            parts.append(str(content))
        return "".join(parts)
    raise TypeError(
        "a completion must be a str or a list of {'role', 'content'} messages, got "
        f"{type(completion).__name__}"
    )


def prompt_text(prompt: Any) -> str:
    """The text of a TRL prompt (string, or the last message of a conversational prompt)."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return completion_text([prompt[-1]])
    return ""


@dataclass
class KlearMathReward:
    """Callable TRL reward: ``reward(prompts=..., completions=..., answer=[...], **kwargs)``.

    Attributes:
        answer_key: dataset column holding the gold answer (``"answer"``; ``"solution"`` and
            ``"ground_truth"`` are tried when it is absent).
        correct_reward, wrong_reward: Klear +1 / -1.
        missing_think_end_reward: no ``</think>`` (truncated reasoning): Klear -0.5.
        missing_think_start_reward: no ``<think>`` in the response nor at the end of the prompt:
            Klear -2; ``None`` disables the check (models without think tags).
        accept_prefilled_think: a ``<think>`` at the end of the prompt counts as present.
        think_start, think_end: the reasoning tags.
        timeout_seconds: math-verify timeout (main thread only, see ``math_scoring``).
        multi_box: ``"last"`` or ``"math_verify"`` (see :func:`~kwaiformers.evaluation.math_scoring.score_response`).
        unparsable_gold_reward: the reward when the gold is empty or unparsable (``None``: not
            applicable; the official reward gives -1).
    """

    answer_key: str = "answer"
    correct_reward: float = 1.0
    wrong_reward: float = -1.0
    missing_think_end_reward: float = -0.5
    missing_think_start_reward: float | None = -2.0
    accept_prefilled_think: bool = True
    think_start: str = "<think>"
    think_end: str = "</think>"
    timeout_seconds: int | None = 5
    multi_box: str = "last"
    unparsable_gold_reward: float | None = None

    def __post_init__(self) -> None:
        from kwaiformers.evaluation.math_scoring import MULTI_BOX_MODES

        if self.multi_box not in MULTI_BOX_MODES:
            raise ValueError(f"multi_box must be one of {MULTI_BOX_MODES}, got {self.multi_box!r}")

    @property
    def __name__(self) -> str:  # TRL names reward columns after it
        return "klear_math_reward"

    def _golds(self, kwargs: dict[str, Any], n: int) -> Sequence[Any]:
        for key in (self.answer_key, "solution", "ground_truth"):
            if key in kwargs and kwargs[key] is not None:
                golds = kwargs[key]
                if len(golds) != n:
                    raise ValueError(f"column {key!r} has {len(golds)} values for {n} completions")
                return golds
        raise ValueError(
            f"the math reward needs the gold answers in a dataset column {self.answer_key!r} "
            f"(or 'solution' / 'ground_truth'); got columns {sorted(kwargs)}"
        )

    def score_one(self, completion: Any, gold: Any, prompt: Any = None) -> float | None:
        """The reward of one completion (``unparsable_gold_reward`` when the gold is empty or
        unparsable)."""
        text = completion_text(completion)
        if self.think_end not in text:
            return self.missing_think_end_reward
        if self.missing_think_start_reward is not None and self.think_start not in text:
            prefilled = (self.accept_prefilled_think
                         and prompt_text(prompt).rstrip().endswith(self.think_start))
            if not prefilled:
                return self.missing_think_start_reward
        parsed = parse_gold("" if gold is None else str(gold), timeout_seconds=self.timeout_seconds)
        if not parsed.ok:
            return self.unparsable_gold_reward
        score = score_response(text, parsed, think_end=self.think_end,
                               timeout_seconds=self.timeout_seconds, multi_box=self.multi_box)
        return self.correct_reward if score.correct else self.wrong_reward

    def __call__(self, completions: Sequence[Any], prompts: Sequence[Any] | None = None,
                 **kwargs: Any) -> list[float | None]:
        golds = self._golds(kwargs, len(completions))
        prompts = prompts if prompts is not None else [None] * len(completions)
        rewards = [self.score_one(c, g, p) for c, g, p in zip(completions, golds, prompts)]
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and rewards:
            format_values = {self.missing_think_end_reward, self.missing_think_start_reward} - {None}
            fmt = sum(r is not None and r in format_values for r in rewards) / len(rewards)
            log_metric("klear_math/format_error_frac", fmt)
        return rewards


#: Klear's math reward with the paper's values (a ready-made TRL reward function).
klear_math_reward = KlearMathReward()
