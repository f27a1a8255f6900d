"""E-Tree reproduction (Yang et al., IEEE IoT-J 2021): every arm, several non-IID partitions.

    python benchmarks/etree_reproduction.py --quick          # < 1 minute: digits, 8 devices, 2 ranks
    python benchmarks/etree_reproduction.py                  # digits 16 devices + synthetic 100
    python benchmarks/etree_reproduction.py --scales digits16 --partitions shards2 iid --seeds 0 1 2
    python benchmarks/etree_reproduction.py --compare A.json B.json   # same runs, two placements

Arms (same leaf-round budget, same model and initialisation): E-Tree (KMA clusters, k1 = 1 local
epoch per cluster round, k2 = 4 cluster rounds per root round), FedAvg at the same leaf rounds
(one global sync per leaf round), FedAvg at the same number of global synchronisations (E = k1*k2),
Gossip (random matching per leaf round), Individual, Grouped (E-Tree without the root).

Prints a table per scale and partition, tests the paper's three qualitative claims, writes
``<out>/etree_reproduction.json`` and PNG plots (accuracy vs leaf rounds, vs global/root rounds,
vs long-haul bytes, vs wall time), and ends with one JSON line of headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from kwaiformers.federated.recipe import ARMS, ETreeRecipeConfig, format_table, run_recipe

SCALES = {
    # the paper's leaf count is 100; 16 devices is the design note's digits toy
    "digits16": dict(dataset="digits", num_devices=16, clusters=4),
    "synthetic100": dict(dataset="synthetic", num_devices=100, clusters=10,
                         synthetic_samples=12000, synthetic_features=32),
    "quick8": dict(dataset="digits", num_devices=8, clusters=2, hidden=32),
}
PARTITIONS = {
    "shards2": dict(partition="shards", classes_per_device=2),
    "shards4": dict(partition="shards", classes_per_device=4),
    "dir0.1": dict(partition="dirichlet", alpha=0.1),
    "dir0.5": dict(partition="dirichlet", alpha=0.5),
    "iid": dict(partition="iid"),
}
NON_IID = ("shards2", "shards4", "dir0.1", "dir0.5")


def fedavg_at_bytes(runs: dict) -> float | None:
    """FedAvg (every leaf round) accuracy at the first evaluation whose long-haul bytes reach
    E-Tree's final long-haul bytes (so FedAvg gets at least as much top-level traffic)."""
    if not {"etree", "fedavg_leaf"} <= runs.keys():
        return None
    accs = []
    for et, fa in zip(runs["etree"], runs["fedavg_leaf"]):
        budget = et["long_haul_bytes"]
        pts = [h for h in fa["history"] if h["long_haul_bytes"] >= budget] or fa["history"][-1:]
        accs.append(pts[0]["device_acc"])
    return float(np.mean(accs))


def verdicts(summary: dict, runs: dict | None = None) -> dict:
    s = {a: summary[a]["device_acc"] for a in summary}
    out = {}
    fab = fedavg_at_bytes(runs or {})
    if fab is not None:
        out["etree_ge_fedavg_equal_long_haul_bytes"] = s["etree"] >= fab
    if {"etree", "gossip"} <= s.keys():
        out["etree_gt_gossip"] = s["etree"] > s["gossip"]
    if {"etree", "fedavg_global"} <= s.keys():
        out["etree_ge_fedavg_equal_global_rounds"] = s["etree"] >= s["fedavg_global"]
    if {"etree", "fedavg_leaf"} <= s.keys():
        out["etree_ge_fedavg_equal_leaf_rounds"] = s["etree"] >= s["fedavg_leaf"]
    if {"individual", "grouped", "etree"} <= s.keys():
        out["individual_lt_grouped_lt_etree"] = s["individual"] < s["grouped"] < s["etree"]
    return out


def markdown(path: str) -> str:
    """Markdown tables (mean over seeds) from a results JSON written by this script."""
    with open(path) as f:
        res = json.load(f)["results"]
    lines = []
    for scale, parts in res.items():
        for part, r in parts.items():
            n = len(next(iter(r["runs"].values())))
            lines += [f"**{scale}, {part}** ({SCALES[scale]['num_devices']} devices on "
                      f"{r['processes']} processes, {n} seed(s), {r['elapsed_s']:.0f} s)", "",
                      "| arm | device acc (± std) | consensus acc | global rounds | "
                      "long-haul MB | wall s |", "| --- | --- | --- | --- | --- | --- |"]
            for arm, s in r["summary"].items():
                lines.append(f"| {arm} | {s['device_acc']:.3f} ± {s['device_acc_std']:.3f} | "
                             f"{s['consensus_acc']:.3f} | {s['global_rounds']} | "
                             f"{s['long_haul_bytes'] / 1e6:.2f} | {s['wall_s']:.1f} |")
            fab = fedavg_at_bytes(r["runs"])
            if fab is not None:
                lines.append(f"| fedavg_leaf at E-Tree's long-haul bytes | {fab:.3f} | | | | |")
            v = verdicts(r["summary"], r["runs"])
            lines += ["", "claims: " + ", ".join(f"{k} = {'yes' if b else 'NO'}"
                                                 for k, b in v.items()), ""]
    return "\n".join(lines)


def compare(path_a: str, path_b: str) -> dict:
    """Final accuracies of two results files, arm by arm and seed by seed, for every (scale,
    partition) present in both (e.g. 16 devices on 16 processes vs on 4 processes: virtual
    devices should change where models live, not the arithmetic). Prints a table and returns
    ``{"settings": n, "runs": n, "max_abs_diff_device_acc": x, "same_trees": bool}``."""
    with open(path_a) as f:
        a = json.load(f)["results"]
    with open(path_b) as f:
        b = json.load(f)["results"]
    diffs, runs, same_trees, settings = [], 0, True, 0
    print(f"{'setting':24} {'arm':14} {'seeds':>5} {'A mean acc':>10} {'B mean acc':>10} "
          f"{'max |A-B|':>10}")
    for scale in sorted(a.keys() & b.keys()):
        for part in [p for p in a[scale] if p in b[scale]]:
            settings += 1
            ra, rb = a[scale][part]["runs"], b[scale][part]["runs"]
            for arm in [x for x in ra if x in rb]:
                n = min(len(ra[arm]), len(rb[arm]))
                acc_a = [r["device_acc"] for r in ra[arm][:n]]
                acc_b = [r["device_acc"] for r in rb[arm][:n]]
                d = max(abs(x - y) for x, y in zip(acc_a, acc_b))
                diffs.append(d)
                runs += n
                for x, y in zip(ra[arm][:n], rb[arm][:n]):
                    tx, ty = x.get("tree"), y.get("tree")
                    if tx and ty and tx["levels"] != ty["levels"]:
                        same_trees = False
                print(f"{scale + '/' + part:24} {arm:14} {n:>5} {np.mean(acc_a):>10.4f} "
                      f"{np.mean(acc_b):>10.4f} {d:>10.2e}")
    out = {"settings": settings, "runs": runs,
           "max_abs_diff_device_acc": float(max(diffs)) if diffs else None,
           "same_trees": same_trees}
    return out


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(results)
    xs = [("leaf_round", "leaf rounds (local epochs)"), ("global_rounds", "root / global rounds"),
          ("long_haul_bytes", "long-haul bytes (MB)"), ("wall_s", "wall time (s)")]
    fig, axes = plt.subplots(len(parts), 4, figsize=(18, 3.4 * len(parts)), squeeze=False)
    for i, part in enumerate(parts):
        for arm, runs in results[part]["runs"].items():
            for j, (key, label) in enumerate(xs):
                ax = axes[i][j]
                hist = [r["history"] for r in runs]
                n = min(len(h) for h in hist)
                x = np.mean([[p[key] for p in h[:n]] for h in hist], axis=0)
                if key == "long_haul_bytes":
                    x = x / 1e6
                y = np.mean([[p["device_acc"] for p in h[:n]] for h in hist], axis=0)
                ax.plot(x, y, marker=".", label=arm)
                ax.set_xlabel(label)
                ax.set_ylabel(f"{part}: mean device acc")
                if key == "long_haul_bytes" and x.max() > 0:
                    ax.set_xscale("symlog", linthresh=max(x[x > 0].min(), 1e-3))
        axes[i][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _dump(path: str, args: argparse.Namespace, results: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"args": vars(args), "results": results}, f)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="< 1 minute: quick8, shards2, 1 seed")
    ap.add_argument("--scales", nargs="+", default=["digits16", "synthetic100"],
                    choices=sorted(SCALES))
    ap.add_argument("--partitions", nargs="+", default=list(PARTITIONS), choices=list(PARTITIONS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--processes", type=int, nargs="+", default=None,
                    help="ranks per scale (default: 16 for digits16, 4 for synthetic100)")
    ap.add_argument("--leaf-rounds", type=int, default=60)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--out", default="docs", help="folder for the JSON results and the plots")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--markdown", metavar="JSON", help="print markdown tables of a results file")
    ap.add_argument("--compare", nargs=2, metavar=("A_JSON", "B_JSON"),
                    help="compare the final accuracies of two results files run by run")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(args.markdown))
        return 0
    if args.compare:
        print(json.dumps(compare(*args.compare)))
        return 0
    if args.quick:
        args.scales, args.partitions, args.seeds, args.leaf_rounds = (
            ["quick8"], ["shards2"], [0], 16)
    default_procs = {"digits16": 16, "synthetic100": 4, "quick8": 2}
    procs = args.processes or [default_procs[s] for s in args.scales]
    if len(procs) != len(args.scales):
        raise SystemExit("--processes needs one value per scale")
    os.makedirs(args.out, exist_ok=True)
    all_results: dict = {}
    headline: dict = {}
    tag = "_quick" if args.quick else ""
    results_path = os.path.join(args.out, f"etree_reproduction{tag}.json")
    t_start = time.perf_counter()
    for scale, nproc in zip(args.scales, procs):
        all_results[scale] = {}
        for part in args.partitions:
            cfg = ETreeRecipeConfig(
                **SCALES[scale], **PARTITIONS[part], processes=nproc, arms=list(args.arms),
                seeds=list(args.seeds), leaf_rounds=args.leaf_rounds, k1=1, k2=4, eval_every=4,
                pretrain_epochs=2, delta=0.05, progress=False, collective_timeout_s=300)
            t0 = time.perf_counter()
            out = run_recipe(cfg)
            elapsed = time.perf_counter() - t0
            v = verdicts(out["summary"], out["runs"])
            all_results[scale][part] = {"runs": out["runs"], "summary": out["summary"],
                                        "verdicts": v, "elapsed_s": elapsed,
                                        "processes": nproc}
            print(f"\n== {scale} ({SCALES[scale]['num_devices']} devices on {nproc} processes), "
                  f"{part}, seeds {args.seeds}, {args.leaf_rounds} leaf rounds "
                  f"[{elapsed:.0f} s]")
            print(format_table(out["summary"]))
            print("claims:", ", ".join(f"{k}={'yes' if b else 'NO'}" for k, b in v.items()))
            headline[f"{scale}/{part}"] = {
                **{a: round(s["device_acc"], 4) for a, s in out["summary"].items()}, **v}
            sys.stdout.flush()
            _dump(results_path, args, all_results)  # after every partition: a long sweep that
            # is interrupted keeps what it finished
        if not args.no_plot:
            try:
                plot(all_results[scale], os.path.join(args.out, f"etree_{scale}.png"))
            except ImportError:
                print("matplotlib not installed: no plot (pip install kwaiformers[plot])")
    # claim tally over non-IID settings
    tally: dict[str, list[bool]] = {}
    for scale in all_results:
        for part, r in all_results[scale].items():
            if part in NON_IID:
                for k, b in r["verdicts"].items():
                    tally.setdefault(k, []).append(bool(b))
    print("\nnon-IID claim tally (settings where the claim held / settings):")
    for k, bs in tally.items():
        print(f"  {k}: {sum(bs)}/{len(bs)}")
    headline["claims_non_iid"] = {k: f"{sum(b)}/{len(b)}" for k, b in tally.items()}
    headline["total_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
