"""Math scoring core (kwaiformers.evaluation.math_scoring) and the Klear math reward."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("math_verify")

from kwaiformers.evaluation.math_scoring import (  # noqa: E402
    MathScore,
    ParsedGold,
    extract_final_answer_text,
    parse_gold,
    score_response,
    score_responses,
)


def test_extract_final_answer_text_uses_last_think_end():
    assert extract_final_answer_text("<think>a</think> x </think> 42 ") == "42"
    assert extract_final_answer_text("<think>no end 42") is None
    assert extract_final_answer_text("no tags 7", require_think_end=False) == "no tags 7"
    with pytest.raises(TypeError, match="response"):
        extract_final_answer_text(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "response",
    [
        "<think>try 3, then 5</think>The answer is \\boxed{204}.",
        "<think>hmm</think>so \\boxed{\\frac{408}{2}}",
        "<think>\\boxed{7}</think> final: \\boxed{204.0}",
        "<think>x</think>The answer is 204",
    ],
)
def test_correct_answers(response):
    score = score_response(response, "204")
    assert score == MathScore(True, score.extracted, None)
    assert score.extracted is not None


def test_wrong_and_failures():
    # the CoT contains the right number, but only the text after </think> counts
    wrong = score_response("<think>204</think>\\boxed{205}", "204")
    assert wrong.correct is False and wrong.extracted == "205" and wrong.failure is None
    assert score_response("<think>204 \\boxed{204}", "204").failure == "missing_think_end"
    assert score_response("<think>x</think>   ", "204").failure == "empty_answer"
    assert score_response("<think>x</think> no number", "204").failure == "no_extraction"
    ok = score_response("\\boxed{204}", "204", require_think_end=False)
    assert ok.correct


def test_latex_gold_parsed_once_and_reused():
    gold = parse_gold("\\frac{1}{2}")
    assert isinstance(gold, ParsedGold) and gold.ok
    assert parse_gold("\\frac{1}{2}") == gold  # cached / equal
    assert score_response("<think></think>\\boxed{0.5}", gold).correct
    assert not score_response("<think></think>\\boxed{1/3}", gold).correct
    assert not parse_gold("  ").ok  # an empty gold is treated like an unparsable one
    with pytest.raises(TypeError, match="gold"):
        parse_gold(["1"])  # type: ignore[arg-type]


def test_score_off_main_thread_and_batch():
    out: list[MathScore] = []
    thread = threading.Thread(target=lambda: out.append(score_response("</think>\\boxed{9}", "9")))
    thread.start()
    thread.join()
    assert out[0].correct  # signal timeouts are disabled off the main thread, no ValueError
    scores = score_responses(["</think>\\boxed{9}", "</think>\\boxed{8}"], ["9", "9"])
    assert [s.correct for s in scores] == [True, False]
    with pytest.raises(ValueError, match="same length"):
        score_responses(["a"], ["1", "2"])


def test_klear_math_reward_values():
    from kwaiformers.rewards.math_reward import KlearMathReward, klear_math_reward

    completions = [
        "<think>12+30</think> \\boxed{42}",  # correct
        "<think>hmm</think> \\boxed{41}",  # wrong
        "<think>never ends 42",  # missing </think>
        "no start</think> 42",  # missing <think>
    ]
    metrics = {}
    rewards = klear_math_reward(
        prompts=["q"] * 4, completions=completions, answer=["42"] * 4,
        log_metric=lambda name, value: metrics.__setitem__(name, value),
    )
    assert rewards == [1.0, -1.0, -0.5, -2.0]
    assert metrics["klear_math/format_error_frac"] == 0.5
    assert klear_math_reward.__name__ == "klear_math_reward"
    # <think> pre-filled by the chat template at the end of the prompt counts as present
    assert klear_math_reward(prompts=["q <think>\n"], completions=["x</think>42"], answer=["42"]) == [1.0]
    # conversational completions, custom values, no think-start check
    custom = KlearMathReward(wrong_reward=0.0, missing_think_start_reward=None, answer_key="sol")
    conv = [[{"role": "assistant", "content": "a</think>\\boxed{7}"}]]
    assert custom(completions=conv, sol=["8"]) == [0.0]
    assert custom(completions=conv, sol=["7"]) == [1.0]
    with pytest.raises(ValueError, match="gold answers"):
        klear_math_reward(completions=["x"], other=["1"])
    with pytest.raises(ValueError, match="values for"):
        klear_math_reward(completions=["x", "y"], answer=["1"])


def test_klear_math_reward_unparsable_gold_is_none(monkeypatch):
    import kwaiformers.evaluation.math_scoring as ms
    from kwaiformers.rewards.math_reward import klear_math_reward

    monkeypatch.setattr(ms, "_parse_gold_cached", lambda gold, timeout: ())
    assert klear_math_reward(completions=["<think></think>\\boxed{1}"], answer=["1"]) == [None]
    with pytest.raises(ValueError, match="could not be parsed"):
        ms.score_response("</think>1", "1")
