"""FSDP2 (``torch.distributed.fsdp.fully_shard``) on CPU/gloo: 2 ranks train like 1 process.

``python tests/test_fsdp2_cpu.py <dir>`` runs in one process per rank (``RANK``/``WORLD_SIZE``/
``MASTER_ADDR``/``MASTER_PORT``, as in ``test_etree_multiprocess.py``). Each rank builds the tiny
OneRec-V2 and the tiny Keye-VL (language model path, text-only batch) from the same seed, keeps an
unsharded copy trained in-process on the WHOLE global batch (the 1-process reference: no collective
touches it), applies ``fully_shard`` per decoder block and to the root of the other copy, trains it
on its half of the batch and writes losses, shard facts and the gathered full parameters to
``rank{r}.json`` for the parent to compare.

Why the split is exact up to float rounding: both losses are means over users (OneRec-V2 ``L_Gen``)
or tokens (Keye, no padding) with equal counts per rank, and FSDP2 averages gradients over the 2
ranks (reduce-scatter, divide by world size), so the sharded gradient is the full-batch gradient
summed in a different order. Tolerance: atol 1e-5 (float32 parameters of size ~0.1-1, 3 SGD steps;
observed differences are ~1e-7); a missing reduction or a wrong shard would differ by >1e-3.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
WORLD = 2
STEPS = 3
ATOL = 1e-5
pytestmark = pytest.mark.multiprocess


# ------------------------------------------------------------------------------ rank side
def _train(model, sharded, batches, steps):
    """Run ``steps`` SGD steps on ``batches[i]``; return losses (all-reduced mean when sharded)."""
    import torch
    import torch.distributed as dist

    # SGD, not Adam: the update is linear in the gradient, so a wrong gradient scale shows too
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for i in range(steps):
        loss = model(**batches[i]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = loss.detach().clone()
        if sharded:
            dist.all_reduce(value)
            value /= dist.get_world_size()
        losses.append(float(value))
    return losses


def _full_params(model):
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        t = p.full_tensor() if isinstance(p, DTensor) else p
        out[name] = t.detach().reshape(-1).tolist()
    return out


def _shard_facts(model, blocks):
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, Shard

    params = dict(model.named_parameters())
    local = sum(p.to_local().numel() for p in params.values() if isinstance(p, DTensor))
    return {
        "all_dtensor": all(isinstance(p, DTensor) for p in params.values()),
        "shard0_over_world": all(
            p.placements == (Shard(0),) and p.device_mesh.size() == dist.get_world_size()
            for p in params.values() if isinstance(p, DTensor)
        ),
        "local_numel": local,
        "full_numel": sum(p.numel() for p in params.values()),
        "num_blocks": len(blocks),
    }


def _run_case(name, model, blocks, batches_full, batches_local):
    from torch.distributed.fsdp import fully_shard

    ref = copy.deepcopy(model)
    ref_losses = _train(ref, False, batches_full, STEPS)
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    facts = _shard_facts(model, blocks)
    losses = _train(model, True, batches_local, STEPS)
    return {
        "facts": facts, "losses": losses, "ref_losses": ref_losses,
        "params": _full_params(model), "ref_params": _full_params(ref),
    }


def _rank_main(out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(HERE.parent))
    from onerec_testkit import make_batch, v2_config

    from kwaiformers.models.keye_vl.tiny_keye_vl import build_tiny_keye_vl
    from kwaiformers.models.onerec_v2.modeling_onerec_v2 import OneRecV2ForGenerativeRecommendation

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    result = {}

    # OneRec-V2: global batch of 8 users, 4 per rank
    torch.manual_seed(0)
    model = OneRecV2ForGenerativeRecommendation(v2_config()).train()
    full = [make_batch(batch_size=8, seed=10 + i) for i in range(STEPS)]
    local = [{k: v.chunk(world)[rank] for k, v in b.items()} for b in full]
    result["onerec_v2"] = _run_case("onerec_v2", model, list(model.layers), full, local)

    # Keye-VL language model: text-only, no padding, labels = input_ids (equal token counts per rank)
    model, _ = build_tiny_keye_vl(seed=0)
    model.train()
    g = torch.Generator().manual_seed(1)
    vocab = model.config.text_config.vocab_size
    full = []
    for _ in range(STEPS):
        ids = torch.randint(20, vocab, (4, 12), generator=g)
        full.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    local = [{k: v.chunk(world)[rank] for k, v in b.items()} for b in full]
    layers = list(model.get_decoder().layers)
    result["keye_lm"] = _run_case("keye_lm", model, layers, full, local)

    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


# ------------------------------------------------------------------------------ test side
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fully_shard_two_gloo_ranks_match_one_process(tmp_path):
    import numpy as np

    port = _free_port()
    procs = []
    for r in range(WORLD):
        env = dict(os.environ)
        env.update(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   PYTHONPATH=str(ROOT / "src"))
        procs.append(subprocess.Popen([sys.executable, str(HERE), str(tmp_path)], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 150.0  # hang guard; a run takes ~10-20 s
    try:
        for p in procs:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert p.returncode == 0, err[-3000:]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("FSDP2 ranks hung")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for case in ("onerec_v2", "keye_lm"):
        r0, r1 = ranks[0][case], ranks[1][case]
        for r in (r0, r1):
            f = r["facts"]
            assert f["all_dtensor"] and f["shard0_over_world"], (case, f)
            assert f["num_blocks"] >= 2
            # each rank holds about half of every parameter (dim-0 shards, padded to even size)
            assert f["local_numel"] < 0.6 * f["full_numel"], (case, f)
        assert r0["facts"]["local_numel"] + r1["facts"]["local_numel"] == r0["facts"]["full_numel"]
        np.testing.assert_allclose(r0["losses"], r0["ref_losses"], atol=ATOL, err_msg=case)
        assert len(set(r0["losses"])) == STEPS, (case, r0["losses"])  # steps really update the model
        for name, ref in r0["ref_params"].items():
            # both ranks gather the same full parameters, equal to the 1-process run
            np.testing.assert_allclose(r0["params"][name], ref, atol=ATOL, err_msg=f"{case} {name}")
            np.testing.assert_allclose(r1["params"][name], ref, atol=ATOL, err_msg=f"{case} {name}")


if __name__ == "__main__":
    _rank_main(sys.argv[1])
