"""``kwaiformers env``: versions of the Hugging Face stack, torch threads and visible accelerators."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any

#: Distributions reported by :func:`collect_env`, core first, then optional extras.
PACKAGES: tuple[str, ...] = (
    "kwaiformers",
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "evaluate",
    "huggingface_hub",
    "safetensors",
    "numpy",
    "math-verify",
    "faiss-cpu",
    "av",
    "matplotlib",
    "scikit-learn",
    "vllm",
)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_env() -> dict[str, Any]:
    """Return a JSON-serialisable description of the runtime environment.

    Keys: ``python``, ``platform``, ``packages`` (distribution -> version or ``None`` when not
    installed), ``torch_threads``, ``cuda_available``, ``cuda_devices`` (names), ``mps_available``,
    ``hf_hub_offline``.
    """
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
        if torch.cuda.is_available()
        else [],
        "mps_available": bool(
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        ),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE", "0") not in {"", "0", "false"},
    }
    return info


def format_env(info: dict[str, Any]) -> str:
    """Render :func:`collect_env` output as an aligned, human-readable table."""
    rows: list[tuple[str, str]] = [("python", info["python"]), ("platform", info["platform"])]
    for name, version in info["packages"].items():
        rows.append((name, version or "not installed"))
    rows += [
        ("torch threads", f"{info['torch_threads']} (interop {info['torch_interop_threads']})"),
        (
            "GPU",
            ", ".join(info["cuda_devices"]) if info["cuda_available"] else "none visible (CPU only)",
        ),
        ("MPS", "available" if info["mps_available"] else "no"),
        ("HF_HUB_OFFLINE", "yes" if info["hf_hub_offline"] else "no"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    info = collect_env()
    print(json.dumps(info, indent=2) if args.json else format_env(info))
    return 0
