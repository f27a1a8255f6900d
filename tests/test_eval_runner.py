"""The shared eval runner: tiny model end to end, cache + resume after a crash, scoring-only mode,
model card, pass@k."""

from __future__ import annotations

import json
import math

import pytest
from utils import make_tiny_qwen3, make_tiny_tokenizer

from kwaiformers.evaluation.aime import AIMETask, score_aime
from kwaiformers.evaluation.runner import (
    GenerationCache,
    GenerationConfig,
    TransformersBackend,
    evaluate_task,
    pass_at_k,
    read_predictions,
)

AIME_ROWS = [
    {"id": 60, "problem": "Find 2+2.", "answer": "4", "year": 2024},
    {"id": 61, "problem": "Find 10*3.", "answer": "30", "year": 2024},
    {"id": 62, "problem": "Find 7-2.", "answer": "5", "year": 2024},
]


@pytest.fixture
def aime_file(tmp_path):
    path = tmp_path / "aime.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in AIME_ROWS) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def backend():
    tok = make_tiny_tokenizer()
    return TransformersBackend(make_tiny_qwen3(tok), tok, model_name="tiny-qwen3")


class CountingBackend:
    """Wraps a backend and counts generated rows; optionally crashes after some batches."""

    def __init__(self, inner, crash_after: int | None = None):
        self.inner, self.crash_after, self.rows, self.batches = inner, crash_after, 0, 0
        self.name, self.model_name = inner.name, inner.model_name

    def generate(self, conversations, config, seed=0):
        if self.crash_after is not None and self.batches >= self.crash_after:
            raise KeyboardInterrupt("simulated kill")
        self.batches += 1
        self.rows += len(conversations)
        return self.inner.generate(conversations, config, seed=seed)


def test_pass_at_k_matches_definition():
    assert pass_at_k(8, 0, 1) == 0.0 and pass_at_k(8, 8, 4) == 1.0
    assert math.isclose(pass_at_k(8, 2, 1), 2 / 8)
    assert math.isclose(pass_at_k(5, 2, 2), 1 - math.comb(3, 2) / math.comb(5, 2))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_tiny_model_end_to_end_and_resume(tmp_path, aime_file, backend):
    task = AIMETask(aime_file)
    config = GenerationConfig(n=2, max_new_tokens=6, batch_size=2, temperature=1.0)
    out = tmp_path / "run"
    crashing = CountingBackend(backend, crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate_task(task, output_dir=out, backend=crashing, config=config, progress=False)
    cache = GenerationCache(out)
    assert len(cache.load()) == 4  # two batches of two were written before the "kill"
    with open(cache.path, "a") as f:
        f.write('{"sample_id": "62", "sample_ind')  # torn line, as after a SIGKILL mid-write
    resumed = CountingBackend(backend)
    results = evaluate_task(task, output_dir=out, backend=resumed, config=config,
                            k_values=(1, 2), progress=False)
    assert resumed.rows == 2  # only the two missing generations were made
    assert len(cache.load()) == 6
    assert results["num_problems"] == 3 and results["n"] == 2
    assert set(results["metrics"]) >= {"avg@2", "pass@1", "pass@2", "extraction_failure_rate"}
    # a random tiny model never closes </think>: everything counts as an extraction failure
    assert results["metrics"]["avg@2"] == 0.0
    assert results["metrics"]["extraction_failure_rate"] == 100.0
    # the runner's outputs are in percent and say so; the scoring API returns fractions
    assert results["metrics_unit"] == "percent"
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"] == results["metrics"] and len(saved["per_sample"]) == 3
    card = (out / "README.md").read_text()
    assert "model-index" in card and "avg@2" in card and "n=2,temperature=1.0" in card
    assert "avg@2 (aime, %)" in card and saved["metrics_unit"] == "percent"
    # a third run regenerates nothing; different settings are refused
    again = CountingBackend(backend)
    evaluate_task(task, output_dir=out, backend=again, config=config, progress=False)
    assert again.rows == 0
    with pytest.raises(ValueError, match="different settings"):
        evaluate_task(task, output_dir=out, backend=backend,
                      config=GenerationConfig(n=2, max_new_tokens=7), progress=False)


def test_scoring_only_mode(tmp_path, aime_file):
    preds = tmp_path / "preds.jsonl"
    rows = [
        {"id": "60", "responses": ["<think>easy</think> \\boxed{4}", "<think>x</think> 5"]},
        {"id": "61", "responses": ["<think>...</think> The answer is $\\boxed{30}$",
                                   "no think end \\boxed{30}"]},
        {"id": "62", "responses": ["<think>a</think> \\boxed{5}", "<think>b</think> \\boxed{5}"],
         "finish_reasons": ["stop", "length"]},
    ]
    preds.write_text("\n".join(json.dumps(r) for r in rows))
    results = evaluate_task(AIMETask(aime_file), output_dir=tmp_path / "o", predictions=preds,
                            k_values=(1, 2), progress=False)
    m = results["metrics"]
    assert math.isclose(m["avg@2"], 100 * (0.5 + 0.5 + 0.5) / 3)
    assert math.isclose(m["pass@2"], 100.0)
    # one missing </think>, one truncated -> 2 of 6 responses are extraction failures
    assert math.isclose(m["extraction_failure_rate"], 100 * 2 / 6)
    assert math.isclose(m["truncated_rate"], 100 / 6)
    card = (tmp_path / "o" / "README.md").read_text()
    assert "local" in card and "pass@2" in card
    # the Python scoring API gives the same numbers as fractions
    samples = AIMETask(aime_file).load_samples()
    frac, _ = score_aime([r["responses"] for r in rows], [s.data["answer"] for s in samples],
                         (1, 2), finish_reasons=[r.get("finish_reasons", ["stop"] * 2) for r in rows])
    assert {k: 100 * v for k, v in frac.items()} == pytest.approx(m)


def test_bad_predictions_are_rejected(tmp_path, aime_file):
    samples = AIMETask(aime_file).load_samples()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "60", "responses": ["x"]}) + "\n")
    with pytest.raises(ValueError, match="no predictions for 2 samples"):
        read_predictions(bad, samples)
    bad.write_text(json.dumps({"question": "?"}) + "\n")
    with pytest.raises(ValueError, match="expected keys"):
        read_predictions(bad, samples)
    with pytest.raises(ValueError, match="same non-zero number"):
        score_aime([["a"], ["a", "b"]], ["1", "2"])
    with pytest.raises(ValueError, match="exactly one of"):
        evaluate_task(AIMETask(aime_file), output_dir=tmp_path / "x")


def test_cli_generates_with_a_saved_tiny_model(tmp_path, aime_file, backend):
    from kwaiformers.cli import main

    model_dir = tmp_path / "tiny"
    backend.model.save_pretrained(model_dir)
    backend.tokenizer.save_pretrained(model_dir)
    out = tmp_path / "cli"
    code = main(["eval", "aime", "--dataset", aime_file, "--model", str(model_dir), "--n", "2",
                 "--k", "1,2", "--max-new-tokens", "4", "--batch-size", "3", "--output-dir",
                 str(out), "--model-name", "tiny-qwen3", "--no-progress", "--limit", "2",
                 "--chat-template-kwargs", '{"enable_thinking": false}'])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_problems"] == 2 and results["n"] == 2
    assert results["generation"]["chat_template_kwargs"] == {"enable_thinking": False}
    assert len(GenerationCache(out).load()) == 4
    assert "tiny-qwen3" in (out / "README.md").read_text()


_KILLED_RUN = r'''
import sys, time
from kwaiformers.evaluation.aime import AIMETask
from kwaiformers.evaluation.runner import Generation, GenerationBackend, GenerationConfig, evaluate_task

class Slow(GenerationBackend):
    name, model_name = "fake", "fake-model"
    def generate(self, conversations, config, seed=0):
        time.sleep(0.3)
        return [Generation("<think>t</think> \\boxed{4}") for _ in conversations]

evaluate_task(AIMETask(sys.argv[1]), output_dir=sys.argv[2], backend=Slow(),
              config=GenerationConfig(n=4, batch_size=1, max_new_tokens=8), progress=False)
'''


def test_resume_after_sigkill(tmp_path, aime_file):
    """A real ``kill -9`` of a generating process, then a resume that completes the cache."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from kwaiformers.evaluation.runner import Generation, GenerationBackend

    out = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN)
    proc = subprocess.Popen([sys.executable, str(script), aime_file, str(out)])
    cache = GenerationCache(out)
    deadline = time.monotonic() + 120
    while len(cache.load()) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(cache.load())
    assert 3 <= done_before < 12

    class Counting(GenerationBackend):
        name, model_name, rows = "fake", "fake-model", 0

        def generate(self, conversations, config, seed=0):
            Counting.rows += len(conversations)
            return [Generation("<think>t</think> \\boxed{30}") for _ in conversations]

    results = evaluate_task(AIMETask(aime_file), output_dir=out, backend=Counting(),
                            config=GenerationConfig(n=4, batch_size=1, max_new_tokens=8),
                            progress=False)
    assert Counting.rows == 12 - done_before
    assert len(cache.load()) == 12 and results["n"] == 4


def test_vllm_backend_contract(monkeypatch, tmp_path, aime_file):
    """The vLLM backend with a stand-in ``vllm`` module (vLLM itself needs a GPU): the runner
    hands it chat conversations and sampling settings and maps its outputs."""
    import sys
    import types

    from kwaiformers.evaluation.runner import VLLMBackend

    calls = {}

    class SamplingParams:
        def __init__(self, **kwargs):
            calls["sampling"] = kwargs

    class LLM:
        def __init__(self, model, **kwargs):
            calls["llm"] = (model, kwargs)

        def chat(self, conversations, params, use_tqdm, chat_template, chat_template_kwargs):
            calls["chat"] = (conversations, chat_template, chat_template_kwargs)
            out = types.SimpleNamespace(text="<think>t</think> \\boxed{4}", finish_reason="length",
                                        token_ids=[1, 2, 3])
            return [types.SimpleNamespace(outputs=[out]) for _ in conversations]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM,
                                                                   SamplingParams=SamplingParams))
    backend = VLLMBackend("org/model", tensor_parallel_size=2, max_model_len=4096)
    config = GenerationConfig(n=2, max_new_tokens=64, chat_template_kwargs={"enable_thinking": True})
    results = evaluate_task(AIMETask(aime_file), output_dir=tmp_path / "v", backend=backend,
                            config=config, progress=False)
    assert calls["llm"] == ("org/model", {"tensor_parallel_size": 2, "max_model_len": 4096})
    assert calls["sampling"]["max_tokens"] == 64 and "top_k" not in calls["sampling"]
    conversations, _, template_kwargs = calls["chat"]
    assert conversations[0][0]["role"] == "user" and template_kwargs == {"enable_thinking": True}
    assert results["metrics"]["truncated_rate"] == 100.0  # finish_reason "length" is kept


def test_push_model_index_merges(monkeypatch):
    import huggingface_hub

    from kwaiformers.evaluation.model_card import make_eval_result, push_model_index

    old = make_eval_result(dataset_type="HuggingFaceH4/aime_2024", dataset_name="AIME 2024",
                           metric_type="avg@8", metric_value=10.0)
    other = make_eval_result(dataset_type="x/y", dataset_name="Y", metric_type="acc",
                             metric_value=1.0)
    seen = {}
    card = huggingface_hub.ModelCard("---\n---\n")
    card.data.eval_results = [old, other]
    monkeypatch.setattr(huggingface_hub.ModelCard, "load", classmethod(lambda cls, *a, **k: card))
    monkeypatch.setattr(huggingface_hub, "metadata_update",
                        lambda repo, meta, **kw: seen.update(repo=repo, meta=meta, **kw) or "url")
    new = make_eval_result(dataset_type="HuggingFaceH4/aime_2024", dataset_name="AIME 2024",
                           metric_type="avg@8", metric_value=42.0)
    assert push_model_index("me/model", "model", [new]) == "url"
    metrics = [m for r in seen["meta"]["model-index"][0]["results"] for m in r["metrics"]]
    assert sorted(m["value"] for m in metrics) == [1.0, 42.0] and seen["overwrite"] is True
    with pytest.raises(ValueError, match="finite number"):
        make_eval_result(dataset_type="a", dataset_name="b", metric_type="c",
                         metric_value=float("nan"))


@pytest.mark.parametrize("name, hub_id, sha", [
    ("aime24", "HuggingFaceH4/aime_2024", "2fe88a2f1091d5048c0f36abc874fb997b3dd99a"),
    ("aime25", "yentinglin/aime_2025", "6f71d77b0b89b9dabe07ab466c51df33f514df7f"),
])
def test_hub_aime_loads_request_the_pinned_revision(monkeypatch, name, hub_id, sha):
    import datasets

    from kwaiformers.evaluation.aime import load_aime

    calls = []

    def fake_load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        return [{"id": 7, "problem": "1+1?", "answer": " 2 "}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    samples = load_aime(name)
    assert calls == [(hub_id, {"split": "train", "revision": sha})]
    assert samples[0].id == "7" and samples[0].data["answer"] == "2"
    load_aime(name, revision="abc123")  # an explicit revision wins over the pin
    assert calls[-1][1]["revision"] == "abc123"
    task = AIMETask(name)
    assert task.dataset_revision == sha
