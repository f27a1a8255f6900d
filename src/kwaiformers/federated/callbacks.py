"""``ETreeCallback``: E-Tree / FedAvg / Gossip averaging for ``transformers.Trainer`` users.

Each rank is one device. The Trainer wraps the model in DDP, which would all-reduce gradients
every step (making every device identical); at ``on_train_begin`` the callback registers torch's
no-op DDP communication hook (``debugging_hooks.noop_hook``), so each rank trains locally, and
``on_step_end`` (after each optimiser step, i.e. after gradient accumulation) calls
``averager.step()``, which averages over the tree at the scheduled steps.

Build the averager on the *unwrapped* model (``trainer.model``) before ``trainer.train()``::

    averager = ETreeAverager(trainer.model, tree, n_samples=[len(local_dataset)])
    trainer.add_callback(ETreeCallback(averager, trainer))

Note: the Trainer's data loader still shards its dataset across ranks; give each rank its own
dataset (it sees a ``1/world_size`` slice of it per epoch).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

__all__ = ["ETreeCallback"]


class ETreeCallback(TrainerCallback):
    """Drive an averager from ``Trainer`` (see the module docstring).

    Args:
        averager: an :class:`~kwaiformers.federated.averagers.ETreeAverager` (or any baseline).
        trainer: the Trainer, to find the DDP-wrapped model (``trainer.model_wrapped``).
        final_sync: run the averager's final aggregation at ``on_train_end``.
    """

    def __init__(self, averager: Any, trainer: Any = None, final_sync: bool = True) -> None:
        self.averager = averager
        self.trainer = trainer
        self.final_sync = final_sync
        self.hooked = False

    def on_train_begin(self, args, state, control, **kwargs):
        from torch.distributed.algorithms.ddp_comm_hooks.debugging_hooks import noop_hook
        from torch.nn.parallel import DistributedDataParallel

        wrapped = getattr(self.trainer, "model_wrapped", None) if self.trainer else None
        if wrapped is None:
            wrapped = kwargs.get("model")
        if isinstance(wrapped, DistributedDataParallel) and not self.hooked:
            wrapped.register_comm_hook(None, noop_hook)
            self.hooked = True
        return control

    def on_step_end(self, args, state, control, **kwargs):
        self.averager.step()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.final_sync:
            self.averager.final_aggregation()
        return control
