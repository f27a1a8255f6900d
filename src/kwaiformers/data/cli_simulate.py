"""``kwaiformers simulate``: write simulated logs in the KuaiRand file format."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory for the CSV files")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suffix", default="sim", help="file suffix (log_standard_<suffix>.csv)")
    parser.add_argument("--log-exposure-prob", action="store_true",
                        help="add the logging policy's exposure_prob column")


def run(args: argparse.Namespace) -> int:
    from .simulator import SimulatorConfig, UserSimulator

    sim = UserSimulator(config=SimulatorConfig(log_exposure_prob=args.log_exposure_prob))
    logs = sim.generate_logs(num_users=args.users, num_items=args.items, days=args.days,
                             seed=args.seed, progress=True)
    paths = logs.write(args.out, suffix=args.suffix)
    std = logs.log_standard
    summary = {
        "files": paths,
        "standard_impressions": int(len(std)),
        "random_impressions": int(len(logs.log_random)),
        "rates": {c: round(float(std[c].mean()), 4) for c in ("is_click", "is_like", "is_hate",
                                                               "long_view")},
    }
    print(json.dumps(summary, indent=2))
    return 0
