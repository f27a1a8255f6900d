"""Semantic-ID item index: ``item <-> code tuple``, collision lists and a vectorised prefix trie.

A tuple ``(c_0, ..., c_{L-1})`` with ``c_l in [0, level_sizes[l])`` is packed into one int64 key in
mixed radix (``key = sum_l c_l * prod(level_sizes[l+1:])``), so every query is a ``searchsorted``
over sorted int64 arrays, never a Python loop over items:

* **collisions** (OneRec TR section 1.3, OpenOneRec ``utils_by_pid.py``): several items may share a
  tuple; :meth:`SemanticIdIndex.items_for` returns them ordered by popularity (descending, ties by
  item id) and :meth:`SemanticIdIndex.lookup` returns the first (the most popular).
* **TIGER-style disambiguation** (``disambiguate=True``): one extra level is appended whose code is
  the item's rank inside its collision group, making the mapping one-to-one.
* **prefix trie**: the depth-``l`` edges are the sorted unique ``(l+1)``-prefixes; the children of a
  prefix form one contiguous range, so :meth:`SemanticIdIndex.allowed_next_codes` turns a batch of
  prefixes into next-code masks with two ``searchsorted`` calls and one ragged scatter.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from .serialization import load_tensors_and_config, save_tensors_and_config

__all__ = ["SemanticIdIndex"]

INDEX_WEIGHTS_NAME = "semantic_id_index.safetensors"
INDEX_CONFIG_NAME = "semantic_id_index.json"
_FORMAT_VERSION = 1
_MAX_BITMAP = 1 << 25  # bools (32 MB) per level for the dense allowed-next-code tables


def _as_long_2d(codes: Any, name: str) -> torch.Tensor:
    codes = torch.as_tensor(codes)
    if codes.is_floating_point() or codes.dtype == torch.bool or codes.is_complex():
        raise TypeError(f"{name} must be an integer tensor, got {codes.dtype}")
    if codes.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor [N, L], got shape {tuple(codes.shape)}")
    return codes.long()


class SemanticIdIndex:
    """Item index over semantic-ID tuples with popularity-ordered collision lists and a prefix trie.

    Build with :meth:`from_codes`. Attributes:

    * ``num_levels`` (int): tuple length ``L`` (including the disambiguation level if any).
    * ``level_sizes`` (list[int]): codes at level ``l`` are in ``[0, level_sizes[l])``.
    * ``num_items`` (int), ``num_tuples`` (int, distinct legal tuples), ``disambiguated`` (bool).
    * ``item_ids`` (LongTensor[N], sorted) and ``codes`` (LongTensor[N, L], aligned with them).
    """

    def __init__(
        self,
        item_ids: torch.Tensor,
        codes: torch.Tensor,
        level_sizes: Sequence[int],
        popularity: torch.Tensor | None = None,
        disambiguated: bool = False,
    ) -> None:
        codes = _as_long_2d(codes, "codes").cpu()
        item_ids = torch.as_tensor(item_ids).cpu()
        if item_ids.is_floating_point() or item_ids.dim() != 1:
            raise ValueError("item_ids must be a 1-D integer tensor")
        item_ids = item_ids.long()
        n, num_levels = codes.shape
        if n == 0:
            raise ValueError("cannot build a SemanticIdIndex with zero items")
        if item_ids.shape[0] != n:
            raise ValueError(f"item_ids has {item_ids.shape[0]} entries, codes has {n} rows")
        level_sizes = [int(s) for s in level_sizes]
        if len(level_sizes) != num_levels or any(s <= 0 for s in level_sizes):
            raise ValueError(
                f"level_sizes must list {num_levels} positive ints (one per level), got {level_sizes}"
            )
        if (codes < 0).any() or (codes >= torch.tensor(level_sizes)).any():
            raise ValueError(f"codes must satisfy 0 <= codes[:, l] < level_sizes[l] = {level_sizes}")
        total = 1
        for s in level_sizes:
            total *= s
        if total >= 2**62:
            raise ValueError(f"the tuple space {level_sizes} is too large to pack into int64 keys")
        if popularity is None:
            popularity = torch.zeros(n, dtype=torch.float64)
        popularity = torch.as_tensor(popularity, dtype=torch.float64).cpu()
        if popularity.shape != (n,):
            raise ValueError(f"popularity must have shape [{n}], got {tuple(popularity.shape)}")
        if not torch.isfinite(popularity).all():
            raise ValueError("popularity contains NaN or infinite values")
        order = torch.argsort(item_ids, stable=True)
        item_ids, codes, popularity = item_ids[order], codes[order], popularity[order]
        if n > 1 and (item_ids[1:] == item_ids[:-1]).any():
            dup = item_ids[1:][item_ids[1:] == item_ids[:-1]][:5].tolist()
            raise ValueError(f"item_ids must be unique; duplicated ids include {dup}")
        self.item_ids = item_ids
        self.codes = codes
        self.popularity = popularity
        self.level_sizes = level_sizes
        self.num_levels = num_levels
        self.num_items = n
        self.disambiguated = bool(disambiguated)
        self._sizes = torch.tensor(level_sizes, dtype=torch.long)
        strides = [1] * num_levels
        for lvl in range(num_levels - 2, -1, -1):
            strides[lvl] = strides[lvl + 1] * level_sizes[lvl + 1]
        self._strides = torch.tensor(strides, dtype=torch.long)
        self._build()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_codes(
        cls,
        codes: torch.Tensor,
        level_sizes: Sequence[int] | None = None,
        item_ids: torch.Tensor | None = None,
        popularity: torch.Tensor | None = None,
        disambiguate: bool = False,
        disambiguation_size: int | None = None,
    ) -> SemanticIdIndex:
        """Build an index from item codes ``[N, L]``.

        Args:
            codes: the items' semantic IDs (e.g. ``SemanticIdTokenizer.encode``).
            level_sizes: codebook size per level; default ``codes.max(0) + 1``.
            item_ids: the items' dataset ids (unique, >= 0); default ``arange(N)``.
            popularity: per-item popularity (e.g. interaction counts) for the collision order.
            disambiguate: append a TIGER-style level holding each item's popularity rank within
                its collision group, so every tuple maps to exactly one item.
            disambiguation_size: size of that extra level; default the largest collision group.
        """
        codes = _as_long_2d(codes, "codes").cpu()
        n = codes.shape[0]
        if level_sizes is None:
            if n == 0:
                raise ValueError("cannot infer level_sizes from zero items")
            level_sizes = (codes.max(0).values + 1).tolist()
        level_sizes = list(level_sizes)
        if item_ids is None:
            item_ids = torch.arange(n)
        if not disambiguate:
            return cls(item_ids, codes, level_sizes, popularity)
        tmp = cls(item_ids, codes, level_sizes, popularity)
        rank = torch.empty(tmp.num_items, dtype=torch.long)
        group_len = tmp._group_ptr[1:] - tmp._group_ptr[:-1]
        starts = torch.repeat_interleave(tmp._group_ptr[:-1], group_len)
        rank_in_group = torch.arange(tmp.num_items) - starts
        pos = torch.searchsorted(tmp.item_ids, tmp._group_items)
        rank[pos] = rank_in_group
        max_group = int(group_len.max())
        size = max_group if disambiguation_size is None else int(disambiguation_size)
        if size < max_group:
            raise ValueError(
                f"disambiguation_size={size} is smaller than the largest collision group "
                f"({max_group} items)"
            )
        new_codes = torch.cat([tmp.codes, rank[:, None]], 1)
        return cls(tmp.item_ids, new_codes, [*level_sizes, size], tmp.popularity, disambiguated=True)

    def _keys(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes * self._strides).sum(1)

    def _build(self) -> None:
        keys = self._keys(self.codes)
        # order items by (key asc, popularity desc, item id asc): stable sorts, last key first
        order = torch.argsort(-self.popularity, stable=True)
        order = order[torch.argsort(keys[order], stable=True)]
        sorted_keys = keys[order]
        self._group_items = self.item_ids[order]
        uniq, counts = torch.unique_consecutive(sorted_keys, return_counts=True)
        self._tuple_keys = uniq
        self._group_ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self.num_tuples = int(uniq.numel())
        # trie: depth-l edges = unique (l+1)-prefixes; parent = prefix of length l
        self._edge_parent: list[torch.Tensor] = []
        self._edge_child: list[torch.Tensor] = []
        for lvl in range(self.num_levels):
            pref = torch.unique_consecutive(uniq // self._strides[lvl])
            self._edge_parent.append(pref // self.level_sizes[lvl])
            self._edge_child.append(pref % self.level_sizes[lvl])
        root = torch.zeros(self.level_sizes[0], dtype=torch.bool)
        root[self._edge_child[0]] = True
        self._root_mask = root
        # dense per-parent bitmaps where small (one gather per query instead of a ragged scatter)
        self._parents: list[torch.Tensor | None] = [None]
        self._bitmaps: list[torch.Tensor | None] = [None]
        for lvl in range(1, self.num_levels):
            parents, inverse = torch.unique_consecutive(self._edge_parent[lvl], return_inverse=True)
            if parents.numel() * self.level_sizes[lvl] > _MAX_BITMAP:
                self._parents.append(None)
                self._bitmaps.append(None)
                continue
            bitmap = torch.zeros(parents.numel() + 1, self.level_sizes[lvl], dtype=torch.bool)
            bitmap[inverse, self._edge_child[lvl]] = True  # last row stays all-False (illegal)
            self._parents.append(parents)
            self._bitmaps.append(bitmap)

    # ------------------------------------------------------------------ queries
    def _check_query(self, codes: Any, width: int | None, name: str) -> torch.Tensor:
        codes = _as_long_2d(codes, name)
        if width is not None and codes.shape[1] != width:
            raise ValueError(f"{name} must have {width} columns, got shape {tuple(codes.shape)}")
        return codes

    def _in_range(self, codes: torch.Tensor) -> torch.Tensor:
        sizes = self._sizes[: codes.shape[1]].to(codes.device)
        return ((codes >= 0) & (codes < sizes)).all(1)

    def allowed_next_codes(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Mask of legal next codes for a batch of prefixes (constrained beam search).

        Args:
            prefixes: LongTensor[B, l] with ``0 <= l < num_levels`` (``[B, 0]`` for the first code).

        Returns:
            BoolTensor[B, level_sizes[l]] on the prefixes' device; ``mask[b, c]`` is True iff
            ``prefixes[b] + (c,)`` is a prefix of some item's tuple. A prefix that is itself illegal
            (or has out-of-range codes) gets an all-False row.
        """
        prefixes = self._check_query(prefixes, None, "prefixes")
        bsz, depth = prefixes.shape
        if depth >= self.num_levels:
            raise ValueError(
                f"prefixes have {depth} codes; allowed_next_codes needs 0 <= l < {self.num_levels}"
            )
        device = prefixes.device
        if depth == 0:
            return self._root_mask.to(device).expand(bsz, -1).clone()
        p = prefixes.cpu()
        ok = self._in_range(p)
        p = torch.where(ok[:, None], p, torch.zeros_like(p))
        # key of a length-`depth` prefix in the radix of levels [0, depth)
        pk = torch.zeros(bsz, dtype=torch.long)
        for lvl in range(depth):
            pk = pk * self.level_sizes[lvl] + p[:, lvl]
        bitmap = self._bitmaps[depth]
        if bitmap is not None:
            parents = self._parents[depth]
            pos = torch.searchsorted(parents, pk).clamp_max(parents.numel() - 1)
            found = ok & (parents[pos] == pk)
            return bitmap[torch.where(found, pos, parents.numel())].to(device)
        parent = self._edge_parent[depth]
        lo = torch.searchsorted(parent, pk, right=False)
        hi = torch.searchsorted(parent, pk, right=True)
        counts = torch.where(ok, hi - lo, torch.zeros_like(lo))
        mask = torch.zeros(bsz, self.level_sizes[depth], dtype=torch.bool)
        total = int(counts.sum())
        if total:
            rows = torch.repeat_interleave(torch.arange(bsz), counts)
            starts = torch.repeat_interleave(lo, counts)
            offs = torch.arange(total) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
            mask[rows, self._edge_child[depth][starts + offs]] = True
        return mask.to(device)

    def _find(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(legal mask, position in the tuple table) for full tuples."""
        c = codes.cpu()
        ok = self._in_range(c)
        keys = self._keys(torch.where(ok[:, None], c, torch.zeros_like(c)))
        pos = torch.searchsorted(self._tuple_keys, keys).clamp_max(self.num_tuples - 1)
        ok &= self._tuple_keys[pos] == keys
        return ok, pos

    def is_legal(self, codes: torch.Tensor) -> torch.Tensor:
        """BoolTensor[N]: whether each tuple ``codes[n]`` (LongTensor[N, L]) is some item's."""
        codes = self._check_query(codes, self.num_levels, "codes")
        return self._find(codes)[0].to(codes.device)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """LongTensor[N]: the most popular item with each tuple, ``-1`` for illegal tuples."""
        codes = self._check_query(codes, self.num_levels, "codes")
        ok, pos = self._find(codes)
        items = self._group_items[self._group_ptr[pos]]
        return torch.where(ok, items, torch.full_like(items, -1)).to(codes.device)

    def items_for(self, codes: torch.Tensor) -> list[list[int]]:
        """The collision list of each tuple: item ids ordered by popularity (empty if illegal)."""
        codes = self._check_query(codes, self.num_levels, "codes")
        ok, pos = self._find(codes)
        ptr = self._group_ptr.tolist()
        out: list[list[int]] = []
        for legal, p in zip(ok.tolist(), pos.tolist()):
            out.append(self._group_items[ptr[p] : ptr[p + 1]].tolist() if legal else [])
        return out

    def item_codes(self, item_ids: torch.Tensor) -> torch.Tensor:
        """LongTensor[N, L]: the tuple of each item id; unknown ids raise ``ValueError``."""
        ids = torch.as_tensor(item_ids)
        if ids.is_floating_point() or ids.dim() != 1:
            raise ValueError(f"item_ids must be a 1-D integer tensor, got shape {tuple(ids.shape)}")
        q = ids.long().cpu()
        pos = torch.searchsorted(self.item_ids, q).clamp_max(self.num_items - 1)
        found = self.item_ids[pos] == q
        if not found.all():
            missing = q[~found][:5].tolist()
            raise ValueError(f"unknown item ids (not in the SemanticIdIndex): {missing}")
        return self.codes[pos].to(ids.device)

    def contains_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """BoolTensor[N]: whether each item id is in the index."""
        q = torch.as_tensor(item_ids).long().cpu().flatten()
        pos = torch.searchsorted(self.item_ids, q).clamp_max(self.num_items - 1)
        return self.item_ids[pos] == q

    def collision_stats(self) -> dict[str, float]:
        """``num_tuples``, ``collision_rate`` (1 - tuples/items), ``max_items_per_tuple`` and
        ``item_coverage``: the fraction of items a generated tuple can return (a tuple maps to
        the most popular item of its collision list, so the others are unreachable; 1.0 with
        ``disambiguate=True``)."""
        group_len = self._group_ptr[1:] - self._group_ptr[:-1]
        return {
            "item_coverage": self.num_tuples / self.num_items,
            "num_items": float(self.num_items),
            "num_tuples": float(self.num_tuples),
            "collision_rate": 1.0 - self.num_tuples / self.num_items,
            "colliding_item_fraction": float(group_len[group_len > 1].sum()) / self.num_items,
            "max_items_per_tuple": float(group_len.max()),
        }

    # ------------------------------------------------------------------ seen-item exclusion
    def exclusion(self, exclude_items: Any, batch_size: int) -> ItemExclusion:
        """Per-user item exclusion for the constrained beam search (:class:`ItemExclusion`).

        ``exclude_items``: one collection of item ids per user (``len == batch_size``), or a
        LongTensor ``[B, N]`` padded with negative ids. Unknown ids are ignored.
        """
        return ItemExclusion(self, exclude_items, batch_size)

    def _prefix_tables(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per depth ``l``: sorted unique ``(l+1)``-prefix keys, each tuple's prefix position and
        the number of tuples under each prefix (cached)."""
        cached = getattr(self, "_prefix_cache", None)
        if cached is None:
            keys, pos, count = [], [], []
            for lvl in range(self.num_levels):
                pref = self._tuple_keys // self._strides[lvl]
                uniq, inverse, counts = torch.unique_consecutive(pref, return_inverse=True,
                                                                 return_counts=True)
                keys.append(uniq)
                pos.append(inverse)
                count.append(counts)
            cached = self._prefix_cache = (keys, pos, count)
        return cached

    # ------------------------------------------------------------------ persistence
    def _code_dtype(self) -> torch.dtype:
        m = max(self.level_sizes)
        if m <= 2**15:
            return torch.int16
        return torch.int32 if m <= 2**31 else torch.int64

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``semantic_id_index.safetensors`` (ids, codes, popularity) and a JSON config."""
        save_tensors_and_config(
            save_directory,
            {
                "item_ids": self.item_ids,
                "codes": self.codes.to(self._code_dtype()),
                "popularity": self.popularity,
            },
            {
                "num_levels": self.num_levels,
                "level_sizes": self.level_sizes,
                "num_items": self.num_items,
                "disambiguated": self.disambiguated,
            },
            weights_name=INDEX_WEIGHTS_NAME,
            config_name=INDEX_CONFIG_NAME,
            format_version=_FORMAT_VERSION,
        )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> SemanticIdIndex:
        """Load an index written by :meth:`save_pretrained` (exact round trip)."""
        t, cfg = load_tensors_and_config(
            directory,
            weights_name=INDEX_WEIGHTS_NAME,
            config_name=INDEX_CONFIG_NAME,
            format_version=_FORMAT_VERSION,
            what="SemanticIdIndex",
        )
        index = cls(
            t["item_ids"],
            t["codes"].long(),
            cfg["level_sizes"],
            t["popularity"],
            disambiguated=cfg.get("disambiguated", False),
        )
        if index.num_items != cfg["num_items"]:
            raise ValueError(
                f"{directory!s}: weights hold {index.num_items} items, config says {cfg['num_items']}"
            )
        return index

    def __repr__(self) -> str:
        return (
            f"SemanticIdIndex(num_items={self.num_items}, num_tuples={self.num_tuples}, "
            f"level_sizes={self.level_sizes}, disambiguated={self.disambiguated})"
        )


class ItemExclusion:
    """Seen-item exclusion for a batch of users, applied *inside* the trie-constrained beam search.

    A tuple is excluded for user ``b`` when every item sharing it is in ``b``'s excluded set
    (otherwise it maps to its most popular non-excluded item, :meth:`lookup`); a prefix is excluded
    when every tuple under it is. Masking excluded prefixes at every level (:meth:`dead_children`)
    keeps each surviving beam extendable to a legal, non-excluded tuple, so the search returns
    ``min(beam_size, number of non-excluded tuples)`` live candidates.
    """

    def __init__(self, index: SemanticIdIndex, exclude_items: Any, batch_size: int) -> None:
        self.index = index
        self.batch_size = int(batch_size)
        if isinstance(exclude_items, torch.Tensor):
            if exclude_items.dim() != 2 or exclude_items.shape[0] != batch_size:
                raise ValueError(f"exclude_items must be [B={batch_size}, N] item ids (negative = "
                                 f"padding), got shape {tuple(exclude_items.shape)}")
            rows = [r[r >= 0] for r in exclude_items.long().cpu()]
        else:
            rows = list(exclude_items)
            if len(rows) != batch_size:
                raise ValueError(f"exclude_items must hold one collection of item ids per user "
                                 f"({batch_size}), got {len(rows)}")
            rows = [torch.as_tensor(list(r) if not isinstance(r, torch.Tensor) else r,
                                    dtype=torch.long).flatten().cpu() for r in rows]
        user = torch.repeat_interleave(torch.arange(batch_size), torch.tensor([len(r) for r in rows]))
        items = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
        known = index.contains_items(items) if items.numel() else torch.zeros(0, dtype=torch.bool)
        user, items = user[known], items[known]
        pairs = torch.unique(torch.stack([user, items], 1), dim=0) if items.numel() else \
            torch.zeros(0, 2, dtype=torch.long)
        self._excluded = pairs  # (user, item), sorted
        self._pair_keys = pairs[:, 0] * (int(index.item_ids.max()) + 1) + pairs[:, 1] if \
            pairs.numel() else torch.zeros(0, dtype=torch.long)
        self._item_span = int(index.item_ids.max()) + 1
        # fully excluded tuples per user, then fully excluded prefixes per depth
        nt = index.num_tuples
        tpos = index._find(index.item_codes(pairs[:, 1].contiguous()))[1] if pairs.numel() else \
            torch.zeros(0, dtype=torch.long)
        ut, cnt = torch.unique(pairs[:, 0] * nt + tpos, return_counts=True)
        group_len = index._group_ptr[1:] - index._group_ptr[:-1]
        dead_t = ut[cnt == group_len[ut % nt]]
        dead_user, dead_tuple = dead_t // nt, dead_t % nt
        keys, pos, count = index._prefix_tables()
        self._dead: list[tuple[torch.Tensor, torch.Tensor]] = []  # per depth: (user, prefix key)
        for lvl in range(index.num_levels):
            npref = keys[lvl].numel()
            up, c = torch.unique(dead_user * npref + pos[lvl][dead_tuple], return_counts=True)
            full = up[c == count[lvl][up % npref]]
            self._dead.append((full // npref, keys[lvl][full % npref]))

    def dead_children(self, prefixes: torch.Tensor) -> torch.Tensor:
        """BoolTensor ``[B, M, level_sizes[l]]``: for beams with codes ``prefixes [B, M, l]``,
        which next codes lead only to excluded tuples."""
        b, m, depth = prefixes.shape
        k = self.index.level_sizes[depth]
        mask = torch.zeros(b, m, k, dtype=torch.bool)
        users, dead_keys = self._dead[depth]
        if users.numel() == 0:
            return mask
        p = prefixes.cpu().long()
        pk = torch.zeros(b, m, dtype=torch.long)
        for lvl in range(depth):
            pk = pk * self.index.level_sizes[lvl] + p[..., lvl]
        span = 1
        for lvl in range(depth):
            span *= self.index.level_sizes[lvl]
        beam_keys = (torch.arange(b)[:, None] * span + pk).reshape(-1)
        order = torch.argsort(beam_keys)
        sorted_keys = beam_keys[order]
        want = users * span + dead_keys // k
        at = torch.searchsorted(sorted_keys, want).clamp_max(sorted_keys.numel() - 1)
        hit = sorted_keys[at] == want
        rows = order[at[hit]]
        flat = mask.view(b * m, k)
        flat[rows, (dead_keys % k)[hit]] = True
        return mask

    def is_excluded(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """BoolTensor: whether ``items[j]`` is excluded for user ``users[j]``."""
        if self._pair_keys.numel() == 0:
            return torch.zeros(items.shape, dtype=torch.bool)
        q = users.long() * self._item_span + items.long()
        at = torch.searchsorted(self._pair_keys, q).clamp_max(self._pair_keys.numel() - 1)
        return (self._pair_keys[at] == q) & (items >= 0)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """LongTensor ``[B, N]``: the most popular non-excluded item of each tuple ``codes
        [B, N, L]`` (``-1`` when illegal or fully excluded)."""
        b, n, num_levels = codes.shape
        flat = codes.reshape(-1, num_levels).cpu()
        items = self.index.lookup(flat).reshape(b, n)
        users = torch.arange(b)[:, None].expand(b, n)
        bad = self.is_excluded(users, items)
        if bad.any():
            for (bi, ni) in bad.nonzero().tolist():
                alts = self.index.items_for(codes[bi, ni][None].cpu())[0]
                keep = [i for i in alts if not bool(self.is_excluded(torch.tensor([bi]),
                                                                     torch.tensor([i]))[0])]
                items[bi, ni] = keep[0] if keep else -1
        return items
