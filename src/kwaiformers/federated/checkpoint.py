"""Per-rank checkpoints of E-Tree device models through Accelerate's save/load state hooks.

``accelerator.save_state`` writes model weights from rank 0 only, but E-Tree device models
differ between ranks (and between virtual devices of one rank). :func:`register_checkpoint_hooks`
adds a save pre-hook that writes, on **every** rank, into the checkpoint folder:

- ``etree_rank{r}.safetensors``: every local device's ``state_dict`` (keys ``device{d}.{name}``,
  cloned contiguous tensors, so no shared storage reaches safetensors);
- ``etree_rank{r}_optim.pt``: the devices' optimiser ``state_dict``s (loaded back with
  ``torch.load(weights_only=True)``);
- ``etree_rank{r}.json``: the averager's round/byte counters, the local device ids and any
  ``extra`` JSON state (e.g. the recipe's history);

and a load pre-hook that restores them in place (``copy_``), so resuming continues the exact
same run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["load_device_states", "register_checkpoint_hooks", "save_device_states"]


def _paths(directory: str, rank: int) -> tuple[str, str, str]:
    base = os.path.join(directory, f"etree_rank{rank}")
    return base + ".safetensors", base + "_optim.pt", base + ".json"


def save_device_states(
    directory: str,
    averager: Any,
    optimizers: Sequence[torch.optim.Optimizer] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write this rank's device models, optimiser states and averager counters."""
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    weights, optim, meta = _paths(directory, averager.rank)
    tensors: dict[str, torch.Tensor] = {}
    for slot, d in enumerate(averager.local_devices):
        for name, t in averager.models[slot].state_dict().items():
            tensors[f"device{d}.{name}"] = t.detach().clone().contiguous()
    save_file(tensors, weights)
    if optimizers is not None:
        torch.save([o.state_dict() for o in optimizers], optim)
    with open(meta, "w") as f:
        json.dump({"local_devices": list(averager.local_devices),
                   "num_devices": averager.num_devices,
                   "averager": averager.state_dict(), "extra": extra or {}}, f)


def load_device_states(
    directory: str,
    averager: Any,
    optimizers: Sequence[torch.optim.Optimizer] | None = None,
) -> dict[str, Any]:
    """Restore what :func:`save_device_states` wrote; returns the ``extra`` state."""
    from safetensors.torch import load_file

    weights, optim, meta = _paths(directory, averager.rank)
    if not os.path.exists(meta):
        raise FileNotFoundError(
            f"no E-Tree state for rank {averager.rank} in {directory!r} (expected {meta})")
    with open(meta) as f:
        info = json.load(f)
    if info["local_devices"] != list(averager.local_devices):
        raise ValueError(
            f"checkpoint rank {averager.rank} holds devices {info['local_devices']}, this run "
            f"places {list(averager.local_devices)} there: resume with the same layout")
    tensors = load_file(weights)
    for slot, d in enumerate(averager.local_devices):
        prefix = f"device{d}."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        model: nn.Module = averager.models[slot]
        own = model.state_dict()
        if set(sd) != set(own):
            raise ValueError(f"checkpoint device {d} has keys that do not match the model")
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(sd[k])
    if optimizers is not None:
        if not os.path.exists(optim):
            raise FileNotFoundError(f"optimizer states missing: {optim}")
        states = torch.load(optim, weights_only=True)
        for o, s in zip(optimizers, states):
            o.load_state_dict(s)
    averager.load_state_dict(info["averager"])
    return info.get("extra", {})


def register_checkpoint_hooks(
    accelerator: Any,
    averager: Any,
    optimizers: Sequence[torch.optim.Optimizer] | None = None,
    extra_state: Callable[[], dict[str, Any]] | None = None,
    on_load: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Any, Any]:
    """Register per-rank save/load pre-hooks on ``accelerator``; returns the two handles.

    ``extra_state()`` is called at save time for JSON state to store; ``on_load(extra)`` receives
    it back at load time.
    """

    def save_hook(models: list, weights: list, output_dir: str) -> None:
        save_device_states(output_dir, averager, optimizers,
                           extra_state() if extra_state is not None else None)

    def load_hook(models: list, input_dir: str) -> None:
        extra = load_device_states(input_dir, averager, optimizers)
        if on_load is not None:
            on_load(extra)

    return (accelerator.register_save_state_pre_hook(save_hook),
            accelerator.register_load_state_pre_hook(load_hook))
