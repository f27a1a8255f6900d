"""Klear-Reasoner's math reward as a TRL reward function (usable by any TRL trainer).

Protocol (KlearReasoner ``verl/utils/reward_score/math_dapo.py`` with ``reward_config.py``;
design note §1.6): a response without ``</think>`` gets ``missing_think_end_reward`` (-0.5), one
without ``<think>`` gets ``missing_think_start_reward`` (-2; a ``<think>`` pre-filled by the chat
template at the end of the prompt counts as present), otherwise math-verify on the text after the
last ``</think>`` (:mod:`kwaiformers.evaluation.math_scoring`, gold parsed once) gives
``correct_reward`` (+1) or ``wrong_reward`` (-1). A gold answer math-verify cannot parse yields
``None`` (TRL: "not applicable", advantage 0), never a silent -1.
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
        think_start, think_end: the reasoning tags.
        timeout_seconds: math-verify timeout (main thread only, see ``math_scoring``).
    """

    answer_key: str = "answer"
    correct_reward: float = 1.0
    wrong_reward: float = -1.0
    missing_think_end_reward: float = -0.5
    missing_think_start_reward: float | None = -2.0
    think_start: str = "<think>"
    think_end: str = "</think>"
    timeout_seconds: int | None = 5

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
        """The reward of one completion (``None`` when the gold is unparsable)."""
        text = completion_text(completion)
        if self.think_end not in text:
            return self.missing_think_end_reward
        if self.missing_think_start_reward is not None:
            prefilled = prompt_text(prompt).rstrip().endswith(self.think_start)
            if self.think_start not in text and not prefilled:
                return self.missing_think_start_reward
        parsed = parse_gold(str(gold), timeout_seconds=self.timeout_seconds)
        if not parsed.ok:
            return None
        score = score_response(text, parsed, think_end=self.think_end,
                               timeout_seconds=self.timeout_seconds)
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
