"""``kwaiformers.utils.distributed`` in one process: the wrapper call, the launch and FSDP checks."""

from __future__ import annotations

import pytest
import torch

from kwaiformers.utils.distributed import (
    call_through_wrapper,
    check_launch_matches,
    check_sharding_supported,
)


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x).sum()

    def score(self, x):  # a method other than forward, as OneRec's sid_log_probs
        return self.lin(x).pow(2).sum()


def test_call_through_ddp_runs_inside_forward_and_restores_it(tmp_path):
    import torch.distributed as dist

    if dist.is_initialized():  # pragma: no cover - another test left a group behind
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = _Model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        x = torch.randn(4, 3)
        calls = []

        def fn(inner):
            calls.append(inner)
            return inner(x) + inner.score(x)  # may call the real forward itself (one shot swap)

        out = call_through_wrapper(ddp, fn)
        assert calls == [model] and "forward" not in model.__dict__  # restored
        assert torch.allclose(out, model(x) + model.score(x))
        out.backward()
        assert model.lin.weight.grad is not None
        assert call_through_wrapper(model, lambda m: m.score(x)) == model.score(x)  # plain module
    finally:
        dist.destroy_process_group()


def test_launch_and_fsdp_checks(monkeypatch):
    from transformers import TrainingArguments

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="WORLD_SIZE=2.*use_cpu: true"):
        check_launch_matches(1, "the trainer")
    check_launch_matches(2)
    monkeypatch.delenv("WORLD_SIZE")
    check_launch_matches(1)
    args = TrainingArguments(output_dir="unused", use_cpu=True, fsdp="full_shard", report_to=[],
                             fsdp_config={"version": 2})
    with pytest.raises(ValueError, match="training.fsdp is set but this run is on CPU"):
        check_sharding_supported(args)
    check_sharding_supported(TrainingArguments(output_dir="unused", use_cpu=True, report_to=[]))
