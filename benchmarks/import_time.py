"""Measure ``python -c "import kwaiformers"`` wall time against a bare interpreter start.

Usage: ``python benchmarks/import_time.py [--quick] [--repeats N]``. Prints a table and one JSON
line: ``{"import_kwaiformers_s": ..., "python_startup_s": ..., "import_overhead_s": ...}``.
Goal (issue 2): ``import kwaiformers`` under 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _time(code: str, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 10")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 10)
    _time("import kwaiformers", 1)  # warm the bytecode cache
    bare = _time("pass", repeats)
    ours = _time("import kwaiformers", repeats)
    heavy = _time("import kwaiformers, sys; assert 'torch' not in sys.modules", 1)
    title = f"measurement (median of {repeats})"
    print(f"{title:<34}{'seconds':>10}")
    print(f"{'python -c pass':<34}{bare:>10.3f}")
    label = 'python -c "import kwaiformers"'
    print(f"{label:<34}{ours:>10.3f}")
    print(f"{'overhead':<34}{ours - bare:>10.3f}")
    print(f"{'(torch not imported: checked)':<34}{heavy:>10.3f}")
    print(json.dumps({
        "import_kwaiformers_s": round(ours, 4),
        "python_startup_s": round(bare, 4),
        "import_overhead_s": round(ours - bare, 4),
    }))


if __name__ == "__main__":
    main()
