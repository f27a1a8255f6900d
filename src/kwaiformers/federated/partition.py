"""Non-IID partitioners for simulated devices: shards (c classes per device), Dirichlet, IID.

Pure numpy, deterministic for a given ``seed`` (every rank computes the same split without
communication). Each returns one sorted ``int64`` index array per device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["label_histograms", "partition"]

SCHEMES = ("iid", "shards", "dirichlet")


def partition(
    labels: Sequence[int] | np.ndarray,
    num_devices: int,
    scheme: str = "shards",
    *,
    classes_per_device: int = 2,
    alpha: float = 0.5,
    seed: int = 0,
    min_size: int = 1,
    max_retries: int = 1000,
) -> list[np.ndarray]:
    """Split sample indices over ``num_devices`` devices.

    - ``"iid"``: a seeded permutation cut into near-equal parts.
    - ``"shards"`` (pathological, "Non-IID(c)" in the paper): device ``i`` holds exactly
      ``classes_per_device`` distinct classes, assigned round-robin over a seeded permutation of
      the classes (so every class is used about equally); a class's samples are split evenly
      between the devices that hold it.
    - ``"dirichlet"``: per class, proportions ``~ Dir(alpha)`` over devices (Hsu et al. 2019),
      with NIID-Bench's balancing (devices already holding ``N/num_devices`` samples get no more
      of later classes); redrawn until every device holds at least ``min_size`` samples.

    Every scheme enforces ``min_size`` samples per device and raises a ``ValueError`` naming
    ``num_devices``, the smallest device and the largest feasible ``num_devices`` otherwise.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("partition: labels must be a non-empty 1-D sequence of class ids")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"partition: labels must be integers, got dtype {y.dtype}")
    if not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"partition: num_devices must be a positive int, got {num_devices!r}")
    if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 1:
        raise ValueError(f"partition: min_size must be an int >= 1, got {min_size!r}")
    if num_devices * min_size > y.size:
        raise ValueError(
            f"partition: num_devices={num_devices} with min_size={min_size} samples per device "
            f"needs {num_devices * min_size} samples, the data has {y.size}; use num_devices <= "
            f"{y.size // min_size}")
    if scheme not in SCHEMES:
        raise ValueError(f"partition: scheme must be one of {SCHEMES}, got {scheme!r}")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(y.size), num_devices)
    elif scheme == "shards":
        c = classes_per_device
        if not isinstance(c, int) or c < 1 or c > classes.size:
            raise ValueError(
                f"partition: classes_per_device must be in [1, {classes.size}], got {c!r}"
            )
        order = rng.permutation(classes)
        holders: dict[int, list[int]] = {int(k): [] for k in classes}
        device_order = rng.permutation(num_devices)
        for pos, dev in enumerate(device_order):
            for j in range(c):
                holders[int(order[(pos * c + j) % classes.size])].append(int(dev))
        buckets: list[list[np.ndarray]] = [[] for _ in range(num_devices)]
        for k, devs in holders.items():
            if not devs:
                continue
            idx = rng.permutation(np.flatnonzero(y == k))
            if idx.size < len(devs):
                raise ValueError(
                    f"partition: scheme 'shards' gives class {k} ({idx.size} samples) to "
                    f"{len(devs)} devices; lower num_devices (now {num_devices}) or "
                    "classes_per_device")
            for dev, chunk in zip(devs, np.array_split(idx, len(devs))):
                buckets[dev].append(chunk)
        parts = [np.concatenate(b) for b in buckets]
    else:
        if not (alpha > 0):
            raise ValueError(f"partition: alpha must be > 0, got {alpha!r}")
        for _ in range(max_retries):
            buckets = [[] for _ in range(num_devices)]
            for k in classes:
                idx = rng.permutation(np.flatnonzero(y == k))
                p = rng.dirichlet(np.full(num_devices, float(alpha)))
                # NIID-Bench balancing: devices already holding >= N/num_devices get no more
                held = np.array([sum(c.size for c in b) for b in buckets])
                p = p * (held < y.size / num_devices)
                p = p / p.sum() if p.sum() > 0 else np.full(num_devices, 1.0 / num_devices)
                cuts = (np.cumsum(p)[:-1] * idx.size).astype(int)
                for dev, chunk in enumerate(np.split(idx, cuts)):
                    buckets[dev].append(chunk)
            parts = [np.concatenate(b) for b in buckets]
            if min(p.size for p in parts) >= min_size:
                break
        else:
            raise ValueError(
                f"partition: no Dirichlet({alpha}) draw gave every device >= {min_size} samples "
                f"in {max_retries} tries; lower min_size or raise alpha"
            )
    sizes = [int(np.asarray(p).size) for p in parts]
    if min(sizes) < min_size:  # iid/shards: cannot be redrawn, the split is deterministic
        d = int(np.argmin(sizes))
        raise ValueError(
            f"partition: scheme {scheme!r} gives device {d} only {sizes[d]} samples, fewer than "
            f"min_size={min_size}; lower num_devices (now {num_devices}) or min_size")
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def label_histograms(labels: Sequence[int] | np.ndarray, parts: Sequence[np.ndarray],
                     num_classes: int | None = None) -> np.ndarray:
    """``[num_devices, num_classes]`` label counts of a partition."""
    y = np.asarray(labels)
    k = int(num_classes if num_classes is not None else y.max() + 1)
    return np.stack([np.bincount(y[p], minlength=k) for p in parts])
