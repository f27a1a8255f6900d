"""Multi-process helpers shared by the trainers and the evaluation runner (DDP / FSDP on gloo or nccl).

* :func:`call_through_wrapper` runs any computation on a wrapped model *inside* the wrapper's
  ``forward`` (DDP's gradient reducer and FSDP's parameter gathering only work through it): the
  OneRec trainers' losses call ``sid_log_probs`` and ``recommend``-side methods, not ``forward``.
* :func:`all_reduce_sum_` / :func:`world_size` / :func:`rank`: no-ops in a single process.
* :func:`check_sharding_supported` refuses FSDP settings on CPU, where accelerate (1.15) silently
  runs DDP instead (it only switches to FSDP for GPU/accelerator process groups).
* :func:`check_launch_matches` turns the "launched N processes but each trains alone" trap (a
  ``Trainer`` on a CPU machine without ``use_cpu: true`` under ``torchrun``) into a clear error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["all_reduce_sum_", "call_through_wrapper", "check_launch_matches", "check_sharding_supported", "rank",
           "world_size"]

_MISSING = object()


def world_size() -> int:
    """Processes in the default group (1 when ``torch.distributed`` is not initialised)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process' rank in the default group (0 when not distributed)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def all_reduce_sum_(tensor):
    """In-place sum over the processes (no-op in one process); returns ``tensor``."""
    import torch.distributed as dist

    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _is_fsdp2(module: Any) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return False
    return isinstance(module, FSDPModule)


def call_through_wrapper(model: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(inner)`` evaluated inside ``model.forward`` when ``model`` is a DDP/FSDP wrapper.

    ``inner`` is the unwrapped module. Calling a method such as ``inner.sid_log_probs`` directly
    would bypass DDP's ``forward`` (gradients are then never all-reduced: ranks diverge
    silently) or FSDP's parameter all-gather; here the inner module's ``forward`` is swapped for
    ``fn`` for one call of the wrapper (DDP then sees ``fn``'s output tensors, which is what
    ``find_unused_parameters`` needs). Plain modules: ``fn(model)``.
    """
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model, keep_fp32_wrapper=True)
    if inner is model and not _is_fsdp2(model):
        return fn(model)
    saved = inner.__dict__.get("forward", _MISSING)

    def restore() -> None:
        if inner.__dict__.get("forward") is not swapped:
            return
        if saved is _MISSING:
            del inner.forward
        else:
            inner.forward = saved

    def swapped(*args: Any, **kwargs: Any) -> Any:
        restore()  # one shot: fn may call the model's real forward itself
        return fn(inner)

    inner.forward = swapped
    try:
        return model()
    finally:
        restore()


def check_sharding_supported(args: Any) -> None:
    """Raise ``ValueError`` when ``args`` (``TrainingArguments``) asks for FSDP on CPU.

    ``torch.distributed.fsdp.fully_shard`` itself runs on CPU with gloo, but accelerate 1.15
    enables its FSDP plugin only for GPU-like process groups: on CPU the ``fsdp`` settings are
    ignored and every process silently holds and trains the whole model under DDP."""
    import torch

    if getattr(args, "fsdp", None) and (getattr(args, "use_cpu", False) or not torch.cuda.is_available()):
        raise ValueError(
            "training.fsdp is set but this run is on CPU: accelerate applies FSDP only on GPUs "
            "(on CPU it would silently fall back to DDP with the whole model on every process). "
            "Launch the FSDP recipe on GPUs (`accelerate launch --multi_gpu --num_processes N ...`) "
            "or remove training.fsdp / training.fsdp_config for CPU data parallelism."
        )


def check_launch_matches(num_processes: int, what: str = "the trainer") -> None:
    """Raise when a launcher started ``WORLD_SIZE > 1`` processes but ``what`` sees one.

    On a machine without GPUs, ``transformers.TrainingArguments`` only joins the process group
    with ``use_cpu=True``; otherwise every process trains alone on the full data (a silent N-fold
    duplicate run).
    """
    try:
        launched = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        launched = 1
    if launched > 1 and num_processes == 1:
        raise RuntimeError(
            f"the launcher started WORLD_SIZE={launched} processes but {what} runs in a single "
            "process, so each process would train alone on all the data. On CPU set "
            "`use_cpu: true` in the training section (gloo data parallelism); on GPUs check that "
            "CUDA is visible to every process."
        )
