"""Leaderboard results as Hub ``model-index`` metadata (``huggingface_hub.EvalResult``).

``evaluate.push_to_hub`` is avoided on purpose: with huggingface_hub 2.x it catches the wrong
HTTP error type (design note §5.2). We build :class:`huggingface_hub.EvalResult` objects, merge
them into a local ``README.md`` model card (replacing results for the same task / dataset /
metric) and, on request, push only the metadata with :func:`huggingface_hub.metadata_update`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def make_eval_result(
    *,
    dataset_type: str,
    dataset_name: str,
    metric_type: str,
    metric_value: float,
    metric_name: str | None = None,
    metric_config: str | None = None,
    dataset_split: str | None = None,
    dataset_revision: str | None = None,
    dataset_config: str | None = None,
    dataset_args: dict[str, Any] | None = None,
    task_type: str = "text-generation",
    task_name: str | None = None,
):
    """One ``EvalResult`` (validated: finite numeric value, non-empty names)."""
    from huggingface_hub import EvalResult

    if not isinstance(metric_value, (int, float)) or metric_value != metric_value:
        raise ValueError(f"metric_value must be a finite number, got {metric_value!r}")
    for name, value in (("dataset_type", dataset_type), ("dataset_name", dataset_name),
                        ("metric_type", metric_type)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return EvalResult(
        task_type=task_type, task_name=task_name, dataset_type=dataset_type,
        dataset_name=dataset_name, dataset_config=dataset_config, dataset_split=dataset_split,
        dataset_revision=dataset_revision, dataset_args=dataset_args, metric_type=metric_type,
        metric_name=metric_name, metric_value=float(metric_value), metric_config=metric_config,
    )


def _key(result) -> tuple:
    return (result.task_type, result.dataset_type, result.dataset_config, result.dataset_split,
            result.metric_type, result.metric_config)


def write_model_card(path: str | os.PathLike, model_name: str, results: Sequence[Any]) -> str:
    """Create or update the model card at ``path`` (a ``README.md`` or a directory holding one)
    with ``results``; existing results for other metrics/datasets are kept. Returns the path."""
    from huggingface_hub import ModelCard, ModelCardData

    path = os.fspath(path)
    if os.path.isdir(path) or not path.endswith(".md"):
        os.makedirs(path, exist_ok=True)
        path = os.path.join(path, "README.md")
    if not results:
        raise ValueError("results must contain at least one EvalResult")
    if os.path.exists(path):
        card = ModelCard.load(path)
        existing = list(card.data.eval_results or [])
        new_keys = {_key(r) for r in results}
        card.data.eval_results = [r for r in existing if _key(r) not in new_keys] + list(results)
        card.data.model_name = card.data.model_name or model_name
    else:
        data = ModelCardData(model_name=model_name, eval_results=list(results))
        card = ModelCard.from_template(
            data, template_str="---\n{{ card_data }}\n---\n\n# {{ model_name }}\n\n"
            "Evaluation results written by `kwaiformers eval`.\n", model_name=model_name)
    card.save(path)
    return path


def push_model_index(repo_id: str, model_name: str, results: Sequence[Any],
                     token: str | None = None) -> str:
    """Merge ``results`` into the ``model-index`` of Hub repo ``repo_id`` (metadata only)."""
    from huggingface_hub import ModelCard, metadata_update
    from huggingface_hub.repocard_data import eval_results_to_model_index

    try:
        current = list(ModelCard.load(repo_id, token=token).data.eval_results or [])
    except Exception:  # noqa: BLE001 - a repo without a card: start from scratch
        current = []
    keys = {_key(r) for r in results}
    merged = [r for r in current if _key(r) not in keys] + list(results)
    return metadata_update(repo_id, {"model-index": eval_results_to_model_index(model_name, merged)},
                           overwrite=True, token=token)
