"""E-Tree single-process units: TreeSpec, partitioners, KMA (Algorithm 1) and public nodes (Algorithm 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kwaiformers.federated.kma import (
    all_pairs_min_delay,
    kma,
    medoid,
    random_geometric_delays,
    select_public_nodes,
)
from kwaiformers.federated.partition import label_histograms, partition
from kwaiformers.federated.tree import Group, TreeSpec, block_placement


# ---------------------------------------------------------------------------------- TreeSpec
def _tree() -> TreeSpec:
    return TreeSpec.from_clusters([[0, 1, 4], [2, 3, 5, 6, 7]], centers=[1, 5], root=5, k1=1, k2=2)


def test_treespec_json_round_trip_and_schedule():
    t = _tree()
    again = TreeSpec.from_json(t.to_json())
    assert again == t
    assert json.loads(t.to_json())["levels"][1][0]["host"] == 5
    assert t.periods == (1, 2) and t.cumulative_periods == (1, 2)
    assert [t.level_to_fire(s) for s in range(1, 5)] == [0, 1, 0, 1]
    assert t.children(1) == ((0, 1),)
    t3 = TreeSpec.from_clusters([[0, 1], [2, 3]], [0, 2], k1=2, k2=3)
    assert [t3.level_to_fire(s) for s in (1, 2, 4, 6, 12)] == [-1, 0, 0, 1, 1]
    placed = t.with_placement(block_placement(8, 3))
    assert TreeSpec.from_json(placed.to_json()).placement == placed.placement
    assert placed.placement[:4] == ((0, 0), (0, 1), (0, 2), (1, 0))


def test_treespec_validation_errors():
    with pytest.raises(ValueError, match="host"):
        Group((0, 1), host=2)
    with pytest.raises(ValueError, match="period"):
        Group((0, 1), host=0, period=0)
    g = (Group((0, 1), 0), Group((1, 2), 2))
    with pytest.raises(ValueError, match="only public nodes"):
        TreeSpec(3, (g, (Group((0, 1, 2), 0),)))
    with pytest.raises(ValueError, match="in no group"):
        TreeSpec(4, ((Group((0, 1), 0), Group((2,), 2)), (Group((0, 1, 2), 0),)))
    with pytest.raises(ValueError, match="one root"):
        TreeSpec(4, ((Group((0, 1), 0), Group((2, 3), 2)),))
    assert TreeSpec.grouped([[0, 1], [2, 3]], [0, 2]).rooted is False
    with pytest.raises(ValueError, match="split across"):
        TreeSpec(4, ((Group((0, 1), 0), Group((2, 3), 2)),
                     (Group((0, 2), 0), Group((1, 3), 1))))
    with pytest.raises(ValueError, match="share one period"):  # public node 1, periods 1 vs 2
        TreeSpec(4, ((Group((0, 1), 0, 1), Group((1, 2, 3), 2, 2)), (Group((0, 1, 2, 3), 2),)),
                 public_nodes=(1,))
    with pytest.raises(ValueError, match="unknown keys"):
        TreeSpec.from_dict({"num_devices": 1, "levels": [], "extra": 1})
    with pytest.raises(ValueError, match="missing the field"):
        TreeSpec.from_dict({"levels": [[{"members": [0], "host": 0}]]})
    with pytest.raises(ValueError, match="world_size"):
        _tree().with_placement(block_placement(8, 2)).placement_for(4)
    # public node 1 may sit in both clusters
    t = TreeSpec(4, ((Group((0, 1), 0), Group((1, 2, 3), 2)), (Group((0, 1, 2, 3), 2),)),
                 public_nodes=(1,))
    assert t.children(1) == ((0, 1),)


# ---------------------------------------------------------------------------------- partitions
def _labels(n_per_class: int = 30, classes: int = 10) -> np.ndarray:
    return np.repeat(np.arange(classes), n_per_class)


@pytest.mark.parametrize("c", [1, 2, 4])
def test_shards_exact_classes_per_device(c):
    y = _labels()
    parts = partition(y, 16, "shards", classes_per_device=c, seed=3)
    hist = label_histograms(y, parts)
    assert ((hist > 0).sum(1) == c).all()
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(y.size))  # disjoint, complete
    again = partition(y, 16, "shards", classes_per_device=c, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_iid_and_dirichlet():
    y = _labels()
    iid = partition(y, 7, "iid", seed=0)
    sizes = [p.size for p in iid]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == y.size
    d1 = partition(y, 8, "dirichlet", alpha=0.1, seed=1, min_size=2)
    d2 = partition(y, 8, "dirichlet", alpha=100.0, seed=1, min_size=2)
    assert np.array_equal(np.sort(np.concatenate(d1)), np.arange(y.size))
    assert min(p.size for p in d1) >= 2
    # small alpha concentrates classes: fewer classes per device than large alpha
    c1 = (label_histograms(y, d1) > 0).sum(1).mean()
    c2 = (label_histograms(y, d2) > 0).sum(1).mean()
    assert c1 < c2
    assert all(np.array_equal(a, b) for a, b in zip(d1, partition(y, 8, "dirichlet", alpha=0.1,
                                                                  seed=1, min_size=2)))
    with pytest.raises(ValueError, match="scheme"):
        partition(y, 4, "zipf")
    with pytest.raises(ValueError, match="classes_per_device"):
        partition(y, 4, "shards", classes_per_device=11)
    with pytest.raises(TypeError, match="integers"):
        partition(np.zeros(10), 2)


# ---------------------------------------------------------------------------------- KMA
def test_all_pairs_min_delay_matches_hand_computed():
    d = all_pairs_min_delay([(0, 1, 1.0), (1, 2, 2.0), (0, 2, 5.0)], num_nodes=3)
    assert d[0, 2] == 3.0 and d[2, 0] == 3.0 and d[1, 1] == 0.0
    with pytest.raises(ValueError, match="disconnected"):
        all_pairs_min_delay([(0, 1, 1.0)], num_nodes=3)
    links = random_geometric_delays(20, radius=0.2, seed=0)
    full = all_pairs_min_delay(links)
    assert np.allclose(full, full.T) and np.isfinite(full).all()


def test_kma_deterministic_and_partitions_nodes():
    n = 24
    delay = all_pairs_min_delay(random_geometric_delays(n, seed=1))
    acc = np.random.default_rng(0).uniform(0.1, 0.3, n)
    r1 = kma(delay, acc, 4, delta=0.05, seed=7)
    r2 = kma(delay, acc, 4, delta=0.05, seed=7)
    assert r1 == r2 and r1.converged
    assert sorted(sum(r1.clusters, ())) == list(range(n))
    for c, h in zip(r1.clusters, r1.centers):
        assert h in c and medoid(c, delay) == h
    TreeSpec.from_clusters(r1.clusters, r1.centers)  # a valid tree


def test_kma_degenerates_to_delay_clustering_and_delta_matters():
    # two far-apart groups of nodes; with delta=0 every tentative test fails -> nearest centre
    pos = np.r_[np.zeros(5), np.full(5, 10.0)] + np.arange(10) * 0.01
    delay = np.abs(pos[:, None] - pos[None])
    acc = np.linspace(0, 1, 10)
    r = kma(delay, acc, 2, delta=0.0, seed=0)
    assert sorted(r.clusters) == [tuple(range(5)), tuple(range(5, 10))]
    # huge delta: every first candidate accepted -> also pure delay clustering (K=2: 1 candidate)
    assert sorted(kma(delay, acc, 2, delta=10.0, seed=0).clusters) == sorted(r.clusters)
    # K=4 with 2 candidates: the accuracy test changes some assignments versus delta=0
    pos4 = np.r_[np.zeros(6), np.full(6, 1.0), np.full(6, 2.0), np.full(6, 3.0)]
    d4 = np.abs(pos4[:, None] - pos4[None]) + 0.001 * np.abs(np.arange(24)[:, None] - np.arange(24))
    a4 = np.r_[np.full(12, 0.1), np.full(12, 0.3)]
    strict = kma(d4, a4, 4, delta=0.0, seed=0)
    loose = kma(d4, a4, 4, delta=0.06, seed=0)
    assert strict.clusters != loose.clusters
    with pytest.raises(ValueError, match="num_clusters"):
        kma(delay, acc, 10)
    with pytest.raises(ValueError, match="accuracies"):
        kma(delay, None, 2)


def test_kma_label_hist_criterion_balances_labels():
    n = 16
    delay = all_pairs_min_delay(random_geometric_delays(n, seed=2))
    y = np.repeat(np.arange(10), 40)
    hist = label_histograms(y, partition(y, n, "shards", classes_per_device=2, seed=0))
    r = kma(delay, None, 4, delta=0.2, seed=0, criterion="label_hist", label_hist=hist)
    assert sorted(sum(r.clusters, ())) == list(range(n))
    target = hist.sum(0) / hist.sum()
    tv = [0.5 * np.abs(hist[list(c)].sum(0) / hist[list(c)].sum() - target).sum()
          for c in r.clusters]
    dl = kma(delay, np.zeros(n), 4, delta=0.0, seed=0)  # delay-only
    tv_dl = [0.5 * np.abs(hist[list(c)].sum(0) / hist[list(c)].sum() - target).sum()
             for c in dl.clusters]
    assert np.mean(tv) <= np.mean(tv_dl) + 1e-9


def test_select_public_nodes_algorithm2():
    delay = np.abs(np.arange(6)[:, None] - np.arange(6)[None]).astype(float)
    clusters, centers = [[0, 1, 2], [3, 4, 5]], [1, 4]
    acc = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    pub, cl = select_public_nodes(clusters, centers, acc, delay, gamma=0.34, delta=0.01)
    # nodes 1-4 all have mean delay 1.5 to the centres (0 and 5 have 2.5); ties break by id
    assert pub == (1, 2)
    assert all(1 in c and 2 in c for c in cl)
    TreeSpec.from_clusters(cl, centers, public_nodes=pub)
    # a singleton cluster's only member never becomes public (the cluster would be all public)
    pub3, cl3 = select_public_nodes([[0], [1, 2, 3, 4, 5]], [0, 2], acc, delay, gamma=0.99,
                                    delta=0.01)
    assert 0 not in pub3 and len(pub3) == 5 - 1
    TreeSpec.from_clusters(cl3, [0, 2], public_nodes=pub3)
    acc_bad = np.array([0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    pub2, cl2 = select_public_nodes(clusters, centers, acc_bad, delay, gamma=0.34, delta=0.01)
    assert pub2 == () and cl2 == ((0, 1, 2), (3, 4, 5))


def test_single_process_virtual_devices_root_counts_public_node_once():
    import torch

    from kwaiformers.federated.averagers import ETreeAverager, flatten_model

    models = [torch.nn.Linear(2, 1) for _ in range(4)]
    with torch.no_grad():
        for d, m in enumerate(models):
            for p in m.parameters():
                p.fill_(float(d * d))
    x = [flatten_model(m) for m in models]
    tree = TreeSpec(4, ((Group((0, 1), 0), Group((1, 2, 3), 2)), (Group((0, 1, 2, 3), 2, 1),)),
                    public_nodes=(1,))
    av = ETreeAverager(models, tree, n_samples=[1, 2, 3, 4])  # one process, 4 virtual devices
    av.step()  # k2 = 1: cluster round then root round
    expect = (1 * x[0] + 2 * x[1] + 3 * x[2] + 4 * x[3]) / 10  # device 1 counted once
    for m in models:
        torch.testing.assert_close(flatten_model(m), expect)
    assert av.rounds_per_level == [1, 1]
    # bytes: cluster links (1 + 2 non-host members) + root link (cluster host 0 -> root 2)
    assert av.bytes_per_level == [2 * av.model_bytes * 3, 2 * av.model_bytes * 1]


# ------------------------------------------------------------- issue 19: exit sync, periods, sizes
def _linear_devices(n: int):
    import torch

    models = [torch.nn.Linear(2, 1) for _ in range(n)]
    with torch.no_grad():
        for d, m in enumerate(models):
            for p in m.parameters():
                p.fill_(float(d + 1))
    return models


def _bump_all(models, scale: float) -> None:
    import torch

    with torch.no_grad():
        for d, m in enumerate(models):
            for p in m.parameters():
                p.add_(scale * (d + 1) ** 2)


def test_exit_after_leaf_only_round_runs_root_sync_averager_and_callback():
    import torch

    from kwaiformers.federated.averagers import ETreeAverager, flatten_model
    from kwaiformers.federated.callbacks import ETreeCallback

    w = [1.0, 2.0, 3.0, 4.0]
    tree = TreeSpec.from_clusters([[0, 1], [2, 3]], [0, 2], root=0, k1=1, k2=2)
    for use_callback in (False, True):
        models = _linear_devices(4)
        av = ETreeAverager(models, tree, n_samples=w)
        if use_callback:  # Trainer path: on_step_end / on_train_end
            cb = ETreeCallback(av)
            for _ in range(3):
                _bump_all(models, 0.1)
                cb.on_step_end(None, None, None)
            x = [flatten_model(m) for m in models]
            cb.on_train_end(None, None, None)
        else:
            with av:
                for _ in range(3):  # step 3 = a cluster-only round (root fires at 2, 4, ...)
                    _bump_all(models, 0.1)
                    av.step()
                x = [flatten_model(m) for m in models]
        assert not torch.allclose(x[0], x[2])  # clusters differed before the exit
        expect = sum(wi * xi for wi, xi in zip(w, x)) / sum(w)
        for m in models:
            torch.testing.assert_close(flatten_model(m), expect)
        assert av.rounds_per_level == [4, 2]  # 3 scheduled cluster rounds + the exit sync
    # exit right after a root round: no extra aggregation
    models = _linear_devices(4)
    with ETreeAverager(models, tree, n_samples=w) as av:
        av.step()
        av.step()
    assert av.rounds_per_level == [2, 1]
    state = av.state_dict()
    assert state["last_top_step"] == 2


def test_per_node_periods_schedule_and_values():
    import torch

    from kwaiformers.federated.averagers import ETreeAverager, flatten_model

    # cluster A = {0, 1} every step, cluster B = {2, 3} every 2 steps, root every 2*lcm(1, 2) = 4
    tree = TreeSpec.from_clusters([[0, 1], [2, 3]], [0, 2], root=0, k1=[1, 2], k2=2)
    assert not tree.uniform_periods and tree.step_periods == ((1, 2), (4,))
    assert [tree.groups_to_fire(s) for s in (1, 2, 3, 4)] == [
        ((0,), ()), ((0, 1), ()), ((0,), ()), ((0, 1), (0,))]
    assert [tree.level_to_fire(s) for s in (1, 2, 4)] == [0, 0, 1]
    assert TreeSpec.from_json(tree.to_json()) == tree
    with pytest.raises(ValueError, match="per-node periods"):
        tree.cumulative_periods  # noqa: B018
    with pytest.raises(ValueError, match="one int per cluster"):
        TreeSpec.from_clusters([[0, 1], [2, 3]], [0, 2], k1=[1, 2, 3])
    models = _linear_devices(4)
    av = ETreeAverager(models, tree)  # plain mean per group
    x0 = [flatten_model(m) for m in models]
    av.step()  # only A aggregates
    x1 = [flatten_model(m) for m in models]
    torch.testing.assert_close(x1[0], (x0[0] + x0[1]) / 2)
    torch.testing.assert_close(x1[1], x1[0])
    torch.testing.assert_close(x1[2], x0[2])
    torch.testing.assert_close(x1[3], x0[3])
    av.step()  # A and B
    x2 = [flatten_model(m) for m in models]
    torch.testing.assert_close(x2[2], (x0[2] + x0[3]) / 2)
    assert av.rounds_per_group == [[2, 1], [0]] and av.rounds_per_level == [2, 0]
    _bump_all(models, 0.1)
    x2b = [flatten_model(m) for m in models]
    av.step()
    av.step()  # step 4: root over both clusters (4 devices, weights 1 per device)
    _ = x2b
    xs = [flatten_model(m) for m in models]
    for v in xs[1:]:
        torch.testing.assert_close(v, xs[0])
    assert av.rounds_per_group == [[4, 2], [1]] and av._last_top_step == 4


@pytest.mark.parametrize("scheme", ["iid", "shards", "dirichlet"])
def test_every_partitioner_enforces_min_size(scheme):
    y = _labels(10)  # 100 samples, 10 classes
    parts = partition(y, 10, scheme, classes_per_device=2, min_size=5, seed=0)
    assert min(p.size for p in parts) >= 5
    with pytest.raises(ValueError, match=r"num_devices.*use num_devices <= 12"):
        partition(y, 13, scheme, classes_per_device=2, min_size=8)
    with pytest.raises(ValueError, match="min_size must be an int >= 1"):
        partition(y, 4, scheme, min_size=0)
    if scheme == "shards":  # enough samples in total, but the small class is spread too thin
        y2 = np.array([0] * 30 + [1] * 4)
        with pytest.raises(ValueError, match="only 2 samples, fewer than min_size=3"):
            partition(y2, 4, scheme, classes_per_device=1, min_size=3)


def test_sharded_training_is_refused():
    import torch
    from accelerate.utils import DistributedType

    from kwaiformers.federated.averagers import ETreeAverager, check_not_sharded
    from kwaiformers.federated.callbacks import ETreeCallback

    class Acc:
        def __init__(self, kind):
            self.distributed_type = kind

    tree = TreeSpec.fedavg(1)
    for kind in (DistributedType.DEEPSPEED, DistributedType.FSDP, DistributedType.XLA):
        with pytest.raises(ValueError, match=f"distributed_type={kind.name}.*not supported"):
            ETreeAverager(torch.nn.Linear(2, 1), tree, accelerator=Acc(kind))
    for kind in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
        check_not_sharded(Acc(kind), torch.nn.Linear(2, 1))

    class Trainer:  # the flags transformers.Trainer sets for DeepSpeed / FSDP
        is_deepspeed_enabled, is_fsdp_enabled = True, False
        accelerator = Acc(DistributedType.DEEPSPEED)
        args = None

    av = ETreeAverager(torch.nn.Linear(2, 1), tree)
    with pytest.raises(ValueError, match="DeepSpeed"):
        ETreeCallback(av, Trainer(), rank_local_data=False)

    class DeepSpeedEngine(torch.nn.Module):  # same class name as deepspeed's wrapper
        pass

    with pytest.raises(ValueError, match="model wrapped by DeepSpeed"):
        check_not_sharded(models=DeepSpeedEngine())


def test_recipe_validates_sizes_before_spawning(capsys, monkeypatch):
    from pathlib import Path

    from kwaiformers.cli import main
    from kwaiformers.federated import launch

    def no_spawn(*a, **k):  # pragma: no cover - reaching it is the failure
        raise AssertionError("ranks were spawned for an invalid config")

    monkeypatch.setattr(launch, "launch_local", no_spawn)
    for var in ("WORLD_SIZE", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(var, raising=False)
    cfg = str(Path(__file__).resolve().parent.parent / "trainers" / "configs" / "etree_smoke.yaml")
    for sets, needle in ((["num_devices=400"], "num_devices=400 does not fit the data"),
                         (["num_devices=8", "batch_size=400"], "use num_devices <= 7"),
                         (["arms=[etree]", "resume_from=no/such/dir"],
                          "resume_from: 'no/such/dir' is not a checkpoint directory")):
        args = [a for s in sets for a in ("--set", s)]
        assert main(["train", "etree", "--config", cfg, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
