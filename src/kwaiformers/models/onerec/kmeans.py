"""K-means in torch for semantic-ID codebooks: plain (Lloyd) and balanced (OneRec KDD Algorithm 1).

Everything runs on the device of the input tensor (CPU or GPU). Distances are computed in row
chunks as ``||c||^2 - 2 x c^T`` with one ``addmm`` per chunk (the ``||x||^2`` term does not change
the argmin), so memory stays bounded by ``chunk_size x K`` floats. Runs are deterministic for a
given ``seed`` on a given device.

Initialisation (``init``):

* ``"random"`` (default, as faiss): ``K`` distinct training points drawn uniformly.
* ``"kmeans++"``: greedy D^2 seeding (Arthur & Vassilvitskii, 2007) on a random subsample of
  ``kmeanspp_sample`` points (default ``min(N, 32 K)``); costs ``O(K * sample * D)``, so prefer
  ``"random"`` for very large codebooks.

Empty clusters (plain k-means) are re-seeded as faiss does, by splitting a large cluster into two
slightly perturbed copies (see :func:`_split_clusters`); deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["KMeansResult", "assign_nearest", "balanced_kmeans", "kmeans"]

_MAX_CHUNK_ELEMENTS = 1 << 25  # 32M floats (128 MB) per distance block


@dataclass
class KMeansResult:
    """Result of a k-means run.

    Attributes:
        centroids: FloatTensor[K, D].
        codes: LongTensor[N], the cluster of every training point (for balanced k-means, the
            balanced assignment, which may differ from the nearest centroid).
        inertia: mean squared L2 distance of the points to their assigned centroid.
        iterations: number of Lloyd / balanced iterations run.
    """

    centroids: torch.Tensor
    codes: torch.Tensor
    inertia: float
    iterations: int


def _check_points(x: torch.Tensor, name: str = "embeddings") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor [N, D], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _chunk_rows(k: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size}")
        return chunk_size
    return max(256, _MAX_CHUNK_ELEMENTS // max(k, 1))


def assign_nearest(
    x: torch.Tensor, centroids: torch.Tensor, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row of ``x``.

    Returns:
        ``(codes, sq_dist)``: LongTensor[N] and FloatTensor[N] (squared L2 distance, clamped >= 0).
    """
    c_sq = (centroids * centroids).sum(1)
    step = _chunk_rows(centroids.shape[0], chunk_size)
    n = x.shape[0]
    codes = torch.empty(n, dtype=torch.long, device=x.device)
    dist = torch.empty(n, dtype=x.dtype, device=x.device)
    ct = centroids.t()
    for start in range(0, n, step):
        xc = x[start : start + step]
        d = torch.addmm(c_sq, xc, ct, beta=1.0, alpha=-2.0)
        val, idx = d.min(1)
        codes[start : start + step] = idx
        dist[start : start + step] = (val + (xc * xc).sum(1)).clamp_min_(0)
    return codes, dist


def _cluster_sums(x: torch.Tensor, codes: torch.Tensor, k: int) -> torch.Tensor:
    """Per-cluster sums of ``x``: ``index_add_`` on GPU; on CPU ``index_put_`` for small inputs
    and a sparse one-hot matmul for large ones (both much faster than CPU ``index_add_``)."""
    if x.device.type != "cpu":
        return torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, codes, x)
    if x.numel() <= (1 << 18):
        out = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
        return out.index_put_((codes,), x, accumulate=True)
    # one-hot [K, N] sparse matrix times x: several times faster than index_add_ on CPU
    n = x.shape[0]
    onehot = torch.sparse_coo_tensor(
        torch.stack([codes, torch.arange(n, device=x.device)]),
        torch.ones(n, dtype=x.dtype, device=x.device), (k, n), check_invariants=False,
    )
    return torch.sparse.mm(onehot, x)


def _split_clusters(centroids: torch.Tensor, counts: torch.Tensor, empty: torch.Tensor,
                    rng: np.random.Generator, eps: float = 1.0 / 1024) -> None:
    """Re-seed empty clusters in place by splitting big ones (as faiss' ``split_clusters``).

    Each empty cluster takes a cluster ``j`` drawn with probability ``∝ size_j - 1``; the two get
    ``c_j ± eps (|c_j| + s) * r`` with a random sign vector ``r`` (``s``: mean absolute centroid
    value, so zero centroids split too; faiss uses ``c_j (1 ± eps)`` with alternating signs) and
    share ``j``'s size. Without this, high-dimensional residuals collapse into one cluster at deep
    levels (most initial centroids are never nearest to any point).
    """
    sizes = counts.double().cpu().numpy().copy()
    scale = float(centroids.abs().mean()) + 1e-12
    for e in empty.tolist():
        weights = np.maximum(sizes - 1, 0)
        total = weights.sum()
        if total <= 0:
            break
        j = int(rng.choice(len(sizes), p=weights / total))
        sign = torch.from_numpy(rng.choice([-1.0, 1.0], size=centroids.shape[1]))
        base = centroids[j].clone()
        delta = eps * (base.abs() + scale) * sign.to(base.dtype).to(base.device)
        centroids[e] = base + delta
        centroids[j] = base - delta
        sizes[e] = sizes[j] / 2
        sizes[j] -= sizes[e]


def _generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def _init_centroids(
    x: torch.Tensor, k: int, init: str, gen: torch.Generator, kmeanspp_sample: int | None
) -> torch.Tensor:
    n = x.shape[0]
    if init == "random":
        idx = torch.randperm(n, generator=gen)[:k].to(x.device)
        return x[idx].clone()
    if init == "kmeans++":
        sample = min(n, kmeanspp_sample or 32 * k)
        if sample < k:
            raise ValueError(f"kmeanspp_sample={sample} is smaller than the codebook size {k}")
        sub = x[torch.randperm(n, generator=gen)[:sample].to(x.device)]
        chosen = [int(torch.randint(sample, (1,), generator=gen))]
        min_d = ((sub - sub[chosen[0]]) ** 2).sum(1)
        for _ in range(1, k):
            total = float(min_d.sum())
            if total <= 0:  # all remaining points coincide with chosen centres
                pick = int(torch.randint(sample, (1,), generator=gen))
            else:
                u = torch.rand(1, generator=gen, dtype=torch.float64).item() * total
                cums = torch.cumsum(min_d.double().cpu(), 0)
                pick = min(int(torch.searchsorted(cums, torch.tensor([u], dtype=torch.float64))), sample - 1)
            chosen.append(pick)
            min_d = torch.minimum(min_d, ((sub - sub[pick]) ** 2).sum(1))
        return sub[torch.tensor(chosen, device=x.device)].clone()
    raise ValueError(f"init must be 'random' or 'kmeans++', got {init!r}")


def _validate_k(n: int, k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise ValueError(f"codebook size must be a positive int, got {k!r}")
    if k > n:
        raise ValueError(
            f"codebook size {k} exceeds the number of points {n}; use a smaller codebook_size"
        )


def kmeans(
    x: torch.Tensor,
    k: int,
    niter: int = 20,
    seed: int = 0,
    init: str = "random",
    chunk_size: int | None = None,
    kmeanspp_sample: int | None = None,
    tol: float = 0.0,
) -> KMeansResult:
    """Plain Lloyd k-means (the OpenOneRec ``res_kmeans.py`` quantiser, faiss-equivalent).

    Each of the ``niter`` iterations assigns every point to its nearest centroid and moves each
    centroid to the mean of its points; a final assignment pass gives ``codes``. Stops early when no
    assignment changes, or when the relative inertia improvement falls below ``tol`` (> 0).
    """
    x = _check_points(x)
    n = x.shape[0]
    _validate_k(n, k)
    if niter < 0:
        raise ValueError(f"niter must be >= 0, got {niter}")
    gen = _generator(seed, x.device)
    centroids = _init_centroids(x, k, init, gen, kmeanspp_sample)
    split_rng = np.random.default_rng(seed)
    prev_codes: torch.Tensor | None = None
    prev_inertia = math.inf
    split = False
    it = 0
    for it in range(1, niter + 1):  # noqa: B007
        codes, dist = assign_nearest(x, centroids, chunk_size)
        inertia = float(dist.mean())
        if prev_codes is not None and not split and torch.equal(codes, prev_codes):
            break
        sums = _cluster_sums(x, codes, k)
        counts = torch.bincount(codes, minlength=k)
        nonempty = counts > 0
        centroids = torch.where(
            nonempty[:, None], sums / counts.clamp_min(1)[:, None].to(x.dtype), centroids
        )
        empty = (~nonempty).nonzero().flatten()
        split = bool(empty.numel())
        if split:
            _split_clusters(centroids, counts, empty, split_rng)
        if tol > 0 and prev_inertia < math.inf and prev_inertia - inertia <= tol * prev_inertia:
            break
        prev_codes, prev_inertia = codes, inertia
    codes, dist = assign_nearest(x, centroids, chunk_size)
    return KMeansResult(centroids, codes, float(dist.mean()), it)


def balanced_kmeans(
    x: torch.Tensor,
    k: int,
    niter: int = 20,
    seed: int = 0,
    init: str = "random",
    chunk_size: int | None = None,
    kmeanspp_sample: int | None = None,
) -> KMeansResult:
    """Balanced k-means, OneRec KDD (arXiv 2502.18965) Algorithm 1.

    With ``w = |V| / K``: clusters are visited in order ``k = 0..K-1``; cluster ``k`` takes the
    ``w`` still-unassigned points nearest to its centroid, then its centroid becomes their mean.
    Repeated until the assignment stops changing (or ``niter`` passes). Every cluster holds exactly
    ``w`` points; when ``K`` does not divide ``|V|`` the first ``|V| mod K`` clusters hold ``w + 1``
    (our documented extension). Cost per pass: ``O(N K D)`` distances plus ``K`` selections over
    ``N`` points (one Python step per cluster, so it is slower than plain k-means for large ``K``).
    """
    x = _check_points(x)
    n = x.shape[0]
    _validate_k(n, k)
    gen = _generator(seed, x.device)
    centroids = _init_centroids(x, k, init, gen, kmeanspp_sample)
    base, extra = divmod(n, k)
    sizes = [base + (1 if c < extra else 0) for c in range(k)]
    x_sq = (x * x).sum(1)
    block = max(1, _MAX_CHUNK_ELEMENTS // n) if chunk_size is None else max(1, chunk_size)
    codes = torch.full((n,), -1, dtype=torch.long, device=x.device)
    it = 0
    for it in range(1, max(niter, 1) + 1):  # noqa: B007
        new_codes = torch.full((n,), -1, dtype=torch.long, device=x.device)
        taken = torch.zeros(n, dtype=torch.bool, device=x.device)
        new_centroids = centroids.clone()
        for k0 in range(0, k, block):
            cb = centroids[k0 : k0 + block]
            dist = torch.addmm(x_sq[:, None], x, cb.t(), beta=1.0, alpha=-2.0)
            dist += (cb * cb).sum(1)[None, :]
            for j in range(cb.shape[0]):
                c = k0 + j
                d = dist[:, j].masked_fill(taken, math.inf)
                members = torch.topk(d, sizes[c], largest=False).indices
                new_codes[members] = c
                taken[members] = True
                new_centroids[c] = x[members].mean(0)
        centroids = new_centroids
        converged = torch.equal(new_codes, codes)
        codes = new_codes
        if converged:
            break
    diff = x - centroids[codes]
    return KMeansResult(centroids, codes, float((diff * diff).sum(1).mean()), it)
