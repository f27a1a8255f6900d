"""Semantic-ID tokenizer (RQ-Kmeans, balanced k-means), item index and prefix trie."""

from __future__ import annotations

import itertools

import pytest
import torch

from kwaiformers.models.onerec.kmeans import balanced_kmeans, kmeans
from kwaiformers.models.onerec.semantic_ids import SemanticIdIndex, SemanticIdTokenizer

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _blobs(n_per: int = 50, k: int = 8, dim: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, dim, generator=g) * 10
    labels = torch.arange(k).repeat_interleave(n_per)
    x = centers[labels] + 0.1 * torch.randn(k * n_per, dim, generator=g)
    return x, labels


def test_kmeans_recovers_separated_blobs_and_is_deterministic():
    x, labels = _blobs()
    for init in ("random", "kmeans++"):
        res = kmeans(x, 8, niter=30, seed=3, init=init)
        # each true blob maps to exactly one cluster and vice versa
        pairs = set(zip(labels.tolist(), res.codes.tolist()))
        if init == "kmeans++":
            assert len(pairs) == 8
        assert res.inertia < 0.5 or init == "random"
        again = kmeans(x, 8, niter=30, seed=3, init=init)
        assert torch.equal(res.centroids, again.centroids) and torch.equal(res.codes, again.codes)
    # centroids are the means of their members after convergence
    res = kmeans(x, 8, niter=50, seed=0, init="kmeans++")
    for c in range(8):
        torch.testing.assert_close(res.centroids[c], x[res.codes == c].mean(0), atol=1e-4, rtol=0)


def test_kmeans_reseeds_empty_clusters():
    # 5 distinct points, each repeated: a random init may pick duplicates -> empty clusters
    base = torch.arange(5.0)[:, None].repeat(1, 2)
    x = base.repeat_interleave(20, 0)
    res = kmeans(x, 5, niter=20, seed=1)
    assert torch.bincount(res.codes, minlength=5).min() > 0
    assert res.inertia == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("n,k", [(240, 8), (250, 8)])
def test_balanced_kmeans_equal_cluster_sizes(n, k):
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(0))
    res = balanced_kmeans(x, k, niter=10, seed=0)
    counts = torch.bincount(res.codes, minlength=k)
    w, extra = divmod(n, k)
    expected = torch.tensor([w + (1 if c < extra else 0) for c in range(k)])
    assert torch.equal(counts, expected)
    for c in range(k):  # centroid = mean of its members (Algorithm 1)
        torch.testing.assert_close(res.centroids[c], x[res.codes == c].mean(0), atol=1e-5, rtol=0)


def test_balanced_tokenizer_every_level_exact():
    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(1))
    tok = SemanticIdTokenizer().fit(x, num_levels=2, codebook_size=16, method="balanced",
                                    niter=5, progress=False)
    for lvl in range(2):
        assert torch.bincount(tok.fit_codes_[:, lvl], minlength=16).tolist() == [32] * 16


def test_encode_decode_and_quality_report():
    x, _ = _blobs(n_per=40, k=8, dim=12)
    x = x + torch.randn_like(x)
    tok = SemanticIdTokenizer.fit(x, num_levels=3, codebook_size=8, niter=15, progress=False)
    codes = tok.encode(x)
    assert codes.shape == (320, 3) and codes.dtype == torch.long
    assert torch.equal(codes, tok.fit_codes_)  # plain k-means: fit codes are nearest centroids
    # decode is the sum of centroids, exactly
    manual = sum(tok.centroids[lvl][codes[:, lvl]] for lvl in range(3))
    torch.testing.assert_close(tok.decode(codes), manual)
    # a decoded tuple encodes back to itself when it is a centroid sum of the first level only
    one = tok.centroids[0][:3]
    assert torch.equal(tok.encode(one)[:, 0], torch.arange(3))
    # more levels -> better reconstruction
    errs = []
    for lvl in range(1, 4):
        recon = sum(tok.centroids[j][codes[:, j]] for j in range(lvl))
        errs.append(float(((x - recon) ** 2).mean()))
    assert errs[0] > errs[1] > errs[2]
    rep = tok.quality_report(x)
    assert rep["reconstruction_mse"] == pytest.approx(errs[2], rel=1e-4)
    assert all(0 < u <= 1 for u in rep["utilization"])
    assert all(0 <= e <= m + 1e-9 for e, m in zip(rep["entropy"], rep["max_entropy"]))
    uniq = {tuple(r) for r in codes.tolist()}
    assert rep["collision_rate"] == pytest.approx(1 - len(uniq) / 320)
    assert rep["item_coverage"] == pytest.approx(len(uniq) / 320)
    with pytest.raises(ValueError, match="dimension"):
        tok.encode(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"codes\[:, 1\]"):
        tok.decode(torch.tensor([[0, 99, 0]]))


def test_fit_input_validation():
    with pytest.raises(ValueError, match="exceeds the number of points"):
        SemanticIdTokenizer.fit(torch.randn(10, 4), num_levels=1, codebook_size=16, progress=False)
    bad = torch.randn(40, 4)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        SemanticIdTokenizer.fit(bad, num_levels=1, codebook_size=4, progress=False)
    with pytest.raises(ValueError, match="2-D"):
        SemanticIdTokenizer.fit(torch.randn(40), num_levels=1, codebook_size=4, progress=False)
    with pytest.raises(ValueError, match="method"):
        SemanticIdTokenizer.fit(torch.randn(40, 4), codebook_size=4, method="rqvae", progress=False)
    with pytest.raises(RuntimeError, match="not fitted"):
        SemanticIdTokenizer().encode(torch.randn(2, 4))


def test_tokenizer_save_load_round_trip(tmp_path):
    x = torch.randn(300, 10, generator=torch.Generator().manual_seed(2))
    tok = SemanticIdTokenizer.fit(x, num_levels=3, codebook_size=[8, 6, 4], progress=False)
    tok.save_pretrained(tmp_path)
    again = SemanticIdTokenizer.from_pretrained(tmp_path)
    assert again.codebook_sizes == [8, 6, 4] and again.method == "kmeans"
    for a, b in zip(tok.centroids, again.centroids):
        assert torch.equal(a, b)
    assert torch.equal(tok.encode(x), again.encode(x))
    with pytest.raises(FileNotFoundError):
        SemanticIdTokenizer.from_pretrained(tmp_path / "nope")


# ---------------------------------------------------------------------------- item index


def _colliding_codes():
    codes = torch.tensor([[0, 1, 2], [0, 1, 2], [0, 1, 2], [1, 0, 0], [0, 2, 1], [1, 0, 1]])
    item_ids = torch.tensor([10, 11, 12, 13, 14, 15])
    popularity = torch.tensor([5.0, 9.0, 5.0, 1.0, 2.0, 3.0])
    return codes, item_ids, popularity


def test_index_collision_lists_by_popularity():
    codes, ids, pop = _colliding_codes()
    idx = SemanticIdIndex.from_codes(codes, [2, 3, 3], item_ids=ids, popularity=pop)
    assert idx.num_items == 6 and idx.num_levels == 3 and idx.level_sizes == [2, 3, 3]
    assert idx.num_tuples == 4
    q = torch.tensor([[0, 1, 2], [1, 0, 0], [1, 1, 1], [0, 0, 0]])
    assert idx.items_for(q) == [[11, 10, 12], [13], [], []]  # popularity desc, ties by id
    assert idx.lookup(q).tolist() == [11, 13, -1, -1]
    assert idx.is_legal(q).tolist() == [True, True, False, False]
    # out-of-range codes are illegal, never aliased onto another tuple
    assert idx.is_legal(torch.tensor([[0, 4, 0], [-1, 1, 2], [0, 0, 5]])).tolist() == [False] * 3
    assert torch.equal(idx.item_codes(torch.tensor([14, 10])), torch.tensor([[0, 2, 1], [0, 1, 2]]))
    with pytest.raises(ValueError, match="unknown item ids"):
        idx.item_codes(torch.tensor([10, 99]))
    with pytest.raises(ValueError, match="3 columns"):
        idx.lookup(torch.tensor([[0, 1]]))
    stats = idx.collision_stats()
    assert stats["collision_rate"] == pytest.approx(1 - 4 / 6)
    assert stats["max_items_per_tuple"] == 3
    # only the most popular item of each tuple can be recommended: 4 of the 6
    reachable = idx.lookup(idx.item_codes(ids)) == ids
    assert stats["item_coverage"] == pytest.approx(4 / 6) == float(reachable.float().mean())


def test_index_tiger_disambiguation_is_one_to_one():
    codes, ids, pop = _colliding_codes()
    idx = SemanticIdIndex.from_codes(codes, [2, 3, 3], item_ids=ids, popularity=pop,
                                     disambiguate=True)
    assert idx.num_levels == 4 and idx.level_sizes == [2, 3, 3, 3] and idx.disambiguated
    assert idx.num_tuples == 6
    full = idx.item_codes(ids)
    assert full[:, :3].tolist() == codes.tolist()
    assert full[[1, 0, 2], 3].tolist() == [0, 1, 2]  # rank by popularity within the group
    assert idx.lookup(full).tolist() == ids.tolist()
    assert all(len(g) == 1 for g in idx.items_for(full))
    assert idx.collision_stats()["item_coverage"] == 1.0  # every item reachable
    with pytest.raises(ValueError, match="disambiguation_size"):
        SemanticIdIndex.from_codes(codes, [2, 3, 3], disambiguate=True, disambiguation_size=2)


def _brute_force_mask(codes: torch.Tensor, prefixes: torch.Tensor, size: int) -> torch.Tensor:
    depth = prefixes.shape[1]
    legal = {tuple(r) for r in codes.tolist()}
    mask = torch.zeros(prefixes.shape[0], size, dtype=torch.bool)
    for b, p in enumerate(prefixes.tolist()):
        for t in legal:
            if list(t[:depth]) == p:
                mask[b, t[depth]] = True
    return mask


@pytest.mark.parametrize("dense_tables", [True, False])
def test_trie_masks_equal_brute_force(dense_tables, monkeypatch):
    from kwaiformers.models.onerec import item_index

    if not dense_tables:  # force the ragged-scatter path
        monkeypatch.setattr(item_index, "_MAX_BITMAP", 0)
    g = torch.Generator().manual_seed(0)
    sizes = [5, 4, 6]
    codes = torch.stack([torch.randint(s, (60,), generator=g) for s in sizes], 1)
    idx = SemanticIdIndex.from_codes(codes, sizes)
    assert (idx._bitmaps[1] is not None) == dense_tables
    for depth in range(3):
        # every possible prefix (legal and illegal) plus out-of-range ones
        if depth == 0:
            prefixes = torch.zeros(3, 0, dtype=torch.long)
        else:
            prefixes = torch.tensor(list(itertools.product(*[range(s) for s in sizes[:depth]])))
            prefixes = torch.cat([prefixes, torch.full((2, depth), -1), torch.full((1, depth), 7)])
            assert prefixes.dtype == torch.long
        got = idx.allowed_next_codes(prefixes)
        assert got.shape == (prefixes.shape[0], sizes[depth]) and got.dtype == torch.bool
        ref = _brute_force_mask(codes, prefixes.clamp(-1, 6), sizes[depth])
        assert torch.equal(got, ref)
    with pytest.raises(ValueError, match="0 <= l < 3"):
        idx.allowed_next_codes(torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.parametrize("dense_tables", [True, False])
def test_trie_512_beams_matches_reference_on_larger_codebook(dense_tables, monkeypatch):
    from kwaiformers.models.onerec import item_index

    if not dense_tables:
        monkeypatch.setattr(item_index, "_MAX_BITMAP", 0)
    g = torch.Generator().manual_seed(1)
    sizes = [64, 64, 64]
    codes = torch.randint(64, (3000, 3), generator=g)
    idx = SemanticIdIndex.from_codes(codes, sizes)
    # beams: prefixes of real items (legal) mixed with random ones (mostly illegal)
    beams = torch.cat([codes[torch.randint(3000, (256,), generator=g), :2],
                       torch.randint(64, (256, 2), generator=g)])
    got = idx.allowed_next_codes(beams)
    legal_set = {}
    for c in codes.tolist():
        legal_set.setdefault(tuple(c[:2]), set()).add(c[2])
    for b, p in enumerate(beams.tolist()):
        assert set(got[b].nonzero().flatten().tolist()) == legal_set.get(tuple(p), set())
    # the constrained tuples are exactly the legal ones
    assert got[:256].any(1).all()


def test_index_save_load_round_trip(tmp_path):
    codes, ids, pop = _colliding_codes()
    idx = SemanticIdIndex.from_codes(codes, [2, 3, 3], item_ids=ids, popularity=pop,
                                     disambiguate=True)
    idx.save_pretrained(tmp_path)
    again = SemanticIdIndex.from_pretrained(tmp_path)
    assert again.level_sizes == idx.level_sizes and again.disambiguated
    assert torch.equal(again.item_ids, idx.item_ids) and torch.equal(again.codes, idx.codes)
    assert torch.equal(again.popularity, idx.popularity)
    for depth in range(4):
        p = idx.codes[:, :depth]
        assert torch.equal(again.allowed_next_codes(p), idx.allowed_next_codes(p))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["semantic_id_index.json", "semantic_id_index.safetensors"]


def test_index_input_validation():
    with pytest.raises(ValueError, match="unique"):
        SemanticIdIndex.from_codes(torch.tensor([[0, 1], [1, 0]]), item_ids=torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="0 <= codes"):
        SemanticIdIndex.from_codes(torch.tensor([[0, 5]]), [2, 2])
    with pytest.raises(TypeError, match="integer"):
        SemanticIdIndex.from_codes(torch.tensor([[0.5, 1.0]]))


def test_tokenizer_to_index_pipeline_and_faiss_backend():
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(3))
    tok = SemanticIdTokenizer.fit(x, num_levels=2, codebook_size=16, progress=False)
    index = tok.build_index(popularity=torch.arange(400.0))
    assert index.level_sizes == [16, 16]
    assert index.is_legal(tok.encode(x)).all()
    assert (index.lookup(tok.encode(x)) >= 0).all()
    faiss = pytest.importorskip("faiss")
    assert faiss is not None
    tf = SemanticIdTokenizer.fit(x, num_levels=2, codebook_size=16, backend="faiss",
                                 progress=False)
    assert tf.quality_report(x)["reconstruction_mse"] < float(x.var())
