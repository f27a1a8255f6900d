"""The E-Tree recipe: simulated edge devices on sklearn data, every arm in one engine.

``kwaiformers train etree --config trainers/configs/etree_smoke.yaml`` (or
``python trainers/etree.py --config ...``). Under ``torchrun``/``accelerate launch --multi_gpu``
it uses the launched ranks; without a launcher it spawns ``processes`` ranks on 127.0.0.1.

Arms (same data, model, initialisation and leaf-round budget ``leaf_rounds``):

- ``etree``: KMA clusters (Algorithm 1, optional public nodes, Algorithm 2) hosted on their
  centres, root on the centre with the least total delay to the others; a cluster round every
  ``k1`` local epochs, a root round every ``k2`` cluster rounds.
- ``fedavg_leaf``: FedAvg with ``k1`` local epochs per round (same leaf rounds, one global
  synchronisation per cluster round of E-Tree).
- ``fedavg_global``: FedAvg with ``k1*k2`` local epochs per round (same number of global
  synchronisations as E-Tree's root rounds).
- ``gossip``: a random pairwise matching every ``k1`` epochs.
- ``individual``: no averaging. ``grouped``: E-Tree's clusters without the root.

A "step" of the averagers is one local epoch of every device (a leaf round). Metrics: mean
per-device test accuracy, consensus accuracy (the data-weighted mean model), rounds, bytes per
level, long-haul bytes (E-Tree's root links, all of FedAvg's and Gossip's links) and wall time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ARMS", "ETreeRecipeConfig", "load_config", "run_recipe"]

ARMS = ("etree", "fedavg_leaf", "fedavg_global", "gossip", "individual", "grouped")


@dataclass
class ETreeRecipeConfig:
    """Recipe settings (YAML keys have the same names)."""

    dataset: str = "digits"  # digits | synthetic
    synthetic_samples: int = 12000
    synthetic_features: int = 32
    num_devices: int = 8
    processes: int | None = 2  # expected ranks; null: whatever the launcher started
    placement: str = "block"  # block | round_robin
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    partition: str = "shards"  # shards | dirichlet | iid
    classes_per_device: int = 2
    alpha: float = 0.5
    seeds: list[int] = field(default_factory=lambda: [0])
    hidden: int = 64
    lr: float = 0.05
    momentum: float = 0.0
    batch_size: int = 16
    k1: int = 1
    k2: int = 4
    leaf_rounds: int = 40
    eval_every: int = 4
    clusters: int = 2
    delta: float = 0.05
    pretrain_epochs: int = 2
    kma_criterion: str = "accuracy"
    gamma: float = 0.0
    radius: float = 0.3
    weighted: bool = True
    optimizer_state: str = "keep"
    collective_timeout_s: float = 60.0
    output_dir: str | None = None
    checkpoint_every: int = 0
    resume_from: str | None = None
    fault_rank: int | None = None  # testing: this rank dies before leaf round fault_round
    fault_round: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in ("digits", "synthetic"):
            raise ValueError(f"dataset must be 'digits' or 'synthetic', got {self.dataset!r}")
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise ValueError(f"arms must be a non-empty subset of {ARMS}, got {self.arms}")
        for name in ("num_devices", "k1", "k2", "leaf_rounds", "eval_every", "batch_size",
                     "clusters", "hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.processes is not None and (not isinstance(self.processes, int)
                                           or not 1 <= self.processes <= self.num_devices):
            raise ValueError(f"processes must be null or an int in [1, num_devices], got "
                             f"{self.processes!r}")
        if self.clusters >= self.num_devices:
            raise ValueError("clusters must be < num_devices")
        if self.placement not in ("block", "round_robin"):
            raise ValueError(f"placement must be 'block' or 'round_robin', got {self.placement!r}")
        if self.resume_from and (len(self.arms) != 1 or len(self.seeds) != 1):
            raise ValueError("resume_from needs exactly one arm and one seed")


def load_config(path: str, overrides: dict[str, Any] | None = None) -> ETreeRecipeConfig:
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a YAML mapping")
    data.update(overrides or {})
    known = {f.name for f in dataclasses.fields(ETreeRecipeConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    return ETreeRecipeConfig(**data)


# --------------------------------------------------------------------------- data and model
def _dataset(cfg: ETreeRecipeConfig, seed: int):
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split

    if cfg.dataset == "digits":
        x, y = load_digits(return_X_y=True)
        x = x / 16.0
    else:
        x, y = make_classification(
            n_samples=cfg.synthetic_samples, n_features=cfg.synthetic_features,
            n_informative=cfg.synthetic_features // 2, n_redundant=0, n_classes=10,
            n_clusters_per_class=1, class_sep=1.5, random_state=1000 + seed)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return (xtr.astype(np.float32), ytr.astype(np.int64), xte.astype(np.float32),
            yte.astype(np.int64))


def min_device_size(cfg: ETreeRecipeConfig) -> int:
    """Samples every device must hold: ``max(2, batch_size // 2)``."""
    return max(2, cfg.batch_size // 2)


def _partition(cfg: ETreeRecipeConfig, ytr: np.ndarray, seed: int) -> list[np.ndarray]:
    from .partition import partition

    return partition(ytr, cfg.num_devices, cfg.partition,
                     classes_per_device=cfg.classes_per_device, alpha=cfg.alpha, seed=seed,
                     min_size=min_device_size(cfg))


def validate_sizes(cfg: ETreeRecipeConfig, world_size: int | None = None) -> None:
    """Check, before any rank is spawned, that the data supports ``num_devices`` devices.

    Builds each seed's training split and partition (cheap and deterministic: the ranks compute
    the same) and raises a ``ValueError`` naming the config keys when a device would get fewer
    than :func:`min_device_size` samples, when ``world_size`` ranks exceed ``num_devices`` or
    when ``resume_from`` is not a directory.
    """
    if cfg.resume_from and not os.path.isdir(cfg.resume_from):
        raise ValueError(f"resume_from: {cfg.resume_from!r} is not a checkpoint directory "
                         "(expected <output_dir>/checkpoints/<arm>_seed<s>_round<t>)")
    if world_size is not None and world_size > cfg.num_devices:
        raise ValueError(
            f"num_devices ({cfg.num_devices}) must be >= the number of processes ({world_size}): "
            "a process would hold no device")
    for seed in cfg.seeds:
        ytr = _dataset(cfg, seed)[1]
        try:
            _partition(cfg, ytr, seed)
        except ValueError as e:
            raise ValueError(
                f"num_devices={cfg.num_devices} does not fit the data (dataset={cfg.dataset!r}, "
                f"{ytr.size} training samples, partition={cfg.partition!r}, seed {seed}, at "
                f"least {min_device_size(cfg)} samples per device = max(2, batch_size // 2)): "
                f"{e}") from None


def _make_model(cfg: ETreeRecipeConfig, in_dim: int, seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(in_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 10))


def _train_epoch(model, opt, x, y, batch_size: int, seed: tuple[int, ...]) -> None:
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
    order = torch.randperm(x.shape[0], generator=g)
    model.train()
    for i in range(0, x.shape[0], batch_size):
        idx = order[i : i + batch_size]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def _collective(what: str, fn, *args, **kwargs):
    """Run a world collective; a dead/stuck peer becomes a ``DeviceFailure`` (clear message)."""
    import torch.distributed as dist

    from .averagers import DeviceFailure

    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistError) as e:
        raise DeviceFailure(
            f"{what} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "A device died or timed out; the run stops here. Resume from the last checkpoint "
            "(--set resume_from=DIR).") from e


def _accuracy(model, x, y) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


# --------------------------------------------------------------------------- one arm
class _Run:
    """State shared by the arms of one seed on one rank."""

    def __init__(self, cfg: ETreeRecipeConfig, seed: int, rank: int, world: int) -> None:
        import torch

        from .partition import label_histograms
        from .tree import block_placement

        self.cfg, self.seed, self.rank, self.world = cfg, seed, rank, world
        xtr, ytr, xte, yte = _dataset(cfg, seed)
        self.parts = _partition(cfg, ytr, seed)
        self.hist = label_histograms(ytr, self.parts, 10)
        self.sizes = [int(p.size) for p in self.parts]
        if cfg.placement == "block":
            self.placement = block_placement(cfg.num_devices, world)
        else:
            self.placement = tuple((d % world, d // world) for d in range(cfg.num_devices))
        self.local = [d for d, (r, _) in sorted(enumerate(self.placement),
                                                key=lambda t: t[1]) if r == rank]
        self.xtr, self.ytr = torch.from_numpy(xtr), torch.from_numpy(ytr)
        self.xte, self.yte = torch.from_numpy(xte), torch.from_numpy(yte)
        self.data = {d: (self.xtr[self.parts[d]], self.ytr[self.parts[d]]) for d in self.local}
        self.in_dim = xtr.shape[1]
        self._tree = None

    def models(self):
        import torch

        base = _make_model(self.cfg, self.in_dim, self.seed)  # common initialisation
        models = []
        for _ in self.local:
            m = _make_model(self.cfg, self.in_dim, self.seed)
            m.load_state_dict(base.state_dict())
            models.append(m)
        opts = [torch.optim.SGD(m.parameters(), lr=self.cfg.lr, momentum=self.cfg.momentum)
                for m in models]
        return models, opts

    def device_accuracies(self, models) -> np.ndarray:
        import torch
        import torch.distributed as dist

        acc = torch.zeros(self.cfg.num_devices, dtype=torch.float64)
        for m, d in zip(models, self.local):
            acc[d] = _accuracy(m, self.xte, self.yte)
        if dist.is_initialized():
            _collective("accuracy all_reduce", dist.all_reduce, acc)
        return acc.numpy()

    def tree(self):
        """KMA (Algorithm 1) on pre-trained accuracies, then Algorithm 2; cached per seed."""
        if self._tree is not None:
            return self._tree
        from .kma import all_pairs_min_delay, kma, medoid, random_geometric_delays
        from .kma import select_public_nodes as spn
        from .tree import TreeSpec

        cfg = self.cfg
        delay = all_pairs_min_delay(random_geometric_delays(cfg.num_devices, cfg.radius,
                                                            self.seed))
        models, opts = self.models()
        for t in range(cfg.pretrain_epochs):  # r rounds of local pre-training (lines 2-3)
            for m, o, d in zip(models, opts, self.local):
                _train_epoch(m, o, *self.data[d], cfg.batch_size, (self.seed, d, 10_000 + t))
        acc = self.device_accuracies(models)
        res = kma(delay, acc, cfg.clusters, cfg.delta, seed=self.seed,
                  criterion=cfg.kma_criterion, label_hist=self.hist)
        clusters, public = res.clusters, ()
        if cfg.gamma > 0:
            public, clusters = spn(res.clusters, res.centers, acc, delay, cfg.gamma, cfg.delta)
        root = medoid(res.centers, delay)
        tree = TreeSpec.from_clusters(clusters, res.centers, root=root, k1=cfg.k1, k2=cfg.k2,
                                      public_nodes=public, num_devices=cfg.num_devices)
        self._tree = (tree.with_placement(self.placement), res, acc, delay)
        return self._tree

    def averager(self, arm: str, models, opts):
        from .averagers import ETreeAverager, GossipAverager, IndividualTraining
        from .tree import TreeSpec

        cfg = self.cfg
        common = dict(n_samples=self.sizes, optimizers=opts, timeout=cfg.collective_timeout_s)
        if arm in ("etree", "grouped"):
            tree = self.tree()[0]
            if arm == "grouped":
                tree = TreeSpec.grouped([g.members for g in tree.levels[0]],
                                        [g.host for g in tree.levels[0]], cfg.k1,
                                        tree.public_nodes, cfg.num_devices)
                tree = tree.with_placement(self.placement)
            return ETreeAverager(models, tree, weighted=cfg.weighted,
                                 optimizer_state=cfg.optimizer_state, **common)
        if arm in ("fedavg_leaf", "fedavg_global"):
            period = cfg.k1 if arm == "fedavg_leaf" else cfg.k1 * cfg.k2
            tree = TreeSpec.fedavg(cfg.num_devices, period, host=0).with_placement(self.placement)
            return ETreeAverager(models, tree, weighted=cfg.weighted,
                                 optimizer_state=cfg.optimizer_state, **common)
        if arm == "gossip":
            return GossipAverager(models, cfg.num_devices, period=cfg.k1, seed=self.seed,
                                  placement=self.placement, optimizer_state=cfg.optimizer_state,
                                  **common)
        return IndividualTraining(models, cfg.num_devices, placement=self.placement, **common)

    def run_arm(self, arm: str) -> dict[str, Any]:
        import torch.distributed as dist
        from tqdm.auto import tqdm

        from .averagers import ETreeAverager, load_flat

        cfg = self.cfg
        models, opts = self.models()
        averager = self.averager(arm, models, opts)
        history: list[dict[str, Any]] = []
        start_round = 0
        accelerator = None
        if cfg.checkpoint_every or cfg.resume_from:
            from accelerate import Accelerator

            from .checkpoint import register_checkpoint_hooks

            accelerator = Accelerator(cpu=True)
            restored: dict[str, Any] = {}
            register_checkpoint_hooks(accelerator, averager, opts,
                                      extra_state=lambda: {"history": history},
                                      on_load=restored.update)
            if cfg.resume_from:
                accelerator.load_state(cfg.resume_from)
                history = list(restored.get("history", []))
                start_round = averager.num_steps
        scratch = _make_model(cfg, self.in_dim, self.seed)
        if isinstance(averager, ETreeAverager):
            long_haul = (lambda: 0) if not averager.tree.rooted else (
                lambda: averager.bytes_per_level[-1])
        else:
            long_haul = averager.top_level_bytes
        t0 = time.perf_counter() - (history[-1]["wall_s"] if history else 0.0)

        def evaluate(leaf_round: int) -> dict[str, Any]:
            acc = self.device_accuracies(models)
            load_flat(scratch, averager.consensus_vector())
            rec = {
                "leaf_round": leaf_round,
                "global_rounds": int(averager.rounds_per_level[-1]),
                "rounds_per_level": [int(r) for r in averager.rounds_per_level],
                "device_acc": float(acc.mean()),
                "device_acc_min": float(acc.min()),
                "consensus_acc": _accuracy(scratch, self.xte, self.yte),
                "long_haul_bytes": int(long_haul()),
                "total_bytes": int(sum(averager.bytes_per_level)),
                "wall_s": time.perf_counter() - t0,
            }
            return rec

        bar = tqdm(total=cfg.leaf_rounds, initial=start_round, desc=f"{arm} seed {self.seed}",
                   disable=not cfg.progress or self.rank != 0, leave=False, file=sys.stderr)
        with averager:
            for t in range(start_round, cfg.leaf_rounds):
                if cfg.fault_rank == self.rank and cfg.fault_round == t:
                    sys.stderr.write(f"[fault injection] rank {self.rank} dies at round {t}\n")
                    sys.stderr.flush()
                    os._exit(17)
                for m, o, d in zip(models, opts, self.local):
                    _train_epoch(m, o, *self.data[d], cfg.batch_size, (self.seed, d, t))
                averager.step()
                bar.update(1)
                done = t + 1
                if done % cfg.eval_every == 0 and done != cfg.leaf_rounds:
                    history.append(evaluate(done))
                if accelerator is not None and cfg.checkpoint_every and \
                        done % cfg.checkpoint_every == 0 and done != cfg.leaf_rounds:
                    accelerator.save_state(os.path.join(cfg.output_dir or ".", "checkpoints",
                                                        f"{arm}_seed{self.seed}_round{done}"))
        bar.close()
        history.append(evaluate(cfg.leaf_rounds))
        final = dict(history[-1])
        final["bytes_per_level"] = [int(b) for b in averager.bytes_per_level]
        final["history"] = history
        if arm in ("etree", "grouped"):
            tree, res, acc, _ = self.tree()
            final["tree"] = tree.to_dict()
            final["kma"] = {"iterations": res.iterations, "converged": res.converged,
                            "pretrain_acc_mean": float(acc.mean())}
        if dist.is_initialized():
            _collective("end-of-arm barrier", dist.barrier)
        return final


# --------------------------------------------------------------------------- entry points
def _worker(cfg_dict: dict[str, Any], result_path: str | None) -> dict[str, Any] | None:
    from .averagers import DeviceFailure
    from .launch import init_distributed

    cfg = ETreeRecipeConfig(**cfg_dict)
    rank, world = init_distributed(cfg.collective_timeout_s)
    import torch

    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    try:
        for seed in cfg.seeds:
            run = _Run(cfg, seed, rank, world)
            for arm in cfg.arms:
                results.setdefault(arm, []).append(run.run_arm(arm))
    except DeviceFailure as e:
        sys.stderr.write(f"E-Tree run stopped: {e}\n")
        sys.stderr.flush()
        os._exit(3)
    summary = _summarise(cfg, results)
    if rank == 0:
        if cfg.output_dir:
            os.makedirs(cfg.output_dir, exist_ok=True)
            with open(os.path.join(cfg.output_dir, "results.json"), "w") as f:
                json.dump({"config": dataclasses.asdict(cfg), "runs": results,
                           "summary": summary}, f)
        if result_path:
            with open(result_path, "w") as f:
                json.dump({"runs": results, "summary": summary}, f)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return {"runs": results, "summary": summary} if rank == 0 else None


def _summarise(cfg: ETreeRecipeConfig, results: dict[str, list[dict]]) -> dict[str, Any]:
    out = {}
    for arm, runs in results.items():
        dev = [r["device_acc"] for r in runs]
        out[arm] = {
            "device_acc": float(np.mean(dev)),
            "device_acc_std": float(np.std(dev)),
            "consensus_acc": float(np.mean([r["consensus_acc"] for r in runs])),
            "global_rounds": runs[0]["global_rounds"],
            "long_haul_bytes": runs[0]["long_haul_bytes"],
            "wall_s": float(np.mean([r["wall_s"] for r in runs])),
        }
    return out


def run_recipe(cfg: ETreeRecipeConfig) -> dict[str, Any] | None:
    """Run every arm and seed of ``cfg``; returns ``{"runs", "summary"}`` on rank 0 (else None).

    Uses the launcher's ranks when launched, else spawns ``cfg.processes`` local ranks.
    """
    from .launch import check_launch, launch_local, launched_by_a_launcher

    cfg_dict = dataclasses.asdict(cfg)
    if launched_by_a_launcher() or (cfg.processes or 1) == 1:
        world = check_launch(cfg.processes if launched_by_a_launcher() else None)
        validate_sizes(cfg, world)
        return _worker(cfg_dict, None)
    validate_sizes(cfg, cfg.processes)  # user errors surface here, not inside the ranks
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "result.json")
        launch_local(_worker, cfg.processes, (cfg_dict, path))
        with open(path) as f:
            return json.load(f)


def format_table(summary: dict[str, Any]) -> str:
    lines = [f"{'arm':<15}{'device acc':>12}{'± std':>8}{'consensus':>11}{'global rds':>11}"
             f"{'long-haul MB':>14}{'wall s':>8}"]
    for arm, s in summary.items():
        lines.append(f"{arm:<15}{s['device_acc']:>12.3f}{s['device_acc_std']:>8.3f}"
                     f"{s['consensus_acc']:>11.3f}{s['global_rounds']:>11d}"
                     f"{s['long_haul_bytes'] / 1e6:>14.2f}{s['wall_s']:>8.1f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI
def add_arguments(parser) -> None:
    """``kwaiformers train etree`` options."""
    parser.add_argument("--config", required=True, help="YAML recipe config")
    parser.add_argument("--output-dir", default=None, help="write results.json (and checkpoints)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (YAML value), e.g. --set leaf_rounds=8")


def run(args) -> int:
    import yaml

    overrides: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE (a config key and a YAML value), got "
                             f"{item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    cfg = load_config(args.config, overrides)
    try:
        out = run_recipe(cfg)  # user errors (ValueError, LaunchError) go to the CLI wrapper
    except Exception as e:  # a rank failed in a spawned run (its message is already on stderr)
        if type(e).__name__ == "ProcessExitedException":  # died / DeviceFailure (exit 3)
            print(f"kwaiformers train etree: a rank failed: {str(e).strip()}\n"
                  "resume from the last checkpoint with --set resume_from=DIR", file=sys.stderr)
            return 3
        if type(e).__name__ == "ProcessRaisedException":  # an exception inside a rank
            print(f"kwaiformers train etree: a rank raised an error:\n{str(e).strip()}",
                  file=sys.stderr)
            return 1
        raise
    if out is None:  # not rank 0
        return 0
    print(format_table(out["summary"]))
    print(json.dumps({arm: round(s["device_acc"], 4) for arm, s in out["summary"].items()}))
    return 0
