"""The general image/video multiple-choice runner (kwaiformers.evaluation.mm_mcq)."""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest
from PIL import Image

from kwaiformers.evaluation import mm_mcq
from kwaiformers.evaluation.runner import GenerationConfig, TransformersBackend, evaluate_task

OPTIONS = {"A": "cat", "B": "dog", "C": "bird"}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("A", "A"),
        ("The answer is B.", "B"),
        ("Answer: C", "C"),
        ("\\boxed{B}", "B"),
        ("(A) cat", "A"),
        ("I think it is a dog", "B"),
        ("A or B", None),
        ("<think>A</think>C", "C"),
        ("答案：B", "B"),
        ("Answer: D", None),  # not an option
        ("no idea", None),
    ],
)
def test_extract_choice(response, expected):
    assert mm_mcq.extract_choice(response, OPTIONS) == expected


def test_prompt_matches_vlmevalkit_layout():
    text = mm_mcq.build_mcq_prompt("What is it?", {"A": "cat", "B": "dog"}, hint="a pet")
    assert text == ("Hint: a pet\nQuestion: What is it?\nOptions:\nA. cat\nB. dog\n"
                    "Please select the correct answer from the options above. \n")


def _png_b64(colour) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_loaders_tsv_jsonl_and_end_to_end(tmp_path):
    from utils import make_tiny_paddleocr_vl

    (tmp_path / "images").mkdir()
    for k in range(3):
        Image.new("RGB", (16, 16), (80 * k, 0, 0)).save(tmp_path / "images" / f"f{k}.png")
    tsv = tmp_path / "bench.tsv"
    with open(tsv, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["index", "question", "A", "B", "C", "answer", "image_path", "category"])
        w.writerow(["1", "Which animal?", "cat", "dog", "", "B", "f0.png", "pets"])
        w.writerow(["2", "Which frame order?", "1-2-3", "3-2-1", "2-1-3", "A",
                    "['f0.png', 'f1.png', 'f2.png']", "video"])
    jsonl = tmp_path / "bench.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        f.write(json.dumps({"index": 7, "question": "Colour?", "A": "red", "B": "blue",
                            "answer": "A", "image": _png_b64((255, 0, 0))}) + "\n")
    task = mm_mcq.MultipleChoiceTask(tsv, max_frames=2)
    samples = task.load_samples()
    assert [s.data["options"] for s in samples] == [
        {"A": "cat", "B": "dog"}, {"A": "1-2-3", "B": "3-2-1", "C": "2-1-3"}]
    assert len(samples[1].data["images"]) == 2  # max_frames
    msgs = task.build_messages(samples[0])
    assert [c["type"] for c in msgs[0]["content"]] == ["image", "text"]
    jtask = mm_mcq.MultipleChoiceTask(jsonl, cache_dir=tmp_path / "cache")
    (js,) = jtask.load_samples()
    assert js.id == "7" and js.data["images"][0].startswith(str(tmp_path / "cache"))

    model, processor = make_tiny_paddleocr_vl()
    backend = TransformersBackend(model, processor, model_name="tiny")
    res = evaluate_task(task, output_dir=tmp_path / "out", backend=backend,
                        config=GenerationConfig(temperature=0.0, max_new_tokens=3, batch_size=2),
                        progress=False)
    assert res["num_problems"] == 2 and 0.0 <= res["metrics"]["accuracy"] <= 100.0
    assert {"category/pets", "category/video", "extraction_failure_rate"} <= set(res["metrics"])
    # scoring-only with scripted responses
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(json.dumps({"id": i, "responses": [r]}) for i, r in
                               [("1", "Answer: B"), ("2", "I pick 3-2-1")]), encoding="utf-8")
    res = evaluate_task(task, output_dir=tmp_path / "s", predictions=preds, progress=False)
    assert res["metrics"]["accuracy"] == 50.0 and res["metrics"]["category/pets"] == 100.0
    assert res["metrics_unit"] == "percent"  # runner outputs: percent, labelled
    from kwaiformers.cli import main

    assert main(["eval", "mcq", "--data", str(tsv), "--predictions", str(preds), "--output-dir",
                 str(tmp_path / "cli"), "--no-progress"]) == 0
    with open(tmp_path / "cli" / "results.json", encoding="utf-8") as f:
        assert json.load(f)["metrics"]["accuracy"] == 50.0


def test_loader_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"index": 1, "question": "q", "A": "x", "B": "y", "answer": "C",
                               "image_path": "nope.png"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="answer 'C' is not one of"):
        mm_mcq.MultipleChoiceTask(bad).load_samples()
    bad.write_text(json.dumps({"index": 1, "question": "q", "A": "x", "B": "y", "answer": "A",
                               "image_path": "nope.png"}) + "\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        mm_mcq.MultipleChoiceTask(bad).load_samples()
    with pytest.raises(ValueError, match=".tsv or .jsonl"):
        mm_mcq.read_rows(__file__)
