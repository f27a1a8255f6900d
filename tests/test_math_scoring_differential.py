"""Differential test: the Klear math reward (and so the AIME scorer) against math-verify used
exactly as the official Klear-Reasoner reward uses it, on a few hundred generated responses.

The reference below restates the official ``math_dapo.compute_score(is_longcot=True,
is_use_math_verify=True)`` protocol (``math_verify.parse`` with its default configs on the text
after the last ``</think>``; fewer than two parse items is wrong; exact string match; then
``verify(parse("\\boxed{gold}"), pred)``). The project must agree everywhere except the documented
choices of :mod:`kwaiformers.evaluation.math_scoring`; for the "several separate boxes" choice the
generator also writes the response with the earlier boxes unwrapped, and the project's score of the
boxed text must equal the official score of the unwrapped text.
"""

from __future__ import annotations

import random

import pytest

math_verify = pytest.importorskip("math_verify")

from kwaiformers.evaluation.math_scoring import score_response  # noqa: E402
from kwaiformers.rewards.math_reward import KlearMathReward  # noqa: E402


def official_klear_math(solution: str, gold: str) -> float:
    """The official Klear long-CoT math reward with math-verify (reference for this test)."""
    if "</think>" not in solution:
        return -0.5
    if "<think>" not in solution:
        return -2.0
    final = solution.split("</think>")[-1]
    try:
        parsed = math_verify.parse(final, parsing_timeout=5)
    except Exception:
        return -1.0
    if len(parsed) < 2:
        return -1.0
    if parsed[1] in [gold]:
        return 1.0
    try:
        if math_verify.verify(math_verify.parse(f"\\boxed{{{gold}}}", parsing_timeout=5), parsed,
                              timeout_seconds=5):
            return 1.0
    except Exception:
        pass
    return -1.0


# gold -> equivalent spellings; wrong values are drawn from the other golds
_GOLDS: dict[str, list[str]] = {
    "204": ["204", "204.0", "\\frac{408}{2}"],
    "-7": ["-7", "-7.0", "-\\frac{14}{2}"],
    "0": ["0", "0.0"],
    "\\frac{3}{4}": ["\\frac{3}{4}", "0.75", "3/4", "\\dfrac{3}{4}", "\\tfrac34"],
    "0.5": ["0.5", "\\frac{1}{2}", "1/2", ".5"],
    "2\\sqrt{3}": ["2\\sqrt{3}", "\\sqrt{12}", "2 \\sqrt 3"],
    "\\pi": ["\\pi", "\\frac{2\\pi}{2}"],
    "1000": ["1000", "1,000", "1{,}000", "10^3"],
    "\\frac{1+\\sqrt{5}}{2}": ["\\frac{1+\\sqrt{5}}{2}", "\\frac{\\sqrt{5}+1}{2}"],
    "x+1": ["x+1", "1+x"],
}
_THINKS = ["Let me compute. 3+4=7, so maybe 12.", "Try 204? No, 205. Hmm, \\boxed{99} maybe.",
           "The sum is $\\frac{1}{2}$ and then 1000.", "", "x = 5, so the answer is 42."]


def _wrap(value: str, rng: random.Random) -> str:
    kind = rng.randrange(5)
    return [value, f"${value}$", f"\\({value}\\)", f"$$ {value} $$", f"\\[{value}\\]"][kind]


def _answer(value: str, rng: random.Random) -> str:
    """One final-answer passage stating ``value``."""
    templates = [
        "So the result is \\boxed{{{v}}}.",
        "Therefore, the answer is $\\boxed{{{v}}}$",
        "The final answer is {w}. I hope it is correct.",
        "Final Answer: the final answer is {w}",
        "**Answer:** {w}",
        "We conclude {w}.",
        "Thus $x = \\boxed{{{v}}}$.",
        "\\[\n\\boxed{{{v}}}\n\\]",
        "answer: {w}",
        "{v}",
    ]
    return rng.choice(templates).format(v=value, w=_wrap(value, rng))


def _cases(seed: int, n: int) -> list[tuple[str, str, str | None]]:
    """``(response, gold, unwrapped_variant_or_None)``."""
    rng = random.Random(seed)
    golds = list(_GOLDS)
    out: list[tuple[str, str, str | None]] = []
    for _ in range(n):
        gold = rng.choice(golds)
        right = rng.random() < 0.5
        value = rng.choice(_GOLDS[gold]) if right else rng.choice(_GOLDS[rng.choice(golds)])
        other = rng.choice(_GOLDS[rng.choice(golds)])
        think = rng.choice(_THINKS)
        shape = rng.randrange(12)
        unwrapped = None
        if shape == 0:  # truncated: no </think>
            body = f"<think>{think} {_answer(value, rng)}"
        elif shape == 1:  # no <think>
            body = f"{think}</think>{_answer(value, rng)}"
        elif shape == 2:  # an early box, then "the final answer is" (priority tie, rightmost)
            body = (f"<think>{think}</think>First \\boxed{{{other}}}. Checking again, the final "
                    f"answer is {_wrap(value, rng)}.")
        elif shape == 3:  # two separate boxes: documented choice (the last one wins)
            sep = rng.choice([". Wait, let me recheck: ", ".\nHmm, actually, ", " -- no: "])
            tail = f"\\boxed{{{value}}}."
            body = f"<think>{think}</think>So \\boxed{{{other}}}{sep}{tail}"
            unwrapped = f"<think>{think}</think>So {other}{sep}{tail}"
        elif shape == 4:  # boxes joined by a separator stay one (set) answer
            body = f"<think>{think}</think>\\boxed{{{value}}} {rng.choice(['and', 'or', ','])} " \
                   f"\\boxed{{{other}}}"
        elif shape == 5:  # text after </think>, several think tags
            body = f"<think>{think}</think> draft </think>\n{_answer(value, rng)} Done."
        elif shape == 6:  # nothing extractable after </think>
            body = f"<think>{think} \\boxed{{{value}}}</think>I am not sure."
        elif shape == 7:  # empty final text
            body = f"<think>{think}</think>"
        elif shape == 8:  # truncated box
            body = f"<think>{think}</think>The answer is \\boxed{{{value}"
        else:
            body = f"<think>{think}</think>{_answer(value, rng)}"
        out.append((body, gold, unwrapped))
    return out


CASES = _cases(seed=17, n=320)


def test_generated_cases_cover_every_shape():
    assert len(CASES) >= 300
    assert sum(u is not None for _, _, u in CASES) >= 20
    assert sum("</think>" not in r for r, _, _ in CASES) >= 20


def test_klear_math_reward_matches_official_on_generated_responses():
    reward = KlearMathReward()
    mismatches, outcomes = [], set()
    for response, gold, unwrapped in CASES:
        ours = reward.score_one(response, gold)
        reference = official_klear_math(unwrapped if unwrapped is not None else response, gold)
        outcomes.add(reference)
        if ours != reference:
            mismatches.append((response, gold, ours, reference))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:3]}"
    assert outcomes == {1.0, -1.0, -0.5, -2.0}  # every branch was exercised


def test_official_mode_reproduces_math_verify_on_several_boxes():
    official = KlearMathReward(multi_box="math_verify")
    multi = [(r, g) for r, g, u in CASES if u is not None]
    assert [official.score_one(r, g) for r, g in multi] == [
        official_klear_math(r, g) for r, g in multi]


def test_issue_examples():
    two_boxes = "<think>x</think>So \\boxed{25}. Wait, the final answer is \\boxed{27}."
    assert score_response(two_boxes, "27").correct  # the last box wins (lighteval)
    assert official_klear_math(two_boxes, "27") == -1.0  # math-verify 0.9 reads {25, 27}
    assert not score_response(two_boxes, "27", multi_box="math_verify").correct
    # an early box, then "the final answer is 4": the rightmost of the priority-50 tie wins
    early = "<think>x</think>We get \\boxed{3}. Hence the final answer is 4."
    assert score_response(early, "4").correct and not score_response(early, "3").correct
    assert official_klear_math(early, "4") == 1.0
    # a set answer joined by "and" stays a set
    assert not score_response("<think>x</think>\\boxed{1} and \\boxed{2}", "2").correct


def test_empty_or_unparsable_gold_is_documented_value_not_crash():
    reward = KlearMathReward()
    assert reward(completions=["<think>a</think>\\boxed{1}"] * 3, answer=["", "  ", None]) == [
        None, None, None]
    assert official_klear_math("<think>a</think>\\boxed{1}", "") == -1.0
    assert KlearMathReward(unparsable_gold_reward=-1.0).score_one(
        "<think>a</think>\\boxed{1}", "") == -1.0
    # format errors come first, as in the official reward
    assert reward.score_one("no think tags", "") == -0.5
    with pytest.raises(ValueError, match="could not be parsed"):
        score_response("<think>a</think>1", "")
    with pytest.raises(ValueError, match="multi_box"):
        KlearMathReward(multi_box="first")


def test_prefilled_think_choice():
    response = "reasoning</think>\\boxed{5}"
    assert KlearMathReward().score_one(response, "5", prompt="Q <think>\n") == 1.0
    assert KlearMathReward(accept_prefilled_think=False).score_one(
        response, "5", prompt="Q <think>\n") == official_klear_math(response, "5") == -2.0


def test_hypothesis_answers_match_official():
    """Random numbers, fractions and decimals in random answer passages (hypothesis)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    value = st.one_of(
        st.integers(-1000, 1000).map(str),
        st.tuples(st.integers(-50, 50), st.integers(1, 50)).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
        st.decimals(-100, 100, places=2, allow_nan=False, allow_infinity=False).map(str),
    )
    filler = st.text(alphabet="abc xyz=+,.:;\n", max_size=30)
    reward = KlearMathReward()

    @settings(max_examples=30, deadline=None, derandomize=True)
    @given(gold=st.integers(-1000, 1000).map(str), answer=value, before=filler, after=filler,
           seed=st.integers(0, 2**16))
    def check(gold, answer, before, after, seed):
        response = f"<think>{before}</think>{before} {_answer(answer, random.Random(seed))} {after}"
        assert reward.score_one(response, gold) == official_klear_math(response, gold), response

    check()
