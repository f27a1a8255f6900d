"""The `evaluate` module eval/kc_mmbench: loads from a checkout, compute and add_batch."""

from __future__ import annotations

from pathlib import Path

import pytest

MODULE = str(Path(__file__).resolve().parents[1] / "eval" / "kc_mmbench")


@pytest.fixture(scope="module")
def metric():
    evaluate = pytest.importorskip("evaluate")
    return evaluate.load(MODULE, keep_in_memory=True)


def test_module_loads_and_scores(metric):
    res = metric.compute(
        predictions=["是", "是。", "<think>是</think>否", "红色", "[是，否]"],
        references=["是", "否", "否", "红色", "是_否"],
        tasks=["SPU", "SPU", "PornComment", "CPV", "Video_Topic"],
        categories=["a", "b", None, None, None],
    )
    # fractions in [0, 1], evaluate's convention (the runner shows percent)
    assert res["tasks"]["SPU"]["accuracy"] == 0.5
    assert res["tasks"]["SPU"]["unknown_rate"] == 0.5
    assert res["tasks"]["SPU"]["categories"] == {"a": 1.0, "b": 0.0}
    assert res["tasks"]["Pornographic_Comment"]["accuracy"] == 1.0
    assert res["modes"]["CPV"].startswith("rule") and res["vqa_mode"] == "rule"
    assert res["tasks"]["Hot_Videos_Aggregation"]["accuracy"] == 1.0
    assert res["overall_accuracy"] == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert 0.0 <= res["overall_micro_accuracy"] <= 1.0


def test_module_add_batch_judge_and_errors(metric):
    class Judge:
        name = "const"

        def generate(self, prompt, temperature=0.0):
            return "回答错误"

    metric.add_batch(predictions=["红色"], references=["红色"], tasks=["CPV"])
    metric.add_batch(predictions=["否"], references=["否"], tasks=["High_like"])
    res = metric.compute(judge=Judge(), return_details=True)
    assert res["tasks"]["CPV"]["accuracy"] == 0.0 and res["modes"]["CPV"] == "judge:const"
    assert res["tasks"]["CPV"]["rule_agreement"] == 0.0
    assert res["tasks"]["High_like"]["accuracy"] == 1.0
    assert len(res["details"]) == 2
    with pytest.raises(ValueError, match="inputs are missing"):
        metric.compute(predictions=["是"], references=["是"])
    with pytest.raises(ValueError, match="unknown KC-MMBench task"):
        metric.compute(predictions=["是"], references=["是"], tasks=["MMMU"])


def test_metric_card_has_template_sections():
    text = (Path(MODULE) / "README.md").read_text(encoding="utf-8")
    for section in ("## Metric Description", "## How to Use", "### Inputs", "### Output Values",
                    "### Examples", "## Limitations and Bias", "## Citation"):
        assert section in text
    reqs = (Path(MODULE) / "requirements.txt").read_text().split()
    assert "kwaiformers" in reqs
    # evaluate's import scanner needs one import per line at top level
    src = (Path(MODULE) / "kc_mmbench.py").read_text()
    assert all("," not in line for line in src.splitlines() if line.startswith("import "))
