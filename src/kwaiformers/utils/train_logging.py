"""Keep progress bars clean: ``Trainer`` log dicts go to a file and to ``logging``, not the bar.

By default ``transformers``' ``ProgressCallback.on_log`` writes every log dict
(``{'loss': ..., 'grad_norm': ..., 'learning_rate': ...}``) *between* the progress bars with
``tqdm.write``, so a recipe's own bars and the Trainer's bar are interleaved with dict lines.
:func:`install_clean_trainer_logs` (called by the ``kwaiformers`` CLI for every command) replaces
that method: each log dict is

- appended as one JSON line to ``<TrainingArguments.output_dir>/trainer_log.jsonl`` (main
  process only; :data:`LOG_FILE_NAME`),
- sent to the ``logging`` logger :data:`LOGGER_NAME` at ``INFO`` (silent unless the application
  configures logging, e.g. ``logging.basicConfig(level="INFO")``),
- summarised in the training bar's postfix (``loss=...``) instead of a new line.

``trainer.state.log_history`` is unchanged. The patch is applied when
``transformers.trainer_callback`` is imported (a post-import hook), so commands that never use a
``Trainer`` do not pay for importing ``transformers``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import logging
import os
import sys
from typing import Any

__all__ = ["LOGGER_NAME", "LOG_FILE_NAME", "clean_on_log", "install_clean_trainer_logs"]

LOGGER_NAME = "kwaiformers.train"
LOG_FILE_NAME = "trainer_log.jsonl"
_TARGET = "transformers.trainer_callback"
_POSTFIX_KEYS = ("loss", "eval_loss", "reward")


def clean_on_log(self: Any, args: Any, state: Any, control: Any, logs: dict | None = None,
                 **kwargs: Any) -> None:
    """Replacement for ``ProgressCallback.on_log`` (see the module docstring)."""
    if not logs or not getattr(state, "is_world_process_zero", True):
        return
    record = {"step": getattr(state, "global_step", None), **logs}
    logging.getLogger(LOGGER_NAME).info("%s", record)
    out_dir = getattr(args, "output_dir", None)
    if out_dir:
        try:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, LOG_FILE_NAME), "a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=str) + "\n")
        except OSError as e:  # logging must never break training
            logging.getLogger(LOGGER_NAME).warning("cannot write %s: %s", out_dir, e)
    bar = getattr(self, "training_bar", None)
    if bar is not None:
        post = {k: f"{v:.4g}" for k, v in logs.items()
                if k in _POSTFIX_KEYS and isinstance(v, (int, float))}
        if post:
            bar.set_postfix(post, refresh=False)


def _patch(module: Any) -> None:
    module.ProgressCallback.on_log = clean_on_log


class _PostImportPatcher(importlib.abc.MetaPathFinder):
    """Patches ``transformers.trainer_callback`` right after it is first imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                exec_module(module)
                _patch(module)

        spec.loader = _Loader()
        return spec


def install_clean_trainer_logs() -> None:
    """Route ``Trainer`` log dicts to a file and ``logging`` (idempotent; module docstring)."""
    module = sys.modules.get(_TARGET)
    if module is not None:
        _patch(module)
    elif not any(isinstance(f, _PostImportPatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportPatcher())
