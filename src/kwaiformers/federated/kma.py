"""KMA ("K-Means and average Accuracy") clustering, Algorithm 1, and public nodes, Algorithm 2.

Yang et al., "E-Tree Learning", IEEE IoT-J 8(14), 2021. Choices where the paper is not public:

- **Centre update (the paper's Eq. (1) is not visible):** the *medoid by delay*, the member with
  the smallest total minimum delay to the other members (ties: smallest id). It is applied online
  after every assignment (Algorithm 1 line 16 sits inside the per-node loop);
  ``online_center_update=False`` updates once per pass instead.
- **Passes:** each pass rebuilds the clusters from the current centres (every centre starts its
  own cluster); passes repeat until the centres stop changing (or ``max_iter``).
- **Candidates:** the nearer ``ceil(K/2)`` centres ("first half", at least one).
- **Criterion:** ``"accuracy"`` (paper): accept a candidate cluster when the mean pre-trained
  accuracy of its members with the node added is within ``delta`` of the population mean.
  ``"label_hist"`` (documented deviation, for when all accuracies are alike, e.g. every device
  holding the same number of classes): accept when the total-variation distance between the
  cluster's label distribution and the global one is below ``delta``, *or* the node brings it
  closer. Fallback in both: the cluster whose centre is nearest.
- **Algorithm 2:** ``Dist(n_j, C_i)`` is the delay from ``n_j`` to the centre of ``C_i``
  (the aggregation point); accepted public nodes join every cluster, and later candidates are
  tested against the clusters including them. A candidate is skipped when its own cluster would
  then hold only public nodes (every cluster keeps at least one device of its own).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "KMAResult",
    "all_pairs_min_delay",
    "kma",
    "medoid",
    "random_geometric_delays",
    "select_public_nodes",
]


def all_pairs_min_delay(
    links: np.ndarray | Iterable[tuple[int, int, float]], num_nodes: int | None = None
) -> np.ndarray:
    """Minimum transmission delay matrix ``[d_ij]`` (Algorithm 1, line 1), Floyd–Warshall.

    ``links``: an ``[N, N]`` matrix of direct-link delays (``inf`` = no link; symmetric use is up
    to the caller), or an iterable of undirected ``(i, j, delay)`` edges with ``num_nodes``.
    Raises ``ValueError`` if the graph is disconnected or a delay is negative.
    """
    if isinstance(links, np.ndarray):
        d = np.array(links, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] != d.shape[1]:
            raise ValueError(f"all_pairs_min_delay: need a square matrix, got shape {d.shape}")
    else:
        if num_nodes is None:
            raise ValueError("all_pairs_min_delay: num_nodes is required with an edge list")
        d = np.full((num_nodes, num_nodes), np.inf)
        for i, j, w in links:
            d[i, j] = min(d[i, j], float(w))
            d[j, i] = min(d[j, i], float(w))
    if np.any(d < 0):
        raise ValueError("all_pairs_min_delay: delays must be >= 0")
    np.fill_diagonal(d, 0.0)
    for k in range(d.shape[0]):
        d = np.minimum(d, d[:, k : k + 1] + d[k : k + 1, :])
    if not np.all(np.isfinite(d)):
        raise ValueError("all_pairs_min_delay: the network graph is disconnected")
    return d


def random_geometric_delays(num_nodes: int, radius: float = 0.3, seed: int = 0) -> np.ndarray:
    """A synthetic edge network: nodes at uniform 2-D positions, links between nodes closer than
    ``radius`` plus a minimum spanning tree (so it is connected), delay = Euclidean length.
    Returns the direct-link matrix (feed it to :func:`all_pairs_min_delay`)."""
    rng = np.random.default_rng(seed)
    pos = rng.random((num_nodes, 2))
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    links = np.where(dist < radius, dist, np.inf)
    in_tree = np.zeros(num_nodes, dtype=bool)
    in_tree[0] = True
    best = dist[0].copy()
    parent = np.zeros(num_nodes, dtype=int)
    for _ in range(num_nodes - 1):  # Prim
        cand = np.where(in_tree, np.inf, best)
        j = int(np.argmin(cand))
        links[j, parent[j]] = links[parent[j], j] = dist[j, parent[j]]
        in_tree[j] = True
        closer = dist[j] < best
        best = np.where(closer, dist[j], best)
        parent = np.where(closer, j, parent)
    np.fill_diagonal(links, 0.0)
    return links


def medoid(members: Sequence[int], delay: np.ndarray) -> int:
    """Assumed Eq. (1): the member minimising the total delay to the other members."""
    m = np.asarray(sorted(members))
    return int(m[int(np.argmin(delay[np.ix_(m, m)].sum(axis=1)))])


@dataclass(frozen=True)
class KMAResult:
    clusters: tuple[tuple[int, ...], ...]
    centers: tuple[int, ...]
    iterations: int
    converged: bool


def _tv(hist: np.ndarray, target: np.ndarray) -> float:
    s = hist.sum()
    return 0.5 * float(np.abs(hist / max(s, 1e-12) - target).sum())


def kma(
    delay: np.ndarray,
    accuracies: Sequence[float] | np.ndarray | None,
    num_clusters: int,
    delta: float = 0.05,
    *,
    seed: int = 0,
    max_iter: int = 50,
    criterion: str = "accuracy",
    label_hist: np.ndarray | None = None,
    online_center_update: bool = True,
) -> KMAResult:
    """KMA clustering, Algorithm 1 (see the module docstring for the documented choices).

    Args:
        delay: ``[N, N]`` minimum delays (:func:`all_pairs_min_delay`).
        accuracies: pre-trained accuracy ``acc_j`` of each node on the shared test set (lines
            2-4); required for ``criterion="accuracy"``.
        num_clusters: ``K`` (``1 <= K < N``).
        delta: allowed gap ``|acc_k - acc_avg| < delta`` (or TV distance for ``label_hist``).
        seed: draws the initial centres (line 5); the result is a function of the inputs + seed.
        label_hist: ``[N, C]`` label counts, for ``criterion="label_hist"``.
    """
    d = np.asarray(delay, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"kma: delay must be a square matrix, got shape {d.shape}")
    n = d.shape[0]
    if not isinstance(num_clusters, int) or not 1 <= num_clusters < n:
        raise ValueError(f"kma: num_clusters must be an int in [1, {n}), got {num_clusters!r}")
    if criterion not in ("accuracy", "label_hist"):
        raise ValueError(f"kma: criterion must be 'accuracy' or 'label_hist', got {criterion!r}")
    if criterion == "accuracy":
        if accuracies is None:
            raise ValueError("kma: criterion='accuracy' needs accuracies (one per node)")
        acc = np.asarray(accuracies, dtype=np.float64)
        if acc.shape != (n,):
            raise ValueError(f"kma: accuracies must have shape ({n},), got {acc.shape}")
        acc_avg = float(acc.mean())
    else:
        if label_hist is None:
            raise ValueError("kma: criterion='label_hist' needs label_hist [N, C]")
        hist = np.asarray(label_hist, dtype=np.float64)
        if hist.ndim != 2 or hist.shape[0] != n:
            raise ValueError(f"kma: label_hist must have shape ({n}, C), got {hist.shape}")
        target = hist.sum(0) / hist.sum()
    if delta < 0:
        raise ValueError(f"kma: delta must be >= 0, got {delta}")
    rng = np.random.default_rng(seed)
    centers = [int(c) for c in rng.choice(n, num_clusters, replace=False)]
    n_cand = max(1, math.ceil(num_clusters / 2))
    converged = False
    it = 0
    clusters: list[list[int]] = []
    for it in range(1, max_iter + 1):  # noqa: B007 (read after the loop)
        start = list(centers)
        clusters = [[c] for c in centers]
        acc_sum = [float(acc[c]) for c in centers] if criterion == "accuracy" else None
        hsum = [hist[c].copy() for c in centers] if criterion == "label_hist" else None
        for i in range(n):
            if i in start:
                continue
            order = sorted(range(num_clusters), key=lambda j: (d[i, centers[j]], j))
            chosen = None
            for j in order[:n_cand]:
                if criterion == "accuracy":
                    acc_k = (acc_sum[j] + acc[i]) / (len(clusters[j]) + 1)
                    ok = abs(acc_k - acc_avg) < delta
                else:
                    after = _tv(hsum[j] + hist[i], target)
                    ok = after < delta or after < _tv(hsum[j], target)
                if ok:
                    chosen = j
                    break
            if chosen is None:
                chosen = order[0]
            clusters[chosen].append(i)
            if criterion == "accuracy":
                acc_sum[chosen] += float(acc[i])
            else:
                hsum[chosen] += hist[i]
            if online_center_update:
                centers[chosen] = medoid(clusters[chosen], d)
        if not online_center_update:
            centers = [medoid(c, d) for c in clusters]
        if centers == start:
            converged = True
            break
    return KMAResult(
        clusters=tuple(tuple(sorted(c)) for c in clusters),
        centers=tuple(centers),
        iterations=it,
        converged=converged,
    )


def select_public_nodes(
    clusters: Sequence[Sequence[int]],
    centers: Sequence[int],
    accuracies: Sequence[float] | np.ndarray,
    delay: np.ndarray,
    gamma: float,
    delta: float,
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Public node selection, Algorithm 2. Returns ``(public_nodes, clusters_with_public)``.

    Candidates are the ``floor(gamma * N)`` nodes with the smallest mean delay to the cluster
    centres; a candidate becomes public when adding it to every cluster not holding it keeps
    ``|acc_k - acc_avg| < delta`` for every cluster.
    """
    acc = np.asarray(accuracies, dtype=np.float64)
    d = np.asarray(delay, dtype=np.float64)
    n = acc.size
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"select_public_nodes: gamma must be in [0, 1), got {gamma}")
    if len(clusters) != len(centers):
        raise ValueError("select_public_nodes: clusters and centers must have the same length")
    acc_avg = float(acc.mean())
    cl = [list(c) for c in clusters]
    r = d[:, list(centers)].mean(axis=1)
    candidates = [int(j) for j in np.argsort(r, kind="stable")[: int(math.floor(gamma * n))]]
    public: list[int] = []
    for j in candidates:
        if any(j in c and not set(c) - set(public) - {j} for c in cl):
            continue  # its cluster would keep only public nodes (no device of its own)
        trial = [c if j in c else [*c, j] for c in cl]
        if all(abs(float(acc[c].mean()) - acc_avg) < delta for c in map(np.asarray, trial)):
            public.append(j)
            cl = trial
    return tuple(sorted(public)), tuple(tuple(sorted(c)) for c in cl)
