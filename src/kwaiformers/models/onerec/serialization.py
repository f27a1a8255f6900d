"""Safetensors + JSON persistence shared by :class:`SemanticIdTokenizer` and :class:`SemanticIdIndex`.

Tensors go to a safetensors file and plain settings to a JSON file next to it (no pickle); the JSON
carries a ``format_version`` that loading checks.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch


def save_tensors_and_config(
    directory: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    *,
    weights_name: str,
    config_name: str,
    format_version: int,
) -> None:
    """Write ``tensors`` (made contiguous) and ``config`` (+ ``format_version``) into ``directory``."""
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(directory, weights_name))
    with open(os.path.join(directory, config_name), "w") as fh:
        json.dump({"format_version": format_version, **config}, fh, indent=2)


def load_tensors_and_config(
    directory: str | os.PathLike,
    *,
    weights_name: str,
    config_name: str,
    format_version: int,
    what: str,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_tensors_and_config` wrote; clear errors for a wrong folder or version."""
    from safetensors.torch import load_file

    cfg_path = os.path.join(directory, config_name)
    w_path = os.path.join(directory, weights_name)
    if not (os.path.isfile(cfg_path) and os.path.isfile(w_path)):
        raise FileNotFoundError(
            f"{directory!s} does not hold a {what} ({config_name} and {weights_name} expected)"
        )
    with open(cfg_path) as fh:
        cfg = json.load(fh)
    if cfg.get("format_version") != format_version:
        raise ValueError(f"unsupported {what} format_version {cfg.get('format_version')}")
    return load_file(w_path), cfg
