"""``ETreeCallback``: E-Tree / FedAvg / Gossip averaging for ``transformers.Trainer`` users.

Each rank is one device. The Trainer wraps the model in DDP, which would all-reduce gradients
every step (making every device identical); at ``on_train_begin`` the callback registers torch's
no-op DDP communication hook (``debugging_hooks.noop_hook``), so each rank trains locally, and
``on_step_end`` (after each optimiser step, i.e. after gradient accumulation) calls
``averager.step()``, which averages over the tree at the scheduled steps.

Buffers: outside ``no_sync`` DDP broadcasts every buffer from rank 0 before each forward
(``broadcast_buffers``, on by default), which would overwrite each device's own BatchNorm running
statistics with rank 0's; the callback turns it off on the wrapped model (and refuses an explicit
``TrainingArguments.ddp_broadcast_buffers=True``). The averager averages floating buffers at its
aggregations instead (``include_buffers=True``).

Sharded training (DeepSpeed, FSDP, XLA) is refused with a ``ValueError``, as ``accelerate``'s
``LocalSGD`` does (:func:`~kwaiformers.federated.averagers.check_not_sharded`).

Build the averager on the *unwrapped* model (``trainer.model``) before ``trainer.train()``::

    averager = ETreeAverager(trainer.model, tree, n_samples=[len(local_dataset)])
    trainer.add_callback(ETreeCallback(averager, trainer))

Data: every rank is a device with its *own* ``train_dataset``. By default (``rank_local_data=
True``) the callback makes the trainer's train data loader rank-local
(:func:`make_train_dataloader_rank_local`): Trainer normally lets Accelerate shard the dataset it
is given across ranks, so each rank would see only a ``1/world_size`` slice of its own data per
epoch. Since the averager's collectives must be called on the same steps by every rank, the
callback checks at ``on_train_begin`` that all ranks will run the same number of optimiser steps
and raises a ``ValueError`` otherwise (local datasets of different sizes: set
``TrainingArguments.max_steps``).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

__all__ = ["ETreeCallback", "make_train_dataloader_rank_local"]


def make_train_dataloader_rank_local(trainer: Any) -> Any:
    """Make ``trainer.get_train_dataloader()`` iterate over the whole rank-local ``train_dataset``.

    Trainer builds its train loader with ``accelerator.prepare``, which in a multi-process run
    shards the batches across ranks (right for data parallelism over one dataset, wrong when each
    rank is an E-Tree device with its own data). The patched method builds the same loader
    (Trainer's collator, column removal, sampler and worker settings) but prepares it for a single
    process: every rank iterates over all of its own examples, batches still moved to the device.
    Single-process runs are unchanged. Returns ``trainer``.
    """
    if getattr(trainer, "_kwf_rank_local_data", False):
        return trainer
    original = trainer.get_train_dataloader

    def get_train_dataloader():
        acc = trainer.accelerator
        if acc.num_processes <= 1:
            return original()
        from accelerate.data_loader import prepare_data_loader

        def prepare_unsharded(data_loader, device_placement=None, slice_fn_for_dispatch=None):
            prepared = prepare_data_loader(
                data_loader, acc.device, num_processes=1, process_index=0,
                put_on_device=acc.device_placement if device_placement is None else device_placement,
                rng_types=[],  # no cross-rank RNG broadcast: each rank shuffles its own data
                non_blocking=acc.non_blocking)
            acc._dataloaders.append(prepared)
            return prepared

        acc.prepare_data_loader = prepare_unsharded
        try:
            return original()
        finally:
            del acc.prepare_data_loader  # back to the class method

    trainer.get_train_dataloader = get_train_dataloader
    trainer._kwf_rank_local_data = True
    return trainer


def _check_broadcast_buffers_arg(args: Any) -> None:
    if getattr(args, "ddp_broadcast_buffers", None) is True:
        raise ValueError(
            "ETreeCallback: TrainingArguments.ddp_broadcast_buffers=True makes DDP copy rank 0's "
            "buffers (BatchNorm statistics) onto every device before each forward; leave it "
            "unset (None) or set it to False (E-Tree averages buffers at its aggregations)")


class ETreeCallback(TrainerCallback):
    """Drive an averager from ``Trainer`` (see the module docstring).

    Args:
        averager: an :class:`~kwaiformers.federated.averagers.ETreeAverager` (or any baseline).
        trainer: the Trainer, to find the DDP-wrapped model (``trainer.model_wrapped``).
        final_sync: run the averager's final aggregation at ``on_train_end``.
        rank_local_data: make the trainer's train loader iterate over each rank's whole dataset
            (:func:`make_train_dataloader_rank_local`; needs ``trainer``). ``False`` keeps
            Trainer's sharding across ranks.
    """

    def __init__(self, averager: Any, trainer: Any = None, final_sync: bool = True,
                 rank_local_data: bool = True) -> None:
        from .averagers import check_not_sharded

        self.averager = averager
        self.trainer = trainer
        self.final_sync = final_sync
        self.hooked = False
        self.buffers_broadcast_disabled = False
        if trainer is not None:
            check_not_sharded(trainer=trainer, what="ETreeCallback")
            _check_broadcast_buffers_arg(getattr(trainer, "args", None))
        if rank_local_data and trainer is not None:
            make_train_dataloader_rank_local(trainer)

    def on_train_begin(self, args, state, control, **kwargs):
        from torch.distributed.algorithms.ddp_comm_hooks.debugging_hooks import noop_hook
        from torch.nn.parallel import DistributedDataParallel

        from .averagers import check_not_sharded

        _check_broadcast_buffers_arg(args)
        wrapped = getattr(self.trainer, "model_wrapped", None) if self.trainer else None
        if wrapped is None:
            wrapped = kwargs.get("model")
        check_not_sharded(trainer=self.trainer, models=wrapped, what="ETreeCallback")
        if isinstance(wrapped, DistributedDataParallel):
            if not self.hooked:
                wrapped.register_comm_hook(None, noop_hook)
                self.hooked = True
            # rank 0's buffers must not overwrite every device's own (BatchNorm statistics)
            wrapped.broadcast_buffers = False
            self.buffers_broadcast_disabled = True
        self._check_same_step_count(state.max_steps)
        return control

    @staticmethod
    def _check_same_step_count(max_steps: int) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        counts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(counts, int(max_steps))
        if len(set(counts)) > 1:
            raise ValueError(
                f"ETreeCallback: the ranks would run different numbers of optimiser steps "
                f"{counts} (rank-local datasets of different sizes), so the averaging rounds "
                f"would not line up. Set TrainingArguments.max_steps to the same value on "
                f"every rank.")

    def on_step_end(self, args, state, control, **kwargs):
        self.averager.step()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        # skipped only when the last step ran a *top-level* aggregation (the averager tracks it)
        if self.final_sync:
            self.averager.final_aggregation()
        return control
