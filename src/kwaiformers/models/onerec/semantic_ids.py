"""OneRec semantic-ID tokenizer: residual k-means ("RQ-Kmeans") over item embeddings.

OneRec TR (arXiv 2506.13695) section 2.1 / design note section 1.2: starting from
``R^(1) = {e_i}``, level ``l`` fits ``C^(l) = KMeans(R^(l), K)``, picks
``s_i^l = argmin_k ||R_i^(l) - c_k^(l)||`` and sets ``R^(l+1)_i = R^(l)_i - c^(l)_{s_i^l}``.
``decode`` is the sum of the chosen centroids. ``method="balanced"`` uses the KDD paper's balanced
k-means (Algorithm 1) at every level; ``backend="faiss"`` runs plain k-means with ``faiss.Kmeans``
(OpenOneRec's ``res_kmeans.py``) when ``faiss-cpu`` is installed.

The item index (``SemanticIdIndex``: collisions, TIGER-style disambiguation, prefix trie) lives in
:mod:`kwaiformers.models.onerec.item_index` and is re-exported here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from .item_index import SemanticIdIndex
from .kmeans import assign_nearest, balanced_kmeans, kmeans
from .serialization import load_tensors_and_config, save_tensors_and_config

__all__ = ["SemanticIdIndex", "SemanticIdTokenizer"]

TOKENIZER_WEIGHTS_NAME = "semantic_id_tokenizer.safetensors"
TOKENIZER_CONFIG_NAME = "semantic_id_tokenizer.json"
_FORMAT_VERSION = 1


class _hybridmethod:
    """Descriptor: ``Cls.fit(...)`` builds a fresh instance, ``obj.fit(...)`` fits ``obj``."""

    def __init__(self, func: Any) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, cls: type) -> Any:
        target = cls() if obj is None else obj

        def bound(*args: Any, **kwargs: Any) -> Any:
            return self.func(target, *args, **kwargs)

        bound.__doc__ = self.func.__doc__
        bound.__name__ = self.func.__name__
        return bound


def _to_float_tensor(x: Any, name: str = "embeddings") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception as exc:  # pragma: no cover - message only
            raise TypeError(f"{name} must be a tensor or array of shape [N, D]: {exc}") from exc
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    return x.float()


class SemanticIdTokenizer:
    """Residual k-means item tokenizer (embeddings <-> tuples of codes).

    Use ``SemanticIdTokenizer().fit(embeddings, ...)`` or the shorthand
    ``SemanticIdTokenizer.fit(embeddings, ...)`` (both return the fitted tokenizer).

    Attributes (after fitting):
        centroids: list of ``L`` FloatTensor[K_l, D] (CPU, float32).
        num_levels, codebook_sizes (list[int]), dim, method.
        fit_codes_: LongTensor[N, L], the codes the training items got during ``fit`` (for
            ``method="balanced"`` these are the balanced assignments; use them to build the index).
    """

    def __init__(
        self,
        centroids: Sequence[torch.Tensor] | None = None,
        method: str = "kmeans",
        fit_config: dict[str, Any] | None = None,
    ) -> None:
        self.centroids: list[torch.Tensor] = []
        self.method = method
        self.fit_config: dict[str, Any] = dict(fit_config or {})
        self.fit_codes_: torch.Tensor | None = None
        if centroids is not None:
            cs = [torch.as_tensor(c).float().cpu().contiguous() for c in centroids]
            if not cs or any(c.dim() != 2 for c in cs) or len({c.shape[1] for c in cs}) != 1:
                raise ValueError("centroids must be a non-empty list of [K_l, D] tensors with equal D")
            self.centroids = cs

    # ------------------------------------------------------------------ properties
    @property
    def is_fitted(self) -> bool:
        return bool(self.centroids)

    def _require_fitted(self) -> None:
        if not self.centroids:
            raise RuntimeError("SemanticIdTokenizer is not fitted; call fit() or from_pretrained()")

    @property
    def num_levels(self) -> int:
        return len(self.centroids)

    @property
    def codebook_sizes(self) -> list[int]:
        return [int(c.shape[0]) for c in self.centroids]

    @property
    def level_sizes(self) -> list[int]:
        """Alias of :attr:`codebook_sizes` (the name :class:`SemanticIdIndex` uses)."""
        return self.codebook_sizes

    @property
    def codebook_size(self) -> int:
        sizes = self.codebook_sizes
        if len(set(sizes)) != 1:
            raise ValueError(f"codebook sizes differ per level: {sizes}; use codebook_sizes")
        return sizes[0]

    @property
    def dim(self) -> int:
        self._require_fitted()
        return int(self.centroids[0].shape[1])

    # ------------------------------------------------------------------ fitting
    @_hybridmethod
    def fit(
        self,
        embeddings: Any,
        num_levels: int = 3,
        codebook_size: int | Sequence[int] = 8192,
        method: str = "kmeans",
        niter: int = 20,
        seed: int = 0,
        init: str = "random",
        backend: str = "torch",
        device: str | torch.device | None = None,
        chunk_size: int | None = None,
        progress: bool = True,
    ) -> SemanticIdTokenizer:
        """Fit the codebooks level by level on residuals.

        Args:
            embeddings: FloatTensor/array [N, D] of item embeddings.
            num_levels: ``L`` (OneRec: 3).
            codebook_size: ``K`` per level (OneRec: 8192), or a list of ``L`` sizes.
            method: ``"kmeans"`` (plain Lloyd, OneRec TR / OpenOneRec) or ``"balanced"`` (KDD
                Algorithm 1: every cluster holds exactly ``N/K`` items).
            niter: k-means iterations per level (OpenOneRec default 20).
            seed: seed of the initialisation (level ``l`` uses ``seed + l``).
            init: ``"random"`` (faiss-like) or ``"kmeans++"``; see :mod:`.kmeans`.
            backend: ``"torch"`` or ``"faiss"`` (plain k-means only; needs ``faiss-cpu``).
            device: where to run (default: the embeddings' device); centroids are stored on CPU.
            chunk_size: rows per distance block (default: bounded to ~128 MB).
            progress: show a tqdm bar over levels.
        """
        x = _to_float_tensor(embeddings)
        if device is not None:
            x = x.to(device)
        if not isinstance(num_levels, int) or num_levels <= 0:
            raise ValueError(f"num_levels must be a positive int, got {num_levels!r}")
        sizes = [codebook_size] * num_levels if isinstance(codebook_size, int) else list(codebook_size)
        if len(sizes) != num_levels:
            raise ValueError(f"codebook_size must be an int or a list of {num_levels} ints, got {sizes}")
        if method not in ("kmeans", "balanced"):
            raise ValueError(f"method must be 'kmeans' or 'balanced', got {method!r}")
        if backend not in ("torch", "faiss"):
            raise ValueError(f"backend must be 'torch' or 'faiss', got {backend!r}")
        if backend == "faiss" and method != "kmeans":
            raise ValueError("backend='faiss' supports only method='kmeans'")
        from tqdm.auto import tqdm

        residual = x.clone()
        centroids: list[torch.Tensor] = []
        codes: list[torch.Tensor] = []
        for lvl in tqdm(range(num_levels), desc="RQ-Kmeans levels", disable=not progress):
            k = int(sizes[lvl])
            if backend == "faiss":
                cent, code = _faiss_kmeans(residual, k, niter, seed + lvl)
            elif method == "balanced":
                res = balanced_kmeans(residual, k, niter, seed + lvl, init, chunk_size)
                cent, code = res.centroids, res.codes
            else:
                res = kmeans(residual, k, niter, seed + lvl, init, chunk_size)
                cent, code = res.centroids, res.codes
            residual = residual - cent[code]
            centroids.append(cent.float().cpu().contiguous())
            codes.append(code.cpu())
        self.centroids = centroids
        self.method = method
        self.fit_config = {
            "niter": niter,
            "seed": seed,
            "init": init,
            "backend": backend,
            "num_train_items": int(x.shape[0]),
        }
        self.fit_codes_ = torch.stack(codes, 1)
        return self

    @_hybridmethod
    def fit_transform(self, embeddings: Any, **kwargs: Any) -> torch.Tensor:
        """``fit`` then return the training items' codes (``fit_codes_``)."""
        self.fit(embeddings, **kwargs)
        assert self.fit_codes_ is not None
        return self.fit_codes_

    # ------------------------------------------------------------------ encode / decode
    def encode(self, embeddings: Any, chunk_size: int | None = None) -> torch.Tensor:
        """Greedy residual quantisation: LongTensor[N, L] of nearest-centroid codes per level."""
        self._require_fitted()
        x = _to_float_tensor(embeddings)
        if x.shape[1] != self.dim:
            raise ValueError(f"embeddings have dimension {x.shape[1]}, tokenizer expects {self.dim}")
        if x.shape[0] == 0:
            return torch.empty(0, self.num_levels, dtype=torch.long, device=x.device)
        residual = x.clone()
        out = []
        for cent in self.centroids:
            c = cent.to(x.device)
            code, _ = assign_nearest(residual, c, chunk_size)
            residual -= c[code]
            out.append(code)
        return torch.stack(out, 1)

    def decode(self, codes: Any) -> torch.Tensor:
        """FloatTensor[N, D]: sum of the selected centroids of every level."""
        self._require_fitted()
        codes = torch.as_tensor(codes)
        if codes.is_floating_point() or codes.dim() != 2 or codes.shape[1] < self.num_levels:
            raise ValueError(
                f"codes must be an integer tensor [N, {self.num_levels}], got "
                f"{codes.dtype} {tuple(codes.shape)}"
            )
        codes = codes[:, : self.num_levels].long()  # a trailing disambiguation level is ignored
        out = torch.zeros(codes.shape[0], self.dim, device=codes.device)
        for lvl, cent in enumerate(self.centroids):
            col = codes[:, lvl]
            if (col < 0).any() or (col >= cent.shape[0]).any():
                raise ValueError(f"codes[:, {lvl}] must be in [0, {cent.shape[0]})")
            out += cent.to(codes.device)[col]
        return out

    # ------------------------------------------------------------------ quality
    def quality_report(self, embeddings: Any, codes: torch.Tensor | None = None) -> dict[str, Any]:
        """Tokenizer metrics of OneRec TR Table 11 (plus collision statistics).

        Returns a dict with ``reconstruction_mse`` (mean over items and dims of
        ``(x - decode(codes))^2``), ``relative_reconstruction_error`` (``sum ||x - x_hat||^2 /
        sum ||x||^2``), ``utilization`` (per level: fraction of codes used), ``entropy`` (per level,
        natural log, so the maximum is ``ln K``: ``ln 8192 = 9.01``, the scale of Table 11),
        ``collision_rate`` (``1 - distinct tuples / items``), ``colliding_item_fraction`` (items
        whose tuple is shared), ``max_items_per_tuple`` and ``item_coverage`` (the fraction of
        items a generated tuple can return: ``distinct tuples / items``; below 1.0, pass
        ``disambiguate=True`` to :meth:`build_index` -- a TIGER-style extra level, coverage 1.0
        -- or use larger codebooks).
        """
        self._require_fitted()
        x = _to_float_tensor(embeddings)
        codes = self.encode(x) if codes is None else torch.as_tensor(codes).long().to(x.device)
        if codes.shape[0] != x.shape[0]:
            raise ValueError(f"codes has {codes.shape[0]} rows, embeddings has {x.shape[0]}")
        recon = self.decode(codes)
        err = ((x - recon) ** 2).sum(1)
        util, ent = [], []
        for lvl, k in enumerate(self.codebook_sizes):
            counts = torch.bincount(codes[:, lvl].cpu(), minlength=k).double()
            util.append(float((counts > 0).sum()) / k)
            p = counts[counts > 0] / counts.sum()
            ent.append(float(-(p * p.log()).sum()))
        _, inverse, group = torch.unique(codes[:, : self.num_levels].cpu(), dim=0,
                                         return_inverse=True, return_counts=True)
        n = x.shape[0]
        return {
            "num_items": n,
            "reconstruction_mse": float(err.mean()) / x.shape[1],
            "relative_reconstruction_error": float(err.sum() / (x * x).sum().clamp_min(1e-30)),
            "utilization": util,
            "entropy": ent,
            "max_entropy": [math.log(k) for k in self.codebook_sizes],
            "collision_rate": 1.0 - group.numel() / n,
            "item_coverage": group.numel() / n,
            "colliding_item_fraction": float((group[inverse] > 1).sum()) / n,
            "max_items_per_tuple": int(group.max()),
        }

    def build_index(
        self,
        embeddings: Any | None = None,
        codes: torch.Tensor | None = None,
        item_ids: torch.Tensor | None = None,
        popularity: torch.Tensor | None = None,
        disambiguate: bool = False,
    ) -> SemanticIdIndex:
        """A :class:`SemanticIdIndex` over items given by ``codes`` (or ``encode(embeddings)``).

        With neither given, uses ``fit_codes_`` (the training items, in training order).
        """
        self._require_fitted()
        if codes is None:
            codes = self.encode(embeddings) if embeddings is not None else self.fit_codes_
        if codes is None:
            raise ValueError("build_index needs codes or embeddings (no fit_codes_ available)")
        return SemanticIdIndex.from_codes(
            codes, self.codebook_sizes, item_ids=item_ids, popularity=popularity,
            disambiguate=disambiguate,
        )

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write centroids to ``semantic_id_tokenizer.safetensors`` and the config to JSON."""
        self._require_fitted()
        save_tensors_and_config(
            save_directory,
            {f"centroids.{lvl}": c for lvl, c in enumerate(self.centroids)},
            {
                "num_levels": self.num_levels,
                "codebook_sizes": self.codebook_sizes,
                "dim": self.dim,
                "method": self.method,
                "fit_config": self.fit_config,
            },
            weights_name=TOKENIZER_WEIGHTS_NAME,
            config_name=TOKENIZER_CONFIG_NAME,
            format_version=_FORMAT_VERSION,
        )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> SemanticIdTokenizer:
        """Load a tokenizer written by :meth:`save_pretrained` (bit-exact centroids)."""
        t, cfg = load_tensors_and_config(
            directory,
            weights_name=TOKENIZER_WEIGHTS_NAME,
            config_name=TOKENIZER_CONFIG_NAME,
            format_version=_FORMAT_VERSION,
            what="SemanticIdTokenizer",
        )
        cents = [t[f"centroids.{lvl}"] for lvl in range(cfg["num_levels"])]
        tok = cls(cents, method=cfg.get("method", "kmeans"), fit_config=cfg.get("fit_config"))
        if tok.codebook_sizes != list(cfg["codebook_sizes"]) or tok.dim != cfg["dim"]:
            raise ValueError(f"{directory!s}: centroids do not match {TOKENIZER_CONFIG_NAME}")
        return tok

    def __repr__(self) -> str:
        if not self.centroids:
            return "SemanticIdTokenizer(unfitted)"
        return (
            f"SemanticIdTokenizer(num_levels={self.num_levels}, codebook_sizes="
            f"{self.codebook_sizes}, dim={self.dim}, method={self.method!r})"
        )


def _faiss_kmeans(x: torch.Tensor, k: int, niter: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain k-means with ``faiss.Kmeans`` (no subsampling), codes by nearest centroid."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("backend='faiss' needs faiss-cpu: pip install 'kwaiformers[faiss]'") from exc
    import numpy as np

    xn = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    if k > xn.shape[0]:
        raise ValueError(f"codebook size {k} exceeds the number of points {xn.shape[0]}")
    km = faiss.Kmeans(xn.shape[1], k, niter=niter, seed=seed, verbose=False,
                      max_points_per_centroid=max(256, -(-xn.shape[0] // k)), spherical=False)
    km.train(xn)
    _, idx = km.index.search(xn, 1)
    cent = torch.from_numpy(np.ascontiguousarray(km.centroids)).to(x.device)
    return cent, torch.from_numpy(idx[:, 0].astype(np.int64)).to(x.device)
