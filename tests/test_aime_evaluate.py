"""`evaluate.load("eval/aime")` from a checkout: the metric module is a thin wrapper over
kwaiformers.evaluation.aime and reports avg@k / pass@k / extraction failures."""

from __future__ import annotations

import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def aime():
    evaluate = pytest.importorskip("evaluate")
    return evaluate.load(os.path.join(ROOT, "eval", "aime"), keep_in_memory=True)


def test_aime_module_scores(aime):
    preds = [
        ["<think>x</think> The answer is \\boxed{204}.", "<think>y</think> \\boxed{205}",
         "truncated reasoning without an end", "<think>z</think> $204$"],
        ["<think>a</think> \\boxed{\\frac{10}{2}}"] * 4,
    ]
    result = aime.compute(predictions=preds, references=["204", "5"], k=[1, 2, 4],
                          return_details=True)
    # fractions in [0, 1], evaluate's convention
    assert math.isclose(result["avg@4"], (2 / 4 + 1) / 2)
    assert math.isclose(result["pass@1"], result["avg@4"])
    assert math.isclose(result["pass@4"], 1.0)
    assert math.isclose(result["pass@2"], ((1 - math.comb(2, 2) / math.comb(4, 2)) + 1) / 2)
    assert math.isclose(result["extraction_failure_rate"], 1 / 8)
    assert all(0.0 <= v <= 1.0 for k, v in result.items() if k != "details")
    assert result["details"][0]["failures"][2] == "missing_think_end"


def test_aime_module_rejects_bad_input(aime):
    with pytest.raises(ValueError, match="k=3"):
        aime.compute(predictions=[["<think></think>1", "<think></think>1"]], references=["1"], k=3)


def test_requirements_one_per_line():
    for name in ("aime", "livecodebench"):
        with open(os.path.join(ROOT, "eval", name, f"{name}.py")) as f:
            imports = [line for line in f if line.startswith("import ")]
        assert imports and all("," not in line for line in imports)
        with open(os.path.join(ROOT, "eval", name, "requirements.txt")) as f:
            assert "kwaiformers" in f.read().split()
