"""E-Tree multi-process tests: 2 gloo ranks on 127.0.0.1 (8 virtual devices), each launch < 60 s.

The scenarios below run as ``python tests/test_etree_multiprocess.py <scenario> <dir>`` in one
process per rank (``RANK``/``WORLD_SIZE``/``MASTER_ADDR=127.0.0.1``/free ``MASTER_PORT``: no
supervising launcher, so a dead rank must be detected by the survivors themselves); each rank
writes ``rank{r}.json`` and the test checks closed forms in the parent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
pytestmark = pytest.mark.multiprocess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
               LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONPATH=str(ROOT / "src"))
    return env


def _run_ranks(cmd: list[str], world: int, timeout: float = 150.0):
    # the generous hang limit only matters on an overloaded machine; runs take ~10-30 s
    port = _free_port()
    procs = [subprocess.Popen(cmd, env=_env(r, world, port), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for r in range(world)]
    deadline = time.monotonic() + timeout
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outs.append((p.returncode, out, err))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"ranks did not finish within {timeout}s (hang): {cmd}")
    return outs


def _scenario(name: str, world: int, tmp_path: Path) -> list[dict]:
    outs = _run_ranks([sys.executable, str(HERE), name, str(tmp_path)], world)
    for rc, _out, err in outs:
        assert rc == 0, err[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


def _merge(ranks: list[dict], key: str) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for r in ranks:
        out.update({int(d): np.asarray(v) for d, v in r[key].items()})
    return out


# ------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One 2-rank launch runs the engine and checkpoint/Trainer scenarios (saves a launch)."""
    return _scenario("both", 2, tmp_path_factory.mktemp("etree_mp"))


def test_tree_rounds_weighted_average_gossip_and_virtual_devices(two_ranks):
    ranks = [r["engine"] for r in two_ranks]
    w = {d: d + 1.0 for d in range(8)}
    clusters = [[0, 1, 4], [2, 3, 5, 6, 7]]
    x0, x1 = _merge(ranks, "x0"), _merge(ranks, "x1")
    # cluster round: members equal the data-weighted closed form, clusters differ
    for c in clusters:
        expect = sum(w[d] * x0[d] for d in c) / sum(w[d] for d in c)
        for d in c:
            np.testing.assert_allclose(x1[d], expect, rtol=1e-6, atol=1e-6)
    assert not np.allclose(x1[0], x1[2])
    # root round (after a perturbation): every device holds the global weighted average
    x1p, x2 = _merge(ranks, "x1p"), _merge(ranks, "x2")
    expect = sum(w[d] * x1p[d] for d in range(8)) / sum(w.values())
    for d in range(8):
        np.testing.assert_allclose(x2[d], expect, rtol=1e-6, atol=1e-6)
    assert all(r["same_storage"] for r in ranks)  # written back with copy_, no views
    mb = ranks[0]["model_bytes"]
    assert ranks[0]["bytes_per_level"] == [2 * 2 * mb * (2 + 4), 2 * mb * 1]
    assert ranks[0]["rounds_per_level"] == [2, 1]
    # public node 4 in both clusters, unweighted: it takes the size-weighted mean of both
    x2p, xp = _merge(ranks, "x2p"), _merge(ranks, "xpub")
    a = np.mean([x2p[d] for d in (0, 1, 4)], axis=0)
    b = np.mean([x2p[d] for d in (2, 3, 4, 5, 6, 7)], axis=0)
    np.testing.assert_allclose(xp[0], a, atol=1e-6)
    np.testing.assert_allclose(xp[7], b, atol=1e-6)
    np.testing.assert_allclose(xp[4], (3 * a + 6 * b) / 9, atol=1e-6)
    # gossip: same matching on every rank, an involution, pairs hold their mean
    m0 = ranks[0]["matchings"]
    assert all(r["matchings"] == m0 for r in ranks)
    for partner in m0:
        assert all(partner[p] == d for d, p in enumerate(partner))
    assert m0[0] != m0[1]
    gb, ga = _merge(ranks, "gossip_before"), _merge(ranks, "gossip_after")
    for d, p in enumerate(m0[0]):
        np.testing.assert_allclose(ga[d], (gb[d] + gb[p]) / 2, atol=1e-6)
    # FedAvg final aggregation on exit, unweighted: plain mean
    fin = _merge(ranks, "fedavg_exit")
    for d in range(8):
        np.testing.assert_allclose(fin[d], np.mean([ga[k] for k in range(8)], axis=0), atol=1e-6)
    # optimiser policies: averaged momentum equal everywhere; reset clears state
    mom = _merge(ranks, "momentum")
    for d in range(8):
        np.testing.assert_allclose(mom[d], mom[0], atol=1e-7)
    assert all(r["reset_state_sizes"] == [0, 0, 0, 0] for r in ranks)
    np.testing.assert_allclose(ranks[0]["consensus"], ranks[1]["consensus"])
    for r in ranks:
        fsdp2, fsdp1 = r["sharded_errors"]
        assert "model wrapped by FSDP2 (fully_shard)" in fsdp2 and "not supported" in fsdp2
        assert "model wrapped by FSDP." in fsdp1


def test_exact_resume_and_trainer_callback(two_ranks):
    ranks = [r["ckpt"] for r in two_ranks]
    for r in ranks:
        np.testing.assert_array_equal(np.asarray(r["resumed"]), np.asarray(r["straight"]))
        assert r["resumed_steps"] == 6 and r["n_keys"] == r["expected_keys"]
        assert r["hooked"] is True
        assert r["local_batches"] == 4 and r["local_seen"] == r["local_data"]
        assert "max_steps" in r["mismatch_error"] and "[2, 3]" in r["mismatch_error"]
    # BatchNorm: DDP's buffer broadcast is off, every device's statistics are its own data's
    for r in ranks:
        assert r["bn_broadcast_off"] is True
        np.testing.assert_allclose(r["bn_running_mean"], r["bn_data_mean"], atol=1e-5)
        assert "ddp_broadcast_buffers=True" in r["broadcast_error"]
    assert not np.allclose(ranks[0]["bn_running_mean"], ranks[1]["bn_running_mean"], atol=1.0)
    # Trainer: DDP all-reduce disabled (ranks diverge) until the averager aggregates
    assert not np.allclose(ranks[0]["trainer_local"], ranks[1]["trainer_local"])
    np.testing.assert_allclose(ranks[0]["trainer_avg"], ranks[1]["trainer_avg"], atol=1e-6)
    np.testing.assert_allclose(
        ranks[0]["trainer_avg"],
        (np.asarray(ranks[0]["trainer_local"]) + np.asarray(ranks[1]["trainer_local"])) / 2,
        atol=1e-6)


def test_killed_rank_stops_run_with_clear_error_then_resume(tmp_path):
    sets = ["arms=[etree]", "num_devices=4", "leaf_rounds=4", "eval_every=2",
            "checkpoint_every=2", "pretrain_epochs=0", "collective_timeout_s=15", "hidden=8"]
    base = [sys.executable, str(ROOT / "trainers" / "etree.py"), "--config",
            str(ROOT / "trainers" / "configs" / "etree_smoke.yaml"), "--output-dir",
            str(tmp_path)]
    args = [a for s in sets for a in ("--set", s)]
    start = time.monotonic()
    outs = _run_ranks(base + args + ["--set", "fault_rank=1", "--set", "fault_round=3"], 2)
    assert time.monotonic() - start < 150
    (rc0, _, err0), (rc1, _, _) = outs
    assert rc1 == 17  # the injected death
    assert rc0 == 3, err0[-2000:]
    assert "E-Tree run stopped" in err0 and "Resume from the last checkpoint" in err0
    ckpt = tmp_path / "checkpoints" / "etree_seed0_round2"
    assert (ckpt / "etree_rank0.safetensors").exists() and (ckpt / "etree_rank1.json").exists()
    # resume under torchrun --standalone (free port chosen by torchrun)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", *base[1:], *args, "--set", f"resume_from={ckpt}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(last) == {"etree"} and 0.0 <= last["etree"] <= 1.0
    hist = json.loads((tmp_path / "results.json").read_text())["runs"]["etree"][0]["history"]
    assert [h["leaf_round"] for h in hist] == [2, 4]  # round 2 came from the checkpoint


def test_single_process_accelerate_cpu_trap_is_detected(monkeypatch, capsys):
    from kwaiformers.cli import main
    from kwaiformers.federated.launch import LaunchError, check_launch

    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(LaunchError, match="starts ONE process"):
        check_launch(2)
    assert check_launch(1) == 1 and check_launch(None) == 1
    cfg = str(ROOT / "trainers" / "configs" / "etree_smoke.yaml")
    assert main(["train", "etree", "--config", cfg]) == 2
    assert "torchrun --standalone" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(LaunchError, match="WORLD_SIZE=3"):
        check_launch(2)


# ------------------------------------------------------------------------------- scenarios
def _vec(model) -> list[float]:
    from kwaiformers.federated.averagers import flatten_model

    return flatten_model(model).tolist()


def _net(seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        m[1].running_mean.fill_(float(seed))
        m[1].running_var.fill_(1.0 + seed)
    return m


def _bump(models, devices, scale):
    import torch

    with torch.no_grad():
        for m, d in zip(models, devices):
            for p in m.parameters():
                p.add_(scale * (d + 1))


def scenario_engine(out: Path) -> dict:
    import torch

    from kwaiformers.federated.averagers import ETreeAverager, FedAvgAverager, GossipAverager
    from kwaiformers.federated.launch import init_distributed
    from kwaiformers.federated.tree import Group, TreeSpec, block_placement

    rank, world = init_distributed(30)
    place = block_placement(8, world)
    local = [d for d, (r, _) in enumerate(place) if r == rank]
    models = [_net(d) for d in local]
    res: dict = {}
    rec = lambda: {d: _vec(m) for d, m in zip(local, models)}  # noqa: E731
    tree = TreeSpec.from_clusters([[0, 1, 4], [2, 3, 5, 6, 7]], [1, 5], root=5, k1=1, k2=2)
    av = ETreeAverager(models, tree, n_samples=[d + 1 for d in range(8)], timeout=30)
    ptrs = [p.data_ptr() for m in models for p in m.parameters()]
    res["x0"] = rec()
    av.step()
    res["x1"] = rec()
    _bump(models, local, 0.1)
    res["x1p"] = rec()
    av.step()
    res["x2"] = rec()
    res["same_storage"] = ptrs == [p.data_ptr() for m in models for p in m.parameters()]
    res["model_bytes"] = av.model_bytes
    res["bytes_per_level"] = av.bytes_per_level
    res["rounds_per_level"] = av.rounds_per_level
    # public node 4, unweighted
    _bump(models, local, 0.01)
    res["x2p"] = rec()
    pub = TreeSpec(8, ((Group((0, 1, 4), 1), Group((2, 3, 4, 5, 6, 7), 5)),
                       (Group(tuple(range(8)), 5, 2),)), public_nodes=(4,))
    ETreeAverager(models, pub, weighted=False).step()
    res["xpub"] = rec()
    # gossip
    g = GossipAverager(models, 8, seed=3)
    res["matchings"] = [g.matching(r) for r in range(4)]
    res["gossip_before"] = rec()
    g.step()
    res["gossip_after"] = rec()
    with FedAvgAverager(models, 8, period=100, weighted=False) as f:
        f.step()
    res["fedavg_exit"] = rec()
    # optimiser state: average then reset
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]
    for m, o, d in zip(models, opts, local):
        m.train()
        torch.manual_seed(100 + d)
        m(torch.randn(4, 3)).pow(2).sum().backward()
        o.step()
    FedAvgAverager(models, 8, optimizers=opts, optimizer_state="average").step()
    res["momentum"] = {d: torch.cat([o.state[p]["momentum_buffer"].reshape(-1)
                                     for p in m.parameters()]).tolist()
                       for d, m, o in zip(local, models, opts)}
    FedAvgAverager(models, 8, optimizers=opts, optimizer_state="reset").step()
    res["reset_state_sizes"] = [len(o.state) for o in opts]
    res["consensus"] = av.consensus_vector().tolist()
    # sharded models (really sharded over the 2 ranks) are refused, as accelerate's LocalSGD does
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard

    res["sharded_errors"] = []
    for wrap in (fully_shard, lambda m: FullyShardedDataParallel(m, device_id=torch.device("cpu"))):
        try:
            ETreeAverager(wrap(torch.nn.Sequential(torch.nn.Linear(3, 4))), TreeSpec.fedavg(2))
            res["sharded_errors"].append("")
        except ValueError as exc:
            res["sharded_errors"].append(str(exc))
    return res


def _ckpt_half(models, opts, av, local, steps):
    import torch

    for s in steps:
        for m, o, d in zip(models, opts, local):
            g = torch.Generator().manual_seed(1000 * d + s)
            x = torch.randn(8, 3, generator=g)
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
        av.step()


def scenario_ckpt_trainer(out: Path) -> dict:
    import torch
    from accelerate import Accelerator

    from kwaiformers.federated.averagers import ETreeAverager, FedAvgAverager
    from kwaiformers.federated.checkpoint import register_checkpoint_hooks
    from kwaiformers.federated.launch import init_distributed
    from kwaiformers.federated.tree import TreeSpec

    rank, world = init_distributed(30)
    tree = TreeSpec.from_clusters([[0, 1], [2, 3]], [0, 2], root=0, k1=1, k2=2)
    local = [2 * rank, 2 * rank + 1]
    acc = Accelerator(cpu=True)

    def fresh(seed_shift=0):
        models = [_net(d + seed_shift) for d in local]
        opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in models]
        return models, opts, ETreeAverager(models, tree, n_samples=[5, 6, 7, 8], timeout=30)

    res: dict = {}
    models, opts, av = fresh()
    _ckpt_half(models, opts, av, local, range(6))
    res["straight"] = [_vec(m) for m in models]
    models, opts, av = fresh()
    _ckpt_half(models, opts, av, local, range(3))
    handles = register_checkpoint_hooks(acc, av, opts)
    ckpt = str(out / "ckpt")
    acc.save_state(ckpt)
    from safetensors.torch import load_file

    res["n_keys"] = len(load_file(os.path.join(ckpt, f"etree_rank{rank}.safetensors")))
    res["expected_keys"] = sum(len(m.state_dict()) for m in models)
    for h in handles:
        h.remove()
    models, opts, av = fresh(seed_shift=50)  # a "new process": different init, no state
    register_checkpoint_hooks(acc, av, opts)
    acc.load_state(ckpt)
    _ckpt_half(models, opts, av, local, range(3, 6))
    res["resumed"] = [_vec(m) for m in models]
    res["resumed_steps"] = av.num_steps

    # ---- transformers.Trainer with ETreeCallback (one device per rank)
    from torch import nn
    from transformers import Trainer, TrainingArguments

    from kwaiformers.federated.callbacks import ETreeCallback

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x, labels=None):
            logits = self.lin(x)
            return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}

    torch.manual_seed(0)
    model = Tiny()
    g = torch.Generator().manual_seed(rank)
    data = [{"x": torch.randn(4, generator=g), "labels": int(rank)} for _ in range(16)]
    args = TrainingArguments(output_dir=str(out / f"trainer{rank}"), per_device_train_batch_size=4,
                             max_steps=3, learning_rate=0.5, report_to=[], save_strategy="no",
                             logging_strategy="no", use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=data)
    fed = FedAvgAverager(trainer.model, 2, period=100, timeout=30)
    cb = ETreeCallback(fed, trainer, final_sync=False)
    trainer.add_callback(cb)
    trainer.train()
    res["hooked"] = cb.hooked
    res["trainer_local"] = _vec(model)
    fed.aggregate(0)
    res["trainer_avg"] = _vec(model)
    # rank-local data: one epoch covers all 16 of this rank's examples (not a 1/world slice)
    loader = trainer.get_train_dataloader()
    batches = list(loader)
    res["local_batches"] = len(batches)
    res["local_seen"] = sorted(round(float(b["x"][i, 0]), 5) for b in batches
                               for i in range(b["x"].shape[0]))
    res["local_data"] = sorted(round(float(d["x"][0]), 5) for d in data)
    # ranks that would run different step counts are refused up front (no hang)
    args2 = TrainingArguments(output_dir=str(out / f"trainer_b{rank}"),
                              per_device_train_batch_size=4, max_steps=2 + rank, report_to=[],
                              save_strategy="no", logging_strategy="no", use_cpu=True,
                              disable_tqdm=True, dataloader_num_workers=0)
    trainer2 = Trainer(model=Tiny(), args=args2, train_dataset=data)
    trainer2.add_callback(ETreeCallback(FedAvgAverager(trainer2.model, 2, period=100, timeout=30),
                                        trainer2, final_sync=False))
    try:
        trainer2.train()
        res["mismatch_error"] = ""
    except ValueError as exc:
        res["mismatch_error"] = str(exc)

    # ---- BatchNorm under DDP: each device keeps its own running statistics (issue 19, point 2)
    class BNNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(4, momentum=None)  # cumulative mean of the batch means
            self.lin = nn.Linear(4, 2)

        def forward(self, x, labels=None):
            logits = self.lin(self.bn(x))
            return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}

    torch.manual_seed(0)
    bn_model = BNNet()
    gb = torch.Generator().manual_seed(10 + rank)
    bn_data = [{"x": torch.randn(4, generator=gb) + 5.0 * rank, "labels": rank} for _ in range(16)]
    bn_args = TrainingArguments(output_dir=str(out / f"trainer_bn{rank}"),
                                per_device_train_batch_size=4, max_steps=4, learning_rate=0.1,
                                report_to=[], save_strategy="no", logging_strategy="no",
                                use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
    bn_trainer = Trainer(model=bn_model, args=bn_args, train_dataset=bn_data)
    bn_cb = ETreeCallback(FedAvgAverager(bn_trainer.model, 2, period=100, timeout=30),
                          bn_trainer, final_sync=False)
    bn_trainer.add_callback(bn_cb)
    bn_trainer.train()
    res["bn_broadcast_off"] = bn_cb.buffers_broadcast_disabled
    res["bn_running_mean"] = bn_model.bn.running_mean.tolist()
    # 4 equal batches covering this rank's 16 examples: the mean of the batch means
    res["bn_data_mean"] = torch.stack([d["x"] for d in bn_data]).mean(0).tolist()
    try:
        bad = TrainingArguments(output_dir=str(out / f"trainer_bb{rank}"), ddp_broadcast_buffers=True,
                                report_to=[], use_cpu=True)
        ETreeCallback(FedAvgAverager(Tiny(), 2, timeout=30),
                      Trainer(model=Tiny(), args=bad, train_dataset=data))
        res["broadcast_error"] = ""
    except ValueError as exc:
        res["broadcast_error"] = str(exc)
    return res


def scenario_both(out: Path) -> dict:
    return {"engine": scenario_engine(out), "ckpt": scenario_ckpt_trainer(out)}


if __name__ == "__main__":
    name, out_dir = sys.argv[1], Path(sys.argv[2])
    result = globals()[f"scenario_{name}"](out_dir)
    import torch.distributed as dist

    (out_dir / f"rank{dist.get_rank()}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()
