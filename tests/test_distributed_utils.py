"""``kwaiformers.utils.distributed`` in one process: the wrapper call, the launch and FSDP checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kwaiformers.utils.distributed import (
    call_through_wrapper,
    check_launch_matches,
    check_sharding_supported,
)

ROOT = Path(__file__).resolve().parents[1]


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x).sum()

    def score(self, x):  # a method other than forward, as OneRec's sid_log_probs
        return self.lin(x).pow(2).sum()


_DDP_SCRIPT = """
import torch, torch.distributed as dist
from kwaiformers.utils.distributed import call_through_wrapper

from test_distributed_utils import _Model  # this file, on the child's path

dist.init_process_group("gloo", rank=0, world_size=1)  # env:// (TCP store on 127.0.0.1)
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
print("OK")
"""


def test_call_through_ddp_runs_inside_forward_and_restores_it():
    # A process group lives in a child process with a hard timeout: a gloo/store hang in C++
    # cannot be interrupted inside the pytest process (it once stalled CI for 90 minutes).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0",
               WORLD_SIZE="1", LOCAL_RANK="0", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"),
                                           os.environ.get("PYTHONPATH", "")]))
    try:
        out = subprocess.run([sys.executable, "-c", _DDP_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("the 1-rank gloo process group did not finish within 180 s (hang)")
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]
    # the plain-module path needs no process group
    model = _Model()
    x = torch.randn(4, 3)
    assert call_through_wrapper(model, lambda m: m.score(x)) == model.score(x)


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
