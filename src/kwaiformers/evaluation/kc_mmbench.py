"""KC-MMBench (Kwai-Keye/KC-MMbench): loader, prompts and scoring core.

KC-MMBench is the short-video benchmark released with Kwai Keye-VL (arXiv 2507.01949). It has six
tasks, published as VLMEvalKit TSV files (``subsets/<file>.tsv``) plus an ``images/`` folder; every
"video" is a list of images and every prompt is multi-image.

===========================  ============================  ======  =========================
task (canonical name)        hub TSV file                  type    gold answer
===========================  ============================  ======  =========================
``CPV``                      ``CPV.tsv``                   VQA     product attribute value
``Hot_Videos_Aggregation``   ``Video_Topic.tsv``           VQA     ``是_否_..._是``
``Collection_Order``         ``Video_Order.tsv``           VQA     free text / order
``Pornographic_Comment``     ``PornComment.tsv``           Y/N     ``是`` / ``否``
``High_like``                ``High_like.tsv``             Y/N     ``是`` / ``否``
``SPU``                      ``SPU.tsv``                   Y/N     ``是`` / ``否``
===========================  ============================  ======  =========================

Scoring (``score_kc_mmbench``) follows the official evaluation code (the VLMEvalKit fork shipped in
``Kwai-Keye/Keye`` under ``evaluation/KC-MMBench``, classes ``KwaiYORNDataset`` and
``KwaiVQADataset``):

* **Y/N tasks**: think blocks removed, then case-sensitive ``是``/``否`` token extraction, then
  ``yes``/``no``, else ``Unknown`` (``YOrN_cn_Extraction``; ``Yes.``/``No`` are Unknown); score =
  ``answer == extracted``; accuracy overall and per ``category``/``l2-category``. When a
  judge is configured the official pipeline re-asks it for every ``Unknown`` answer
  (``YOrN_cn_match_prompt`` / ``YOrN_cn_auxeval``: :data:`YORN_JUDGE_PROMPT`, up to 5 tries at
  temperature ``0.5 * try`` until the reply extracts to 是/否); both the exact-match and the
  judged accuracies are reported (``accuracy`` is the judged one when a judge ran).
* **VQA tasks**: the official protocol always uses an LLM judge (``gpt-4o-mini`` by default, 128
  new tokens, up to 5 tries at temperature ``0.5 * try``) with the official Chinese prompts
  (:data:`VQA_JUDGE_PROMPT`, :data:`TOPIC_JUDGE_PROMPT`). Pass any :class:`~kwaiformers.evaluation.judges.Judge`
  (a local transformers chat model or an OpenAI-compatible endpoint); a judge call is retried
  only when it fails (an exception or VLMEvalKit's API failure message), an empty reply is final.
  Without a judge, a
  deterministic **rule** mode is used; it is *not* the paper's metric and every result says which
  mode produced it (``"mode"``).

Units: :func:`score_kc_mmbench` and the ``eval/kc_mmbench`` module return accuracies and rates as
fractions in [0, 1] (``evaluate``'s convention); the runner (:class:`KCMMBenchTask`) shows them in
percent in its table, ``results.json`` and model-index, as the official KC-MMBench tables do,
labelled (``metrics_unit``).
"""

from __future__ import annotations

import ast
import csv
import logging
import math
import os
import re
import sys
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kwaiformers.evaluation.runner import EvalSample, Generation, TaskAdapter, TaskResult

logger = logging.getLogger(__name__)

#: Hub dataset id (the GitHub README misspells it ``KwaiKeye/KC-MMbench``).
KC_MMBENCH_REPO_ID = "Kwai-Keye/KC-MMbench"
#: Default hub revision. No commit of the dataset could be verified offline, so the default is
#: ``"main"``; pass ``revision=<commit sha>`` to pin it. The commit actually used is always
#: recorded in the results (``dataset_revision``).
KC_MMBENCH_REVISION = "main"

YN_TASKS: tuple[str, ...] = ("Pornographic_Comment", "High_like", "SPU")
VQA_TASKS: tuple[str, ...] = ("CPV", "Hot_Videos_Aggregation", "Collection_Order")
#: The six tasks in the order of the official table.
TASKS: tuple[str, ...] = (
    "CPV",
    "Hot_Videos_Aggregation",
    "Collection_Order",
    "Pornographic_Comment",
    "High_like",
    "SPU",
)
#: canonical task -> file name on the hub (VLMEvalKit ``DATASET_URL``).
TASK_FILES: dict[str, str] = {
    "CPV": "CPV.tsv",
    "Hot_Videos_Aggregation": "Video_Topic.tsv",
    "Collection_Order": "Video_Order.tsv",
    "Pornographic_Comment": "PornComment.tsv",
    "High_like": "High_like.tsv",
    "SPU": "SPU.tsv",
}
#: Accepted aliases (VLMEvalKit dataset names, the paper's spelling) -> canonical task name.
TASK_ALIASES: dict[str, str] = {
    **{t: t for t in TASKS},
    **{Path(f).stem: t for t, f in TASK_FILES.items()},
    "High_Like": "High_like",
    "Porn_Comment": "Pornographic_Comment",
}

#: Suffix of the Y/N prompts (``KwaiYORNDataset.build_prompt``): "state the conclusion directly,
#: answer 是 or 否, no extra analysis, 'uncertain' is not allowed".
YN_PROMPT_SUFFIX = "\n请直接给出结论，回答是或者否，不需要做额外分析，并且不许回答不确定"
#: Suffix of the VQA prompts (``ImageVQADataset.build_prompt``).
VQA_PROMPT_SUFFIX = "\nAnswer the question using a single word or phrase."

#: Official judge prompt for CPV and Collection_Order (``build_Kwaivqa_gpt4_prompt``); formatted
#: with the gold answer and the think-stripped response.
VQA_JUDGE_PROMPT = (
    "给你一个标准答案和一个回答，请根据标准答案判断回答是否正确，同时忽略回答中的分析过程中，"
    "直接对比回答中的结论和标准答案是否一致，标准答案：“{}”。回答：“{}”。"
    "请以“回答正确”或“回答错误”的格式返回答案。"
)
#: Official judge prompt for Hot_Videos_Aggregation (``Topic_eval``); formatted with the
#: think-stripped response only (the quote marks are reversed in the original, kept verbatim).
TOPIC_JUDGE_PROMPT = (
    "这是判断给定的视频列表中的视频是否与第一个视频属于同一个主题的结果，其中可能包含了一些分析，"
    "请帮我提取出最后的结论.内容为：”{}“。请将答案直接以列表的形式输出，列表的每一项为“是”或者“否”，"
    "表示对应视频是否与第一个视频属于同一个主题,答案形式为[是，否...是]的格式。"
)
#: Official judge prompt for the ``Unknown`` answers of the Y/N tasks (``YOrN_cn_match_prompt`` in
#: the fork's ``vlmeval/dataset/utils/yorn.py``): "match the answer to 是 / 否, else Unknown", two
#: examples; formatted with the question and the think-stripped response (see
#: :func:`yorn_judge_prompt` for the truncation of very long questions).
YORN_JUDGE_PROMPT = (
    "你是一个AI助手，将帮助我在一个问题的两个选项中匹配一个答案。"
    "选项仅包括 是 / 否。"
    "你将获得一个问题和一个答案，"
    "你需要判断哪个选项（是 / 否）与答案的含义最相近。"
    "如果所有选项的含义与答案明显不同，则输出 Unknown。"
    "你的输出应该是以下三个选项中的一个词：是、否、Unknown。\n"
    "示例 1：\n"
    "问题：这张图中的单词是 'Hello' 吗？\n答案：这张图中的单词是 'Hello'。\n你的输出：是\n"
    "示例 2：\n"
    "问题：这张图中的单词是 'Hello' 吗？\n"
    "答案：这张图中的单词不是 'Hello'。\n你的输出：否\n"
    "示例 3：\n"
    "问题：{}？\n答案：{}\n你的输出："
)
#: The judge's verdict string counted as correct (``post_yn_check``).
JUDGE_CORRECT = "回答正确"
JUDGE_WRONG = "回答错误"
#: VLMEvalKit's API failure message (``BaseAPI.fail_msg``): the only reply that is retried; an
#: empty reply is final.
JUDGE_FAIL_MSG = "Failed to obtain answer via API."

MODE_YN = "official-exact-match"
#: Y/N mode when ``Unknown`` answers were re-judged: ``MODE_YN_JUDGE_PREFIX + judge name``.
MODE_YN_JUDGE_PREFIX = "official-exact-match+judge:"
MODE_RULE = "rule (deterministic; not the paper's metric)"
JUDGE_MODE_PREFIX = "judge:"


def canonical_task(name: str) -> str:
    """Map a task name or alias (``Video_Topic``, ``PornComment``, ...) to its canonical name."""
    if not isinstance(name, str):
        raise TypeError(f"task must be a string, got {type(name).__name__}")
    try:
        return TASK_ALIASES[name]
    except KeyError:
        raise ValueError(
            f"unknown KC-MMBench task {name!r}; expected one of {list(TASKS)} "
            f"(aliases: {sorted(set(TASK_ALIASES) - set(TASKS))})"
        ) from None


def parse_tasks(tasks: str | Iterable[str] | None) -> list[str]:
    """``None``/``"all"`` -> all six; a comma-separated string or an iterable -> canonical names."""
    if tasks is None or tasks == "all":
        return list(TASKS)
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t.strip()]
    out = [canonical_task(t.strip()) for t in tasks]
    if not out:
        raise ValueError("tasks must name at least one KC-MMBench task")
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------


@dataclass
class KCMMBenchSample:
    """One KC-MMBench row.

    Attributes:
        task: canonical task name.
        index: the row's ``index`` (as a string; the cache key together with ``task``).
        question: the Chinese question.
        answer: the gold answer string.
        image_paths: resolved image files, in prompt order.
        category / l2_category: optional breakdown columns.
    """

    task: str
    index: str
    question: str
    answer: str
    image_paths: list[str]
    category: str | None = None
    l2_category: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_yes_no(self) -> bool:
        return self.task in YN_TASKS

    def prompt_text(self, think: str | None = None) -> str:
        """The text part of the prompt: question + official suffix (+ ``/think``/``/no_think``)."""
        return build_prompt_text(self.task, self.question, think=think)

    def messages(
        self, think: str | None = None, max_frames: int | None = None
    ) -> list[dict[str, Any]]:
        """One user turn in transformers' multimodal chat format: one ``image`` item per path, then
        the text (``ImageBaseDataset.build_prompt`` order)."""
        paths = subsample_frames(self.image_paths, max_frames)
        content: list[dict[str, Any]] = [{"type": "image", "path": p} for p in paths]
        content.append({"type": "text", "text": self.prompt_text(think)})
        return [{"role": "user", "content": content}]


def build_prompt_text(task: str, question: str, think: str | None = None) -> str:
    """Question + the task's official suffix; ``think`` in {None, "think", "no_think"} appends
    ``/think`` or ``/no_think`` to the (last) text item as ``KeyeChat.add_think_token`` does."""
    task = canonical_task(task)
    if not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}")
    text = question + (YN_PROMPT_SUFFIX if task in YN_TASKS else VQA_PROMPT_SUFFIX)
    if think is None or think == "auto":
        return text
    if think not in {"think", "no_think"}:
        raise ValueError(f"think must be None, 'auto', 'think' or 'no_think', got {think!r}")
    return text + "/" + think


def subsample_frames(paths: Sequence[str], max_frames: int | None) -> list[str]:
    """Keep at most ``max_frames`` images, uniformly spaced, first and last kept. ``None`` keeps all.

    Caution: in Hot_Videos_Aggregation / Collection_Order each image may stand for a different video,
    so limiting frames changes the task; the default keeps every image (as the official runner)."""
    paths = list(paths)
    if max_frames is None or len(paths) <= max_frames:
        return paths
    if not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    if max_frames == 1:
        return [paths[0]]
    step = (len(paths) - 1) / (max_frames - 1)
    return [paths[round(i * step)] for i in range(max_frames)]


def parse_image_path(value: str) -> list[str]:
    """``image_path`` cell -> list of relative paths (VLMEvalKit ``toliststr``: a Python-list literal
    or a single path). Parsed with :func:`ast.literal_eval`, never ``eval``."""
    if not isinstance(value, str):
        raise TypeError(f"image_path must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise ValueError("image_path is empty")
    if value.startswith("[") and value.endswith("]"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"image_path {value[:80]!r} is not a valid list literal") from err
        if not isinstance(parsed, (list, tuple)) or not parsed:
            raise ValueError(f"image_path {value[:80]!r} must be a non-empty list of paths")
        return [str(p) for p in parsed]
    return [value]


def _resolve_image(root: Path, tsv_dir: Path, rel: str) -> str:
    candidates = [Path(rel)] if os.path.isabs(rel) else []
    candidates += [root / rel, root / "images" / rel, tsv_dir / rel, tsv_dir / "images" / rel]
    for cand in candidates:
        if cand.is_file():
            return str(cand)
    raise FileNotFoundError(
        f"image {rel!r} not found under {root} (tried {root / rel}, {root / 'images' / rel}, "
        f"{tsv_dir / rel})"
    )


def find_task_file(root: str | os.PathLike, task: str) -> Path:
    """The TSV of ``task`` under ``root``: ``subsets/<hub file>``, ``subsets/<task>.tsv`` or the
    same names directly in ``root``."""
    task = canonical_task(task)
    root = Path(root)
    names = [TASK_FILES[task], f"{task}.tsv"]
    for folder in (root / "subsets", root):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(
        f"no TSV for task {task!r} under {root} (looked for subsets/{names[0]} and subsets/{names[1]})"
    )


def read_task_tsv(
    path: str | os.PathLike,
    task: str,
    root: str | os.PathLike | None = None,
    check_images: bool = True,
) -> list[KCMMBenchSample]:
    """Read one task TSV into samples. Required columns: ``index``, ``question``, ``answer``,
    ``image_path``; optional ``category`` and ``l2-category``; other columns go to ``extra``."""
    task = canonical_task(task)
    path = Path(path)
    root = Path(root) if root is not None else path.parent.parent
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"index", "question", "answer", "image_path"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {sorted(missing)}; expected a KC-MMBench TSV with "
                "index, question, answer, image_path (and optional category)"
            )
        samples = []
        seen: set[str] = set()
        for lineno, row in enumerate(reader, start=2):
            index = (row.get("index") or "").strip()
            if not index:
                raise ValueError(f"{path}:{lineno}: empty 'index'")
            if index in seen:
                raise ValueError(f"{path}:{lineno}: duplicate index {index!r}")
            seen.add(index)
            rel = parse_image_path(row["image_path"] or "")
            images = (
                [_resolve_image(root, path.parent, p) for p in rel] if check_images else list(rel)
            )
            known = {"index", "question", "answer", "image_path", "category", "l2-category"}
            samples.append(
                KCMMBenchSample(
                    task=task,
                    index=index,
                    question=row["question"] or "",
                    answer=row["answer"] if row["answer"] is not None else "",
                    image_paths=images,
                    category=(row.get("category") or None),
                    l2_category=(row.get("l2-category") or None),
                    extra={k: v for k, v in row.items() if k not in known and k is not None},
                )
            )
    return samples


def download_kc_mmbench(
    revision: str = KC_MMBENCH_REVISION,
    repo_id: str = KC_MMBENCH_REPO_ID,
    cache_dir: str | None = None,
    tasks: Sequence[str] | None = None,
) -> tuple[Path, str]:
    """``huggingface_hub.snapshot_download`` of the dataset (only the requested tasks' TSVs and the
    images). Returns ``(local_path, commit_sha)``."""
    from huggingface_hub import snapshot_download

    patterns = ["images/**", "README.md"]
    for task in parse_tasks(tasks):
        patterns += [f"subsets/{TASK_FILES[task]}", f"subsets/{task}.tsv"]
    local = Path(
        snapshot_download(
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=patterns,
        )
    )
    # snapshots/<commit sha>/ is the folder layout of the hub cache.
    sha = local.name if re.fullmatch(r"[0-9a-f]{40}", local.name) else revision
    return local, sha


def load_kc_mmbench(
    path: str | os.PathLike | None = None,
    tasks: str | Iterable[str] | None = None,
    revision: str = KC_MMBENCH_REVISION,
    cache_dir: str | None = None,
    max_samples: int | None = None,
    check_images: bool = True,
) -> dict[str, list[KCMMBenchSample]]:
    """Load KC-MMBench as ``{task: [samples]}``.

    Args:
        path: a local copy (folder with ``subsets/`` and ``images/``); ``None`` or the hub id
            downloads ``Kwai-Keye/KC-MMbench`` at ``revision`` with ``snapshot_download``.
        tasks: subset of :data:`TASKS` (aliases accepted); ``None`` = all six.
        max_samples: keep the first N rows per task (smoke tests).
        check_images: resolve every image path and fail early if one is missing.
    """
    names = parse_tasks(tasks)
    if path is None or str(path) == KC_MMBENCH_REPO_ID:
        root, _ = download_kc_mmbench(revision=revision, cache_dir=cache_dir, tasks=names)
    else:
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(
                f"KC-MMBench path {str(root)!r} is not a folder; pass a local copy (with subsets/ "
                f"and images/) or {KC_MMBENCH_REPO_ID!r}"
            )
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}")
    out = {}
    for task in names:
        samples = read_task_tsv(find_task_file(root, task), task, root=root, check_images=check_images)
        out[task] = samples[:max_samples] if max_samples else samples
    return out


# ---------------------------------------------------------------------------------------------
# Answer post-processing and extraction (official semantics)
# ---------------------------------------------------------------------------------------------

_THINK_RE = re.compile(r"<think>.*?</think>", flags=re.DOTALL)


def remove_think_tags(text: str) -> str:
    """Delete every ``<think>...</think>`` block (non-greedy, across lines). Nothing else is touched:
    an unclosed ``<think>`` stays, as in the official code."""
    return _THINK_RE.sub("", text)


def _boxed_tail(text: str, marker: str) -> str:
    # After the last `marker`, up to its matching close brace (brace depth starts at 1); without a
    # close brace everything after the marker; `text` unchanged when the scan finds no end. Same
    # scan as KeyeChat.post_process_func's helper, including its behaviour without a marker.
    tail = text.split(marker)[-1]
    depth = 1
    for i, ch in enumerate(tail):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0:
            return tail[:i]
    return tail if tail else text


def _boxed_or_self(text: str) -> str:
    # KeyeChat tries r"\boxed{" then "\x08oxed{" (a non-raw "\b" in the original) and keeps the
    # first extraction whose length differs from the input.
    for marker in ("\\boxed{", "\x08oxed{"):
        got = _boxed_tail(text, marker)
        if len(got) != len(text):
            return got
    return text


def keye_post_process(prediction: str) -> str:
    """``KeyeChat.post_process_func``: keep what follows the last ``</analysis>`` and the last
    ``</think>``; then the last ``<answer>...</answer>`` if present; then ``\\boxed{...}`` content.

    Applied by the official runner at generation time (``post_process=True``), before scoring.
    """
    if not isinstance(prediction, str):
        raise TypeError(f"prediction must be a string, got {type(prediction).__name__}")
    if "</analysis>" in prediction:
        prediction = prediction.split("</analysis>")[-1]
    if "</think>" in prediction:
        prediction = prediction.split("</think>")[-1].lstrip("\n").strip()
    if "<answer>" not in prediction:
        return _boxed_or_self(prediction)
    answers = re.findall(r"<answer>(.*?)</answer>", prediction, flags=re.DOTALL)
    if not answers:
        return prediction
    return _boxed_or_self(answers[-1])


_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
          "`", ",", "?", "!"]  # fmt: skip
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# The Keye fork's pattern (vlmeval/smp/misc.py): a period with no digit on either side. Upstream
# VLMEvalKit has the mistyped '(?!<=\d)(\.)(?!\d)' (a look-ahead only); the fork fixed it.
_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")
# Both call `periodStrip.sub('', text, re.UNICODE)`: re.UNICODE (32) lands in `count`.
_PERIOD_MAX_SUBS = int(re.UNICODE)


def process_punctuation(text: str) -> str:
    """The Keye VLMEvalKit fork's ``process_punctuation`` (ASCII punctuation only; ``，。！？``
    untouched).

    Each listed mark is deleted when it touches a space in the input (or the input has a digit-comma-
    digit), otherwise replaced by a space; then at most 32 periods with no digit on either side
    (``(?<!\\d)\\.(?!\\d)``) are deleted (the original passes ``re.UNICODE`` as the ``count``
    argument)."""
    out = text
    glue = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in _PUNCT:
        if p + " " in text or " " + p in text or glue:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_SUBS)


def yorn_cn_extraction(output: str) -> str:
    """``YOrN_cn_Extraction`` of the Keye fork: ``"是"``, ``"否"`` or ``"Unknown"``.

    :func:`process_punctuation`, whitespace split; ``是`` present and ``否`` absent as a whole token
    -> 是, the reverse -> 否; otherwise the same test with ``yes``/``no``; otherwise Unknown.
    Matching is per token and **case-sensitive** (no lower-casing, unlike the English
    ``YOrN_Extraction``): ``Yes.``, ``YES``, ``No.``, ``The answer is No`` are Unknown, and so are
    ``是。`` and ``是的``. Unknown answers are re-asked to the judge when one is configured
    (:func:`yorn_judge_prompt`), else counted wrong.
    """
    if not isinstance(output, str):
        raise TypeError(f"prediction must be a string, got {type(output).__name__}")
    words = process_punctuation(output).split()
    for pos, neg in (("是", "否"), ("yes", "no")):
        if pos in words and neg not in words:
            return "是"
        if neg in words and pos not in words:
            return "否"
    return "Unknown"


def yorn_judge_prompt(question: str, prediction: str) -> str:
    """``YOrN_cn_match_prompt``: the judge prompt for an ``Unknown`` Y/N answer. ``prediction``
    is the (post-processed) response, think blocks removed here. A question longer than 10240
    characters is cut to its first and last 4096 and the response to its last 8192, as
    officially."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}")
    response = remove_think_tags(prediction)
    if len(question) > 10240:
        return YORN_JUDGE_PROMPT.format(question[:4096] + question[-4096:], response[-8192:])
    return YORN_JUDGE_PROMPT.format(question, response)


# ---------------------------------------------------------------------------------------------
# VQA: official judge flow and the deterministic rule mode
# ---------------------------------------------------------------------------------------------


def extract_last_bracket(text: str) -> str | None:
    """Content of the last ``[...]`` (non-greedy, single line) in ``text``; ``None`` if there is none."""
    matches = re.findall(r"\[(.*?)\]", text)
    return matches[-1] if matches else None


def is_topic_right(gold: Sequence[str], text: str) -> bool:
    """``is_topic_right``: the 是/否 characters of the last ``[...]`` in ``text`` must equal the gold
    sequence exactly (in order, none missing, none extra). No bracket -> False."""
    pred = extract_last_bracket(text)
    if pred is None:
        return False
    marks = [c for c in pred if c in ("是", "否")]
    wanted = [g for g in gold if g in ("是", "否")]
    return marks == wanted


def vqa_judge_prompt(task: str, answer: str, prediction: str) -> str:
    """The official judge prompt for one VQA sample (think blocks removed, response stripped)."""
    task = canonical_task(task)
    if task not in VQA_TASKS:
        raise ValueError(f"task {task!r} is not a VQA task ({list(VQA_TASKS)})")
    response = remove_think_tags(prediction).strip()
    if task == "Hot_Videos_Aggregation":
        return TOPIC_JUDGE_PROMPT.format(response)
    return VQA_JUDGE_PROMPT.format(answer, response)


def judge_verdict(task: str, answer: str, judge_output: str) -> bool:
    """Correct iff ``回答正确`` is in the judge output (CPV, Collection_Order), or the judge's last
    ``[...]`` list matches the ``_``-split gold (Hot_Videos_Aggregation)."""
    task = canonical_task(task)
    if task == "Hot_Videos_Aggregation":
        return is_topic_right(answer.split("_"), judge_output)
    return JUDGE_CORRECT in judge_output


_STRIP_CHARS = re.compile(r"[\s\"'`“”‘’「」『』《》()（）\[\]{}【】<>,.;:!?，。；：！？、…·~\-_/\\|*#]+")


def normalize_text(text: str) -> str:
    """NFKC, lower-case, remove whitespace and (ASCII + CJK) punctuation."""
    return _STRIP_CHARS.sub("", unicodedata.normalize("NFKC", text).lower())


def _conclusion(prediction: str) -> str:
    text = keye_post_process(remove_think_tags(prediction)).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def rule_correct(task: str, answer: str, prediction: str) -> bool:
    """Deterministic VQA check (NOT the paper's metric; the paper uses an LLM judge).

    * CPV: the normalised gold is equal to, or contained in, the normalised last line of the
      (think-stripped, post-processed) response.
    * Hot_Videos_Aggregation: :func:`is_topic_right` on the model's own last ``[...]`` list; if the
      response has no brackets, the 是/否 marks of its last line are compared instead.
    * Collection_Order: when the gold holds >= 2 integers, the last run of that many integers in the
      response's last line must equal them; otherwise as CPV.
    """
    task = canonical_task(task)
    if task not in VQA_TASKS:
        raise ValueError(f"task {task!r} is not a VQA task ({list(VQA_TASKS)})")
    concl = _conclusion(prediction)
    if task == "Hot_Videos_Aggregation":
        gold = answer.split("_")
        text = remove_think_tags(prediction)
        if extract_last_bracket(text) is not None:
            return is_topic_right(gold, text)
        return is_topic_right(gold, "[" + concl + "]")
    if task == "Collection_Order":
        gold_nums = re.findall(r"\d+", answer)
        if len(gold_nums) >= 2:
            nums = re.findall(r"\d+", concl)
            return len(nums) >= len(gold_nums) and nums[-len(gold_nums):] == gold_nums
    gold_n, pred_n = normalize_text(answer), normalize_text(concl)
    return bool(gold_n) and (gold_n == pred_n or gold_n in pred_n)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def _ask_judge(judge: Any, prompt: str, temperature: float) -> tuple[str | None, str | None]:
    """One judge call: ``(reply, None)``, or ``(None, error)`` when the call failed (the judge
    raised, or replied with :data:`JUDGE_FAIL_MSG`, the API failure message)."""
    try:
        out = judge.generate(prompt, temperature=temperature)
    except Exception as err:  # noqa: BLE001 - a failing judge must not abort the whole run
        return None, f"{type(err).__name__}: {err}"
    if not isinstance(out, str):
        return None, f"judge returned {type(out).__name__}, not str"
    if JUDGE_FAIL_MSG in out:
        return None, "judge API failure message"
    return out, None


def _run_judge(judge: Any, prompt: str, retries: int) -> tuple[str, str | None]:
    """VQA judging (``Kwaivqa_eval`` / ``Topic_eval``): up to ``retries`` tries at temperature
    ``0.5 * i``, retrying **only** when the call failed; any reply, even empty, is final.
    Returns the reply and, when every try failed, the last error."""
    error = None
    for i in range(retries):
        out, error = _ask_judge(judge, prompt, 0.5 * i)
        if error is None:
            return out or "", None
        logger.warning("judge try %d failed: %s", i, error)
    return "", error or "no tries"


def _run_yorn_judge(judge: Any, prompt: str, retries: int) -> tuple[str, str, str | None]:
    """``YOrN_cn_auxeval``: up to ``retries`` tries at temperature ``0.5 * i`` until the reply's
    :func:`yorn_cn_extraction` is 是 or 否. Returns ``(answer, last reply, error)``; ``error`` is
    set only when no try produced a reply."""
    reply: str | None = None
    error = None
    for i in range(retries):
        out, err = _ask_judge(judge, prompt, 0.5 * i)
        if err is not None:
            error = err
            logger.warning("judge try %d failed: %s", i, err)
            continue
        reply = out or ""
        answer = yorn_cn_extraction(reply)
        if answer in ("是", "否"):
            return answer, reply, None
    if reply is not None:
        return "Unknown", reply, None
    return "Unknown", "", error or "no tries"


def _mean(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _breakdown(flags: Sequence[bool], labels: Sequence[str | None]) -> dict[str, float]:
    groups: dict[str, list[bool]] = {}
    for flag, label in zip(flags, labels):
        if label is None or (isinstance(label, float) and math.isnan(label)) or label == "":
            continue
        groups.setdefault(str(label), []).append(flag)
    return {k: _mean(groups[k]) for k in sorted(groups)}


def _check_column(name: str, values: Sequence[Any] | None, n: int, allow_none: bool) -> list[Any]:
    if values is None:
        return [None] * n
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a list with one entry per prediction, not a string")
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries, expected {n} (one per prediction)")
    for v in values:
        if not (isinstance(v, str) or (allow_none and v is None)):
            raise TypeError(f"{name} entries must be strings, got {type(v).__name__}")
    return values


def score_kc_mmbench(
    predictions: Sequence[str],
    references: Sequence[str],
    tasks: Sequence[str],
    categories: Sequence[str | None] | None = None,
    l2_categories: Sequence[str | None] | None = None,
    judge: Any | None = None,
    vqa_mode: str | None = None,
    judge_retries: int = 5,
    post_process: bool = False,
    return_details: bool = False,
    progress: bool = True,
    judge_cache: dict[str, str] | None = None,
    on_judged: Callable[[str, str], None] | None = None,
    questions: Sequence[str] | None = None,
    yn_judge: bool = True,
) -> dict[str, Any]:
    """Score KC-MMBench responses.

    Args:
        predictions: model responses, one per sample.
        references: gold answers (``是``/``否`` for Y/N tasks).
        tasks: task name per sample (canonical or alias).
        categories / l2_categories: optional per-sample breakdown labels.
        judge: a :class:`~kwaiformers.evaluation.judges.Judge`: grades the VQA tasks and re-judges
            the ``Unknown`` Y/N answers (official protocol).
        vqa_mode: ``"judge"`` (requires ``judge``), ``"rule"`` or ``None`` (judge if given, else
            rule).
        judge_retries: tries per sample (official: 5, temperature ``0.5 * try``).
        post_process: apply :func:`keye_post_process` first (the official runner does this at
            generation time; leave ``False`` when the predictions are already post-processed).
        return_details: add per-sample ``details``.
        judge_cache: prompt -> judge output; filled in place, reused to avoid re-asking.
        on_judged: called with ``(prompt, output)`` after each new judge call (for persistence).
        questions: the question of each sample (the TSV ``question``), needed by the Y/N judge
            prompt (:func:`yorn_judge_prompt`) when a Y/N answer is ``Unknown``.
        yn_judge: re-judge ``Unknown`` Y/N answers when a judge is given (official, default);
            ``False`` keeps the exact-match score only.

    Returns:
        Accuracies, rates and agreements are fractions in [0, 1] (``evaluate``'s convention;
        x100 for the official tables' percentages). ``overall_accuracy`` (unweighted mean of the
        task accuracies),
        ``overall_micro_accuracy`` (over samples), ``num_samples``, ``modes`` (task -> mode) and
        ``tasks`` (task -> ``accuracy``, ``num_samples``, ``num_correct``, ``mode``, ``categories``;
        for Y/N ``exact_match_accuracy``, ``num_unknown``/``unknown_rate`` (exact match) and, when
        ``Unknown`` answers were re-judged, ``judged_accuracy`` (= ``accuracy``),
        ``num_unknown_after_judge`` and ``judge_failures``; for VQA in judge mode
        ``judge_failures``/``rule_agreement``/``rule_accuracy``).
    """
    if isinstance(predictions, str) or isinstance(references, str) or isinstance(tasks, str):
        raise TypeError("predictions, references and tasks must be lists (one entry per sample)")
    predictions = list(predictions)
    n = len(predictions)
    for i, p in enumerate(predictions):
        if not isinstance(p, str):
            raise TypeError(f"predictions[{i}] must be a string, got {type(p).__name__}")
    references = _check_column("references", references, n, allow_none=False)
    task_names = [canonical_task(t) for t in _check_column("tasks", tasks, n, allow_none=False)]
    cats = _check_column("categories", categories, n, allow_none=True)
    l2s = _check_column("l2_categories", l2_categories, n, allow_none=True)
    quests = _check_column("questions", questions, n, allow_none=True)
    if n == 0:
        raise ValueError("predictions is empty")
    if vqa_mode not in (None, "judge", "rule"):
        raise ValueError(f"vqa_mode must be None, 'judge' or 'rule', got {vqa_mode!r}")
    if vqa_mode == "judge" and judge is None:
        raise ValueError("vqa_mode='judge' needs a judge (see kwaiformers.evaluation.judges)")
    if judge is not None and not callable(getattr(judge, "generate", None)):
        raise TypeError("judge must have a generate(prompt, temperature=...) -> str method")
    if not isinstance(judge_retries, int) or judge_retries < 1:
        raise ValueError(f"judge_retries must be a positive integer, got {judge_retries!r}")
    use_judge = judge is not None and vqa_mode != "rule"
    judge_yn = judge is not None and yn_judge and any(t in YN_TASKS for t in task_names)
    if post_process:
        predictions = [keye_post_process(p) for p in predictions]
    if judge_yn and questions is None and any(
            t in YN_TASKS and yorn_cn_extraction(remove_think_tags(p)) == "Unknown"
            for p, t in zip(predictions, task_names)):
        raise ValueError(
            "questions (one per sample) are needed to re-judge Unknown yes/no answers with the "
            "official YOrN_cn_match_prompt; pass questions=... or yn_judge=False"
        )
    judge_name = getattr(judge, "name", type(judge).__name__) if judge is not None else None
    cache = judge_cache if judge_cache is not None else {}

    n_vqa = sum(t in VQA_TASKS for t in task_names)
    bar = None
    if use_judge and n_vqa and progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_vqa, desc=f"KC-MMBench judge ({judge_name})", unit="sample")

    details: list[dict[str, Any]] = []
    for pred, ref, task, question in zip(predictions, references, task_names, quests):
        row: dict[str, Any] = {"task": task}
        if task in YN_TASKS:
            if ref not in ("是", "否"):
                warnings.warn(
                    f"{task} reference {ref!r} is not 是/否; it can never match", stacklevel=2
                )
            extracted = yorn_cn_extraction(remove_think_tags(pred))
            row.update(extracted=extracted, exact_correct=(ref == extracted))
            final = extracted
            if judge_yn and extracted == "Unknown":
                prompt = yorn_judge_prompt(question or "", pred)
                if prompt in cache:
                    output, error = cache[prompt], None
                    final = yorn_cn_extraction(output)
                else:
                    final, output, error = _run_yorn_judge(judge, prompt, judge_retries)
                    if error is None:
                        cache[prompt] = output
                        if on_judged is not None:
                            on_judged(prompt, output)
                row.update(judged=final, judge_output=output, judge_error=error)
            row["correct"] = ref == final
        elif use_judge:
            prompt = vqa_judge_prompt(task, ref, pred)
            output, error = (cache[prompt], None) if prompt in cache else _run_judge(
                judge, prompt, judge_retries
            )
            if error is None and prompt not in cache:
                cache[prompt] = output
                if on_judged is not None:
                    on_judged(prompt, output)
            row.update(
                judge_output=output,
                judge_error=error,
                correct=judge_verdict(task, ref, output) if error is None else False,
                rule_correct=rule_correct(task, ref, pred),
            )
            if bar is not None:
                bar.update(1)
        else:
            row.update(correct=rule_correct(task, ref, pred))
        details.append(row)
    if bar is not None:
        bar.close()

    per_task: dict[str, dict[str, Any]] = {}
    for task in dict.fromkeys(task_names):
        ids = [i for i, t in enumerate(task_names) if t == task]
        flags = [details[i]["correct"] for i in ids]
        if task in YN_TASKS:
            mode = MODE_YN_JUDGE_PREFIX + str(judge_name) if judge_yn else MODE_YN
        else:
            mode = JUDGE_MODE_PREFIX + str(judge_name) if use_judge else MODE_RULE
        entry: dict[str, Any] = {
            "accuracy": _mean(flags),
            "num_samples": len(ids),
            "num_correct": int(sum(flags)),
            "mode": mode,
            "categories": _breakdown(flags, [cats[i] for i in ids]),
        }
        l2 = _breakdown(flags, [l2s[i] for i in ids])
        if l2:
            entry["l2_categories"] = l2
        if task in YN_TASKS:
            unknown = sum(details[i]["extracted"] == "Unknown" for i in ids)
            entry.update(exact_match_accuracy=_mean([details[i]["exact_correct"] for i in ids]),
                         num_unknown=unknown, unknown_rate=unknown / len(ids))
            if judge_yn:
                judged = [details[i] for i in ids if "judged" in details[i]]
                entry.update(
                    judged_accuracy=entry["accuracy"],
                    num_unknown_after_judge=sum(d["judged"] == "Unknown" for d in judged),
                    judge_failures=sum(d["judge_error"] is not None for d in judged),
                )
        elif use_judge:
            entry["judge_failures"] = sum(details[i]["judge_error"] is not None for i in ids)
            agree = [details[i]["rule_correct"] == details[i]["correct"] for i in ids]
            entry["rule_agreement"] = _mean(agree)
            entry["rule_accuracy"] = _mean([details[i]["rule_correct"] for i in ids])
        per_task[task] = entry

    ordered = {t: per_task[t] for t in TASKS if t in per_task}
    accs = [e["accuracy"] for e in ordered.values()]
    all_flags = [d["correct"] for d in details]
    result: dict[str, Any] = {
        "overall_accuracy": sum(accs) / len(accs),
        "overall_micro_accuracy": _mean(all_flags),
        "num_samples": n,
        "modes": {t: e["mode"] for t, e in ordered.items()},
        "vqa_mode": ("judge" if use_judge else "rule") if n_vqa else None,
        "tasks": ordered,
    }
    if return_details:
        result["details"] = details
    return result


# ---------------------------------------------------------------------------------------------
# Task adapter for the shared runner (kwaiformers.evaluation.runner) and the CLI
# ---------------------------------------------------------------------------------------------

def _metric_key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\u4e00-\u9fff]+", "_", text).strip("_") or "none"


class KCMMBenchTask(TaskAdapter):
    """KC-MMBench as a :class:`~kwaiformers.evaluation.runner.TaskAdapter`.

    Sample ids are ``"<task>/<index>"`` (the cache key and the ``id`` of ``--predictions`` rows).
    Responses are post-processed like ``KeyeChat`` (``post_process=True``) and scored with
    :func:`score_kc_mmbench`; with ``n > 1`` generations per sample every generation is scored and
    the accuracies are averages over them. Judge replies are cached in ``judge_cache_path`` (JSONL)
    so a rerun does not pay for them twice.

    Args:
        path: local copy, or ``None`` to download ``Kwai-Keye/KC-MMbench`` at ``revision``.
        tasks: task subset (default: all six).
        max_frames: at most this many images per sample (default: all, as the official runner).
        think: ``None``/``"auto"`` (no suffix), ``"think"`` (the official Keye config; the CLI
            picks it for Keye models) or ``"no_think"``.
        judge / vqa_mode / judge_retries / yn_judge: see :func:`score_kc_mmbench`.
    """

    dataset_type = KC_MMBENCH_REPO_ID
    dataset_name = "KC-MMBench"
    dataset_split = "test"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        tasks: str | Iterable[str] | None = None,
        revision: str = KC_MMBENCH_REVISION,
        cache_dir: str | None = None,
        max_samples: int | None = None,
        max_frames: int | None = None,
        think: str | None = None,
        judge: Any | None = None,
        vqa_mode: str | None = None,
        judge_retries: int = 5,
        post_process: bool = True,
        judge_cache_path: str | os.PathLike | None = None,
        yn_judge: bool = True,
    ) -> None:
        self.path = path
        self.yn_judge = yn_judge
        self.tasks = parse_tasks(tasks)
        self.revision = revision
        self.cache_dir = cache_dir
        self.max_samples = max_samples
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
            raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
        self.max_frames = max_frames
        build_prompt_text("SPU", "", think=think)  # validates `think`
        self.think = None if think == "auto" else think
        if vqa_mode == "judge" and judge is None:
            raise ValueError("vqa_mode='judge' needs a judge (--judge openai:MODEL or hf:PATH)")
        self.judge = judge
        self.vqa_mode = vqa_mode
        self.judge_retries = judge_retries
        self.post_process = post_process
        self.judge_cache_path = os.fspath(judge_cache_path) if judge_cache_path else None
        # The prompt settings are part of the name, so the runner's cache check refuses to mix
        # generations made with different prompts in one output directory.
        suffix = (f"_{self.think}" if self.think else "") + (
            f"_maxframes{max_frames}" if max_frames else "")
        self.name = "kc_mmbench" + suffix
        local = path is not None and str(path) != KC_MMBENCH_REPO_ID
        self.dataset_revision = None if local else revision

    def dataset_args(self) -> dict[str, Any]:
        return {"tasks": ",".join(self.tasks), "think": self.think or "auto",
                "max_frames": self.max_frames}

    def load_samples(self) -> list[EvalSample]:
        names = self.tasks
        if self.path is None or str(self.path) == KC_MMBENCH_REPO_ID:
            root, sha = download_kc_mmbench(self.revision, cache_dir=self.cache_dir, tasks=names)
            self.dataset_revision = sha
        else:
            root = Path(self.path)
        data = load_kc_mmbench(root, tasks=names, max_samples=self.max_samples)
        return [
            EvalSample(id=f"{task}/{s.index}", data={"sample": s})
            for task in names
            for s in data[task]
        ]

    def build_messages(self, sample: EvalSample) -> list[dict[str, Any]]:
        return sample.data["sample"].messages(think=self.think, max_frames=self.max_frames)

    def _judge_cache(self) -> tuple[dict[str, str], Callable[[str, str], None] | None]:
        if self.judge is None or self.judge_cache_path is None:
            return {}, None
        name = getattr(self.judge, "name", type(self.judge).__name__)
        cache: dict[str, str] = {}
        if os.path.exists(self.judge_cache_path):
            import json

            with open(self.judge_cache_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue  # torn line after a crash
                    if row.get("judge") == name:
                        cache[row["prompt"]] = row["output"]

        def append(prompt: str, output: str) -> None:
            import json

            with open(self.judge_cache_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"judge": name, "prompt": prompt, "output": output},
                                   ensure_ascii=False) + "\n")

        return cache, append

    def score(
        self,
        samples: Sequence[EvalSample],
        generations: Mapping[str, list[Generation]],
        k_values: Sequence[int],
    ) -> TaskResult:
        preds, refs, tasks, cats, l2s, ids, reps, quests = [], [], [], [], [], [], [], []
        for s in samples:
            item: KCMMBenchSample = s.data["sample"]
            for rep, gen in enumerate(generations[s.id]):
                preds.append(gen.text)
                quests.append(item.question)
                refs.append(item.answer)
                tasks.append(item.task)
                cats.append(item.category)
                l2s.append(item.l2_category)
                ids.append(s.id)
                reps.append(rep)
        cache, on_judged = self._judge_cache()
        scores = score_kc_mmbench(
            preds, refs, tasks, categories=cats, l2_categories=l2s, judge=self.judge,
            vqa_mode=self.vqa_mode, judge_retries=self.judge_retries,
            post_process=self.post_process, return_details=True, judge_cache=cache,
            on_judged=on_judged, questions=quests, yn_judge=self.yn_judge,
        )
        details = scores.pop("details")
        # score_kc_mmbench gives fractions; results.json / table / model-index show percent, as
        # the official KC-MMBench tables, labelled (metrics_unit). judge_failures are counts.
        metrics: dict[str, float] = {
            "overall_accuracy": scores["overall_accuracy"],
            "overall_micro_accuracy": scores["overall_micro_accuracy"],
        }
        card: list[tuple[str, float]] = []
        for task, entry in scores["tasks"].items():
            metrics[f"{task}/accuracy"] = entry["accuracy"]
            if "unknown_rate" in entry:
                metrics[f"{task}/unknown_rate"] = entry["unknown_rate"]
                metrics[f"{task}/exact_match_accuracy"] = entry["exact_match_accuracy"]
            if "judged_accuracy" in entry:
                metrics[f"{task}/judged_accuracy"] = entry["judged_accuracy"]
                metrics[f"{task}/unknown_rate_after_judge"] = (
                    entry["num_unknown_after_judge"] / entry["num_samples"])
            if "judge_failures" in entry:
                metrics[f"{task}/judge_failures"] = float(entry["judge_failures"])
            if "rule_agreement" in entry:
                metrics[f"{task}/rule_agreement"] = entry["rule_agreement"]
            for cat, acc in entry["categories"].items():
                metrics[f"{task}/category/{cat}"] = acc
            rule = entry["mode"] == MODE_RULE
            card.append((f"accuracy_{_metric_key(task)}" + ("_rule" if rule else ""),
                         100.0 * entry["accuracy"]))
            if "judged_accuracy" in entry:  # both numbers: judged (official) and exact match
                card.append((f"accuracy_{_metric_key(task)}_exact_match",
                             100.0 * entry["exact_match_accuracy"]))
        # every value is a rate except judge_failures (to_percent would skip a category named
        # "num_..."): scale all, then put the counts back (same key order)
        metrics = {k: 100.0 * v for k, v in metrics.items()}
        for task, entry in scores["tasks"].items():
            if "judge_failures" in entry:
                metrics[f"{task}/judge_failures"] = float(entry["judge_failures"])
        if set(scores["tasks"]) == set(TASKS):
            any_rule = any(m == MODE_RULE for m in scores["modes"].values())
            card.append(("accuracy_overall" + ("_rule" if any_rule else ""),
                         100.0 * scores["overall_accuracy"]))
        per_sample = []
        for sid, rep, pred, ref, row in zip(ids, reps, preds, refs, details):
            rec = {"id": sid, "sample_index": rep, "answer": ref,
                   "prediction": keye_post_process(pred) if self.post_process else pred, **row}
            per_sample.append(rec)
        # info["scores"] is score_kc_mmbench's own output (fractions), labelled as such
        info = {"scores": scores, "scores_unit": "fraction", "modes": scores["modes"],
                "think": self.think or "auto", "max_frames": self.max_frames,
                "post_process": self.post_process,
                "generations_per_sample": max(len(v) for v in generations.values())}
        return TaskResult(metrics=metrics, card_metrics=card, per_sample=per_sample, info=info,
                          metrics_unit="percent")


def add_arguments(parser) -> None:
    """``kwaiformers eval kc-mmbench`` arguments (the shared runner's plus KC-MMBench's)."""
    from kwaiformers.evaluation.runner import add_common_arguments

    g = parser.add_argument_group("KC-MMBench")
    g.add_argument("--data", default=None,
                   help=f"local copy (subsets/ + images/); default: download {KC_MMBENCH_REPO_ID}")
    g.add_argument("--revision", default=KC_MMBENCH_REVISION, help="dataset revision on the Hub")
    g.add_argument("--tasks", default="all", help=f"comma-separated subset of {','.join(TASKS)}")
    g.add_argument("--max-frames", type=int, default=None,
                   help="at most this many images per sample (default: all, as official)")
    g.add_argument("--max-samples", type=int, default=None, help="first N rows per task (smoke)")
    g.add_argument("--think", choices=["auto", "think", "no_think"], default=None,
                   help="append /think or /no_think to the prompt; default: think for Keye models "
                        "(the official config), auto (nothing appended) for other models")
    g.add_argument("--judge", default=None,
                   help="VQA judge: openai:MODEL[@BASE_URL] (key from $OPENAI_API_KEY) or "
                        "hf:PATH_OR_HUB_ID; default: rule mode (not the paper's metric)")
    g.add_argument("--vqa-mode", choices=["judge", "rule"], default=None,
                   help="force the VQA mode (default: judge when --judge is given)")
    g.add_argument("--judge-retries", type=int, default=5)
    g.add_argument("--no-yn-judge", action="store_true",
                   help="do not re-judge Unknown yes/no answers (exact match only)")
    g.add_argument("--judge-max-tokens", type=int, default=128)
    g.add_argument("--no-post-process", action="store_true",
                   help="score raw responses (default: KeyeChat answer post-processing)")
    add_common_arguments(parser, default_n=1, default_max_new_tokens=2048, kind="multimodal")
    # KeyeChat decoding defaults: greedy, 2048 new tokens.
    parser.set_defaults(temperature=0.0, batch_size=4)


#: ``model_type`` values of the Keye-VL checkpoints (``kwaiformers.models.keye_vl``).
KEYE_MODEL_TYPES = frozenset({"Keye", "KeyeVL1_5", "keye_vl"})


def is_keye_model(model: str | os.PathLike | None) -> bool:
    """Whether ``model`` (a Hub id or a local folder) is a Keye-VL checkpoint: its name contains
    ``keye`` (any case) or its ``config.json`` has a Keye ``model_type``."""
    if model is None:
        return False
    if "keye" in os.path.basename(os.fspath(model).rstrip("/")).lower() or "keye" in str(
            model).lower().split("/")[0]:
        return True
    config = Path(model) / "config.json"
    if config.is_file():
        import json

        try:
            return json.loads(config.read_text(encoding="utf-8")).get(
                "model_type") in KEYE_MODEL_TYPES
        except (OSError, ValueError, AttributeError):
            return False
    return False


def resolve_think(think: str | None, model: str | os.PathLike | None) -> str:
    """The ``--think`` setting: an explicit value wins; by default ``"think"`` for Keye models
    (the official KC-MMBench config, ``"think": true`` in the fork's ``cfg.json``) and ``"auto"``
    (no suffix) for any other model."""
    if think is not None:
        return think
    return "think" if is_keye_model(model) else "auto"


def task_from_args(args) -> KCMMBenchTask:
    """Build the adapter (and judge) from parsed :func:`add_arguments`."""
    from kwaiformers.evaluation.judges import build_judge

    kwargs: dict[str, Any] = {}
    if args.judge and args.judge.startswith("openai:"):
        kwargs["max_tokens"] = args.judge_max_tokens
    elif args.judge and args.judge.startswith("hf:"):
        kwargs["max_new_tokens"] = args.judge_max_tokens
    judge = build_judge(args.judge, **kwargs)
    return KCMMBenchTask(
        path=args.data, tasks=args.tasks, revision=args.revision, max_samples=args.max_samples,
        max_frames=args.max_frames, think=resolve_think(args.think, getattr(args, "model", None)),
        judge=judge, vqa_mode=args.vqa_mode, judge_retries=args.judge_retries,
        post_process=not args.no_post_process,
        judge_cache_path=os.path.join(args.output_dir, "judgements.jsonl"),
        yn_judge=not getattr(args, "no_yn_judge", False),
    )


def run(args) -> int:
    """``kwaiformers eval kc-mmbench``: generate (or read ``--predictions``), score, write
    ``results.json`` and the model card, print a table."""
    from kwaiformers.evaluation.runner import run_from_args

    results = run_from_args(task_from_args(args), args)
    print(format_table(results["info"]["scores"]))
    print(f"results: {os.path.join(args.output_dir, 'results.json')}")
    if results.get("model_card"):
        print(f"model card: {results['model_card']}")
    return 0


def format_table(scores: Mapping[str, Any]) -> str:
    """A readable per-task table of :func:`score_kc_mmbench` output (fractions), shown in
    percent as the official tables."""
    lines = ["(values in %)", f"{'task':<24}{'n':>6}{'accuracy':>10}  {'extra':<34}mode"]
    for task, e in scores["tasks"].items():
        if "judged_accuracy" in e:
            extra = (f"exact {100 * e['exact_match_accuracy']:.2f}, unknown "
                     f"{100 * e['unknown_rate']:.1f}%->{e['num_unknown_after_judge']}")
        elif "unknown_rate" in e:
            extra = f"unknown {100 * e['unknown_rate']:.1f}%"
        else:
            extra = f"judge fail {e['judge_failures']}" if "judge_failures" in e else ""
        lines.append(f"{task:<24}{e['num_samples']:>6}{100 * e['accuracy']:>10.2f}  {extra:<34}"
                     f"{e['mode']}")
    lines.append(f"{'overall (task mean)':<24}{scores['num_samples']:>6}"
                 f"{100 * scores['overall_accuracy']:>10.2f}")
    return "\n".join(lines)
