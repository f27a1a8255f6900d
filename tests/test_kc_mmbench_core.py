"""KC-MMBench: loader (published TSV + images layout), prompts, official extraction and scoring."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from utils import KC_MMBENCH_FIXTURE_ROWS, make_tiny_kc_mmbench

from kwaiformers.evaluation import kc_mmbench as kc
from kwaiformers.evaluation.judges import (
    CallableJudge,
    Judge,
    OpenAICompatibleJudge,
    TransformersChatJudge,
    build_judge,
)


@pytest.fixture()
def bench(tmp_path):
    return make_tiny_kc_mmbench(tmp_path / "KC-MMbench")


# ----------------------------------------------------------------------------------------- loader


def test_loader_reads_all_six_tasks_in_published_schema(bench):
    data = kc.load_kc_mmbench(bench)
    assert list(data) == list(kc.TASKS)
    for task, rows in KC_MMBENCH_FIXTURE_ROWS.values():
        samples = data[task]
        assert [s.index for s in samples] == [r[0] for r in rows]
        for s, (_, question, answer, n_images, category) in zip(samples, rows):
            assert s.question == question and s.answer == answer
            assert len(s.image_paths) == n_images
            assert all(p.endswith(".png") and p.startswith(bench) for p in s.image_paths)
            assert s.category == (category or None)
    assert data["CPV"][1].image_paths[0].endswith("CPV/1_0.png")


def test_loader_subsets_aliases_and_errors(bench, tmp_path):
    data = kc.load_kc_mmbench(bench, tasks="SPU,Video_Topic", max_samples=1)
    assert list(data) == ["SPU", "Hot_Videos_Aggregation"] and len(data["SPU"]) == 1
    assert kc.parse_tasks(["PornComment", "High_Like", "CPV", "CPV"]) == [
        "Pornographic_Comment", "High_like", "CPV"]
    with pytest.raises(ValueError, match="unknown KC-MMBench task 'MMMU'"):
        kc.load_kc_mmbench(bench, tasks=["MMMU"])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        kc.load_kc_mmbench(tmp_path / "nope")
    # a TSV named after the task (issue spelling) is found too
    (tmp_path / "alt" / "subsets").mkdir(parents=True)
    src = (tmp_path / "KC-MMbench" / "subsets" / "SPU.tsv").read_text(encoding="utf-8")
    (tmp_path / "alt" / "subsets" / "SPU.tsv").write_text(src, encoding="utf-8")
    (tmp_path / "alt" / "images").symlink_to(tmp_path / "KC-MMbench" / "images")
    assert len(kc.load_kc_mmbench(tmp_path / "alt", tasks=["SPU"])["SPU"]) == 2
    # missing image -> clear error; missing column -> clear error
    (tmp_path / "KC-MMbench" / "images" / "SPU" / "50_0.png").unlink()
    with pytest.raises(FileNotFoundError, match="SPU/50_0.png"):
        kc.load_kc_mmbench(bench, tasks=["SPU"])
    bad = tmp_path / "bad" / "subsets"
    bad.mkdir(parents=True)
    (bad / "CPV.tsv").write_text("index\tquestion\tanswer\n0\tq\ta\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['image_path'\]"):
        kc.load_kc_mmbench(tmp_path / "bad", tasks=["CPV"])


def test_image_path_cell_parsing_is_safe():
    assert kc.parse_image_path("a/b.jpg") == ["a/b.jpg"]
    assert kc.parse_image_path("['x.png', 'y.png']") == ["x.png", "y.png"]
    with pytest.raises(ValueError, match="not a valid list literal"):
        kc.parse_image_path("[__import__('os').system('true')]")
    with pytest.raises(ValueError, match="empty"):
        kc.parse_image_path("  ")


def test_prompts_use_official_suffixes_and_think_switch(bench):
    data = kc.load_kc_mmbench(bench, tasks=["SPU", "CPV"])
    spu, cpv = data["SPU"][0], data["CPV"][1]
    assert spu.prompt_text() == spu.question + "\n请直接给出结论，回答是或者否，不需要做额外分析，并且不许回答不确定"
    assert cpv.prompt_text() == cpv.question + "\nAnswer the question using a single word or phrase."
    assert cpv.prompt_text("think").endswith("phrase./think")
    assert spu.prompt_text("no_think").endswith("不确定/no_think")
    msgs = cpv.messages(think="think")
    content = msgs[0]["content"]
    assert [c["type"] for c in content] == ["image", "image", "text"]
    assert content[-1]["text"].endswith("/think")
    with pytest.raises(ValueError, match="think must be"):
        spu.prompt_text("maybe")


def test_subsample_frames():
    paths = [str(i) for i in range(10)]
    assert kc.subsample_frames(paths, None) == paths
    assert kc.subsample_frames(paths, 3) == ["0", "4", "9"] or kc.subsample_frames(paths, 3) == [
        "0", "5", "9"]
    assert kc.subsample_frames(paths, 1) == ["0"]
    assert kc.subsample_frames(paths, 20) == paths
    with pytest.raises(ValueError, match="max_frames"):
        kc.subsample_frames(paths, 0)


# ------------------------------------------------------------------------------ Y/N extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("是", "是"),
        ("否", "否"),
        ("是。", "Unknown"),  # Chinese punctuation is not stripped: token '是。'
        ("是的", "Unknown"),  # per-token match: '是的' is not '是'
        ("是，不是", "Unknown"),
        ("是 否", "Unknown"),  # both present
        ("答案：\n是", "是"),
        ("是!", "是"),  # ASCII punctuation becomes a space
        ("是.", "是"),
        ("yes", "是"),
        ("no.", "否"),
        ("yes, no", "Unknown"),
        ("是 no", "是"),  # 是/否 is tested before yes/no
        # case-sensitive, as the official YOrN_cn_Extraction (no lower-casing)
        ("Yes", "Unknown"),
        ("Yes.", "Unknown"),
        ("YES", "Unknown"),
        ("No.", "Unknown"),
        ("The answer is No", "Unknown"),
        ("nO", "Unknown"),
        ("Yes, no", "否"),  # only the lower-case 'no' is a token
        ("the answer is no.", "否"),
        ("<think>否 否 否</think>是", "是"),  # think blocks removed first
        ("<think>\n一些分析\n</think>\n\n否", "否"),
        ("<think>unterminated 是", "是"),
        ("", "Unknown"),
    ],
)
def test_yorn_cn_extraction_edge_cases(text, expected):
    assert kc.yorn_cn_extraction(kc.remove_think_tags(text)) == expected


def test_process_punctuation_matches_vlmevalkit_quirks():
    assert kc.process_punctuation("a,b") == "a b"  # no space around: replaced by a space
    assert kc.process_punctuation("a, b") == "a b"  # touches a space: deleted
    assert kc.process_punctuation("1,000 and a,b") == "1000 and ab"  # digit-comma-digit: all deleted
    assert kc.process_punctuation("v1.5 end.") == "v1.5 end"
    assert kc.process_punctuation("。，！？") == "。，！？"
    # at most 32 periods are removed (re.UNICODE passed as `count` in the original)
    assert kc.process_punctuation("." * 40) == "." * 8
    # the fork's real look-behind: a period right after a digit stays (upstream removes it)
    assert kc.process_punctuation("1. 是") == "1. 是"
    assert kc.process_punctuation("3.14 end. ok") == "3.14 end ok"


def test_period_lookbehind_changes_verdicts_on_long_outputs():
    # 32 numbered steps: upstream VLMEvalKit's '(?!<=\d)(\.)(?!\d)' spends its 32 removals on the
    # "N." periods and leaves "是." (Unknown); the fork's pattern skips them and strips "是."
    text = "".join(f"{i}. 分析\n" for i in range(1, 33)) + "结论 是."
    assert kc.yorn_cn_extraction(text) == "是"
    import re

    upstream = re.compile(r"(?!<=\d)(\.)(?!\d)").sub("", text, 32)
    assert "是." in upstream.split()  # what the upstream pattern would have left


def test_keye_post_process():
    pp = kc.keye_post_process
    assert pp("<analysis>a</analysis><think>t</think>\n<answer>是</answer>") == "是"
    assert pp("<think>x</think>\n\n  结论：否 ") == "结论：否"
    assert pp("the answer is \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    assert pp("<answer>first</answer> <answer>\\boxed{B}</answer>") == "B"
    assert pp("plain") == "plain"
    assert pp("") == ""
    assert pp("<answer>unclosed") == "<answer>unclosed"


# ------------------------------------------------------------------------------- scoring


def test_yes_no_scoring_unknown_rate_and_categories():
    preds = ["否", "是。", "<think>是</think>否", "是", "no", "是", "是的"]
    refs = ["否", "是", "否", "是", "否", "是", "否"]
    tasks = ["PornComment"] * 3 + ["High_like"] * 2 + ["SPU"] * 2
    cats = ["comment", "comment", "video", None, None, "服饰", "数码"]
    res = kc.score_kc_mmbench(preds, refs, tasks, categories=cats, return_details=True)
    porn = res["tasks"]["Pornographic_Comment"]
    # fractions in [0, 1], evaluate's convention
    assert porn["num_correct"] == 2 and math.isclose(porn["accuracy"], 2 / 3)
    assert porn["num_unknown"] == 1 and math.isclose(porn["unknown_rate"], 1 / 3)
    assert porn["categories"] == {"comment": 0.5, "video": 1.0}
    assert porn["mode"] == kc.MODE_YN
    assert res["tasks"]["High_like"]["accuracy"] == 1.0
    assert res["tasks"]["SPU"]["accuracy"] == 0.5 and res["tasks"]["SPU"]["unknown_rate"] == 0.5
    assert math.isclose(res["overall_accuracy"], (2 / 3 + 1 + 0.5) / 3)
    assert math.isclose(res["overall_micro_accuracy"], 5 / 7)
    assert res["vqa_mode"] is None
    assert res["details"][1] == {"task": "Pornographic_Comment", "extracted": "Unknown",
                                 "exact_correct": False, "correct": False}
    assert porn["exact_match_accuracy"] == porn["accuracy"] and "judged_accuracy" not in porn


def test_rule_mode_is_labelled_and_deterministic():
    preds = [
        "<think>嗯</think>红色",  # CPV equal
        "材质是纯棉。",  # contained in last line
        "M",
        "分析……\n[是，否，是]",  # topic: model's own last list
        "是 否",  # topic without brackets: marks of last line -> 是否 vs 否否 wrong
        "顺序是 2, 1, 3",
        "1,2,3",
    ]
    refs = ["红色", "纯棉", "XL", "是_否_是", "否_否", "2,1,3", "1,3,2"]
    tasks = ["CPV"] * 3 + ["Hot_Videos_Aggregation"] * 2 + ["Collection_Order"] * 2
    res = kc.score_kc_mmbench(preds, refs, tasks)
    assert res["vqa_mode"] == "rule"
    assert res["tasks"]["CPV"]["num_correct"] == 2
    assert res["tasks"]["Hot_Videos_Aggregation"]["num_correct"] == 1
    assert res["tasks"]["Collection_Order"]["num_correct"] == 1
    assert all(m == kc.MODE_RULE for m in res["modes"].values())
    assert "not the paper's metric" in kc.MODE_RULE


def test_is_topic_right_official_semantics():
    assert kc.is_topic_right(["是", "否"], "[是，否]")
    assert kc.is_topic_right(["是", "否"], "先[否] 后 [是, 否]")  # last list wins
    assert not kc.is_topic_right(["是", "否"], "[是，否，是]")  # extra mark
    assert not kc.is_topic_right(["是", "否"], "[是]")
    assert not kc.is_topic_right(["是"], "是")  # no list at all


class _StubJudge:
    """Scripted judge (tests only): fails ``fail_first`` times, then answers from ``replies``."""

    name = "stub"

    def __init__(self, replies, fail_first=0):
        self.replies = replies
        self.fail_first = fail_first
        self.calls: list[tuple[str, float]] = []

    def generate(self, prompt, temperature=0.0):
        self.calls.append((prompt, temperature))
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionError("boom")
        for key, reply in self.replies.items():
            if key in prompt:
                return reply
        return "回答错误"


def test_judge_mode_official_prompts_verdicts_retries_and_cache():
    judge = _StubJudge(
        {"标准答案：“红色”": "回答正确", "内容为：”[是，否，是]“": "[是，否，是]",
         "内容为：”都不是“": "[否，是]"},
        fail_first=2,
    )
    assert isinstance(judge, Judge)
    preds = ["<think>想一想</think>红色", "棉", "[是，否，是]", "都不是", "是"]
    refs = ["红色", "纯棉", "是_否_是", "否_否", "是"]
    tasks = ["CPV", "CPV", "Video_Topic", "Video_Topic", "SPU"]
    cache: dict[str, str] = {}
    seen = []
    res = kc.score_kc_mmbench(preds, refs, tasks, judge=judge, judge_cache=cache,
                              on_judged=lambda p, o: seen.append(p), return_details=True,
                              progress=False, questions=["q"] * 5)
    # official prompt text, think tags removed from the response
    first_prompt = judge.calls[0][0]
    assert first_prompt == kc.VQA_JUDGE_PROMPT.format("红色", "红色")
    assert "想一想" not in first_prompt
    # retry schedule: temperature 0.5 * try
    assert [t for _, t in judge.calls[:3]] == [0.0, 0.5, 1.0]
    assert res["tasks"]["CPV"]["num_correct"] == 1
    assert res["tasks"]["CPV"]["mode"] == "judge:stub"
    assert res["tasks"]["Hot_Videos_Aggregation"]["num_correct"] == 1
    assert res["tasks"]["Hot_Videos_Aggregation"]["judge_failures"] == 0
    assert res["tasks"]["SPU"]["mode"] == kc.MODE_YN_JUDGE_PREFIX + "stub"
    assert res["tasks"]["SPU"]["num_unknown"] == 0  # nothing to re-judge
    assert res["vqa_mode"] == "judge"
    assert 0.0 <= res["tasks"]["CPV"]["rule_agreement"] <= 1.0
    assert len(cache) == 4 and len(seen) == 4
    # cached prompts are not re-asked
    n_calls = len(judge.calls)
    kc.score_kc_mmbench(preds, refs, tasks, judge=judge, judge_cache=cache, progress=False,
                        questions=["q"] * 5)
    assert len(judge.calls) == n_calls


def test_judge_failures_count_as_wrong_and_are_reported():
    judge = _StubJudge({}, fail_first=100)
    res = kc.score_kc_mmbench(["红色"], ["红色"], ["CPV"], judge=judge, judge_retries=3,
                              progress=False)
    assert res["tasks"]["CPV"]["judge_failures"] == 1
    assert res["tasks"]["CPV"]["accuracy"] == 0.0
    assert len(judge.calls) == 3
    # rule mode can be forced even with a judge
    res = kc.score_kc_mmbench(["红色"], ["红色"], ["CPV"], judge=judge, vqa_mode="rule")
    assert res["tasks"]["CPV"]["accuracy"] == 1.0 and res["vqa_mode"] == "rule"


class _ScriptedJudge:
    """Replies from a list in order (tests only); an exception instance is raised."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls: list[tuple[str, float]] = []

    def generate(self, prompt, temperature=0.0):
        self.calls.append((prompt, temperature))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def test_unknown_yes_no_answers_are_rejudged_with_the_official_prompt():
    # "Yes." is Unknown by extraction; the judge says "Unknown" then "是" (YOrN_cn_auxeval retries)
    judge = _ScriptedJudge(["Unknown", "是", "否", "", "我不确定"])
    preds = ["<think>想想</think>Yes.", "是", "No", "Yes!"]
    refs = ["是", "是", "是", "是"]
    res = kc.score_kc_mmbench(preds, refs, ["SPU"] * 4, judge=judge, return_details=True,
                              questions=["两个商品相同吗", "q2", "q3", "q4"], judge_retries=2,
                              progress=False)
    prompt, temperature = judge.calls[0]
    assert prompt == kc.YORN_JUDGE_PROMPT.format("两个商品相同吗", "Yes.")  # think removed
    assert prompt.startswith("你是一个AI助手") and prompt.endswith("问题：两个商品相同吗？\n答案：Yes.\n你的输出：")
    assert [t for _, t in judge.calls] == [0.0, 0.5, 0.0, 0.0, 0.5]
    spu = res["tasks"]["SPU"]
    assert spu["exact_match_accuracy"] == 0.25 and spu["num_unknown"] == 3
    assert spu["judged_accuracy"] == spu["accuracy"] == 0.5  # "Yes." -> 是, "No" -> 否
    assert spu["num_unknown_after_judge"] == 1 and spu["judge_failures"] == 0
    assert spu["mode"] == "official-exact-match+judge:scripted"
    d = res["details"]
    assert (d[0]["extracted"], d[0]["judged"], d[0]["correct"]) == ("Unknown", "是", True)
    assert d[1].get("judged") is None and d[2]["judged"] == "否"
    assert d[3]["judged"] == "Unknown" and d[3]["judge_output"] == "我不确定"  # 2 tries, no 是/否
    # exact match only on request; questions are required to re-judge
    res = kc.score_kc_mmbench(preds, refs, ["SPU"] * 4, judge=judge, yn_judge=False)
    assert res["tasks"]["SPU"]["accuracy"] == 0.25 and res["tasks"]["SPU"]["mode"] == kc.MODE_YN
    with pytest.raises(ValueError, match="questions"):
        kc.score_kc_mmbench(preds, refs, ["SPU"] * 4, judge=judge)
    # very long questions are cut as officially (first and last 4096 chars, last 8192 of the answer)
    long_q = "前" * 6000 + "后" * 6000
    p = kc.yorn_judge_prompt(long_q, "x" * 9000)
    assert "前" * 4096 + "后" * 4096 + "？" in p and "前" * 4097 not in p and "x" * 8193 not in p


def test_judge_retries_only_on_api_failure_and_empty_reply_is_final():
    judge = _ScriptedJudge([ConnectionError("down"), kc.JUDGE_FAIL_MSG, "", "回答正确"])
    res = kc.score_kc_mmbench(["红色"], ["红色"], ["CPV"], judge=judge, return_details=True,
                              progress=False)
    assert [t for _, t in judge.calls] == [0.0, 0.5, 1.0]  # two failures retried, "" is final
    assert res["details"][0]["judge_output"] == "" and res["details"][0]["judge_error"] is None
    assert res["tasks"]["CPV"]["accuracy"] == 0.0 and res["tasks"]["CPV"]["judge_failures"] == 0
    # a Y/N judge keeps asking while the reply does not extract to 是/否 (API failures included)
    judge = _ScriptedJudge([kc.JUDGE_FAIL_MSG, RuntimeError("x"), "否"])
    assert kc._run_yorn_judge(judge, "p", 5) == ("否", "否", None)
    judge = _ScriptedJudge([RuntimeError("x")] * 2)
    answer, output, error = kc._run_yorn_judge(judge, "p", 2)
    assert (answer, output) == ("Unknown", "") and "RuntimeError" in error


def test_think_defaults_to_the_official_config_for_keye_models(tmp_path):
    assert kc.resolve_think(None, "Kwai-Keye/Keye-VL-8B-Preview") == "think"
    assert kc.resolve_think(None, "Kwai-Keye/Keye-VL-1_5-8B") == "think"
    assert kc.resolve_think(None, "Qwen/Qwen2.5-VL-7B-Instruct") == "auto"
    assert kc.resolve_think(None, None) == "auto"
    assert kc.resolve_think("no_think", "Kwai-Keye/Keye-VL-8B-Preview") == "no_think"
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"model_type": "KeyeVL1_5"}))
    assert kc.resolve_think(None, str(local)) == "think"
    (local / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    assert kc.resolve_think(None, str(local)) == "auto"
    import argparse

    parser = argparse.ArgumentParser()
    kc.add_arguments(parser)
    args = parser.parse_args(["--model", "Kwai-Keye/Keye-VL-8B-Preview", "--output-dir",
                              str(tmp_path / "o")])
    assert args.think is None and kc.task_from_args(args).think == "think"


def test_score_validates_inputs():
    with pytest.raises(ValueError, match="references has 1 entries, expected 2"):
        kc.score_kc_mmbench(["是", "否"], ["是"], ["SPU", "SPU"])
    with pytest.raises(TypeError, match=r"predictions\[0\] must be a string"):
        kc.score_kc_mmbench([1], ["是"], ["SPU"])
    with pytest.raises(ValueError, match="unknown KC-MMBench task"):
        kc.score_kc_mmbench(["是"], ["是"], ["MME"])
    with pytest.raises(ValueError, match="needs a judge"):
        kc.score_kc_mmbench(["x"], ["x"], ["CPV"], vqa_mode="judge")
    with pytest.raises(TypeError, match="generate"):
        kc.score_kc_mmbench(["x"], ["x"], ["CPV"], judge=object())
    with pytest.warns(UserWarning, match="is not 是/否"):
        kc.score_kc_mmbench(["是"], ["yes"], ["SPU"])


# ---------------------------------------------------------------------------------- judges


class _ChatHandler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                    "body": body})
        reply = "回答正确" if "“红色”。回答：“红色”" in body["messages"][-1]["content"] else "回答错误"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args):
        pass


def test_openai_compatible_judge_against_local_server():
    server = HTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        judge = build_judge(f"openai:judge-model@http://127.0.0.1:{server.server_port}/v1",
                            api_key="sk-test")
        assert isinstance(judge, OpenAICompatibleJudge) and judge.name == "openai:judge-model"
        res = kc.score_kc_mmbench(["红色", "蓝色"], ["红色", "红色"], ["CPV", "CPV"], judge=judge,
                                  progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert res["tasks"]["CPV"]["num_correct"] == 1 and res["tasks"]["CPV"]["judge_failures"] == 0
    req = _ChatHandler.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "judge-model" and req["body"]["max_tokens"] == 128
    assert req["body"]["temperature"] == 0.0


def test_build_judge_specs_and_transformers_judge():
    from utils import make_tiny_qwen3, make_tiny_tokenizer

    assert build_judge(None) is None and build_judge("rule") is None
    with pytest.raises(ValueError, match="not understood"):
        build_judge("claude")
    with pytest.raises(ValueError, match="base_url must start"):
        OpenAICompatibleJudge(base_url="ftp://x")
    cj = CallableJudge(lambda p: "回答正确", name="const")
    assert cj.generate("q", 0.5) == "回答正确"
    tok = make_tiny_tokenizer()
    judge = TransformersChatJudge(make_tiny_qwen3(tok), tokenizer=tok, max_new_tokens=4)
    out = judge.generate("你好 ok", temperature=0.0)
    assert isinstance(out, str)
    assert judge.generate("你好 ok", temperature=0.0) == out  # greedy: deterministic
    res = kc.score_kc_mmbench(["x"], ["y"], ["CPV"], judge=judge, progress=False)
    assert res["tasks"]["CPV"]["mode"].startswith("judge:hf:")
