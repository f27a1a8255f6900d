"""Semantic-ID tokenizer benchmark: our torch RQ-Kmeans vs faiss-cpu k-means on the same data.

Full run (the issue's setting): 100k random 256-d embeddings, 3 levels x 1024 codes, 20 k-means
iterations per level for both, random initialisation for both, same thread count. Reports fit
time (ours / faiss as a ratio measured in this run), reconstruction MSE of both, the balanced
variant (KDD Algorithm 1), and the prefix-trie mask latency for 512 beams.

    python benchmarks/semantic_ids.py            # full
    python benchmarks/semantic_ids.py --quick    # < 1 minute

Needs ``faiss-cpu`` (``pip install 'kwaiformers[faiss]'``) for the baseline; without it the faiss
rows are skipped with a message. Ends with one JSON line of headline figures.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kwaiformers.models.onerec.semantic_ids import SemanticIdIndex, SemanticIdTokenizer


def _faiss_rq(x: torch.Tensor, levels: int, k: int, niter: int, seed: int, same_init: bool = False):
    """faiss residual k-means; ``same_init`` starts every level from our random initialisation."""
    import faiss
    import numpy as np

    from kwaiformers.models.onerec.kmeans import _generator, _init_centroids

    residual = x.numpy().astype(np.float32).copy()
    recon = np.zeros_like(residual)
    t0 = time.perf_counter()
    for lvl in range(levels):
        km = faiss.Kmeans(residual.shape[1], k, niter=niter, seed=seed + lvl, verbose=False,
                          max_points_per_centroid=max(256, -(-residual.shape[0] // k)))
        if same_init:
            init = _init_centroids(torch.from_numpy(residual), k, "random", _generator(seed + lvl, x.device), None)
            km.train(residual, init_centroids=init.numpy())
        else:
            km.train(residual)
        _, idx = km.index.search(residual, 1)
        chosen = km.centroids[idx[:, 0]]
        residual -= chosen
        recon += chosen
    elapsed = time.perf_counter() - t0
    mse = float(((x.numpy() - recon) ** 2).mean())
    return elapsed, mse


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, < 1 minute")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codebook", type=int, default=None)
    p.add_argument("--niter", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch and faiss threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-balanced", action="store_true", help="skip the balanced k-means row")
    args = p.parse_args(argv)
    n = args.n or (20_000 if args.quick else 100_000)
    dim = args.dim or (64 if args.quick else 256)
    k = args.codebook or (256 if args.quick else 1024)
    niter = args.niter or (10 if args.quick else 20)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(n, dim, generator=gen)
    print(f"semantic_ids benchmark: N={n} D={dim} levels={args.levels} K={k} niter={niter} "
          f"threads={threads}")

    rows = []
    t0 = time.perf_counter()
    tok = SemanticIdTokenizer.fit(x, num_levels=args.levels, codebook_size=k, niter=niter,
                                  seed=args.seed, init="random", progress=False)
    ours_s = time.perf_counter() - t0
    rep = tok.quality_report(x, tok.fit_codes_)
    rows.append(("ours (torch k-means)", ours_s, rep["reconstruction_mse"], rep["collision_rate"]))

    faiss_s = faiss_mse = None
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
        faiss_s, faiss_mse = _faiss_rq(x, args.levels, k, niter, args.seed)
        rows.append(("faiss-cpu Kmeans (its own random init)", faiss_s, faiss_mse, float("nan")))
        same_s, same_mse = _faiss_rq(x, args.levels, k, niter, args.seed, same_init=True)
        rows.append(("faiss-cpu Kmeans (our init)", same_s, same_mse, float("nan")))
    except ImportError:
        print("faiss-cpu is not installed: skipping the faiss baseline "
              "(pip install 'kwaiformers[faiss]')")

    bal_s = None
    if not args.no_balanced:
        nb = min(n, 10_000 if args.quick else 20_000)
        kb = min(k, 128 if args.quick else 256)
        t0 = time.perf_counter()
        tb = SemanticIdTokenizer.fit(x[:nb], num_levels=args.levels, codebook_size=kb,
                                     method="balanced", niter=min(niter, 5), seed=args.seed,
                                     progress=False)
        bal_s = time.perf_counter() - t0
        rb = tb.quality_report(x[:nb], tb.fit_codes_)
        sizes = torch.bincount(tb.fit_codes_[:, 0], minlength=kb)
        rows.append((f"ours balanced (N={nb}, K={kb}, {min(niter, 5)} it)", bal_s,
                     rb["reconstruction_mse"], rb["collision_rate"]))
        assert int(sizes.max() - sizes.min()) <= 1

    # trie masks for 512 beams on the fitted index
    index = SemanticIdIndex.from_codes(tok.fit_codes_, tok.codebook_sizes)
    beams = tok.fit_codes_[torch.randint(n, (512,), generator=gen)]
    trie_ms = []
    torch.set_num_threads(1)  # per-beam-step latency; small ops are fastest on one thread
    for depth in range(args.levels):
        index.allowed_next_codes(beams[:, :depth])
        t0 = time.perf_counter()
        reps = 20
        for _ in range(reps):
            index.allowed_next_codes(beams[:, :depth])
        trie_ms.append(1000 * (time.perf_counter() - t0) / reps)

    print()
    print(f"{'method':<44} {'fit s':>9} {'recon MSE':>11} {'collision':>10}")
    for name, sec, mse, coll in rows:
        print(f"{name:<44} {sec:>9.2f} {mse:>11.5f} {coll:>10.4f}")
    ratio = ours_s / faiss_s if faiss_s else None
    mse_ratio = rep["reconstruction_mse"] / faiss_mse if faiss_mse else None
    if ratio is not None:
        print(f"\nfit time ours / faiss: {ratio:.2f}x (target <= 1.5x); "
              f"MSE ours / faiss: {mse_ratio:.4f} (target <= 1.0)")
    print("trie mask, 512 beams (1 thread): " + ", ".join(f"level {d}: {ms:.2f} ms" for d, ms in enumerate(trie_ms)))
    result = {
        "benchmark": "semantic_ids", "n": n, "dim": dim, "levels": args.levels, "codebook": k,
        "niter": niter, "threads": threads, "ours_fit_s": round(ours_s, 3),
        "faiss_fit_s": None if faiss_s is None else round(faiss_s, 3),
        "faiss_same_init_fit_s": None if faiss_s is None else round(same_s, 3),
        "time_ratio_ours_over_faiss": None if ratio is None else round(ratio, 3),
        "ours_mse": round(rep["reconstruction_mse"], 6),
        "faiss_mse": None if faiss_mse is None else round(faiss_mse, 6),
        "mse_ratio_ours_over_faiss": None if mse_ratio is None else round(mse_ratio, 4),
        "balanced_fit_s": None if bal_s is None else round(bal_s, 3),
        "trie_ms_512_beams": [round(t, 3) for t in trie_ms],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
