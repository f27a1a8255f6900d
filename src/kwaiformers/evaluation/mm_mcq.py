"""A general image / video multiple-choice runner (VLMEvalKit-style TSV or JSONL benchmarks).

Any benchmark whose rows carry a question, lettered options and a gold letter can be run through the
shared runner (:mod:`kwaiformers.evaluation.runner`) with :class:`MultipleChoiceTask` or
``kwaiformers eval mcq --data FILE``:

* **Input rows** (``.tsv`` or ``.jsonl``): ``index``, ``question``, option columns ``A``, ``B``, ...
  (empty cells are absent options), ``answer`` (the gold letter), optional ``hint`` and
  ``category``, and the visual input: ``image_path`` (one path or a list literal; a list of frames
  is a "video" given as images, as in KC-MMBench), ``image`` (base64, one or a list literal;
  decoded to PNG files in a cache folder) or ``video_path`` (a video file; ``max_frames`` frames
  are sampled uniformly with PyAV, ``pip install av``).
* **Prompt**: VLMEvalKit's ``ImageMCQDataset.build_prompt`` text (``Hint:``, ``Question:``,
  ``Options:`` with ``A. ...`` lines and "Please select the correct answer from the options
  above."), after one image item per image/frame.
* **Scoring**: :func:`extract_choice` -- an exact-matching extraction in the spirit of VLMEvalKit's
  ``can_infer`` (explicit ``Answer: X`` / ``\\boxed{X}`` / ``(X)`` forms, then a single option
  letter standing alone, then a unique option text); no LLM judge. Accuracy overall and per
  ``category``, plus the extraction-failure rate (failures count as wrong). This module has no
  ``evaluate`` module or standalone scoring function; its numbers exist only in the runner's
  table, ``results.json`` and model-index, which show percent as leaderboards do, labelled
  (``metrics_unit: percent``, ``(values in %)``, ``accuracy (<name>, %)``).
"""

from __future__ import annotations

import ast
import base64
import csv
import hashlib
import json
import os
import re
import string
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kwaiformers.evaluation.kc_mmbench import keye_post_process, remove_think_tags, subsample_frames
from kwaiformers.evaluation.runner import EvalSample, Generation, TaskAdapter, TaskResult

MCQ_INSTRUCTION = "Please select the correct answer from the options above. \n"


def build_mcq_prompt(question: str, options: Mapping[str, str], hint: str | None = None) -> str:
    """VLMEvalKit ``ImageMCQDataset.build_prompt`` text."""
    prompt = f"Hint: {hint}\n" if hint else ""
    prompt += f"Question: {question}\n"
    if options:
        prompt += "Options:\n" + "".join(f"{k}. {v}\n" for k, v in options.items())
        prompt += MCQ_INSTRUCTION
    return prompt


_EXPLICIT = [
    re.compile(r"\\boxed\{\s*\(?([A-Z])\)?\s*\}"),
    re.compile(r"(?:answer|Answer|ANSWER|答案|选项)\s*(?:is|为|是)?\s*[:：]?\s*\(?\**([A-Z])\b"),
]


def extract_choice(response: str, options: Mapping[str, str]) -> str | None:
    """The option letter a response picks, or ``None`` when it cannot be told.

    Order: Keye post-processing and think removal; an explicit ``\\boxed{X}`` or ``Answer: X`` (last
    one wins, X must be an option); exactly one option letter standing alone as a token (after
    replacing ``.()[],:;!*#{}`` by spaces); exactly one option text contained in the response.
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a string, got {type(response).__name__}")
    if not options:
        raise ValueError("options must not be empty")
    text = keye_post_process(remove_think_tags(response)).strip()
    letters = set(options)
    for pattern in _EXPLICIT:
        found = [m for m in pattern.findall(text) if m in letters]
        if found:
            return found[-1]
    tokens = re.sub(r"[.()\[\],:;!*#{}：。，（）]", " ", text).split()
    hits = {t for t in tokens if t in letters}
    if len(hits) == 1:
        return hits.pop()
    lowered = text.lower()
    texts = [k for k, v in options.items() if str(v).strip() and str(v).strip().lower() in lowered]
    if len(texts) == 1:
        return texts[0]
    return None


def _parse_list_cell(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"cell {value[:60]!r} is not a valid list literal") from err
        if not isinstance(parsed, (list, tuple)):
            raise ValueError(f"cell {value[:60]!r} must be a list")
        return [str(x) for x in parsed]
    return [value] if value else []


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a ``.tsv`` (tab-separated, header line) or ``.jsonl`` benchmark file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {str(path)!r} does not exist")
    if path.suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{lineno}: not JSON ({err})") from None
                    rows.append({k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                                 if isinstance(v, list) else ("" if v is None else str(v))
                                 for k, v in row.items()})
        return rows
    if path.suffix != ".tsv":
        raise ValueError(f"benchmark file must be .tsv or .jsonl, got {path.name!r}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8", newline="") as f:
        return [dict(r) for r in csv.DictReader(f, delimiter="\t")]


def sample_video_frames(path: str, num_frames: int, cache_dir: str) -> list[str]:
    """``num_frames`` uniformly spaced frames of a video file (PyAV), saved as PNGs; returns paths."""
    try:
        import av
    except ImportError as err:
        raise ImportError("video_path rows need PyAV: pip install 'kwaiformers[video]'") from err
    key = hashlib.sha1(f"{os.path.abspath(path)}:{num_frames}".encode()).hexdigest()[:16]
    out_dir = Path(cache_dir) / key
    done = sorted(out_dir.glob("frame_*.png")) if out_dir.is_dir() else []
    if len(done) == num_frames:
        return [str(p) for p in done]
    out_dir.mkdir(parents=True, exist_ok=True)
    with av.open(path) as container:
        frames = [f.to_image() for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"video {path!r} has no decodable frames")
    picked = subsample_frames(list(range(len(frames))), num_frames)
    paths = []
    for i, idx in enumerate(picked):
        p = out_dir / f"frame_{i:04d}.png"
        frames[int(idx)].convert("RGB").save(p)
        paths.append(str(p))
    return paths


class MultipleChoiceTask(TaskAdapter):
    """An image / video multiple-choice benchmark file as a runner task.

    Args:
        data: the ``.tsv`` / ``.jsonl`` file.
        name: results / model-card name (default: the file stem).
        image_root: folder that relative ``image_path``/``video_path`` entries are resolved
            against (default: the file's folder).
        max_frames: images per sample at most (uniform); frames sampled from ``video_path``
            (default 8 for videos, all images otherwise).
        cache_dir: where decoded base64 images and sampled video frames go (default:
            ``<file folder>/.mcq_cache``).
        post_prompt: text appended after the VLMEvalKit prompt (e.g. "Answer with the option's
            letter from the given choices directly.").
        dataset_type: Hub id recorded in the model card (default: ``local/<stem>``).
    """

    def __init__(
        self,
        data: str | os.PathLike,
        name: str | None = None,
        image_root: str | os.PathLike | None = None,
        max_frames: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        post_prompt: str = "",
        dataset_type: str | None = None,
    ) -> None:
        self.data_path = Path(data)
        stem = self.data_path.stem
        self.name = name or f"mcq_{stem}"
        self.dataset_type = dataset_type or f"local/{stem}"
        self.dataset_name = stem
        self.dataset_split = "test"
        self.image_root = Path(image_root) if image_root is not None else self.data_path.parent
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
            raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
        self.max_frames = max_frames
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_path.parent / ".mcq_cache"
        self.post_prompt = post_prompt

    def dataset_args(self) -> dict[str, Any]:
        return {"max_frames": self.max_frames}

    def _resolve(self, rel: str) -> str:
        for cand in (Path(rel), self.image_root / rel, self.image_root / "images" / rel):
            if cand.is_file():
                return str(cand)
        raise FileNotFoundError(f"file {rel!r} not found under {self.image_root}")

    def _images(self, row: dict[str, str], index: str) -> list[str]:
        if row.get("image_path"):
            paths = [self._resolve(p) for p in _parse_list_cell(row["image_path"])]
            return subsample_frames(paths, self.max_frames)
        if row.get("image"):
            out = self.cache_dir / "images"
            out.mkdir(parents=True, exist_ok=True)
            paths = []
            for k, b64 in enumerate(_parse_list_cell(row["image"])):
                target = out / f"{hashlib.sha1(b64.encode()).hexdigest()[:16]}_{k}.png"
                if not target.is_file():
                    import io

                    from PIL import Image

                    try:
                        raw = base64.b64decode(b64, validate=True)
                    except ValueError as err:
                        raise ValueError(f"row {index}: 'image' is not valid base64") from err
                    Image.open(io.BytesIO(raw)).convert("RGB").save(target)
                paths.append(str(target))
            return subsample_frames(paths, self.max_frames)
        if row.get("video_path"):
            return sample_video_frames(self._resolve(row["video_path"]), self.max_frames or 8,
                                       str(self.cache_dir / "frames"))
        raise ValueError(f"row {index}: needs image_path, image or video_path")

    def load_samples(self) -> list[EvalSample]:
        rows = read_rows(self.data_path)
        if not rows:
            raise ValueError(f"{self.data_path}: no rows")
        missing = {"index", "question", "answer"} - set(rows[0])
        if missing:
            raise ValueError(f"{self.data_path}: missing column(s) {sorted(missing)}")
        samples, seen = [], set()
        for row in rows:
            index = str(row["index"]).strip()
            if index in seen:
                raise ValueError(f"{self.data_path}: duplicate index {index!r}")
            seen.add(index)
            options = {c: row[c] for c in string.ascii_uppercase
                       if c in row and row[c] is not None and str(row[c]).strip()
                       and str(row[c]).strip().lower() != "nan"}
            if len(options) < 2:
                raise ValueError(f"row {index}: needs at least two options (columns A, B, ...)")
            answer = str(row["answer"]).strip()
            if answer not in options:
                raise ValueError(f"row {index}: answer {answer!r} is not one of {sorted(options)}")
            samples.append(EvalSample(id=index, data={
                "question": row["question"], "options": options, "answer": answer,
                "hint": (row.get("hint") or "").strip() or None,
                "category": (row.get("category") or "").strip() or None,
                "images": self._images(row, index),
            }))
        return samples

    def build_messages(self, sample: EvalSample) -> list[dict[str, Any]]:
        d = sample.data
        text = build_mcq_prompt(d["question"], d["options"], d["hint"]) + self.post_prompt
        content: list[dict[str, Any]] = [{"type": "image", "path": p} for p in d["images"]]
        content.append({"type": "text", "text": text})
        return [{"role": "user", "content": content}]

    def score(self, samples: Sequence[EvalSample], generations: Mapping[str, list[Generation]],
              k_values: Sequence[int]) -> TaskResult:
        per_sample, flags, cats, failures = [], [], [], 0
        for s in samples:
            for rep, gen in enumerate(generations[s.id]):
                choice = extract_choice(gen.text, s.data["options"])
                correct = choice == s.data["answer"]
                failures += choice is None
                flags.append(correct)
                cats.append(s.data["category"])
                per_sample.append({"id": s.id, "sample_index": rep, "answer": s.data["answer"],
                                   "extracted": choice, "correct": correct})
        acc = 100.0 * sum(flags) / len(flags)
        metrics = {"accuracy": acc, "extraction_failure_rate": 100.0 * failures / len(flags)}
        groups: dict[str, list[bool]] = {}
        for flag, cat in zip(flags, cats):
            if cat:
                groups.setdefault(cat, []).append(flag)
        for cat in sorted(groups):
            metrics[f"category/{cat}"] = 100.0 * sum(groups[cat]) / len(groups[cat])
        return TaskResult(metrics=metrics, card_metrics=[("accuracy", acc)], per_sample=per_sample,
                          info={"num_options": sorted({len(s.data["options"]) for s in samples})},
                          metrics_unit="percent")


def add_arguments(parser) -> None:
    """``kwaiformers eval mcq`` arguments."""
    from kwaiformers.evaluation.runner import add_common_arguments

    g = parser.add_argument_group("multiple choice")
    g.add_argument("--data", required=True, help=".tsv or .jsonl benchmark file")
    g.add_argument("--name", default=None, help="results / model-card name")
    g.add_argument("--image-root", default=None, help="folder for relative image/video paths")
    g.add_argument("--max-frames", type=int, default=None, help="images / video frames per sample")
    g.add_argument("--post-prompt", default="", help="text appended to every prompt")
    g.add_argument("--dataset-type", default=None, help="Hub id recorded in the model card")
    add_common_arguments(parser, default_n=1, default_max_new_tokens=1024, kind="multimodal")
    parser.set_defaults(temperature=0.0, batch_size=4)


def run(args) -> int:
    from kwaiformers.evaluation.runner import print_summary, run_from_args

    task = MultipleChoiceTask(args.data, name=args.name, image_root=args.image_root,
                              max_frames=args.max_frames, post_prompt=args.post_prompt,
                              dataset_type=args.dataset_type)
    print_summary(run_from_args(task, args))
    return 0
