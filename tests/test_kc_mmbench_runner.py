"""KC-MMBench through the shared runner: tiny image-text-to-text model end to end, resume after an
interruption, scoring-only mode, the CLI, results JSON and model card."""

from __future__ import annotations

import json
import os

import pytest
from utils import make_tiny_kc_mmbench, make_tiny_keye_vl, make_tiny_paddleocr_vl

from kwaiformers.evaluation import kc_mmbench as kc
from kwaiformers.evaluation.runner import (
    CACHE_FILE,
    GenerationConfig,
    TransformersBackend,
    evaluate_task,
)


def _save(model, processor, path):
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_keye_dir(tmp_path_factory):
    """A tiny Keye-VL checkpoint on disk (kwaiformers' native Keye-VL classes)."""
    return _save(*make_tiny_keye_vl(init_std=0.5), tmp_path_factory.mktemp("tiny_keye"))


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    """A tiny generic transformers image-text-to-text checkpoint (PaddleOCR-VL) on disk."""
    return _save(*make_tiny_paddleocr_vl(), tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return make_tiny_kc_mmbench(tmp_path_factory.mktemp("data") / "KC-MMbench")


class _Interrupted(RuntimeError):
    pass


class _CountingBackend(TransformersBackend):
    """The real transformers backend, counting prompts and optionally dying after N batches."""

    def __init__(self, *args, die_after: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.prompts: list[str] = []
        self.batches = 0
        self.die_after = die_after

    def generate(self, conversations, config, seed=0):
        if self.die_after is not None and self.batches >= self.die_after:
            raise _Interrupted("simulated crash")
        self.batches += 1
        self.prompts += [c[0]["content"][-1]["text"] for c in conversations]
        return super().generate(conversations, config, seed=seed)


def _backend(path, **kwargs):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path)
    return _CountingBackend(model, AutoProcessor.from_pretrained(path), model_name=path, **kwargs)


def test_end_to_end_resume_and_scoring_only(tiny_keye_dir, bench, tmp_path):
    out = tmp_path / "run"
    task = kc.KCMMBenchTask(path=bench, tasks="SPU,CPV,Video_Topic", think="think",
                            max_frames=2)
    config = GenerationConfig(temperature=0.0, max_new_tokens=4, batch_size=2)
    # 1) interrupted after the first batch: the cache keeps what was generated
    crashing = _backend(tiny_keye_dir, die_after=1)
    with pytest.raises(_Interrupted):
        evaluate_task(task, output_dir=out, backend=crashing, config=config, progress=False)
    with open(out / CACHE_FILE, encoding="utf-8") as f:
        assert len([ln for ln in f if ln.strip()]) == 2
    # 2) resume: only the remaining 5 samples are generated
    backend = _backend(tiny_keye_dir)
    res = evaluate_task(task, output_dir=out, backend=backend, config=config, progress=False)
    assert len(backend.prompts) == 5
    assert all(p.endswith("/think") for p in backend.prompts)
    assert res["task"] == "kc_mmbench_think_maxframes2" and res["num_problems"] == 7
    metrics = res["metrics"]
    assert {"SPU/accuracy", "SPU/unknown_rate", "CPV/accuracy", "overall_accuracy"} <= set(metrics)
    assert res["info"]["modes"]["CPV"] == kc.MODE_RULE
    assert res["info"]["modes"]["SPU"] == kc.MODE_YN
    # the rendered Keye prompt: images first, then question + official suffix + /think
    rendered = backend.processing_class.apply_chat_template(
        task.build_messages(task.load_samples()[0]), add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in rendered
    assert rendered.count("<|image_pad|>") == 2
    assert "不许回答不确定/think<|im_end|>" in rendered
    assert {r["id"] for r in res["per_sample"]} >= {"SPU/50", "CPV/0", "Hot_Videos_Aggregation/10"}
    # an uninterrupted run from scratch gives the same generations (greedy, same batches)
    fresh = evaluate_task(task, output_dir=tmp_path / "fresh", backend=_backend(tiny_keye_dir),
                          config=config, progress=False)
    assert [r["prediction"] for r in fresh["per_sample"]] == [
        r["prediction"] for r in res["per_sample"]]
    assert fresh["metrics"] == metrics
    # results JSON and model card
    with open(out / "results.json", encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["metrics"] == metrics and saved["dataset"]["type"] == "Kwai-Keye/KC-MMbench"
    # the runner's outputs are percent (official tables) and say so; info.scores stays fractions
    assert saved["metrics_unit"] == "percent" and saved["info"]["scores_unit"] == "fraction"
    assert metrics["SPU/accuracy"] == pytest.approx(
        100 * saved["info"]["scores"]["tasks"]["SPU"]["accuracy"])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "model-index" in card and "accuracy_SPU" in card and "accuracy_CPV_rule" in card
    assert "accuracy_SPU (kc_mmbench_think_maxframes2, %)" in card
    # 3) a rerun with a different prompt setting into the same directory is refused
    other = kc.KCMMBenchTask(path=bench, tasks="SPU")
    with pytest.raises(ValueError, match="different settings"):
        evaluate_task(other, output_dir=out, backend=_backend(tiny_keye_dir), config=config,
                      progress=False)
    # 4) scoring only from a predictions file, with a stub judge for the VQA tasks
    preds = tmp_path / "preds.jsonl"
    with open(preds, "w", encoding="utf-8") as f:
        for sid, text in [("SPU/50", "<think>嗯</think>是"), ("SPU/51", "是"), ("CPV/0", "红色"),
                          ("CPV/1", "<answer>纯棉</answer>"), ("CPV/2", "M"),
                          ("Hot_Videos_Aggregation/10", "[是，否，是]"),
                          ("Hot_Videos_Aggregation/11", "[否，否]")]:
            f.write(json.dumps({"id": sid, "responses": [text]}, ensure_ascii=False) + "\n")

    class Judge:
        name = "stub"
        calls = 0

        def generate(self, prompt, temperature=0.0):
            Judge.calls += 1
            if "内容为：" in prompt:  # topic prompt: echo the model's list
                return prompt[prompt.index("["):prompt.index("]") + 1]
            return "回答正确" if "“红色”。回答：“红色”" in prompt or "“纯棉”。回答：“纯棉”" in prompt \
                else "回答错误"

    judged = kc.KCMMBenchTask(path=bench, tasks="SPU,CPV,Video_Topic", judge=Judge(),
                              judge_cache_path=tmp_path / "judgements.jsonl")
    res = evaluate_task(judged, output_dir=tmp_path / "score", predictions=preds, progress=False)
    m = res["metrics"]
    assert m["SPU/accuracy"] == 50.0 and m["SPU/unknown_rate"] == 0.0
    assert m["CPV/accuracy"] == pytest.approx(200 / 3)
    assert m["Hot_Videos_Aggregation/accuracy"] == 100.0
    assert res["info"]["modes"]["CPV"] == "judge:stub"
    assert res["info"]["scores"]["tasks"]["CPV"]["accuracy"] == pytest.approx(2 / 3)
    assert Judge.calls == 5
    # judge replies are cached on disk: scoring again does not call the judge
    evaluate_task(judged, output_dir=tmp_path / "score", predictions=preds, progress=False)
    assert Judge.calls == 5


def test_cli_generates_and_scores(tiny_vlm_dir, bench, tmp_path, capsys):
    from kwaiformers.cli import main

    out = tmp_path / "cli"
    argv = ["eval", "kc-mmbench", "--model", tiny_vlm_dir, "--data", bench, "--tasks",
            "High_like,Collection_Order", "--max-new-tokens", "3", "--output-dir", str(out),
            "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "High_like" in text and "Collection_Order" in text and "not the paper's metric" in text
    with open(out / "results.json", encoding="utf-8") as f:
        res = json.load(f)
    assert res["generation"]["temperature"] == 0.0 and res["generation"]["max_new_tokens"] == 3
    assert res["num_problems"] == 4
    # rerun: everything comes from the cache (same generations file, no growth)
    size = os.path.getsize(out / CACHE_FILE)
    assert main(argv) == 0
    assert os.path.getsize(out / CACHE_FILE) == size
    # scoring-only mode from the runner's own cache file
    assert main(["eval", "kc-mmbench", "--predictions", str(out / CACHE_FILE), "--data", bench,
                 "--tasks", "High_like,Collection_Order", "--output-dir", str(tmp_path / "s"),
                 "--no-progress"]) == 0
    with open(tmp_path / "s" / "results.json", encoding="utf-8") as f:
        assert json.load(f)["metrics"] == res["metrics"]


def test_adapter_metrics_are_percent_and_counts_stay_counts(bench):
    """score_kc_mmbench returns fractions; the adapter (results.json / table / model-index)
    shows x100, labelled, except the judge-failure counts."""
    from kwaiformers.evaluation.runner import Generation

    class Down:
        name = "down"

        def generate(self, prompt, temperature=0.0):
            raise ConnectionError("judge down")

    task = kc.KCMMBenchTask(path=bench, tasks="SPU,CPV", judge=Down(), judge_retries=1)
    samples = task.load_samples()
    gens = {s.id: [Generation("是")] for s in samples}
    result = task.score(samples, gens, [1])
    n_cpv = sum(s.id.startswith("CPV/") for s in samples)
    scores = result.info["scores"]
    assert result.metrics_unit == "percent" and result.info["scores_unit"] == "fraction"
    assert result.metrics["CPV/judge_failures"] == n_cpv == scores["tasks"]["CPV"]["judge_failures"]
    assert result.metrics["CPV/accuracy"] == 0.0
    spu = scores["tasks"]["SPU"]
    assert 0.0 < spu["accuracy"] < 1.0
    assert result.metrics["SPU/accuracy"] == pytest.approx(100 * spu["accuracy"])
    assert result.metrics["overall_micro_accuracy"] == pytest.approx(
        100 * scores["overall_micro_accuracy"])
    assert dict(result.card_metrics)["accuracy_SPU"] == pytest.approx(100 * spu["accuracy"])
    table = kc.format_table(scores)
    assert "(values in %)" in table and f"{100 * spu['accuracy']:.2f}" in table


def test_adapter_validates_arguments(bench):
    with pytest.raises(ValueError, match="max_frames"):
        kc.KCMMBenchTask(path=bench, max_frames=0)
    with pytest.raises(ValueError, match="think must be"):
        kc.KCMMBenchTask(path=bench, think="yes")
    with pytest.raises(ValueError, match="needs a judge"):
        kc.KCMMBenchTask(path=bench, vqa_mode="judge")
    with pytest.raises(ValueError, match="unknown KC-MMBench task"):
        kc.KCMMBenchTask(path=bench, tasks="VideoMME")


def test_vllm_backend_gets_openai_image_items(bench, tmp_path, monkeypatch):
    """vLLM is optional: a fake ``vllm`` module records what the runner sends to ``LLM.chat``."""
    import base64
    import sys
    import types

    from kwaiformers.evaluation.runner import openai_image_messages

    task = kc.KCMMBenchTask(path=bench, tasks="SPU", think="think")
    sample = task.load_samples()[0]
    conv = openai_image_messages(task.build_messages(sample))
    items = conv[0]["content"]
    assert [i["type"] for i in items] == ["image_url", "image_url", "text"]
    url = items[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    with open(sample.data["sample"].image_paths[0], "rb") as f:
        assert base64.b64decode(url.split(",", 1)[1]) == f.read()

    seen = {}

    class LLM:
        def __init__(self, model, **kwargs):
            seen["init"] = kwargs

        def chat(self, conversations, params, **kwargs):
            seen["chat"] = conversations
            out = types.SimpleNamespace(text="是", finish_reason="stop", token_ids=[1])
            return [types.SimpleNamespace(outputs=[out]) for _ in conversations]

    fake = types.ModuleType("vllm")
    fake.LLM = LLM
    fake.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    from kwaiformers.cli import main

    assert main(["eval", "kc-mmbench", "--backend", "vllm", "--model", "fake/model", "--data",
                 bench, "--tasks", "SPU", "--output-dir", str(tmp_path / "v"),
                 "--no-progress"]) == 0
    assert seen["init"]["limit_mm_per_prompt"] == {"image": 100}
    assert all(i["type"] in {"image_url", "text"} for c in seen["chat"] for i in c[0]["content"])
    with open(tmp_path / "v" / "results.json", encoding="utf-8") as f:
        assert json.load(f)["metrics"]["SPU/accuracy"] == 50.0
