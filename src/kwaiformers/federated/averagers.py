"""Tree-structured model averaging in the style of :class:`accelerate.local_sgd.LocalSGD`.

:class:`ETreeAverager` runs E-Tree's bottom-up aggregation (Yang et al. 2021, Sec. III; EdgeTB
``el_peer.py``'s ``round % sync`` schedule) over ``torch.distributed`` process groups; FedAvg
(a one-level tree), Gossip (seeded random matching), Individual and Grouped run in the same
engine so comparisons are fair. Several *virtual devices* can live in one process: pass a list
of models (one per local slot, see :attr:`TreeSpec.placement`).

Usage (one device per rank; call ``step()`` after every ``optimizer.step()``)::

    with ETreeAverager(model, tree, n_samples=sizes, accelerator=accelerator) as averager:
        for batch in loader:
            loss = model(**batch).loss; loss.backward(); optimizer.step(); optimizer.zero_grad()
            averager.step()

Details:

- Process groups: one per group of every level (ranks holding any of its devices), created in the
  same order on every rank (``dist.new_group`` is collective); single-rank groups need none.
- At step ``s`` the highest level ``l`` whose cumulative period divides ``s`` fires; levels
  ``0..l`` aggregate bottom-up (per-node periods: exactly the groups whose step period divides
  ``s`` aggregate, :meth:`TreeSpec.groups_to_fire`; each device takes the result of its highest
  firing group): each rank sums ``w * theta`` of its contributions (devices for
  level 0; child groups whose host lives on the rank above it), ``reduce`` to the host's rank,
  the host divides, ``broadcast``; the level-``l`` result is then written to every device below
  (push-down). Weights: data size (default; a parent weights a child by the data under it, as in
  HierFAVG) or uniform (``weighted=False``: EdgeTB's plain mean at every level).
- Parameters and floating-point buffers (``include_buffers``) are averaged in float64 and written
  back with ``Tensor.copy_`` (never by re-pointing ``.data`` at a flat buffer: shared storage
  makes safetensors drop tensors on save).
- Public nodes (Algorithm 2) contribute their model to every cluster they belong to (weighted:
  with ``1/m`` of their data size each when in ``m`` clusters, so the root average counts their
  data once) and, after a cluster round, take the weighted mean of their clusters' models.
- Optimiser state policy at aggregation: ``"keep"``, ``"reset"`` (clear the state) or
  ``"average"`` (floating state tensors are averaged with the parameters).
- Bytes are counted *logically*, per tree link: each child (device or child-group host) that is
  not the group's host sends its model up and receives the result down (2 x model bytes).
- Exit (``__exit__`` / :meth:`ETreeAverager.final_aggregation`): a full-tree aggregation unless
  the last step already ran one *at the top level* (a leaf-only or cluster-only round at the last
  step does not count: devices would end on different models).
- Sharded training is refused (:func:`check_not_sharded`), as ``accelerate``'s ``LocalSGD``
  does: DeepSpeed, FSDP and XLA hold parameter shards, averaging them would be silently wrong.
- Faults: every collective runs under the process-group timeout; a failure raises
  :class:`DeviceFailure` naming the level, group and step (the run stops with a clear error and
  can resume from the last checkpoint; see :mod:`kwaiformers.federated.checkpoint`).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .tree import TreeSpec, block_placement

__all__ = [
    "DeviceFailure",
    "ETreeAverager",
    "FedAvgAverager",
    "GossipAverager",
    "GroupedAverager",
    "IndividualTraining",
    "check_not_sharded",
    "flatten_model",
    "load_flat",
]

OPTIMIZER_POLICIES = ("keep", "reset", "average")


class DeviceFailure(RuntimeError):
    """A device (rank) died or timed out during an aggregation round."""


# ---------------------------------------------------------------------------- sharding guard
#: Accelerate distributed types with whole (unsharded) parameters on every rank (as LocalSGD).
UNSHARDED_TYPES = ("NO", "MULTI_CPU", "MULTI_GPU", "MULTI_XPU", "MULTI_MLU", "MULTI_HPU",
                   "MULTI_SDAA", "MULTI_MUSA", "MULTI_NPU", "MULTI_NEURON")


def _sharding_of(model: Any) -> str | None:
    """Name of the sharding wrapper of ``model`` (FSDP, FSDP2, DeepSpeed, DTensor, XLA) or None."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
        if isinstance(model, FullyShardedDataParallel):
            return "FSDP"
    except ImportError:  # pragma: no cover
        pass
    try:
        from torch.distributed.fsdp import FSDPModule
        if isinstance(model, nn.Module) and any(isinstance(m, FSDPModule)
                                                for m in model.modules()):
            return "FSDP2 (fully_shard)"
    except ImportError:  # pragma: no cover
        pass
    if type(model).__name__ == "DeepSpeedEngine":
        return "DeepSpeed"
    if isinstance(model, nn.Module):
        try:
            from torch.distributed.tensor import DTensor
        except ImportError:  # pragma: no cover
            DTensor = ()  # noqa: N806
        for p in model.parameters():
            if DTensor and isinstance(p, DTensor):
                return "DTensor (tensor/sequence parallel or FSDP2)"
            if p.device.type == "xla":
                return "XLA"
    return None


def check_not_sharded(accelerator: Any = None, models: Any = None, trainer: Any = None,
                      what: str = "E-Tree averaging") -> None:
    """Raise ``ValueError`` for sharded or XLA training (like ``accelerate``'s ``LocalSGD``).

    Averaging rank-local *shards* of parameters (DeepSpeed ZeRO, FSDP, DTensor) as if they were
    whole models would be silently wrong, and XLA is not supported by the gloo/NCCL collectives
    used here. Checks ``accelerator.distributed_type``, a Trainer's DeepSpeed/FSDP flags and the
    model wrappers/parameters.
    """
    found: list[str] = []
    if trainer is not None:
        if getattr(trainer, "is_deepspeed_enabled", False):
            found.append("DeepSpeed (Trainer is_deepspeed_enabled)")
        if getattr(trainer, "is_fsdp_enabled", False):
            found.append("FSDP (Trainer is_fsdp_enabled)")
        if accelerator is None:
            accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None:
        dtype = getattr(accelerator, "distributed_type", None)
        name = getattr(dtype, "name", None) or (str(dtype) if dtype is not None else None)
        if name is not None and name not in UNSHARDED_TYPES:
            found.append(f"accelerator.distributed_type={name}")
    if models is not None:
        for m in [models] if isinstance(models, nn.Module) else list(models):
            kind = _sharding_of(m)
            if kind:
                found.append(f"model wrapped by {kind}")
    if found:
        raise ValueError(
            f"{what} needs whole (unsharded) models on every rank, found "
            f"{', '.join(dict.fromkeys(found))}. DeepSpeed, FSDP and XLA are not supported "
            "(averaging parameter shards would be silently wrong); train with plain DDP "
            "(MULTI_CPU/MULTI_GPU) or a single process per device, as with accelerate's LocalSGD."
        )


# ---------------------------------------------------------------------------- flat vectors
def _model_tensors(model: nn.Module, include_buffers: bool) -> list[torch.Tensor]:
    out = [p for p in model.parameters()]
    if include_buffers:
        out += [b for b in model.buffers() if torch.is_floating_point(b)]
    return out


def _optim_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                raise ValueError(
                    "optimizer_state='average' needs state for every parameter: call step() "
                    "after optimizer.step() has run at least once"
                )
            for key in sorted(state):
                v = state[key]
                if torch.is_tensor(v) and torch.is_floating_point(v):
                    out.append(v)
    return out


def flatten_model(model: nn.Module, include_buffers: bool = True) -> torch.Tensor:
    """Parameters (+ floating buffers) as one float64 vector (a copy)."""
    ts = _model_tensors(model, include_buffers)
    return torch.cat([t.detach().reshape(-1).to(torch.float64) for t in ts])


def _write(tensors: Sequence[torch.Tensor], vec: torch.Tensor) -> None:
    off = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(vec[off : off + n].view(t.shape).to(t.dtype))
            off += n
    if off != vec.numel():
        raise ValueError(f"flat vector has {vec.numel()} values, the model needs {off}")


def load_flat(model: nn.Module, vec: torch.Tensor, include_buffers: bool = True) -> None:
    """Write a vector from :func:`flatten_model` back into ``model`` in place (``copy_``)."""
    _write(_model_tensors(model, include_buffers), vec)


def _as_models(models: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    if isinstance(models, nn.Module):
        return [models]
    models = list(models)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise TypeError("models must be an nn.Module or a non-empty sequence of nn.Module")
    return models


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


class _Base:
    """Shared plumbing: placement, weights, step counting, context manager, bytes."""

    def __init__(
        self,
        models: nn.Module | Sequence[nn.Module],
        num_devices: int,
        *,
        placement: Sequence[tuple[int, int]] | None = None,
        n_samples: Sequence[float] | None = None,
        include_buffers: bool = True,
        optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
        optimizer_state: str = "keep",
        accelerator: Any = None,
        timeout: float | datetime.timedelta | None = None,
        enabled: bool = True,
    ) -> None:
        self.wrapped = _as_models(models)
        check_not_sharded(accelerator, self.wrapped, what=type(self).__name__)
        self.models = [_unwrap(m) for m in self.wrapped]
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.num_devices = int(num_devices)
        self.placement = tuple(placement) if placement is not None else block_placement(
            self.num_devices, self.world_size)
        ranks_used = 1 + max(r for r, _ in self.placement)
        if ranks_used != self.world_size:
            raise ValueError(
                f"placement uses {ranks_used} ranks but world_size is {self.world_size}; launch "
                "with torchrun --nproc_per_node N or accelerate launch --multi_gpu --num_processes "
                "N (accelerate launch --cpu --num_processes N starts ONE process)"
            )
        self.local_devices = sorted(
            (s, d) for d, (r, s) in enumerate(self.placement) if r == self.rank)
        self.local_devices = [d for _, d in self.local_devices]
        if len(self.local_devices) != len(self.models):
            raise ValueError(
                f"rank {self.rank} holds {len(self.local_devices)} devices of the placement but "
                f"got {len(self.models)} models"
            )
        self.slot_of = {d: i for i, d in enumerate(self.local_devices)}
        self.rank_of = [r for r, _ in self.placement]
        self.include_buffers = include_buffers
        if optimizers is None:
            self.optimizers: list[torch.optim.Optimizer] | None = None
        else:
            opts = [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else list(
                optimizers)
            if len(opts) != len(self.models):
                raise ValueError("optimizers must match models one to one")
            self.optimizers = opts
        if optimizer_state not in OPTIMIZER_POLICIES:
            raise ValueError(
                f"optimizer_state must be one of {OPTIMIZER_POLICIES}, got {optimizer_state!r}")
        if optimizer_state != "keep" and self.optimizers is None:
            raise ValueError(f"optimizer_state={optimizer_state!r} needs optimizers=")
        self.optimizer_state = optimizer_state
        self.accelerator = accelerator
        if isinstance(timeout, (int, float)):
            timeout = datetime.timedelta(seconds=float(timeout))
        self.timeout = timeout
        self.enabled = enabled
        self.weights = self._resolve_weights(n_samples)
        self.num_steps = 0
        self._stack: contextlib.ExitStack | None = None
        self.model_bytes = sum(
            t.numel() * t.element_size() for t in _model_tensors(self.models[0], include_buffers))

    # -- weights
    def _resolve_weights(self, n_samples: Sequence[float] | None) -> np.ndarray:
        if n_samples is None:
            return np.ones(self.num_devices)
        w = np.asarray([float(x) for x in n_samples])
        if w.size == self.num_devices:
            pass
        elif w.size == len(self.models):
            if self.distributed and self.world_size > 1:
                gathered: list[Any] = [None] * self.world_size
                dist.all_gather_object(gathered, (self.local_devices, w.tolist()))
                full = np.zeros(self.num_devices)
                for devs, ws in gathered:
                    full[devs] = ws
                w = full
            elif self.num_devices != len(self.models):
                raise ValueError("n_samples must have one entry per device")
        else:
            raise ValueError(
                f"n_samples must have num_devices ({self.num_devices}) or local-device "
                f"({len(self.models)}) entries, got {w.size}")
        if np.any(w <= 0):
            raise ValueError("n_samples must be > 0 for every device")
        return w

    # -- vectors
    def _tensors(self, slot: int) -> list[torch.Tensor]:
        ts = _model_tensors(self.models[slot], self.include_buffers)
        if self.optimizer_state == "average":
            ts = ts + _optim_tensors(self.optimizers[slot])
        return ts

    def _vector(self, slot: int) -> torch.Tensor:
        return torch.cat([t.detach().reshape(-1).to(torch.float64) for t in self._tensors(slot)])

    def _write_back(self, slot: int, vec: torch.Tensor) -> None:
        _write(self._tensors(slot), vec)
        if self.optimizer_state == "reset":
            self.optimizers[slot].state.clear()

    def _new_group(self, ranks: Sequence[int]):
        kwargs = {} if self.timeout is None else {"timeout": self.timeout}
        return dist.new_group(sorted(ranks), **kwargs)

    def _collective(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, dist.DistError) as e:  # gloo: connection closed / timed out
            raise DeviceFailure(
                f"rank {self.rank}: {what} failed at step {self.num_steps} ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}). A device died or timed out; the "
                "run stops here. Resume from the last checkpoint (accelerator.load_state / "
                "resume_from in the etree recipe)."
            ) from e

    # -- LocalSGD-style API
    def __enter__(self):
        self._stack = contextlib.ExitStack()
        for m in self.wrapped:
            if hasattr(m, "no_sync"):
                self._stack.enter_context(m.no_sync())
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.enabled:
                self.final_aggregation()
        finally:
            if self._stack is not None:
                self._stack.close()
                self._stack = None

    def step(self) -> None:
        """Call after every optimiser step (of every local device)."""
        if self.accelerator is not None and not getattr(self.accelerator, "sync_gradients", True):
            return
        self.num_steps += 1
        if self.enabled:
            self._on_step(self.num_steps)

    def _on_step(self, step: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def final_aggregation(self) -> None:
        """Run on ``__exit__`` (override; default: nothing)."""

    # -- consensus (world-wide weighted mean, not written back)
    def consensus_vector(self, weighted: bool = True) -> torch.Tensor:
        """The data-weighted (or plain) mean of every device's parameters (+ buffers)."""
        w = self.weights if weighted else np.ones(self.num_devices)
        buf = None
        for slot, d in enumerate(self.local_devices):
            v = flatten_model(self.models[slot], self.include_buffers) * float(w[d])
            buf = v if buf is None else buf + v
        buf = torch.cat([buf, torch.tensor([sum(float(w[d]) for d in self.local_devices)],
                                           dtype=torch.float64)])
        if self.distributed and self.world_size > 1:
            self._collective("consensus all_reduce", dist.all_reduce, buf)
        return buf[:-1] / buf[-1]

    # -- counters (for accelerator.register_for_checkpointing)
    def state_dict(self) -> dict[str, Any]:
        return {"num_steps": self.num_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_steps = int(state["num_steps"])


class ETreeAverager(_Base):
    """E-Tree aggregation over a :class:`TreeSpec` (see the module docstring).

    Args:
        models: this rank's device model(s), one per local slot.
        tree: the aggregation tree; its placement (or the block placement) maps devices to ranks.
        n_samples: data size per device (all ``num_devices``, or this rank's devices).
        weighted: data-size weighting (default) or a plain mean per level.
        include_buffers: also average floating-point buffers (BatchNorm statistics).
        optimizers / optimizer_state: ``"keep"`` | ``"reset"`` | ``"average"``.
        accelerator: optional; steps count only when ``accelerator.sync_gradients``.
        timeout: per-collective timeout of the tree's process groups (seconds or timedelta).
        final_sync: run a full-tree aggregation on ``__exit__`` (like ``LocalSGD``) unless the
            last step ran a top-level aggregation.
    """

    def __init__(
        self,
        models: nn.Module | Sequence[nn.Module],
        tree: TreeSpec,
        *,
        n_samples: Sequence[float] | None = None,
        weighted: bool = True,
        include_buffers: bool = True,
        optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
        optimizer_state: str = "keep",
        accelerator: Any = None,
        timeout: float | datetime.timedelta | None = None,
        final_sync: bool = True,
        enabled: bool = True,
    ) -> None:
        if not isinstance(tree, TreeSpec):
            raise TypeError(f"tree must be a TreeSpec, got {type(tree).__name__}")
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        super().__init__(
            models, tree.num_devices, placement=tree.placement_for(world), n_samples=n_samples,
            include_buffers=include_buffers, optimizers=optimizers,
            optimizer_state=optimizer_state, accelerator=accelerator, timeout=timeout,
            enabled=enabled)
        self.tree = tree
        self.weighted = weighted
        self.final_sync = final_sync
        self.children = [None] + [tree.children(li) for li in range(1, len(tree.levels))]
        # one process group per group of every level, same order on every rank
        self.group_ranks: list[list[tuple[int, ...]]] = []
        self.groups: list[list[Any]] = []
        for level in tree.levels:
            ranks_l, groups_l = [], []
            for g in level:
                ranks = tuple(sorted({self.rank_of[m] for m in g.members}))
                ranks_l.append(ranks)
                groups_l.append(self._new_group(ranks) if self.distributed and len(ranks) > 1
                                else None)
            self.group_ranks.append(ranks_l)
            self.groups.append(groups_l)
        self.rounds_per_level = [0] * len(tree.levels)
        self.rounds_per_group = [[0] * len(level) for level in tree.levels]
        self.bytes_per_level = [0] * len(tree.levels)
        self._last_top_step = 0  # last step that ran a full top-level aggregation
        self._membership = [
            {d: [gi for gi, g in enumerate(level) if d in g.members] for d in self.local_devices}
            for level in tree.levels
        ]

    @property
    def top_level(self) -> int:
        return len(self.tree.levels) - 1

    def _on_step(self, step: int) -> None:
        fired = self.tree.groups_to_fire(step)
        if any(fired):
            self._aggregate(fired)

    def final_aggregation(self) -> None:
        """Full-tree aggregation, skipped only when the last step ran one at the top level."""
        if self.final_sync and self.num_steps > 0 and self._last_top_step != self.num_steps:
            self.aggregate(self.top_level)

    def aggregate(self, top: int) -> None:
        """Aggregate every group of levels ``0..top`` bottom-up; push the level-``top`` result down."""
        if not 0 <= top <= self.top_level:
            raise ValueError(f"aggregate: level must be in [0, {self.top_level}], got {top}")
        self._aggregate(tuple(tuple(range(len(level))) if li <= top else ()
                              for li, level in enumerate(self.tree.levels)))

    def _aggregate(self, fired: Sequence[Sequence[int]]) -> None:
        """Aggregate the groups ``fired[l]`` of every level bottom-up (a firing group's children
        fire too), then every local device takes the result of its highest firing group."""
        vecs = {d: self._vector(self.slot_of[d]) for d in self.local_devices}
        size = next(iter(vecs.values())).numel()
        prev: dict[int, tuple[torch.Tensor, float]] = {}
        results: list[dict[int, tuple[torch.Tensor, float]]] = []
        for li, level in enumerate(self.tree.levels):
            firing = set(fired[li])
            cur: dict[int, tuple[torch.Tensor, float]] = {}
            for gi, g in enumerate(level):
                if gi not in firing:
                    continue
                ranks = self.group_ranks[li][gi]
                if self.rank not in ranks:
                    continue
                buf = torch.zeros(size + 1, dtype=torch.float64)
                if li == 0:
                    for d in g.members:
                        if d in vecs:
                            # a public node's data is split over its clusters (unbiased root)
                            w = (float(self.weights[d]) / len(self._membership[0][d])
                                 if self.weighted else 1.0)
                            buf[:-1] += w * vecs[d]
                            buf[-1] += w
                else:
                    kids = self.children[li][gi]
                    for k in kids:
                        h = self.tree.levels[li - 1][k].host
                        if self.rank_of[h] == self.rank:
                            v, w = prev[k]
                            w = w if self.weighted else 1.0
                            buf[:-1] += w * v
                            buf[-1] += w
                pg = self.groups[li][gi]
                if pg is not None:
                    host_rank = self.rank_of[g.host]
                    what = f"aggregation at level {li}, group {gi} (ranks {list(ranks)})"
                    self._collective(what, dist.reduce, buf, dst=host_rank, group=pg)
                    self._collective(what, dist.broadcast, buf, src=host_rank, group=pg)
                cur[gi] = (buf[:-1] / buf[-1], float(buf[-1]))
            # logical bytes on this level's links (identical on every rank)
            for gi, g in enumerate(level):
                if gi not in firing:
                    continue
                hosts = g.members if li == 0 else [
                    self.tree.levels[li - 1][k].host for k in self.children[li][gi]]
                self.bytes_per_level[li] += 2 * self.model_bytes * sum(
                    1 for h in hosts if h != g.host)
                self.rounds_per_group[li][gi] += 1
            if firing:
                self.rounds_per_level[li] += 1
            results.append(cur)
            prev = cur
        # push down: every local device takes the result of its highest firing group(s)
        for d in self.local_devices:
            for li in range(self.top_level, -1, -1):
                gis = [gi for gi in self._membership[li][d] if gi in set(fired[li])]
                if gis:
                    break
            else:
                continue  # none of this device's groups fired
            res = results[li]
            if len(gis) == 1:
                vec = res[gis[0]][0]
            else:  # public node in several groups: weighted mean of their models
                tot = sum(res[gi][1] for gi in gis)
                vec = sum(res[gi][0] * res[gi][1] for gi in gis) / tot
            self._write_back(self.slot_of[d], vec)
        if len(fired[self.top_level]) == len(self.tree.levels[self.top_level]):
            self._last_top_step = self.num_steps

    def top_level_bytes(self) -> int:
        return self.bytes_per_level[-1]

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_steps": self.num_steps,
            "rounds_per_level": list(self.rounds_per_level),
            "bytes_per_level": list(self.bytes_per_level),
            "rounds_per_group": [list(r) for r in self.rounds_per_group],
            "last_top_step": self._last_top_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_steps = int(state["num_steps"])
        if len(state["rounds_per_level"]) != len(self.rounds_per_level):
            raise ValueError("state_dict is from a tree with a different number of levels")
        self.rounds_per_level = [int(x) for x in state["rounds_per_level"]]
        self.bytes_per_level = [int(x) for x in state["bytes_per_level"]]
        if "rounds_per_group" in state:
            self.rounds_per_group = [[int(x) for x in r] for r in state["rounds_per_group"]]
        # older checkpoints stored the last step of *any* aggregation, which cannot tell whether
        # the top level ran: 0 means the exit sync runs (harmless when the models already agree)
        self._last_top_step = int(state.get("last_top_step", 0))


class FedAvgAverager(ETreeAverager):
    """FedAvg (McMahan et al. 2017) as a one-level tree hosted on device ``host``."""

    def __init__(self, models, num_devices: int, period: int = 1, host: int = 0,
                 placement: Sequence[tuple[int, int]] | None = None, **kwargs: Any) -> None:
        tree = TreeSpec.fedavg(num_devices, period, host).with_placement(placement)
        super().__init__(models, tree, **kwargs)


class GroupedAverager(ETreeAverager):
    """The "Grouped" ablation (paper Table 3): clusters aggregate, the root never does."""

    def __init__(self, models, clusters: Sequence[Sequence[int]], centers: Sequence[int],
                 period: int = 1, num_devices: int | None = None,
                 placement: Sequence[tuple[int, int]] | None = None, **kwargs: Any) -> None:
        tree = TreeSpec.grouped(clusters, centers, period, num_devices=num_devices)
        super().__init__(models, tree.with_placement(placement), **kwargs)


class IndividualTraining(_Base):
    """No collaboration ("Individual Training" in Table 3): counts steps, never averages."""

    def __init__(self, models, num_devices: int, **kwargs: Any) -> None:
        super().__init__(models, num_devices, **kwargs)
        self.bytes_per_level = [0]
        self.rounds_per_level = [0]

    def _on_step(self, step: int) -> None:
        return None

    def top_level_bytes(self) -> int:
        return 0


class GossipAverager(_Base):
    """Synchronous gossip: every ``period`` steps a seeded random perfect matching of the devices,
    each pair replaces both models by their mean (Hegedus et al. 2019 merge step; the paper's
    asynchronous push-to-a-random-peer is approximated by this matching, documented choice).

    Every rank derives the same matching from ``(seed, round)``; pairs on different ranks
    exchange models with ``isend``/``irecv`` (one message per peer rank and round). With an odd
    number of devices one device sits out each round. ``weighted=True`` uses a data-weighted
    pairwise mean instead of the plain one.
    """

    def __init__(self, models, num_devices: int, *, period: int = 1, seed: int = 0,
                 weighted: bool = False, **kwargs: Any) -> None:
        super().__init__(models, num_devices, **kwargs)
        if not isinstance(period, int) or period < 1:
            raise ValueError(f"period must be an int >= 1, got {period!r}")
        self.period = period
        self.seed = int(seed)
        self.weighted = weighted
        self.rounds = 0
        self.bytes_per_level = [0]
        self.rounds_per_level = [0]

    def matching(self, round_index: int) -> list[int]:
        """``partner[d]`` for every device in round ``round_index`` (``-1``: sits out)."""
        perm = np.random.default_rng([self.seed, int(round_index)]).permutation(self.num_devices)
        partner = [-1] * self.num_devices
        for i in range(0, self.num_devices - 1, 2):
            a, b = int(perm[i]), int(perm[i + 1])
            partner[a], partner[b] = b, a
        return partner

    def _on_step(self, step: int) -> None:
        if step % self.period == 0:
            self.gossip_round()

    def gossip_round(self) -> None:
        partner = self.matching(self.rounds)
        vecs = {d: self._vector(self.slot_of[d]) for d in self.local_devices}
        remote: dict[int, torch.Tensor] = {}
        # group outgoing/incoming vectors by peer rank, ordered by device id
        peers: dict[int, list[tuple[int, int]]] = {}
        for d in self.local_devices:
            p = partner[d]
            if p >= 0 and self.rank_of[p] != self.rank:
                peers.setdefault(self.rank_of[p], []).append((d, p))
        size = next(iter(vecs.values())).numel()
        works, recvs = [], {}
        for q, pairs in sorted(peers.items()):
            pairs.sort(key=lambda t: t[1])  # peer sorts its outgoing by its own device id
            send = torch.cat([vecs[d] for d, _ in sorted(pairs)])
            recv = torch.empty(size * len(pairs), dtype=torch.float64)
            what = f"gossip exchange with rank {q}"
            works.append(self._collective(what, dist.isend, send, dst=q, tag=self.rounds % 32768))
            works.append(self._collective(what, dist.irecv, recv, src=q, tag=self.rounds % 32768))
            recvs[q] = (recv, pairs)
        for w in works:
            self._collective("gossip exchange", w.wait)
        for recv, pairs in recvs.values():
            for i, (_, p) in enumerate(pairs):
                remote[p] = recv[i * size : (i + 1) * size]
        n_pairs = sum(1 for d, p in enumerate(partner) if 0 <= d < p)
        for d in self.local_devices:
            p = partner[d]
            if p < 0:
                continue
            other = vecs[p] if p in vecs else remote[p]
            if self.weighted:
                wd, wp = float(self.weights[d]), float(self.weights[p])
                new = (wd * vecs[d] + wp * other) / (wd + wp)
            else:
                new = 0.5 * (vecs[d] + other)
            self._write_back(self.slot_of[d], new)
        self.bytes_per_level[0] += 2 * self.model_bytes * n_pairs
        self.rounds += 1
        self.rounds_per_level[0] += 1

    def top_level_bytes(self) -> int:
        return self.bytes_per_level[0]

    def state_dict(self) -> dict[str, Any]:
        return {"num_steps": self.num_steps, "rounds": self.rounds,
                "bytes": self.bytes_per_level[0]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_steps = int(state["num_steps"])
        self.rounds = int(state["rounds"])
        self.rounds_per_level = [self.rounds]
        self.bytes_per_level = [int(state["bytes"])]
