"""AIME 2024 / 2025 (30 integer-answer problems each): loaders, prompt and avg@k / pass@k scoring.

Scoring (design note §3; Klear-Reasoner arXiv 2508.07629 evaluation protocol): every response is
scored by :func:`kwaiformers.evaluation.math_scoring.score_response` on the text after the last
``</think>`` (gold first in ``math_verify.verify``); a response that hit the token budget
(``finish_reason == "length"``) or lacks ``</think>`` counts as wrong. Reported as fractions in
[0, 1] by :func:`score_aime` and the ``eval/aime`` module (``evaluate``'s convention); the runner's
results JSON, table and model-index show them in percent, labelled (``metrics_unit``):

- ``avg@n`` = (1/P) sum_p c_p / n -- the papers' "pass@1 averaged over n samples";
- ``pass@k`` -- unbiased estimator 1 - C(n-c, k)/C(n, k) (Codex, arXiv 2107.03374 eq. 1);
- ``extraction_failure_rate`` -- responses where no answer could be compared (truncated, no
  ``</think>``, nothing extracted, math-verify timeout/error), and ``truncated_rate``;
- ``std@n`` -- the standard deviation of the accuracy of the n sample "runs" (run j = the j-th
  response of every problem), a measure of the evaluation noise.

Prompt (configurable): the DeepSeek-R1 recommendation, problem + "Please reason step by step, and
put your final answer within \\boxed{}.", as a single user turn.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kwaiformers.evaluation.runner import (
    EvalSample,
    Generation,
    TaskAdapter,
    TaskResult,
    pass_at_k,
    to_percent,
)

DEFAULT_PROMPT = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."


@dataclass(frozen=True)
class AIMEDataset:
    hub_id: str
    split: str
    revision: str | None
    pretty_name: str


#: Hub sources, pinned to a dataset commit so that scores stay comparable (community copies fixed
#: problem typos over time). The two SHAs are the ones that several independent public evaluation
#: projects pin for these datasets (30 rows each; aime25's parquet is
#: ``data/train-00000-of-00001-243207c6c994e1bd.parquet``); override with ``--revision``.
AIME_DATASETS: dict[str, AIMEDataset] = {
    "aime24": AIMEDataset("HuggingFaceH4/aime_2024", "train",
                          "2fe88a2f1091d5048c0f36abc874fb997b3dd99a", "AIME 2024"),
    "aime25": AIMEDataset("yentinglin/aime_2025", "train",
                          "6f71d77b0b89b9dabe07ab466c51df33f514df7f", "AIME 2025"),
}


def _column(row: Mapping[str, Any], names: Sequence[str], what: str) -> Any:
    lowered = {k.lower(): k for k in row}
    for name in names:
        if name in lowered:
            return row[lowered[name]]
    raise ValueError(f"AIME row has no {what} column (tried {list(names)}); columns: {list(row)}")


def load_aime(name_or_path: str = "aime24", *, split: str | None = None,
              revision: str | None = None) -> list[EvalSample]:
    """Load AIME problems: ``"aime24"``/``"aime25"`` (Hub, pinned revision), any Hub id, or a local
    ``.json``/``.jsonl``/``.parquet``/``.csv`` file with ``problem`` and ``answer`` columns
    (capitalised variants and ``question`` accepted)."""
    import datasets

    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"name_or_path must be 'aime24', 'aime25', a Hub id or a file, "
                         f"got {name_or_path!r}")
    if os.path.isfile(name_or_path):
        ext = name_or_path.rsplit(".", 1)[-1].lower()
        if ext == "jsonl":  # small local files: no Arrow cache needed
            with open(name_or_path, encoding="utf-8") as f:
                ds = [json.loads(line) for line in f if line.strip()]
        else:
            builder = {"json": "json", "parquet": "parquet", "csv": "csv"}.get(ext)
            if builder is None:
                raise ValueError(f"unsupported AIME file type {ext!r} (json, jsonl, parquet, csv)")
            ds = datasets.load_dataset(builder, data_files=name_or_path, split="train")
    else:
        known = AIME_DATASETS.get(name_or_path)
        hub_id = known.hub_id if known else name_or_path
        ds = datasets.load_dataset(hub_id, split=split or (known.split if known else "train"),
                                   revision=revision or (known.revision if known else None))
    samples = []
    for i, row in enumerate(ds):
        problem = _column(row, ("problem", "question"), "problem")
        answer = _column(row, ("answer",), "answer")
        ident = next((row[k] for k in row if k.lower() == "id"), None)
        samples.append(EvalSample(str(ident) if ident is not None else str(i),
                                  {"problem": str(problem), "answer": str(answer).strip()}))
    return samples


def score_aime(
    predictions: Sequence[Sequence[str]],
    references: Sequence[str],
    k_values: Sequence[int] = (1,),
    *,
    finish_reasons: Sequence[Sequence[str]] | None = None,
    require_think_end: bool = True,
    timeout_seconds: int | None = 5,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics (fractions in [0, 1]) and per-problem records for ``predictions[p]`` (n
    responses) vs gold ``references[p]``. All problems must have the same number of responses."""
    from kwaiformers.evaluation.math_scoring import parse_gold, score_response
    from kwaiformers.evaluation.runner import check_responses_per_problem

    n = check_responses_per_problem(predictions, references, k_values)
    per_problem, failures, truncated = [], 0, 0
    for p, (responses, gold) in enumerate(zip(predictions, references)):
        if isinstance(responses, str):
            raise TypeError(f"predictions[{p}] must be a list of responses, not a str")
        parsed = parse_gold(str(gold), timeout_seconds=timeout_seconds)
        if not parsed.ok:
            raise ValueError(f"gold answer {gold!r} (problem {p}) cannot be parsed by math-verify")
        reasons = finish_reasons[p] if finish_reasons is not None else ["stop"] * n
        flags, extracted, why = [], [], []
        for text, reason in zip(responses, reasons):
            if reason == "length":
                flags.append(False)
                extracted.append(None)
                why.append("truncated")
                truncated += 1
                failures += 1
                continue
            s = score_response(str(text), parsed, require_think_end=require_think_end,
                               timeout_seconds=timeout_seconds)
            flags.append(s.correct)
            extracted.append(s.extracted)
            why.append(s.failure)
            failures += s.failure is not None
        per_problem.append({"gold": str(gold), "correct": flags, "extracted": extracted,
                            "failures": why, "accuracy": sum(flags) / n})
    total = n * len(predictions)
    metrics = {f"avg@{n}": statistics.fmean(r["accuracy"] for r in per_problem)}
    for k in sorted(set(k_values)):
        metrics[f"pass@{k}"] = statistics.fmean(
            pass_at_k(n, sum(r["correct"]), k) for r in per_problem)
    runs = [statistics.fmean(r["correct"][j] for r in per_problem) for j in range(n)]
    metrics[f"std@{n}"] = statistics.pstdev(runs) if n > 1 else 0.0
    metrics["extraction_failure_rate"] = failures / total
    metrics["truncated_rate"] = truncated / total
    return metrics, per_problem


class AIMETask(TaskAdapter):
    """AIME as a :class:`~kwaiformers.evaluation.runner.TaskAdapter`."""

    def __init__(self, dataset: str = "aime24", *, revision: str | None = None,
                 split: str | None = None, prompt_template: str = DEFAULT_PROMPT,
                 require_think_end: bool = True, limit: int | None = None) -> None:
        if "{problem}" not in prompt_template:
            raise ValueError("prompt_template must contain '{problem}'")
        known = AIME_DATASETS.get(dataset)
        self.source = dataset
        self.name = dataset if known else "aime"
        self.dataset_type = known.hub_id if known else (
            "local" if os.path.isfile(dataset) else dataset)
        self.dataset_name = known.pretty_name if known else os.path.basename(dataset)
        self.dataset_split = split or (known.split if known else "train")
        self.dataset_revision = revision or (known.revision if known else None)
        self.prompt_template = prompt_template
        self.require_think_end = require_think_end
        self.limit = limit

    def load_samples(self) -> list[EvalSample]:
        samples = load_aime(self.source, split=self.dataset_split, revision=self.dataset_revision)
        return samples[: self.limit] if self.limit else samples

    def build_messages(self, sample: EvalSample) -> list[dict[str, Any]]:
        return [{"role": "user",
                 "content": self.prompt_template.format(problem=sample.data["problem"])}]

    def score(self, samples: Sequence[EvalSample], generations: Mapping[str, list[Generation]],
              k_values: Sequence[int]) -> TaskResult:
        preds = [[g.text for g in generations[s.id]] for s in samples]
        reasons = [[g.finish_reason for g in generations[s.id]] for s in samples]
        metrics, per_problem = score_aime(preds, [s.data["answer"] for s in samples], k_values,
                                          finish_reasons=reasons,
                                          require_think_end=self.require_think_end)
        n = len(preds[0])
        for s, rec in zip(samples, per_problem):
            rec["id"] = s.id
        metrics = to_percent(metrics)  # results.json / table / model-index: percent, labelled
        card = [(f"avg@{n}", metrics[f"avg@{n}"])] + [
            (f"pass@{k}", metrics[f"pass@{k}"]) for k in k_values if k > 1]
        return TaskResult(metrics, card, per_problem,
                          {"prompt_template": self.prompt_template,
                           "require_think_end": self.require_think_end},
                          metrics_unit="percent")


# -- CLI: kwaiformers eval aime --------------------------------------------------------------------


def add_arguments(parser) -> None:
    from kwaiformers.evaluation.runner import add_common_arguments

    parser.add_argument("--dataset", default="aime24",
                        help="aime24 | aime25 | a Hub id | a local json/jsonl/parquet/csv file")
    parser.add_argument("--revision", default=None, help="dataset revision (commit) to pin")
    parser.add_argument("--split", default=None)
    parser.add_argument("--prompt-template", default=DEFAULT_PROMPT,
                        help="user turn; must contain {problem}")
    parser.add_argument("--no-think", action="store_true",
                        help="non-reasoning model: parse the whole response (no </think> needed)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")
    add_common_arguments(parser, default_n=1)


def run(args) -> int:
    from kwaiformers.evaluation.runner import print_summary, run_from_args

    task = AIMETask(args.dataset, revision=args.revision, split=args.split,
                    prompt_template=args.prompt_template, require_think_end=not args.no_think,
                    limit=args.limit)
    results = run_from_args(task, args)
    print_summary(results)
    print(f"results: {os.path.join(args.output_dir, 'results.json')}")
    return 0
