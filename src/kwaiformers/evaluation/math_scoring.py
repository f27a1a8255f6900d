"""Math answer scoring with ``math-verify`` (the one implementation behind the Klear math reward
and the AIME runner).

Protocol (Klear-Reasoner, arXiv 2508.07629 §3; design note §1.6 / §3.2):

1. keep only the text after the **last** ``</think>`` (a response without it was truncated mid
   thought: it is scored wrong with failure ``"missing_think_end"`` instead of parsing the CoT);
2. parse the gold once (``\\boxed{gold}`` first, as Klear does; cached), then the prediction with
   the last-``\\boxed{}``-first extraction (``boxed_match_priority=0``) and a plain-expression
   fallback;
3. a quick normalised string match, then ``math_verify.verify(gold, pred)`` (gold first: the
   argument order matters).

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
    "ParsedGold",
    "extract_final_answer_text",
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

    @property
    def normalized(self) -> str:
        return _normalize(self.parsed[-1] if self.parsed and isinstance(self.parsed[-1], str)
                          else self.text)


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


def _normalize(text: str) -> str:
    text = _WS.sub("", text).strip("$").rstrip(".")
    if text.startswith("\\boxed{") and text.endswith("}"):
        text = text[len("\\boxed{"):-1]
    return text


@functools.lru_cache(maxsize=65536)
def _parse_gold_cached(gold: str, timeout: int | None) -> tuple[Any, ...]:
    mv = _require_math_verify()
    candidates = [gold] if "\\boxed" in gold else [f"\\boxed{{{gold}}}", gold, f"${gold}$"]
    for candidate in candidates:
        parsed = mv.parse(candidate, parsing_timeout=timeout)
        if parsed:
            return tuple(parsed)
    return ()


def parse_gold(gold: str | ParsedGold, *, timeout_seconds: int | None = 5) -> ParsedGold:
    """Parse a gold answer once (cached by string). Plain answers are wrapped in ``\\boxed{}``
    first (Klear's convention), then tried raw and in ``$...$``; an unparsable gold yields
    ``ParsedGold(ok=False)`` (score it as "not applicable", not as wrong)."""
    if isinstance(gold, ParsedGold):
        return gold
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str):
        raise TypeError(f"gold must be a str (or ParsedGold), got {type(gold).__name__}")
    gold = gold.strip()
    if not gold:
        raise ValueError("gold must be a non-empty answer string")
    return ParsedGold(text=gold, parsed=_parse_gold_cached(gold, _effective_timeout(timeout_seconds)))


def _prediction_config() -> list[Any]:
    mv = _require_math_verify()
    return [mv.LatexExtractionConfig(boxed_match_priority=0), mv.ExprExtractionConfig()]


def score_response(
    response: str,
    gold: str | ParsedGold,
    *,
    require_think_end: bool = True,
    think_end: str = "</think>",
    timeout_seconds: int | None = 5,
) -> MathScore:
    """Score one response against a gold answer (see the module docstring for the protocol).

    Args:
        response: the full model response (reasoning + final answer).
        gold: the gold answer string, or a :class:`ParsedGold` from :func:`parse_gold`.
        require_think_end: a response without ``think_end`` is wrong (``missing_think_end``);
            set ``False`` for non-reasoning models (the whole response is parsed).
        think_end: the closing reasoning tag.
        timeout_seconds: math-verify's per-call timeout (main thread only, see module doc).

    Raises:
        ValueError: if the gold cannot be parsed (the score would be meaningless).
    """
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
    mv = _require_math_verify()
    timeout = _effective_timeout(timeout_seconds)
    try:
        pred = mv.parse(
            final, extraction_config=_prediction_config(), parsing_timeout=timeout,
            raise_on_error=True,
        )
    except Exception as exc:  # math-verify's TimeoutException or a sympy failure
        return MathScore(False, None, "timeout" if "Timeout" in type(exc).__name__ else "error")
    if not pred:
        return MathScore(False, None, "no_extraction")
    extracted = pred[-1] if isinstance(pred[-1], str) else str(pred[0])
    if _normalize(extracted) == parsed_gold.normalized:
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
