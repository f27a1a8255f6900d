"""The shared generation runner behind ``kwaiformers eval <benchmark>`` (AIME, LiveCodeBench,
KC-MMBench, ...): generate ``n`` samples per problem, cache them as they are produced, resume after
a crash, score, write a results JSON and the model-index of a local model card.

Plugging in a benchmark -- the **task adapter interface** (subclass :class:`TaskAdapter`):

- class attributes ``name`` (results key, e.g. ``"aime24"``), ``dataset_type`` (Hub id),
  ``dataset_name`` (pretty name), ``dataset_split``, ``dataset_revision``, ``dataset_config``;
- ``load_samples() -> list[EvalSample]``: each sample has a unique, stable ``id`` (the cache key)
  and a free-form ``data`` dict;
- ``build_messages(sample) -> list[dict]``: the chat turn(s) for the model. Text tasks use
  ``{"role", "content": str}``; multimodal tasks use transformers' content lists
  (``[{"type": "image", "path": ...}, {"type": "text", "text": ...}]``), which the processor
  backend passes to ``processor.apply_chat_template``;
- ``score(samples, generations, k_values) -> TaskResult``: ``generations[sample.id]`` is the list
  of :class:`Generation` (``text``, ``finish_reason`` ``"stop"``/``"length"``, ``num_tokens``);
  return the metrics, the model-card metrics (``card_metrics``: ``(metric_type, value)``), one
  record per sample and extra ``info`` (e.g. problem counts) for the results JSON.
- optional ``dataset_args() -> dict`` (recorded in the model card, e.g. a date window).

**Generation backends** (subclass :class:`GenerationBackend`, one method
``generate(conversations, config) -> list[Generation]``, one generation per conversation):

- :class:`TransformersBackend` -- ``model.generate`` with ``processing_class.apply_chat_template``
  (batched, left padding). ``processing_class`` may be a tokenizer (text causal LMs,
  :func:`load_transformers_backend` with ``kind="text"``) or a multimodal processor
  (``kind="multimodal"``: ``AutoProcessor`` + ``AutoModelForImageTextToText``; the processor
  loads the images/videos referenced in the messages). This is the extension point for
  processor-based models: override :meth:`TransformersBackend.encode` if a model needs custom
  inputs (e.g. video frame sampling arguments).
- :class:`VLLMBackend` -- ``vllm.LLM.chat`` when vLLM is installed and ``--backend vllm`` is asked.

**Cache and resume.** Every generation is appended (and flushed) to ``generations.jsonl`` in the
output directory as soon as its batch finishes; ``generations.meta.json`` records the model and
sampling settings. A rerun with the same settings skips every ``(sample id, sample index)`` in the
cache (a torn last line from a crash is ignored); different settings raise unless
``overwrite=True``. Batches are seeded with ``seed + position of their first item`` so a resumed
run reproduces the remaining samples' seeds.

**Several processes.** Under ``accelerate launch --num_processes N`` / ``torchrun --nproc_per_node
N`` (``WORLD_SIZE > 1``) the processes join a gloo group and share the work: the missing
generations are cut into the batches one process would make (same contents, same seeds) and
process ``r`` generates batches ``r, r + N, ...`` into its own cache shard
(``generations.rank{r}.jsonl``); process 0 then merges the shards into ``generations.jsonl``
(each ``(sample id, sample index)`` once), scores and writes the results, which every process
returns. A crashed multi-process run resumes from the main cache and the leftover shards, with
any number of processes.

**Scoring only.** ``predictions=...`` (a JSONL of ``{"id", "responses": [...]}`` or of cache rows
``{"sample_id", "text"}``) skips generation.
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

CACHE_FILE = "generations.jsonl"
META_FILE = "generations.meta.json"
RESULTS_FILE = "results.json"
SHARD_PREFIX = "generations.rank"


@dataclass
class EvalSample:
    """One benchmark item: a unique stable ``id`` and the task's ``data``."""

    id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Generation:
    """One model response; ``finish_reason`` is ``"stop"`` (EOS) or ``"length"`` (truncated)."""

    text: str
    finish_reason: str = "stop"
    num_tokens: int | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class GenerationConfig:
    """Sampling settings recorded with every run (defaults: DeepSeek-R1 / Klear evaluation)."""

    n: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int | None = None
    max_new_tokens: int = 32768
    seed: int = 0
    batch_size: int = 8
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be an int >= 1, got {self.n!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")

    def metric_config(self) -> str:
        return (f"n={self.n},temperature={self.temperature},top_p={self.top_p},"
                f"max_new_tokens={self.max_new_tokens}")


#: Values of :attr:`TaskResult.metrics_unit`.
METRIC_UNITS = ("fraction", "percent")


@dataclass
class TaskResult:
    """What :meth:`TaskAdapter.score` returns.

    ``metrics_unit`` says how rates and accuracies are expressed: the Python scoring functions and
    the ``evaluate`` modules return fractions in [0, 1] (``evaluate``'s convention); the runner's
    results JSON, table and model-index may use percent, as leaderboards do, and then say so
    (``"metrics_unit": "percent"`` in ``results.json``, ``%`` in the table header and in the
    model-index metric names). Counts (keys starting with ``num_``) are never scaled.
    """

    metrics: dict[str, float]
    card_metrics: list[tuple[str, float]]
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    metrics_unit: str = "fraction"

    def __post_init__(self) -> None:
        if self.metrics_unit not in METRIC_UNITS:
            raise ValueError(f"metrics_unit must be one of {METRIC_UNITS}, got {self.metrics_unit!r}")


def to_percent(metrics: Mapping[str, float]) -> dict[str, float]:
    """Fractions -> percent for display: every value x100 except counts (keys starting with
    ``num_`` or containing ``/num_``)."""
    return {k: (float(v) if k.startswith("num_") or "/num_" in k else 100.0 * float(v))
            for k, v in metrics.items()}


class TaskAdapter(ABC):
    """A benchmark plugged into the runner (see the module docstring)."""

    name: str = "task"
    dataset_type: str = ""
    dataset_name: str = ""
    dataset_split: str | None = None
    dataset_revision: str | None = None
    dataset_config: str | None = None

    @abstractmethod
    def load_samples(self) -> list[EvalSample]: ...

    @abstractmethod
    def build_messages(self, sample: EvalSample) -> list[dict[str, Any]]: ...

    @abstractmethod
    def score(self, samples: Sequence[EvalSample], generations: Mapping[str, list[Generation]],
              k_values: Sequence[int]) -> TaskResult: ...

    def dataset_args(self) -> dict[str, Any]:
        return {}


class GenerationBackend(ABC):
    """Produces one :class:`Generation` per conversation."""

    name: str = "backend"
    model_name: str = "model"

    @abstractmethod
    def generate(self, conversations: Sequence[list[dict[str, Any]]],
                 config: GenerationConfig, seed: int = 0) -> list[Generation]: ...


class TransformersBackend(GenerationBackend):
    """``model.generate`` on chat-templated, left-padded batches (tokenizer or processor)."""

    name = "transformers"

    def __init__(self, model, processing_class, *, chat_template: str | None = None,
                 model_name: str | None = None) -> None:
        self.model = model
        self.processing_class = processing_class
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        self.tokenizer = tokenizer
        if chat_template is not None:
            processing_class.chat_template = chat_template
            if tokenizer is not processing_class:
                tokenizer.chat_template = chat_template
        if getattr(processing_class, "chat_template", None) is None:
            raise ValueError("the tokenizer/processor has no chat_template; pass --chat-template")
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model_name = model_name or getattr(model, "name_or_path", None) or "model"
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        if tokenizer.eos_token_id is not None:
            eos = [*eos, tokenizer.eos_token_id]
        self.eos_ids = set(eos)

    def encode(self, conversations: Sequence[list[dict[str, Any]]], config: GenerationConfig):
        """Batch encoding (override for models that need custom processor arguments)."""
        return self.processing_class.apply_chat_template(
            list(conversations), add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt", padding=True, **config.chat_template_kwargs)

    def generate(self, conversations, config, seed=0):
        import torch
        from transformers import set_seed

        set_seed(seed)
        inputs = self.encode(conversations, config).to(self.model.device)
        kwargs: dict[str, Any] = {"max_new_tokens": config.max_new_tokens,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if config.temperature > 0:
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
            if config.top_k is not None:
                kwargs["top_k"] = config.top_k
        else:
            kwargs["do_sample"] = False
        with torch.no_grad():
            out = self.model.generate(**inputs, **kwargs)
        new_tokens = out[:, inputs["input_ids"].shape[1]:].tolist()
        generations = []
        for row in new_tokens:
            stop = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            kept = row if stop is None else row[:stop]
            kept = [t for t in kept if t != self.tokenizer.pad_token_id or t in self.eos_ids]
            text = self.tokenizer.decode(kept, skip_special_tokens=False)
            generations.append(Generation(
                text, "stop" if stop is not None else "length",
                len(kept) + (1 if stop is not None else 0)))
        return generations


class VLLMBackend(GenerationBackend):
    """vLLM offline inference (``pip install vllm``); ``LLM.chat`` batches everything itself."""

    name = "vllm"

    def __init__(self, model: str, *, chat_template: str | None = None,
                 tensor_parallel_size: int = 1, max_model_len: int | None = None,
                 **llm_kwargs: Any) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("--backend vllm needs vLLM: pip install vllm") from exc
        self.llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size,
                       max_model_len=max_model_len, **llm_kwargs)
        self.chat_template = chat_template
        self.model_name = model

    def generate(self, conversations, config, seed=0):
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {"n": 1, "temperature": config.temperature,
                                  "top_p": config.top_p, "max_tokens": config.max_new_tokens,
                                  "seed": seed}
        if config.top_k is not None:  # otherwise vLLM's default (disabled)
            kwargs["top_k"] = config.top_k
        params = SamplingParams(**kwargs)
        outputs = self.llm.chat([openai_image_messages(c) for c in conversations], params,
                                use_tqdm=False,
                                chat_template=self.chat_template,
                                chat_template_kwargs=config.chat_template_kwargs or None)
        return [Generation(o.outputs[0].text, o.outputs[0].finish_reason or "stop",
                           len(o.outputs[0].token_ids)) for o in outputs]


def openai_image_messages(conversation: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copy of ``conversation`` with transformers-style image items (``{"type": "image", "path" |
    "url" | "image": ...}``) rewritten as OpenAI ``image_url`` items, the format ``vllm.LLM.chat``
    reads; local files and PIL images become base64 data URLs. Other items are kept as they are."""
    import base64
    import io
    import mimetypes

    out = []
    for message in conversation:
        content = message.get("content")
        if not isinstance(content, list):
            out.append(dict(message))
            continue
        items = []
        for item in content:
            if item.get("type") != "image":
                items.append(item)
                continue
            value = item.get("image", item.get("path", item.get("url")))
            if isinstance(value, str) and value.startswith(("http://", "https://", "data:")):
                url = value
            elif isinstance(value, (str, os.PathLike)):
                path = os.fspath(value).removeprefix("file://")
                with open(path, "rb") as f:
                    data = base64.b64encode(f.read()).decode()
                mime = mimetypes.guess_type(path)[0] or "image/png"
                url = f"data:{mime};base64,{data}"
            elif hasattr(value, "save"):  # PIL image
                buf = io.BytesIO()
                value.save(buf, format="PNG")
                url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
            else:
                raise ValueError(f"image item needs 'path', 'url' or 'image', got {sorted(item)}")
            items.append({"type": "image_url", "image_url": {"url": url}})
        out.append({**message, "content": items})
    return out


def read_chat_template(value: str | None) -> str | None:
    """``--chat-template``: a path to a Jinja file, or the template text itself."""
    if value is None:
        return None
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            return f.read()
    if "{%" not in value and "{{" not in value:
        raise ValueError(f"--chat-template {value!r} is neither a file nor a Jinja template")
    return value


def load_transformers_backend(model: str, *, kind: str = "text", chat_template: str | None = None,
                              dtype: str = "auto", device: str | None = None,
                              trust_remote_code: bool = False) -> TransformersBackend:
    """Load a Hub id or local path: ``kind="text"`` (AutoTokenizer + AutoModelForCausalLM) or
    ``kind="multimodal"`` (AutoProcessor + AutoModelForImageTextToText)."""
    import transformers

    if kind == "text":
        proc = transformers.AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        model_cls = transformers.AutoModelForCausalLM
    elif kind == "multimodal":
        proc = transformers.AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code)
        model_cls = transformers.AutoModelForImageTextToText
    else:
        raise ValueError(f"kind must be 'text' or 'multimodal', got {kind!r}")
    lm = model_cls.from_pretrained(model, dtype=dtype, trust_remote_code=trust_remote_code)
    if device is None:
        import torch

        # one GPU per process under a launcher (LOCAL_RANK), else the first
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    lm.to(device).eval()
    return TransformersBackend(lm, proc, chat_template=chat_template, model_name=model)


# -- cache ----------------------------------------------------------------------------------------


class GenerationCache:
    """Append-only JSONL of generations keyed by ``(sample_id, sample_index)``."""

    def __init__(self, output_dir: str | os.PathLike, shard: int | None = None) -> None:
        self.dir = os.fspath(output_dir)
        os.makedirs(self.dir, exist_ok=True)
        self.path = os.path.join(self.dir, CACHE_FILE)
        self.meta_path = os.path.join(self.dir, META_FILE)
        #: where :meth:`append` writes: the main file, or process ``shard``'s own file
        self.write_path = self.path if shard is None else os.path.join(self.dir, f"{SHARD_PREFIX}{shard}.jsonl")

    def shard_paths(self) -> list[str]:
        """Cache shards of a multi-process run that were not merged yet."""
        names = sorted(n for n in os.listdir(self.dir) if n.startswith(SHARD_PREFIX) and n.endswith(".jsonl"))
        return [os.path.join(self.dir, n) for n in names]

    def merge_shards(self) -> int:
        """Append the shards' generations missing from the main file to it (each key once), then
        delete the shards; returns the number of rows added. Run by one process."""
        main = self._read(self.path)
        added = {}
        for path in self.shard_paths():
            for key, gen in self._read(path).items():
                if key not in main and key not in added:
                    added[key] = gen
        if added:
            self.append(((sid, k, g) for (sid, k), g in sorted(added.items())), path=self.path)
        for path in self.shard_paths():
            os.remove(path)
        return len(added)

    def check_meta(self, meta: dict[str, Any], overwrite: bool = False, write: bool = True) -> None:
        """Record ``meta``; refuse to mix generations made with different settings
        (``write=False``: only the check)."""
        cached = os.path.exists(self.path) or bool(self.shard_paths())
        if os.path.exists(self.meta_path) and cached and not overwrite:
            with open(self.meta_path, encoding="utf-8") as f:
                old = json.load(f)
            if old != json.loads(json.dumps(meta)):
                diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
                raise ValueError(
                    f"{self.path} was generated with different settings ({', '.join(diff)}); "
                    "use another --output-dir or --overwrite")
        if not write:
            return
        if overwrite:
            for path in [self.path, *self.shard_paths()]:
                if os.path.exists(path):
                    os.remove(path)
        with open(self.meta_path, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)

    def load(self) -> dict[tuple[str, int], Generation]:
        """Every cached generation: the main file and any shard left by a multi-process run."""
        done: dict[tuple[str, int], Generation] = {}
        for path in [*self.shard_paths(), self.path]:
            done.update(self._read(path))
        return done

    @staticmethod
    def _read(path: str) -> dict[tuple[str, int], Generation]:
        done: dict[tuple[str, int], Generation] = {}
        if not os.path.exists(path):
            return done
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    key = (str(row["sample_id"]), int(row["sample_index"]))
                    done[key] = Generation(row["text"], row.get("finish_reason", "stop"),
                                           row.get("num_tokens"))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # torn line from a crash: that sample is regenerated
        return done

    def append(self, rows: Iterable[tuple[str, int, Generation]], path: str | None = None) -> None:
        with open(path or self.write_path, "a", encoding="utf-8") as f:
            if f.tell() > 0:  # make sure a torn last line from a crash stays on its own line
                f.write("\n")
            for sample_id, index, gen in rows:
                f.write(json.dumps({"sample_id": sample_id, "sample_index": index, **asdict(gen)},
                                   ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def generate_all(task: TaskAdapter, backend: GenerationBackend, samples: Sequence[EvalSample],
                 config: GenerationConfig, cache: GenerationCache, progress: bool = True,
                 on_batch: Callable[[int], None] | None = None, rank: int = 0,
                 world: int = 1) -> dict[str, list[Generation]]:
    """Generate ``config.n`` samples for every problem, skipping what ``cache`` already holds.

    ``rank``/``world``: this process makes batches ``rank, rank + world, ...`` of the missing
    generations and returns only what it holds (the caller merges the shards)."""
    from tqdm.auto import tqdm

    done = cache.load()
    todo = [(s, k) for s in samples for k in range(config.n) if (s.id, k) not in done]
    position = {(s.id, k): i for i, (s, k) in enumerate((s, k) for s in samples
                                                         for k in range(config.n))}
    batches = [todo[i:i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
    mine = batches[rank::world]
    bar = tqdm(total=sum(map(len, mine)), desc=f"generating {task.name}", disable=not progress)
    for b, batch in enumerate(mine):
        convs = [task.build_messages(s) for s, _ in batch]
        gens = backend.generate(convs, config, seed=config.seed + position[(batch[0][0].id,
                                                                            batch[0][1])])
        if len(gens) != len(batch):
            raise RuntimeError(f"backend returned {len(gens)} generations for {len(batch)} prompts")
        cache.append((s.id, k, g) for (s, k), g in zip(batch, gens))
        for (s, k), g in zip(batch, gens):
            done[(s.id, k)] = g
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(b)
    bar.close()
    if world > 1:
        return {s.id: [done[(s.id, k)] for k in range(config.n) if (s.id, k) in done] for s in samples}
    return {s.id: [done[(s.id, k)] for k in range(config.n)] for s in samples}


def process_layout() -> tuple[int, int]:
    """``(rank, world)``: under a launcher (``WORLD_SIZE > 1``) join a gloo group (timeout
    ``KWAIFORMERS_EVAL_TIMEOUT_S``, default 24 h: processes wait for the slowest at the merge),
    else ``(0, 1)``."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        world = 1
    if world <= 1:
        return 0, 1
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        timeout = float(os.environ.get("KWAIFORMERS_EVAL_TIMEOUT_S", 86400))
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    return dist.get_rank(), dist.get_world_size()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def read_predictions(path: str | os.PathLike, samples: Sequence[EvalSample],
                     n: int | None = None) -> dict[str, list[Generation]]:
    """Read generations made elsewhere: JSONL rows ``{"id", "responses": [str, ...]}`` (optionally
    ``"finish_reasons"``) or cache rows ``{"sample_id", "sample_index", "text"}``."""
    by_id: dict[str, dict[int, Generation]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
            if "responses" in row and "id" in row:
                reasons = row.get("finish_reasons") or ["stop"] * len(row["responses"])
                slot = by_id.setdefault(str(row["id"]), {})
                for i, (text, reason) in enumerate(zip(row["responses"], reasons)):
                    slot[len(slot) if i in slot else i] = Generation(str(text), reason)
            elif "sample_id" in row and "text" in row:
                slot = by_id.setdefault(str(row["sample_id"]), {})
                slot[int(row.get("sample_index", len(slot)))] = Generation(
                    row["text"], row.get("finish_reason", "stop"), row.get("num_tokens"))
            else:
                raise ValueError(f"{path}:{lineno}: expected keys 'id' + 'responses' or "
                                 f"'sample_id' + 'text', got {sorted(row)}")
    known = {s.id for s in samples}
    unknown = sorted(set(by_id) - known)
    if unknown:
        raise ValueError(f"{path}: predictions for unknown sample ids {unknown[:5]}")
    missing = [s.id for s in samples if s.id not in by_id]
    if missing:
        raise ValueError(f"{path}: no predictions for {len(missing)} samples, e.g. {missing[:5]}")
    out = {sid: [slot[i] for i in sorted(slot)] for sid, slot in by_id.items()}
    counts = {len(v) for v in out.values()}
    if n is not None and counts != {n}:
        raise ValueError(f"{path}: expected {n} responses per sample, found counts {sorted(counts)}")
    return out


def evaluate_task(
    task: TaskAdapter,
    *,
    output_dir: str | os.PathLike,
    backend: GenerationBackend | None = None,
    predictions: str | os.PathLike | None = None,
    config: GenerationConfig | None = None,
    k_values: Sequence[int] = (1,),
    model_name: str | None = None,
    model_card: str | os.PathLike | None = None,
    push_to_hub: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    samples: Sequence[EvalSample] | None = None,
) -> dict[str, Any]:
    """Generate (or read ``predictions``), score, write ``results.json`` and the model card.

    Returns the results dict. ``model_card`` defaults to ``<output_dir>/README.md``;
    ``push_to_hub`` is a repo id whose ``model-index`` metadata is updated.
    """
    from kwaiformers import __version__
    from kwaiformers.evaluation.model_card import (
        make_eval_result,
        push_model_index,
        write_model_card,
    )

    if (backend is None) == (predictions is None):
        raise ValueError("pass exactly one of backend (generate) or predictions (score only)")
    config = config or GenerationConfig()
    k_values = sorted({int(k) for k in k_values})
    if any(k < 1 for k in k_values):
        raise ValueError(f"k values must be >= 1, got {k_values}")
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    samples = list(samples) if samples is not None else task.load_samples()
    if not samples:
        raise ValueError(f"task {task.name!r} has no samples (check the dataset / filters)")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise ValueError(f"task {task.name!r} has duplicate sample ids")
    start = time.time()
    rank, world = process_layout() if backend is not None else (0, 1)
    if backend is not None:
        model_name = model_name or backend.model_name
        meta = {"task": task.name, "model": model_name, "backend": backend.name,
                **asdict(config), "batch_size": None}
        if world > 1:
            GenerationCache(output_dir).check_meta(meta, overwrite=overwrite, write=False)
            _barrier(world)  # every process compared the settings before process 0 changes files
        if rank == 0:
            GenerationCache(output_dir).check_meta(meta, overwrite=overwrite)
        _barrier(world)
        cache = GenerationCache(output_dir, shard=rank if world > 1 else None)
        generations = generate_all(task, backend, samples, config, cache,
                                   progress=progress and rank == 0, rank=rank, world=world)
        _barrier(world)
        if world > 1:
            if rank == 0:
                cache.merge_shards()
                done = cache.load()
                generations = {s.id: [done[(s.id, k)] for k in range(config.n)] for s in samples}
            else:  # process 0 scores and writes the results; the others return them
                _barrier(world)
                with open(os.path.join(output_dir, RESULTS_FILE), encoding="utf-8") as f:
                    return json.load(f)
    else:
        generations = read_predictions(predictions, samples)
        model_name = model_name or "predictions"
    n_per_sample = min(len(v) for v in generations.values())
    k_values = [k for k in k_values if k <= n_per_sample] or [1]
    result = task.score(samples, generations, k_values)
    results = {
        "task": task.name,
        "model": model_name,
        "metrics": result.metrics,
        "metrics_unit": result.metrics_unit,
        "num_problems": len(samples),
        "n": n_per_sample,
        "k_values": k_values,
        "generation": asdict(config) if backend is not None else None,
        "predictions_file": os.fspath(predictions) if predictions is not None else None,
        "dataset": {"type": task.dataset_type, "name": task.dataset_name,
                    "split": task.dataset_split, "revision": task.dataset_revision,
                    "config": task.dataset_config, **task.dataset_args()},
        "info": result.info,
        "kwaiformers_version": __version__,
        "elapsed_seconds": round(time.time() - start, 3),
        "per_sample": result.per_sample,
    }
    with open(os.path.join(output_dir, RESULTS_FILE), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, ensure_ascii=False, default=_json_default)
    metric_config = config.metric_config() if backend is not None else f"n={n_per_sample}"
    dataset_args = {k: v for k, v in task.dataset_args().items() if v is not None} or None
    eval_results = [
        make_eval_result(dataset_type=task.dataset_type, dataset_name=task.dataset_name,
                         dataset_split=task.dataset_split, dataset_revision=task.dataset_revision,
                         dataset_config=task.dataset_config, dataset_args=dataset_args,
                         metric_type=metric_type,
                         metric_name=f"{metric_type} ({task.name}"
                                     + (", %)" if result.metrics_unit == "percent" else ")"),
                         metric_value=round(float(value), 4), metric_config=metric_config)
        for metric_type, value in result.card_metrics if math.isfinite(value)
    ]
    if eval_results:
        card_path = write_model_card(model_card or output_dir, os.path.basename(
            str(model_name).rstrip("/")) or "model", eval_results)
        results["model_card"] = card_path
        if push_to_hub:
            results["pushed_to"] = push_model_index(push_to_hub, os.path.basename(
                str(model_name).rstrip("/")), eval_results)
    if world > 1:
        _barrier(world)  # results.json is written: release the other processes
    return results


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# -- unbiased pass@k (Codex, arXiv 2107.03374 eq. 1) ------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k) (1.0 when n - c < k)."""
    if not (0 <= c <= n) or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"k={k} is larger than the number of samples n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def check_responses_per_problem(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Any],
    k_values: Sequence[int],
    references_name: str = "references",
) -> int:
    """Validate ``predictions[p]`` = the n responses of problem p against one reference per
    problem and ``1 <= k <= n`` for every k; return n. Raises ``ValueError`` naming the field."""
    if len(predictions) != len(references):
        raise ValueError(f"predictions ({len(predictions)}) and {references_name} "
                         f"({len(references)}) must have one entry per problem")
    if not predictions:
        raise ValueError("predictions is empty")
    ns = {len(p) for p in predictions}
    if len(ns) != 1 or 0 in ns:
        raise ValueError(f"every problem needs the same non-zero number of responses, got {ns}")
    n = ns.pop()
    for k in k_values:
        if not 1 <= k <= n:
            raise ValueError(f"k={k} must be between 1 and the number of responses n={n}")
    return n


# -- CLI helpers shared by the `kwaiformers eval <task>` commands ---------------------------------


def add_common_arguments(parser, *, default_n: int = 1, default_max_new_tokens: int = 32768,
                         kind: str = "text") -> None:
    """Arguments every ``kwaiformers eval`` command shares."""
    g = parser.add_argument_group("model and generation")
    g.add_argument("--model", help="Hub id or local path of the model to evaluate")
    g.add_argument("--predictions", help="score generations made elsewhere (JSONL, see docs)")
    g.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    g.add_argument("--kind", choices=["text", "multimodal"], default=kind,
                   help="transformers backend: causal LM + tokenizer, or image-text + processor")
    g.add_argument("--n", type=int, default=default_n, help="samples per problem")
    g.add_argument("--k", default="1", help="comma-separated k values for pass@k")
    g.add_argument("--temperature", type=float, default=0.6)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--max-new-tokens", type=int, default=default_max_new_tokens)
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--chat-template", help="Jinja chat template (file path or text)")
    g.add_argument("--chat-template-kwargs", default="{}",
                   help='JSON, e.g. \'{"enable_thinking": true}\'')
    g.add_argument("--dtype", default="auto")
    g.add_argument("--device", default=None)
    g.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM only")
    g.add_argument("--max-model-len", type=int, default=None, help="vLLM only")
    g.add_argument("--trust-remote-code", action="store_true")
    o = parser.add_argument_group("outputs")
    o.add_argument("--output-dir", required=True, help="cache, results.json and model card")
    o.add_argument("--model-card", default=None, help="model card to update (default: output dir)")
    o.add_argument("--model-name", default=None, help="name in the model-index")
    o.add_argument("--push-to-hub", default=None, metavar="REPO_ID",
                   help="also update the model-index of this Hub model repo")
    o.add_argument("--overwrite", action="store_true", help="discard a cache made differently")
    o.add_argument("--no-progress", action="store_true")


def run_from_args(task: TaskAdapter, args) -> dict[str, Any]:
    """Build the backend / config from parsed :func:`add_common_arguments` and evaluate."""
    try:
        template_kwargs = json.loads(args.chat_template_kwargs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--chat-template-kwargs must be JSON: {exc}") from None
    if not isinstance(template_kwargs, dict):
        raise ValueError("--chat-template-kwargs must be a JSON object")
    config = GenerationConfig(n=args.n, temperature=args.temperature, top_p=args.top_p,
                              top_k=args.top_k, max_new_tokens=args.max_new_tokens,
                              seed=args.seed, batch_size=args.batch_size,
                              chat_template_kwargs=template_kwargs)
    k_values = [int(k) for k in str(args.k).split(",") if k.strip()]
    backend = None
    if args.predictions is None:
        if not args.model:
            raise ValueError("pass --model (to generate) or --predictions (to score only)")
        template = read_chat_template(args.chat_template)
        if args.backend == "vllm":
            mm = {"limit_mm_per_prompt": {"image": 100}} if args.kind == "multimodal" else {}
            backend = VLLMBackend(args.model, chat_template=template, **mm,
                                  tensor_parallel_size=args.tensor_parallel_size,
                                  max_model_len=args.max_model_len, seed=args.seed,
                                  trust_remote_code=args.trust_remote_code)
        else:
            backend = load_transformers_backend(args.model, kind=args.kind, chat_template=template,
                                                dtype=args.dtype, device=args.device,
                                                trust_remote_code=args.trust_remote_code)
    return evaluate_task(task, output_dir=args.output_dir, backend=backend,
                         predictions=args.predictions, config=config, k_values=k_values,
                         model_name=args.model_name or args.model, model_card=args.model_card,
                         push_to_hub=args.push_to_hub, overwrite=args.overwrite,
                         progress=not args.no_progress)


def print_summary(results: Mapping[str, Any]) -> None:
    """A readable table of the headline metrics (printed by process 0 only under a launcher)."""
    if os.environ.get("RANK", "0") != "0":
        return
    unit = "  (values in %)" if results.get("metrics_unit") == "percent" else ""
    print(f"task {results['task']}  model {results['model']}  problems {results['num_problems']}"
          f"  n {results['n']}{unit}")
    width = max((len(k) for k in results["metrics"]), default=10) + 2
    for key, value in results["metrics"].items():
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}{shown}")
