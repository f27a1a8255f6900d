"""Executor for untrusted (model-generated) code; see :mod:`kwaiformers.sandbox.executor`.

Public names (resolved lazily, stdlib only): :class:`Sandbox`, :class:`SandboxConfig`,
:class:`Job`, :class:`Result`, :func:`run_batch`, :func:`outputs_match`,
:func:`require_code_execution`, :func:`code_execution_allowed`,
:class:`CodeExecutionNotAllowedError`, :class:`SandboxUnavailableError`, :data:`STATUSES`,
:data:`ALLOW_ENV_VAR`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ALLOW_ENV_VAR",
    "STATUSES",
    "CodeExecutionNotAllowedError",
    "Job",
    "Result",
    "Sandbox",
    "SandboxConfig",
    "SandboxUnavailableError",
    "code_execution_allowed",
    "outputs_match",
    "require_code_execution",
    "run_batch",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("kwaiformers.sandbox.executor"), name)
    raise AttributeError(f"module 'kwaiformers.sandbox' has no attribute {name!r}")
