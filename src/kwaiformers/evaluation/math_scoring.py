"""Math answer scoring with ``math-verify`` (the one implementation behind the Klear math reward
and the AIME runner).

Protocol: the official Klear-Reasoner math reward (``verl/utils/reward_score/math_dapo.py``,
``compute_score(is_longcot=True, is_use_math_verify=True)``; arXiv 2508.07629; design note §1.6):

1. keep only the text after the **last** ``</think>`` (a response without it was truncated mid
   thought: it is scored wrong with failure ``"missing_think_end"`` instead of parsing the CoT);
2. ``math_verify.parse`` the prediction with its **default** extraction configs
   (``LatexExtractionConfig()``, ``ExprExtractionConfig()``: ``\\boxed{}`` at priority 50, tied with
   "the final answer is X", so the rightmost of the two wins), as Klear does; a parse without a
   parsed value (fewer than 2 items: nothing, or only math-verify's fallback string) is wrong;
3. the gold is parsed once as ``\\boxed{gold}`` (Klear's form; cached);
4. a quick exact string match of the extracted answer string against the gold string, then
   ``math_verify.verify(gold, pred)`` (gold first: the argument order matters).

Documented choices (each one a parameter; the differential test in
``tests/test_math_scoring_differential.py`` checks that everything else equals the official reward):

- **several boxes** (``multi_box="last"``, default): when the final text has ``\\boxed{}``/``\\fbox{}``
  groups that are not joined only by ``and``/``or``/``,``, only the last group stays boxed (the
  earlier ones are unwrapped to their content before parsing), so ``\\boxed{25}. Wait, ... the
  final answer is \\boxed{27}`` is 27, as lighteval scores it (its pinned ``latex2sympy2_extended``
  keeps the last box). math-verify 0.9 reads such text as the set ``{25, 27}``, which is never
  equal to a single gold. ``\\boxed{1}, \\boxed{2}`` and ``\\boxed{1} and \\boxed{2}`` stay a
  set in both. ``multi_box="math_verify"`` passes the text unchanged (the official behaviour).
- **gold parsing**: if ``\\boxed{gold}`` does not parse, the raw gold and ``$gold$`` are tried; a
  gold that still does not parse (or an empty gold) makes :attr:`ParsedGold.ok` false. The
  official reward then scores -1 (a training signal about the data, not the response); the reward
  returns its ``unparsable_gold_reward`` (``None``: "not applicable") and the AIME scorer raises.

Timeouts: math-verify implements its timeouts with ``signal.alarm``, which only works in the main
thread. :func:`score_response` uses them (``timeout_seconds``) in the main thread and disables them
elsewhere (a worker thread, e.g. TRL's async reward path), as TRL's ``accuracy_reward`` does; for
hard guarantees off the main thread use :func:`score_responses` with ``num_workers > 0`` (a process
pool, where each worker's main thread has working alarms).

``math-verify`` is an optional dependency (``pip install kwaiformers[eval]``); it is imported lazily.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FAILURE_REASONS",
    "MathScore",
    "MULTI_BOX_MODES",
    "ParsedGold",
    "extract_final_answer_text",
    "keep_last_box_group",
    "parse_gold",
    "score_response",
    "score_responses",
]

#: Values of :attr:`MathScore.failure` (``None`` when extraction succeeded, right or wrong).
FAILURE_REASONS: tuple[str, ...] = (
    "missing_think_end",  # no ``</think>`` and ``require_think_end=True``
    "empty_answer",  # nothing after the last ``</think>``
    "no_extraction",  # math-verify found no answer in the final text
    "timeout",  # parsing/verification exceeded ``timeout_seconds``
    "error",  # math-verify raised
)


def _require_math_verify() -> Any:
    try:
        import math_verify
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "math scoring needs math-verify: pip install 'kwaiformers[eval]' (or math-verify>=0.9)"
        ) from exc
    return math_verify


@dataclass(frozen=True)
class MathScore:
    """Outcome of scoring one response.

    Attributes:
        correct: whether the extracted answer is equivalent to the gold.
        extracted: the answer string math-verify extracted (``None`` if none).
        failure: why no answer could be compared (one of :data:`FAILURE_REASONS`) or ``None``.
    """

    correct: bool
    extracted: str | None
    failure: str | None


@dataclass(frozen=True)
class ParsedGold:
    """A gold answer parsed once by math-verify (hashable; reuse it across many responses)."""

    text: str
    parsed: tuple[Any, ...]

    @property
    def ok(self) -> bool:
        """Whether math-verify could parse the gold at all."""
        return len(self.parsed) > 0


def extract_final_answer_text(
    response: str, *, think_end: str = "</think>", require_think_end: bool = True
) -> str | None:
    """The text after the last ``think_end`` tag, stripped.

    Returns ``None`` when the tag is absent and ``require_think_end`` is true (a truncated or
    malformed reasoning trace); with ``require_think_end=False`` the whole response is returned.
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    if not isinstance(think_end, str) or not think_end:
        raise ValueError(f"think_end must be a non-empty str, got {think_end!r}")
    index = response.rfind(think_end)
    if index < 0:
        return None if require_think_end else response.strip()
    return response[index + len(think_end):].strip()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _effective_timeout(timeout_seconds: int | None) -> int | None:
    if timeout_seconds is None or timeout_seconds <= 0 or not _in_main_thread():
        return None
    return int(timeout_seconds)


_WS = re.compile(r"\s+")

#: Values of the ``multi_box`` option of :func:`score_response`.
MULTI_BOX_MODES: tuple[str, ...] = ("last", "math_verify")
_BOX_CMD = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Text between two boxes that joins them into one multi-answer group (lighteval's rule).
_BOX_SEPARATOR = re.compile(r"^\s*(?:and|or|,)\s*$")


def _boxes(text: str) -> list[tuple[int, int, int, int]]:
    """``(start, content_start, content_end, end)`` of every balanced ``\\boxed{...}`` /
    ``\\fbox{...}`` (left to right, not nested in an earlier one)."""
    out = []
    pos = 0
    while True:
        m = _BOX_CMD.search(text, pos)
        if m is None:
            return out
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth:  # unbalanced: the box runs to the end of the text
            return out
        out.append((m.start(), m.end(), i - 1, i))
        pos = i


def keep_last_box_group(text: str) -> str:
    """Unwrap every box except the last group of boxes joined only by ``and``/``or``/``,``.

    ``"\\boxed{25}. Wait, ... \\boxed{27}."`` -> ``"25. Wait, ... \\boxed{27}."``;
    ``"\\boxed{1}, \\boxed{2}"`` is unchanged (one group). See the module docstring.
    """
    boxes = _boxes(text)
    if len(boxes) < 2:
        return text
    first = len(boxes) - 1
    while first > 0 and _BOX_SEPARATOR.match(text[boxes[first - 1][3]:boxes[first][0]]):
        first -= 1
    if first == 0:
        return text
    parts, pos = [], 0
    for start, c_start, c_end, end in boxes[:first]:
        parts += [text[pos:start], text[c_start:c_end]]
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


@functools.lru_cache(maxsize=65536)
def _parse_gold_cached(gold: str, timeout: int | None) -> tuple[Any, ...]:
    mv = _require_math_verify()
    for candidate in (f"\\boxed{{{gold}}}", gold, f"${gold}$"):
        parsed = mv.parse(candidate, parsing_timeout=timeout)
        if parsed:
            return tuple(parsed)
    return ()


def parse_gold(gold: str | ParsedGold, *, timeout_seconds: int | None = 5) -> ParsedGold:
    """Parse a gold answer once (cached by string) as ``\\boxed{gold}`` (Klear's form), then
    raw and in ``$...$``. An unparsable or empty gold yields ``ParsedGold(ok=False)`` (score it as
    "not applicable", not as wrong)."""
    if isinstance(gold, ParsedGold):
        return gold
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str):
        raise TypeError(f"gold must be a str (or ParsedGold), got {type(gold).__name__}")
    gold = gold.strip()
    if not gold:
        return ParsedGold(text="", parsed=())
    return ParsedGold(text=gold, parsed=_parse_gold_cached(gold, _effective_timeout(timeout_seconds)))


def score_response(
    response: str,
    gold: str | ParsedGold,
    *,
    require_think_end: bool = True,
    think_end: str = "</think>",
    timeout_seconds: int | None = 5,
    multi_box: str = "last",
) -> MathScore:
    """Score one response against a gold answer (see the module docstring for the protocol).

    Args:
        response: the full model response (reasoning + final answer).
        gold: the gold answer string, or a :class:`ParsedGold` from :func:`parse_gold`.
        require_think_end: a response without ``think_end`` is wrong (``missing_think_end``);
            set ``False`` for non-reasoning models (the whole response is parsed).
        think_end: the closing reasoning tag.
        timeout_seconds: math-verify's per-call timeout (main thread only, see module doc).
        multi_box: ``"last"`` (the last box group wins, lighteval) or ``"math_verify"`` (the
            text is parsed unchanged, the official Klear reward with math-verify 0.9).

    Raises:
        ValueError: if the gold cannot be parsed (the score would be meaningless).
    """
    if multi_box not in MULTI_BOX_MODES:
        raise ValueError(f"multi_box must be one of {MULTI_BOX_MODES}, got {multi_box!r}")
    parsed_gold = parse_gold(gold, timeout_seconds=timeout_seconds)
    if not parsed_gold.ok:
        raise ValueError(f"gold answer {parsed_gold.text!r} could not be parsed by math-verify")
    final = extract_final_answer_text(
        response, think_end=think_end, require_think_end=require_think_end
    )
    if final is None:
        return MathScore(False, None, "missing_think_end")
    if not final:
        return MathScore(False, None, "empty_answer")
    if multi_box == "last":
        final = keep_last_box_group(final)
    mv = _require_math_verify()
    timeout = _effective_timeout(timeout_seconds)
    try:  # math-verify's default extraction configs, as the official reward
        pred = mv.parse(final, parsing_timeout=timeout, raise_on_error=True)
    except Exception as exc:  # math-verify's TimeoutException or a sympy failure
        return MathScore(False, None, "timeout" if "Timeout" in type(exc).__name__ else "error")
    if len(pred) < 2:  # nothing, or only the unparsed fallback string: wrong officially
        return MathScore(False, str(pred[0]) if pred else None, "no_extraction")
    extracted = str(pred[1])
    if extracted == parsed_gold.text:  # the official quick string match
        return MathScore(True, extracted, None)
    try:
        correct = bool(
            mv.verify(list(parsed_gold.parsed), pred, timeout_seconds=timeout, raise_on_error=True)
        )
    except Exception as exc:
        return MathScore(False, extracted, "timeout" if "Timeout" in type(exc).__name__ else "error")
    return MathScore(correct, extracted, None)


def _score_star(args: tuple[str, str, dict[str, Any]]) -> MathScore:
    response, gold, kwargs = args
    return score_response(response, gold, **kwargs)


def score_responses(
    responses: Sequence[str],
    golds: Sequence[str | ParsedGold],
    *,
    num_workers: int = 0,
    **kwargs: Any,
) -> list[MathScore]:
    """Score ``responses[i]`` against ``golds[i]``; golds are parsed once each (cached).

    ``num_workers > 0`` scores in a process pool (signal timeouts work in every worker, and one
    pathological expression cannot stall the caller); ``0`` scores in this process.
    """
    if len(responses) != len(golds):
        raise ValueError(
            f"responses and golds must have the same length, got {len(responses)} and {len(golds)}"
        )
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    if num_workers == 0:
        cache: dict[str, ParsedGold] = {}
        out = []
        for response, gold in zip(responses, golds):
            if isinstance(gold, str):
                gold = cache.setdefault(gold, parse_gold(gold, timeout_seconds=kwargs.get(
                    "timeout_seconds", 5)))
            out.append(score_response(response, gold, **kwargs))
        return out
    from concurrent.futures import ProcessPoolExecutor

    items = [(r, g.text if isinstance(g, ParsedGold) else g, kwargs) for r, g in zip(responses, golds)]
    with ProcessPoolExecutor(max_workers=num_workers) as pool:
        return list(pool.map(_score_star, items, chunksize=max(1, len(items) // (4 * num_workers))))
